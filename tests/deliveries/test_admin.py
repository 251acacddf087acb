"""The audit desk through Django's test client: who may do what, the list, the delivery page, the
CSV export, resend, opt-outs and the index at a glance."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from deliveries import services
from deliveries.models import Attempt, Delivery, OptOut, Organization, StatusEvent
from tests.conftest import Intake, Tenant, make_delivery, make_user, off_site_addresses
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:deliveries_delivery_changelist"


def _as(role: str) -> tuple[Client, Any]:
    user = make_user(role)
    client = Client()
    client.force_login(user)
    return client, user


def _failed(tenant: Tenant, fake_twilio: FakeTwilio, **fields: Any) -> Delivery:
    fake_twilio.plan("error", status=400, code=21211, message="Invalid 'To' Phone Number")
    delivery = make_delivery(tenant, **fields)
    services.delivery_send(delivery_id=str(delivery.id))
    delivery.refresh_from_db()
    return delivery


def _listed(response: Any) -> list[Delivery]:
    return list(response.context["cl"].result_list)


# --- roles ---------------------------------------------------------------------------------------------


def test_the_roles_migration_creates_both_groups_with_their_permissions() -> None:
    perms = {g.name: sorted(g.permissions.values_list("codename", flat=True)) for g in Group.objects.all()}
    view = [
        "view_alertrequest",
        "view_approval",
        "view_attempt",
        "view_credential",
        "view_delivery",
        "view_errorreport",
        "view_escalation",
        "view_inboundmessage",
        "view_optout",
        "view_organization",
        "view_outboundevent",
        "view_statusevent",
        "view_webhookadapter",
    ]
    assert perms == {
        "SOC lead": view,
        "Operator": sorted([*view, "resend_delivery", "clear_optout", "change_organization"]),
    }


# --- the permission matrix -------------------------------------------------------------------------------

ROLES = ["soc_lead", "operator", "superuser"]


@pytest.mark.parametrize("role", ROLES)
def test_every_role_can_view_the_list_a_delivery_and_export(role: str, tenant: Tenant, fake_twilio: FakeTwilio) -> None:
    delivery = _failed(tenant, fake_twilio)
    client, _ = _as(role)
    assert client.get(reverse(CHANGELIST)).status_code == 200
    assert client.get(reverse("admin:deliveries_delivery_change", args=[delivery.pk])).status_code == 200
    assert client.get(reverse("admin:deliveries_attempt_changelist")).status_code == 200
    assert client.get(reverse("admin:deliveries_optout_changelist")).status_code == 200
    assert client.get(reverse("admin:deliveries_statusevent_changelist")).status_code == 200
    export = client.post(reverse("admin:deliveries_delivery_export"), {"query": ""})
    assert export.status_code == 200 and str(delivery.pk) in cast(StreamingHttpResponse, export).getvalue().decode()


@pytest.mark.parametrize(("role", "expected"), [("soc_lead", 403), ("operator", 302), ("superuser", 302)])
def test_only_operators_and_superusers_may_post_a_resend(
    role: str,
    expected: int,
    tenant: Tenant,
    fake_twilio: FakeTwilio,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    delivery = _failed(tenant, fake_twilio)
    client, user = _as(role)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:deliveries_delivery_resend"), {"ids": [delivery.pk], "reason": "fixed"})

    assert response.status_code == expected
    delivery.refresh_from_db()
    if expected == 403:
        assert delivery.status == "failed" and delivery.attempts.count() == 1 and len(fake_twilio.posts()) == 1
        assert client.get(reverse("admin:deliveries_delivery_resend_one", args=[delivery.pk])).status_code == 403
    else:
        assert delivery.status == "queued" and len(fake_twilio.posts()) == 2
        assert list(delivery.attempts.values_list("trigger", "triggered_by", "reason")) == [
            ("automatic", None, ""),
            ("resend", user.pk, "fixed"),
        ]


def test_a_soc_lead_cannot_resend_through_the_bulk_action(tenant: Tenant, fake_twilio: FakeTwilio) -> None:
    delivery = _failed(tenant, fake_twilio)
    client, _ = _as("soc_lead")
    listing = client.get(reverse(CHANGELIST))
    assert "resend_selected" not in listing.content.decode() and "action-checkbox" not in listing.content.decode()

    response = client.post(
        reverse(CHANGELIST), {"action": "resend_selected", "_selected_action": [delivery.pk], "reason": "x"}
    )
    assert response.status_code == 200  # the list again: the action does not exist for this role
    assert Delivery.objects.get(pk=delivery.pk).status == "failed" and len(fake_twilio.posts()) == 1


@pytest.mark.parametrize("role", ROLES)
def test_nobody_can_add_edit_or_delete_a_delivery_or_an_attempt(
    role: str, tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    delivery = _failed(tenant, fake_twilio)
    attempt = delivery.attempts.get()
    client, _ = _as(role)

    assert client.get(reverse("admin:deliveries_delivery_add")).status_code == 403
    assert (
        client.post(
            reverse("admin:deliveries_delivery_change", args=[delivery.pk]),
            {"to_number": "+15005550009", "status": "delivered"},
        ).status_code
        == 403
    )
    assert (
        client.post(reverse("admin:deliveries_attempt_change", args=[attempt.pk]), {"outcome": "accepted"}).status_code
        == 403
    )
    assert (
        client.post(reverse("admin:deliveries_delivery_delete", args=[delivery.pk]), {"post": "yes"}).status_code == 403
    )
    assert (
        client.post(reverse("admin:deliveries_attempt_delete", args=[attempt.pk]), {"post": "yes"}).status_code == 403
    )
    assert client.post(reverse("admin:deliveries_statusevent_add"), {}).status_code == 403
    # The bulk delete action does not exist either.
    client.post(reverse(CHANGELIST), {"action": "delete_selected", "_selected_action": [delivery.pk], "post": "yes"})

    delivery.refresh_from_db()
    assert (delivery.to_number, delivery.status) == (tenant.recipient, "failed")
    assert Attempt.objects.get(pk=attempt.pk).outcome == "permanent" and Delivery.objects.count() == 1


def test_staff_without_a_role_sees_nothing_and_anonymous_is_sent_to_the_login(
    tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    delivery = _failed(tenant, fake_twilio)
    client, _ = _as("staff")
    assert client.get(reverse(CHANGELIST)).status_code == 403
    assert client.post(reverse("admin:deliveries_delivery_export"), {"query": ""}).status_code == 403
    assert client.get(reverse("admin:deliveries_delivery_export")).status_code == 405  # a POST, with its CSRF token
    assert (
        client.post(reverse("admin:deliveries_delivery_resend"), {"ids": [delivery.pk], "reason": "x"}).status_code
        == 403
    )

    anonymous = Client().get(reverse(CHANGELIST))
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("admin:login"))
    assert (
        Client().post(reverse("admin:deliveries_delivery_resend"), {"ids": [delivery.pk], "reason": "x"}).status_code
        == 302
    )
    assert Delivery.objects.get(pk=delivery.pk).status == "failed" and len(fake_twilio.posts()) == 1


# --- the list ---------------------------------------------------------------------------------------------


def test_the_list_shows_the_columns_newest_first_with_a_coloured_badge(tenant: Tenant, fake_twilio: FakeTwilio) -> None:
    old = _failed(tenant, fake_twilio)
    Delivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=1))
    new = make_delivery(tenant, status="queued", twilio_sid="SM" + "a" * 32)
    client, _ = _as("soc_lead")

    response = client.get(reverse(CHANGELIST))
    html = response.content.decode()
    assert [d.pk for d in _listed(response)] == [new.pk, old.pk]
    assert '<span class="status-badge" style="background:#b91c1c">failed</span>' in html
    assert "21211 Invalid &#x27;To&#x27; number" in html  # the code and its meaning, in words
    assert "SM" + "a" * 32 not in html  # the SID belongs to the delivery's page
    for header in ["When", "Organisation", "To", "Kind", "Text", "Status", "Ack", "Why"]:
        assert f">{header}<" in html or f">{header}</a>" in html
    assert "2 deliveries" in " ".join(html.split())  # counted, but never past CappedCountPaginator.CAP


def test_the_list_does_not_count_past_its_cap(tenant: Tenant, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from deliveries.admin.base import CappedCountPaginator

    monkeypatch.setattr(CappedCountPaginator, "CAP", 3)
    for _ in range(5):
        make_delivery(tenant)
    client, _ = _as("soc_lead")
    html = client.get(reverse(CHANGELIST)).content.decode()
    assert "More than 3 deliveries" in " ".join(html.split())


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("+1 (500) 555-0002", "second"),
        ("0015005550002", "second"),
        ("15005550002", "second"),
        ("+15005550001", "first"),
        ("key-of-second", "second"),
    ],
)
def test_search_normalises_a_phone_number_and_matches_keys(typed: str, expected: str, tenant: Tenant) -> None:
    deliveries = {
        "first": make_delivery(tenant, to_number="+15005550001", idempotency_key="key-of-first"),
        "second": make_delivery(tenant, to_number="+15005550002", idempotency_key="key-of-second"),
    }
    client, _ = _as("operator")
    response = client.get(reverse(CHANGELIST), {"q": typed})
    assert [d.pk for d in _listed(response)] == [deliveries[expected].pk]


def test_search_finds_a_delivery_by_its_id_and_twilio_sid(tenant: Tenant) -> None:
    target = make_delivery(tenant, twilio_sid="SM" + "b" * 32, to_number="+15005550003")
    make_delivery(tenant, to_number="+15005550004")
    client, _ = _as("soc_lead")
    assert [d.pk for d in _listed(client.get(reverse(CHANGELIST), {"q": str(target.pk)}))] == [target.pk]
    assert [d.pk for d in _listed(client.get(reverse(CHANGELIST), {"q": "SM" + "b" * 32}))] == [target.pk]
    assert _listed(client.get(reverse(CHANGELIST), {"q": "nothing-like-this"})) == []


def test_the_filters_select_by_outcome_class_code_trigger_truncation_and_dates(
    tenant: Tenant, fake_twilio: FakeTwilio, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    permanent = _failed(tenant, fake_twilio, to_number="+15005550011", truncated=True)
    fake_twilio.plan("500")
    ambiguous = make_delivery(tenant, to_number="+15005550012")
    services.delivery_send(delivery_id=str(ambiguous.id))
    resent = _failed(tenant, fake_twilio, to_number="+15005550013")
    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_resend(delivery=resent, by=make_user("operator"), reason="r")
    old = make_delivery(tenant, to_number="+15005550014", status="delivered")
    Delivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    client, _ = _as("soc_lead")

    def ids(**params: str) -> set[Any]:
        response = client.get(reverse(CHANGELIST), params)
        assert response.status_code == 200
        return {d.pk for d in _listed(response)}

    assert ids(outcome="permanent") == {permanent.pk}
    assert ids(outcome="ambiguous") == {ambiguous.pk}
    assert ids(error_code="21211") == {permanent.pk}
    assert ids(error_code="20500") == {ambiguous.pk}
    assert ids(last_trigger="resend") == {resent.pk}
    assert ids(last_trigger="automatic") == {permanent.pk, ambiguous.pk}
    assert ids(truncated__exact="1") == {permanent.pk}
    assert ids(status__exact="failed") == {permanent.pk}
    today = timezone.now().date()
    assert ids(created_from=str(today - timedelta(days=11)), created_to=str(today - timedelta(days=9))) == {old.pk}
    assert ids(created_from=str(today)) == {permanent.pk, ambiguous.pk, resent.pk}
    assert ids(status__exact="delivered", created_to=str(today - timedelta(days=1))) == {old.pk}
    assert ids(organization__id__exact=str(old.organization_id), status__exact="ambiguous") == {ambiguous.pk}
    # A malformed date is refused with the admin's usual "?e=1" redirect, not a server error.
    assert client.get(reverse(CHANGELIST), {"created_from": "yesterday"}).status_code == 302


# --- the CSV export ------------------------------------------------------------------------------------


def test_the_export_streams_exactly_the_filtered_rows_and_is_logged(tenant: Tenant, fake_twilio: FakeTwilio) -> None:
    failed = [_failed(tenant, fake_twilio, to_number=f"+1500555002{i}") for i in range(3)]
    make_delivery(tenant, status="queued", to_number="+15005550030")
    make_delivery(tenant, status="failed", to_number="+15005550031", body='=HYPERLINK("http://x")')
    client, user = _as("soc_lead")

    response = client.post(
        reverse("admin:deliveries_delivery_export"), {"query": "status__exact=failed&q=%2B1+500+555+0031"}
    )
    rows = list(csv.DictReader(io.StringIO(cast(StreamingHttpResponse, response).getvalue().decode())))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment;" in response["Content-Disposition"]
    assert [(r["to"], r["status"]) for r in rows] == [("+15005550031", "failed")]
    assert rows[0]["body"] == '\'=HYPERLINK("http://x")'  # a spreadsheet must not run it as a formula

    response = client.post(
        reverse("admin:deliveries_delivery_export"), {"query": "status__exact=failed&error_code=21211"}
    )
    rows = list(csv.DictReader(io.StringIO(cast(StreamingHttpResponse, response).getvalue().decode())))
    assert [r["id"] for r in rows] == [str(d.pk) for d in reversed(failed)]  # the list's order: newest first
    assert {r["error_code"] for r in rows} == {"21211"} and tenant.auth_token not in str(rows)

    logged = sorted(LogEntry.objects.filter(user=user).values_list("object_repr", "change_message"))
    assert logged == [
        ("CSV export", "Exported deliveries as CSV; filters: status__exact=failed&error_code=21211"),
        ("CSV export", "Exported deliveries as CSV; filters: status__exact=failed&q=%2B1+500+555+0031"),
    ]


# --- the delivery page ------------------------------------------------------------------------------------


def test_the_delivery_page_is_read_only_with_a_timeline_and_never_a_secret(
    intake: Intake, tenant: Tenant, fake_twilio: FakeTwilio, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    fake_twilio.plan("429")
    intake.run(tenant, body="Ransomware on fs-01")
    delivery = Delivery.objects.get()
    StatusEvent.objects.create(
        delivery=delivery,
        message_sid=delivery.twilio_sid,
        message_status="delivered",
        payload={"MessageStatus": "delivered"},
    )
    client, _ = _as("operator")

    html = client.get(reverse("admin:deliveries_delivery_change", args=[delivery.pk])).content.decode()
    timeline = html[html.index('id="timeline"') :]
    assert timeline.index('data-attempt="1"') < timeline.index('data-attempt="2"') < timeline.index("status callback")
    assert "20429 Too many concurrent requests to Twilio" in timeline and "Accepted by Twilio" in timeline
    assert delivery.attempts.get(number=1).twilio_request_id in timeline
    assert "Ransomware on fs-01" in html and delivery.idempotency_key in html and "dr-general/ext-twilio-rule" in html
    assert 'name="_save"' not in html and "<textarea" not in html  # nothing to edit
    assert 'id="resend-button"' in html
    assert tenant.jwt not in html and tenant.auth_token not in html

    assert tenant.account_sid in html  # the account it went through: its credential, never the token
    credential_page = client.get(reverse("admin:deliveries_credential_change", args=[delivery.credential_id]))
    assert credential_page.status_code == 200 and tenant.account_sid in credential_page.content.decode()
    assert tenant.auth_token not in credential_page.content.decode()


def test_a_soc_lead_sees_no_resend_button(tenant: Tenant, fake_twilio: FakeTwilio) -> None:
    delivery = _failed(tenant, fake_twilio)
    client, _ = _as("soc_lead")
    html = client.get(reverse("admin:deliveries_delivery_change", args=[delivery.pk])).content.decode()
    assert "resend" not in html.lower()


def test_the_delivery_page_says_why_an_unsubscribed_organisation_cannot_be_resent(
    tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    delivery = _failed(tenant, fake_twilio)
    services.organization_record_event(oid=tenant.oid, event_name="unsubscribe")
    client, _ = _as("operator")
    html = client.get(reverse("admin:deliveries_delivery_change", args=[delivery.pk])).content.decode()
    assert 'id="resend-button"' not in html
    assert f"Resend unavailable: organisation {tenant.oid} has unsubscribed from the extension" in html


# --- resend through the pages --------------------------------------------------------------------------------


def test_the_bulk_action_shows_a_confirmation_listing_what_will_be_sent_and_what_will_not(
    tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    sendable = _failed(tenant, fake_twilio, to_number="+15005550041")
    delivered = make_delivery(tenant, status="delivered", to_number="+15005550042")
    other = Tenant(oid="org-gone", jwt="x", account_sid="AC" + "0" * 32, auth_token="t")
    gone = make_delivery(other, status="failed", to_number="+15005550043")
    services.organization_record_event(oid="org-gone", event_name="unsubscribe")
    client, _ = _as("operator")

    response = client.post(
        reverse(CHANGELIST),
        {
            "action": "resend_selected",
            "_selected_action": [sendable.pk, delivered.pk, gone.pk],
            "index": 0,
        },
    )
    html = response.content.decode()
    assert response.status_code == 200 and "admin/deliveries/delivery/resend_confirmation.html" in [
        t.name for t in response.templates
    ]
    assert {c.delivery.pk for c in response.context["sendable"]} == {sendable.pk, delivered.pk}
    assert "+15005550043 (org-gone): organisation org-gone has unsubscribed from the extension." in html
    assert "Unusual: Twilio reported it delivered" in html and 'name="unusual_confirmed"' in html
    assert 'name="reason"' in html and len(fake_twilio.posts()) == 1


def test_a_resend_without_a_reason_or_without_the_extra_confirmation_sends_nothing(
    tenant: Tenant, fake_twilio: FakeTwilio, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    failed = _failed(tenant, fake_twilio, to_number="+15005550051")
    delivered = make_delivery(tenant, status="delivered", to_number="+15005550052")
    client, user = _as("operator")
    url = reverse("admin:deliveries_delivery_resend")

    with django_capture_on_commit_callbacks(execute=True):
        no_reason = client.post(url, {"ids": [failed.pk, delivered.pk], "reason": "  ", "unusual_confirmed": "on"})
        unconfirmed = client.post(url, {"ids": [failed.pk, delivered.pk], "reason": "pager was off"})
    assert no_reason.status_code == 200 and "This field is required." in no_reason.content.decode()
    assert unconfirmed.status_code == 200 and "Tick the box to confirm" in unconfirmed.content.decode()
    assert len(fake_twilio.posts()) == 1 and set(Delivery.objects.values_list("status", flat=True)) == {
        "failed",
        "delivered",
    }

    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(
            url,
            {
                "ids": [failed.pk, delivered.pk],
                "reason": "pager was off",
                "unusual_confirmed": "on",
                "next": reverse(CHANGELIST) + "?status__exact=failed",
            },
        )
    assert done.status_code == 302 and done["Location"] == reverse(CHANGELIST) + "?status__exact=failed"
    assert len(fake_twilio.posts()) == 3
    assert set(Attempt.objects.filter(trigger="resend").values_list("delivery_id", "triggered_by", "reason")) == {
        (failed.pk, user.pk, "pager was off"),
        (delivered.pk, user.pk, "pager was off"),
    }
    assert LogEntry.objects.filter(user=user, change_message="Resend requested: pager was off").count() == 2


def test_the_resend_button_page_resends_one_and_returns_to_it(
    tenant: Tenant, fake_twilio: FakeTwilio, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    delivery = _failed(tenant, fake_twilio)
    client, _ = _as("operator")
    page = client.get(reverse("admin:deliveries_delivery_resend_one", args=[delivery.pk]))
    assert page.status_code == 200 and [c.delivery.pk for c in page.context["sendable"]] == [delivery.pk]

    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(
            reverse("admin:deliveries_delivery_resend_one", args=[delivery.pk]), {"reason": "new number"}
        )
    assert done.status_code == 302 and done["Location"] == reverse(
        "admin:deliveries_delivery_change", args=[delivery.pk]
    )
    assert Delivery.objects.get(pk=delivery.pk).status == "queued" and len(fake_twilio.posts()) == 2


def test_a_bulk_resend_over_the_maximum_is_refused(tenant: Tenant, fake_twilio: FakeTwilio, settings: Any) -> None:
    settings.ADMIN_RESEND_MAX = 2
    deliveries = [make_delivery(tenant, status="failed", to_number=f"+1500555006{i}") for i in range(3)]
    client, _ = _as("operator")
    response = client.post(
        reverse(CHANGELIST),
        {
            "action": "resend_selected",
            "_selected_action": [d.pk for d in deliveries],
            "index": 0,
        },
        follow=True,
    )
    assert "At most 2 deliveries can be resent at once (ADMIN_RESEND_MAX)" in response.content.decode()
    direct = client.post(
        reverse("admin:deliveries_delivery_resend"), {"ids": [d.pk for d in deliveries], "reason": "x"}
    )
    assert direct.status_code == 302
    assert set(Delivery.objects.values_list("status", flat=True)) == {"failed"} and fake_twilio.posts() == []


# --- opt-outs --------------------------------------------------------------------------------------------------


def test_an_operator_clears_an_opt_out_with_a_reason_and_a_soc_lead_cannot(tenant: Tenant) -> None:
    org = Organization.objects.create(oid=tenant.oid)
    opt_out = OptOut.objects.create(organization=org, sender=tenant.sender, recipient=tenant.recipient)
    url = reverse("admin:deliveries_optout_changelist")

    lead, _ = _as("soc_lead")
    lead_list = lead.get(url)
    assert lead_list.status_code == 200 and tenant.recipient in lead_list.content.decode()
    lead.post(url, {"action": "clear_selected", "_selected_action": [opt_out.pk], "apply": "1", "reason": "x"})
    assert OptOut.objects.get().cleared_at is None

    operator, user = _as("operator")
    confirm = operator.post(url, {"action": "clear_selected", "_selected_action": [opt_out.pk]})
    assert confirm.status_code == 200 and 'name="reason"' in confirm.content.decode()
    done = operator.post(
        url, {"action": "clear_selected", "_selected_action": [opt_out.pk], "apply": "1", "reason": "texted START"}
    )
    assert done.status_code == 302
    cleared = OptOut.objects.get()
    assert (cleared.cleared_by, cleared.cleared_reason) == (user, "texted START") and cleared.cleared_at is not None


# --- the index at a glance ------------------------------------------------------------------------------------


def test_the_index_shows_counts_linking_to_filtered_lists_and_a_local_svg_chart(tenant: Tenant) -> None:
    for status in ["pending", "sending", "failed", "failed", "ambiguous", "queued"]:
        make_delivery(tenant, status=status)
    client, _ = _as("soc_lead")

    response = client.get(reverse("admin:index"))
    html = response.content.decode()
    glance = html[html.index('id="at-a-glance"') :]
    assert (
        response.status_code == 200
        and "<svg" in glance
        and "http" not in glance.split("</svg>")[0].split("<svg")[1].replace("http://www.w3.org", "")
    )
    assert "Last 24 hours: 6 deliveries" in glance and "Last 7 days: 6 deliveries" in glance
    assert off_site_addresses(html) == set()
    counts = response.context["glance"]
    assert (counts.waiting, counts.failed_24h, counts.ambiguous) == (2, 2, 1)

    for link_id, expected in [
        ("glance-waiting", {"pending", "sending"}),
        ("glance-failed", {"failed"}),
        ("glance-ambiguous", {"ambiguous"}),
    ]:
        start = glance.index(f'id="{link_id}" href="') + len(f'id="{link_id}" href="')
        link = glance[start : glance.index('"', start)].replace("&amp;", "&")
        listed = client.get(link)
        assert listed.status_code == 200, link
        assert {d.status for d in _listed(listed)} == expected


def test_the_index_shows_no_glance_to_staff_without_a_role(tenant: Tenant) -> None:
    make_delivery(tenant)
    client, _ = _as("staff")
    assert 'id="at-a-glance"' not in client.get(reverse("admin:index")).content.decode()


def test_held_back_deliveries_are_listed_by_reason_and_the_page_says_why(
    tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    from deliveries.models import OptOut

    sent = make_delivery(tenant)
    services.delivery_send(delivery_id=str(sent.id))
    OptOut.objects.create(organization=sent.organization, sender=tenant.sender, recipient=tenant.recipient)
    held = make_delivery(tenant, body="later alert")
    services.delivery_send(delivery_id=str(held.id))
    client, _ = _as("soc_lead")

    listing = client.get(reverse(CHANGELIST), {"hold__exact": "opted_out"})
    page = client.get(reverse("admin:deliveries_delivery_change", args=[held.pk])).content.decode()

    assert [d.pk for d in _listed(listing)] == [held.pk]
    assert "Recipient opted out" in page and "The recipient opted out of texts from this sender (Twilio 21610)." in page


@pytest.mark.parametrize("body", [" =1+1", '\n=HYPERLINK("http://x")', "  +cmd", "\n\n@SUM(A1)", " \t-2+3"])
def test_the_export_guards_a_formula_behind_leading_white_space(body: str) -> None:
    # Issue 10, item 9: a spreadsheet skips the space or line feed and runs the formula.
    from deliveries.selectors.records import _cell

    assert _cell(body) == "'" + body
    assert _cell("+14155550100") == "+14155550100"
