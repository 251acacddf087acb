"""Replies and escalation, read-only: the inbound messages people sent (STOP, START, HELP, codes) and
the escalation timers of rules with ack_within."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from deliveries import selectors
from deliveries.admin.base import CappedCountPaginator, ReadOnlyAdmin, organisation
from deliveries.models import Delivery, Escalation, InboundMessage


def _delivery_link(delivery: Delivery | None) -> str:
    if delivery is None:
        return "-"
    url = reverse("admin:deliveries_delivery_change", args=[delivery.pk])
    return format_html('<a href="{}">{}</a>', url, delivery.to_number)


@admin.register(InboundMessage)
class InboundMessageAdmin(ReadOnlyAdmin):
    list_display = ["received_at", organisation, "from_number", "to_number", "meaning", "body", "acknowledged_link"]
    list_filter = ["meaning"]
    list_select_related = ["organization", "acknowledged"]
    search_fields = ["from_number", "message_sid"]
    search_help_text = "A number in any format, or a Twilio message SID."
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[InboundMessage], search_term: str
    ) -> tuple[QuerySet[InboundMessage], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        q = Q(message_sid=term)
        number = selectors.number_q("from_number", term)
        return queryset.filter(q | number if number is not None else q), False

    @admin.display(description="acknowledged")
    def acknowledged_link(self, obj: InboundMessage) -> str:
        return _delivery_link(obj.acknowledged)


@admin.register(Escalation)
class EscalationAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "alert_link", "action", "ack_within_seconds", "due_at", "state", "result_link"]
    list_filter = ["action", "state"]
    list_select_related = ["alert", "result"]
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50

    @admin.display(description="alert")
    def alert_link(self, obj: Escalation) -> str:
        return _delivery_link(obj.alert)

    @admin.display(description="step taken")
    def result_link(self, obj: Escalation) -> str:
        return _delivery_link(obj.result)
