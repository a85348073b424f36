"""The registry in the admin: read-only lists of models and versions. No download and no key
material: the wrapped data key and the storage name are never shown. Predict grants are added
and deleted here, through the registry's services (audited)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.admin import ReadOnlyAdmin
from apps.registry.models import ModelVersion, PredictGrant, RegisteredModel, WatermarkResult
from apps.registry.services import predict_grant_create, predict_grant_delete


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


@admin.register(PredictGrant)
class PredictGrantAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # no runtime generics
    """Grants are added and deleted, never edited: each change goes through the registry's
    services, so it is audited (`model.grant.created` / `model.grant.deleted`)."""

    list_display = ["model", "user", "group", "granted_by", "created_at"]
    list_filter = ["model"]
    search_fields = ["model__name", "user__username", "group__name"]
    list_select_related = ["model", "user", "group", "granted_by"]
    autocomplete_fields = ["model", "user", "group"]
    fields = ["model", "user", "group"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [] if obj is None else [*self.fields, "granted_by", "created_at"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.fields if obj is None else [*self.fields, "granted_by", "created_at"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Changing a grantee in place would be a deletion and a grant in one unaudited step.
        return False

    def save_model(self, request: HttpRequest, obj: PredictGrant, form: Any, change: bool) -> None:
        # The form has already refused neither/both grantees and duplicates (the constraints).
        grant = predict_grant_create(
            actor=request.user, model=obj.model, user=obj.user, group=obj.group, request=request
        )
        # The admin goes on with `obj` (its log entry, its redirect): make it the saved row.
        obj.pk, obj.granted_by, obj.created_at = grant.pk, grant.granted_by, grant.created_at
        obj._state.adding, obj._state.db = False, grant._state.db

    def delete_model(self, request: HttpRequest, obj: PredictGrant) -> None:
        predict_grant_delete(actor=request.user, grant=obj, request=request)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[PredictGrant]) -> None:
        # "Delete selected": one audited deletion per grant, all or none.
        with transaction.atomic():
            for grant in queryset.select_related("model", "user", "group"):
                predict_grant_delete(actor=request.user, grant=grant, request=request)
