"""State changes of incidents: create, transition (and close with a resolution), note, assign,
post-mortem, link evidence, containment (through the owning apps' services, optionally moving
a detected incident to contained in the same step), and detector hits (one open incident per
detector and subject). Each is one transaction with a timeline entry and an audit event."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.accounts.safety import Change, access_change_check
from apps.accounts.services import user_deactivate
from apps.apikeys.selectors import api_key_find
from apps.apikeys.services import api_key_revoke
from apps.audit.services import audit_event_record
from apps.audit.subjects import actor_of
from apps.core.errors import Conflict, InvalidInput, NotFound
from apps.core.permissions import may
from apps.incidents.models import (
    ActionItem,
    EntryKind,
    Incident,
    LinkedResource,
    Resolution,
    ResourceKind,
    Severity,
    Source,
    Status,
    TimelineEntry,
)
from apps.incidents.workflow import PHASE_FIELD, check_transition, is_quick_close, is_reopen
from apps.registry.selectors import model_version_find
from apps.registry.services import model_version_stage

MAX_ACTION_ITEMS = 50


def _invalid(path: str, message: str) -> InvalidInput:
    return InvalidInput(f"{path}: {message}", details=[{"path": path, "message": message}])


def _entry(
    incident: Incident,
    *,
    kind: str,
    actor: Any,
    text: str = "",
    data: Mapping[str, Any] | None = None,
) -> TimelineEntry:
    subject = actor_of(actor)
    entry = TimelineEntry(
        incident=incident,
        kind=kind,
        actor_type=subject.type,
        actor_ref=subject.ref,
        text=text,
        data=dict(data or {}),
    )
    entry.full_clean()
    entry.save()
    return entry


def _link(incident: Incident, links: Iterable[tuple[str, str, str]]) -> None:
    for kind, ref, label in links:
        if kind not in ResourceKind.values:
            raise _invalid("links", f"{kind!r} is not a kind of resource")
        LinkedResource.objects.get_or_create(
            incident=incident, kind=kind, ref=ref[:128], defaults={"label": label[:200]}
        )


def _locked(incident: Incident) -> Incident:
    return Incident.objects.select_for_update().get(pk=incident.pk)


def _check_assignee(assignee: Any) -> None:
    # An incident is worked by someone who may move it: never parked on a person who cannot
    # even read it, nor on a deactivated account.
    if assignee is not None and not (assignee.is_active and may(assignee, "incidents.write")):
        raise _invalid("assignee", "must be an active security officer or admin")


@transaction.atomic
def incident_create(
    *,
    actor: Any,
    title: str,
    severity: str,
    description: str = "",
    assignee: Any = None,
    links: Iterable[tuple[str, str, str]] = (),
) -> Incident:
    """Open an incident by a person, status `detected`; audited incident.created."""
    _check_assignee(assignee)
    incident = Incident(
        title=(title or "").strip(),
        severity=severity,
        description=description or "",
        assignee=assignee,
        source=Source.PERSON,
        reported_by=actor if getattr(actor, "is_authenticated", False) else None,
        detected_at=timezone.now(),
    )
    _full_clean(incident)
    incident.save()
    _link(incident, links)
    _entry(incident, kind=EntryKind.CREATED, actor=actor, text=incident.title)
    audit_event_record(
        "incident.created",
        actor=actor,
        target=incident,
        details={"severity": incident.severity, "source": incident.source},
    )
    return incident


def _full_clean(instance: Any) -> None:
    from django.core.exceptions import ValidationError

    try:
        instance.full_clean(validate_constraints=False)
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise _invalid(field, " ".join(messages)) from None


# pg_advisory_xact_lock key ("BWDUPLIC"): closes as a duplicate one at a time, so that two
# incidents closed at once as duplicates of each other cannot both pass the cycle check.
DUPLICATE_LOCK = 0x4257_4455_504C_4943
MAX_DUPLICATE_CHAIN = 100


def incident_transition(
    *,
    actor: Any,
    incident: Incident,
    to: str,
    note: str,
    postmortem: Mapping[str, Any] | None = None,
    resolution: str | None = None,
    duplicate_of: Any = None,
) -> Incident:
    """Move to the next status (409 invalid_transition otherwise). A note is required (400).
    Closing takes a `resolution` (Resolution; default true_positive): a true positive
    closes from recovered and needs a complete post-mortem, given here or saved before
    (400); a false positive, a duplicate or a benign incident closes from any open phase
    with no post-mortem, and a duplicate names the incident it repeats in `duplicate_of`
    (an Incident or its id: one that exists, not itself, not a duplicate of it however
    many duplicates away; 400 otherwise). A resolution on any other transition, or
    `duplicate_of` without the duplicate resolution, is 400. Reopening clears the
    resolution. Records the phase's time, a timeline entry and incident.transitioned (a
    close's with its resolution); nothing is written when refused."""
    with transaction.atomic():
        if resolution == Resolution.DUPLICATE and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [DUPLICATE_LOCK])
        incident = _locked(incident)
        resolution = _check_resolution(to, resolution, duplicate_of)
        check_transition(incident.status, to, resolution)
        note = (note or "").strip()
        if not note:
            raise _invalid("note", "every transition needs a note saying why")
        original = _original(incident, duplicate_of) if resolution == Resolution.DUPLICATE else None
        if postmortem is not None:
            _save_postmortem(incident, actor=actor, postmortem=postmortem)
        if (
            to == Status.CLOSED
            and not is_quick_close(incident.status, to, resolution)
            and not incident.has_postmortem
        ):
            raise _invalid(
                "postmortem", "closing needs a post-mortem: root cause, impact and lessons"
            )
        return _move(
            incident, actor=actor, to=to, note=note, resolution=resolution, original=original
        )


