"""The one way into the audit trail, and the jobs that keep it chained and signed."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.http import HttpRequest

from apps.audit.canonical import GENESIS_HASH, canonical_json, chain_hash, with_seq
from apps.audit.errors import AuditUnavailable
from apps.audit.models import ActorPseudonym, AuditEvent, Checkpoint, PendingEvent
from apps.audit.signing import sign
from apps.audit.subjects import actor_of, pseudonym_forget, target_of, truncated_ip
from apps.core.request_context import current_request_id
from apps.privacy.masking import Public, mask
from controlplane.secrets import get_secret

logger = logging.getLogger("bulwark.audit")

# The hot path of every audited request (predict included): one parameterised INSERT without
# the ORM's model instance, SQL compilation and RETURNING, which cost about as much again.
_INSERT_PENDING = f"INSERT INTO {PendingEvent._meta.db_table} (body) VALUES (%s)"  # noqa: S608
OUTCOMES = frozenset({"success", "failure", "denied"})
MAX_DETAILS_BYTES = 16 * 1024
# pg_advisory_xact_lock key for "the chain head": one chainer at a time, across all processes.
CHAIN_LOCK_KEY = 0x4255_4C57_4155_4454  # "BULWAUDT"


def inputs_digest(inputs: Any) -> dict[str, Any]:
    """What an event may keep of prediction inputs: their SHA-256 and row count, never them."""
    rows = len(inputs) if isinstance(inputs, list) else 1
    digest = hashlib.sha256(canonical_json(inputs).encode()).hexdigest()
    return {"sha256": digest, "rows": rows}


def _safe_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    def scrub(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                str(key): inputs_digest(item) if key == "inputs" else scrub(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [scrub(item) for item in value]
        return value

    masked = mask(scrub(dict(details or {})))
    text = canonical_json(masked)
    if len(text.encode()) > MAX_DETAILS_BYTES:
        return {"truncated": True, "sha256": hashlib.sha256(text.encode()).hexdigest()}
    return masked


def audit_event_record(
    action: str,
    *,
    actor: Any,
    target: Any = None,
    outcome: str = "success",
    details: Mapping[str, Any] | None = None,
    request: HttpRequest | None = None,
) -> None:
    """Record an event in the caller's transaction: it commits with the change or not at all.

    Details are masked (secrets, tokens, keys, passwords, card numbers, e-mail addresses) and
    any `inputs` are replaced by their digest. People are named by pseudonym, IPs truncated.
    Raises AuditUnavailable (503) when the event cannot be written; the caller's transaction
    then rolls back, so no change is ever committed without its event.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {outcome!r}")
    try:
        subject = actor_of(actor)
        event = {
            "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
            "action": action,
            "outcome": outcome,
            "actor": {"type": subject.type, "ref": subject.ref},
            "target": target_of(target),
            "request_id": getattr(request, "request_id", None) or current_request_id.get() or None,
            "ip": truncated_ip(request.META.get("REMOTE_ADDR")) if request is not None else None,
            "details": _safe_details(details),
        }
        with connection.cursor() as cursor:
            cursor.execute(_INSERT_PENDING, [canonical_json(event)])
    except DatabaseError as exc:
        logger.error(
            "audit event could not be written", extra={"action": action, "error": str(exc)}
        )
        raise AuditUnavailable() from exc
    if settings.AUDIT_CHAIN_INLINE:
        transaction.on_commit(_chain_after_commit)


def _chain_after_commit() -> None:
    # The event is already durable (pending); chaining it now is a convenience. If another
    # process is chaining, it will take this event too, and the scheduled job is the backstop.
    try:
        # One batch at most: a backlog is the scheduled job's, not this request's, to drain.
        audit_chain_pending(wait=False, max_batches=1)
    except DatabaseError as exc:
        logger.warning("audit chaining deferred", extra={"error": str(exc)})


