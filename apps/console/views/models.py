"""The console's models pages under /models/ (docs/api.md "Models and versions": people do
here what the API does): the models, one model and its versions, one version, and the
confirmation pages of promote, archive and roll back (the upload form: model_upload.py).

Server-rendered; every action a plain POST form, working with JavaScript off. Each change is
one call of the registry's services, the API's own, so it is checked and audited alike: the
model's owners and admins upload and move versions, security officers may archive any.
Readers (`models.read`: admins, ML engineers, auditors) see every model's pages; a security
officer, who holds `models.archive_any` but not `models.read` (as in the API), sees a
version's page and its archive confirmation only. A refusal is a page with the service's
status and message (403, 404, 409, 400 on the form, 413 for an artifact over the limit).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from apps.accounts.web_access import View, error_page, ui_view
from apps.console.models_forms import ModelRegisterForm
from apps.core.errors import ApplicationError, Conflict, NotFound, PermissionDenied
from apps.core.permissions import may
from apps.registry.errors import VersionQuarantined
from apps.registry.selectors import (
    model_version_facts,
    model_version_get,
    model_version_list,
    model_version_rollback_pair,
    model_versions_writable_check,
    registered_model_get,
    registered_model_list,
    registered_model_stage_summaries,
)
from apps.registry.services import (
    model_version_stage,
    registered_model_create,
)

READ = "models.read"
WRITE = "models.write"
ARCHIVE_ANY = "models.archive_any"
HOME = "models-list"
PAGE_SIZE = 25
TEMPLATES = "console/models/"


def ui_view_any(*capabilities: str, home: str) -> Callable[[View], View]:
    """`ui_view` for a page that holders of any one of `capabilities` may open (the registry's
    service then decides what each may do): signed in, MFA verified where required, else the
    first capability's refusal."""

    def decorator(view: View) -> View:
        gates = {capability: ui_view(capability, home=home)(view) for capability in capabilities}

        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            for capability in capabilities:
                if may(request.user, capability):
                    return gates[capability](request, *args, **kwargs)
            return gates[capabilities[0]](request, *args, **kwargs)

        return guarded

    return decorator


def sentence(error: ApplicationError) -> str:
    text = error.message
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _may_change(user: Any, model: Any, *, archive: bool = False) -> bool:
    """Whether the registry's services would let `user` move (or archive) `model`'s
    versions: the same check they make (`model_versions_writable_check`)."""
    try:
        model_versions_writable_check(actor=user, model=model, archive=archive)
    except PermissionDenied:
        return False
    return True


def _page_of(request: HttpRequest, items: Any) -> Any:
    return Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))


def _model_url(model: Any) -> str:
    return reverse("models-detail", args=[model.name])


def version_url(version: Any) -> str:
    return reverse("models-version", args=[version.model.name, version.number])


# --- the models --------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@ui_view(READ, home=HOME)
def model_list_page(request: HttpRequest) -> HttpResponse:
    """The models, by name, with their production and staging versions; for `models.write`,
    the "Register a model" form (POSTed here: `registered_model_create`, audited
    `model.created`, the registrant its first owner)."""
    user = request.user
    can_register = may(user, WRITE)
    form, status = ModelRegisterForm(auto_id="register_%s"), 200
    if request.method == "POST":
        if not can_register:
            return error_page(
                request, PermissionDenied("Only admins and ML engineers register models.")
            )
        form = ModelRegisterForm(request.POST, auto_id="register_%s")
        status = 400
        if form.is_valid():
            try:
                model = registered_model_create(actor=user, **form.cleaned_data)
            except ApplicationError as exc:
                form.add_error("name" if exc.status_code == 409 else None, sentence(exc))
                status = exc.status_code
            else:
                messages.success(request, f"Registered {model.name}: you are its owner.")
                return HttpResponseRedirect(_model_url(model))
    page = _page_of(request, registered_model_list(actor=user).order_by("name"))
    summaries = registered_model_stage_summaries(actor=user, models=page.object_list)
    rows = [{"model": model, **summaries[model.pk]} for model in page]
    context = {
        "page": page,
        "rows": rows,
        "form": form if can_register else None,
        "register_open": form.is_bound,
    }
    return render(request, TEMPLATES + "list.html", context, status=status)


