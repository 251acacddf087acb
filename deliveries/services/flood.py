"""Limits: flood control on texts, the caps on calls, opt-outs and the per-account cap. Whether a
delivery must be held back instead of sent, or wait its turn at its Twilio account, and why, in words.

Decided by the send claim (services.send) while it holds the organisation's row lock (and, for the
per-account cap, its account's), so the counts are exact across any number of workers on any number of
machines: the database is the shared state, not process memory. Nothing here writes.

Only what reached Twilio counts against a budget: a delivery Twilio accepted (`sent_at`), one in flight
(`sending`) or one that may exist there (`ambiguous`). A text Twilio refused, or that never left, spends
nobody's budget. Calls have their own limits, and an escalation step (a call, the next person's text)
is never held back by the recipient's limit on texts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q, QuerySet

from deliveries.models import Attempt, Credential, Delivery, OptOut

Hold = Delivery.Hold
Status = Delivery.Status
# Twilio has it, had it, or may have it (in flight, or an ambiguous answer).
REACHED_TWILIO = Q(sent_at__isnull=False) | Q(
    status__in=[
        Status.SENDING,
        Status.AMBIGUOUS,
        Status.QUEUED,
        Status.ACCEPTED,
        Status.SENT,
        Status.DELIVERED,
        Status.UNDELIVERED,
    ]
)


@dataclass(frozen=True)
class Decision:
    hold: str = ""  # a Delivery.Hold to record, or "" to send
    reason: str = ""  # why, in words (the desk shows it)
    busy: bool = False  # its Twilio account has no room now: wait a moment


def hold_for(delivery: Delivery, trigger: str, now: datetime) -> Decision:
    """An operator's resend is a human decision and is never held back, though it waits its turn at a
    busy account too; a flood-control summary is not subject to the limits it reports on."""
    busy = _account_busy(delivery)
    if trigger == Attempt.Trigger.RESEND:
        return Decision(busy=busy)
    if _opted_out(delivery):
        return Decision(Hold.OPTED_OUT, "The recipient opted out of texts from this sender (Twilio 21610).", busy)
    if delivery.kind == Delivery.Kind.SUMMARY:
        return Decision(busy=busy)
    hold, reason = (
        _call_limit(delivery, now) if delivery.channel == Delivery.Channel.VOICE else _text_limit(delivery, now)
    )
    return Decision(hold, reason, busy)


def _counted(delivery: Delivery, since: datetime) -> QuerySet[Delivery]:
    """The organisation's deliveries of the same channel that reached Twilio since `since`, but this one."""
    return (
        Delivery.objects.filter(
            organization_id=delivery.organization_id, channel=delivery.channel, claimed_at__gte=since
        )
        .filter(REACHED_TWILIO)
        .exclude(id=delivery.id)
    )


def _text_limit(delivery: Delivery, now: datetime) -> tuple[str, str]:
    window, duplicate_seconds = settings.FLOOD_WINDOW_SECONDS, settings.FLOOD_DUPLICATE_SECONDS
    recipient_limit, org_limit = settings.FLOOD_RECIPIENT_LIMIT, settings.FLOOD_ORG_LIMIT
    in_window = now - timedelta(seconds=window)
    recent = now - timedelta(seconds=duplicate_seconds)
    mine = Q(to_number=delivery.to_number)
    counts = _counted(delivery, min(in_window, recent)).aggregate(
        # A failed copy reached nobody: not a repeat.
        duplicates=Count("id", filter=mine & Q(claimed_at__gte=recent, body=delivery.body) & ~Q(status=Status.FAILED)),
        to_recipient=Count("id", filter=mine & Q(claimed_at__gte=in_window)),
        from_org=Count("id", filter=Q(claimed_at__gte=in_window)),
    )
    if duplicate_seconds and counts["duplicates"]:
        return Hold.DUPLICATE, f"The same text went to this recipient less than {duplicate_seconds} s before."
    step = delivery.escalates_id is not None
    if recipient_limit and not step and counts["to_recipient"] >= recipient_limit:
        return Hold.RECIPIENT_LIMIT, f"{recipient_limit} texts to this recipient within {window} s."
    if org_limit and counts["from_org"] >= org_limit:
        return Hold.ORG_LIMIT, f"{org_limit} texts from this organisation within {window} s."
    return "", ""


def _call_limit(delivery: Delivery, now: datetime) -> tuple[str, str]:
    """Carriers mark a caller as spam for far less than a text's limits, and a call costs more."""
    limits = (
        (settings.CALL_RECIPIENT_LIMIT_15_MINUTES, 15, True),
        (settings.CALL_RECIPIENT_LIMIT_HOUR, 60, True),
        (settings.CALL_ORG_LIMIT_HOUR, 60, False),
    )
    for limit, minutes, per_recipient in limits:
        if not limit:
            continue
        calls = _counted(delivery, now - timedelta(minutes=minutes))
        if per_recipient and calls.filter(to_number=delivery.to_number).count() >= limit:
            return Hold.RECIPIENT_CALLS, f"{limit} calls to this recipient within {minutes} minutes."
        if not per_recipient and calls.count() >= limit:
            return Hold.ORG_CALLS, f"{limit} calls from this organisation within {minutes} minutes."
    return "", ""


def _opted_out(delivery: Delivery) -> bool:
    return OptOut.objects.filter(
        organization_id=delivery.organization_id,
        sender=delivery.from_number,
        recipient=delivery.to_number,
        cleared_at__isnull=True,
    ).exists()


def _account_busy(delivery: Delivery) -> bool:
    """Whether the delivery's Twilio account has TWILIO_MAX_CONCURRENT_PER_ACCOUNT requests in flight.
    Organisations may share a Twilio account, and the claim holds only its own organisation's lock: the
    account's oldest credential row is locked too, so every claim on the account counts in turn (SQLite
    has no row locks; its write transactions already run one at a time). Twilio answers 429 beyond its
    own concurrency cap: waiting our turn costs nothing, a 429 costs a retry."""
    cap = settings.TWILIO_MAX_CONCURRENT_PER_ACCOUNT
    if not cap or delivery.credential is None:  # read after the claim's locks, and kept for its POST
        return False
    account = delivery.credential.account_sid
    if connection.features.has_select_for_update:
        Credential.objects.select_for_update(no_key=True).filter(account_sid=account).order_by("id").values(
            "id"
        ).first()
    in_flight = Delivery.objects.filter(status=Status.SENDING, credential__account_sid=account)
    return in_flight.count() >= cap
