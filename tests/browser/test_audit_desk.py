"""Both roles of the audit desk in a real headless Chromium (Debian's `chromium`, driven by
Playwright for Python; `make test` installs it when missing, bin/ensure-chromium). The live server
runs in this process with Celery eager, so a resend is sent to the fake Twilio before the
confirmation's redirect answers.

Screenshots at 1440 px and at 390 px (list, alert page, index, delivery page, resend confirmation) are
written to var/test/screenshots/, or to docs/screenshots/ (the README's and docs/audit-desk.md's) with
UPDATE_SCREENSHOTS=1. Wide pages are checked at 1366 px and phones at 390 px for sideways scrolling.
"""

from __future__ import annotations

import csv
import io
import os
import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from deliveries import services
from deliveries.models import Attempt, Delivery
from tests.browser.desk_seed import seed_desk
from tests.conftest import DESK_PASSWORD, Tenant, make_delivery, make_user
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ROOT / ("docs/screenshots" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else "var/test/screenshots")


@pytest.fixture(scope="module")
def browser(django_db_setup: Any) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`, as bin/ensure-chromium does)"
        )
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop on this thread while the browser is open. The
    # ORM calls the tests make between browser steps (and the flush after each) are still plain
    # synchronous code, so Django's guard against the ORM in async code does not apply here.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    # The admin's navigation sidebar, closed (its remembered state), so pages show their content.
    context.add_init_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def _shot(page: Any, name: str, *, full_page: bool = True) -> None:
    """A screenshot; full_page=False for what the screen shows (a phone's first screens, a long list's top)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def _log_in(page: Any, live_server: Any, user: Any) -> None:
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    assert "ext-twilio audit desk" in page.title() and "Django" not in page.content()
    page.fill("#id_username", user.username)
    page.fill("#id_password", DESK_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#at-a-glance")


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
    _log_in(page, live_server, operator)

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
    _shot(page, "resend-1440")
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
    _log_in(page, live_server, lead)

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
    _log_in(page, live_server, make_user("soc_lead"))

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


# --- the desk as a SOC lead and an on-call engineer meet it ---------------------------------------------

# Elements that reach past `width` CSS pixels: what makes a page scroll sideways, named for the failure.
WIDER_THAN = """width => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > width + 1 && getComputedStyle(e).position !== 'fixed')
  .slice(0, 8).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"""


def _fits(page: Any, width: int) -> None:
    """No sideways scrolling at `width`: the document is no wider than the screen, and nothing reaches
    past it (a phone's layout viewport would otherwise widen to the content, and hide the overflow)."""
    wide = page.evaluate(WIDER_THAN, width)
    scroll = page.evaluate("document.scrollingElement.scrollWidth")
    assert scroll <= width and not wide, f"{page.url} is {scroll} px wide at {width} px: {wide}"


def _wide(page: Any, width: int = 1366) -> None:
    page.set_viewport_size({"width": width, "height": 900})


def _phone(browser: Any) -> Any:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    context.add_init_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
    phone = context.new_page()
    phone.set_default_timeout(15_000)
    return phone


def test_a_soc_lead_finds_an_alert_by_its_host_and_reads_who_acknowledged_it_and_how_fast(
    page: Any, live_server: Any, tenant: Tenant
) -> None:
    desk = seed_desk(tenant)
    _log_in(page, live_server, make_user("soc_lead"))
    _shot(page, "index-1440")
    _fits(page, 1440)

    page.goto(f"{live_server.url}/admin/deliveries/delivery/")
    _wide(page)
    _fits(page, 1366)
    headers = [h.strip() for h in page.locator("#result_list thead th").all_inner_texts()]
    assert headers == ["WHEN", "ORGANISATION", "TO", "KIND", "TEXT", "STATUS", "ACK", "WHY"]
    page.set_viewport_size({"width": 1440, "height": 1100})
    _shot(page, "list-1440", full_page=False)

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
    _fits(page, 1440)
    _shot(page, "alert-1440")

    # And back: the call's record links to its alert.
    page.locator("#alert-timeline .event-call a.event-link").first.click()
    page.wait_for_selector("#alert-link")
    page.click("#alert-link")
    page.wait_for_url(f"**/alertrequest/{desk.acked_by_call.pk}/change/**")

    # An ambiguous delivery whose reconciliation gave up: sends, not look-ups; words, not class names.
    page.goto(f"{live_server.url}/admin/deliveries/delivery/?needs_operator=yes")
    assert page.locator("#result_list tbody tr").count() == 1
    page.locator("#result_list tbody tr th a").first.click()
    page.wait_for_selector("#delivery-headline")
    assert "needs an operator" in page.inner_text("#delivery-headline")
    assert "1 send, plus 6 look-ups at Twilio" in page.inner_text("div.field-sends")
    assert "urllib3" not in page.inner_text("#content")
    _shot(page, "delivery-1440")


def test_the_index_counts_match_the_rows_they_link_to(page: Any, live_server: Any, tenant: Tenant) -> None:
    seed_desk(tenant, traffic=False)
    _log_in(page, live_server, make_user("soc_lead"))
    since = timezone.now() - timedelta(hours=24)
    failed = Delivery.objects.filter(status__in=["failed", "undelivered"], created_at__gte=since).count()
    held = Delivery.objects.filter(status="suppressed", created_at__gte=since).count()
    assert (failed, held) == (3, 1)
    assert page.inner_text("#glance-failed").split()[0] == "3"
    assert page.inner_text("#glance-held").split()[0] == "1"
    assert page.inner_text("#glance-needs-operator").split()[0] == "1"
    # Delivered with a code, nobody acknowledged: the acknowledged alert's second recipient only.
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
    _log_in(page, live_server, make_user("operator"))
    page.goto(f"{live_server.url}/admin/deliveries/delivery/{desk.refused_credential.pk}/change/")
    assert "Twilio refused its credential" in page.inner_text("#resend-refused")
    assert page.locator("#resend-button").count() == 0
    page.goto(f"{live_server.url}/admin/deliveries/delivery/{desk.refused_credential.pk}/resend/")
    assert "error 20003" in page.inner_text("#resend-refused") and page.locator("#resend-form").count() == 0
    assert fake_twilio.posts() == [] and Delivery.objects.get(pk=desk.refused_credential.pk).status == "failed"


def test_on_a_phone_nothing_scrolls_sideways_and_the_filters_open_from_one_button(
    browser: Any, live_server: Any, tenant: Tenant
) -> None:
    desk = seed_desk(tenant)
    phone = _phone(browser)
    _log_in(phone, live_server, make_user("soc_lead"))
    _fits(phone, 390)
    _shot(phone, "index-390", full_page=False)

    phone.goto(f"{live_server.url}/admin/deliveries/delivery/")
    _fits(phone, 390)
    assert phone.locator("#changelist-filter").is_hidden()
    button = phone.locator("#filters-button")
    assert button.is_visible() and button.bounding_box()["y"] < phone.locator("#result_list").bounding_box()["y"]
    card = phone.locator("#result_list tbody tr").first
    box = card.bounding_box()
    assert box["width"] <= 390 and "just now" in card.inner_text() and "+1 617-555-0103" in card.inner_text()
    _shot(phone, "list-390", full_page=False)
    button.click()
    assert phone.locator("#changelist-filter").is_visible()
    _fits(phone, 390)

    phone.goto(f"{live_server.url}/admin/deliveries/alertrequest/{desk.escalating.pk}/change/")
    assert phone.inner_text("#alert-summary") == "Not acknowledged."
    assert phone.inner_text("#alert-escalation").startswith("step 1 of 3, next in 4:")
    phone.goto(f"{live_server.url}/admin/deliveries/alertrequest/{desk.acked_by_call.pk}/change/")
    _fits(phone, 390)
    first, second = phone.locator("#alert-timeline li").nth(0), phone.locator("#alert-timeline li").nth(1)
    assert first.bounding_box()["y"] < second.bounding_box()["y"]
    _shot(phone, "alert-390")

    phone.goto(f"{live_server.url}/admin/deliveries/delivery/{desk.failed.pk}/change/")
    _fits(phone, 390)
    _shot(phone, "delivery-390")
    phone.context.close()
