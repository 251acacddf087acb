"""The delivery list's filters: needs an operator, acknowledged, outcome class, last trigger, Twilio
error code, created between (dates or date-times, shown as they filter)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest

from deliveries import selectors
from deliveries.models import Attempt, Delivery


class OutcomeClassFilter(admin.SimpleListFilter):
    """What kind of failure the latest attempt met (see the send policy in the README)."""

    title = "outcome class"
    parameter_name = "outcome"
    CLASSES = [Attempt.Outcome.PERMANENT, Attempt.Outcome.NOT_PROCESSED, Attempt.Outcome.AMBIGUOUS]

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(c.value, c.label) for c in self.CLASSES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> QuerySet[Delivery]:
        if self.value() in {c.value for c in self.CLASSES}:
            return queryset.filter(last_outcome=self.value())
        return queryset


class AcknowledgedFilter(admin.SimpleListFilter):
    """Alerts someone acknowledged, and alerts that reached a handset with a code nobody has
    acknowledged yet (each one a partial index in the list's order). An alert that never reached a
    handset is a failure, not an unacknowledged alert."""

    title = "acknowledged"
    parameter_name = "acknowledged"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Acknowledged"), ("no", "Delivered, not acknowledged")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> QuerySet[Delivery]:
        if self.value() == "yes":
            return queryset.filter(acknowledged_at__isnull=False)
        if self.value() == "no":
            return selectors.unacknowledged(queryset)
        return queryset


class NeedsOperatorFilter(admin.SimpleListFilter):
    """Ambiguous deliveries whose reconciliation gave up: nothing more happens until an operator
    decides (services.reconcile leaves them with nothing due)."""

    title = "needs an operator"
    parameter_name = "needs_operator"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Reconciliation gave up")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> QuerySet[Delivery]:
        if self.value() == "yes":
            return queryset.filter(selectors.needs_operator_q())
        return queryset


class LastTriggerFilter(admin.SimpleListFilter):
    title = "last attempt trigger"
    parameter_name = "last_trigger"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(t.value, t.label) for t in Attempt.Trigger]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> QuerySet[Delivery]:
        if self.value() in Attempt.Trigger.values:
            return queryset.filter(last_trigger=self.value())
        return queryset


class ErrorCodeFilter(admin.SimpleListFilter):
    """The Twilio codes an operator meets most, by name. Any other code works by URL
    (`?error_code=30007`); listing the codes actually stored would scan every failed delivery."""

    title = "Twilio error code"
    parameter_name = "error_code"
    KNOWN = selectors.error_code_choices()  # the same words the delivery page and the callbacks use

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        choices = [(str(code), f"{code} {label}") for code, label in self.KNOWN.items()]
        value = self.value()
        if value and value.isdigit() and int(value) not in self.KNOWN:
            choices.append((value, value))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> QuerySet[Delivery]:
        value = self.value()
        if value is None:
            return queryset
        if not value.isdigit():
            raise IncorrectLookupParameters(f"error_code must be a number, got {value!r}")
        return queryset.filter(error_code=int(value))


class CreatedRangeFilter(admin.ListFilter):
    """Created between two dates (UTC, both inclusive). A bound may also be an ISO date-time
    (`2026-11-26T14:00`), which the at-a-glance links use for "the last 24 hours"."""

    title = "created (UTC)"
    template = "admin/deliveries/date_range_filter.html"
    FROM, TO = "created_from", "created_to"

    def __init__(self, request: HttpRequest, params: dict[str, list[str]], model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        for name in (self.FROM, self.TO):
            if name in params:
                self.used_parameters[name] = params.pop(name)[-1].strip()

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return [self.FROM, self.TO]

    @staticmethod
    def _bound(value: str, *, end: bool) -> datetime | None:
        if not value:
            return None
        try:
            if "T" in value or " " in value:
                moment = datetime.fromisoformat(value)
                return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            day = date.fromisoformat(value) + (timedelta(days=1) if end else timedelta())
        except ValueError:
            raise IncorrectLookupParameters(f"{value!r} is not a date (YYYY-MM-DD)") from None
        return datetime.combine(day, time.min, tzinfo=UTC)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> QuerySet[Delivery]:
        start = self._bound(str(self.used_parameters.get(self.FROM, "")), end=False)
        end = self._bound(str(self.used_parameters.get(self.TO, "")), end=True)
        if start:
            queryset = queryset.filter(created_at__gte=start)
        if end:
            queryset = queryset.filter(created_at__lt=end)
        return queryset

    def choices(self, changelist: ChangeList) -> Iterator[dict[str, Any]]:
        # One "choice": what the template's small GET form needs to keep the other filters.
        keep = {k: v for k, v in changelist.params.items() if k not in (self.FROM, self.TO, PAGE_VAR)}
        start = str(self.used_parameters.get(self.FROM, ""))
        end = str(self.used_parameters.get(self.TO, ""))
        now = datetime.now(UTC)
        yield {
            "from": start,
            "to": end,
            "hidden": sorted(keep.items()),
            "clear_url": changelist.get_query_string(remove=[self.FROM, self.TO]),
            "active": bool(self.used_parameters),
            "showing": self._showing(start, end),
            "quick": [
                (
                    label,
                    changelist.get_query_string(
                        {self.FROM: (now - ago).strftime("%Y-%m-%dT%H:%M")}, [self.TO, PAGE_VAR]
                    ),
                )
                for label, ago in (
                    ("last hour", timedelta(hours=1)),
                    ("last 24 h", timedelta(hours=24)),
                    ("last 7 days", timedelta(days=7)),
                )
            ],
        }

    @staticmethod
    def _showing(start: str, end: str) -> str:
        """What the filter filters, in words: the date inputs cannot show a date-time bound."""

        def shown(value: str) -> str:
            return value.replace("T", " ") + (" UTC" if "T" in value or " " in value else "")

        if start and end:
            return f"created from {shown(start)} to {shown(end)}" + ("" if "T" in end or " " in end else " (inclusive)")
        if start:
            return f"created since {shown(start)}"
        if end:
            return f"created up to {shown(end)}" + ("" if "T" in end or " " in end else " (inclusive)")
        return ""


class OrganisationFilter(admin.RelatedFieldListFilter):
    """The organisation filter, titled in the desk's spelling, listing organisations by name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = "organisation"