# --- one model ---------------------------------------------------------------------------


@require_GET
@ui_view(READ, home=HOME)
def model_detail_page(request: HttpRequest, name: str) -> HttpResponse:
    user = request.user
    try:
        model = registered_model_get(actor=user, name=name)
    except NotFound as exc:
        return error_page(request, exc)
    versions = (
        model_version_list(actor=user, model=model)
        .select_related("signed_by", "created_by")
        .order_by("-number")
    )
    page = _page_of(request, versions)
    production, previous = model_version_rollback_pair(actor=user, model=model)
    can_change = _may_change(user, model)
    context = {
        "model": model,
        "owners": sorted(person.username for person in model.owners.all()),
        "page": page,
        "production": production,
        "rollback_to": previous if can_change else None,
        "can_upload": can_change,
        "can_admin": may(user, "models.admin"),
    }
    return render(request, TEMPLATES + "detail.html", context)


# --- one version -------------------------------------------------------------------------


def _load(request: HttpRequest, name: str, number: int) -> tuple[Any, Any]:
    model = registered_model_get(actor=request.user, name=name)
    return model, model_version_get(actor=request.user, model=model, number=number)


STAGE_ACTIONS: dict[str, dict[str, str]] = {
    "production": {
        "label": "Promote to production",
        "effect": "Predict calls without ?version= are answered by this version from now on. "
        "The version in production now, if any, moves back to staging.",
    },
    "staging": {
        "label": "Move to staging",
        "effect": "The version stays stored and can be promoted again. If it is in production, "
        "the model has no production version until another is promoted: predict answers "
        "no_production_version.",
    },
    "archived": {
        "label": "Archive",
        "effect": "The version stops serving: if it is in production, predict answers "
        "no_production_version until another version is promoted. It stays stored, and its "
        "owners can bring it back to staging.",
    },
}


def _actions(user: Any, model: Any, version: Any) -> list[dict[str, str]]:
    """The buttons a version's page offers `user`: the stage moves the registry allows from
    its stage, and a roll back on the production version, each only to whom may do it."""
    can_change = _may_change(user, model)
    can_archive = _may_change(user, model, archive=True)
    base = version_url(version)
    actions = []
    if can_change and version.stage != "production" and not version.is_quarantined:
        actions.append({"label": "Promote to production", "url": f"{base}/stage/production"})
    if can_change and version.stage == "production":
        _, previous = model_version_rollback_pair(actor=user, model=model)
        if previous is not None:
            actions.append({"label": f"Roll back to v{previous.number}", "url": f"{base}/rollback"})
    if can_change and version.stage != "staging":
        actions.append({"label": "Move to staging", "url": f"{base}/stage/staging"})
    if can_archive and version.stage != "archived":
        actions.append({"label": "Archive", "url": f"{base}/stage/archived", "danger": "1"})
    return actions


@require_GET
@ui_view_any(READ, ARCHIVE_ANY, home=HOME)
def version_page(request: HttpRequest, name: str, number: int) -> HttpResponse:
    user = request.user
    try:
        model, version = _load(request, name, number)
    except NotFound as exc:
        return error_page(request, exc)
    context = {
        "model": model,
        "version": version,
        "facts": model_version_facts(actor=user, version=version),
        "schema": json.dumps(version.input_schema, indent=2),
        "actions": _actions(user, model, version),
        "can_read_model": may(user, READ),
    }
    return render(request, TEMPLATES + "version.html", context)


