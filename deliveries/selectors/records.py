"""Reads of single records and plain lists for the audit desk: opt-outs, a delivery's own timeline and
facts, the figures /metrics reads, and the CSV export. Nothing here writes.

Every list query here must stay fast on a million deliveries: each filter maps onto an index of
Delivery or Attempt (see their Meta), and nothing counts a whole table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, OuterRef, QuerySet, Subquery

from deliveries.models import Attempt, Delivery, OptOut, StatusEvent
from deliveries.selectors import words

Status = Delivery.Status

# --- opt-outs ------------------------------------------------------------------------------------------


def active_opt_out(*, delivery: Delivery) -> OptOut | None:
    return OptOut.objects.filter(
        organization_id=delivery.organization_id,
        sender=delivery.from_number,
        recipient=delivery.to_number,
        cleared_at__isnull=True,
    ).first()


def opted_out_pairs(*, deliveries: Iterable[Delivery]) -> set[tuple[int, str, str]]:
    """The (organisation id, sender, recipient) of these deliveries that have an active opt-out, in
    one query."""
    deliveries = list(deliveries)
    return set(
        OptOut.objects.filter(
            cleared_at__isnull=True,
            recipient__in={d.to_number for d in deliveries},
            organization_id__in={d.organization_id for d in deliveries},
        ).values_list("organization_id", "sender", "recipient")
    )


# --- the delivery page ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # "attempt", "status", "ack" or "escalation"
    attempt: Attempt | None = None
    event: StatusEvent | None = None
    text: str = ""  # "ack" and "escalation": what happened, in words


def delivery_timeline(*, delivery: Delivery) -> list[TimelineEntry]:
    """Every attempt and every Twilio status callback of a delivery, oldest first."""
    entries = [
        TimelineEntry(at=a.started_at, kind="attempt", attempt=a)
        for a in delivery.attempts.select_related("triggered_by").order_by("number")
    ]
    entries += [
        TimelineEntry(at=e.received_at, kind="status", event=e)
        for e in delivery.status_events.order_by("received_at", "id")
    ]
    entries += _acknowledgement_entries(delivery)
    # Stable sort: attempts keep their number order when two share a timestamp.
    return sorted(entries, key=lambda e: e.at)


def _acknowledgement_entries(delivery: Delivery) -> list[TimelineEntry]:
    """The acknowledgement (who, by which channel) and the escalation timers, fired or not."""
    entries = []
    if delivery.acknowledged_at:
        waited = delivery.acknowledged_at - delivery.created_at
        entries.append(
            TimelineEntry(
                at=delivery.acknowledged_at,
                kind="ack",
                text=f"acknowledged by {delivery.acknowledged_by} ({delivery.get_ack_channel_display()}), "
                f"{int(waited.total_seconds())} s after the alert",
            )
        )
    for timer in delivery.timers.all():
        when = timer.fired_at or timer.due_at
        entries.append(
            TimelineEntry(
                at=when,
                kind="escalation",
                text=f"{timer.get_action_display()} if not acknowledged within {timer.ack_within_seconds} s: "
                f"{timer.get_state_display()}",
            )
        )
    return entries


NEEDS_OPERATOR = (
    "needs an operator: Twilio's answer was ambiguous and looking for the message at Twilio failed every "
    "time; check Twilio's console, then resend it or leave it"
)


def needs_operator(delivery: Delivery) -> bool:
    """Reconciliation gave up: ambiguous with nothing due (services.reconcile clears due_at)."""
    return delivery.status == Status.AMBIGUOUS and delivery.due_at is None


def why_in_words(delivery: Delivery) -> str:
    """The list's "why": the hold, the error, or that an operator is needed, in words."""
    if delivery.hold:
        return words.hold_in_words(delivery)
    if needs_operator(delivery):
        return NEEDS_OPERATOR
    return words.error_in_words(delivery.error_code, delivery.error_message)


@dataclass(frozen=True)
class DeliveryFacts:
    sends: int  # POSTs to Twilio (first try, retries, resends)
    lookups: int  # reconcile look-ups at Twilio: not sends
    why: str


def delivery_facts(*, delivery: Delivery) -> DeliveryFacts:
    counts = dict(delivery.attempts.values_list("trigger").annotate(n=Count("id")).order_by())
    lookups = counts.pop(Attempt.Trigger.RECONCILE, 0)
    return DeliveryFacts(sends=sum(counts.values()), lookups=lookups, why=why_in_words(delivery))


