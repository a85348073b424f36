"""Entry points other apps call through settings (they never import this app):
WATERMARK_FAILURE_HANDLERS and AUDIT_CHAIN_BREAK_HANDLERS name these functions."""

from __future__ import annotations

from typing import Any

from apps.incidents.detectors import audit_chain_break_detect, watermark_failure_detect


def watermark_failed(*, result: Any) -> None:
    """`handler(result=WatermarkResult)`, called by apps.registry.watermarks in the
    transaction that records the failure: the incident commits with it or not at all."""
    watermark_failure_detect(result=result)


def audit_chain_broken(result: Any) -> None:
    """`handler(VerifyResult)`, called by the audit verification jobs on a break."""
    audit_chain_break_detect(result)
