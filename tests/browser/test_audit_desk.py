"""Both roles of the audit desk in a real headless Chromium (tests/browser/conftest.py). The live
server runs in this process with Celery eager, so a resend is sent to the fake Twilio before the
confirmation's redirect answers. Screenshots go to var/test/screenshots/, or with UPDATE_SCREENSHOTS=1 to
docs/screenshots/ (tests/browser/helpers.py)."""

from __future__ import annotations

import csv
import io
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from deliveries import services
from deliveries.models import Attempt, Delivery
from tests.browser.helpers import log_in, shot
from tests.conftest import Tenant, make_delivery, make_user
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db(transaction=True)


def _assert_no_resend_anywhere(page: Any) -> None:
    """No action menu, no button, no link to a resend page. (The list's "last attempt trigger"
    filter still offers "Resend" as a trigger to filter on: reading is what a SOC lead does.)"""
    assert page.locator("select[name=action]").count() == 0
    assert page.locator("#resend-button, a[href*='/resend/'], form[action*='/resend/']").count() == 0
    assert page.get_by_text("Resend selected").count() == 0


def _seed(tenant: Tenant, fake_twilio: FakeTwilio) -> tuple[list[Delivery], list[Delivery]]:
    """Three deliveries Twilio refused for good, and two it accepted."""
    failed = []
    for i, (code, message) in enumerate(
        [
            (21608, "The number is unverified."),
            (21211, "Invalid 'To' Phone Number"),
            (21612, "The 'To' phone number is not currently reachable"),
        ]
    ):
        fake_twilio.plan("error", status=400, code=code, message=message)
        d = make_delivery(tenant, to_number=f"+1500555010{i}", body=f"Detection: lateral movement from wks-{i}")
        services.delivery_send(delivery_id=str(d.id))
        failed.append(d)
    sent = []
    for i in range(2):
        d = make_delivery(tenant, to_number=f"+1500555020{i}", body="Detection: new admin user on dc-01")
        services.delivery_send(delivery_id=str(d.id))
        sent.append(d)
    assert (
        list(Delivery.objects.values_list("status", flat=True).order_by("to_number")) == ["failed"] * 3 + ["queued"] * 2
    )
    return failed, sent


