"""Reads of incidents, for holders of `incidents.read` (security officers, admins, auditors):
every such reader sees every incident; the views check the capability."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import Case, Count, IntegerField, Q, QuerySet, Value, When

from apps.audit.selectors import pseudonym_usernames
from apps.core.errors import InvalidInput, NotFound
from apps.core.timestamps import iso
from apps.incidents.models import (
    ActionItem,
    Incident,
    LinkedResource,
    ResourceKind,
    Severity,
    Status,
    TimelineEntry,
)
from apps.incidents.workflow import PHASES

if TYPE_CHECKING:  # a type hint only
    from apps.accounts.models import User

SORTS = {
    # SEV1s first, then newest; the default everywhere.
    "severity": ("severity", "-detected_at"),
    "newest": ("-detected_at",),
    "oldest": ("detected_at",),
    "status": ("phase_rank", "severity", "-detected_at"),
    "updated": ("-updated_at",),
}


def incident_list(*, actor: Any, filters: Mapping[str, str] | None = None) -> QuerySet[Incident]:
    """Incidents filtered by `status`, `severity`, `assignee` (username, or `none`), `state`
    (`open` | `closed`), sorted by `sort` (see SORTS). InvalidInput for an unknown value."""
    filters = filters or {}
    incidents = Incident.objects.select_related("assignee").annotate(
        phase_rank=Case(
            *(When(status=phase, then=Value(rank)) for rank, phase in enumerate(PHASES)),
            output_field=IntegerField(),
        )
    )
    status = filters.get("status")
    if status:
        if status not in Status.values:
            raise _invalid("status", f"must be one of {', '.join(Status.values)}")
        incidents = incidents.filter(status=status)
    severity = filters.get("severity")
    if severity:
        if severity not in Severity.values:
            raise _invalid("severity", f"must be one of {', '.join(Severity.values)}")
        incidents = incidents.filter(severity=severity)
    state = filters.get("state")
    if state:
        if state not in {"open", "closed"}:
            raise _invalid("state", "must be open or closed")
        incidents = (
            incidents.filter(status=Status.CLOSED)
            if state == "closed"
            else incidents.exclude(status=Status.CLOSED)
        )
    assignee = filters.get("assignee")
    if assignee:
        incidents = (
            incidents.filter(assignee__isnull=True)
            if assignee == "none"
            else incidents.filter(assignee__username=assignee)
        )
    sort = filters.get("sort") or "severity"
    if sort not in SORTS:
        raise _invalid("sort", f"must be one of {', '.join(SORTS)}")
    return incidents.order_by(*SORTS[sort])


def incident_get(*, actor: Any, incident_id: Any) -> Incident:
    """One incident, or NotFound (also for a malformed id)."""
    import uuid

    try:
        key = uuid.UUID(str(incident_id))
    except ValueError:
        raise NotFound("No incident with this id.") from None
    incident = (
        Incident.objects.select_related("assignee", "reported_by")
        .prefetch_related("timeline", "resources", "actions__owner")
        .filter(pk=key)
        .first()
    )
    if incident is None:
        raise NotFound("No incident with this id.")
    return incident


def incident_counts_by_phase(*, actor: Any) -> dict[str, int]:
    """How many incidents are in each phase, every phase present (0 when none)."""
    counts = dict.fromkeys(PHASES, 0)
    for row in Incident.objects.values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


def phase_durations(incident: Incident) -> dict[str, timedelta | None]:
    """Time to contain, to recover and to close, measured from detection (None until then)."""

    def since_detected(moment: Any) -> timedelta | None:
        return None if moment is None else moment - incident.detected_at

    return {
        "time_to_contain": since_detected(incident.contained_at),
        "time_to_recover": since_detected(incident.recovered_at),
        "time_to_close": since_detected(incident.closed_at),
    }


def incident_people_names(*, actor: Any, incident: Incident) -> dict[str, str]:
    """Usernames behind the audit pseudonyms on the incident (timeline actors, assignees,
    linked users), for those that still map to a person: an erased person's pseudonym maps
    to nobody, so the incident history shows the bare pseudonym."""
    refs = {e.actor_ref for e in incident.timeline.all() if e.actor_type == "user"}
    refs |= {str(e.data.get("assignee")) for e in incident.timeline.all() if e.data.get("assignee")}
    refs |= {r.ref for r in incident.resources.all() if r.kind == "user"}
    return pseudonym_usernames(refs)


def _invalid(path: str, message: str) -> InvalidInput:
    return InvalidInput(f"{path}: {message}", details=[{"path": path, "message": message}])


def subject_incidents(user: User, pseudonym: str | None) -> dict[str, list[dict[str, Any]]]:
    linked: set[Any] = set()
    if pseudonym is not None:
        linked = set(
            LinkedResource.objects.filter(kind=ResourceKind.USER, ref=pseudonym).values_list(
                "incident_id", flat=True
            )
        )
    incidents = Incident.objects.filter(
        Q(assignee=user) | Q(reported_by=user) | Q(pk__in=linked)
    ).order_by("detected_at")
    entries: list[TimelineEntry] = []
    if pseudonym is not None:
        entries = list(
            TimelineEntry.objects.filter(actor_type="user", actor_ref=pseudonym).order_by(
                "created_at"
            )
        )
    return {
        "involved_in": [
            {
                "id": str(incident.pk),
                "title": incident.title,
                "severity": incident.severity,
                "status": incident.status,
                "detected_at": iso(incident.detected_at),
                "closed_at": iso(incident.closed_at),
                "you_are": [
                    role
                    for role, held in (
                        ("assignee", incident.assignee_id == user.pk),
                        ("reporter", incident.reported_by_id == user.pk),
                        ("linked_resource", incident.pk in linked),
                    )
                    if held
                ],
            }
            for incident in incidents
        ],
        "action_items": [
            {
                "incident": str(item.incident_id),
                "description": item.description,
                "due_date": iso(item.due_date),
                "done": item.done,
            }
            for item in ActionItem.objects.filter(owner=user).order_by("due_date")
        ],
        "timeline_entries_by_you": [
            {
                "incident": str(entry.incident_id),
                "kind": entry.kind,
                "text": entry.text,
                "created_at": iso(entry.created_at),
            }
            for entry in entries
        ],
    }
