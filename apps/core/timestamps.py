"""Dates and times as the JSON exports write them."""

from __future__ import annotations

from datetime import date, datetime


def iso(value: datetime | date | None) -> str | None:
    """ISO 8601, or None for no value."""
    return value.isoformat() if value is not None else None
