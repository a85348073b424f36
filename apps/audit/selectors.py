"""Reads of the audit trail. Everything pending is chained first, so readers see it all."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connection
from django.db.models import Count, Q, QuerySet
from django.db.models.expressions import RawSQL

from apps.audit.canonical import GENESIS_HASH
from apps.audit.export import ExportCheck, export_csv, export_jsonl, verify_export
from apps.audit.keys import AuditHmacKeysInvalid, describe_key_runs
from apps.audit.models import ActorPseudonym, AuditEvent, Checkpoint, PendingEvent, VerifiedHead
from apps.audit.services import (
    audit_chain_pending,
    chain_head,
    checkpoint_as_dict,
    checkpoint_statement,
)
from apps.audit.signing import load_public_key, public_key_pem, signature_valid
from apps.audit.verification import audit_chain_verify
from apps.core.errors import NotFound
from apps.core.secrets import SecretsError


def event_list(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    action: str | None = None,
    actor: str | None = None,
    outcome: str | None = None,
) -> QuerySet[AuditEvent]:
    audit_chain_pending(wait=True)
    events = AuditEvent.objects.order_by("seq")
    if since is not None:
        events = events.filter(ts__gte=since)
    if until is not None:
        events = events.filter(ts__lt=until)
    if action:
        events = events.filter(action=action)
    if actor:
        events = events.filter(actor_ref=actor)
    if outcome:
        events = events.filter(outcome=outcome)
    return events


def event_as_dict(body: str, prev_hash: str, digest: str) -> dict[str, Any]:
    """The API form of an event: its hashed body, plus its links. Events chained before HMAC
    key ids existed show `hmac_key_id` null, so every event has the same fields."""
    return {"hmac_key_id": None, **json.loads(body), "prev_hash": prev_hash, "hash": digest}


def checkpoint_list() -> QuerySet[Checkpoint]:
    return Checkpoint.objects.order_by("-seq")


# --- The console's audit pages (issue 16): a page of events, one event, the checkpoints, a
# bounded verification, exports and their offline check. Every read is bounded (a LIMIT or a
# keyset range) and served by an index, with a million events or more.

# An event's target id and request id live only in its body. Bodies are canonical JSON (keys
# sorted, no spaces), so the top-level target is the last `,"target":{"id":"` (only `ts`
# follows it) and the request id the last `,"request_id":"` (`seq` follows it). These
# expressions, indexed by migration 0004, read them with string functions that cannot fail on
# any text (a JSON cast would refuse a body holding \u0000, and stop the chainer), and bounded
# to 200 characters (a btree entry has a size limit). Each filter also checks the exact
# fragment of the body, so the expression only narrows.
TARGET_ID_SQL = (
    """CASE WHEN strpos(body, ',"target":{"id":"') > 0 THEN left(split_part(split_part("""
    """body, ',"target":{"id":"', -1), '","type":', 1), 200) END"""
)
REQUEST_ID_SQL = (
    """CASE WHEN strpos(body, ',"request_id":"') > 0 THEN left(split_part(split_part("""
    """body, ',"request_id":"', -1), '","seq":', 1), 200) END"""
)
# SQLite (the embedded default) has no split_part; its small databases need no index.
_SQLITE_FIELDS = {
    TARGET_ID_SQL: "json_extract(body, '$.target.id')",
    REQUEST_ID_SQL: "json_extract(body, '$.request_id')",
}
FILTER_VALUE_MAX = 200
logger = logging.getLogger("bulwark.audit")


def _chain_a_batch() -> None:
    """Chain one batch of pending events without waiting for another chainer, so a page shows
    what was just done. If that fails (keys unreadable, the database refusing), the events
    stay pending, durable, for the scheduled job, and the page reads what is chained."""
    try:
        audit_chain_pending(wait=False, max_batches=1)
    except (DatabaseError, SecretsError, AuditHmacKeysInvalid) as exc:
        logger.warning("audit chaining deferred", extra={"error": str(exc)})


@dataclass(frozen=True, slots=True)
class EventFilters:
    """The console's filters: each is an index range or an index lookup (see event_page)."""

    since: datetime | None = None
    until: datetime | None = None
    action: str = ""
    outcome: str = ""
    actor: str = ""
    target: str = ""
    target_type: str = ""
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class EventPage:
    """Events newest first, and the cursors of the pages around them (None: no such page)."""

    events: list[dict[str, Any]]
    newer: int | None
    older: int | None


