"""Compliance reports: one set of content (`report_data`), three renderings (PDF, CSV, JSON).

The content: the framework's items with status, owner, notes, mapped controls, evidence and
latest check result; progress per framework; the audit trail's head hash and a full
verification; incident statistics with time to contain. Generating one is audited by
`apps.compliance.services.compliance_report_generate`.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from apps.audit.verification import audit_chain_verify
from apps.compliance.models import ChecklistItem, Evidence
from apps.compliance.selectors import (
    compliance_item_list,
    compliance_progress,
    framework_choices,
)
from apps.incidents.selectors import incident_list, phase_durations

TITLE = "Bulwark compliance report"


@dataclass(frozen=True)
class ReportFormat:
    content_type: str
    extension: str
    render: Callable[[dict[str, Any]], bytes]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def _evidence(evidence: Evidence) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": str(evidence.id),
        "kind": evidence.kind,
        "added_at": _iso(evidence.created_at),
    }
    if evidence.kind == "link":
        entry["url"] = evidence.url
    elif evidence.kind == "text":
        entry["text"] = evidence.text
    else:
        entry.update(
            file_name=evidence.file_name,
            content_type=evidence.content_type,
            size=evidence.size,
            sha256=evidence.sha256,
        )
    return entry


def item_data(item: ChecklistItem) -> dict[str, Any]:
    """One item as the report (and the API's check field) shows it; `item` comes from the
    selectors, with its latest check result annotated."""
    return {
        "id": str(item.id),
        "key": item.key,
        "category": item.category,
        "category_label": item.get_category_display(),
        "title": item.title,
        "description": item.description,
        "status": item.status,
        "status_label": item.get_status_display(),
        "owner": item.owner.username if item.owner else None,
        "notes": item.notes,
        "last_reviewed_at": _iso(item.last_reviewed_at),
        "controls": [
            {
                "framework": control.framework.key,
                "framework_name": control.framework.name,
                "code": control.code,
                "title": control.title,
            }
            for control in item.controls.all()
        ],
        "evidence": [_evidence(evidence) for evidence in item.evidence.all()],
        "check": check_data(item),
    }


def check_data(item: ChecklistItem) -> dict[str, Any]:
    result = getattr(item, "check_result", None)
    if result is None:
        detail = "Not run yet." if item.automated_check else "No automated check: people review it."
        return {
            "name": item.automated_check,
            "result": "manual",
            "detail": detail,
            "checked_at": None,
        }
    return {
        "name": item.automated_check,
        "result": result,
        "detail": item.check_detail,  # type: ignore[attr-defined]  # annotated by the selector
        "checked_at": _iso(item.check_checked_at),  # type: ignore[attr-defined]  # likewise
    }


def _seconds(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "median": None, "max": None}
    return {
        "mean": round(statistics.fmean(values), 1),
        "median": round(statistics.median(values), 1),
        "max": round(max(values), 1),
    }


def incident_statistics(*, actor: Any) -> dict[str, Any]:
    incidents = list(incident_list(actor=actor))
    to_contain = []
    for incident in incidents:
        duration = phase_durations(incident)["time_to_contain"]
        if duration is not None:
            to_contain.append(duration.total_seconds())
    by_status = Counter(incident.status for incident in incidents)
    return {
        "total": len(incidents),
        "open": sum(1 for incident in incidents if incident.status != "closed"),
        "by_status": dict(sorted(by_status.items())),
        "by_severity": dict(sorted(Counter(i.severity for i in incidents).items())),
        "contained": len(to_contain),
        "time_to_contain_seconds": _seconds(to_contain),
    }


def report_data(*, actor: Any, framework: str) -> dict[str, Any]:
    """Everything a report shows, as plain JSON-ready data (raises InvalidInput for an unknown
    framework)."""
    items = list(compliance_item_list(actor=actor, framework=framework))
    names = dict(framework_choices())
    verification = audit_chain_verify()
    return {
        "report": {
            "title": TITLE,
            "framework": framework,
            "framework_name": names[framework],
            "generated_at": _iso(timezone.now()),
            "items": len(items),
        },
        "summary": [progress.as_dict() for progress in compliance_progress(actor=actor)],
        "items": [item_data(item) for item in items],
        "audit": {
            "verified": verification.ok,
            "events_checked": verification.checked,
            "head": verification.head,
            "last_seq": verification.last_seq,
            "first_bad_seq": verification.first_bad_seq,
            "reason": verification.reason,
        },
        "incidents": incident_statistics(actor=actor),
    }


def report_formats() -> dict[str, ReportFormat]:
    # Here, not at the top: reportlab (about 0.2 s to import) loads only when a report is.
    from apps.compliance.reports.pdf import render_pdf
    from apps.compliance.reports.tabular import render_csv, render_json

    return {
        "pdf": ReportFormat("application/pdf", "pdf", render_pdf),
        "csv": ReportFormat("text/csv; charset=utf-8", "csv", render_csv),
        "json": ReportFormat("application/json", "json", render_json),
    }
