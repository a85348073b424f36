"""Small filters of the console's pages."""

from __future__ import annotations

from datetime import timedelta

from django import template

from apps.core.timestamps import duration_text

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    """Seconds as "45 s", "12 min", "3 h 05 min", "2 d 4 h"; "—" for none."""
    return duration_text(None if seconds is None else timedelta(seconds=seconds))
