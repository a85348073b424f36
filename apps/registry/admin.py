"""The registry in the admin: models and versions, with no download and no key material (the
wrapped data key and the storage name are never shown). Versions are uploaded from a model's
page (its owners and admins); admins change a model's owners, signature rule and allow-list
extension there; predict grants and trusted publishers are added and removed here. Every
change goes through the registry's services, so it is audited as one made through the API."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
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
    Publisher,
    RegisteredModel,
    WatermarkResult,
)
from apps.registry.publishers import publisher_create, publisher_remove
from apps.registry.selectors import model_version_latest
from apps.registry.services import (
    model_version_register,
    predict_grant_create,
    predict_grant_delete,
    registered_model_update,
)
from apps.registry.trust import beyond_deployment, global_name_problem
from apps.registry.upload_form import VersionUploadFormMixin
from apps.registry.uploads import ArtifactTooLarge, InMemoryArtifactUploadHandler

UPLOAD_TEMPLATE = "admin/registry/registeredmodel/upload_version.html"


def _json_area(rows: int) -> forms.Textarea:
    return forms.Textarea(attrs={"rows": rows, "cols": 80, "spellcheck": "false"})


class VersionUploadForm(VersionUploadFormMixin, forms.Form):
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
    signature = forms.FileField(
        required=False,
        help_text="An OpenSSF model-signing bundle for the artifact (model.sig), by a trusted "
        "publisher's key; required if the model requires signed artifacts.",
    )


def _prefilled(model: RegisteredModel) -> VersionUploadForm:
    """The upload form with the model's newest version's input schema, feature order, format
    and batch size (what the next version most often keeps). The feature order is explicit:
    the stored schema's properties come back in another order (jsonb), the default order."""
    latest = model_version_latest(actor=None, model=model)
    if latest is None:
        return VersionUploadForm()
    return VersionUploadForm(
        initial={
            "input_schema": json.dumps(latest.input_schema, indent=2),
            "feature_order": json.dumps(latest.feature_order),
            "format": latest.format,
            "max_batch": latest.max_batch,
        }
    )


