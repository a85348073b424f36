"""The registry in the admin: read-only lists of models and versions. No download and no key
material: the wrapped data key and the storage name are never shown. Versions are uploaded
from a model's page (holders of `models.write`), and predict grants are added and deleted
here, all through the registry's services (audited)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from apps.core.admin import ReadOnlyAdmin
from apps.core.errors import ApplicationError
from apps.core.permissions import may
from apps.registry.inputs import positive_finite, version_arguments
from apps.registry.models import (
    MAX_BATCH_LIMIT,
    ArtifactFormat,
    ModelVersion,
    PredictGrant,
    RegisteredModel,
    WatermarkResult,
)
from apps.registry.services import (
    model_version_register,
    predict_grant_create,
    predict_grant_delete,
)
from apps.registry.uploads import ArtifactTooLarge, InMemoryArtifactUploadHandler

UPLOAD_TEMPLATE = "admin/registry/registeredmodel/upload_version.html"


def _json_area(rows: int) -> forms.Textarea:
    return forms.Textarea(attrs={"rows": rows, "cols": 80, "spellcheck": "false"})


class VersionUploadForm(forms.Form):
    """The fields of `POST /api/v1/models/{name}/versions`; parsed by the same helpers
    (apps.registry.inputs) and checked by the same service."""

    artifact = forms.FileField(help_text="Kept in memory and encrypted; never written to disk.")
    format = forms.ChoiceField(
        choices=ArtifactFormat.choices,
        initial=ArtifactFormat.JOBLIB,
        help_text="skops loads only allow-listed types; joblib (pickle) runs code on load.",
    )
    input_schema = forms.CharField(
        widget=_json_area(8), help_text="JSON Schema (draft 2020-12) of one input row."
    )
    feature_order = forms.CharField(
        required=False,
        widget=_json_area(2),
        help_text="JSON list of property names; empty: the schema's properties order.",
    )
    max_batch = forms.IntegerField(min_value=1, max_value=MAX_BATCH_LIMIT, initial=100)
    dp_epsilon = forms.FloatField(
        required=False, validators=[positive_finite], help_text="With DP sensitivity."
    )
    dp_sensitivity = forms.FloatField(
        required=False, validators=[positive_finite], help_text="With DP epsilon."
    )
    watermark = forms.CharField(
        required=False,
        widget=_json_area(4),
        help_text='JSON {"inputs": [rows], "labels": [...], "threshold": 0 < t <= 1}.',
    )

    def add_application_error(self, error: ApplicationError) -> None:
        """Show a refusal of the parsing helpers or the service on the field it names."""
        placed = False
        for detail in error.details:
            field = detail.get("path", "").split("/")[0]
            if field in self.fields:
                path = detail["path"]
                prefix = "" if path == field else f"{path}: "
                self.add_error(field, f"{prefix}{detail.get('message', error.message)}")
                placed = True
        if not placed:
            self.add_error(None, error.message)


@admin.register(RegisteredModel)
class RegisteredModelAdmin(ReadOnlyAdmin):
    list_display = ["name", "owner", "created_at"]
    search_fields = ["name"]
    list_select_related = ["owner"]
    fields = ["name", "description", "owner", "created_at"]
    readonly_fields = fields

    def get_urls(self) -> list[URLPattern]:
        # csrf_exempt only so that neither the admin's wrapper nor the CSRF middleware reads
        # the body before the view sets its upload handler; the view checks CSRF itself.
        upload = self.admin_site.admin_view(csrf_exempt(self.upload_version_view))
        return [
            path(
                "<path:object_id>/upload-version/",
                upload,
                name="registry_registeredmodel_upload_version",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {"can_upload_version": may(request.user, "models.write"), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context=context)

    def upload_version_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Upload a version of this model: the form of the API's upload, the same service.

        The plaintext never touches disk: the in-memory handler is the only upload handler,
        set before anything reads the body (CSRF is checked after, by `_upload_version`).
        """
        if not may(request.user, "models.write"):
            raise PermissionDenied
        model = self.get_object(request, unquote(object_id))
        if model is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        request.upload_handlers = [InMemoryArtifactUploadHandler(request)]
        try:
            return self._upload_version(request, model)
        except ArtifactTooLarge as exc:
            # The body was not read to its end: the form's other fields are lost, and nothing
            # was stored. Show the form again, empty, with why.
            return self._upload_page(
                request, model, VersionUploadForm(), refusal=exc.message, status=exc.status_code
            )

    @method_decorator(csrf_protect)
    def _upload_version(self, request: HttpRequest, model: RegisteredModel) -> HttpResponse:
        if request.method != "POST":
            return self._upload_page(request, model, VersionUploadForm())
        form = VersionUploadForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                version = model_version_register(
                    actor=request.user,
                    model=model,
                    request=request,
                    **version_arguments(form.cleaned_data),
                )
            except ApplicationError as exc:
                form.add_application_error(exc)
            else:
                self.message_user(
                    request,
                    f"Uploaded {version} ({version.format}, {version.size} bytes, "
                    f"sha256 {version.sha256}), encrypted; it is in staging.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:registry_modelversion_change", args=[version.pk])
                )
        return self._upload_page(request, model, form)

    def _upload_page(
        self,
        request: HttpRequest,
        model: RegisteredModel,
        form: VersionUploadForm,
        *,
        refusal: str = "",
        status: int = 200,
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": model,
            "form": form,
            "refusal": refusal,
            "title": f"Upload a version of {model}",
            "limit_mb": settings.BULWARK_MAX_ARTIFACT_BYTES // (1024 * 1024),
        }
        return TemplateResponse(request, UPLOAD_TEMPLATE, context, status=status)


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = [
        "model",
        "number",
        "stage",
        "format",
        "sha256",
        "size",
        "master_key_id",
        "last_watermark_result",
        "created_at",
    ]
    list_filter = ["stage", "format", "master_key_id"]
    search_fields = ["model__name", "sha256"]
    list_select_related = ["model"]
    # An explicit list: `wrapped_data_key` and `artifact` must never appear.
    fields = [
        "model",
        "number",
        "stage",
        "format",
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