def test_an_operator_filters_to_failed_resends_two_with_a_reason_and_sees_the_new_attempts(
    page: Any, live_server: Any, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    failed, _ = _seed(tenant, fake_twilio)
    operator = make_user("operator")
    log_in(page, live_server, operator)

    page.click("a[href='/admin/deliveries/delivery/']")
    page.wait_for_selector("#result_list")
    page.locator("details[data-filter-title='status'] a", has_text="Failed").click()
    page.wait_for_url("**status__exact=failed**")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 3

    # The two newest failed deliveries (the list is newest first).
    page.locator("#result_list tbody tr input.action-select").nth(0).check()
    page.locator("#result_list tbody tr input.action-select").nth(1).check()
    page.select_option("select[name=action]", "resend_selected")
    page.click("button[name=index]")
    page.wait_for_selector("#resend-form")
    assert page.locator("#resend-sendable tbody tr").count() == 2
    page.fill("textarea[name=reason]", "Numbers verified in the Twilio console after INC-4711")
    assert "Detection: lateral movement from wks-2" in page.inner_text("#resend-sendable")
    assert page.locator("#resend-sendable td.resend-acked").nth(0).inner_text() == "No"
    shot(page, "resend-1440")
    page.click("#resend-submit")

    page.wait_for_selector("ul.messagelist li.success")
    message = page.inner_text("ul.messagelist li.success")
    assert message.startswith("2 deliveries resent (") and page.locator("ul.messagelist li.success a").count() == 2
    assert "status__exact=failed" in page.url and page.locator("#result_list tbody tr").count() == 1

    resent = [failed[2], failed[1]]
    assert {d.status for d in Delivery.objects.filter(pk__in=[d.pk for d in resent])} == {"queued"}
    assert set(Attempt.objects.filter(trigger="resend").values_list("delivery_id", "triggered_by", "reason")) == {
        (d.pk, operator.pk, "Numbers verified in the Twilio console after INC-4711") for d in resent
    }
    assert len(fake_twilio.posts()) == 5 + 2 and Delivery.objects.get(pk=failed[0].pk).status == "failed"

    # The delivery page shows the new attempt in the timeline, after the first.
    page.goto(f"{live_server.url}/admin/deliveries/delivery/{resent[0].pk}/change/")
    timeline = page.locator("#timeline tbody tr")
    assert timeline.count() == 2
    assert "Automatic" in timeline.nth(0).inner_text() and "Permanent failure" in timeline.nth(0).inner_text()
    second = timeline.nth(1).inner_text()
    assert f"Resend by {operator.username}" in " ".join(second.split()) and "INC-4711" in second
    assert "Accepted by Twilio" in second
    assert page.locator("#resend-button").count() == 1
    assert page.locator("a.historylink").count() == 0 and page.get_by_text("View site").count() == 0


def test_a_soc_lead_finds_no_resend_and_downloads_a_csv_matching_the_filter(
    page: Any, live_server: Any, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    failed, _ = _seed(tenant, fake_twilio)
    lead = make_user("soc_lead")
    log_in(page, live_server, lead)

    page.goto(f"{live_server.url}/admin/deliveries/delivery/")
    assert page.locator("select[name=action]").count() == 0 and page.locator("input.action-select").count() == 0
    page.locator("details[data-filter-title='status'] a", has_text="Failed").click()
    page.wait_for_url("**status__exact=failed**")
    page.fill("#searchbar", "+1 (500) 555-0101")
    page.press("#searchbar", "Enter")
    page.wait_for_url("**q=**")
    assert page.locator("#result_list tbody tr").count() == 1
    _assert_no_resend_anywhere(page)

    with page.expect_download() as download_info:
        page.click("#export-csv")
    content = Path(download_info.value.path()).read_text()
    rows = list(csv.DictReader(io.StringIO(content)))
    assert [(r["id"], r["to"], r["status"], r["error_code"]) for r in rows] == [
        (str(failed[1].pk), "+15005550101", "failed", "21211")
    ]
    for column in ("acknowledged_at", "acknowledged_by", "acknowledged_channel", "channel", "kind", "hold_reason"):
        assert column in rows[0]
    assert (rows[0]["channel"], rows[0]["kind"], rows[0]["resend_operator"]) == ("sms", "alert", "")

    # Without the search: every failed delivery, and nothing else.
    page.goto(f"{live_server.url}/admin/deliveries/delivery/?status__exact=failed")
    with page.expect_download() as download_info:
        page.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text())))
    assert {r["id"] for r in rows} == {str(d.pk) for d in failed} and {r["status"] for r in rows} == {"failed"}

    page.goto(f"{live_server.url}/admin/deliveries/delivery/{failed[0].pk}/change/")
    page.wait_for_selector("#timeline")
    _assert_no_resend_anywhere(page)
    assert "resend" not in page.content().lower()
    refused = page.goto(f"{live_server.url}/admin/deliveries/delivery/{failed[0].pk}/resend/")
    assert refused is not None and refused.status == 403
    assert page.inner_text("#forbidden-reason") == "Resending needs the Operator role."
    assert len(fake_twilio.posts()) == 5 and Attempt.objects.filter(trigger="resend").count() == 0


def test_the_index_charts_a_week_by_outcome_and_links_to_what_needs_attention(
    page: Any, live_server: Any, tenant: Tenant
) -> None:
    now = timezone.now()
    rng = random.Random(7)
    history = []
    for hours_ago in range(7 * 24):
        for _ in range(rng.choice([0, 1, 2, 3, 5, 8])):
            status = rng.choices(["delivered", "failed", "ambiguous", "suppressed"], weights=[20, 3, 1, 1])[0]
            d = make_delivery(tenant, status=status, to_number=f"+1500555{rng.randrange(1000, 9999)}")
            d.created_at = now - timedelta(hours=hours_ago, minutes=rng.randrange(60))
            history.append(d)
    Delivery.objects.bulk_update(history, ["created_at"])
    waiting = [make_delivery(tenant, status="pending") for _ in range(2)]
    log_in(page, live_server, make_user("soc_lead"))

    assert page.locator("#at-a-glance svg.glance-chart").count() == 2
    assert page.locator("#at-a-glance svg.glance-chart").nth(1).locator("rect").count() > 168
    assert page.inner_text("#glance-waiting").split()[0] == "2"

    failed_24h = Delivery.objects.filter(status="failed", created_at__gte=now - timedelta(hours=24)).count()
    assert page.inner_text("#glance-failed").split()[0] == str(failed_24h)
    page.click("#glance-failed")
    page.wait_for_url("**status__in=failed**")
    assert "created since" in page.inner_text("#created-range-showing")  # the filter says what it filters
    assert page.locator("#result_list tbody tr").count() == min(failed_24h, 50)
    page.goto(f"{live_server.url}/admin/")
    page.click("#glance-waiting")
    page.wait_for_url("**status__in=**")
    assert page.locator("#result_list tbody tr").count() == len(waiting)
