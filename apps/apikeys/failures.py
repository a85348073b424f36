"""Refusals of API-key authentication: each is counted against the client's address (failed
authentication is limited per IP, docs/api.md) and recorded as an `apikey.rejected` audit event
(or, on a view that audits its own refusals, as that view's one event: predict.rejected).

A refusal changes nothing, so its event is written in a transaction of its own (autocommit),
and a failure to write it is logged but never turns the refusal into an acceptance.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from django.db import transaction

from apps.audit.services import audit_event_record
from apps.audit.subjects import Subject
from apps.core import ratelimit
from apps.core.auth_failures import failure_bucket, failure_limit

logger = logging.getLogger("bulwark.apikeys")

ANONYMOUS = Subject("user", "anonymous")
# Refusals where the credential itself was wrong ("failure"); the others are a right
# credential refused by policy ("denied").
_WRONG_CREDENTIAL = frozenset({"api_key_invalid", "signature_invalid", "signature_required"})


def refuse(
    request: Any,
    error: Exception,
    *,
    reason: str,
    api_key: Any = None,
    key_proven: bool = False,
) -> NoReturn:
    """Count the failure, record it, raise `error`. `key_proven`: the caller showed the key's
    secret, so the key itself is the actor; otherwise the caller is anonymous."""
    limit, window = failure_limit()
    ratelimit.hit(failure_bucket(request), limit=limit, window=window)
    code = getattr(error, "default_code", "api_key_invalid")
    http_request = getattr(request, "_request", request)
    actor = api_key if (key_proven and api_key is not None) else ANONYMOUS
    if getattr(http_request, "rejection_audited_by_view", False):
        # The view records the whole call's refusal as one event (predict.rejected).
        http_request.api_key_rejection = {"reason": reason, "actor": actor}
        raise error
    try:
        with transaction.atomic():
            audit_event_record(
                "apikey.rejected",
                actor=actor,
                target=api_key,
                outcome="failure" if code in _WRONG_CREDENTIAL else "denied",
                details={"code": code, "reason": reason},
            )
    except Exception:
        # Fail closed: the refusal stands even when it cannot be recorded.
        logger.exception("API key refusal could not be audited", extra={"code": code})
    raise error