def _body_field(sql: str) -> RawSQL:
    sql = _SQLITE_FIELDS[sql] if connection.vendor == "sqlite" else sql
    return RawSQL(sql, ())  # noqa: S611  # this module's fixed SQL; values are parameters


def _json_text(value: str) -> str:
    """`value` as canonical JSON writes it (quotes included)."""
    return json.dumps(value, ensure_ascii=False)


def _filtered(filters: EventFilters) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.all()
    if filters.since is not None:
        events = events.filter(ts__gte=filters.since)
    if filters.until is not None:
        events = events.filter(ts__lt=filters.until)
    if filters.action:
        events = events.filter(action=filters.action)
    if filters.outcome:
        events = events.filter(outcome=filters.outcome)  # partial index: outcome <> success
    if filters.actor:
        events = events.filter(actor_ref=filters.actor)
    if filters.target:
        fragment = f',"target":{{"id":{_json_text(filters.target)},"type":'
        if filters.target_type:
            fragment += f'{_json_text(filters.target_type)}}},"ts":'
        events = events.alias(target_id=_body_field(TARGET_ID_SQL)).filter(
            target_id=filters.target, body__contains=fragment
        )
    if filters.request_id:
        fragment = f',"request_id":{_json_text(filters.request_id)},"seq":'
        events = events.alias(request_id=_body_field(REQUEST_ID_SQL)).filter(
            request_id=filters.request_id, body__contains=fragment
        )
    return events


def _rows(events: QuerySet[AuditEvent]) -> list[dict[str, Any]]:
    return [
        event_as_dict(body, prev_hash, digest)
        for body, prev_hash, digest in events.values_list("body", "prev_hash", "hash")
    ]


def event_page(
    filters: EventFilters,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = 50,
) -> EventPage:
    """A page of events, newest first: by time, then seq (the ts index serves both the order
    and a time range; seq order would scan the whole chain for a range in the past). `before`
    and `after` are the seq of the event the page continues from (older, or newer). No count
    is ever made. Raises NotFound for a cursor that names no event. Chains a batch of pending
    events first (without waiting for another chainer), so a page shows what was just done."""
    _chain_a_batch()
    events = _filtered(filters)
    cursor = before if before is not None else after
    if cursor is None:
        rows = _rows(events.order_by("-ts", "-seq")[: limit + 1])
        newer_exist = False
    else:
        mark = AuditEvent.objects.filter(seq=cursor).values_list("ts", flat=True).first()
        if mark is None:
            raise NotFound(f"No audit event #{cursor} to page from.")
        older = events.filter(ts__lte=mark).filter(Q(ts__lt=mark) | Q(seq__lt=cursor))
        newer = events.filter(ts__gte=mark).filter(Q(ts__gt=mark) | Q(seq__gt=cursor))
        if before is not None:
            rows = _rows(older.order_by("-ts", "-seq")[: limit + 1])
            newer_exist = True
        else:
            rows = list(reversed(_rows(newer.order_by("ts", "seq")[: limit + 1])))
            if len(rows) > limit:  # more newer than one page: drop the newest, keep the rest
                return EventPage(rows[1:], rows[1]["seq"], rows[-1]["seq"])
            return EventPage(rows, None, rows[-1]["seq"] if rows else None)
    more = len(rows) > limit
    rows = rows[:limit]
    return EventPage(
        rows,
        rows[0]["seq"] if rows and newer_exist else None,
        rows[-1]["seq"] if rows and more else None,
    )


@dataclass(frozen=True, slots=True)
class EventDetail:
    """One event, whether its neighbours in the chain exist, and the first checkpoint that
    signs a head at or after it (None: none yet)."""

    event: dict[str, Any]
    previous_seq: int | None
    next_seq: int | None
    checkpoint: dict[str, Any] | None