def _lock_chain(*, wait: bool) -> bool:
    if connection.vendor == "postgresql":
        function = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {function}(%s)", [CHAIN_LOCK_KEY])
            row = cursor.fetchone()
        return wait or bool(row[0])
    # SQLite: transactions begin IMMEDIATE (see controlplane.env), which already serialises
    # writers across processes.
    return True


def chain_head() -> tuple[int, str]:
    head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    return head if head is not None else (0, GENESIS_HASH)


def audit_chain_pending(
    *, wait: bool = True, batch: int = 1000, max_batches: int | None = None
) -> int:
    """Give pending events their seq, prev_hash and hash, in batches, one chainer at a time.
    Returns how many were chained. With wait=False it returns 0 at once if another process
    holds the chain; max_batches bounds the work (None: until nothing is pending)."""
    key = get_secret("AUDIT_HMAC_KEY").encode()
    chained = 0
    while True:
        with transaction.atomic():
            if not _lock_chain(wait=wait):
                return chained
            seq, prev_hash = chain_head()
            pending = list(PendingEvent.objects.order_by("id").values_list("id", "body")[:batch])
            if not pending:
                return chained
            events = []
            for _, pending_body in pending:
                seq += 1
                body = with_seq(pending_body, seq)
                digest = chain_hash(key, prev_hash, body)
                events.append(_event_row(seq, body, prev_hash, digest))
                prev_hash = digest
            AuditEvent.objects.bulk_create(events)
            PendingEvent.objects.filter(id__in=[pending_id for pending_id, _ in pending]).delete()
        chained += len(pending)
        batches_left = None if max_batches is None else max_batches - 1
        if len(pending) < batch or batches_left == 0:
            return chained
        max_batches = batches_left


def _event_row(seq: int, body: str, prev_hash: str, digest: str) -> AuditEvent:
    event = json.loads(body)
    return AuditEvent(
        seq=seq,
        ts=datetime.fromisoformat(event["ts"]),
        action=event["action"],
        outcome=event["outcome"],
        actor_type=event["actor"]["type"],
        actor_ref=event["actor"]["ref"],
        body=body,
        prev_hash=prev_hash,
        hash=digest,
    )


def checkpoint_statement(seq: int, head: str, ts: str) -> dict[str, Any]:
    return {"seq": seq, "head": head, "ts": ts}


def checkpoint_create() -> Checkpoint | None:
    """Sign the current head (after chaining everything pending), keep it, and write it to the
    log stream so a copy lives outside the database. None while the chain is empty."""
    audit_chain_pending(wait=True)
    seq, head = chain_head()
    if seq == 0:
        return None
    existing = Checkpoint.objects.filter(seq=seq).first()
    if existing is not None:
        return existing
    ts = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        with transaction.atomic():  # a savepoint: a concurrent export may sign this head first
            checkpoint = Checkpoint.objects.create(
                seq=seq,
                head=head,
                ts=datetime.fromisoformat(ts),
                signature=sign(checkpoint_statement(seq, head, ts)),
            )
    except IntegrityError:
        return Checkpoint.objects.get(seq=seq)
    # Public: the signature is meant to be published; without the wrapper it would be masked.
    logger.info("audit checkpoint", extra={"checkpoint": Public(checkpoint_as_dict(checkpoint))})
    return checkpoint


def checkpoint_as_dict(checkpoint: Checkpoint) -> dict[str, Any]:
    """The published form, exactly what the signature covers plus the signature."""
    ts = checkpoint.ts.astimezone(UTC).isoformat(timespec="seconds")
    return {
        **checkpoint_statement(checkpoint.seq, checkpoint.head, ts),
        "signature": checkpoint.signature,
    }


def pseudonym_erase(*, user_id: Any) -> bool:
    """GDPR erasure, audit side: delete the only link from a pseudonym to the person. The
    events keep the pseudonym; nothing leads back from it any more. Returns whether a link
    existed."""
    deleted, _ = ActorPseudonym.objects.filter(user_id=user_id).delete()
    pseudonym_forget(user_id)
    return deleted > 0
