"""Incident reports' data: one dictionary, the JSON export (reports/pdf.py shows the same
content as a PDF). Both carry the summary, the phase times and durations, the timeline, the
linked resources and the post-mortem. People appear by username while their audit pseudonym
still maps to one (as in the UI), else by the pseudonym alone."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from apps.core.timestamps import duration_text, iso
from apps.incidents.models import EntryKind, Incident, Resolution, Status, TimelineEntry
from apps.incidents.selectors import incident_people_names, phase_durations
from apps.incidents.workflow import PHASE_FIELD, PHASES

DURATION_LABELS = {
    "time_to_contain": "Time to contain",
    "time_to_recover": "Time to recover",
    "time_to_close": "Time to close",
}
ACTION_LABELS = {
    "revoke_api_key": "Revoked API key",
    "archive_model_version": "Archived model version",
    "deactivate_user": "Deactivated user",
}


# Like "45 s", "12 min", "3 h 05 min", "2 d 4 h"; "—" when not reached yet.
format_duration = duration_text


def stamp(moment: datetime | None) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


def person_label(ref: str, names: dict[str, str]) -> str:
    return names.get(ref, ref)


def actor_label(entry: TimelineEntry, names: dict[str, str]) -> str:
    if entry.actor_type == "user":
        return person_label(entry.actor_ref, names)
    if entry.actor_ref.startswith("detector:"):
        return "Detector " + entry.actor_ref.removeprefix("detector:")
    return entry.actor_ref


def entry_summary(entry: TimelineEntry, names: dict[str, str]) -> str:
    """One line saying what the entry is; its `text` (the note) is shown apart."""
    data: dict[str, Any] = entry.data or {}
    if entry.kind == EntryKind.CREATED:
        return "Opened the incident"
    if entry.kind == EntryKind.TRANSITION:
        old, new = Status(data.get("from")).label, Status(data.get("to")).label  # type: ignore[arg-type]  # a transition has both
        if data.get("reopen"):
            return f"Reopened: {old} → {new}"
        if data.get("resolution") in Resolution.values:
            return f"{old} → {new} as {resolution_text(data)}"
        return f"{old} → {new}"
    if entry.kind == EntryKind.NOTE:
        return "Note"
    if entry.kind == EntryKind.CONTAINMENT:
        label = ACTION_LABELS.get(str(data.get("action")), str(data.get("action")))
        ref = str(data.get("ref", ""))
        return f"{label} {person_label(ref, names) if data.get('kind') == 'user' else ref}"
    if entry.kind == EntryKind.DETECTOR_HIT:
        return "Detector hit"
    if entry.kind == EntryKind.ASSIGNMENT:
        assignee = data.get("assignee")
        return f"Assigned to {person_label(str(assignee), names)}" if assignee else "Unassigned"
    if entry.kind == EntryKind.POSTMORTEM:
        state = "complete" if data.get("complete") else "incomplete"
        count = int(data.get("actions", 0))
        return f"Post-mortem saved ({state}, {count} action item{'' if count == 1 else 's'})"
    return entry.get_kind_display()


def resolution_text(data: dict[str, Any]) -> str:
    """ "false positive", "duplicate of 1c9e2f4a", ...: a close's resolution in words."""
    text = Resolution(data["resolution"]).label.lower()
    if data.get("duplicate_of"):
        text += f" of {str(data['duplicate_of'])[:8]}"
    return text


def entry_text(entry: TimelineEntry) -> str:
    if entry.kind == EntryKind.CREATED or entry.kind == EntryKind.CONTAINMENT:
        return ""  # the title, or the summary again
    if entry.kind == EntryKind.DETECTOR_HIT:
        return ", ".join(f"{key}: {value}" for key, value in (entry.data or {}).items())
    return entry.text


def incident_report_data(*, actor: Any, incident: Incident) -> dict[str, Any]:
    """The report as JSON-ready data (the `application/json` export)."""
    names = incident_people_names(actor=actor, incident=incident)
    durations = phase_durations(incident)
    return {
        "report": {"generated_at": timezone.now().isoformat(), "format": 1},
        "incident": {
            "id": str(incident.id),
            "title": incident.title,
            "severity": incident.severity,
            "status": incident.status,
            "description": incident.description,
            "source": incident.source,
            "detector": incident.detector or None,
            "assignee": incident.assignee.username if incident.assignee else None,
            "reported_by": incident.reported_by.username if incident.reported_by else None,
            "reopened_count": incident.reopened_count,
            "resolution": incident.resolution or None,
            "duplicate_of": (
                {"id": str(incident.duplicate_of.pk), "title": incident.duplicate_of.title}
                if incident.duplicate_of
                else None
            ),
            "phases": {phase: iso(getattr(incident, PHASE_FIELD[phase])) for phase in PHASES},
        },
        "phase_durations": {
            name: (
                None
                if delta is None
                else {"seconds": delta.total_seconds(), "text": format_duration(delta)}
            )
            for name, delta in durations.items()
        },
        "timeline": [
            {
                "at": entry.created_at.isoformat(),
                "kind": entry.kind,
                "actor": {
                    "type": entry.actor_type,
                    "ref": entry.actor_ref,
                    "name": names.get(entry.actor_ref) if entry.actor_type == "user" else None,
                },
                "summary": entry_summary(entry, names),
                "text": entry.text,
                "data": entry.data,
            }
            for entry in incident.timeline.all()
        ],
        "linked_resources": [
            {"kind": r.kind, "ref": r.ref, "label": r.label} for r in incident.resources.all()
        ],
        "postmortem": {
            "complete": incident.has_postmortem,
            "root_cause": incident.root_cause,
            "impact": incident.impact,
            "lessons": incident.lessons,
            "action_items": [
                {
                    "description": item.description,
                    "owner": item.owner.username if item.owner else None,
                    "due_date": item.due_date.isoformat(),
                    "done": item.done,
                }
                for item in incident.actions.all()
            ],
        },
    }