class ModelOwnersForm(forms.ModelForm):
    """What an admin changes on a model; saved by `registered_model_update`, not by the form."""

    extra_allowed_globals = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80, "spellcheck": "false"}),
        help_text="`module.name`s, one per line, this model's artifacts may import beyond the "
        "deployment's list, in artifacts signed by a trusted publisher only. Removing a name "
        "quarantines the versions that import it.",
    )

    class Meta:
        model = RegisteredModel
        fields = ["description", "owners", "owner_group", "require_signed_artifacts"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["extra_allowed_globals"] = "\n".join(self.instance.extra_allowed_globals)

    def clean_extra_allowed_globals(self) -> list[str]:
        names = [line.strip() for line in self.cleaned_data["extra_allowed_globals"].splitlines()]
        names = [name for name in names if name]
        problems = [problem for name in names if (problem := global_name_problem(name))]
        if problems:
            raise forms.ValidationError(problems)
        return names


@admin.register(RegisteredModel)
class RegisteredModelAdmin(ReadOnlyAdmin):
    form = ModelOwnersForm
    list_display = ["name", "created_by", "owner_group", "require_signed_artifacts", "created_at"]
    list_filter = ["require_signed_artifacts"]
    search_fields = ["name", "owners__username"]
    list_select_related = ["created_by", "owner_group"]
    filter_horizontal = ["owners"]
    readonly_fields = ["name", "created_by", "created_at"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [
            "name",
            "description",
            "owners",
            "owner_group",
            "require_signed_artifacts",
            "extra_allowed_globals",
            "created_by",
            "created_at",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if self.has_change_permission(request, obj):
            return self.readonly_fields
        return self.get_fields(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Owners and the allow-list are admins' (docs/api.md); the service checks it again.
        return may(request.user, "models.admin")

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        data = form.cleaned_data
        group = data.get("owner_group")
        registered_model_update(
            actor=request.user,
            model=obj,
            description=data.get("description", ""),
            owners=[user.username for user in data.get("owners", [])],
            owner_group=group.name if group is not None else None,
            require_signed_artifacts=data.get("require_signed_artifacts", False),
            extra_allowed_globals=data.get("extra_allowed_globals", []),
        )
        obj.refresh_from_db()

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # The owners were set by the service (audited); the form's own save_m2m would set
        # them again without an event.
        return None

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

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Models are registered in the console (its "Register a model"), through the API's
        # service; the admin links there.
        context = {"can_register": may(request.user, "models.write"), **(extra_context or {})}
        return super().changelist_view(request, extra_context=context)

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
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)  # type: ignore[attr-defined]  # ModelAdmin's, not in the stubs
        request.upload_handlers = [InMemoryArtifactUploadHandler(request)]
        try:
            return self._upload_version(request, model)
        except ArtifactTooLarge as exc:
            # The body was not read to its end: the form's other fields are lost, and nothing
            # was stored. Show the form again, empty, with why.
            return self._upload_page(
                request, model, _prefilled(model), refusal=exc.message, status=exc.status_code
            )

    @method_decorator(csrf_protect)
    def _upload_version(self, request: HttpRequest, model: RegisteredModel) -> HttpResponse:
        if request.method != "POST":
            return self._upload_page(request, model, _prefilled(model))
        form = VersionUploadForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                version = self._register_and_log(request, model, form)
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

    def _register_and_log(
        self, request: HttpRequest, model: RegisteredModel, form: VersionUploadForm
    ) -> ModelVersion:
        """The API's service, and the admin's record of the addition (its log entry and
        `admin.add` in the audit chain), in one transaction."""
        with transaction.atomic():
            arguments = version_arguments(form.cleaned_data)
            version = model_version_register(actor=request.user, model=model, **arguments)
            try:
                message = self.construct_change_message(request, form, None, add=True)  # type: ignore[arg-type]  # no formsets
                self.log_addition(request, version, message)
            except BaseException:
                default_storage.delete(version.artifact)  # the row rolls back; the file not
                raise
        return version

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
            "prefilled_from": (
                None if form.is_bound else model_version_latest(actor=None, model=model)
            ),
        }
        return TemplateResponse(request, UPLOAD_TEMPLATE, context, status=status)


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = [
        "model",
        "number",
        "stage",
        "status",
        "format",
        "signed_by",
        "sha256",
        "size",
        "master_key_id",
        "last_watermark_result",
        "created_at",
    ]
    list_filter = ["stage", "status", "format", "master_key_id"]
    search_fields = ["model__name", "sha256"]
    list_select_related = ["model", "signed_by"]
    # An explicit list: `wrapped_data_key` and `artifact` must never appear.
    fields = [
        "model",
        "number",
        "stage",
        "status",
        "quarantine_reason",
        "format",
        "globals_beyond_default",
        "globals_imported",
        "signed_by",
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
    readonly_fields = fields  # type: ignore[assignment]  # plain names, no groups

    @admin.display(description="globals beyond the deployment's list")
    def globals_beyond_default(self, version: ModelVersion) -> str:
        return ", ".join(beyond_deployment(version.allowed_globals)) or "-"

    @admin.display(description="globals the artifact imports")
    def globals_imported(self, version: ModelVersion) -> str:
        return f"{len(version.allowed_globals)}: " + ", ".join(version.allowed_globals)

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
    readonly_fields = fields  # type: ignore[assignment]  # plain names, no groups


@admin.register(PredictGrant)
class PredictGrantAdmin(admin.ModelAdmin):
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
            actor=request.user, model=obj.model, user=obj.user, group=obj.group
        )
        # The admin goes on with `obj` (its log entry, its redirect): make it the saved row.
        obj.pk, obj.granted_by, obj.created_at = grant.pk, grant.granted_by, grant.created_at
        obj._state.adding, obj._state.db = False, grant._state.db

    def delete_model(self, request: HttpRequest, obj: PredictGrant) -> None:
        predict_grant_delete(actor=request.user, grant=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[PredictGrant]) -> None:
        # "Delete selected": one audited deletion per grant, all or none.
        with transaction.atomic():
            for grant in queryset.select_related("model", "user", "group"):
                predict_grant_delete(actor=request.user, grant=grant)


class PublisherForm(forms.ModelForm):
    class Meta:
        model = Publisher
        fields = ["name", "public_key"]
        widgets = {"public_key": forms.Textarea(attrs={"rows": 6, "cols": 70})}


@admin.register(Publisher)
class PublisherAdmin(admin.ModelAdmin):
    """Trusted publishers: added and removed (never edited) by security officers and admins,
    through the registry's services (audited `publisher.created` / `publisher.removed`)."""

    form = PublisherForm
    list_display = ["name", "key_id", "removed_at", "created_at"]
    list_filter = [("removed_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "key_id"]

    def _manages(self, request: HttpRequest) -> bool:
        return may(request.user, "publishers.manage")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._manages(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._manages(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._manages(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._manages(request) and (obj is None or obj.removed_at is None)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["name", "public_key"]
        return ["name", "public_key", "key_id", "created_by", "removed_at", "created_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [] if obj is None else self.get_fields(request, obj)

    def save_model(self, request: HttpRequest, obj: Publisher, form: Any, change: bool) -> None:
        try:
            created = publisher_create(actor=request.user, name=obj.name, public_key=obj.public_key)
        except ApplicationError as exc:
            # Shown on the list page; nothing was stored.
            self.message_user(request, exc.message, messages.ERROR)
            raise _Refused() from None
        obj.pk, obj.key_id, obj.created_at = created.pk, created.key_id, created.created_at
        obj.public_key = created.public_key
        obj._state.adding, obj._state.db = False, created._state.db

    def add_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().add_view(request, *args, **kwargs)
        except _Refused:
            return HttpResponseRedirect(reverse("admin:registry_publisher_changelist"))

    def delete_model(self, request: HttpRequest, obj: Publisher) -> None:
        publisher_remove(actor=request.user, publisher=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Publisher]) -> None:
        with transaction.atomic():
            for publisher in queryset:
                publisher_remove(actor=request.user, publisher=publisher)


class _Refused(Exception):
    pass
