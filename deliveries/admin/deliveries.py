"""The deliveries: the list (filters, search, status badges), the delivery page with its timeline,
and the CSV export of what the list shows."""

from __future__ import annotations

import csv
from typing import Any, cast

from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect, StreamingHttpResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from deliveries import selectors, services
from deliveries import status as statuses
from deliveries.admin.base import CappedCountPaginator, ReadOnlyAdmin
from deliveries.admin.filters import (
    AcknowledgedFilter,
    CreatedRangeFilter,
    ErrorCodeFilter,
    LastTriggerFilter,
    OutcomeClassFilter,
)
from deliveries.admin.resend import ResendMixin
from deliveries.models import Delivery


@admin.register(Delivery)
class DeliveryAdmin(ResendMixin, ReadOnlyAdmin):
    list_display = [
        "created_at",
        "organization",
        "to_number",
        "from_number",
        "status_badge",
        "attempts",
        "last_error",
        "twilio_sid",
        "time_to_ack",
    ]
    list_filter = [
        "status",
        OutcomeClassFilter,
        ErrorCodeFilter,
        "organization",
        CreatedRangeFilter,
        "truncated",
        LastTriggerFilter,
        "hold",
        AcknowledgedFilter,
        "channel",
    ]
    # The search box: get_search_results below decides what a term means. The list must be
    # non-empty for Django to draw the box.
    search_fields = ["idempotency_key"]
    search_help_text = "A phone number in any common format, a Twilio SID (SM…), an idempotency key or a delivery id."
    list_select_related = ["organization"]
    list_per_page = 50
    paginator = CappedCountPaginator
    show_full_result_count = False
    actions = ["resend_selected"]
    fieldsets = [
        ("Request", {"fields": ["id", "organization", "ident", "inv_id", "idempotency_key", "created_at"]}),
        (
            "Message",
            {"fields": ["from_number", "to_number", "body", "original_length", "truncated", "encoding", "segments"]},
        ),
        (
            "Twilio",
            {
                "fields": [
                    "status",
                    "status_reason",
                    "credential",
                    "twilio_sid",
                    "error_code",
                    "error_message",
                    "attempt_count",
                    "sent_at",
                    "settled_at",
                    "updated_at",
                ]
            },
        ),
        ("Flood control and opt-outs", {"fields": ["kind", "hold", "summary"]}),
        (
            "Acknowledgement and escalation",
            {"fields": ["channel", "ack_code", "acknowledged_at", "acknowledged_by", "ack_channel", "escalates"]},
        ),
    ]

    class Media:
        css = {"all": ["deliveries/admin.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        # The body can be 1,600 characters; a list page of 50 does not need it.
        return super().get_queryset(request).defer("body")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Delivery], search_term: str
    ) -> tuple[QuerySet[Delivery], bool]:
        if not search_term.strip():
            return queryset, False
        return queryset.filter(selectors.delivery_search_q(search_term)), False

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Delivery) -> str:
        return format_html(
            '<span class="status-badge" style="background:{}">{}</span>',
            statuses.colour(obj.status),
            obj.get_status_display(),
        )

    @admin.display(description="time to ack")
    def time_to_ack(self, obj: Delivery) -> str:
        waited = obj.time_to_ack
        if waited is None:
            return "not yet" if obj.ack_code else "-"
        minutes, seconds = divmod(int(waited.total_seconds()), 60)
        return f"{minutes} min {seconds:02d} s ({obj.get_ack_channel_display()})"

    @admin.display(description="attempts", ordering="attempt_count")
    def attempts(self, obj: Delivery) -> int:
        return obj.attempt_count

    @admin.display(description="last error")
    def last_error(self, obj: Delivery) -> str:
        if obj.error_code is None and not obj.error_message:
            return "-"
        message = obj.error_message if len(obj.error_message) <= 60 else obj.error_message[:59] + "…"
        return format_html("<b>{}</b> {}", obj.error_code or "", message)

    # --- permissions (resend: ResendMixin) ---

    def has_export_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    # --- urls and views ---

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("export/", view(self.export_view), name="deliveries_delivery_export"),
            path("resend/", view(self.resend_view), name="deliveries_delivery_resend"),
            path("<uuid:object_id>/resend/", view(self.resend_view), name="deliveries_delivery_resend_one"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {"can_export": self.has_export_permission(request), "export_query": request.GET.urlencode()}
        return super().changelist_view(request, {**extra, **(extra_context or {})})

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra: dict[str, Any] = {"can_resend": self.has_resend_permission(request)}
        delivery = self.get_object(request, object_id)
        if delivery is not None and self.has_view_permission(request, delivery):
            extra["timeline"] = selectors.delivery_timeline(delivery=delivery)
            extra["resend_refusal"] = services.delivery_resend_refusal(delivery=delivery)
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """CSV of exactly what the list shows with the same filters and search, in the same order,
        streamed. The export itself is recorded in the admin log, with its filters."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse("admin:deliveries_delivery_changelist") + "?e=1")
        queryset = changelist.queryset
        query = request.GET.urlencode()
        LogEntry.objects.create(
            user_id=cast(int, request.user.pk),
            content_type_id=ContentType.objects.get_for_model(Delivery).pk,
            object_repr="CSV export",
            action_flag=CHANGE,
            change_message=f"Exported deliveries as CSV; filters: {query or '(none)'}",
        )
        writer = csv.writer(_Echo())
        rows = (writer.writerow(row) for row in selectors.deliveries_export_rows(queryset))
        response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="deliveries-{stamp}.csv"'
        return response


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value
