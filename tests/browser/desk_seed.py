"""A desk as a SOC lead meets it: three organisations by name, alerts acknowledged by text and by call,
escalated with `next`, failed, undelivered, held back, ambiguous with reconciliation given up, and a
week of ordinary traffic. The records are written as the services leave them (deliveries, attempts,
status callbacks, replies, escalation timers), at chosen times, so that the pages show real shapes."""

from __future__ import annotations

import random
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from django.utils import timezone

from deliveries.models import (
    AlertRequest,
    Attempt,
    Credential,
    Delivery,
    Escalation,
    InboundMessage,
    Organization,
    StatusEvent,
)
from tests.conftest import Tenant, make_delivery

ACME_LEAD = "+14155550141"
ACME_SECOND = "+12125550101"
ACME_THIRD = "+16175550103"
HOST_ALERT = "[CRIT] Ransomware canary modified on fs-01 by svchost.exe (det-44001)"


@dataclass
class Desk:
    tenant: Tenant
    beta: Tenant
    acked_by_call: AlertRequest
    acked_text: Delivery
    failed: Delivery
    undelivered: Delivery
    held: Delivery
    needs_operator: Delivery
    escalating: AlertRequest
    refused_credential: Delivery
    extra: list[Delivery] = field(default_factory=list)


def other_tenant(tenant: Tenant) -> Tenant:
    return Tenant(
        oid=str(uuid.uuid4()),
        jwt="eyJ" + secrets.token_urlsafe(40),
        account_sid="AC" + secrets.token_hex(16),
        auth_token=secrets.token_hex(16),
        sender="+15005550007",
    )


def _at(d: Delivery, when: datetime, **fields: Any) -> Delivery:
    Delivery.objects.filter(pk=d.pk).update(created_at=when, updated_at=when, **fields)
    d.refresh_from_db()
    return d


def _attempt(d: Delivery, number: int, when: datetime, **fields: Any) -> Attempt:
    fields.setdefault("trigger", Attempt.Trigger.AUTOMATIC if number == 1 else Attempt.Trigger.RETRY)
    fields.setdefault("outcome", Attempt.Outcome.ACCEPTED)
    fields.setdefault("http_status", 201)
    fields.setdefault("duration_ms", 140)
    fields.setdefault("twilio_request_id", "RQ" + secrets.token_hex(16))
    return Attempt.objects.create(
        delivery=d, number=number, started_at=when, finished_at=when + timedelta(milliseconds=140), **fields
    )


def _status(d: Delivery, when: datetime, status: str, code: int | None = None) -> None:
    event = StatusEvent.objects.create(
        delivery=d, message_sid=d.twilio_sid, message_status=status, error_code=code, payload={"Status": status}
    )
    StatusEvent.objects.filter(pk=event.pk).update(received_at=when)


def _alert(tenant: Tenant, body: str, to: str, when: datetime, **fields: Any) -> Delivery:
    fields.setdefault("ident", "dr-general/ext-twilio")
    fields.setdefault("inv_id", "inv-" + secrets.token_hex(4))
    d = make_delivery(tenant, body=body, to_number=to, original_length=len(body), **fields)
    return _at(d, when)


def _same_alert(tenant: Tenant, text: Delivery, to: str, when: datetime, **fields: Any) -> Delivery:
    """Another delivery of `text`'s alert (a second recipient, a call, a notice), created at `when`."""
    fields.setdefault("status", "delivered")
    fields.setdefault("twilio_sid", "SM" + secrets.token_hex(16))
    d = make_delivery(
        tenant,
        body=fields.pop("body", text.body),
        to_number=to,
        alert=text.alert,
        idempotency_key=text.idempotency_key,
        ident=fields.pop("ident", text.ident),
        inv_id=text.inv_id,
        **fields,
    )
    return _at(d, when)


def _call_with_keypress(tenant: Tenant, text: Delivery, called: datetime) -> datetime:
    """The escalation's call to the text's recipient: it rings, is answered, 1 is pressed. Returns when."""
    call = _same_alert(
        tenant,
        text,
        text.to_number,
        called,
        channel="voice",
        escalates=text,
        segments=0,
        twilio_sid="CA" + secrets.token_hex(16),
    )
    _attempt(call, 1, called + timedelta(seconds=1))
    for seconds, status in ((2, "ringing"), (9, "in-progress"), (16, "gather:1"), (30, "completed")):
        _status(call, called + timedelta(seconds=seconds), status)
    timer = Escalation.objects.create(
        alert=text, action="call", ack_within_seconds=300, due_at=called, state="fired", fired_at=called, result=call
    )
    Escalation.objects.filter(pk=timer.pk).update(created_at=text.created_at)
    return called + timedelta(seconds=16)


