"""Reads of the checklist for holders of `compliance.read` (security officers, admins,
auditors): every such reader sees every item; the views check the capability."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Max, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse

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


def _latest_checks() -> QuerySet[CheckResult]:
    return CheckResult.objects.filter(item=OuterRef("pk")).order_by("-checked_at")


def _with_details(
    items: QuerySet[ChecklistItem], *, evidence: bool = True
) -> QuerySet[ChecklistItem]:
    latest = _latest_checks()
    prefetches: list[Any] = [
        Prefetch("controls", queryset=Control.objects.select_related("framework")),
    ]
    if evidence:
        prefetches.append(
            Prefetch(
                "evidence",
                # Never load ciphertext to list evidence.
                queryset=Evidence.objects.defer("ciphertext", "data_key_sealed").select_related(
                    "added_by"
                ),
            )
        )
    return (
        items.select_related("owner")
        .prefetch_related(*prefetches)
        .annotate(
            check_result=Subquery(latest.values("result")[:1]),
            check_detail=Subquery(latest.values("detail")[:1]),
            check_checked_at=Subquery(latest.values("checked_at")[:1]),
        )
    )


def _with_summary(items: QuerySet[ChecklistItem]) -> QuerySet[ChecklistItem]:
    """Items for a list row: owner, latest check result and the number of evidence records,
    in one query (no evidence, no controls loaded)."""
    latest = _latest_checks()
    evidence_count = (
        Evidence.objects.filter(item=OuterRef("pk"))
        .order_by()
        .values("item")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return items.select_related("owner").annotate(
        check_result=Subquery(latest.values("result")[:1]),
        check_checked_at=Subquery(latest.values("checked_at")[:1]),
        evidence_count=Coalesce(Subquery(evidence_count), 0),
    )


def _filtered(framework: str | None, category: str | None) -> QuerySet[ChecklistItem]:
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
    return items


def compliance_item_list(
    *, actor: Any, framework: str | None = None, category: str | None = None
) -> QuerySet[ChecklistItem]:
    """Items in checklist order, of one framework (those mapped to any of its controls;
    `checklist`: all) and one category. InvalidInput for an unknown value."""
    return _with_details(_filtered(framework, category)).order_by("position")


def compliance_item_rows(
    *, actor: Any, framework: str | None = None, category: str | None = None
) -> QuerySet[ChecklistItem]:
    """The same items as `compliance_item_list`, for a list of rows: each with its owner,
    `check_result`, `check_checked_at` and `evidence_count`, in one query."""
    return _with_summary(_filtered(framework, category)).order_by("position")


def compliance_item_get(*, actor: Any, item_id: Any, evidence: bool = True) -> ChecklistItem:
    """One item with its details (its evidence too unless `evidence=False`: a page lists it
    by pages with `compliance_item_evidence`); NotFound (also for a malformed id)."""
    try:
        key = uuid.UUID(str(item_id))
    except ValueError:
        raise NotFound("No checklist item with this id.") from None
    item = _with_details(ChecklistItem.objects.filter(pk=key), evidence=evidence).first()
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


def compliance_item_evidence(*, actor: Any, item: ChecklistItem) -> QuerySet[Evidence]:
    """The item's evidence, newest first, without ciphertext (a page slices it)."""
    return (
        Evidence.objects.filter(item=item)
        .defer("ciphertext", "data_key_sealed")
        .select_related("added_by")
        .order_by("-created_at", "-pk")
    )


def compliance_item_check_history(
    *, actor: Any, item: ChecklistItem, limit: int = 10
) -> list[CheckResult]:
    """The item's latest `limit` automated check results, newest first."""
    return list(CheckResult.objects.filter(item=item).order_by("-checked_at")[:limit])


def compliance_checks_last_run(*, actor: Any) -> datetime | None:
    """When the automated checks last ran (None if never): the newest result's time."""
    last: datetime | None = CheckResult.objects.aggregate(last=Max("checked_at"))["last"]
    return last


def compliance_framework_get(*, actor: Any, key: str) -> Framework:
    """One seeded framework by its key (gdpr, hipaa, soc2); NotFound otherwise (the
    `checklist` pseudo-framework has no controls, so it is not one)."""
    framework = Framework.objects.filter(key=key).first()
    if framework is None:
        raise NotFound(f"No framework {key[:40]!r}: there are {', '.join(_framework_keys())}.")
    return framework


def _framework_keys() -> list[str]:
    return list(Framework.objects.values_list("key", flat=True))


def compliance_framework_controls(*, actor: Any, framework: Framework) -> list[Control]:
    """The framework's controls in order, each with `items` (the checklist items that serve
    it, in checklist order, as `compliance_item_rows` gives them): two queries."""
    return list(
        Control.objects.filter(framework=framework)
        .order_by("position")
        .prefetch_related(
            Prefetch(
                "items",
                queryset=_with_summary(ChecklistItem.objects.all()).order_by("position"),
            )
        )
    )


# How an item counts in progress (docs/api.md "Compliance (additions)").
IMPLEMENTED = "implemented"  # marked implemented by a person
# Not marked implemented, but its automated check passed in the latest run.
EVIDENCED = "evidenced"
OPEN = "open"  # neither yet
EXCLUDED = "not_applicable"  # marked not applicable: left out of progress


