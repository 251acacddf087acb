"""The desk's index: deliveries per hour by outcome, what needs attention now, the last 24 hours by
error, and the time to acknowledge (MTTA) per organisation, recipient and channel.

The counts are the ones a SOC lead checks against the rows: failed means failed or undelivered (it
never reached the handset), held back is apart (deliberately not sent), and "not acknowledged" counts
only alerts that reached a handset. Each query reads an index of Delivery in created_at order."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

from deliveries import status as statuses
from deliveries.models import Delivery
from deliveries.selectors import words

Status = Delivery.Status

# The chart's outcome classes, in stacking order, and the statuses each stands for.
OUTCOME_CLASSES: dict[str, tuple[str, ...]] = {c.value: statuses.statuses_of_class(c) for c in statuses.OutcomeClass}
_CLASS_OF_STATUS = {s.value: m.outcome_class.value for s, m in statuses.STATUSES.items()}
FAILED = (Status.FAILED, Status.UNDELIVERED)
# MTTA reads at most this many acknowledged deliveries (the newest); more would be a slow index page.
MTTA_ROWS = 20_000


@dataclass
class HourlySeries:
    hours: list[datetime]
    counts: dict[str, list[int]] = field(default_factory=dict)  # outcome class -> one count per hour

    @property
    def total(self) -> int:
        return sum(sum(c) for c in self.counts.values())


@dataclass(frozen=True)
class ErrorRow:
    code: int | None
    meaning: str
    count: int


@dataclass(frozen=True)
class Glance:
    last_24h: HourlySeries
    last_7d: HourlySeries
    waiting: int
    ambiguous: int
    failed_24h: int  # failed + undelivered
    since_24h: datetime
    unacknowledged: int = 0  # reached a handset, has a code, nobody acknowledged: last 24 h
    held_24h: int = 0
    needs_operator: int = 0
    by_status_24h: dict[str, int] = field(default_factory=dict)
    errors_24h: list[ErrorRow] = field(default_factory=list)


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


def unacknowledged(queryset: QuerySet[Delivery] | None = None) -> QuerySet[Delivery]:
    """Alert texts that reached a handset with a code, of alerts nobody acknowledged (the list's filter
    too): the second recipient of an alert the first acknowledged is not waiting for anyone."""
    acknowledged = Delivery.objects.filter(alert_id=OuterRef("alert_id"), acknowledged_at__isnull=False)
    queryset = Delivery.objects.all() if queryset is None else queryset
    return (
        queryset.filter(acknowledged_at__isnull=True, status=Status.DELIVERED)
        .exclude(ack_code="")
        .exclude(Exists(acknowledged))
    )


def errors_since(since: datetime) -> list[ErrorRow]:
    """What failed (failed or undelivered) since `since`, by Twilio code, most frequent first."""
    rows = (
        Delivery.objects.filter(created_at__gte=since, status__in=FAILED)
        .values_list("error_code")
        .annotate(n=Count("pk"))
        .order_by()
    )
    table = [
        ErrorRow(code, words.code_meaning(code) if code else "no code (network, or Twilio gave none)", n)
        for code, n in rows
    ]
    return sorted(table, key=lambda r: (-r.count, r.code or 0))


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
    by_status = dict(
        Delivery.objects.filter(created_at__gte=since_24h).values_list("status").annotate(n=Count("pk")).order_by()
    )
    return Glance(
        last_24h=last_24h,
        last_7d=last_7d,
        waiting=sum(current.get(s, 0) for s in statuses.IN_FLIGHT),
        ambiguous=current.get(Status.AMBIGUOUS, 0),
        failed_24h=sum(by_status.get(s, 0) for s in FAILED),
        held_24h=by_status.get(Status.SUPPRESSED, 0),
        since_24h=since_24h,
        unacknowledged=unacknowledged().filter(created_at__gte=since_24h).count(),
        needs_operator=Delivery.objects.filter(status=Status.AMBIGUOUS, due_at__isnull=True).count(),
        by_status_24h=by_status,
        errors_24h=errors_since(since_24h),
    )


# --- time to acknowledge ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MttaRow:
    key: str  # the organisation's name, the recipient, or the channel
    count: int
    p50: timedelta
    p90: timedelta


@dataclass(frozen=True)
class Mtta:
    since: datetime
    by_organisation: list[MttaRow]
    by_recipient: list[MttaRow]
    by_channel: list[MttaRow]


def _quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted values (the median of 2 is the first: no invented times)."""
    rank = max(1, -(-len(values) * q // 1))
    return values[int(rank) - 1]


def _rows(groups: dict[str, list[float]]) -> list[MttaRow]:
    table = []
    for key, values in groups.items():
        values.sort()
        table.append(
            MttaRow(
                key, len(values), timedelta(seconds=_quantile(values, 0.5)), timedelta(seconds=_quantile(values, 0.9))
            )
        )
    return sorted(table, key=lambda r: (-r.count, r.key))


def mtta(*, since: datetime) -> Mtta:
    """p50 and p90 of the time from an alert text to its acknowledgement, since `since`: one read of
    the acknowledged deliveries' partial index, newest first, at most MTTA_ROWS."""
    rows = (
        Delivery.objects.filter(acknowledged_at__isnull=False, created_at__gte=since)
        .order_by("-created_at", "-id")
        .values_list(
            "organization__label",
            "organization__name",
            "organization__oid",
            "to_number",
            "ack_channel",
            "created_at",
            "acknowledged_at",
        )[:MTTA_ROWS]
    )
    groups: tuple[dict[str, list[float]], ...] = (defaultdict(list), defaultdict(list), defaultdict(list))
    keys: tuple[Callable[[tuple[Any, ...]], str], ...] = (
        lambda r: r[0] or r[1] or r[2],
        lambda r: r[3],
        lambda r: r[4] or "sms",
    )
    for row in rows:
        created: datetime = row[5]
        acknowledged = cast(datetime, row[6])
        waited = max(0.0, (acknowledged - created).total_seconds())
        for group, key in zip(groups, keys, strict=True):
            group[key(row)].append(waited)
    return Mtta(since, *(_rows(g) for g in groups))


def mtta_by(rows: Iterable[MttaRow]) -> dict[str, tuple[float, float]]:
    """{key: (p50 seconds, p90 seconds)}, for /metrics."""
    return {r.key: (r.p50.total_seconds(), r.p90.total_seconds()) for r in rows}


def needs_operator_q() -> Q:
    return Q(status=Status.AMBIGUOUS, due_at__isnull=True)
