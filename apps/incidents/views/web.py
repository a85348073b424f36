"""The incidents UI (server-rendered, every action a plain form: no JavaScript needed).

Readers (`incidents.read`: security officers, admins, auditors) see every page; writers
(`incidents.write`) also see the forms, and only they may POST (others get the 403 page).
A visitor who is not signed in goes to the sign-in page; a session that has not verified
the authenticator its owner must use goes back to sign in (or to enrol). Every state change
is one service call; the services' refusals (InvalidInput 400, NotFound 404,
InvalidTransition 409) are shown on the page with that status, never as a 500.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.web_access import View, error_page, ui_view
from apps.apikeys.selectors import api_key_list
from apps.core.errors import ApplicationError, InvalidInput, NotFound
from apps.core.permissions import may
from apps.incidents import forms as f
from apps.incidents.models import EntryKind, Incident, Resolution, ResourceKind, Status
from apps.incidents.reports.data import (
    DURATION_LABELS,
    actor_label,
    entry_summary,
    entry_text,
    format_duration,
    incident_report_data,
)
from apps.incidents.reports.pdf import incident_report_pdf
from apps.incidents.selectors import (
    incident_counts_by_phase,
    incident_duplicates,
    incident_get,
    incident_list,
    incident_people_names,
    phase_durations,
)
from apps.incidents.services import (
    incident_assign,
    incident_contain,
    incident_create,
    incident_duplicate_check,
    incident_note_add,
    incident_postmortem_save,
    incident_transition,
)
from apps.incidents.workflow import (
    PHASE_FIELD,
    PHASES,
    QUICK_CLOSE_RESOLUTIONS,
    TRANSITIONS,
    check_transition,
)
from apps.registry.selectors import model_version_get, registered_model_get

READ = "incidents.read"
WRITE = "incidents.write"
PAGE_SIZE = 50


def _sentence(error: ApplicationError, *, with_field: bool = False) -> str:
    """The service's message for people, as a sentence: by default without the field's path
    (the page says which form it was about)."""
    text = error.details[0]["message"] if error.details and not with_field else error.message
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _user(username: str, *, active: bool = True) -> Any:
    if not username:
        return None
    people = get_user_model().objects.filter(username=username)
    user = people.filter(is_active=True).first() if active else people.first()
    if user is None:
        raise NotFound(f"No {'active ' if active else ''}user named {username}.")
    return user


# --- the list ----------------------------------------------------------------------------


def _ago(delta: timedelta) -> str:
    """Like "just now", "12 min ago", "3 h 5 min ago", "5 h ago", "2 d ago": quick to scan."""
    minutes = int(delta.total_seconds()) // 60
    if minutes < 1:
        return "just now"
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    if days:
        parts = [f"{days} d", f"{hours} h" if hours else ""]
    else:
        parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    return " ".join(part for part in parts if part) + " ago"


@require_GET
@ui_view(READ, home="incident-list")
def incident_list_page(request: HttpRequest) -> HttpResponse:
    user = request.user
    form = f.IncidentFilterForm(request.GET)
    filters = {name: value for name, value in form.filters().items() if value}
    error, status = None, 200
    try:
        incidents = incident_list(actor=user, filters=filters)
    except InvalidInput as exc:
        error, status = _sentence(exc, with_field=True), exc.status_code
        incidents = incident_list(actor=user, filters={})
        filters = {}
    page = Paginator(incidents, PAGE_SIZE).get_page(request.GET.get("page"))
    now = timezone.now()
    for incident in page:
        incident.detected_ago = _ago(now - incident.detected_at)  # type: ignore[attr-defined]  # for the template
        incident.updated_ago = _ago(now - incident.updated_at)  # type: ignore[attr-defined]  # likewise
    counts = incident_counts_by_phase(actor=user)
    keep = request.GET.copy()
    keep.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "error": error,
        "filtered": bool(set(filters) - {"sort"}),
        "querystring": keep.urlencode(),
        "open_total": sum(n for phase, n in counts.items() if phase != Status.CLOSED),
        "phase_counts": [
            {
                "value": phase,
                "label": Status(phase).label,
                "count": counts[phase],
                "current": filters.get("status") == phase,
            }
            for phase in PHASES
        ],
        "can_write": may(user, WRITE),
    }
    return render(request, "incidents/list.html", context, status=status)


@require_http_methods(["GET", "POST"])
@ui_view(WRITE, home="incident-list")
def incident_new_page(request: HttpRequest) -> HttpResponse:
    form = f.IncidentCreateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            incident = incident_create(
                actor=request.user,
                title=data["title"],
                severity=data["severity"],
                description=data["description"],
                assignee=_user(data["assignee"]),
            )
        except ApplicationError as exc:
            field = exc.details[0]["path"] if exc.details else None
            form.add_error(field if field in form.fields else None, _sentence(exc))
        else:
            messages.success(request, f"Incident opened: {incident.get_severity_display()}.")
            return HttpResponseRedirect(reverse("incident-detail", args=[incident.id]))
    status = 400 if form.is_bound else 200
    return render(request, "incidents/new.html", {"form": form}, status=status)


# --- one incident ------------------------------------------------------------------------


def _phase_steps(incident: Incident) -> list[dict[str, Any]]:
    current = PHASES.index(incident.status)
    steps = []
    for index, phase in enumerate(PHASES):
        state = "done" if index < current else "current" if index == current else "todo"
        if index == current + 1:
            state = "next"
        # When it entered the phase; a step ahead shows no time (after a reopen, the phases
        # ahead keep the times of the first pass, which would mislead).
        at = getattr(incident, PHASE_FIELD[phase]) if index <= current else None
        if state == "done" and at is None:
            state = "skipped"  # closed as a false positive, duplicate or benign before it
        steps.append({"value": phase, "label": Status(phase).label, "state": state, "at": at})
    return steps


def _timeline(incident: Incident, names: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "at": entry.created_at,
            "kind": entry.kind,
            "actor": actor_label(entry, names),
            "system": entry.actor_type != "user",
            "summary": entry_summary(entry, names),
            "text": entry_text(entry),
            "data": entry.data if entry.kind == EntryKind.DETECTOR_HIT else {},
        }
        for entry in incident.timeline.all()
    ]


CONTAINED = {
    "revoke_api_key": "revoked",
    "archive_model_version": "archived",
    "deactivate_user": "deactivated",
}


def _resources(incident: Incident, names: dict[str, str], can_contain: bool) -> list[Any]:
    """Linked resources, each with the containment it offers (a key to revoke, a version to
    archive, a user to deactivate) when it can be addressed from its reference."""
    done = {
        (entry.data.get("kind"), entry.data.get("ref")): CONTAINED[entry.data.get("action", "")]
        for entry in incident.timeline.all()
        if entry.kind == EntryKind.CONTAINMENT and entry.data.get("action") in CONTAINED
    }
    rows = []
    for resource in incident.resources.all():
        row: dict[str, Any] = {
            "kind": resource.get_kind_display(),
            "ref": resource.ref,
            "label": resource.label,
            "done": done.get((resource.kind, resource.ref)),
            "contain": None,
        }
        can_offer = can_contain and not row["done"]  # not twice from this incident
        if resource.kind == ResourceKind.USER:
            row["name"] = names.get(resource.ref)
        if can_offer and resource.kind == ResourceKind.API_KEY:
            row["contain"] = {"action": "revoke_api_key", "fields": {"key": resource.ref}}
        elif can_offer and resource.kind == ResourceKind.MODEL_VERSION and ":" in resource.ref:
            model, _, number = resource.ref.rpartition(":")
            row["contain"] = {
                "action": "archive_model_version",
                "fields": {"model": model, "version": number},
            }
        elif can_offer and resource.kind == ResourceKind.USER and row.get("name"):
            row["contain"] = {"action": "deactivate_user", "fields": {"username": row["name"]}}
        if row["contain"]:
            row["contain"]["label"] = f.ACTION_LABELS[row["contain"]["action"]]
        rows.append(row)
    return rows


def _postmortem_forms(incident: Incident) -> tuple[f.PostmortemForm, Any]:
    form = f.PostmortemForm(
        initial={
            "root_cause": incident.root_cause,
            "impact": incident.impact,
            "lessons": incident.lessons,
        },
        auto_id="pm_%s",
    )
    items = f.ActionItemFormSet(
        prefix="actions",
        initial=[
            {
                "description": item.description,
                "owner": item.owner.username if item.owner else "",
                "due_date": item.due_date,
            }
            for item in incident.actions.all()
        ],
    )
    return form, items


def _detail(
    request: HttpRequest,
    incident: Incident,
    *,
    error: str | None = None,
    error_target: str = "",
    status: int = 200,
    **bound: Any,
) -> HttpResponse:
    """The incident page; `bound` replaces a form by the one the user just sent (with their
    input and its errors) when the page answers a refused POST."""
    user = request.user
    can_write = may(user, WRITE)
    names = incident_people_names(actor=user, incident=incident)
    context = _detail_context(
        incident, names, can_write=can_write, error=error, error_target=error_target
    )
    context["duplicates"] = incident_duplicates(actor=user, incident=incident)
    if can_write:
        context.update(_write_forms(incident, bound, error_target=error_target))
    return render(request, "incidents/detail.html", context, status=status)


def _detail_context(
    incident: Incident,
    names: dict[str, str],
    *,
    can_write: bool,
    error: str | None,
    error_target: str,
) -> dict[str, Any]:
    """What every reader of the incident page sees."""
    return {
        "incident": incident,
        "steps": _phase_steps(incident),
        "next_status": Status(TRANSITIONS[incident.status]),
        "is_closed": incident.status == Status.CLOSED,
        "quick_closed": incident.resolution in QUICK_CLOSE_RESOLUTIONS,
        "durations": [
            {"label": DURATION_LABELS[name], "value": format_duration(delta)}
            for name, delta in phase_durations(incident).items()
        ],
        "timeline": _timeline(incident, names),
        "resources": _resources(incident, names, can_write and incident.status != "closed"),
        "action_items": list(incident.actions.all()),
        "can_write": can_write,
        "error": error,
        "error_target": error_target,
    }


def _write_forms(incident: Incident, bound: dict[str, Any], *, error_target: str) -> dict[str, Any]:
    """The writers' forms: blank, or the one in `bound` the user just sent."""
    pm_form, pm_items = _postmortem_forms(incident)
    return {
        "transition_form": _transition_form(incident, bound),
        "note_form": bound.get("note_form") or f.NoteForm(auto_id="note_%s"),
        "assign_form": bound.get("assign_form")
        or f.AssignForm(
            initial={"assignee": incident.assignee.username if incident.assignee else ""},
            auto_id="assign_%s",
        ),
        "containment_forms": _containment_forms(bound.get("containment_form")),
        "close_form": bound.get("close_form") or f.CloseForm(auto_id="close_%s"),
        "resolution_help": f.RESOLUTION_HELP,
        "postmortem_form": bound.get("postmortem_form") or pm_form,
        "action_formset": bound.get("action_formset") or pm_items,
        "postmortem_open": (
            "postmortem_form" in bound
            or error_target == "postmortem"
            or (
                incident.status in (Status.RECOVERED, Status.CLOSED)
                and incident.resolution not in QUICK_CLOSE_RESOLUTIONS
            )
            or bool(incident.root_cause or incident.impact or incident.lessons)
        ),
    }


