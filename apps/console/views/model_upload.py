"""The console's upload of a model version (/models/<name>/versions/new): the fields of
`POST /api/v1/models/{name}/versions`, parsed by the API's helpers and checked by its service
(`model_version_register`), so a page refuses what the API refuses, with its status: 400 on
the form (the field named), 403 for who does not own the model, 413 over the upload limit;
nothing half-written. The artifact stays in memory (the registry's upload handler, set before
anything reads the body) and is stored only as ciphertext."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from apps.accounts.web_access import error_page, ui_view
from apps.console.models_forms import VersionUploadForm
from apps.console.views.models import HOME, TEMPLATES, WRITE, sentence, version_url
from apps.core.errors import ApplicationError
from apps.registry.inputs import version_arguments
from apps.registry.selectors import (
    model_version_latest,
    model_versions_writable_check,
    publisher_list,
    registered_model_get,
)
from apps.registry.services import model_version_register
from apps.registry.uploads import ArtifactTooLarge, InMemoryArtifactUploadHandler


def _blank_upload_form(request: HttpRequest, model: Any) -> tuple[VersionUploadForm, Any]:
    """The upload form, prefilled from the model's newest version (its input schema, feature
    order, format and batch size: what the next version most often keeps), and that version.
    The feature order is given explicitly: the schema comes back from the database with its
    properties in another order (PostgreSQL's jsonb), and that order would be the default."""
    latest = model_version_latest(actor=request.user, model=model)
    initial: dict[str, Any] = {"format": "joblib", "max_batch": 100}
    if latest is not None:
        initial = {
            "format": latest.format,
            "max_batch": latest.max_batch,
            "input_schema": json.dumps(latest.input_schema, indent=2),
            "feature_order": json.dumps(latest.feature_order),
        }
    return VersionUploadForm(initial=initial, auto_id="upload_%s"), latest


def _upload_page(
    request: HttpRequest,
    model: Any,
    form: VersionUploadForm,
    *,
    latest: Any,
    refusal: str = "",
    status: int = 200,
) -> HttpResponse:
    context = {
        "model": model,
        "form": form,
        "latest": latest,
        "refusal": refusal,
        "limit_mb": settings.BULWARK_MAX_ARTIFACT_BYTES // (1024 * 1024),
        "publishers": [p.name for p in publisher_list(actor=request.user)[:20]],
    }
    return render(request, TEMPLATES + "upload.html", context, status=status)


# csrf_exempt only so that the CSRF middleware does not read the body before the view sets
# its upload handler (Django's default handlers would write an artifact over 2.5 MB to a
# temporary file in plaintext); `_upload` checks CSRF itself, right after.
@csrf_exempt
@require_http_methods(["GET", "POST"])
@ui_view(WRITE, home=HOME)
def version_upload_page(request: HttpRequest, name: str) -> HttpResponse:
    try:
        model = registered_model_get(actor=request.user, name=name)
        model_versions_writable_check(actor=request.user, model=model)
    except ApplicationError as exc:
        return error_page(request, exc)
    request.upload_handlers = [InMemoryArtifactUploadHandler(request)]
    try:
        return _upload(request, model)
    except ArtifactTooLarge as exc:
        # The body was not read to its end: the other fields are lost and nothing was stored.
        form, latest = _blank_upload_form(request, model)
        return _upload_page(
            request, model, form, latest=latest, refusal=sentence(exc), status=exc.status_code
        )


@csrf_protect
def _upload(request: HttpRequest, model: Any) -> HttpResponse:
    if request.method != "POST":
        form, latest = _blank_upload_form(request, model)
        return _upload_page(request, model, form, latest=latest)
    form = VersionUploadForm(request.POST, request.FILES, auto_id="upload_%s")
    status = 400
    if form.is_valid():
        try:
            version = model_version_register(
                actor=request.user, model=model, **version_arguments(form.cleaned_data)
            )
        except ApplicationError as exc:
            form.add_application_error(exc)
            status = exc.status_code
        else:
            messages.success(
                request,
                f"Uploaded {model.name} v{version.number} ({version.format}, {version.size} "
                "bytes), encrypted; it is in staging.",
            )
            return HttpResponseRedirect(version_url(version))
    latest = model_version_latest(actor=request.user, model=model)
    return _upload_page(request, model, form, latest=latest, status=status)