def _acked_by_call(tenant: Tenant, now: datetime) -> tuple[AlertRequest, Delivery]:
    """A text to two people, nobody replies, the lead is called after 5 minutes and presses 1."""
    start = now - timedelta(minutes=9)
    sid = "SM" + secrets.token_hex(16)
    text = _alert(
        tenant,
        HOST_ALERT,
        ACME_LEAD,
        start,
        ident="dr-general/ransomware-canary",
        inv_id="inv-7f3a21",
        ack_code="K7Q",
        status="delivered",
        twilio_sid=sid,
        sent_at=start,
        notify_on_ack=True,
    )
    second = _same_alert(tenant, text, ACME_SECOND, start, ack_code="M2P")
    for d in (text, second):
        _attempt(d, 1, start + timedelta(seconds=1))
        _status(d, start + timedelta(seconds=3), "sent")
        _status(d, start + timedelta(seconds=6), "delivered")
    acked_at = _call_with_keypress(tenant, text, start + timedelta(minutes=5))
    Delivery.objects.filter(pk=text.pk).update(acknowledged_at=acked_at, acknowledged_by=ACME_LEAD, ack_channel="voice")
    AlertRequest.objects.filter(pk=cast(int, text.alert_id)).update(created_at=start)
    notice = _same_alert(
        tenant,
        text,
        ACME_SECOND,
        acked_at + timedelta(seconds=1),
        kind="notice",
        ident="ext-twilio acknowledgement",
        body=f"ext-twilio: acknowledged by {ACME_LEAD}: {HOST_ALERT[:60]}",
    )
    _attempt(notice, 1, acked_at + timedelta(seconds=2))
    text.refresh_from_db()
    assert text.alert is not None
    return text.alert, text


def _acked_by_text(tenant: Tenant, now: datetime) -> Delivery:
    start = now - timedelta(minutes=34)
    text = _alert(
        tenant,
        "[HIGH] Credential dumping (lsass access) on ws-22.corp.local by rundll32.exe",
        ACME_SECOND,
        start,
        ack_code="Q4R",
        status="delivered",
        twilio_sid="SM" + secrets.token_hex(16),
    )
    _attempt(text, 1, start + timedelta(seconds=1))
    _status(text, start + timedelta(seconds=5), "delivered")
    replied = start + timedelta(seconds=94)
    Delivery.objects.filter(pk=text.pk).update(acknowledged_at=replied, acknowledged_by=ACME_SECOND, ack_channel="sms")
    reply = InboundMessage.objects.create(
        organization=text.organization,
        message_sid="SM" + secrets.token_hex(16),
        from_number=ACME_SECOND,
        to_number=tenant.sender,
        body="Q4R on it",
        meaning="ack",
        acknowledged=text,
        payload={},
    )
    InboundMessage.objects.filter(pk=reply.pk).update(received_at=replied)
    text.refresh_from_db()
    return text


def _given_up(tenant: Tenant, now: datetime) -> Delivery:
    """An ambiguous send, then six look-ups at Twilio that all failed: reconciliation gave up."""
    ambiguous = _alert(
        tenant,
        "[CRIT] Mimikatz signature on hr-02",
        ACME_LEAD,
        now - timedelta(hours=5),
        status="ambiguous",
        error_message="urllib3.exceptions.ProtocolError",
        attempt_count=7,
        last_outcome="reconcile_failed",
    )
    _attempt(
        ambiguous,
        1,
        ambiguous.created_at,
        outcome="ambiguous",
        http_status=None,
        twilio_message="urllib3.exceptions.ProtocolError",
    )
    for n in range(2, 8):
        _attempt(
            ambiguous,
            n,
            ambiguous.created_at + timedelta(minutes=2 * n),
            trigger="reconcile",
            outcome="reconcile_failed",
            http_status=None,
            twilio_message="urllib3.exceptions.ProtocolError",
        )
    return ambiguous


