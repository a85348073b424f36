"""The console's navigation: one list of sections, each shown only to the roles that can use
it (apps/core/permissions.py's matrix), for every page: the console's, the incident and
compliance pages, the admin and the API docs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from apps.core.permissions import may


@dataclass(frozen=True, slots=True)
class Section:
    key: str
    label: str
    path: str
    capabilities: tuple[str, ...]  # any one of them shows it; () = every signed-in person


SECTIONS: tuple[Section, ...] = (
    Section("dashboard", "Dashboard", "/", ()),
    Section("incidents", "Incidents", "/incidents/", ("incidents.read",)),
    Section("compliance", "Compliance", "/compliance/", ("compliance.read",)),
    Section("audit", "Audit", "/audit/", ("audit.read",)),
    Section("models", "Models", "/models/", ("models.read", "models.write")),
    Section("keys", "Keys", "/keys/", ("apikeys.manage_all",)),
)


def sections_for(user: Any) -> list[Section]:
    if user is None or not user.is_authenticated:
        return []
    return [s for s in SECTIONS if not s.capabilities or any(may(user, c) for c in s.capabilities)]


def admin_allowed(user: Any) -> bool:
    """The admin site lets in active staff only (apps/accounts/admin_site.py)."""
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


def _current(path: str) -> str:
    for section in sorted(SECTIONS, key=lambda s: len(s.path), reverse=True):
        if section.path != "/" and path.startswith(section.path):
            return section.key
    if path.startswith("/admin/"):
        return "admin"
    if path.startswith("/api/docs"):
        return "api-docs"
    return "dashboard" if path == "/" else ""


def navigation(request: HttpRequest) -> dict[str, Any]:
    """Template context processor: `nav_sections`, `nav_admin`, `nav_current`."""
    user = getattr(request, "user", None)
    return {
        "nav_sections": sections_for(user),
        "nav_admin": admin_allowed(user),
        "nav_current": _current(request.path),
    }