def _transition_form(incident: Incident, bound: dict[str, Any]) -> f.TransitionForm:
    if "transition_form" in bound:
        # Keep the note typed (and its error), but aim at the phase that is next *now*:
        # the refused form may have named one another officer's move made stale.
        typed = bound["transition_form"].data.get("note", "")
        return f.TransitionForm(
            {"to": TRANSITIONS[incident.status], "note": typed}, auto_id="transition_%s"
        )
    return f.TransitionForm(initial={"to": TRANSITIONS[incident.status]}, auto_id="transition_%s")


def _containment_forms(contain: Any) -> list[dict[str, Any]]:
    """One form per containment action; the one the user just sent, if any, as they sent it."""
    bound_action = contain.data.get("action") if contain is not None else None
    return [
        {
            "action": action,
            "label": f.ACTION_LABELS[action],
            "form": contain
            if action == bound_action
            else f.ContainmentForm(initial={"action": action}, auto_id=f"{action}_%s"),
        }
        for action in f.ACTION_LABELS
    ]


def _load(request: HttpRequest, incident_id: str) -> Incident:
    return incident_get(actor=request.user, incident_id=incident_id)


def _refused(
    request: HttpRequest, incident_id: str, error: ApplicationError, **bound: Any
) -> HttpResponse:
    """The page again, with the service's refusal said plainly, at the refusal's status."""
    target = error.details[0]["path"].split("/")[0] if error.details else ""
    incident = _load(request, incident_id)  # fresh: the refused change may have raced another
    return _detail(
        request,
        incident,
        error=_sentence(error),
        error_target=target,
        status=error.status_code,
        **bound,
    )


