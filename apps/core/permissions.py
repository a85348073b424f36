"""Who may do what: the whole role matrix in one place, checked by DRF permission classes.

Views name a capability (`permission_classes = [IsAuthenticated, Allows("audit.read")]`);
this module says which roles hold it. Roles are those of docs/api.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.request import Request

ADMIN = "admin"
SECURITY_OFFICER = "security_officer"
ML_ENGINEER = "ml_engineer"
AUDITOR = "auditor"
API_CLIENT = "api_client"

ROLE_MATRIX: dict[str, frozenset[str]] = {
    # Read and export the audit trail, its checkpoints and its public key; run verification.
    "audit.read": frozenset({ADMIN, SECURITY_OFFICER, AUDITOR}),
    # Resolve a person's username to their audit pseudonym and back (each lookup is an event).
    "audit.identify": frozenset({ADMIN, SECURITY_OFFICER, AUDITOR}),
    # See, rotate and revoke every API key, not only one's own.
    "apikeys.manage_all": frozenset({ADMIN, SECURITY_OFFICER}),
    # Register models; upload, stage and archive versions of the models one owns.
    "models.write": frozenset({ADMIN, ML_ENGINEER}),
    # Change any model's owners and allow-list extension; write every model's versions.
    "models.admin": frozenset({ADMIN}),
    # Archive any model's version (containment), owner or not.
    "models.archive_any": frozenset({ADMIN, SECURITY_OFFICER}),
    # Register and remove the publishers whose signed artifacts are trusted.
    "publishers.manage": frozenset({ADMIN, SECURITY_OFFICER}),
    # See models and their versions (metadata only: never an artifact or a key).
    "models.read": frozenset({ADMIN, ML_ENGINEER, AUDITOR}),
    # Predict on every model (others need a per-model grant, managed in the admin).
    "predict.all_models": frozenset({ADMIN, ML_ENGINEER}),
    # See incidents, their timelines and reports.
    "incidents.read": frozenset({ADMIN, SECURITY_OFFICER, AUDITOR}),
    # Open, move, annotate, assign incidents and take containment actions from them.
    "incidents.write": frozenset({ADMIN, SECURITY_OFFICER}),
    # GDPR: export anyone's personal data (subject access) and erase a person.
    "privacy.manage": frozenset({ADMIN, SECURITY_OFFICER}),
    # See the compliance checklist, its evidence and check results; download reports.
    "compliance.read": frozenset({ADMIN, SECURITY_OFFICER, AUDITOR}),
    # Change items (status, owner, notes), add evidence, run the automated checks.
    "compliance.write": frozenset({ADMIN, SECURITY_OFFICER}),
}


# The user instance carries its role names here, and only this module reads or writes it:
# set from a cached record (apps.accounts.user_cache, apps.apikeys.records) or on first read.
_ROLES = "_bulwark_roles"


def roles_of(user: Any, *, remember: bool = True) -> set[str]:
    """The user's role names, read once per user instance (which then carries them).
    `remember=False` reads without keeping what a query found: a record written twice around
    a commit must read the roles twice, not carry the first read into the second."""
    if user is None or not getattr(user, "is_authenticated", False):
        return set()
    cached: set[str] | None = getattr(user, _ROLES, None)
    if cached is None:
        cached = set(user.roles.values_list("name", flat=True))
        if remember:
            setattr(user, _ROLES, cached)
    return cached


def roles_remember(user: Any, roles: Iterable[str]) -> None:
    """Let this user instance carry `roles` (read with it, from a cached record or a
    prefetch), so that `roles_of` needs no query."""
    setattr(user, _ROLES, set(roles))


def may(user: Any, capability: str) -> bool:
    return bool(roles_of(user) & ROLE_MATRIX[capability])


class AllowsAny(BasePermission):
    """`AllowsAny("models.write", "models.archive_any")`: the caller holds one of them (the
    service decides what each allows)."""

    def __init__(self, *capabilities: str) -> None:
        for capability in capabilities:
            if capability not in ROLE_MATRIX:
                raise KeyError(f"unknown capability {capability!r}")
        self.capabilities = capabilities

    def __call__(self) -> AllowsAny:
        return self

    def has_permission(self, request: Request, view: Any) -> bool:
        return any(may(request.user, capability) for capability in self.capabilities)


class Allows(BasePermission):
    """`Allows("audit.read")`: the caller holds a role that the matrix gives this capability."""

    def __init__(self, capability: str) -> None:
        if capability not in ROLE_MATRIX:
            raise KeyError(f"unknown capability {capability!r}")
        self.capability = capability

    def __call__(self) -> Allows:
        # DRF instantiates each entry of permission_classes; an instance stands in for a class.
        return self

    def has_permission(self, request: Request, view: Any) -> bool:
        return may(request.user, self.capability)


class ReadOrWrite:
    """A view mixin for an area of the matrix: reads (GET, HEAD, OPTIONS) need `<area>.read`,
    anything else `<area>.write`; both need a signed-in caller. One definition for every app,
    named once per area: `class ReadOrWrite(permissions.ReadOrWrite, area="incidents")`."""

    area: ClassVar[str]

    def __init_subclass__(cls, *, area: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if area is not None:
            for capability in (f"{area}.read", f"{area}.write"):
                if capability not in ROLE_MATRIX:
                    raise KeyError(f"unknown capability {capability!r}")
            cls.area = area

    def get_permissions(self) -> list[BasePermission]:
        request: Request = self.request  # type: ignore[attr-defined]  # set by APIView
        kind = "read" if request.method in SAFE_METHODS else "write"
        return [IsAuthenticated(), Allows(f"{self.area}.{kind}")]
