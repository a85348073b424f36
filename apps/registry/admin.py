"""The registry in the admin: read-only lists of models and versions. No download and no key
material: the wrapped data key and the storage name are never shown."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.registry.models import ModelVersion, RegisteredModel, WatermarkResult


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # shared by two models
    # Changes go through the API's services so they are audited; here one only looks.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RegisteredModel)
class RegisteredModelAdmin(ReadOnlyAdmin):
    list_display = ["name", "owner", "created_at"]
    search_fields = ["name"]
    list_select_related = ["owner"]
    fields = ["name", "description", "owner", "created_at"]
    readonly_fields = fields


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = [
        "model",
        "number",
        "stage",
        "sha256",
        "size",
        "master_key_id",
        "last_watermark_result",
        "created_at",
    ]
    list_filter = ["stage", "master_key_id"]
    search_fields = ["model__name", "sha256"]
    list_select_related = ["model"]
    # An explicit list: `wrapped_data_key` and `artifact` must never appear.
    fields = [
        "model",
        "number",
        "stage",
        "sha256",
        "size",
        "master_key_id",
        "input_schema",
        "feature_order",
        "max_batch",
        "dp_epsilon",
        "dp_sensitivity",
        "created_by",
        "created_at",
        "last_watermark_result",
    ]
    readonly_fields = fields

    @admin.display(description="last watermark result")
    def last_watermark_result(self, version: ModelVersion) -> str:
        # The watermark set itself (sealed) is never shown; only how its last check went.
        result = WatermarkResult.objects.filter(version=version).order_by("-created_at").first()
        if result is None:
            return "-" if not version.watermark_sealed else "not verified yet"
        if result.agreement is None:
            return f"{result.kind}: {result.status} {result.reason}".strip()
        return f"{result.kind}: {result.status} ({result.agreement:.2f} / {result.threshold:.2f})"


@admin.register(WatermarkResult)
class WatermarkResultAdmin(ReadOnlyAdmin):
    list_display = ["version", "kind", "status", "agreement", "threshold", "created_at"]
    list_filter = ["kind", "status"]
    search_fields = ["version__model__name"]
    list_select_related = ["version__model"]
    fields = [
        "id",
        "version",
        "kind",
        "status",
        "suspect_url",
        "agreement",
        "threshold",
        "reason",
        "started_at",
        "finished_at",
        "created_at",
    ]
    readonly_fields = fields