def _confirm(
    request: HttpRequest,
    *,
    model: Any,
    version: Any,
    label: str,
    effect: str,
    action_url: str,
    facts: list[tuple[str, str]],
    fields: dict[str, str] | None = None,
    danger: bool = False,
) -> HttpResponse:
    context = {
        "model": model,
        "version": version,
        "label": label,
        "effect": effect,
        "action_url": action_url,
        "facts": facts,
        "fields": fields or {},
        "danger": danger,
        "can_read_model": may(request.user, READ),
    }
    return render(request, TEMPLATES + "confirm.html", context)


def _version_facts(version: Any) -> list[tuple[str, str]]:
    return [
        ("Model", version.model.name),
        ("Version", f"v{version.number}"),
        ("Stage now", version.stage),
        ("Status", version.status),
        ("SHA-256", version.sha256),
    ]


@require_http_methods(["GET", "POST"])
@ui_view_any(WRITE, ARCHIVE_ANY, home=HOME)
def version_stage_page(request: HttpRequest, name: str, number: int, stage: str) -> HttpResponse:
    """GET: what moving the version to `stage` will do (nothing changes); POST: do it, with
    `model_version_stage` (audited `model.version.staged`, from/to)."""
    action = STAGE_ACTIONS.get(stage)
    try:
        if action is None:
            raise NotFound("No such stage: use production, staging or archived.")
        model, version = _load(request, name, number)
        # The service's own check, before anything is shown (it checks again on POST).
        model_versions_writable_check(actor=request.user, model=model, archive=stage == "archived")
        if version.stage == stage:
            raise Conflict(f"v{version.number} is already in {stage}; nothing was changed.")
        if stage == "production" and version.is_quarantined:
            raise VersionQuarantined()
        if request.method == "POST":
            model_version_stage(actor=request.user, version=version, stage=stage)
            where = "archived" if stage == "archived" else f"in {stage}"
            messages.success(request, f"{model.name} v{version.number} is now {where}.")
            return HttpResponseRedirect(version_url(version))
    except ApplicationError as exc:
        return error_page(request, exc)
    return _confirm(
        request,
        model=model,
        version=version,
        label=action["label"],
        effect=action["effect"],
        action_url=request.path,
        facts=_version_facts(version),
        danger=stage == "archived",
    )


@require_http_methods(["GET", "POST"])
@ui_view(WRITE, home=HOME)
def version_rollback_page(request: HttpRequest, name: str, number: int) -> HttpResponse:
    """Roll the model back from its production version (this one) to the one before it
    (`model_version_rollback_pair`): as through the API, by promoting that version, which
    moves this one back to staging. GET shows which (nothing changes); POST, sent from that
    page with the version it named, does it; a replayed or stale POST is 409 and changes
    nothing."""
    try:
        model, version = _load(request, name, number)
        model_versions_writable_check(actor=request.user, model=model)
        production, previous = model_version_rollback_pair(actor=request.user, model=model)
        if production is None or production.pk != version.pk:
            raise Conflict(
                f"v{version.number} is not in production: there is nothing to roll back from "
                "it. Nothing was changed."
            )
        if previous is None:
            raise Conflict(
                f"No version older than v{version.number} is in staging to take its place. "
                "Nothing was changed."
            )
        if request.method == "POST":
            if request.POST.get("to") != str(previous.number):
                raise Conflict(
                    "The version to roll back to has changed since the page was shown. "
                    "Nothing was changed: look again."
                )
            model_version_stage(actor=request.user, version=previous, stage="production")
            messages.success(
                request,
                f"Rolled back: v{previous.number} is in production, v{version.number} is "
                "back in staging.",
            )
            return HttpResponseRedirect(version_url(previous))
    except ApplicationError as exc:
        return error_page(request, exc)
    return _confirm(
        request,
        model=model,
        version=version,
        label=f"Roll back to v{previous.number}",
        effect=(
            f"v{previous.number} (sha256 {previous.sha256[:12]}…, uploaded "
            f"{previous.created_at:%Y-%m-%d %H:%M} UTC) answers predict calls again, and "
            f"v{version.number} moves back to staging, where it can be promoted again."
        ),
        action_url=request.path,
        facts=_version_facts(version),
        fields={"to": str(previous.number)},
    )
