"""The desk answers a SOC lead: search by what they hold, the alert page, counts that are true, names,
words instead of codes and class names, a safer resend, the CSV's acknowledgement and resend columns,
MTTA as metrics, and a 403 that names the role."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any, cast

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from deliveries import selectors, services
from deliveries.models import Attempt, Delivery, Escalation, InboundMessage, OptOut, Organization
from tests.browser.desk_seed import ACME_LEAD, ACME_SECOND, HOST_ALERT, seed_desk
from tests.conftest import Intake, Tenant, make_delivery, make_user
from tests.fakes.limacharlie import FakeLimaCharlie
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.django_db
CHANGELIST = "admin:deliveries_delivery_changelist"


def _as(role: str) -> Client:
    client = Client()
    client.force_login(make_user(role))
    return client


def _found(term: str) -> set[Any]:
    return set(selectors.delivery_search(Delivery.objects.all(), term).values_list("pk", flat=True))


# --- search ---------------------------------------------------------------------------------------


def test_the_search_finds_an_alert_by_host_detection_words_investigation_rule_and_code(tenant: Tenant) -> None:
    hit = make_delivery(
        tenant, body=HOST_ALERT, inv_id="inv-7f3a21", ident="dr-general/ransomware-canary", ack_code="K7Q"
    )
    make_delivery(tenant, body="[LOW] Port scan from 10.0.4.12", inv_id="inv-0001", ident="dr-general/scan")
    for term in ("fs-01", "ransomware canary", "RANSOM", "det-44001", "inv-7f3a21", "ransomware-canary", "k7q"):
        assert _found(term) == {hit.pk}, term
    assert _found("no such host") == set()
    assert _found("fs") == set()  # under three characters: not a text search (it would read every row)


def test_the_list_search_box_finds_by_host_and_says_what_it_understands(tenant: Tenant) -> None:
    hit = make_delivery(tenant, body=HOST_ALERT)
    make_delivery(tenant, body="[LOW] Port scan from 10.0.4.12")
    response = _as("soc_lead").get(reverse(CHANGELIST), {"q": "fs-01"})
    assert [d.pk for d in response.context["cl"].result_list] == [hit.pk]
    assert "a host, detection words" in response.content.decode()


def test_the_text_search_reads_the_trigram_index_on_postgresql(tenant: Tenant) -> None:
    """On PostgreSQL the search's expression is the one migration 0015 indexes, so the planner can use
    it; SQLite has no such index and matches the same substring by scanning."""
    hit = make_delivery(tenant, body=HOST_ALERT)
    query = selectors.delivery_search(Delivery.objects.order_by(), "fs-01")
    with connection.cursor() as cursor:
        indexes = connection.introspection.get_constraints(cursor, Delivery._meta.db_table)
        if connection.vendor == "postgresql":
            # Only bitmap scans allowed: the plan must then name the trigram index, or it cannot run the query.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_indexscan = off")
            sql, params = query.values("pk").query.sql_with_params()
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "delivery_search_trgm" in indexes and "Bitmap Index Scan on delivery_search_trgm" in plan
        else:
            assert "delivery_search_trgm" not in indexes
    assert list(query.values_list("pk", flat=True)) == [hit.pk]


@pytest.mark.parametrize("typed", ["(415) 555-0141", "+1 415 555 0141", "0014155550141", "415.555.0141"])
def test_inbound_messages_and_opt_outs_are_found_by_a_number_in_any_format(typed: str, tenant: Tenant) -> None:
    org = Organization.objects.create(oid=tenant.oid)
    InboundMessage.objects.create(
        organization=org, from_number=ACME_LEAD, to_number=tenant.sender, meaning="help", payload={}
    )
    InboundMessage.objects.create(
        organization=org, from_number=ACME_SECOND, to_number=tenant.sender, meaning="help", payload={}
    )
    OptOut.objects.create(organization=org, sender=tenant.sender, recipient=ACME_LEAD)
    OptOut.objects.create(organization=org, sender=tenant.sender, recipient=ACME_SECOND)
    client = _as("soc_lead")
    inbound = client.get(reverse("admin:deliveries_inboundmessage_changelist"), {"q": typed})
    assert [m.from_number for m in inbound.context["cl"].result_list] == [ACME_LEAD]
    opt_outs = client.get(reverse("admin:deliveries_optout_changelist"), {"q": typed})
    assert [o.recipient for o in opt_outs.context["cl"].result_list] == [ACME_LEAD]


# --- the alert page -------------------------------------------------------------------------------


def test_the_alert_page_says_who_acknowledged_by_which_channel_and_how_fast(tenant: Tenant) -> None:
    desk = seed_desk(tenant, traffic=False)
    html = _as("soc_lead").get(reverse("admin:deliveries_alertrequest_change", args=[desk.acked_by_call.pk]))
    text = " ".join(html.content.decode().split())
    assert (
        'id="alert-summary" class="alert-summary acked">Acknowledged by +1 415-555-0141 by voice after 5 min 16 s.'
        in text
    )
    assert "2 recipients · 2 texts · 1 call" in text and "pressed 1 on the call (acknowledges)" in text
    assert "not acknowledged within 5 min: calling +1 415-555-0141" in text and "ringing" in text


def test_the_escalation_state_is_in_words(tenant: Tenant) -> None:
    now = timezone.now()
    text = make_delivery(tenant, ack_code="B8N", status="sent")
    timer = Escalation.objects.create(
        alert=text,
        action="next",
        ack_within_seconds=300,
        remaining=["+12125550101", "+14155550141"],
        due_at=now + timedelta(minutes=4, seconds=32),
    )
    assert selectors.escalation_words([timer], None, now) == "step 1 of 3, next in 4:32"
    step = make_delivery(tenant, to_number="+12125550101", alert=text.alert, idempotency_key=text.idempotency_key)
    Escalation.objects.filter(pk=timer.pk).update(state="fired", fired_at=now, result=step)
    last = Escalation.objects.create(
        alert=step,
        action="next",
        ack_within_seconds=300,
        remaining=["+14155550141"],
        due_at=now + timedelta(seconds=75),
    )
    timers = list(Escalation.objects.order_by("created_at", "id"))
    assert selectors.escalation_words(timers, None, now) == "step 2 of 3, next in 1:15"
    Escalation.objects.filter(pk=last.pk).update(state="fired", fired_at=now, result=None)
    timers = list(Escalation.objects.order_by("created_at", "id"))
    assert selectors.escalation_words(timers, None, now).startswith("ran out: nobody acknowledged")
    assert selectors.escalation_words(timers, text, now).startswith("stopped: acknowledged")
    assert selectors.escalation_words([], None, now).startswith("no escalation")


def test_a_delivery_links_to_its_alert_and_the_alert_to_each_delivery(tenant: Tenant) -> None:
    d = make_delivery(tenant, body=HOST_ALERT)
    client = _as("soc_lead")
    page = client.get(reverse("admin:deliveries_delivery_change", args=[d.pk])).content.decode()
    alert_url = reverse("admin:deliveries_alertrequest_change", args=[d.alert_id])
    assert f'href="{alert_url}"' in page
    alert = client.get(alert_url).content.decode()
    assert reverse("admin:deliveries_delivery_change", args=[d.pk]) in alert


# --- words, not codes or class names --------------------------------------------------------------


def test_network_failures_are_shown_in_words_and_lookups_are_not_counted_as_sends(tenant: Tenant) -> None:
    desk = seed_desk(tenant, traffic=False)
    assert "urllib3" not in selectors.error_in_words(None, "urllib3.exceptions.ProtocolError")
    assert selectors.error_in_words(None, "urllib3.exceptions.ProtocolError").startswith(
        "the connection to Twilio broke"
    )
    assert (
        selectors.error_in_words(30003, "")
        == "30003 Unreachable handset (switched off or out of coverage; may succeed later)"
    )
    facts = selectors.delivery_facts(delivery=desk.needs_operator)
    assert (facts.sends, facts.lookups) == (1, 6) and facts.why.startswith("needs an operator")
    page = _as("soc_lead").get(reverse("admin:deliveries_delivery_change", args=[desk.needs_operator.pk]))
    html = page.content.decode()
    assert "urllib3" not in html and "1 send, plus 6 look-ups at Twilio" in html
    listed = _as("soc_lead").get(reverse(CHANGELIST), {"needs_operator": "yes"})
    assert [d.pk for d in listed.context["cl"].result_list] == [desk.needs_operator.pk]


def test_the_desk_has_its_own_name_no_view_site_no_history_and_yes_no_in_words(tenant: Tenant) -> None:
    d = make_delivery(tenant)
    client = _as("superuser")
    index = client.get(reverse("admin:index")).content.decode()
    assert "ext-twilio audit desk" in index and "Django administration" not in index and "View site" not in index
    page = client.get(reverse("admin:deliveries_delivery_change", args=[d.pk])).content.decode()
    assert "historylink" not in page and "icon-no.svg" not in page and "icon-yes.svg" not in page
    assert "see text_sent" not in page and "Organization" not in page
    assert '<div class="readonly">No</div>' in page


def test_a_403_names_the_role_that_is_needed(tenant: Tenant) -> None:
    d = make_delivery(tenant, status="failed")
    response = _as("soc_lead").get(reverse("admin:deliveries_delivery_resend_one", args=[d.pk]))
    assert response.status_code == 403
    assert "Resending needs the Operator role." in response.content.decode()
    assert "ext-twilio audit desk" in response.content.decode()


# --- counts -----------------------------------------------------------------------------------------


def test_the_counts_are_true_failed_means_failed_or_undelivered_and_unacknowledged_means_delivered(
    tenant: Tenant,
) -> None:
    for status in ("failed", "undelivered", "suppressed", "delivered"):
        make_delivery(tenant, status=status, ack_code="ABC", to_number=f"+1415555{len(status):04d}")
    make_delivery(tenant, status="failed", error_code=30007, to_number="+14155550999")
    # An alert to two people that the first acknowledged: the second is not waiting for anyone.
    first = make_delivery(tenant, status="delivered", ack_code="K7Q", to_number="+14155550777")
    make_delivery(
        tenant,
        status="delivered",
        ack_code="M2P",
        to_number="+14155550778",
        alert=first.alert,
        idempotency_key=first.idempotency_key,
    )
    Delivery.objects.filter(pk=first.pk).update(acknowledged_at=timezone.now(), acknowledged_by=first.to_number)
    glance = selectors.at_a_glance()
    assert (glance.failed_24h, glance.held_24h, glance.unacknowledged) == (3, 1, 1)
    assert [(r.code, r.count) for r in glance.errors_24h] == [(None, 2), (30007, 1)]
    unacked = _as("soc_lead").get(reverse(CHANGELIST), {"acknowledged": "no"})
    assert [d.to_number for d in unacked.context["cl"].result_list] == ["+14155550009"]


def test_mtta_is_on_the_index_and_in_the_metrics(client: Any, tenant: Tenant) -> None:
    now = timezone.now()
    for seconds, channel in ((10, "sms"), (20, "sms"), (30, "voice"), (100, "sms")):
        d = make_delivery(tenant, ack_code="ABC", status="delivered")
        Delivery.objects.filter(pk=d.pk).update(
            acknowledged_at=d.created_at + timedelta(seconds=seconds), acknowledged_by=d.to_number, ack_channel=channel
        )
    table = selectors.mtta(since=now - timedelta(hours=1))
    by_channel = {r.key: (r.count, r.p50.total_seconds(), r.p90.total_seconds()) for r in table.by_channel}
    assert by_channel == {"sms": (3, 20, 100), "voice": (1, 30, 30)}
    index = _as("soc_lead").get(reverse("admin:index")).content.decode()
    assert 'id="glance-mtta"' in index and "20 s" in index
    metrics = client.get("/metrics").content.decode()
    assert 'ext_twilio_mtta_by_channel_seconds{channel="sms",quantile="0.5"} 20.0' in metrics
    assert 'ext_twilio_mtta_by_channel_seconds{channel="sms",quantile="0.9"} 100.0' in metrics


# --- names --------------------------------------------------------------------------------------------


def test_an_organisation_is_named_from_limacharlie_at_subscribe_and_update(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie
) -> None:
    fake_lc.set_name(tenant.oid, "Acme SOC")
    org = {"oid": tenant.oid, "jwt": tenant.jwt}
    assert intake.send("event", {"org": org, "event_name": "subscribe"}).status_code == 200
    assert Organization.objects.get(oid=tenant.oid).name == "Acme SOC"
    assert any(path == f"/v1/orgs/{tenant.oid}" for path, _ in fake_lc.requests)

    fake_lc.set_name(tenant.oid, "Acme Security Operations")
    assert intake.send("event", {"org": org, "event_name": "update"}).status_code == 200
    assert Organization.objects.get(oid=tenant.oid).name == "Acme Security Operations"


def test_a_name_that_cannot_be_read_never_fails_the_event(
    intake: Intake, tenant: Tenant, fake_lc: FakeLimaCharlie
) -> None:
    fake_lc.set_name(tenant.oid, "Acme SOC")
    fake_lc.fail_next(500, times=5)
    org = {"oid": tenant.oid, "jwt": tenant.jwt}
    assert intake.send("event", {"org": org, "event_name": "subscribe"}).status_code == 200
    stored = Organization.objects.get(oid=tenant.oid)
    assert (stored.subscription, stored.name) == ("subscribed", "")
    bad = {"oid": tenant.oid, "jwt": "eyJnot-this-org"}
    assert intake.send("event", {"org": bad, "event_name": "update"}).status_code == 200
    assert Organization.objects.get(oid=tenant.oid).name == ""


def test_an_operator_labels_an_organisation_and_the_label_wins_but_a_soc_lead_cannot(tenant: Tenant) -> None:
    d = make_delivery(tenant)
    Organization.objects.filter(pk=d.organization_id).update(name="acme-prod-7")
    url = reverse("admin:deliveries_organization_change", args=[d.organization_id])
    assert _as("soc_lead").post(url, {"label": "Nope"}).status_code == 403
    response = _as("operator").post(url, {"label": "Acme SOC"})
    assert response.status_code == 302
    org = Organization.objects.get(pk=d.organization_id)
    assert (org.label, org.name, org.display_name) == ("Acme SOC", "acme-prod-7", "Acme SOC")
    listing = _as("soc_lead").get(reverse(CHANGELIST)).content.decode()
    assert "Acme SOC" in listing and tenant.oid not in listing


# --- resend and export --------------------------------------------------------------------------------


def test_a_resend_through_a_credential_twilio_refused_is_refused_and_says_so(
    tenant: Tenant, fake_twilio: FakeTwilio
) -> None:
    d = make_delivery(tenant, status="undelivered", error_code=30003)
    assert d.credential is not None
    type(d.credential).objects.filter(pk=d.credential_id).update(rejected_at=timezone.now())
    d.refresh_from_db()
    operator = cast(User, make_user("operator"))
    with pytest.raises(services.Refused, match="Twilio refused its credential .*20003"):
        services.delivery_resend(delivery=d, by=operator, reason="retry")
    assert Delivery.objects.get(pk=d.pk).status == "undelivered" and fake_twilio.posts() == []


def test_the_resend_confirmation_shows_the_text_and_whether_the_alert_was_acknowledged(tenant: Tenant) -> None:
    desk = seed_desk(tenant, traffic=False)
    second = Delivery.objects.get(alert=desk.acked_by_call, to_number=ACME_SECOND, kind="alert")
    page = _as("operator").get(reverse("admin:deliveries_delivery_resend_one", args=[second.pk])).content.decode()
    assert "Ransomware canary modified on fs-01" in page
    assert f"<b>Yes</b>: acknowledged by {ACME_LEAD} by voice" in page
    assert "This delivery will be sent again" in page


def test_the_resend_message_links_to_what_was_resent_in_good_grammar(
    tenant: Tenant, fake_twilio: FakeTwilio, django_capture_on_commit_callbacks: Any
) -> None:
    d = make_delivery(tenant, status="failed")
    client = _as("operator")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:deliveries_delivery_resend"), {"ids": [d.pk], "reason": "fixed"}, follow=True
        )
    message = " ".join(str(m) for m in response.context["messages"])
    page = reverse("admin:deliveries_delivery_change", args=[d.pk])
    assert message.startswith("1 delivery resent (") and f'href="{page}"' in message and "its page" in message


def test_the_export_is_a_post_with_the_acknowledgement_channel_kind_hold_and_resend(
    tenant: Tenant, fake_twilio: FakeTwilio, django_capture_on_commit_callbacks: Any
) -> None:
    desk = seed_desk(tenant, traffic=False)
    failed = desk.failed
    operator = cast(User, make_user("operator"))
    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_resend(delivery=failed, by=operator, reason="number fixed in the rule")
    client = _as("soc_lead")
    assert client.get(reverse("admin:deliveries_delivery_export")).status_code == 405
    response = client.post(reverse("admin:deliveries_delivery_export"), {"query": ""})
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(cast(StreamingHttpResponse, response).getvalue().decode()))}
    text = Delivery.objects.get(alert=desk.acked_by_call, to_number=ACME_LEAD, channel="sms")
    acked = rows[str(text.pk)]
    assert (acked["acknowledged_by"], acked["acknowledged_channel"], acked["kind"], acked["channel"]) == (
        ACME_LEAD,
        "voice",
        "alert",
        "sms",
    )
    assert text.acknowledged_at is not None and acked["acknowledged_at"] == text.acknowledged_at.isoformat()
    assert rows[str(desk.held.pk)]["hold_reason"] == "recipient_limit"
    resent = rows[str(failed.pk)]
    assert (resent["resend_operator"], resent["resend_reason"]) == (operator.username, "number fixed in the rule")
    assert Attempt.objects.filter(delivery=failed, trigger="resend").count() == 1
    assert rows[str(desk.held.pk)]["organization_name"] == "Beta Corp"
