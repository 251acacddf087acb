"""The desk answers a SOC lead and an on-call engineer, in Chromium: from a detection's host to who
acknowledged it and how fast (1440 px, no sideways scrolling at 1366 px), counts that match the rows, a
resend through a refused credential refused, and the phone layout at 390 px. They write the docs'
screenshots (list, alert page, index, delivery page, at 1440 and 390 px)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from deliveries.models import Delivery
from tests.browser.desk_seed import seed_desk
from tests.browser.helpers import fits, log_in, shot, wide
from tests.conftest import Tenant, make_user
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_soc_lead_finds_an_alert_by_its_host_and_reads_who_acknowledged_it_and_how_fast(
    page: Any, live_server: Any, tenant: Tenant
) -> None:
    desk = seed_desk(tenant)
    log_in(page, live_server, make_user("soc_lead"))
    shot(page, "index-1440")
    fits(page, 1440)

    page.goto(f"{live_server.url}/admin/deliveries/delivery/")
    wide(page)
    fits(page, 1366)
    headers = [h.strip() for h in page.locator("#result_list thead th").all_inner_texts()]
    assert headers == ["WHEN", "ORGANISATION", "TO", "KIND", "TEXT", "STATUS", "ACK", "WHY"]
    page.set_viewport_size({"width": 1440, "height": 1100})
    shot(page, "list-1440", full_page=False)

    page.fill("#searchbar", "fs-01")
    page.press("#searchbar", "Enter")
    page.wait_for_url("**q=fs-01**")
    rows = page.locator("#result_list tbody tr")
    # The two texts, the call, and the acknowledgement notice (which quotes the alert).
    assert sorted(page.locator("#result_list td.field-what").all_inner_texts()) == ["call", "notice", "text", "text"]
    assert "Acme SOC" in rows.nth(0).inner_text()

    page.locator("#result_list a.alert-link").first.click()
    page.wait_for_selector("#alert-summary")
    assert page.inner_text("#alert-summary") == "Acknowledged by +1 415-555-0141 by voice after 5 min 16 s."
    assert page.inner_text("#alert-counts").startswith("2 recipients · 2 texts · 1 call")
    assert page.inner_text("#alert-escalation").startswith("stopped: acknowledged")
    timeline = page.locator("#alert-timeline li")
    kinds = [k.strip() for k in page.locator("#alert-timeline .event-kind").all_inner_texts()]
    assert kinds.count("status") >= 6 and "step" in kinds and "key" in kinds and kinds[-2:] != ["ack", "ack"]
    assert kinds.index("step") < kinds.index("call") < kinds.index("key") < kinds.index("ack") < kinds.index("notice")
    assert any("pressed 1 on the call" in t for t in timeline.all_inner_texts())
    fits(page, 1440)
    shot(page, "alert-1440")

    # And back: the call's record links to its alert.
    page.locator("#alert-timeline .event-call a.event-link").first.click()
    page.wait_for_selector("#alert-link")
    page.click("#alert-link")
    page.wait_for_url(f"**/alertrequest/{desk.acked_by_call.pk}/change/**")


def test_an_ambiguous_delivery_whose_reconciliation_gave_up_says_an_operator_is_needed_in_words(
    page: Any, live_server: Any, tenant: Tenant
) -> None:
    seed_desk(tenant, traffic=False)
    log_in(page, live_server, make_user("soc_lead"))
    page.goto(f"{live_server.url}/admin/deliveries/delivery/?needs_operator=yes")
    assert page.locator("#result_list tbody tr").count() == 1
    page.locator("#result_list tbody tr th a").first.click()
    page.wait_for_selector("#delivery-headline")
    assert "needs an operator" in page.inner_text("#delivery-headline")
    assert "1 send, plus 6 look-ups at Twilio" in page.inner_text("div.field-sends")
    assert "urllib3" not in page.inner_text("#content")
    shot(page, "delivery-1440")


def test_the_index_counts_match_the_rows_they_link_to(page: Any, live_server: Any, tenant: Tenant) -> None:
    seed_desk(tenant, traffic=False)
    log_in(page, live_server, make_user("soc_lead"))
    since = timezone.now() - timedelta(hours=24)
    failed = Delivery.objects.filter(status__in=["failed", "undelivered"], created_at__gte=since).count()
    held = Delivery.objects.filter(status="suppressed", created_at__gte=since).count()
    assert (failed, held) == (3, 1)
    assert page.inner_text("#glance-failed").split()[0] == "3"
    assert page.inner_text("#glance-held").split()[0] == "1"
    assert page.inner_text("#glance-needs-operator").split()[0] == "1"
    # Delivered with a code, and nobody acknowledged its alert: the escalating one. The second recipient of
    # the alert the lead acknowledged by call is not waiting for anyone.
    assert page.inner_text("#glance-unacknowledged").split()[0] == "1"
    errors = page.locator("#glance-errors tbody tr")
    assert errors.count() == 3
    assert "30003 Unreachable handset" in " ".join(" ".join(errors.all_inner_texts()).split())
    page.locator("#glance-errors a", has_text="30003").click()
    page.wait_for_url("**error_code=30003**")
    assert page.locator("#result_list tbody tr").count() == 1
    assert "undelivered" in page.inner_text("#result_list tbody tr")

    page.goto(f"{live_server.url}/admin/")
    page.click("#glance-failed")
    assert page.locator("#result_list tbody tr").count() == failed


def test_an_operator_cannot_resend_through_a_credential_twilio_refused(
    page: Any, live_server: Any, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    desk = seed_desk(tenant, traffic=False)
    log_in(page, live_server, make_user("operator"))
    page.goto(f"{live_server.url}/admin/deliveries/delivery/{desk.refused_credential.pk}/change/")
    assert "Twilio refused its credential" in page.inner_text("#resend-refused")
    assert page.locator("#resend-button").count() == 0
    page.goto(f"{live_server.url}/admin/deliveries/delivery/{desk.refused_credential.pk}/resend/")
    assert "error 20003" in page.inner_text("#resend-refused") and page.locator("#resend-form").count() == 0
    assert fake_twilio.posts() == [] and Delivery.objects.get(pk=desk.refused_credential.pk).status == "failed"


def test_on_a_phone_nothing_scrolls_sideways_and_the_filters_open_from_one_button(
    phone: Any, live_server: Any, tenant: Tenant
) -> None:
    desk = seed_desk(tenant)
    log_in(phone, live_server, make_user("soc_lead"))
    fits(phone, 390)
    shot(phone, "index-390", full_page=False)

    phone.goto(f"{live_server.url}/admin/deliveries/delivery/")
    fits(phone, 390)
    assert phone.locator("#changelist-filter").is_hidden()
    button = phone.locator("#filters-button")
    assert button.is_visible() and button.bounding_box()["y"] < phone.locator("#result_list").bounding_box()["y"]
    card = phone.locator("#result_list tbody tr").first
    box = card.bounding_box()
    assert box["width"] <= 390 and "just now" in card.inner_text() and "+1 617-555-0103" in card.inner_text()
    shot(phone, "list-390", full_page=False)
    button.click()
    assert phone.locator("#changelist-filter").is_visible()
    fits(phone, 390)

    phone.goto(f"{live_server.url}/admin/deliveries/alertrequest/{desk.escalating.pk}/change/")
    assert phone.inner_text("#alert-summary") == "Not acknowledged."
    assert phone.inner_text("#alert-escalation").startswith("step 1 of 3, next in 4:")
    phone.goto(f"{live_server.url}/admin/deliveries/alertrequest/{desk.acked_by_call.pk}/change/")
    fits(phone, 390)
    first, second = phone.locator("#alert-timeline li").nth(0), phone.locator("#alert-timeline li").nth(1)
    assert first.bounding_box()["y"] < second.bounding_box()["y"]
    shot(phone, "alert-390")

    phone.goto(f"{live_server.url}/admin/deliveries/delivery/{desk.failed.pk}/change/")
    fits(phone, 390)
    shot(phone, "delivery-390")