def event_detail(seq: int) -> EventDetail | None:
    """The event `seq` and its links (four primary-key reads), or None."""
    _chain_a_batch()
    row = AuditEvent.objects.filter(seq=seq).values_list("body", "prev_hash", "hash").first()
    if row is None:
        return None
    seqs = set(AuditEvent.objects.filter(seq__in=[seq - 1, seq + 1]).values_list("seq", flat=True))
    covering = Checkpoint.objects.filter(seq__gte=seq).order_by("seq").first()
    return EventDetail(
        event=event_as_dict(*row),
        previous_seq=seq - 1 if seq - 1 in seqs else None,
        next_seq=seq + 1 if seq + 1 in seqs else None,
        checkpoint=checkpoint_as_dict(covering) if covering is not None else None,
    )


def checkpoint_page(
    *, before: int | None = None, limit: int = 20
) -> tuple[list[dict[str, Any]], int | None]:
    """Signed checkpoints newest first, from the one before seq `before`, and the cursor of
    the next (older) page."""
    checkpoints = Checkpoint.objects.order_by("-seq")
    if before is not None:
        checkpoints = checkpoints.filter(seq__lt=before)
    page = list(checkpoints[: limit + 1])
    older = page[limit - 1].seq if len(page) > limit else None
    return [checkpoint_as_dict(checkpoint) for checkpoint in page[:limit]], older


@dataclass(frozen=True, slots=True)
class ChainOverview:
    """Where the chain stands: its head, the backlog waiting to be chained (counted up to a
    bound), how far the scheduled verification got, and the last signed checkpoint."""

    head_seq: int
    head_hash: str
    pending: int
    pending_more: bool
    verified_seq: int
    verified_at: datetime | None
    checkpoint: dict[str, Any] | None
    checkpoint_at: datetime | None


PENDING_COUNT_BOUND = 10_000


def chain_overview() -> ChainOverview:
    """Index reads only: the head, at most PENDING_COUNT_BOUND + 1 pending ids, one row each
    of the verified head and the newest checkpoint."""
    head_seq, head_hash = chain_head()
    pending = PendingEvent.objects.values_list("id", flat=True)[: PENDING_COUNT_BOUND + 1].count()
    verified = VerifiedHead.objects.filter(pk=1).values_list("seq", "verified_at").first()
    newest = Checkpoint.objects.order_by("-seq").first()
    return ChainOverview(
        head_seq=head_seq,
        head_hash=head_hash,
        pending=min(pending, PENDING_COUNT_BOUND),
        pending_more=pending > PENDING_COUNT_BOUND,
        verified_seq=verified[0] if verified else 0,
        verified_at=verified[1] if verified else None,
        checkpoint=checkpoint_as_dict(newest) if newest is not None else None,
        checkpoint_at=newest.created_at if newest is not None else None,
    )


@dataclass(frozen=True, slots=True)
class RecentCheck:
    """A bounded verification of the chain's newest events. `ran`: False when more events
    wait than one run checks (then nothing was checked and `reason` says what to run)."""

    ran: bool
    ok: bool
    after_seq: int
    after: str  # what the run starts from: "genesis", "verified head" or "checkpoint"
    checked: int = 0
    last_seq: int = 0
    first_bad_seq: int | None = None
    reason: str | None = None
    key_runs: str = ""


VERIFY_RECENT_MAX = 100_000


def chain_verify_recent(*, max_events: int = VERIFY_RECENT_MAX) -> RecentCheck:
    """Verify the events appended since the scheduled verification's head (VerifiedHead), or,
    when more than `max_events` wait, since the newest signed checkpoint if that leaves at
    most `max_events`: its signature is checked, and the event at its seq must still have
    its head hash. Each start is itself checked against the chain: an event removed from
    below it or rewritten at it is a failure, not an empty success. Nothing is written (the
    scheduled job keeps VerifiedHead); `audit_verify` checks the whole chain."""
    _chain_a_batch()
    try:
        return _verify_recent(max_events)
    except (SecretsError, AuditHmacKeysInvalid) as exc:
        logger.error("audit verification could not run", extra={"error": str(exc)})
        return RecentCheck(
            False, False, 0, "verified head",
            reason="The audit HMAC keys cannot be read now, so nothing was verified; the "
            "scheduled verification will run once they can.",
        )  # fmt: skip


