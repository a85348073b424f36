from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from apps.audit.models import AuditEvent, Checkpoint
from apps.audit.services import audit_chain_pending


class ReadOnlyAdmin(admin.ModelAdmin):
    """The audit trail is read in the admin, never written: no add, change or delete."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("seq", "ts", "action", "outcome", "actor_type", "actor_ref")
    list_filter = ("outcome", "actor_type", "action")
    search_fields = ("action", "actor_ref")
    date_hierarchy = "ts"
    ordering = ("-seq",)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):  # type: ignore[no-untyped-def]
        audit_chain_pending(wait=True)  # show everything recorded, as the API does
        return super().changelist_view(request, extra_context)


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = ("seq", "head", "ts")
    ordering = ("-seq",)
