from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from apps.audit.models import VerifiedHead
from apps.audit.services import audit_chain_pending, checkpoint_create
from apps.audit.verification import VerifyResult, audit_chain_verify

logger = logging.getLogger("bulwark.audit")


@shared_task(name="audit.chain_pending")
def audit_chain_pending_task() -> int:
    return audit_chain_pending(wait=True)


@shared_task(name="audit.checkpoint")
def audit_checkpoint_task() -> int | None:
    checkpoint = checkpoint_create()
    return checkpoint.seq if checkpoint else None


def _report_break(result: VerifyResult) -> None:
    logger.critical(
        "audit chain verification failed",
        extra={"first_bad_seq": result.first_bad_seq, "reason": result.reason},
    )
    for path in settings.AUDIT_CHAIN_BREAK_HANDLERS:
        import_string(path)(result)


@shared_task(name="audit.verify_new")
def audit_verify_new_task() -> dict[str, object]:
    """Verify only what was appended since the last run (the full pass runs daily)."""
    state, _ = VerifiedHead.objects.get_or_create(id=1)
    result = audit_chain_verify(after_seq=state.seq, after_hash=state.hash)
    if result.ok:
        VerifiedHead.objects.filter(id=1).update(
            seq=result.last_seq, hash=result.head, verified_at=timezone.now()
        )
    else:
        _report_break(result)
    return result.as_dict()


@shared_task(name="audit.verify_all")
def audit_verify_all_task() -> dict[str, object]:
    result = audit_chain_verify()
    if not result.ok:
        _report_break(result)
    return result.as_dict()
