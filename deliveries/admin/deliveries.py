"""The deliveries: the list (what a SOC lead reads at a glance: when, who, what, status, time to
acknowledge and why, in words), the delivery page with its timeline, and the CSV export of what the
list shows (a POST: it is recorded in the admin log)."""

from __future__ import annotations

import csv
from typing import Any, cast

from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet
from django.db.models.functions import Substr
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect, StreamingHttpResponse
from django.http.request import QueryDict
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from deliveries import selectors, services
from deliveries import status as statuses
from deliveries.admin.base import CappedCountPaginator, ReadOnlyAdmin, yes_no
from deliveries.admin.filters import (
    AcknowledgedFilter,
    CreatedRangeFilter,
    ErrorCodeFilter,
    LastTriggerFilter,
    NeedsOperatorFilter,
    OrganisationFilter,
    OutcomeClassFilter,
)
from deliveries.admin.resend import ResendMixin
from deliveries.models import Delivery

TEXT_CHARS = 60


def status_badge(delivery: Delivery) -> str:
    """The status in words, on its colour; "held back" and "needs an operator" where they apply."""
    label = delivery.get_status_display().lower()
    if delivery.status == Delivery.Status.SUPPRESSED:
        label = "held back"
    elif selectors.needs_operator(delivery):
        label = "needs an operator"
    return format_html(
        '<span class="status-badge" style="background:{}">{}</span>', statuses.colour(delivery.status), label
    )


def kind_words(delivery: Delivery) -> str:
    if delivery.kind == Delivery.Kind.SUMMARY:
        return "summary"
    if delivery.kind == Delivery.Kind.NOTICE:
        return "notice"
    if delivery.channel == Delivery.Channel.VOICE:
        return "call"
    return "text"


def ack_words(delivery: Delivery) -> str:
    waited = delivery.time_to_ack
    if waited is None:
        if getattr(delivery, "alert_acknowledged", False):
            return "by another"
        return "not yet" if delivery.ack_code and delivery.status == Delivery.Status.DELIVERED else "—"
    channel = "☎" if delivery.ack_channel == Delivery.Channel.VOICE else "✉"
    return f"{selectors.duration(waited)} {channel}"


