"""What the console's dashboard shows: each panel read through the owning app's selectors,
and only the panels the person's roles may see (apps/core/permissions.py)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from apps.apikeys.selectors import api_keys_expiring
from apps.audit.selectors import ChainState, chain_state, event_counts_since, event_details_since
from apps.compliance.selectors import compliance_progress_by_framework
from apps.core.permissions import may
from apps.incidents.selectors import incident_dashboard_figures
from apps.registry.selectors import versions_needing_attention

KEYS_HORIZON = timedelta(days=14)
TRAFFIC_WINDOW = timedelta(hours=1)
# The refusal codes of the last hour are counted from the latest refusals only: a flood of
# refusals must not make the dashboard read every one of them.
REFUSALS_SAMPLED = 1000
LISTED = 8


@dataclass(slots=True)
class Traffic:
    accepted: int
    refused: int
    codes: list[tuple[str, int]]
    sampled: int  # refusals whose codes were counted (≤ REFUSALS_SAMPLED)

    @property
    def total(self) -> int:
        return self.accepted + self.refused


@dataclass(slots=True)
class Dashboard:
    now: datetime
    incidents: dict[str, Any] | None = None
    compliance: list[dict[str, Any]] | None = None
    keys: list[Any] | None = None
    keys_total: int = 0
    keys_all: bool = False  # every key, or only the person's own
    models: list[Any] | None = None
    models_counts: dict[str, int] = field(default_factory=dict)
    chain: ChainState | None = None
    traffic: Traffic | None = None

    @property
    def empty(self) -> bool:
        panels = (self.incidents, self.compliance, self.models, self.chain, self.traffic)
        return all(panel is None for panel in panels) and not self.keys


def predict_traffic(*, now: datetime) -> Traffic:
    since = now - TRAFFIC_WINDOW
    counts = event_counts_since(since, ("predict.succeeded", "predict.rejected"))
    accepted = sum(n for (action, _), n in counts.items() if action == "predict.succeeded")
    refused = sum(n for (action, _), n in counts.items() if action == "predict.rejected")
    details = event_details_since(since, "predict.rejected", limit=REFUSALS_SAMPLED)
    codes = Counter(str(d.get("code") or "unknown") for d in details)
    return Traffic(accepted, refused, codes.most_common(), len(details))


def dashboard_for(user: Any, *, now: datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    board = Dashboard(now=now)
    if may(user, "incidents.read"):
        board.incidents = incident_dashboard_figures(now=now)
    if may(user, "compliance.read"):
        board.compliance = compliance_progress_by_framework()
    expiring = api_keys_expiring(now=now, horizon=now + KEYS_HORIZON)
    board.keys_all = may(user, "apikeys.manage_all")
    if not board.keys_all:
        expiring = expiring.filter(owner_id=user.pk)
    board.keys = list(expiring[:LISTED])
    board.keys_total = len(board.keys) if len(board.keys) < LISTED else expiring.count()
    if may(user, "models.read"):
        board.models, board.models_counts = versions_needing_attention(limit=LISTED)
    if may(user, "audit.read"):
        board.chain = chain_state()
    if may(user, "models.read") or may(user, "incidents.read"):
        board.traffic = predict_traffic(now=now)
    return board
