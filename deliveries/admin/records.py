"""The other records, read-only lists: attempts, status events, organisations, error reports."""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin
from django.contrib.auth.models import AbstractBaseUser as User
from django.db.models import Model
from django.forms import ModelForm
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from deliveries import services
from deliveries.admin.base import CappedCountPaginator, ReadOnlyAdmin, organisation, yes_no
from deliveries.admin.filters import OrganisationFilter
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
    """Read-only but for the label, the desk's own name for an organisation (it wins over
    LimaCharlie's). Operators may set it; the change goes through services.organization_label_set."""

    list_display = ["display_name", "name", "label", "oid", "subscription", "last_event_at"]
    search_fields = ["oid", "name", "label"]
    fields = ["label", "name", "oid", "subscription", "subscribed_at", "unsubscribed_at", "last_event_at"]
    readonly_fields = ["name", "oid", "subscription", "subscribed_at", "unsubscribed_at", "last_event_at"]

    @admin.display(description="organisation")
    def display_name(self, obj: Organization) -> str:
        return obj.display_name

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.has_perm("deliveries.change_organization")

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        services.organization_label_set(organization=obj, label=form.cleaned_data["label"], by=cast(User, request.user))


@admin.register(Credential)
class CredentialAdmin(ReadOnlyAdmin):
    list_display = ["account_sid", organisation, "created_at", "last_used_at", "rejected_at", "stored"]
    list_filter = [("organization", OrganisationFilter)]
    search_fields = ["account_sid"]
    # The Auth Token is never shown, not even encrypted; nor its fingerprint.
    exclude = ["auth_token", "fingerprint"]

    @admin.display(description="usable")
    def stored(self, obj: Credential) -> str:
        if obj.rejected_at:
            return "No: Twilio refused it (20003)"
        return yes_no(obj.usable)


@admin.register(ErrorReport)
class ErrorReportAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "oid", "error"]
