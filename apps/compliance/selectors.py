"""Reads of the checklist for holders of `compliance.read` (security officers, admins,
auditors): every such reader sees every item; the views check the capability."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, OuterRef, Prefetch, QuerySet, Subquery

from apps.compliance.errors import invalid
from apps.compliance.models import (
    Category,
    ChecklistItem,
    CheckResult,
    Control,
    Evidence,
    Framework,
    ItemStatus,
)
from apps.core.errors import NotFound

CHECKLIST = "checklist"
CHECKLIST_NAME = "Security checklist"
# Roles whose members may own an item: people who run the deployment, not API clients.
OWNER_ROLES = ("admin", "security_officer", "ml_engineer", "auditor")


def framework_choices() -> list[tuple[str, str]]:
    """(key, name) of `checklist` (every item) and of each seeded framework, in order."""
    return [(CHECKLIST, CHECKLIST_NAME), *Framework.objects.values_list("key", "name")]


def _with_details(items: QuerySet[ChecklistItem]) -> QuerySet[ChecklistItem]:
    latest = CheckResult.objects.filter(item=OuterRef("pk")).order_by("-checked_at")
    return (
        items.select_related("owner")
        .prefetch_related(
            Prefetch("controls", queryset=Control.objects.select_related("framework")),
            Prefetch(
                "evidence",
                # Never load ciphertext to list evidence.
                queryset=Evidence.objects.defer("ciphertext", "data_key_sealed").select_related(
                    "added_by"
                ),
            ),
        )
        .annotate(
            check_result=Subquery(latest.values("result")[:1]),
            check_detail=Subquery(latest.values("detail")[:1]),
            check_checked_at=Subquery(latest.values("checked_at")[:1]),
        )
    )


def compliance_item_list(
    *, actor: Any, framework: str | None = None, category: str | None = None
) -> QuerySet[ChecklistItem]:
    """Items in checklist order, of one framework (those mapped to any of its controls;
    `checklist`: all) and one category. InvalidInput for an unknown value."""
    items = ChecklistItem.objects.all()
    if framework:
        keys = [key for key, _ in framework_choices()]
        if framework not in keys:
            raise invalid("framework", f"must be one of {', '.join(keys)}")
        if framework != CHECKLIST:
            items = items.filter(
                pk__in=ChecklistItem.objects.filter(controls__framework__key=framework).values("pk")
            )
    if category:
        if category not in Category.values:
            raise invalid("category", f"must be one of {', '.join(Category.values)}")
        items = items.filter(category=category)
    return _with_details(items).order_by("position")


def compliance_item_get(*, actor: Any, item_id: Any) -> ChecklistItem:
    """One item with its details; NotFound (also for a malformed id)."""
    try:
        key = uuid.UUID(str(item_id))
    except ValueError:
        raise NotFound("No checklist item with this id.") from None
    item = _with_details(ChecklistItem.objects.filter(pk=key)).first()
    if item is None:
        raise NotFound("No checklist item with this id.")
    return item


def evidence_get(*, actor: Any, evidence_id: Any) -> Evidence:
    """One evidence record, ciphertext included (for download); NotFound otherwise."""
    try:
        key = uuid.UUID(str(evidence_id))
    except ValueError:
        raise NotFound("No evidence with this id.") from None
    evidence = Evidence.objects.select_related("item").filter(pk=key).first()
    if evidence is None:
        raise NotFound("No evidence with this id.")
    return evidence


@dataclass(frozen=True)
class Progress:
    key: str
    name: str
    total: int
    counts: dict[str, int]

    @property
    def applicable(self) -> int:
        return self.total - self.counts[ItemStatus.NOT_APPLICABLE]

    @property
    def implemented(self) -> int:
        return self.counts[ItemStatus.IMPLEMENTED]

    @property
    def percent(self) -> int:
        """Implemented share of the applicable items (100 when none applies)."""
        if self.applicable == 0:
            return 100
        return round(100 * self.implemented / self.applicable)

    def as_dict(self) -> dict[str, Any]:
        return {
            "framework": self.key,
            "name": self.name,
            "items": self.total,
            "applicable": self.applicable,
            "implemented": self.implemented,
            "percent": self.percent,
            "by_status": dict(self.counts),
        }


def compliance_progress(*, actor: Any) -> list[Progress]:
    """Status counts per framework: `checklist` first (every item), then each framework
    (the items mapped to its controls, each counted once)."""
    progress = []
    for key, name in framework_choices():
        items = ChecklistItem.objects.all()
        if key != CHECKLIST:
            items = items.filter(controls__framework__key=key)
        counts = dict.fromkeys(ItemStatus.values, 0)
        for row in items.values("status").annotate(n=Count("id", distinct=True)):
            counts[row["status"]] = row["n"]
        progress.append(Progress(key, name, sum(counts.values()), counts))
    return progress


def compliance_owner_candidates() -> QuerySet[Any]:
    """Active users who may own an item (holders of a role other than API client)."""
    return (
        get_user_model()
        .objects.filter(is_active=True, roles__name__in=OWNER_ROLES)
        .distinct()
        .order_by("username")
    )
