"""The other records, read-only lists: attempts, status events, organisations, error reports."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from deliveries.admin.base import CappedCountPaginator, ReadOnlyAdmin
from deliveries.models import Attempt, Credential, ErrorReport, Organization, StatusEvent


@admin.register(Attempt)
class AttemptAdmin(ReadOnlyAdmin):
    list_display = [
        "started_at",
        "delivery_link",
        "number",
        "trigger",
        "triggered_by",
        "outcome",
        "http_status",
        "twilio_code",
        "duration_ms",
    ]
    list_filter = ["trigger", "outcome"]
    list_select_related = ["delivery", "triggered_by"]
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50

    @admin.display(description="delivery")
    def delivery_link(self, obj: Attempt) -> str:
        url = reverse("admin:deliveries_delivery_change", args=[obj.delivery_id])
        return format_html('<a href="{}">{}</a>', url, obj.delivery.to_number)


@admin.register(StatusEvent)
class StatusEventAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "delivery", "message_sid", "message_status", "error_code"]
    list_filter = ["message_status"]
    paginator = CappedCountPaginator
    show_full_result_count = False


@admin.register(Organization)
class OrganizationAdmin(ReadOnlyAdmin):
    list_display = ["oid", "subscription", "subscribed_at", "unsubscribed_at", "last_event_at"]


@admin.register(Credential)
class CredentialAdmin(ReadOnlyAdmin):
    list_display = ["account_sid", "organization", "created_at", "last_used_at", "rejected_at", "stored"]
    list_filter = ["organization"]
    search_fields = ["account_sid"]
    # The Auth Token is never shown, not even encrypted; nor its fingerprint.
    exclude = ["auth_token", "fingerprint"]

    @admin.display(boolean=True, description="token stored")
    def stored(self, obj: Credential) -> bool:
        return obj.usable


@admin.register(ErrorReport)
class ErrorReportAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "oid", "error"]
