"""The resend confirmation pages: the list's "Resend selected deliveries…" action and the delivery
page's button both lead to one page that lists what would be resent, what is refused and why, and
what is unusual enough to need an explicit tick. The resends themselves are services.delivery_resend."""

from __future__ import annotations

from typing import cast
from uuid import UUID

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.models import AbstractBaseUser as User
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme

from deliveries import services
from deliveries.models import Delivery
from deliveries.selectors import plural


class ResendForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=1000,
        strip=True,
        help_text="Why it is sent again. Kept on each new attempt, with your name.",
    )
    unusual_confirmed = forms.BooleanField(required=False)


class ResendMixin(admin.ModelAdmin):
    """The resend action, its confirmation view and page, for DeliveryAdmin (which wires the URLs).
    A ModelAdmin rather than a bare mixin so that mypy knows message_user, log_change and admin_site."""

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("deliveries.resend_delivery")

    @admin.action(description="Resend selected deliveries…", permissions=["resend"])
    def resend_selected(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> HttpResponse | None:
        limit = settings.ADMIN_RESEND_MAX
        ids = [str(i) for i in queryset.order_by().values_list("id", flat=True)[: limit + 1]]
        if len(ids) > limit:
            self.message_user(
                request,
                f"At most {limit} deliveries can be resent at once (ADMIN_RESEND_MAX); narrow the selection.",
                messages.ERROR,
            )
            return None
        return self._resend_page(request, ids, ResendForm(), next_url=request.get_full_path())

    def resend_view(self, request: HttpRequest, object_id: UUID | None = None) -> HttpResponse:
        """GET: the confirmation page for one delivery (the delivery page's button). POST: the
        confirmation form, carrying the ids, the reason and, when needed, the extra confirmation."""
        if not self.has_resend_permission(request):
            raise PermissionDenied("Resending needs the Operator role.")
        ids, next_url = self._resend_request(request, object_id)
        if not all(_is_uuid(i) for i in ids):
            # A hand-made request (the desk only sends ids it listed): it was a 500 (ValidationError).
            self.message_user(request, "Only delivery ids (UUIDs) can be resent.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:deliveries_delivery_changelist"))
        if not ids or len(ids) > settings.ADMIN_RESEND_MAX:
            self.message_user(
                request, f"Select between 1 and {settings.ADMIN_RESEND_MAX} deliveries to resend.", messages.ERROR
            )
            return HttpResponseRedirect(next_url or reverse("admin:deliveries_delivery_changelist"))
        if request.method != "POST":
            return self._resend_page(request, ids, ResendForm(), next_url=next_url)

        form = ResendForm(request.POST)
        candidates = services.resend_review(ids=ids)
        if not self._resend_confirmed(form, candidates):
            return self._resend_page(request, ids, form, next_url=next_url, candidates=candidates)
        self._resend(request, candidates, form.cleaned_data["reason"], form.cleaned_data["unusual_confirmed"])
        if len(ids) == 1 and object_id:
            return HttpResponseRedirect(reverse("admin:deliveries_delivery_change", args=[ids[0]]))
        return HttpResponseRedirect(next_url or reverse("admin:deliveries_delivery_changelist"))

    @staticmethod
    def _resend_request(request: HttpRequest, object_id: UUID | None) -> tuple[list[str], str]:
        """The ids to resend (the one in the URL, or the form's) and where to go back to, if that is
        on this site: the page's `next` is only followed to our own host."""
        source = request.POST if request.method == "POST" else request.GET
        ids = [str(object_id)] if object_id else source.getlist("ids")
        next_url = source.get("next", "")
        if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
            next_url = ""
        return ids, next_url

    @staticmethod
    def _resend_confirmed(form: ResendForm, candidates: list[services.ResendCandidate]) -> bool:
        """Whether the form is valid, including the tick that unusual resends (if any) require."""
        if (
            form.is_valid()
            and any(c.warning and not c.refusal for c in candidates)
            and not form.cleaned_data["unusual_confirmed"]
        ):
            form.add_error("unusual_confirmed", "Tick the box to confirm the unusual resends listed above.")
        return form.is_valid()

    def _resend(
        self, request: HttpRequest, candidates: list[services.ResendCandidate], reason: str, unusual_confirmed: bool
    ) -> None:
        """Resend each candidate through the service; say how many went and why each other did not."""
        resent: list[Delivery] = []
        refused = []
        for candidate in candidates:
            delivery = candidate.delivery
            try:
                services.delivery_resend(
                    delivery=delivery,
                    by=cast(User, request.user),
                    reason=reason,
                    unusual_confirmed=unusual_confirmed,
                )
            except services.Refused as exc:
                refused.append((delivery, str(exc)))
                continue
            resent.append(delivery)
            self.log_change(request, delivery, f"Resend requested: {reason}")
        if resent:
            links = format_html_join(", ", '<a href="{}">{}</a>', ((_page(d), d.to_number) for d in resent))
            self.message_user(
                request,
                format_html(
                    "{} resent ({}); the new attempts appear on {}.",
                    plural(len(resent), "delivery", "deliveries"),
                    links,
                    "its page" if len(resent) == 1 else "each page",
                ),
                messages.SUCCESS,
            )
        for delivery, why in refused:
            self.message_user(
                request,
                format_html('Not resent: <a href="{}">{}</a>: {}.', _page(delivery), delivery.to_number, why),
                messages.ERROR,
            )

    def _resend_page(
        self,
        request: HttpRequest,
        ids: list[str],
        form: ResendForm,
        *,
        next_url: str,
        candidates: list[services.ResendCandidate] | None = None,
    ) -> HttpResponse:
        candidates = candidates if candidates is not None else services.resend_review(ids=ids)
        context = {
            **self.admin_site.each_context(request),
            "title": "Resend deliveries",
            "opts": self.opts,
            "candidates": candidates,
            "sendable": [c for c in candidates if not c.refusal],
            "refused": [c for c in candidates if c.refusal],
            "unusual": [c for c in candidates if c.warning and not c.refusal],
            "form": form,
            "ids": [str(c.delivery.id) for c in candidates],
            "next_url": next_url,
            "action_url": reverse("admin:deliveries_delivery_resend"),
        }
        return TemplateResponse(request, "admin/deliveries/delivery/resend_confirmation.html", context)


def _page(delivery: Delivery) -> str:
    return reverse("admin:deliveries_delivery_change", args=[delivery.pk])


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True