def _move(
    incident: Incident,
    *,
    actor: Any,
    to: str,
    note: str,
    resolution: str = "",
    original: Incident | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Incident:
    """The transition itself, on a locked incident whose move was checked."""
    previous = incident.status
    now = timezone.now()
    incident.status = to
    setattr(incident, PHASE_FIELD[to], now)
    reopen = is_reopen(previous, to)
    if reopen:
        incident.reopened_count += 1
    # Open: no resolution (the timeline keeps the one of each close).
    incident.resolution = resolution if to == Status.CLOSED else ""
    incident.duplicate_of = original if to == Status.CLOSED else None
    _full_clean(incident)
    incident.save()
    details: dict[str, Any] = {"from": previous, "to": to}
    if to == Status.CLOSED:
        details["resolution"] = incident.resolution
        if original is not None:
            details["duplicate_of"] = str(original.pk)
    details.update(extra or {})
    _entry(
        incident,
        kind=EntryKind.TRANSITION,
        actor=actor,
        text=note,
        data={"from": previous, "to": to, "reopen": reopen, **details},
    )
    audit_event_record("incident.transitioned", actor=actor, target=incident, details=details)
    return incident


def _check_resolution(to: str, resolution: str | None, duplicate_of: Any) -> str:
    """The resolution a close records (true_positive by default; "" for other moves), or 400
    for one that is unknown, given to a move that is not a close, or a `duplicate_of`
    without the duplicate resolution."""
    if resolution is not None and resolution not in Resolution.values:
        raise _invalid("resolution", f"must be one of {', '.join(Resolution.values)}")
    if to != Status.CLOSED:
        if resolution is not None:
            raise _invalid("resolution", "only closing an incident takes a resolution")
        if duplicate_of is not None:
            raise _invalid("duplicate_of", "only closing as a duplicate names another incident")
        return ""
    resolution = resolution or Resolution.TRUE_POSITIVE
    if duplicate_of is not None and resolution != Resolution.DUPLICATE:
        raise _invalid("duplicate_of", "only a duplicate names the incident it repeats")
    if duplicate_of is None and resolution == Resolution.DUPLICATE:
        raise _invalid("duplicate_of", "a duplicate names the incident it repeats")
    return resolution


def incident_duplicate_check(*, incident: Incident, duplicate_of: Any) -> Incident:
    """The incident that `incident` would be closed as a duplicate of, by incident_transition's
    rule; InvalidInput (400) otherwise. Reads only (a confirmation page names the original);
    the close checks again."""
    return _original(incident, duplicate_of)


def _original(incident: Incident, duplicate_of: Any) -> Incident:
    """The incident `incident` repeats: one that exists, not itself, and not (through a
    chain of duplicates) a duplicate of `incident`; 400 otherwise."""
    key = duplicate_of.pk if isinstance(duplicate_of, Incident) else _uuid(duplicate_of)
    original = Incident.objects.filter(pk=key).first() if key else None
    if original is None:
        raise _invalid("duplicate_of", "is not an incident")
    if original.pk == incident.pk:
        raise _invalid("duplicate_of", "an incident cannot be a duplicate of itself")
    node, seen = original, {original.pk}
    for _hop in range(MAX_DUPLICATE_CHAIN):
        if node.resolution != Resolution.DUPLICATE or node.duplicate_of_id is None:
            return original
        if node.duplicate_of_id == incident.pk:
            raise _invalid(
                "duplicate_of",
                f"“{original.title}” is itself a duplicate of this incident; close that one "
                "as its duplicate, not the reverse",
            )
        if node.duplicate_of_id in seen:
            break
        seen.add(node.duplicate_of_id)
        node = Incident.objects.get(pk=node.duplicate_of_id)
    raise _invalid("duplicate_of", "names a chain of duplicates too long to follow")


@transaction.atomic
def incident_note_add(*, actor: Any, incident: Incident, text: str) -> TimelineEntry:
    text = (text or "").strip()
    if not text:
        raise _invalid("text", "a note needs text")
    entry = _entry(_locked(incident), kind=EntryKind.NOTE, actor=actor, text=text)
    audit_event_record("incident.note_added", actor=actor, target=incident)
    return entry


@transaction.atomic
def incident_assign(*, actor: Any, incident: Incident, assignee: Any) -> Incident:
    """Assign to a user (or None to unassign); audited incident.assigned with pseudonyms.
    InvalidInput unless the assignee is an active holder of incidents.write."""
    _check_assignee(assignee)
    incident = _locked(incident)
    incident.assignee = assignee
    incident.save(update_fields=["assignee", "updated_at"])
    assigned = actor_of(assignee).ref if assignee is not None else None
    _entry(incident, kind=EntryKind.ASSIGNMENT, actor=actor, data={"assignee": assigned})
    audit_event_record(
        "incident.assigned",
        actor=actor,
        target=incident,
        details={"assignee": assigned},
    )
    return incident


def _parse_actions(actions: Any) -> list[ActionItem]:
    if not isinstance(actions, list) or len(actions) > MAX_ACTION_ITEMS:
        raise _invalid("postmortem/actions", f"must be a list of at most {MAX_ACTION_ITEMS}")
    User = get_user_model()
    items = []
    for index, raw in enumerate(actions):
        path = f"postmortem/actions/{index}"
        if not isinstance(raw, Mapping):
            raise _invalid(path, 'must be {"description", "owner", "due_date"}')
        description = str(raw.get("description") or "").strip()
        if not description:
            raise _invalid(f"{path}/description", "is required")
        owner = None
        if raw.get("owner"):
            owner = User.objects.filter(username=str(raw["owner"])).first()
            if owner is None:
                raise _invalid(f"{path}/owner", "is not a user")
        try:
            due = date.fromisoformat(str(raw.get("due_date") or ""))
        except ValueError:
            raise _invalid(f"{path}/due_date", "must be a date, YYYY-MM-DD") from None
        items.append(ActionItem(description=description[:500], owner=owner, due_date=due))
    return items


def _save_postmortem(incident: Incident, *, actor: Any, postmortem: Mapping[str, Any]) -> None:
    if not isinstance(postmortem, Mapping):
        raise _invalid("postmortem", "must be an object")
    for field in ("root_cause", "impact", "lessons"):
        value = postmortem.get(field, getattr(incident, field))
        if not isinstance(value, str):
            raise _invalid(f"postmortem/{field}", "must be text")
        setattr(incident, field, value.strip())
    if "actions" in postmortem:
        items = _parse_actions(postmortem["actions"])
        incident.actions.all().delete()
        for item in items:
            item.incident = incident
            item.save()
    _full_clean(incident)
    incident.save()
    _entry(
        incident,
        kind=EntryKind.POSTMORTEM,
        actor=actor,
        data={"complete": incident.has_postmortem, "actions": incident.actions.count()},
    )


@transaction.atomic
def incident_postmortem_save(
    *,
    actor: Any,
    incident: Incident,
    postmortem: Mapping[str, Any],
) -> Incident:
    """Save (or update) the post-mortem at any phase; audited incident.postmortem_saved."""
    incident = _locked(incident)
    _save_postmortem(incident, actor=actor, postmortem=postmortem)
    audit_event_record(
        "incident.postmortem_saved",
        actor=actor,
        target=incident,
        details={"complete": incident.has_postmortem},
    )
    return incident


# Containment: each action is done by the owning app's service, never by writing its tables.
CONTAINMENT_ACTIONS = ("revoke_api_key", "archive_model_version", "deactivate_user")


def _contain(action: str, target: Any, *, actor: Any, reason: str) -> tuple[str, str, str]:
    """Do the action; (kind, ref, label) of the resource it acted on."""
    if action == "revoke_api_key":
        key_id = _uuid(target)
        api_key = api_key_find(key_id) if key_id else None
        if api_key is None:
            raise NotFound("No API key with this id.")
        api_key_revoke(actor=actor, api_key=api_key, reason=reason)
        return ResourceKind.API_KEY, api_key.prefix, api_key.name
    if action == "archive_model_version":
        if not isinstance(target, Mapping):
            raise _invalid("target", 'must be {"model": name, "version": n}')
        version = model_version_find(
            model_name=str(target.get("model")), number=_int(target.get("version"))
        )
        if version is None:
            raise NotFound("No such model version.")
        if version.stage == "archived":
            # Like revoking a revoked key: nothing would change, so nothing is recorded.
            raise Conflict(f"{version.model.name} v{version.number} is already archived.")
        model_version_stage(actor=actor, version=version, stage="archived")
        ref = f"{version.model.name}:{version.number}"
        return ResourceKind.MODEL_VERSION, ref, ref
    if action == "deactivate_user":
        user = get_user_model().objects.filter(username=str(target)).first()
        if user is None:
            raise NotFound("No user with this username.")
        user_deactivate(actor=actor, user=user, reason=reason)
        return ResourceKind.USER, actor_of(user).ref, ""
    raise _invalid("action", f"must be one of {', '.join(CONTAINMENT_ACTIONS)}")


def _uuid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _invalid("target/version", "must be a version number") from None


def incident_contain(
    *,
    actor: Any,
    incident: Incident,
    action: str,
    target: Any,
    then_contained: bool = False,
) -> TimelineEntry:
    """Revoke an API key, archive a model version or deactivate a user, from the incident, in
    one step: the owning app's service does it (and audits it), effective on the next request;
    the incident links the resource and records it on its timeline (incident.containment).
    With `then_contained`, an incident still detected also moves to contained in the same
    transaction: a second timeline entry and a second audit event (incident.transitioned,
    details with "containment": the action); an incident past detected stays where it is.
    NotFound for an unknown target; Conflict (409) when the incident is closed or the target
    already is revoked, archived or deactivated; nothing is written then. Deactivating
    oneself, the last active administrator, or (unless a superuser) a superuser is 403
    `permission_denied`, audited `user.change_refused` (apps.accounts.safety) before the
    transaction, so the refusal stays on record."""
    if action == "deactivate_user":
        user = get_user_model().objects.filter(username=str(target)).first()
        if user is not None:
            access_change_check(actor=actor, user=user, change=Change.DEACTIVATE)
    with transaction.atomic():
        return _contain_in_transaction(
            actor=actor,
            incident=incident,
            action=action,
            target=target,
            then_contained=then_contained,
        )


def _contain_in_transaction(
    *, actor: Any, incident: Incident, action: str, target: Any, then_contained: bool
) -> TimelineEntry:
    incident = _locked(incident)
    if incident.status == Status.CLOSED:
        raise Conflict("The incident is closed; reopen it before taking containment actions.")
    reason = f"incident {incident.id}"
    kind, ref, label = _contain(action, target, actor=actor, reason=reason)
    _link(incident, [(kind, ref, label)])
    entry = _entry(
        incident,
        kind=EntryKind.CONTAINMENT,
        actor=actor,
        text=f"{action.replace('_', ' ')}: {ref}",
        data={"action": action, "kind": kind, "ref": ref},
    )
    audit_event_record(
        "incident.containment",
        actor=actor,
        target=incident,
        details={"action": action, "resource": {"type": kind, "id": ref}},
    )
    if then_contained and incident.status == Status.DETECTED:
        label = f"{action.replace('_', ' ')} {ref}"
        _move(
            incident,
            actor=actor,
            to=Status.CONTAINED,
            note=f"Contained by the containment action: {label}.",
            extra={"containment": action},
        )
    return entry


def dedup_key(detector: str, subject: str) -> str:
    """What makes two hits the same incident while it is open (Incident.dedup_key)."""
    return f"{detector}:{subject}"[:200]


def incident_detector_hit(
    *,
    detector: str,
    subject: str,
    severity: str,
    title: str,
    evidence: Mapping[str, Any],
    links: Iterable[tuple[str, str, str]] = (),
) -> tuple[Incident, bool]:
    """A detector saw trouble: open an incident for (detector, subject), or, while one is open,
    add the hit to its timeline. Returns (incident, created). Race-free: the partial unique
    constraint on dedup_key lets one of two concurrent openers win; the other appends."""
    if severity not in Severity.values:
        raise ValueError(f"unknown severity {severity!r}")
    key = dedup_key(detector, subject)
    actor = f"detector:{detector}"
    links = list(links)
    for _attempt in range(3):
        try:
            with transaction.atomic():
                incident = (
                    Incident.objects.select_for_update()
                    .filter(dedup_key=key)
                    .exclude(status=Status.CLOSED)
                    .first()
                )
                created = incident is None
                if incident is None:
                    incident = Incident(
                        title=title[:200],
                        severity=severity,
                        source=Source.DETECTOR,
                        detector=detector,
                        dedup_key=key,
                        detected_at=timezone.now(),
                    )
                    incident.save()
                    _entry(incident, kind=EntryKind.CREATED, actor=actor, text=title[:200])
                    audit_event_record(
                        "incident.created",
                        actor=actor,
                        target=incident,
                        details={"severity": severity, "source": "detector", "detector": detector},
                    )
                _link(incident, links)
                _entry(incident, kind=EntryKind.DETECTOR_HIT, actor=actor, data=dict(evidence))
                return incident, created
        except IntegrityError:
            continue  # a concurrent hit opened it first: append to that one
    raise RuntimeError(f"could not record the {detector} hit for {subject}")