def incident_action(view: View) -> View:
    """A POST on one incident by a writer: a NotFound incident is the 404 page; a refusal of
    the service is the incident page with the message."""

    @wraps(view)
    def wrapped(request: HttpRequest, incident_id: str) -> HttpResponse:
        try:
            incident = _load(request, incident_id)
        except NotFound as exc:
            return error_page(request, exc)
        return view(request, incident)

    return require_POST(ui_view(WRITE, home="incident-list")(wrapped))


@require_GET
@ui_view(READ, home="incident-list")
def incident_detail_page(request: HttpRequest, incident_id: str) -> HttpResponse:
    try:
        incident = _load(request, incident_id)
    except NotFound as exc:
        return error_page(request, exc)
    return _detail(request, incident)


def _back(incident: Incident, anchor: str = "") -> HttpResponseRedirect:
    url = reverse("incident-detail", args=[incident.id])
    return HttpResponseRedirect(f"{url}#{anchor}" if anchor else url)


@incident_action
def incident_transition_post(request: HttpRequest, incident: Incident) -> HttpResponse:
    form = f.TransitionForm(request.POST, auto_id="transition_%s")
    if not form.is_valid():
        message = (
            "Every transition needs a note saying why."
            if "note" in form.errors
            else "Choose the next phase."
        )
        return _detail(request, incident, error=message, transition_form=form, status=400)
    to = form.cleaned_data["to"]
    reopening = incident.status == Status.CLOSED
    try:
        incident = incident_transition(
            actor=request.user,
            incident=incident,
            to=to,
            note=form.cleaned_data["note"],
        )
    except ApplicationError as exc:
        return _refused(request, str(incident.id), exc, transition_form=form)
    verb = "Reopened: back to" if reopening else "Moved to"
    messages.success(request, f"{verb} {Status(to).label}.")
    return _back(incident)