# --- operations --------------------------------------------------------------------------------------


def deliveries_by_status() -> dict[str, int]:
    """How many deliveries are in each status (for /metrics)."""
    return dict(Delivery.objects.order_by().values_list("status").annotate(n=Count("id")).values_list("status", "n"))


def oldest_pending_created_at() -> datetime | None:
    return (
        Delivery.objects.filter(status=Status.PENDING)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )


def error_code_choices() -> dict[int, str]:
    """The Twilio error codes an operator meets most, with what each means, for the desk's filter."""
    return words.known_codes()


# --- CSV export ------------------------------------------------------------------------------------

EXPORT_COLUMNS: list[tuple[str, str]] = [
    ("id", "id"),
    ("created_at", "created_at"),
    ("organization__oid", "organization"),
    ("organization__name", "organization_name"),
    ("organization__label", "organization_label"),
    ("alert_id", "alert"),
    ("kind", "kind"),
    ("channel", "channel"),
    ("to_number", "to"),
    ("from_number", "from"),
    ("status", "status"),
    ("hold", "hold_reason"),
    ("attempt_count", "attempts"),
    ("error_code", "error_code"),
    ("error_message", "error_message"),
    ("twilio_sid", "twilio_sid"),
    ("idempotency_key", "idempotency_key"),
    ("ident", "ident"),
    ("inv_id", "inv_id"),
    ("sent_at", "sent_at"),
    ("settled_at", "settled_at"),
    ("ack_code", "ack_code"),
    ("acknowledged_at", "acknowledged_at"),
    ("acknowledged_by", "acknowledged_by"),
    ("ack_channel", "acknowledged_channel"),
    ("resend_operator", "resend_operator"),
    ("resend_reason", "resend_reason"),
    ("segments", "segments"),
    ("encoding", "encoding"),
    ("original_length", "original_length"),
    ("truncated", "truncated"),
    ("body", "body"),
]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_LEADING_SPACE = " \n\x0b\x0c\u00a0"  # not \t and \r: those start a formula themselves
_PLAIN_NUMBER = re.compile(r"^[+-]?\d+$")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    # An alert body is text an attacker can influence (it quotes the detection). A spreadsheet
    # would run a cell starting with = + - @ as a formula, so such cells are prefixed with a quote;
    # phone numbers like +14155550100 stay as they are. Spreadsheets skip leading white space (a space
    # or a line feed before '=' still makes a formula), so it is skipped here too.
    if text.lstrip(_LEADING_SPACE).startswith(_FORMULA_START) and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def deliveries_export_rows(queryset: QuerySet[Delivery]) -> Iterator[list[str]]:
    """The header, then one row per delivery of `queryset`, in its order. Rows are fetched in
    chunks (a server-side cursor on PostgreSQL), so a million rows never sit in memory at once."""
    yield [header for _, header in EXPORT_COLUMNS]
    fields = [name for name, _ in EXPORT_COLUMNS]
    # The operator and reason of the latest resend (the row's own resend_by is cleared by the claim).
    latest_resend = Attempt.objects.filter(delivery=OuterRef("pk"), trigger=Attempt.Trigger.RESEND).order_by("-number")
    annotated = queryset.annotate(
        resend_operator=Subquery(latest_resend.values("triggered_by__username")[:1]),
        resend_reason_=Subquery(latest_resend.values("reason")[:1]),
    )
    fields = ["resend_reason_" if f == "resend_reason" else f for f in fields]
    for row in annotated.values_list(*fields).iterator(chunk_size=2000):
        yield [_cell(v) for v in row]


def alerts_acknowledged(*, deliveries: Iterable[Delivery]) -> dict[int, str]:
    """For the alerts of these deliveries that someone acknowledged: who, how and when, in words. One
    query."""
    alert_ids = {d.alert_id for d in deliveries if d.alert_id}
    found: dict[int, str] = {}
    rows = (
        Delivery.objects.filter(alert_id__in=alert_ids, acknowledged_at__isnull=False)
        .order_by("acknowledged_at")
        .values_list("alert_id", "acknowledged_by", "ack_channel", "acknowledged_at")
    )
    for alert_id, by, channel, at in rows:
        how = "by voice" if channel == Delivery.Channel.VOICE else "by text reply"
        found.setdefault(alert_id, f"acknowledged by {by} {how} at {at:%H:%M:%S} UTC")
    return found
