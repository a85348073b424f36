"""The incident report as a PDF (A4, apps.core.pdf): summary, phases and durations, timeline,
linked resources, post-mortem with action items; the same content as the JSON export."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from reportlab.lib import colors
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import KeepTogether, Paragraph, Spacer, Table

from apps.core import pdf
from apps.incidents.models import Incident, Status
from apps.incidents.reports.data import (
    DURATION_LABELS,
    actor_label,
    entry_summary,
    entry_text,
    format_duration,
    person_label,
    stamp,
)
from apps.incidents.selectors import incident_people_names, phase_durations
from apps.incidents.workflow import PHASE_FIELD, PHASES

_STYLES = pdf.sample_styles()
_BODY = ParagraphStyle("body", parent=_STYLES["BodyText"], fontSize=9.5, leading=12.5)
_SMALL = ParagraphStyle("small", parent=_BODY, fontSize=8.5, leading=11)
_H1 = ParagraphStyle("h1", parent=_STYLES["Title"], alignment=0, fontSize=18, leading=22)
_H2 = ParagraphStyle("h2", parent=_STYLES["Heading2"], fontSize=13, spaceBefore=10)
_GRID = [
    ("FONT", (0, 0), (-1, -1), "Helvetica", 9),
    ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ("LINEBELOW", (0, 0), (-1, -1), 0.25, pdf.RULE),
    ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
    ("TOPPADDING", (0, 0), (-1, -1), 4),
]
_HEADED = [
    *_GRID,
    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef1f4")),
    ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 9),
]
_FOOTER = pdf.footer(lambda document: f"Bulwark incident report · {document.title}")


def _p(text: str, style: ParagraphStyle = _BODY) -> Paragraph:
    return pdf.paragraph(text, style, empty="—")


def _pairs(rows: list[tuple[str, str]]) -> Table:
    return pdf.table(
        [[_p(label, _SMALL), _p(value)] for label, value in rows], [40 * mm, None], _GRID
    )


def incident_report_pdf(*, actor: Any, incident: Incident) -> bytes:
    """The report as a PDF (A4): summary, phases and durations, timeline, linked resources,
    post-mortem with action items."""
    names = incident_people_names(actor=actor, incident=incident)
    durations = phase_durations(incident)
    story: list[Any] = [
        *_summary(incident),
        *_phases(incident, durations),
        *_timeline(incident, names),
        *_linked_resources(incident, names),
        *_post_mortem(incident),
        *_action_items(incident),
    ]
    return pdf.render(
        story,
        title=f"{incident.get_severity_display()} {incident.title}",
        subject="Incident report",
        first_page=_FOOTER,
        later_pages=_FOOTER,
    )


def _summary(incident: Incident) -> list[Any]:
    return [
        _p(f"Incident report: {incident.title}", _H1),
        _p(f"Generated {stamp(timezone.now())} · incident {incident.id}", _SMALL),
        Spacer(1, 4 * mm),
        _pairs(
            [
                ("Severity", incident.get_severity_display()),
                ("Status", incident.get_status_display()),
                *_resolution(incident),
                (
                    "Source",
                    f"Detector {incident.detector}"
                    if incident.detector
                    else f"Reported by {incident.reported_by or '—'}",
                ),
                ("Assignee", str(incident.assignee or "Unassigned")),
                ("Reopened", f"{incident.reopened_count} times"),
                ("Description", incident.description),
            ]
        ),
    ]


def _resolution(incident: Incident) -> list[tuple[str, str]]:
    """The resolution row of a closed incident (with the incident a duplicate repeats)."""
    if not incident.resolution:
        return []
    text = incident.get_resolution_display()
    if incident.duplicate_of is not None:
        text += f" of “{incident.duplicate_of.title}” ({incident.duplicate_of.pk})"
    return [("Resolution", text)]


def _phases(incident: Incident, durations: dict[str, timedelta | None]) -> list[Any]:
    """Phase durations, then when each phase was entered."""
    return [
        _p("Phase durations", _H2),
        _pairs([(DURATION_LABELS[k], format_duration(v)) for k, v in durations.items()]),
        _p("Phases", _H2),
        _pairs(
            [
                (Status(phase).label, stamp(getattr(incident, PHASE_FIELD[phase])))
                for phase in PHASES
            ]
        ),
    ]


def _timeline(incident: Incident, names: dict[str, str]) -> list[Any]:
    rows: list[list[Any]] = [[_p("When", _SMALL), _p("Who", _SMALL), _p("What", _SMALL)]]
    for entry in incident.timeline.all():
        what = entry_summary(entry, names)
        text = entry_text(entry)
        rows.append(
            [
                _p(stamp(entry.created_at), _SMALL),
                _p(actor_label(entry, names), _SMALL),
                _p(f"{what}\n{text}" if text else what),
            ]
        )
    return [
        _p("Timeline", _H2),
        pdf.table(rows, [32 * mm, 32 * mm, None], _HEADED, repeat_header=True),
    ]


def _linked_resources(incident: Incident, names: dict[str, str]) -> list[Any]:
    resources = list(incident.resources.all())
    if not resources:
        return [_p("Linked resources", _H2), _p("None.")]
    return [
        _p("Linked resources", _H2),
        _pairs(
            [
                (
                    r.get_kind_display(),
                    " · ".join(x for x in (person_label(r.ref, names), r.label) if x and x != r.ref)
                    or r.ref,
                )
                for r in resources
            ]
        ),
    ]


def _post_mortem(incident: Incident) -> list[Any]:
    return [
        _p("Post-mortem", _H2),
        _pairs(
            [
                ("Root cause", incident.root_cause),
                ("Impact", incident.impact),
                ("Lessons learned", incident.lessons),
            ]
        ),
    ]


def _action_items(incident: Incident) -> list[Any]:
    """The action items kept together with their heading; nothing when there are none."""
    items = list(incident.actions.all())
    if not items:
        return []
    table = pdf.table(
        [[_p("Action", _SMALL), _p("Owner", _SMALL), _p("Due", _SMALL)]]
        + [
            [
                _p(item.description),
                _p(str(item.owner or "—")),
                _p(item.due_date.isoformat()),
            ]
            for item in items
        ],
        [None, 40 * mm, 26 * mm],
        _HEADED,
        repeat_header=True,
    )
    return [KeepTogether([_p("Action items", _H2), table])]
