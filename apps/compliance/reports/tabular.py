"""The report as JSON (the content as is) and as CSV (the same content, one block per part,
blocks separated by an empty line, each starting with its own header row)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

# A cell starting with one of these is a formula to a spreadsheet: prefixed with ' so that
# evidence text or notes can never run anything when the report is opened.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _evidence_cell(evidence: dict[str, Any]) -> str:
    if evidence["kind"] == "link":
        return f"link: {evidence['url']}"
    if evidence["kind"] == "text":
        return f"text: {evidence['text']}"
    return (
        f"file: {evidence['file_name']} ({evidence['content_type']}, {evidence['size']} bytes, "
        f"sha256 {evidence['sha256']})"
    )


def render_json(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()


def render_csv(data: dict[str, Any]) -> bytes:
    return _write_blocks(
        [
            _report_block(data["report"]),
            _summary_block(data["summary"]),
            _items_block(data["items"]),
            _audit_block(data["audit"]),
            _incidents_block(data["incidents"]),
        ]
    )


# A block: its header row and its rows (cells not yet made safe for a spreadsheet).
_Block = tuple[list[str], list[list[Any]]]


def _write_blocks(blocks: list[_Block]) -> bytes:
    """Each block's header and rows, blocks separated by an empty row, as UTF-8 CSV."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for header, rows in blocks:
        if buffer.tell():
            writer.writerow([])
        writer.writerow(header)
        writer.writerows([[_cell(value) for value in row] for row in rows])
    return buffer.getvalue().encode("utf-8")


def _report_block(report: dict[str, Any]) -> _Block:
    return ["report", "value"], [[name, value] for name, value in report.items()]


def _summary_block(summary: list[dict[str, Any]]) -> _Block:
    return (
        [
            "framework",
            "name",
            "items",
            "applicable",
            "implemented",
            "percent",
            "in_progress",
            "not_started",
            "not_applicable",
            "evidenced",
            "percent_with_evidence",
        ],
        [
            [
                row["framework"],
                row["name"],
                row["items"],
                row["applicable"],
                row["implemented"],
                row["percent"],
                row["by_status"]["in_progress"],
                row["by_status"]["not_started"],
                row["by_status"]["not_applicable"],
                row["evidenced"],
                row["percent_with_evidence"],
            ]
            for row in summary
        ],
    )


def _items_block(items: list[dict[str, Any]]) -> _Block:
    return (
        [
            "category",
            "key",
            "title",
            "status",
            "owner",
            "last_reviewed_at",
            "controls",
            "check",
            "check_result",
            "check_detail",
            "checked_at",
            "evidence",
            "notes",
        ],
        [
            [
                item["category_label"],
                item["key"],
                item["title"],
                item["status"],
                item["owner"],
                item["last_reviewed_at"],
                "; ".join(f"{c['framework']} {c['code']}" for c in item["controls"]),
                item["check"]["name"],
                item["check"]["result"],
                item["check"]["detail"],
                item["check"]["checked_at"],
                " | ".join(_evidence_cell(evidence) for evidence in item["evidence"]),
                item["notes"],
            ]
            for item in items
        ],
    )


def _audit_block(audit: dict[str, Any]) -> _Block:
    return ["audit", "value"], [[name, value] for name, value in audit.items()]


def _incidents_block(incidents: dict[str, Any]) -> _Block:
    ttc = incidents["time_to_contain_seconds"]
    return (
        ["incidents", "value"],
        [
            ["total", incidents["total"]],
            ["open", incidents["open"]],
            *[[f"status {name}", count] for name, count in incidents["by_status"].items()],
            *[[f"severity {name}", count] for name, count in incidents["by_severity"].items()],
            ["contained", incidents["contained"]],
            ["time_to_contain_mean_seconds", ttc["mean"]],
            ["time_to_contain_median_seconds", ttc["median"]],
            ["time_to_contain_max_seconds", ttc["max"]],
        ],
    )