@incident_action
def incident_note_post(request: HttpRequest, incident: Incident) -> HttpResponse:
    form = f.NoteForm(request.POST, auto_id="note_%s")
    if not form.is_valid():
        return _detail(request, incident, error="A note needs text.", note_form=form, status=400)
    try:
        incident_note_add(actor=request.user, incident=incident, text=form.cleaned_data["text"])
    except ApplicationError as exc:
        return _refused(request, str(incident.id), exc, note_form=form)
    messages.success(request, "Note added.")
    return _back(incident, "timeline")


@incident_action
def incident_assign_post(request: HttpRequest, incident: Incident) -> HttpResponse:
    form = f.AssignForm(request.POST, auto_id="assign_%s")
    if not form.is_valid():
        return _detail(
            request,
            incident,
            error="Choose someone who may work incidents.",
            assign_form=form,
            status=400,
        )
    try:
        assignee = _user(form.cleaned_data["assignee"])
        incident = incident_assign(actor=request.user, incident=incident, assignee=assignee)
    except ApplicationError as exc:
        return _refused(request, str(incident.id), exc, assign_form=form)
    messages.success(
        request, f"Assigned to {assignee.username}." if assignee else "Nobody is assigned now."
    )
    return _back(incident)


def _containment_target(request: HttpRequest, data: dict[str, Any]) -> tuple[Any, list[Any]]:
    """(the service's target, what the confirmation page shows about it); NotFound if the
    target does not exist."""
    action = data["action"]
    if action == "revoke_api_key":
        raw = data["key"].strip()
        keys = api_key_list(actor=request.user)
        if raw.startswith("bwk_"):
            api_key = keys.filter(public_id=raw.removeprefix("bwk_")).first()
        else:
            key_id = _as_uuid(raw)
            api_key = keys.filter(pk=key_id).first() if key_id else None
        if api_key is None:
            raise NotFound("No API key with this prefix or id.")
        return str(api_key.id), [
            ("Key", api_key.prefix),
            ("Name", api_key.name),
            ("Owner", api_key.owner.username),
            ("Scopes", ", ".join(api_key.scopes)),
            ("Status", api_key.status),
        ]
    if action == "archive_model_version":
        model = registered_model_get(actor=request.user, name=data["model"].strip())
        version = model_version_get(actor=request.user, model=model, number=data["version"])
        return {"model": model.name, "version": version.number}, [
            ("Model", model.name),
            ("Version", str(version.number)),
            ("Stage now", version.stage),
        ]
    # Any account, active or not: deactivating one twice is the service's 409 to say.
    user = _user(data["username"].strip(), active=False)
    return user.username, [
        ("User", user.username),
        ("Roles", ", ".join(sorted(user.role_names())) or "none"),
    ]


