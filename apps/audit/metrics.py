"""The audit trail's figures for /metrics, computed at scrape time from the database
(registered with apps.core.metrics by AuditConfig.ready; docs/metrics.md)."""

from __future__ import annotations

from collections.abc import Iterator

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from apps.audit.selectors import PENDING_COUNTED, chain_state


def collect_chain() -> Iterator[Metric]:
    state = chain_state()  # a few indexed reads; the backlog counted up to PENDING_COUNTED
    yield GaugeMetricFamily(
        "bulwark_audit_pending_events",
        f"Audit events waiting to be chained (counted up to {PENDING_COUNTED}).",
        value=state.pending,
    )
    yield GaugeMetricFamily(
        "bulwark_audit_unverified_events",
        "Chained audit events the scheduled verification has not reached yet.",
        value=state.unverified,
    )
    if state.checkpoint_at is not None:
        age = (timezone.now() - state.checkpoint_at).total_seconds()
        yield GaugeMetricFamily(
            "bulwark_audit_checkpoint_age_seconds",
            "Seconds since the last signed checkpoint (absent before the first).",
            value=max(age, 0.0),
        )
