"""The one PDF toolkit of Bulwark's reports (incidents, compliance): A4 documents with the
same margins, footer and page numbers, user text escaped for reportlab's paragraph markup, and
tables. Each report keeps its own styles and content; this is how they are put on paper."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, StyleSheet1, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Table, TableStyle

INK = colors.HexColor("#1b1f24")
MUTED = colors.HexColor("#59636e")
ACCENT = colors.HexColor("#0b5cad")
RULE = colors.HexColor("#d0d7de")
MARGINS = {
    "leftMargin": 18 * mm,
    "rightMargin": 18 * mm,
    "topMargin": 16 * mm,
    "bottomMargin": 18 * mm,
}

PageCallback = Callable[[Any, SimpleDocTemplate], None]


def sample_styles() -> StyleSheet1:
    """reportlab's sample sheet, which each report's styles derive from."""
    return getSampleStyleSheet()


def markup(text: Any, *, empty: str = "") -> str:
    """`text` as paragraph markup: escaped (it is a small markup language and user text must
    not be read as tags), newlines kept as line breaks; `empty` for None or ''."""
    value = "" if text is None else str(text)
    return escape(value or empty).replace("\n", "<br/>")


def paragraph(text: Any, style: ParagraphStyle, *, empty: str = "") -> Paragraph:
    return Paragraph(markup(text, empty=empty), style)


def table(
    rows: Sequence[Sequence[Any]],
    widths: Sequence[float | None],
    style: Sequence[tuple[Any, ...]],
    *,
    repeat_header: bool = False,
    **options: Any,
) -> Table:
    """A table with its style commands; `repeat_header` repeats the first row on every page."""
    built = Table(
        [list(row) for row in rows],
        colWidths=list(widths),
        repeatRows=1 if repeat_header else 0,
        **options,
    )
    built.setStyle(TableStyle(list(style)))
    return built


def footer(label: Callable[[SimpleDocTemplate], str]) -> PageCallback:
    """Draws `label(document)` at the bottom left and the page number at the bottom right."""

    def draw(canvas: Any, document: SimpleDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.setFillColor(MUTED)
        canvas.drawString(MARGINS["leftMargin"], 10 * mm, label(document))
        canvas.drawRightString(A4[0] - MARGINS["rightMargin"], 10 * mm, f"Page {document.page}")
        canvas.restoreState()

    return draw


def no_footer(canvas: Any, document: SimpleDocTemplate) -> None:
    """For a title page."""


def render(
    story: list[Flowable],
    *,
    title: str,
    subject: str,
    first_page: PageCallback,
    later_pages: PageCallback,
    invariant: bool = False,
) -> bytes:
    """The story as an A4 PDF. `invariant`: the same bytes for the same content (no random
    document id, no creation time)."""
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        title=title,
        author="Bulwark",
        subject=subject,
        **MARGINS,
        **({"invariant": 1} if invariant else {}),
    )
    document.build(story, onFirstPage=first_page, onLaterPages=later_pages)
    return buffer.getvalue()