CONTAINMENT_EFFECTS = {
    "revoke_api_key": "The key is refused from its next request on (401 api_key_revoked). "
    "This cannot be undone: the owner needs a new key.",
    "archive_model_version": "The version stops serving: if it is in production, predict "
    "answers no_production_version until another version is promoted.",
    "deactivate_user": "The user's sessions, tokens and API keys stop working from their next "
    "request; an admin can reactivate the account.",
}


@incident_action
def incident_contain_post(request: HttpRequest, incident: Incident) -> HttpResponse:
    """Two steps, both POSTs: the first shows what will happen (no change), the second, sent
    from that page with `confirm`, does it."""
    action = request.POST.get("action", "")
    form = f.ContainmentForm(request.POST, auto_id=f"{action}_%s")
    if not form.is_valid():
        return _detail(
            request,
            incident,
            error="Say what to contain: " + f.ACTION_LABELS.get(action, "choose an action") + ".",
            error_target="containment",
            containment_form=form,
            status=400,
        )
    data = form.cleaned_data
    try:
        target, facts = _containment_target(request, data)
        if not data["confirm"]:
            return render(
                request,
                "incidents/confirm_containment.html",
                {
                    "incident": incident,
                    "action": data["action"],
                    "label": f.ACTION_LABELS[data["action"]],
                    "effect": CONTAINMENT_EFFECTS[data["action"]],
                    "facts": facts,
                    "fields": {
                        name: data[name]
                        for name in ("key", "model", "version", "username")
                        if data.get(name) not in (None, "")
                    },
                    # Offered (and ticked) while the incident is still detected.
                    "offer_contained": incident.status == Status.DETECTED,
                },
            )
        was_detected = incident.status == Status.DETECTED
        entry = incident_contain(
            actor=request.user,
            incident=incident,
            action=data["action"],
            target=target,
            then_contained=data["then_contained"],
        )
    except ApplicationError as exc:
        return _refused(request, str(incident.id), exc, containment_form=form)
    done = f"Done: {entry_summary(entry, {})}. It is on the timeline."
    if data["then_contained"] and was_detected:
        moved = _load(request, str(incident.id)).status == Status.CONTAINED
        done += " The incident moved to Contained." if moved else ""
    messages.success(request, done)
    return _back(incident)


