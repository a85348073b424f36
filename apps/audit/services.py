"""The one way into the audit trail, and the jobs that keep it chained and signed."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, IntegrityError, connection, transaction

from apps.audit import writer
from apps.audit.canonical import GENESIS_HASH, canonical_json, chain_hash, with_seq
from apps.audit.errors import AuditUnavailable
from apps.audit.keys import (
    AuditHmacKeys,
    AuditHmacKeysInvalid,
    audit_hmac_keys,
    key_chained_before,
    legacy_key_id,
)
from apps.audit.models import LEGACY_KEY_ID, ActorPseudonym, AuditEvent, Checkpoint, PendingEvent
from apps.audit.signing import sign
from apps.audit.subjects import Subject, actor_of, pseudonym_forget, target_of, truncated_ip
from apps.core.errors import InvalidInput, PermissionDenied
from apps.core.masking import Public, mask
from apps.core.permissions import may
from apps.core.request_context import current_client_ip, current_request_id
from apps.core.secrets import SecretsError

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


def _unmasked(digest: dict[str, Any]) -> dict[str, Any]:
    # A digest this service just computed holds no secret or personal datum, and masking
    # leaves hex digests unchanged anyway; a new one every call, it would miss masking's
    # cache of short values and cost a full scan (about 20 µs) on every predict.
    return {"sha256": Public(digest["sha256"]), "rows": digest["rows"]}


def _safe_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    def scrub(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                str(key): _unmasked(inputs_digest(item)) if key == "inputs" else scrub(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [scrub(item) for item in value]
        return value

    masked: dict[str, Any] = mask(scrub(dict(details or {})))
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
) -> None:
    """Record an event in the caller's transaction: it commits with the change or not at all.

    Details are masked (secrets, tokens, keys, passwords, card numbers, e-mail addresses) and
    any `inputs` are replaced by their digest. People are named by pseudonym, IPs truncated.
    Raises AuditUnavailable (503) when the event cannot be written; the caller's transaction
    then rolls back, so no change is ever committed without its event.
    """
    try:
        body = _event_body(action, actor=actor, target=target, outcome=outcome, details=details)
        with connection.cursor() as cursor:
            cursor.execute(_INSERT_PENDING, [body])
    except DatabaseError as exc:
        logger.error(
            "audit event could not be written", extra={"action": action, "error": str(exc)}
        )
        raise AuditUnavailable() from exc
    if settings.AUDIT_CHAIN_INLINE:
        transaction.on_commit(_chain_after_commit)


def audit_event_commit(
    action: str,
    *,
    actor: Any,
    target: Any = None,
    outcome: str = "success",
    details: Mapping[str, Any] | None = None,
) -> None:
    """Record an event that stands on its own (predict's, accepted or refused: no change
    commits with it) and return once it is durable. With AUDIT_WRITER_SOCKET it goes to the
    host's audit writer, which commits it together with other workers' events
    (apps.audit.writer); otherwise it is inserted here, in autocommit. AuditUnavailable (503)
    when it is not known to be committed: the caller must not answer 2xx then."""
    path = settings.AUDIT_WRITER_SOCKET
    if not path or connection.in_atomic_block:
        # In a transaction the event must commit with it (and tests' transactions roll back).
        audit_event_record(action, actor=actor, target=target, outcome=outcome, details=details)
        return
    body = _event_body(action, actor=actor, target=target, outcome=outcome, details=details)
    try:
        writer.client_for(path, settings.AUDIT_WRITER_TIMEOUT).commit(body)
    except writer.WriterUnavailable as exc:
        logger.error("audit writer did not commit", extra={"action": action, "error": str(exc)})
        raise AuditUnavailable() from None


def _event_body(
    action: str,
    *,
    actor: Any,
    target: Any,
    outcome: str,
    details: Mapping[str, Any] | None,
) -> str:
    """The event's canonical JSON, as it is stored pending its place in the chain."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {outcome!r}")
    subject = actor_of(actor)
    event = {
        "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
        "action": action,
        "outcome": outcome,
        "actor": {"type": subject.type, "ref": subject.ref},
        "target": target_of(target),
        # Of the request this runs in, if any (apps.core.request_context): no caller hands
        # the request down for it.
        "request_id": current_request_id.get() or None,
        "ip": truncated_ip(current_client_ip.get()),
        "details": _safe_details(details),
    }
    return canonical_json(event)