def counts_as(
    status: str,
    *,
    automated_check: str,
    check_result: str | None,
    checked_at: datetime | None,
    last_run: datetime | None,
) -> str:
    """How an item counts in progress, from its status and its newest check result. An item
    has at most one automated check (`automated_check`), and each run records a result for
    every item that has one, all at the run's one time: the item is evidenced when that check
    passed in the latest run (`last_run`, the newest result of all). A result from an earlier
    run (the check was added or removed since), "fail" and "manual" (no such check) never
    evidence an item."""
    if status == ItemStatus.NOT_APPLICABLE:
        return EXCLUDED
    if status == ItemStatus.IMPLEMENTED:
        return IMPLEMENTED
    if (
        automated_check
        and check_result == "pass"
        and checked_at is not None
        and checked_at == last_run
    ):
        return EVIDENCED
    return OPEN


def item_counts_as(item: ChecklistItem, *, last_run: datetime | None) -> str:
    """`counts_as` of an item from `compliance_item_rows`, `compliance_item_get` or
    `compliance_framework_controls` (which annotate its newest check result)."""
    return counts_as(
        item.status,
        automated_check=item.automated_check,
        check_result=getattr(item, "check_result", None),
        checked_at=getattr(item, "check_checked_at", None),
        last_run=last_run,
    )


@dataclass(frozen=True)
class Progress:
    key: str
    name: str
    total: int
    counts: dict[str, int]
    evidenced: int = 0
    # Latest automated check results of the items: pass, fail, manual, not_run.
    checks: dict[str, int] = field(default_factory=dict)

    @property
    def applicable(self) -> int:
        return self.total - self.counts[ItemStatus.NOT_APPLICABLE]

    @property
    def implemented(self) -> int:
        return self.counts[ItemStatus.IMPLEMENTED]

    @property
    def covered(self) -> int:
        """Applicable items implemented by hand or evidenced by a passing check."""
        return self.implemented + self.evidenced

    @property
    def percent(self) -> int:
        """Implemented share of the applicable items (100 when none applies)."""
        if self.applicable == 0:
            return 100
        return round(100 * self.implemented / self.applicable)

    @property
    def percent_with_evidence(self) -> int:
        """Implemented-or-evidenced share of the applicable items (100 when none applies)."""
        if self.applicable == 0:
            return 100
        return round(100 * self.covered / self.applicable)

    def as_dict(self) -> dict[str, Any]:
        return {
            "framework": self.key,
            "name": self.name,
            "items": self.total,
            "applicable": self.applicable,
            "implemented": self.implemented,
            "percent": self.percent,
            "by_status": dict(self.counts),
            "evidenced": self.evidenced,
            "percent_with_evidence": self.percent_with_evidence,
        }


def compliance_progress(*, actor: Any) -> list[Progress]:
    """Status counts per framework: `checklist` first (every item), then each framework
    (the items mapped to its controls, each counted once), with the items evidenced by a
    passing automated check and the tally of the latest check results. Three queries, however
    many results the checks have recorded."""
    latest = _latest_checks()
    items = list(
        ChecklistItem.objects.annotate(
            check_result=Subquery(latest.values("result")[:1]),
            check_checked_at=Subquery(latest.values("checked_at")[:1]),
        )
        .order_by()
        .values_list("pk", "status", "automated_check", "check_result", "check_checked_at")
    )
    # The latest run's time: every result belongs to an item, so the newest of the newest.
    last_run = max((row[4] for row in items if row[4] is not None), default=None)
    members: dict[str, set[Any]] = {}
    for item_pk, framework_key in (
        ChecklistItem.controls.through.objects.order_by()
        .values_list("checklistitem_id", "control__framework__key")
        .distinct()
    ):
        members.setdefault(framework_key, set()).add(item_pk)
    progress = []
    for key, name in framework_choices():
        counts = dict.fromkeys(ItemStatus.values, 0)
        checks = {"pass": 0, "fail": 0, "manual": 0, "not_run": 0}
        evidenced = 0
        chosen = members.get(key, set())
        for item_pk, status, check, result, checked_at in items:
            if key != CHECKLIST and item_pk not in chosen:
                continue
            counts[status] += 1
            counted = counts_as(
                status,
                automated_check=check,
                check_result=result,
                checked_at=checked_at,
                last_run=last_run,
            )
            if counted == EVIDENCED:
                evidenced += 1
            if check:
                checks[result or "not_run"] += 1
        progress.append(Progress(key, name, sum(counts.values()), counts, evidenced, checks))
    return progress


def compliance_progress_by_framework() -> list[dict[str, Any]]:
    """Progress of each seeded framework (GDPR, HIPAA, SOC 2; not the whole checklist), for
    the console's dashboard: `framework` (key), `label`, `total` (its items that apply, i.e.
    not marked not applicable), `implemented` (marked so by hand), `evidenced` (not marked
    implemented, but its automated check passed in the latest run), `percent` (implemented or
    evidenced, of `total`; 100 when none applies) and `url` (the framework's page). Holders
    of `compliance.read` may see it; the caller checks. Three queries."""
    return [
        {
            "framework": p.key,
            "label": p.name,
            "total": p.applicable,
            "implemented": p.implemented,
            "evidenced": p.evidenced,
            "percent": p.percent_with_evidence,
            "url": reverse("compliance-framework", kwargs={"framework": p.key}),
        }
        for p in compliance_progress(actor=None)
        if p.key != CHECKLIST
    ]


def compliance_owner_candidates() -> QuerySet[Any]:
    """Active users who may own an item (holders of a role other than API client)."""
    return (
        get_user_model()
        .objects.filter(is_active=True, roles__name__in=OWNER_ROLES)
        .distinct()
        .order_by("username")
    )
