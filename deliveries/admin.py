"""Read-only audit views of deliveries. History is append-only: nobody edits a recorded fact."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from deliveries.models import Attempt, Delivery, ErrorReport, Organization


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AttemptInline(admin.TabularInline):
    model = Attempt
    extra = 0
    can_delete = False
    fields = readonly_fields = ("number", "trigger", "started_at", "outcome", "http_status", "twilio_code",
                                "twilio_message", "twilio_request_id", "duration_ms")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "organization", "to_number", "from_number", "status", "attempt_count",
                    "error_code", "twilio_sid"]
    list_filter = ["status"]
    search_fields = ["=to_number", "=twilio_sid", "=idempotency_key"]
    show_full_result_count = False
    inlines = [AttemptInline]


@admin.register(Organization)
class OrganizationAdmin(ReadOnlyAdmin):
    list_display = ["oid", "subscription", "twilio_account_sid", "credential_refreshed_at", "last_event_at"]
    # The Auth Token is never shown, not even encrypted.
    exclude = ["twilio_auth_token"]


@admin.register(ErrorReport)
class ErrorReportAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "oid", "error"]
