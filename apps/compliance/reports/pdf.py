"""The report as a PDF (reportlab): a title page, progress per framework, every item with its
status, check result and evidence, the audit trail's verification, incident statistics."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import groupby
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    PageBreak,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from apps.core import pdf
from apps.core.pdf import ACCENT, INK, MUTED

RESULT_COLOURS = {
    "pass": colors.HexColor("#1a7f37"),
    "fail": colors.HexColor("#cf222e"),
    "manual": MUTED,
}
STATUS_COLOURS = {
    "implemented": colors.HexColor("#1a7f37"),
    "in_progress": colors.HexColor("#9a6700"),
    "not_started": colors.HexColor("#cf222e"),
    "not_applicable": MUTED,
}

_styles = pdf.sample_styles()
BODY = ParagraphStyle("body", parent=_styles["BodyText"], fontSize=9, leading=12, textColor=INK)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=8, leading=10, textColor=MUTED)
H1 = ParagraphStyle("h1", parent=_styles["Heading1"], textColor=INK)
H2 = ParagraphStyle("h2", parent=_styles["Heading2"], textColor=INK, spaceBefore=10)
H3 = ParagraphStyle("h3", parent=_styles["Heading3"], textColor=INK, fontSize=10, spaceAfter=2)
TITLE = ParagraphStyle(
    "title", parent=_styles["Title"], fontSize=26, leading=32, textColor=INK, alignment=TA_CENTER
)
SUBTITLE = ParagraphStyle(
    "subtitle", parent=BODY, fontSize=13, leading=18, alignment=TA_CENTER, textColor=MUTED
)


class ProgressBar(Flowable):
    """A horizontal bar filled to `percent`, for the summary table."""

    def __init__(self, percent: int, *, width: float = 45 * mm, height: float = 3.5 * mm):
        super().__init__()
        self.percent = max(0, min(100, percent))
        self.width = width
        self.height = height

    def wrap(self, available_width: float, available_height: float) -> tuple[float, float]:
        return self.width, self.height

    def draw(self) -> None:
        canvas = self.canv
        canvas.setStrokeColor(MUTED)
        canvas.setFillColor(colors.HexColor("#e6e9ed"))
        canvas.rect(0, 0, self.width, self.height, stroke=1, fill=1)
        canvas.setFillColor(ACCENT)
        canvas.rect(0, 0, self.width * self.percent / 100, self.height, stroke=0, fill=1)


def _p(text: Any, style: ParagraphStyle = BODY) -> Paragraph:
    return pdf.paragraph(text, style)


def _coloured(text: str, colour: colors.Color, *, bold: bool = True) -> str:
    body = f'<font color="{colour.hexval()}">{escape(text)}</font>'
    return f"<b>{body}</b>" if bold else body


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    value = timedelta(seconds=round(seconds))
    hours, rest = divmod(int(value.total_seconds()), 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 24:
        return f"{hours // 24} d {hours % 24} h {minutes} min"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s"


_FOOTER = pdf.footer(lambda document: str(document.title))


def _grid(rows: list[list[Any]], widths: list[float], *, header: bool = True) -> Table:
    style: list[tuple[Any, ...]] = [
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("FONTSIZE", (0, 0), (-1, -1), 8),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, pdf.RULE),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
    ]
    if header:
        style += [
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#10243e")),
            ("TEXTCOLOR", (0, 0), (-1, 0), colors.white),
            ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
        ]
    return pdf.table(rows, widths, style, repeat_header=header, hAlign="LEFT")


def _generated(value: str) -> str:
    moment = datetime.fromisoformat(value)
    return f"{moment:%d %B %Y, %H:%M} UTC"


def _title_page(data: dict[str, Any]) -> list[Flowable]:
    report, audit, incidents = data["report"], data["audit"], data["incidents"]
    results = [item["check"]["result"] for item in data["items"]]
    if audit["verified"]:
        trail = Paragraph(_coloured("Verified", RESULT_COLOURS["pass"]), BODY)
    else:
        trail = Paragraph(
            _coloured(f"Broken at seq {audit['first_bad_seq']}", RESULT_COLOURS["fail"]), BODY
        )
    glance: list[list[Any]] = [["At a glance", "", ""]]
    for row in data["summary"]:
        glance.append(
            [
                _p(row["name"]),
                ProgressBar(row["percent_with_evidence"], width=70 * mm),
                _p(
                    f"{row['percent_with_evidence']}% ({row['implemented']}"
                    f"{' + ' + str(row['evidenced']) if row['evidenced'] else ''}"
                    f" of {row['applicable']})"
                ),
            ]
        )
    glance += [
        [
            _p("Automated checks"),
            Paragraph(
                f"{_coloured(str(results.count('pass')) + ' pass', RESULT_COLOURS['pass'])}, "
                f"{_coloured(str(results.count('fail')) + ' fail', RESULT_COLOURS['fail'])}",
                BODY,
            ),
            "",
        ],
        [_p("Audit trail"), trail, _p(f"head {audit['head'][:16]}")],
        [
            _p("Incidents"),
            _p(f"{incidents['total']} in total, {incidents['open']} open"),
            _p(f"mean time to contain {_duration(incidents['time_to_contain_seconds']['mean'])}"),
        ],
    ]
    table = _grid(glance, [40 * mm, 76 * mm, 40 * mm])
    table.setStyle(TableStyle([("SPAN", (0, 0), (-1, 0))]))
    return [
        Spacer(1, 35 * mm),
        Paragraph(escape(report["title"]), TITLE),
        Spacer(1, 6 * mm),
        _p(report["framework_name"], SUBTITLE),
        Spacer(1, 2 * mm),
        _p(f"Generated {_generated(report['generated_at'])}", SUBTITLE),
        _p(f"{report['items']} checklist items", SUBTITLE),
        Spacer(1, 18 * mm),
        table,
        PageBreak(),
    ]


def _summary(data: dict[str, Any]) -> list[Flowable]:
    rows: list[list[Any]] = [
        [
            "Framework",
            "Items",
            "Applicable",
            "Implemented",
            "Evidenced",
            "In progress",
            "Progress",
            "",
        ]
    ]
    for row in data["summary"]:
        rows.append(
            [
                _p(row["name"]),
                row["items"],
                row["applicable"],
                row["implemented"],
                row["evidenced"],
                row["by_status"]["in_progress"],
                ProgressBar(row["percent_with_evidence"], width=30 * mm),
                f"{row['percent_with_evidence']}%",
            ]
        )
    results = [item["check"]["result"] for item in data["items"]]
    checks = (
        f"Automated checks in this report: {results.count('pass')} pass, "
        f"{results.count('fail')} fail; {results.count('manual')} items are reviewed by people."
    )
    return [
        Paragraph("Summary per framework", H1),
        _p(
            "Progress is the share of applicable items (all but those marked not applicable) "
            "that are implemented (marked so by a person) or evidenced (not marked implemented, "
            "but their automated check passed in the latest run). A framework's items are those "
            "mapped to its controls."
        ),
        Spacer(1, 4 * mm),
        _grid(rows, [36 * mm, 13 * mm, 18 * mm, 20 * mm, 18 * mm, 18 * mm, 34 * mm, 12 * mm]),
        Spacer(1, 4 * mm),
        _p(checks),
    ]


def _item(item: dict[str, Any]) -> Flowable:
    check = item["check"]
    status = _coloured(item["status_label"], STATUS_COLOURS.get(item["status"], INK))
    result = _coloured(check["result"].upper(), RESULT_COLOURS.get(check["result"], INK))
    checked = f" ({escape(check['checked_at'])})" if check["checked_at"] else ""
    evidence = "<br/>".join(escape(_evidence_line(e)) for e in item["evidence"]) or "none"
    controls = ", ".join(f"{c['framework_name']} {c['code']}" for c in item["controls"])
    rows = [
        [_p("Status"), Paragraph(status, BODY)],
        [_p("Owner"), _p(item["owner"] or "nobody")],
        [_p("Last reviewed"), _p(item["last_reviewed_at"] or "never")],
        [_p("Controls"), _p(controls or "none")],
        [_p("Check"), Paragraph(f"{result} {escape(check['detail'])}{checked}", BODY)],
        [_p("Evidence"), Paragraph(evidence, BODY)],
    ]
    if item["notes"]:
        rows.append([_p("Notes"), _p(item["notes"])])
    return KeepTogether(
        [
            Paragraph(escape(item["title"]), H3),
            _p(item["description"], SMALL),
            _grid(rows, [26 * mm, 146 * mm], header=False),
            Spacer(1, 3 * mm),
        ]
    )


def _evidence_line(evidence: dict[str, Any]) -> str:
    added = evidence["added_at"]
    if evidence["kind"] == "link":
        return f"Link: {evidence['url']} (added {added})"
    if evidence["kind"] == "text":
        text = evidence["text"]
        return f"Text: {text[:300]}{'...' if len(text) > 300 else ''} (added {added})"
    return (
        f"File: {evidence['file_name']}, {evidence['content_type']}, {evidence['size']} bytes, "
        f"SHA-256 {evidence['sha256']} (added {added})"
    )


def _items(data: dict[str, Any]) -> list[Flowable]:
    flowables: list[Flowable] = [PageBreak(), Paragraph("Checklist items", H1)]
    for label, items in groupby(data["items"], key=lambda item: item["category_label"]):
        flowables.append(Paragraph(escape(label), H2))
        flowables.extend(_item(item) for item in items)
    return flowables


def _audit_and_incidents(data: dict[str, Any]) -> list[Flowable]:
    audit, incidents = data["audit"], data["incidents"]
    if audit["verified"]:
        verdict = _coloured("Verified", RESULT_COLOURS["pass"])
    else:
        verdict = _coloured(
            f"Broken at seq {audit['first_bad_seq']}: {audit['reason']}", RESULT_COLOURS["fail"]
        )
    audit_rows = [
        [_p("Verification"), Paragraph(verdict, BODY)],
        [_p("Events checked"), _p(audit["events_checked"])],
        [_p("Last seq"), _p(audit["last_seq"])],
        [_p("Head hash"), _p(audit["head"])],
    ]
    ttc = incidents["time_to_contain_seconds"]
    incident_rows = [
        [_p("Incidents"), _p(f"{incidents['total']} in total, {incidents['open']} open")],
        [
            _p("By status"),
            _p(", ".join(f"{k}: {v}" for k, v in incidents["by_status"].items()) or "none"),
        ],
        [
            _p("By severity"),
            _p(
                ", ".join(f"{k.upper()}: {v}" for k, v in incidents["by_severity"].items())
                or "none"
            ),
        ],
        [_p("Contained"), _p(incidents["contained"])],
        [
            _p("Time to contain"),
            _p(
                f"mean {_duration(ttc['mean'])}, median {_duration(ttc['median'])}, "
                f"longest {_duration(ttc['max'])}"
            ),
        ],
    ]
    return [
        PageBreak(),
        Paragraph("Audit trail", H1),
        _p(
            "The whole hash chain was verified while this report was generated: every "
            "sequence number present, every link and HMAC intact."
        ),
        Spacer(1, 3 * mm),
        _grid(audit_rows, [32 * mm, 140 * mm], header=False),
        Paragraph("Incidents", H1),
        _p("Time to contain is measured from detection to containment."),
        Spacer(1, 3 * mm),
        _grid(incident_rows, [32 * mm, 140 * mm], header=False),
    ]


def render_pdf(data: dict[str, Any]) -> bytes:
    report = data["report"]
    story = [
        *_title_page(data),
        *_summary(data),
        *_items(data),
        *_audit_and_incidents(data),
    ]
    return pdf.render(
        story,
        title=f"{report['title']}: {report['framework_name']}",
        subject=f"Compliance report generated {report['generated_at']}",
        first_page=pdf.no_footer,  # the title page
        later_pages=_FOOTER,
        invariant=True,  # reproducible bytes for the same content
    )