def _verify_recent(max_events: int) -> RecentCheck:
    head_seq, _ = chain_head()
    verified = VerifiedHead.objects.filter(pk=1).values_list("seq", "hash").first()
    start_seq, start_hash = verified or (0, GENESIS_HASH)
    after = "verified head" if start_seq else "genesis"
    if head_seq - start_seq > max_events:
        newest = Checkpoint.objects.order_by("-seq").first()
        if newest is None or head_seq - newest.seq > max_events:
            return RecentCheck(
                False,
                False,
                start_seq,
                after,
                reason=(
                    f"{head_seq - start_seq:,} events wait for verification, more than a page "
                    f"checks at once ({max_events:,}): the scheduled job audit.verify_new does "
                    "it, or run `python manage.py audit_verify`."
                ),
            )
        statement = checkpoint_statement(newest.seq, newest.head, checkpoint_as_dict(newest)["ts"])
        if not signature_valid(statement, newest.signature, load_public_key(public_key_pem())):
            return RecentCheck(
                True, False, newest.seq, "checkpoint", first_bad_seq=newest.seq,
                reason=f"checkpoint #{newest.seq}'s signature is not valid",
            )  # fmt: skip
        start_seq, start_hash, after = newest.seq, newest.head, "checkpoint"
    if start_seq:
        at_start = AuditEvent.objects.filter(seq=start_seq).values_list("hash", flat=True).first()
        if at_start is None:
            return RecentCheck(
                True, False, start_seq, after, first_bad_seq=head_seq + 1,
                reason=f"the chain ends at seq {head_seq}, before the {after} at seq "
                f"{start_seq}: events were removed from its end",
            )  # fmt: skip
        if not hmac.compare_digest(at_start, start_hash):
            return RecentCheck(
                True, False, start_seq, after, first_bad_seq=start_seq,
                reason=f"the event at seq {start_seq} no longer has the hash the {after} "
                "recorded: the chain was rewritten",
            )  # fmt: skip
    result = audit_chain_verify(after_seq=start_seq, after_hash=start_hash, chain_first=False)
    return RecentCheck(
        True,
        result.ok,
        start_seq,
        after,
        checked=result.checked,
        last_seq=result.last_seq,
        first_bad_seq=result.first_bad_seq,
        reason=result.reason,
        key_runs=describe_key_runs(result.key_runs),
    )


def export_stream(
    *, export_format: str, since: datetime | None, until: datetime | None, last_seq: int
) -> Iterator[bytes]:
    """The export's bytes, streamed (`jsonl` ends with the signed manifest, or `csv`), of the
    events up to `last_seq` (from audit_export_begin), as the API's export writes them."""
    if export_format == "csv":
        return export_csv(since=since, until=until, last_seq=last_seq)
    return export_jsonl(since=since, until=until, last_seq=last_seq)


def public_key() -> str:
    """The PEM of the Ed25519 key that signs checkpoints and export manifests."""
    return public_key_pem()


def export_check(lines: Iterable[bytes]) -> tuple[ExportCheck, str]:
    """Check a JSONL export with this deployment's public key: the offline verifier that
    `manage.py audit_verify_export` runs. Returns the result and which HMAC key chained
    which events."""
    result = verify_export(lines, load_public_key(public_key_pem()))
    return result, describe_key_runs(result.key_runs)


def pseudonym_usernames(pseudonyms: Iterable[str]) -> dict[str, str]:
    """Usernames behind those pseudonyms that still map to a person (an erased person's maps
    to nobody)."""
    rows = ActorPseudonym.objects.filter(pseudonym__in=set(pseudonyms)).values_list(
        "pseudonym", "user__username"
    )
    return dict(rows)