def _chain_after_commit() -> None:
    # The event is already durable (pending); chaining it now is a convenience. If another
    # process is chaining, it will take this event too, and the scheduled job is the backstop.
    try:
        # One batch at most: a backlog is the scheduled job's, not this request's, to drain.
        audit_chain_pending(wait=False, max_batches=1)
    except (DatabaseError, SecretsError, AuditHmacKeysInvalid) as exc:
        # Keys that cannot be read now (a vault outage, a malformed AUDIT_HMAC_KEYS_RETIRED)
        # must not fail a request whose change and event are already committed.
        logger.warning("audit chaining deferred", extra={"error": str(exc)})


def _lock_chain(*, wait: bool) -> bool:
    if connection.vendor == "postgresql":
        function = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {function}(%s)", [CHAIN_LOCK_KEY])
            row = cursor.fetchone()
        return wait or bool(row[0])
    # SQLite: transactions begin IMMEDIATE (see apps.core.env), which already serialises
    # writers across processes.
    return True


def chain_head() -> tuple[int, str]:
    head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    return head if head is not None else (0, GENESIS_HASH)


def _key_change_refused(keys: AuditHmacKeys, head_seq: int, head_key_id: str) -> str | None:
    """Why this process may not chain after the head, or None. Only a change of key is
    examined: the head's key must be one this process holds (else a newer key is in use and
    this process has not picked it up yet), and the current key must never have chained
    before (a retired key put back as current would break the chain for good)."""
    if head_seq == 0 or head_key_id == keys.current_id:
        return None
    if head_key_id == LEGACY_KEY_ID:
        legacy_id = legacy_key_id(keys)
        if legacy_id is None:
            return (
                "the events chained before key ids existed verify under no configured key: "
                "put the key that chained them in AUDIT_HMAC_KEYS_RETIRED"
            )
        if legacy_id == keys.current_id:
            return None
        head_key_id = legacy_id
    elif not keys.known(head_key_id):
        return (
            f"the last event was chained under HMAC key {head_key_id}, which this process does "
            "not hold: another process chains under a newer key; give every process the same "
            "AUDIT_HMAC_KEY and AUDIT_HMAC_KEYS_RETIRED"
        )
    if key_chained_before(keys.current_id, seq=head_seq + 1, keys=keys):
        return (
            f"AUDIT_HMAC_KEY (id {keys.current_id}) chained earlier events and key "
            f"{head_key_id} took over since: a retired key never chains again; put the newest "
            "key back, or make a new one with rotate_audit_hmac_key"
        )
    logger.info(
        "audit chain moves to a new HMAC key",
        extra={"from_key": head_key_id, "to_key": keys.current_id, "after_seq": head_seq},
    )
    return None


def audit_chain_pending(
    *, wait: bool = True, batch: int = 1000, max_batches: int | None = None
) -> int:
    """Give pending events their seq, prev_hash and hash, in batches, one chainer at a time,
    under the current AUDIT_HMAC_KEY (each event names its id). Returns how many were chained.
    With wait=False it returns 0 at once if another process holds the chain; max_batches
    bounds the work (None: until nothing is pending). Where a change of key is not allowed
    (`_key_change_refused`) nothing is chained and the events stay pending, durable, until
    the keys are put right; the reason is logged as an error."""
    keys = audit_hmac_keys()
    chained = 0
    while True:
        with transaction.atomic():
            if not _lock_chain(wait=wait):
                return chained
            head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash", "hmac_key_id")
            seq, prev_hash, head_key_id = head.first() or (0, GENESIS_HASH, LEGACY_KEY_ID)
            pending = list(PendingEvent.objects.order_by("id").values_list("id", "body")[:batch])
            if not pending:
                return chained
            refused = _key_change_refused(keys, seq, head_key_id)
            if refused is not None:
                logger.error("audit events left pending", extra={"reason": refused})
                return chained
            events = []
            for _, pending_body in pending:
                seq += 1
                body = with_seq(pending_body, seq, hmac_key_id=keys.current_id)
                digest = chain_hash(keys.current, prev_hash, body)
                events.append(_event_row(seq, body, prev_hash, digest, keys.current_id))
                prev_hash = digest
            AuditEvent.objects.bulk_create(events)
            PendingEvent.objects.filter(id__in=[pending_id for pending_id, _ in pending]).delete()
        chained += len(pending)
        batches_left = None if max_batches is None else max_batches - 1
        if len(pending) < batch or batches_left == 0:
            return chained
        max_batches = batches_left


