"""Celery entry point of the scheduled compliance checks (CELERY_BEAT_SCHEDULE
`compliance-checks`)."""

from __future__ import annotations

from celery import shared_task

from apps.compliance.services import compliance_checks_run


@shared_task(name="compliance.run_checks")
def compliance_check_run_task() -> dict[str, int]:
    results = compliance_checks_run(actor="compliance", trigger="schedule")
    return {
        "pass": sum(result.result == "pass" for result in results),
        "fail": sum(result.result == "fail" for result in results),
    }