@incident_action
def incident_close_post(request: HttpRequest, incident: Incident) -> HttpResponse:
    """Close as a false positive, a duplicate or benign, from any open phase: two POSTs, as
    containment (the first shows what will happen, the second, with `confirm`, closes)."""
    form = f.CloseForm(request.POST, auto_id="close_%s")
    if not form.is_valid():
        field, errors = next(iter(form.errors.items()))
        message = "Every close needs a note saying why." if field == "note" else str(errors[0])
        return _detail(
            request, incident, error=message, error_target="close", close_form=form, status=400
        )
    data = form.cleaned_data
    resolution = Resolution(data["resolution"])
    try:
        original = None
        if resolution == Resolution.DUPLICATE:
            original = incident_duplicate_check(
                incident=incident, duplicate_of=data["duplicate_of"]
            )
        if not data["confirm"]:
            check_transition(incident.status, Status.CLOSED, resolution)  # 409 now, not later
            return render(
                request,
                "incidents/confirm_close.html",
                {
                    "incident": incident,
                    "resolution": resolution,
                    "original": original,
                    "note": data["note"],
                },
            )
        incident_transition(
            actor=request.user,
            incident=incident,
            to=Status.CLOSED,
            note=data["note"],
            resolution=resolution,
            duplicate_of=original.pk if original is not None else None,
        )
    except ApplicationError as exc:
        return _refused(request, str(incident.id), exc, close_form=form)
    messages.success(request, f"Closed as {resolution.label.lower()}.")
    return _back(incident)


@incident_action
def incident_postmortem_post(request: HttpRequest, incident: Incident) -> HttpResponse:
    form = f.PostmortemForm(request.POST, auto_id="pm_%s")
    items = f.ActionItemFormSet(request.POST, prefix="actions")
    if not (form.is_valid() and items.is_valid()):
        return _detail(
            request,
            incident,
            error="The post-mortem was not saved: see the fields marked below.",
            error_target="postmortem",
            postmortem_form=form,
            action_formset=items,
            status=400,
        )
    try:
        incident_postmortem_save(
            actor=request.user,
            incident=incident,
            postmortem={**form.cleaned_data, "actions": f.action_items_of(items)},
        )
    except ApplicationError as exc:
        return _refused(request, str(incident.id), exc, postmortem_form=form, action_formset=items)
    messages.success(request, "Post-mortem saved.")
    return _back(incident, "postmortem")


# --- reading and exporting ---------------------------------------------------------------


@require_GET
@ui_view(READ, home="incident-list")
def incident_postmortem_page(request: HttpRequest, incident_id: str) -> HttpResponse:
    """The post-mortem as a document to read or print (print CSS hides the site around it)."""
    try:
        incident = _load(request, incident_id)
    except NotFound as exc:
        return error_page(request, exc)
    names = incident_people_names(actor=request.user, incident=incident)
    context = {
        "incident": incident,
        "quick_closed": incident.resolution in QUICK_CLOSE_RESOLUTIONS,
        "durations": [
            {"label": DURATION_LABELS[name], "value": format_duration(delta)}
            for name, delta in phase_durations(incident).items()
        ],
        "steps": _phase_steps(incident),
        "timeline": _timeline(incident, names),
        "action_items": list(incident.actions.all()),
    }
    return render(request, "incidents/postmortem.html", context)


def _filename(incident: Incident, extension: str) -> str:
    return f"incident-{str(incident.id)[:8]}-{incident.detected_at:%Y%m%d}.{extension}"


@require_GET
@ui_view(READ, home="incident-list")
def incident_report_json(request: HttpRequest, incident_id: str) -> HttpResponse:
    try:
        incident = _load(request, incident_id)
    except NotFound as exc:
        return error_page(request, exc)
    response = JsonResponse(
        incident_report_data(actor=request.user, incident=incident), json_dumps_params={"indent": 2}
    )
    response["Content-Disposition"] = f'attachment; filename="{_filename(incident, "json")}"'
    return response


@require_GET
@ui_view(READ, home="incident-list")
def incident_report_pdf_download(request: HttpRequest, incident_id: str) -> HttpResponse:
    try:
        incident = _load(request, incident_id)
    except NotFound as exc:
        return error_page(request, exc)
    pdf = incident_report_pdf(actor=request.user, incident=incident)
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{_filename(incident, "pdf")}"'
    return response
