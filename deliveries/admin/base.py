"""What every page of the audit desk shares: its name, read-only history, Yes/No in words, no
developer help text, and a capped row count."""

from __future__ import annotations

from functools import cached_property
from typing import Any, cast

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

# The desk's own identity; no "View site" (the service has no public site to view).
admin.site.site_header = "ext-twilio audit desk"
admin.site.site_title = "ext-twilio audit desk"
admin.site.index_title = "At a glance"
admin.site.site_url = None


def yes_no(value: bool) -> str:
    return "Yes" if value else "No"


class ReadOnlyAdmin(admin.ModelAdmin):
    show_facets = admin.ShowFacets.NEVER  # facet counts are a full count per filter choice

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_form(
        self, request: HttpRequest, obj: Model | None = None, change: bool = False, **kwargs: Any
    ) -> type[ModelForm]:
        # The models' help texts are written for developers ("see text_sent"): the desk's pages say
        # what they need in their own words, so every field's help text is blanked here.
        kwargs.setdefault("help_texts", {f.name: "" for f in self.model._meta.get_fields() if hasattr(f, "help_text")})
        return super().get_form(request, obj, change, **kwargs)


class CappedCountPaginator(Paginator):
    """Counts at most CAP + 1 rows. The admin's exact count of a million-row table (or of a broad
    filter) is a full index scan on every page view; nobody pages past the first hundred pages, they
    narrow the filter. `capped` tells the template to say "more than CAP"."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        n = cast("QuerySet[Any]", self.object_list)[: self.CAP + 1].count()
        self.capped = n > self.CAP
        return min(n, self.CAP)

    capped = False


@admin.display(description="organisation", ordering="organization")
def organisation(obj: Any) -> str:
    """A list column: the organisation by its label or name (the desk's spelling in the header)."""
    return str(obj.organization.display_name)