def _event_row(seq: int, body: str, prev_hash: str, digest: str, key_id: str) -> AuditEvent:
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
        hmac_key_id=key_id,
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


# --- The console's audit pages (issue 16) ---------------------------------------------------

PSEUDONYM_SHAPE = re.compile(r"^p_[0-9a-f]{20}$")
# Who may learn which person is behind a pseudonym, and a person's pseudonym: those who read
# the trail and must follow a person through it (admins, security officers, auditors); each
# lookup is itself an event. Anyone else is refused, and the attempt recorded.
DEPSEUDONYMISE = "audit.identify"


@dataclass(frozen=True, slots=True)
class PseudonymLookup:
    """What a lookup found: the pseudonym and the username it maps to, as far as known.
    `known_user`: a username was asked for and such a user exists (with or without a
    pseudonym: a person gets one the first time they appear in the trail)."""

    pseudonym: str | None
    username: str | None
    known_user: bool = False

    @property
    def found(self) -> bool:
        return self.pseudonym is not None and self.username is not None


def pseudonym_lookup(
    *, actor: Any, username: str = "", pseudonym: str = "", via: str = "lookup"
) -> PseudonymLookup:
    """Which pseudonym a person has (`username`), or who is behind one (`pseudonym`): exactly
    one of them. Only for holders of audit.identify (admins, security officers, auditors);
    anyone else gets PermissionDenied (403), and the refused attempt is recorded too. Each
    lookup is the event `audit.pseudonym_lookup` {"direction", "found", "via"} whose target
    is the pseudonym when one is known: never the username, which would put personal data
    in the chain (an erasure deletes only the mapping). A pseudonym of the wrong shape is
    InvalidInput (400), not recorded. Reading never gives a person a pseudonym."""
    if bool(username) == bool(pseudonym):
        raise InvalidInput("Give either a username or a pseudonym.")
    if pseudonym and not PSEUDONYM_SHAPE.match(pseudonym):
        raise InvalidInput("A pseudonym is p_ followed by 20 hexadecimal digits.")
    direction = "username_to_pseudonym" if username else "pseudonym_to_username"
    if not may(actor, DEPSEUDONYMISE):
        with transaction.atomic():
            audit_event_record(
                "audit.pseudonym_lookup",
                actor=actor,
                outcome="denied",
                details={"direction": direction, "via": via},
            )
        raise PermissionDenied(
            "Only admins, security officers and auditors may learn who is behind a "
            "pseudonym, or a person's pseudonym (they hold audit.identify); each lookup is "
            "recorded in the audit trail."
        )
    if username:
        user_id = (
            get_user_model().objects.filter(username=username).values_list("pk", flat=True).first()
        )
        mapped = (
            ActorPseudonym.objects.filter(user_id=user_id)
            .values_list("pseudonym", flat=True)
            .first()
            if user_id is not None
            else None
        )
        result = PseudonymLookup(mapped, username if mapped else None, user_id is not None)
    else:
        name = (
            ActorPseudonym.objects.filter(pseudonym=pseudonym)
            .values_list("user__username", flat=True)
            .first()
        )
        result = PseudonymLookup(pseudonym, name, name is not None)
    with transaction.atomic():
        audit_event_record(
            "audit.pseudonym_lookup",
            actor=actor,
            target=Subject("user", result.pseudonym) if result.pseudonym else None,
            details={"direction": direction, "found": result.found, "via": via},
        )
    return result


def audit_export_begin(
    *, actor: Any, export_format: str, since: datetime | None, until: datetime | None
) -> int:
    """What the API's export does before it streams: record `audit.exported`, then sign a
    checkpoint of the head (which chains everything, this event included). Returns the seq
    the export stops at (0 for an empty chain): apps.audit.selectors.export_stream."""
    with transaction.atomic():
        audit_event_record(
            "audit.exported",
            actor=actor,
            details={
                "format": export_format,
                "since": since.isoformat() if since else None,
                "until": until.isoformat() if until else None,
            },
        )
    checkpoint = checkpoint_create()
    return checkpoint.seq if checkpoint is not None else 0
