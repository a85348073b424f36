"""Dates and times as the JSON exports write them, and durations as people read them."""

from __future__ import annotations

from datetime import date, datetime, timedelta


def iso(value: datetime | date | None) -> str | None:
    """ISO 8601, or None for no value."""
    return value.isoformat() if value is not None else None


def duration_text(delta: timedelta | None) -> str:
    """Like "45 s", "12 min", "3 h 05 min", "2 d 4 h"; "—" when there is none."""
    if delta is None:
        return "—"
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
