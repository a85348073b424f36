"""Incidents in the admin: looked at, never changed there. Every change of an incident is a
service call with a timeline entry and an audit event (the API and the UI at /incidents/);
an admin form would bypass both. People on the timeline appear as the audit trail names them
(pseudonyms)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.core.admin import ReadOnlyAdmin
from apps.incidents.models import (
    ActionItem,
    DetectorCursor,
    Incident,
    LinkedResource,
    TimelineEntry,
)


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TimelineInline(ReadOnlyInline):
    model = TimelineEntry
    fields = ("created_at", "kind", "actor_type", "actor_ref", "text", "data")
    readonly_fields = fields
    ordering = ("created_at",)


class ResourceInline(ReadOnlyInline):
    model = LinkedResource
    fields = ("kind", "ref", "label", "created_at")
    readonly_fields = fields


class ActionItemInline(ReadOnlyInline):
    model = ActionItem
    fields = ("description", "owner", "due_date", "done")
    readonly_fields = fields


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin):
    list_display = (
        "title", "severity", "status", "resolution", "source", "detector", "assignee",
        "detected_at",
    )  # fmt: skip
    list_filter = ("severity", "status", "resolution", "source", "detector")
    list_select_related = ("assignee",)
    search_fields = ("title", "dedup_key")
    date_hierarchy = "detected_at"
    ordering = ("severity", "-detected_at")
    fieldsets = (
        (None, {"fields": ("title", "description", "severity", "status", "assignee")}),
        ("Origin", {"fields": ("source", "detector", "dedup_key", "reported_by")}),
        (
            "Phases",
            {
                "fields": (
                    "detected_at",
                    "contained_at",
                    "investigating_at",
                    "remediated_at",
                    "recovered_at",
                    "closed_at",
                    "reopened_count",
                )
            },
        ),
        ("Resolution", {"fields": ("resolution", "duplicate_of")}),
        ("Post-mortem", {"fields": ("root_cause", "impact", "lessons")}),
    )
    inlines = (ResourceInline, ActionItemInline, TimelineInline)


@admin.register(DetectorCursor)
class DetectorCursorAdmin(ReadOnlyAdmin):
    list_display = ("name", "last_seq", "updated_at")
