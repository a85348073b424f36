from __future__ import annotations

from functools import cached_property
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.audit.models import AuditEvent, Checkpoint
from apps.audit.services import audit_chain_pending
from apps.core.admin import ReadOnlyAdmin
from apps.core.pasted_keys import pasted_key_redirect

# The admin's list counts what it pages through: over millions of events that count alone
# took a second, so it stops here (the console's /audit/ pages by keyset, with no count).
COUNTED = 10_000


class CappedCountPaginator(Paginator):
    @cached_property
    def count(self) -> int:
        events: QuerySet[Any] = self.object_list  # type: ignore[assignment]  # a queryset here
        return events[:COUNTED].count()


class _FixedChoices(admin.SimpleListFilter):
    """A filter over a column's known values: the default asks the table for its DISTINCT
    values, a scan of every event."""

    values: tuple[str, ...] = ()

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, value) for value in self.values]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(**{str(self.parameter_name): value}) if value else queryset


class OutcomeFilter(_FixedChoices):
    title = "outcome"
    parameter_name = "outcome"
    values = ("success", "failure", "denied")


class ActorTypeFilter(_FixedChoices):
    title = "actor type"
    parameter_name = "actor_type"
    values = ("user", "api_key", "system")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The raw rows, for admins; people read the trail on the console's /audit/ pages (filters
    by actor, target, request id and time, pseudonym lookup, export and verification)."""

    list_display = ("seq", "ts", "action", "outcome", "actor_type", "actor_ref")
    list_filter = (OutcomeFilter, ActorTypeFilter)
    search_fields = ("=action", "=actor_ref")  # exact: both are indexed
    ordering = ("-seq",)
    paginator = CappedCountPaginator
    show_full_result_count = False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        # A whole API key pasted into the search (?q=) would be echoed in the page and kept in
        # the URL: the same query again, the key cut to its prefix (the actor reference
        # events write for a key).
        pasted = pasted_key_redirect(request)
        if pasted is not None:
            return pasted
        audit_chain_pending(wait=True)  # show everything recorded, as the API does
        extra = {"subtitle": "The console's audit pages: /audit/", **(extra_context or {})}
        return super().changelist_view(request, extra)


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = ("seq", "head", "ts")
    ordering = ("-seq",)