def chained_events(
    *,
    actions: Iterable[str],
    after_seq: int | None = None,
    upto_seq: int | None = None,
    since: datetime | None = None,
) -> Iterator[tuple[int, datetime, str]]:
    """(seq, ts, body) of chained events with those actions, in order, streamed: for the
    detectors that read the trail."""
    events = AuditEvent.objects.filter(action__in=list(actions))
    if after_seq is not None:
        events = events.filter(seq__gt=after_seq)
    if upto_seq is not None:
        events = events.filter(seq__lte=upto_seq)
    if since is not None:
        events = events.filter(ts__gte=since)
    return events.order_by("seq").values_list("seq", "ts", "body").iterator(chunk_size=1000)


def events_since_count(*, since: datetime, excluding: Iterable[str] = ()) -> int:
    """How many chained events were recorded since `since`, leaving out those actions."""
    return AuditEvent.objects.filter(ts__gte=since).exclude(action__in=list(excluding)).count()


def subject_audit_events(pseudonym: str | None) -> Iterator[dict[str, Any]]:
    """Every event that names the pseudonym: as actor, as target, or in its details (a key's
    owner, an incident's assignee). The pseudonym is random (p_ and 20 hex digits), so its
    quoted form in the canonical body matches only where it names this person."""
    if pseudonym is None:
        return
    audit_chain_pending(wait=True)
    events = AuditEvent.objects.filter(
        Q(actor_ref=pseudonym) | Q(body__contains=f'"{pseudonym}"')
    ).order_by("seq")
    for body, prev_hash, digest in events.values_list("body", "prev_hash", "hash").iterator():
        yield event_as_dict(body, prev_hash, digest)


def pseudonym_of(user: Any) -> str | None:
    """The user's audit pseudonym, if one was ever made (reading never makes one)."""
    return (
        ActorPseudonym.objects.filter(user_id=user.pk).values_list("pseudonym", flat=True).first()
    )


@dataclass(frozen=True, slots=True)
class ChainState:
    """Where the chain stands, for a dashboard: read without chaining anything."""

    head_seq: int
    head_ts: datetime | None
    pending: int  # counted up to PENDING_COUNTED
    verified_seq: int
    verified_at: datetime | None
    checkpoint_seq: int | None
    checkpoint_at: datetime | None

    @property
    def unverified(self) -> int:
        return max(self.head_seq - self.verified_seq, 0)


# A backlog is counted up to this many events: counting a flood would take as long as it is.
PENDING_COUNTED = 100_000


def chain_state() -> ChainState:
    """The head (the primary key's last entry), the backlog waiting to be chained (up to
    PENDING_COUNTED), how far the scheduled verification got and the last signed checkpoint."""
    head = AuditEvent.objects.order_by("-seq").values_list("seq", "ts").first()
    verified = VerifiedHead.objects.filter(pk=1).values_list("seq", "verified_at").first()
    checkpoint = Checkpoint.objects.order_by("-seq").values_list("seq", "created_at").first()
    return ChainState(
        head_seq=head[0] if head else 0,
        head_ts=head[1] if head else None,
        pending=PendingEvent.objects.order_by()[:PENDING_COUNTED].count(),
        verified_seq=verified[0] if verified else 0,
        verified_at=verified[1] if verified else None,
        checkpoint_seq=checkpoint[0] if checkpoint else None,
        checkpoint_at=checkpoint[1] if checkpoint else None,
    )


def event_counts_since(since: datetime, actions: Iterable[str]) -> dict[tuple[str, str], int]:
    """How many chained events of those actions, by (action, outcome), since `since` (a range
    of the ts index)."""
    rows = (
        AuditEvent.objects.filter(ts__gte=since, action__in=list(actions))
        .values_list("action", "outcome")
        .annotate(n=Count("seq"))
        .order_by()
    )
    return {(action, outcome): n for action, outcome, n in rows}


def event_details_since(since: datetime, action: str, *, limit: int) -> list[dict[str, Any]]:
    """The `details` of the latest `limit` events of `action` since `since`, newest first."""
    bodies = (
        AuditEvent.objects.filter(ts__gte=since, action=action)
        .order_by("-seq")
        .values_list("body", flat=True)[:limit]
    )
    return [json.loads(body).get("details") or {} for body in bodies]
