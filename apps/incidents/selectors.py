"""Reads of incidents, for holders of `incidents.read` (security officers, admins, auditors):
every such reader sees every incident; the views check the capability."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import (
    Aggregate,
    Case,
    Count,
    F,
    FloatField,
    Func,
    IntegerField,
    Q,
    QuerySet,
    Value,
    When,
)
from django.utils import timezone

from apps.audit.selectors import pseudonym_usernames
from apps.core.errors import InvalidInput, NotFound
from apps.core.timestamps import iso
from apps.incidents.models import (
    ActionItem,
    Incident,
    LinkedResource,
    Resolution,
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
    (`open` | `closed`), `resolution` (of closed incidents), sorted by `sort` (see SORTS).
    InvalidInput for an unknown value."""
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
    resolution = filters.get("resolution")
    if resolution:
        if resolution not in Resolution.values:
            raise _invalid("resolution", f"must be one of {', '.join(Resolution.values)}")
        incidents = incidents.filter(resolution=resolution)
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
        Incident.objects.select_related("assignee", "reported_by", "duplicate_of")
        .prefetch_related("timeline", "resources", "actions__owner")
        .filter(pk=key)
        .first()
    )
    if incident is None:
        raise NotFound("No incident with this id.")
    return incident


def incident_duplicates(*, actor: Any, incident: Incident, limit: int = 10) -> list[Incident]:
    """Incidents closed as duplicates of `incident`, newest first, at most `limit`."""
    return list(
        Incident.objects.filter(duplicate_of=incident)
        .only("id", "title", "severity", "detected_at", "closed_at")
        .order_by("-closed_at")[:limit]
    )


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


# --- the console's dashboard -------------------------------------------------------------

AGE_BUCKETS: tuple[tuple[str, str, timedelta | None], ...] = (
    # (key, label, upper bound of the age; None: no bound)
    ("lt_1h", "Under 1 hour", timedelta(hours=1)),
    ("lt_24h", "1 to 24 hours", timedelta(hours=24)),
    ("lt_7d", "1 to 7 days", timedelta(days=7)),
    ("older", "Older", None),
)
CONTAIN_WINDOW = timedelta(days=30)


class _PercentileCont(Aggregate):
    """PostgreSQL's percentile_cont(fraction) WITHIN GROUP (ORDER BY expression): the
    fraction-th value, interpolated linearly between the two nearest (as _percentile)."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


def _percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """Like percentile_cont: the value at rank fraction * (n - 1), interpolated; None when empty."""
    if not ordered:
        return None
    rank = fraction * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _time_to_contain(now: datetime) -> dict[str, Any]:
    """Seconds from detection to containment of the incidents contained in the 30 days up to
    `now` (the partial index incidents_contained_at): count, median, 90th percentile."""
    contained = Incident.objects.filter(
        contained_at__gt=now - CONTAIN_WINDOW, contained_at__lte=now
    ).order_by()
    if connection.vendor == "postgresql":
        seconds = Func(
            F("contained_at") - F("detected_at"),
            template="EXTRACT(EPOCH FROM %(expressions)s)",
            output_field=FloatField(),
        )
        row = contained.aggregate(
            count=Count("id"),
            median=_PercentileCont(seconds, 0.5),
            p90=_PercentileCont(seconds, 0.9),
        )
        count, median, p90 = row["count"], row["median"], row["p90"]
    else:  # the embedded default (SQLite): few incidents, counted here
        ordered = sorted(
            (contained_at - detected_at).total_seconds()
            for contained_at, detected_at in contained.values_list("contained_at", "detected_at")
            if contained_at is not None
        )
        count, median, p90 = len(ordered), _percentile(ordered, 0.5), _percentile(ordered, 0.9)
    return {
        "count": count,
        "median_seconds": None if median is None else round(float(median), 3),
        "p90_seconds": None if p90 is None else round(float(p90), 3),
        "since": now - CONTAIN_WINDOW,
    }


def incident_dashboard_figures(now: datetime | None = None) -> dict[str, Any]:
    """The dashboard's incident figures, in two queries whatever the number of incidents:
    open incidents by severity and by age since detection (AGE_BUCKETS, each bucket up to
    its bound, measured at `now`), and time to contain over the last 30 days (median and
    90th percentile in seconds, with how many incidents they are of; None when none).
    For holders of `incidents.read` (the caller checks)."""
    now = now or timezone.now()
    counts: dict[str, Any] = {"total": Count("id")}
    lower: timedelta | None = None
    for key, _label, upper in AGE_BUCKETS:
        age = Q()
        if upper is not None:
            age &= Q(detected_at__gt=now - upper)
        if lower is not None:
            age &= Q(detected_at__lte=now - lower)
        counts[key] = Count("id", filter=age)
        lower = upper
    rows: Any = (
        Incident.objects.exclude(status=Status.CLOSED)
        .order_by()
        .values("severity")
        .annotate(**counts)
    )
    by_severity = dict.fromkeys(Severity.values, 0)
    by_age = dict.fromkeys((key for key, _, _ in AGE_BUCKETS), 0)
    for row in rows:
        by_severity[row["severity"]] = row["total"]
        for key in by_age:
            by_age[key] += row[key]
    return {
        "now": now,
        "open_total": sum(by_severity.values()),
        "open_by_severity": [
            {"severity": value, "label": Severity(value).label, "count": by_severity[value]}
            for value in Severity.values
        ],
        "open_by_age": [
            {"bucket": key, "label": label, "count": by_age[key]} for key, label, _ in AGE_BUCKETS
        ],
        "time_to_contain": _time_to_contain(now),
    }