def _failures(tenant: Tenant, beta: Tenant, now: datetime) -> dict[str, Delivery]:
    failed = _alert(
        tenant,
        "[HIGH] Beacon to rare domain from ws-31 (det-44017)",
        "+12125550199",
        now - timedelta(minutes=47),
        status="failed",
        error_code=21211,
        error_message="Invalid 'To' Phone Number",
        attempt_count=1,
    )
    _attempt(failed, 1, failed.created_at, outcome="permanent", http_status=400, twilio_code=21211)
    undelivered = _alert(
        tenant,
        "[MED] Suspicious scheduled task on fin-07",
        ACME_THIRD,
        now - timedelta(hours=2),
        status="undelivered",
        error_code=30003,
        twilio_sid="SM" + secrets.token_hex(16),
    )
    _attempt(undelivered, 1, undelivered.created_at)
    _status(undelivered, undelivered.created_at + timedelta(seconds=40), "undelivered", 30003)
    held = _alert(
        beta,
        "[MED] New admin user on dc-3",
        "+16175550188",
        now - timedelta(minutes=7),
        status="suppressed",
        hold="recipient_limit",
        status_reason="Recipient's limit reached (20 an hour)",
    )
    ambiguous = _given_up(tenant, now)
    return {"failed": failed, "undelivered": undelivered, "held": held, "needs_operator": ambiguous}


def _escalating(tenant: Tenant, now: datetime) -> AlertRequest:
    """`next`: the first person was texted 30 s ago; in 4:30 the second is."""
    start = now - timedelta(seconds=30)
    text = _alert(
        tenant,
        "[HIGH] Impossible travel for j.doe (login from two countries in 5 min)",
        ACME_THIRD,
        start,
        ack_code="B8N",
        status="delivered",
        twilio_sid="SM" + secrets.token_hex(16),
    )
    _attempt(text, 1, start + timedelta(seconds=1))
    _status(text, start + timedelta(seconds=3), "delivered")
    Escalation.objects.create(
        alert=text,
        action="next",
        ack_within_seconds=300,
        remaining=[ACME_SECOND, ACME_LEAD],
        due_at=start + timedelta(seconds=300),
    )
    AlertRequest.objects.filter(pk=cast(int, text.alert_id)).update(created_at=start)
    assert text.alert is not None
    return text.alert


def _refused_credential(beta: Tenant, now: datetime) -> Delivery:
    d = _alert(
        beta,
        "[LOW] Port scan from 10.0.4.12",
        "+16175550177",
        now - timedelta(hours=3),
        status="failed",
        error_code=20003,
        error_message="Authenticate",
    )
    _attempt(d, 1, d.created_at, outcome="permanent", http_status=401, twilio_code=20003)
    assert d.credential is not None
    Credential.objects.filter(pk=cast(int, d.credential_id)).update(rejected_at=d.created_at)
    return d


def _traffic(tenant: Tenant, now: datetime, rng: random.Random) -> list[Delivery]:
    hosts = ["web-01", "db-02", "vpn-gw", "mail-03", "k8s-node-4", "ws-48", "jump-01"]
    made = []
    for i in range(40):
        when = now - timedelta(hours=rng.randrange(1, 24 * 7), minutes=rng.randrange(60))
        d = _alert(
            tenant,
            f"[LOW] Unusual process tree on {rng.choice(hosts)} (det-{43000 + i})",
            rng.choice([ACME_LEAD, ACME_SECOND, ACME_THIRD]),
            when,
            ack_code=f"{i:03d}"[-3:],
            status="delivered",
            twilio_sid="SM" + secrets.token_hex(16),
        )
        if rng.random() < 0.7:
            waited = timedelta(seconds=rng.randrange(20, 900))
            channel = rng.choice(["sms", "sms", "voice"])
            Delivery.objects.filter(pk=d.pk).update(
                acknowledged_at=when + waited, acknowledged_by=d.to_number, ack_channel=channel
            )
        made.append(d)
    return made


def seed_desk(tenant: Tenant, *, traffic: bool = True) -> Desk:
    now = timezone.now()
    beta = other_tenant(tenant)
    Organization.objects.get_or_create(oid=tenant.oid, defaults={"name": "Acme SOC"})
    Organization.objects.filter(oid=tenant.oid).update(name="Acme SOC")
    Organization.objects.create(oid=beta.oid, name="Beta Corp", subscription="subscribed")
    Organization.objects.create(oid=str(uuid.uuid4()), name="Gamma Labs", label="Gamma (EU)")
    alert, text = _acked_by_call(tenant, now)
    failures = _failures(tenant, beta, now)
    return Desk(
        tenant=tenant,
        beta=beta,
        acked_by_call=alert,
        acked_text=_acked_by_text(tenant, now),
        escalating=_escalating(tenant, now),
        refused_credential=_refused_credential(beta, now),
        extra=_traffic(tenant, now, random.Random(27)) if traffic else [],
        **failures,
    )
