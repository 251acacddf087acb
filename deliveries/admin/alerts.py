"""Alerts: one `run` call each. The list links to the alert page, which answers "who saw it, when,
how long to acknowledge, by which channel" in one summary line and one timeline
(selectors.alert_page)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet, Subquery
from django.db.models.functions import Substr
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from deliveries import selectors
from deliveries.admin.base import CappedCountPaginator, ReadOnlyAdmin, organisation, yes_no
from deliveries.admin.filters import OrganisationFilter
from deliveries.models import AlertRequest, Delivery


@admin.register(AlertRequest)
class AlertRequestAdmin(ReadOnlyAdmin):
    list_display = ["created_at", organisation, "text", "acknowledged"]
    list_select_related = ["organization"]
    list_filter = [("organization", OrganisationFilter)]
    search_fields = ["idempotency_key"]
    search_help_text = "The alert's text (a host, detection words), an investigation id, the rule or a number."
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50

    def get_queryset(self, request: HttpRequest) -> QuerySet[AlertRequest]:
        texts = Delivery.objects.filter(alert=OuterRef("pk")).order_by("created_at")
        return (
            super()
            .get_queryset(request)
            .defer("reply")
            .annotate(
                first_text=Subquery(texts.annotate(start=Substr("body", 1, 80)).values("start")[:1]),
                was_acknowledged=Exists(Delivery.objects.filter(alert=OuterRef("pk"), acknowledged_at__isnull=False)),
            )
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AlertRequest], search_term: str
    ) -> tuple[QuerySet[AlertRequest], bool]:
        if not search_term.strip():
            return queryset, False
        found = selectors.delivery_search(Delivery.objects.all(), search_term).values("alert_id")
        return queryset.filter(pk__in=found), False

    @admin.display(description="text")
    def text(self, obj: Any) -> str:
        return obj.first_text or ""

    @admin.display(description="acknowledged")
    def acknowledged(self, obj: Any) -> str:
        return yes_no(obj.was_acknowledged)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        alert = self.get_object(request, object_id)
        if alert is None:
            raise Http404("No such alert")
        if not self.has_view_permission(request, alert):
            raise PermissionDenied("The alert page needs the SOC lead or the Operator role.")
        newest = request.GET.get("order") == "newest"
        context = {
            **self.admin_site.each_context(request),
            "title": "Alert",
            "opts": self.opts,
            "page": selectors.alert_page(alert=alert, newest_first=newest, now=timezone.now()),
            "newest_first": newest,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/deliveries/alertrequest/alert_page.html", context)