@admin.register(Delivery)
class DeliveryAdmin(ResendMixin, ReadOnlyAdmin):
    list_display = ["when", "org", "recipient", "what", "text", "status_badge", "ack", "why"]
    list_display_links = ["when"]
    list_filter = [
        "status",
        NeedsOperatorFilter,
        AcknowledgedFilter,
        CreatedRangeFilter,
        ("organization", OrganisationFilter),
        "kind",
        "channel",
        ErrorCodeFilter,
        "hold",
        OutcomeClassFilter,
        LastTriggerFilter,
        "truncated",
    ]
    # The search box: get_search_results below decides what a term means. The list must be
    # non-empty for Django to draw the box.
    search_fields = ["idempotency_key"]
    search_help_text = (
        "The alert's text (a host, detection words), an investigation id, the rule, an acknowledgement code, "
        "a number in any format, a Twilio SID or an id."
    )
    list_select_related = ["organization"]
    list_per_page = 50
    paginator = CappedCountPaginator
    show_full_result_count = False
    actions = ["resend_selected"]
    readonly_fields = [
        "alert_link",
        "organisation",
        "why_words",
        "sends",
        "ack_words_page",
        "truncated_words",
        "notify_words",
    ]
    fieldsets = [
        (None, {"fields": ["alert_link", "organisation", "to_number", "kind", "channel", "status", "why_words"]}),
        ("Message", {"fields": ["body", "original_length", "truncated_words", "encoding", "segments"]}),
        (
            "Acknowledgement and escalation",
            {"fields": ["ack_code", "ack_words_page", "acknowledged_by", "ack_channel", "notify_words", "escalates"]},
        ),
        (
            "At Twilio",
            {
                "fields": [
                    "from_number",
                    "credential",
                    "twilio_sid",
                    "sends",
                    "twilio_error",
                    "status_reason",
                    "sent_at",
                    "settled_at",
                ]
            },
        ),
        (
            "Ids",
            {"fields": ["id", "ident", "inv_id", "idempotency_key", "created_at", "updated_at", "hold", "summary"]},
        ),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        # The body can be 1,600 characters; the list shows its first sixty.
        queryset = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name == "deliveries_delivery_changelist":
            others = Delivery.objects.filter(alert_id=OuterRef("alert_id"), acknowledged_at__isnull=False)
            return queryset.defer("body").annotate(
                text_start=Substr("body", 1, TEXT_CHARS + 1), alert_acknowledged=Exists(others)
            )
        return queryset

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Delivery], search_term: str
    ) -> tuple[QuerySet[Delivery], bool]:
        return selectors.delivery_search(queryset, search_term), False

    # --- the list's columns ---

    @admin.display(description="when", ordering="created_at")
    def when(self, obj: Delivery) -> str:
        return format_html(
            '<time datetime="{}" title="{} UTC">{}</time> <span class="when-at">{}</span>',
            obj.created_at.isoformat(),
            obj.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            selectors.ago(obj.created_at, timezone.now()),
            obj.created_at.strftime("%d %b %H:%M"),
        )

    @admin.display(description="organisation", ordering="organization")
    def org(self, obj: Delivery) -> str:
        return obj.organization.display_name

    @admin.display(description="to")
    def recipient(self, obj: Delivery) -> str:
        return selectors.pretty_number(obj.to_number)

    @admin.display(description="kind")
    def what(self, obj: Delivery) -> str:
        return kind_words(obj)

    @admin.display(description="text")
    def text(self, obj: Delivery) -> str:
        start = getattr(obj, "text_start", None) or obj.body
        shown = start if len(start) <= TEXT_CHARS else start[: TEXT_CHARS - 1] + "…"
        if obj.alert_id is None:
            return shown
        url = reverse("admin:deliveries_alertrequest_change", args=[obj.alert_id])
        return format_html(
            '{} <a class="alert-link" href="{}" title="the alert: every recipient, call and reply">alert</a>',
            shown,
            url,
        )

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Delivery) -> str:
        return status_badge(obj)

    @admin.display(description="ack")
    def ack(self, obj: Delivery) -> str:
        return ack_words(obj)

    @admin.display(description="why", empty_value="")
    def why(self, obj: Delivery) -> str:
        if selectors.needs_operator(obj):
            return "reconciliation gave up: check Twilio's console, then resend or leave it"
        return selectors.why_in_words(obj)

    # --- the delivery page's fields ---

    @admin.display(description="alert")
    def alert_link(self, obj: Delivery) -> str:
        if obj.alert_id is None:
            return "— (a flood-control summary speaks for several alerts)"
        url = reverse("admin:deliveries_alertrequest_change", args=[obj.alert_id])
        return format_html('<a id="alert-link" href="{}">the whole alert: every recipient, call and reply</a>', url)

    @admin.display(description="organisation")
    def organisation(self, obj: Delivery) -> str:
        return obj.organization.display_name

    @admin.display(description="why")
    def why_words(self, obj: Delivery) -> str:
        return selectors.why_in_words(obj) or "—"

    @admin.display(description="last error")
    def twilio_error(self, obj: Delivery) -> str:
        words = selectors.error_in_words(obj.error_code, obj.error_message) or "—"
        said = obj.error_message if obj.error_code and obj.error_message else ""
        return f"{words} (Twilio: “{said}”)" if said else words

    @admin.display(description="sends")
    def sends(self, obj: Delivery) -> str:
        facts = selectors.delivery_facts(delivery=obj)
        lookups = f", plus {selectors.plural(facts.lookups, 'look-up', 'look-ups')} at Twilio" if facts.lookups else ""
        return f"{selectors.plural(facts.sends, 'send', 'sends')}{lookups}"

    @admin.display(description="acknowledged")
    def ack_words_page(self, obj: Delivery) -> str:
        if obj.acknowledged_at is None:
            return "No"
        return f"Yes, {obj.acknowledged_at:%Y-%m-%d %H:%M:%S} UTC, {selectors.duration(obj.time_to_ack)} after the text"

    @admin.display(description="truncated")
    def truncated_words(self, obj: Delivery) -> str:
        return yes_no(obj.truncated)

    @admin.display(description="tell the others")
    def notify_words(self, obj: Delivery) -> str:
        return yes_no(obj.notify_on_ack)

    # --- permissions (resend: ResendMixin) ---

    def has_export_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    # --- urls and views ---

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("export/", view(require_POST(self.export_view)), name="deliveries_delivery_export"),
            path("resend/", view(self.resend_view), name="deliveries_delivery_resend"),
            path("<uuid:object_id>/resend/", view(self.resend_view), name="deliveries_delivery_resend_one"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {
            "title": "Deliveries",
            "can_export": self.has_export_permission(request),
            "export_query": request.GET.urlencode(),
        }
        return super().changelist_view(request, {**extra, **(extra_context or {})})

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra: dict[str, Any] = {"can_resend": self.has_resend_permission(request), "show_save": False}
        delivery = self.get_object(request, object_id)
        if delivery is not None and self.has_view_permission(request, delivery):
            extra["timeline"] = selectors.delivery_timeline(delivery=delivery)
            extra["resend_refusal"] = services.delivery_resend_refusal(delivery=delivery)
            extra["headline"] = {
                "status": status_badge(delivery),
                "why": selectors.why_in_words(delivery),
                "to": selectors.pretty_number(delivery.to_number),
                "ack": ack_words(delivery),
            }
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """CSV of exactly what the list shows with the same filters and search (the form posts the
        list's query), in the same order, streamed. The export is recorded in the admin log."""
        if not self.has_export_permission(request):
            raise PermissionDenied("Exporting needs the SOC lead or the Operator role.")
        query = request.POST.get("query", "")
        request.GET = QueryDict(query)
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse("admin:deliveries_delivery_changelist") + "?e=1")
        LogEntry.objects.create(
            user_id=cast(int, request.user.pk),
            content_type_id=ContentType.objects.get_for_model(Delivery).pk,
            object_repr="CSV export",
            action_flag=CHANGE,
            change_message=f"Exported deliveries as CSV; filters: {query or '(none)'}",
        )
        writer = csv.writer(_Echo())
        rows = (writer.writerow(row) for row in selectors.deliveries_export_rows(changelist.queryset))
        response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="deliveries-{stamp}.csv"'
        return response


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value
