"""The opt-outs: who texted STOP to which sender, and the action that clears one (with a reason)."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.models import AbstractBaseUser as User
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from deliveries import selectors, services
from deliveries.admin.base import ReadOnlyAdmin, organisation, yes_no
from deliveries.admin.filters import OrganisationFilter
from deliveries.models import OptOut


class OptOutStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("cleared", "Cleared")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OptOut]) -> QuerySet[OptOut]:
        if self.value() == "active":
            return queryset.filter(cleared_at__isnull=True)
        if self.value() == "cleared":
            return queryset.filter(cleared_at__isnull=False)
        return queryset


class ClearOptOutForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), max_length=1000, strip=True)


@admin.register(OptOut)
class OptOutAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        organisation,
        "recipient",
        "sender",
        "active",
        "cleared_at",
        "cleared_by",
        "cleared_reason",
    ]
    list_filter = [OptOutStateFilter, ("organization", OrganisationFilter)]
    search_fields = ["recipient"]
    search_help_text = "A phone number in any common format."
    actions = ["clear_selected"]

    @admin.display(description="active")
    def active(self, obj: OptOut) -> str:
        return yes_no(obj.cleared_at is None)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[OptOut], search_term: str
    ) -> tuple[QuerySet[OptOut], bool]:
        if not search_term.strip():
            return queryset, False
        number = selectors.number_q("recipient", search_term)
        return queryset.filter(number if number is not None else Q(recipient=search_term.strip())), False

    def has_clear_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("deliveries.clear_optout")

    @admin.action(description="Clear selected opt-outs…", permissions=["clear"])
    def clear_selected(self, request: HttpRequest, queryset: QuerySet[OptOut]) -> HttpResponse | None:
        opt_outs = list(queryset.filter(cleared_at__isnull=True).select_related("organization"))
        form = ClearOptOutForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            for opt_out in opt_outs:
                try:
                    services.opt_out_clear(
                        opt_out=opt_out, by=cast(User, request.user), reason=form.cleaned_data["reason"]
                    )
                except services.Refused as exc:
                    self.message_user(request, f"{opt_out.recipient}: {exc}", messages.ERROR)
                    continue
                self.log_change(request, opt_out, f"Cleared opt-out: {form.cleaned_data['reason']}")
                self.message_user(request, f"Cleared the opt-out of {opt_out.recipient} from {opt_out.sender}.")
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Clear opt-outs",
            "opts": self.opts,
            "opt_outs": opt_outs,
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/deliveries/optout/clear_confirmation.html", context)
