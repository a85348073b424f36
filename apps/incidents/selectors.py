"""Reads of incidents, for holders of `incidents.read` (security officers, admins, auditors):
every such reader sees every incident; the views check the capability."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.db.models import Case, Count, IntegerField, QuerySet, Value, When

from apps.audit.selectors import pseudonym_usernames
from apps.core.errors import InvalidInput, NotFound
from apps.incidents.models import Incident, Severity, Status
from apps.incidents.workflow import PHASES

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
