"""Closing the loop in LimaCharlie, read-only: the events waiting for (or sent to) each organisation's
webhook adapter, the adapters, and approvals with their decision."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from deliveries.admin.base import CappedCountPaginator, ReadOnlyAdmin
from deliveries.models import Approval, OutboundEvent, WebhookAdapter


class WaitingFilter(admin.SimpleListFilter):
    title = "sent"
    parameter_name = "sent"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Waiting"), ("yes", "Sent")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("no", "yes"):
            return queryset.filter(sent_at__isnull=self.value() == "no")
        return queryset


@admin.register(OutboundEvent)
class OutboundEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "organization", "alert", "sent_at", "attempts", "due_at", "last_error"]
    list_filter = [WaitingFilter, "kind"]
    list_select_related = ["organization", "alert"]
    search_fields = ["event_id", "alert__idempotency_key"]
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50


@admin.register(WebhookAdapter)
class WebhookAdapterAdmin(ReadOnlyAdmin):
    list_display = ["organization", "ready_at", "installation_key", "hooks_url", "last_error", "updated_at"]
    # The adapter's secret is never shown, not even encrypted.
    exclude = ["secret"]


@admin.register(Approval)
class ApprovalAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "question", "decision", "decided_by", "decided_channel", "decided_at", "due_at"]
    list_filter = ["decision", "decided_channel"]
    list_select_related = ["alert"]
    paginator = CappedCountPaginator
    show_full_result_count = False
