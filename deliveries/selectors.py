"""Reads for the audit desk that are more than a one-liner. Nothing here writes.

Every list query here must stay fast on a million deliveries: each filter maps onto an index of
Delivery or Attempt (see their Meta), and nothing counts a whole table.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import phonenumbers
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone
from phonenumbers import CountryCodeSource

from deliveries import status as statuses
from deliveries.models import Attempt, Delivery, OptOut, StatusEvent
from deliveries.sms import InvalidNumber, normalize_number
from deliveries.twilio.errors import ERROR_MEANINGS

Status = Delivery.Status

# --- search ---------------------------------------------------------------------------------------

TWILIO_MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
_NUMBER_PUNCTUATION = re.compile(r"[\s().\-/]")


def as_e164(term: str) -> str | None:
    """The E.164 form of what an operator typed as a phone number, or None if it is not one.

    People paste numbers as `+1 (415) 555-0100`, `0014155550100` or `14155550100`. Without a `+`
    we read the digits as country code and number (what an international format without its `+`
    is); we never guess a country for a national number, as the intake does not either.
    """
    text = term.strip().removeprefix("tel:")
    compact = _NUMBER_PUNCTUATION.sub("", text)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    elif not compact.startswith("+"):
        compact = "+" + compact
    if not compact[1:].isdigit() or len(compact) < 8:
        return None
    try:
        return normalize_number(compact)
    except InvalidNumber:
        return None


def delivery_search_q(term: str) -> Q:
    """What a search box entry can mean: an idempotency key always; also a delivery id, a Twilio
    message SID or a phone number when it has that shape. Each is an equality on an indexed
    column, so the database ORs index lookups instead of scanning for substrings."""
    term = term.strip()
    q = Q(idempotency_key=term)
    with contextlib.suppress(ValueError):  # not a delivery id
        q |= Q(id=uuid.UUID(term))
    if TWILIO_MESSAGE_SID.match(term):
        q |= Q(twilio_sid=term)
    number = as_e164(term)
    if number:
        q |= Q(to_number=number)
    national = national_candidates(term)
    if national:
        q |= Q(to_number__in=national)
    return q


def national_candidates(term: str) -> list[str]:
    """A number typed without its country code (`(415) 555-0141`, `415-555-0141`, `020 7946 0018`):
    the E.164 numbers it could be the national form of, in any country (a few dozen equality probes
    of the to_number index). An operator searching
    wants every match; the intake still never guesses a country for a recipient."""
    text = term.strip()
    compact = _NUMBER_PUNCTUATION.sub("", text)
    if text.startswith("+") or compact.startswith("00") or not compact.isdigit() or not 6 <= len(compact) <= 15:
        return []
    found = set()
    for region in phonenumbers.SUPPORTED_REGIONS:
        try:
            parsed = phonenumbers.parse(compact, region, keep_raw_input=True)
        except phonenumbers.NumberParseException:
            continue
        if parsed.country_code_source == CountryCodeSource.FROM_DEFAULT_COUNTRY and phonenumbers.is_possible_number(
            parsed
        ):
            found.add(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
    return sorted(found)


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


# --- at a glance ---------------------------------------------------------------------------------

# The chart's outcome classes, in stacking order, and the statuses each stands for.
OUTCOME_CLASSES: dict[str, tuple[str, ...]] = {c.value: statuses.statuses_of_class(c) for c in statuses.OutcomeClass}
_CLASS_OF_STATUS = {s.value: m.outcome_class.value for s, m in statuses.STATUSES.items()}


@dataclass
class HourlySeries:
    hours: list[datetime]
    counts: dict[str, list[int]] = field(default_factory=dict)  # outcome class -> one count per hour

    @property
    def total(self) -> int:
        return sum(sum(c) for c in self.counts.values())


@dataclass(frozen=True)
class Glance:
    last_24h: HourlySeries
    last_7d: HourlySeries
    waiting: int
    ambiguous: int
    failed_24h: int
    since_24h: datetime
    unacknowledged: int = 0  # alerts with a code that nobody has acknowledged, last 24 h


def deliveries_per_hour(*, since: datetime, until: datetime) -> HourlySeries:
    """Deliveries created per hour by outcome class. One grouped query on the created_at index."""
    start = since.replace(minute=0, second=0, microsecond=0)
    hours = [start + timedelta(hours=i) for i in range(int((until - start).total_seconds() // 3600) + 1)]
    index = {h: i for i, h in enumerate(hours)}
    series = HourlySeries(hours=hours, counts={name: [0] * len(hours) for name in OUTCOME_CLASSES})
    rows = (
        Delivery.objects.filter(created_at__gte=start)
        .annotate(hour=TruncHour("created_at"))
        .values_list("hour", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for hour, status, n in rows:
        i = index.get(hour)
        if i is not None and status in _CLASS_OF_STATUS:
            series.counts[_CLASS_OF_STATUS[status]][i] += n
    return series


def at_a_glance(*, now: datetime | None = None) -> Glance:
    now = now or timezone.now()
    since_24h = now - timedelta(hours=24)
    last_7d = deliveries_per_hour(since=now - timedelta(days=7), until=now)
    # The 24-hour chart is the tail of the 7-day one: no second query.
    cut = next(i for i, h in enumerate(last_7d.hours) if h >= since_24h.replace(minute=0, second=0, microsecond=0))
    last_24h = HourlySeries(hours=last_7d.hours[cut:], counts={k: v[cut:] for k, v in last_7d.counts.items()})
    current = dict(
        Delivery.objects.filter(status__in=[*statuses.IN_FLIGHT, Status.AMBIGUOUS])
        .values_list("status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return Glance(
        last_24h=last_24h,
        last_7d=last_7d,
        waiting=sum(current.get(s, 0) for s in statuses.IN_FLIGHT),
        ambiguous=current.get(Status.AMBIGUOUS, 0),
        failed_24h=Delivery.objects.filter(status=Status.FAILED, created_at__gte=since_24h).count(),
        since_24h=since_24h,
        unacknowledged=Delivery.objects.filter(created_at__gte=since_24h, acknowledged_at__isnull=True)
        .exclude(ack_code="")
        .count(),
    )


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
    return dict(ERROR_MEANINGS)


# --- CSV export ------------------------------------------------------------------------------------

EXPORT_COLUMNS: list[tuple[str, str]] = [
    ("id", "id"),
    ("created_at", "created_at"),
    ("organization__oid", "organization"),
    ("to_number", "to"),
    ("from_number", "from"),
    ("status", "status"),
    ("attempt_count", "attempts"),
    ("error_code", "error_code"),
    ("error_message", "error_message"),
    ("twilio_sid", "twilio_sid"),
    ("idempotency_key", "idempotency_key"),
    ("ident", "ident"),
    ("inv_id", "inv_id"),
    ("sent_at", "sent_at"),
    ("settled_at", "settled_at"),
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
    for row in queryset.values_list(*fields).iterator(chunk_size=2000):
        yield [_cell(v) for v in row]
