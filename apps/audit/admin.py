from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from apps.audit.models import AuditEvent, Checkpoint
from apps.audit.services import audit_chain_pending
from apps.core.admin import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("seq", "ts", "action", "outcome", "actor_type", "actor_ref")
    list_filter = ("outcome", "actor_type", "action")
    search_fields = ("action", "actor_ref")
    date_hierarchy = "ts"
    ordering = ("-seq",)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        audit_chain_pending(wait=True)  # show everything recorded, as the API does
        return super().changelist_view(request, extra_context)


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = ("seq", "head", "ts")
    ordering = ("-seq",)
