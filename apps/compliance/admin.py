"""The checklist in the admin, read-only: changes go through the UI and the API, where each
is audited. Evidence ciphertext and sealed keys are never shown."""

from __future__ import annotations

from django.contrib import admin

from apps.compliance.models import ChecklistItem, CheckResult, Control, Evidence, Framework
from apps.core.admin import ReadOnlyAdmin


@admin.register(Framework)
class FrameworkAdmin(ReadOnlyAdmin):
    list_display = ["name", "key", "position"]


@admin.register(Control)
class ControlAdmin(ReadOnlyAdmin):
    list_display = ["code", "title", "framework", "group"]
    list_filter = ["framework"]
    list_select_related = ["framework"]
    search_fields = ["code", "title"]


@admin.register(ChecklistItem)
class ChecklistItemAdmin(ReadOnlyAdmin):
    list_display = ["title", "category", "status", "owner", "automated_check", "last_reviewed_at"]
    list_filter = ["category", "status"]
    list_select_related = ["owner"]
    search_fields = ["title", "key"]
    exclude = ["controls"]
    readonly_fields = ["mapped_controls"]

    @admin.display(description="controls")
    def mapped_controls(self, item: ChecklistItem) -> str:
        return ", ".join(str(control) for control in item.controls.select_related("framework"))


@admin.register(Evidence)
class EvidenceAdmin(ReadOnlyAdmin):
    list_display = ["item", "kind", "file_name", "content_type", "size", "added_by", "created_at"]
    list_filter = ["kind"]
    list_select_related = ["item", "added_by"]
    fields = ["item", "kind", "url", "text", "file_name", "content_type", "size", "sha256"]


@admin.register(CheckResult)
class CheckResultAdmin(ReadOnlyAdmin):
    list_display = ["check_name", "item", "result", "checked_at"]
    list_filter = ["result", "check_name"]
    list_select_related = ["item"]
