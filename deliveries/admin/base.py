"""What every page of the audit desk shares: read-only history and a capped row count."""

from __future__ import annotations

from functools import cached_property
from typing import Any, cast

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from django.http import HttpRequest


class ReadOnlyAdmin(admin.ModelAdmin):
    show_facets = admin.ShowFacets.NEVER  # facet counts are a full count per filter choice

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


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
