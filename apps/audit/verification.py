"""Checking the chain: every seq present, every link intact, every hash the HMAC of its body
under the key the event names, keys following each other without going back, every filter
column equal to the body; and that the chain extends a checkpoint kept earlier."""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection

from apps.audit.canonical import GENESIS_HASH
from apps.audit.keys import (
    AuditHmacKeys,
    KeyRun,
    audit_hmac_keys,
    key_chained_before,
    key_that_chained,
    keyed_hmac,
    legacy_key_id,
)
from apps.audit.models import LEGACY_KEY_ID, AuditEvent
from apps.audit.services import audit_chain_pending, checkpoint_statement
from apps.audit.signing import load_public_key, public_key_pem, signature_valid

BATCH = 5000


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    head: str
    last_seq: int
    first_bad_seq: int | None = None
    reason: str | None = None
    key_runs: tuple[KeyRun, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        if self.ok:
            return {"ok": True, "checked": self.checked, "head": self.head}
        return {"ok": False, "first_bad_seq": self.first_bad_seq, "reason": self.reason}


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)
_COLUMNS = "seq, {ts}, action, outcome, actor_type, actor_ref, body, prev_hash, hash, hmac_key_id"
# PostgreSQL hands ts over as exact epoch microseconds (numeric since 14): loading it as a
# timezone-aware datetime costs more than the HMAC, in Django's pure-Python converter.
_TS_AS_MICROS = {"postgresql": "(extract(epoch FROM ts) * 1000000)::bigint"}


def _micros(value: datetime | int | str) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):  # SQLite's text timestamps
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // ONE_MICROSECOND


# The C scanner behind json.loads, without its wrapper's two whitespace regexes per call:
# bodies are canonical JSON (no surrounding whitespace), and one that is not a single JSON
# value from its first character to its last is refused as such.
_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # not in typeshed


def _column_mismatch(row: tuple[Any, ...], body: str) -> str | None:
    seq, ts, action, outcome, actor_type, actor_ref = row[:6]
    try:
        event, end = _scan_json(body, 0)
    except (StopIteration, ValueError):
        end = -1
    if end != len(body) or not isinstance(event, dict):
        return "the hashed body is not one JSON object"
    if event.get("seq") != seq:
        return "the body's seq differs from the row's"
    if event.get("hmac_key_id", LEGACY_KEY_ID) != row[9]:
        return "the hmac_key_id column differs from the hashed body"
    expected = (action, outcome, actor_type, actor_ref)
    actual = (event["action"], event["outcome"], event["actor"]["type"], event["actor"]["ref"])
    if expected != actual:
        return "a filter column differs from the hashed body"
    stamped = datetime.fromisoformat(event["ts"])
    if stamped.tzinfo is None:
        stamped = stamped.replace(tzinfo=UTC)
    if (stamped - EPOCH) // ONE_MICROSECOND != (ts if type(ts) is int else _micros(ts)):
        return "the ts column differs from the hashed body"
    return None


def _batches(after_seq: int) -> Iterator[list[tuple[Any, ...]]]:
    """Rows with seq > after_seq in keyset batches, straight from a cursor (no model objects)."""
    table = AuditEvent._meta.db_table
    ts = _TS_AS_MICROS.get(connection.vendor, "ts")
    sql = f"SELECT {_COLUMNS.format(ts=ts)} FROM {table} WHERE seq > %s ORDER BY seq LIMIT %s"  # noqa: S608  # fixed names
    while True:
        with connection.cursor() as cursor:
            cursor.execute(sql, [after_seq, BATCH])
            rows = cursor.fetchall()
        yield rows
        if len(rows) < BATCH:
            return
        after_seq = rows[-1][0]


class _Keys:
    """Which key verifies each event, and the rules on how keys follow each other. One object
    per verification; `for_event` is asked in seq order, for the first event and wherever
    the key id column changes."""

    def __init__(self, keys: AuditHmacKeys, after_seq: int) -> None:
        self.keys = keys
        self.refreshed = False
        self.macs = {key_id: keyed_hmac(key) for key_id, key in keys.by_id.items()}
        self.legacy_id: str | None = None  # the legacy events' key, once found
        # The previous event's hmac_key_id column and the id of the key that chained it.
        self.previous_column: str | None = None
        self.previous_id: str | None = None
        self.current_mac: hmac.HMAC | None = None
        self.starts: list[KeyRun] = []  # where each run begins (its last_seq is filled later)
        if after_seq > 0:
            column = (
                AuditEvent.objects.filter(seq=after_seq).values_list("hmac_key_id", flat=True)
            ).first()
            if column is not None:
                self.previous_column = column
                self.previous_id = column or legacy_key_id(keys)

    def _refresh(self) -> None:
        # An id not configured here may be a rotation other processes picked up before this
        # one's secrets cache expired: ask the backend once before calling the chain broken.
        if not self.refreshed:
            self.refreshed = True
            self.keys = audit_hmac_keys(fresh=True)
            self.macs = {key_id: keyed_hmac(key) for key_id, key in self.keys.by_id.items()}

    def for_event(
        self, seq: int, column: str, prev_hash: str, body: str, digest: str
    ) -> tuple[hmac.HMAC | None, str | None]:
        """(the keyed HMAC to check the event with, None) or (None, why it is refused).
        The caller may skip asking again while the events' key id column stays the same."""
        if column == self.previous_column and self.current_mac is not None:
            return self.current_mac, None
        if column == LEGACY_KEY_ID:
            if self.previous_column not in (None, LEGACY_KEY_ID):
                return None, (
                    "the event has no HMAC key id but follows events that have one: only "
                    "events chained before key ids existed lack one, and they come first"
                )
            if self.legacy_id is None:
                self.legacy_id = key_that_chained(self.keys, prev_hash, body, digest)
                if self.legacy_id is None:
                    self._refresh()
                    self.legacy_id = key_that_chained(self.keys, prev_hash, body, digest)
                if self.legacy_id is None:
                    return None, (
                        "hash does not match the event's content under any configured HMAC "
                        "key (it has no key id: it was chained before key ids existed)"
                    )
            key_id = self.legacy_id
        else:
            if column not in self.macs:
                self._refresh()
            if column not in self.macs:
                return None, (
                    f"the event names HMAC key {column}, which is neither AUDIT_HMAC_KEY nor in "
                    "AUDIT_HMAC_KEYS_RETIRED"
                )
            key_id = column
        if (
            self.previous_id is not None
            and key_id != self.previous_id
            and key_chained_before(key_id, seq=seq, keys=self.keys)
        ):
            return None, (
                f"HMAC key {key_id} chains again after key {self.previous_id} took over: a "
                "retired key never chains new events"
            )
        self.previous_column, self.previous_id = column, key_id
        self.current_mac = self.macs[key_id]
        self.starts.append(KeyRun(key_id, seq, seq, legacy=column == LEGACY_KEY_ID))
        return self.current_mac, None

    def runs(self, last_seq: int) -> tuple[KeyRun, ...]:
        """The runs of the events verified, up to `last_seq`."""
        if not self.starts:
            return ()
        ends = [start.first_seq - 1 for start in self.starts[1:]] + [last_seq]
        return tuple(
            KeyRun(start.key_id, start.first_seq, end, start.legacy)
            for start, end in zip(self.starts, ends, strict=True)
            if end >= start.first_seq
        )


def audit_chain_verify(
    *, after_seq: int = 0, after_hash: str = GENESIS_HASH, chain_first: bool = True
) -> VerifyResult:
    """Verify events with seq > after_seq, whose predecessor's hash is after_hash (the genesis
    hash for a full verification). Memory stays flat: rows are read in keyset batches. Each
    event is checked under the key it names (apps/audit/keys.py for the rules)."""
    if chain_first:
        audit_chain_pending(wait=True)
    keys = _Keys(audit_hmac_keys(), after_seq)
    # The previous event's key id column and keyed HMAC: most events share their
    # predecessor's key, and then nothing else is asked.
    same_column: str | None = None
    same_key: hmac.HMAC | None = None
    expected_seq, prev_hash, checked = after_seq + 1, after_hash, 0
    for rows in _batches(after_seq):
        for row in rows:
            seq, body, stored_prev, stored_hash = row[0], row[6], row[7], row[8]
            problem = None
            if seq != expected_seq:
                problem = f"seq {expected_seq} is missing (next present is {seq})"
                seq = expected_seq
            elif stored_prev != prev_hash:
                problem = "prev_hash does not match the previous event's hash"
            else:
                keyed: hmac.HMAC | None = same_key
                if row[9] != same_column or keyed is None:
                    keyed, problem = keys.for_event(seq, row[9], prev_hash, body, stored_hash)
                    same_column, same_key = row[9], keyed
                if keyed is not None:
                    # Same bytes as canonical.chain_hash, from a keyed object copied per row.
                    digest = keyed.copy()
                    digest.update(prev_hash.encode("ascii") + body.encode("utf-8"))
                    if not hmac.compare_digest(digest.hexdigest(), stored_hash):
                        problem = "hash does not match the event's content"
                    else:
                        problem = _column_mismatch(row, body)
            if problem is not None:
                last = expected_seq - 1
                return VerifyResult(False, checked, prev_hash, last, seq, problem, keys.runs(last))
            prev_hash, expected_seq, checked = stored_hash, expected_seq + 1, checked + 1
    last = expected_seq - 1
    return VerifyResult(True, checked, prev_hash, last, key_runs=keys.runs(last))


def verify_since_checkpoint(
    checkpoint: dict[str, Any], *, public_key_text: str | None = None
) -> VerifyResult:
    """Prove the current chain extends `checkpoint` ({seq, head, ts, signature}, as published):
    the signature is ours, the event at its seq still has its head hash (so nothing up to it
    was rewritten, and the chain was not cut below it), and everything is intact."""
    try:
        statement = checkpoint_statement(
            int(checkpoint["seq"]), str(checkpoint["head"]), str(checkpoint["ts"])
        )
        signature = str(checkpoint["signature"])
    except (KeyError, TypeError, ValueError):
        return VerifyResult(False, 0, "", 0, 0, "the checkpoint is not {seq, head, ts, signature}")
    public_key = load_public_key(public_key_text or public_key_pem())
    if not signature_valid(statement, signature, public_key):
        return VerifyResult(
            False, 0, "", 0, statement["seq"], "the checkpoint's signature is not valid"
        )
    full = audit_chain_verify()
    at_checkpoint = (
        AuditEvent.objects.filter(seq=statement["seq"]).values_list("hash", flat=True).first()
    )
    if at_checkpoint is None:
        return VerifyResult(
            False,
            full.checked,
            full.head,
            full.last_seq,
            full.last_seq + 1,
            f"the chain ends at seq {full.last_seq}, before the checkpoint's seq "
            f"{statement['seq']}: events were removed from its end",
        )
    if at_checkpoint != statement["head"]:
        return VerifyResult(
            False,
            full.checked,
            full.head,
            full.last_seq,
            statement["seq"],
            "the event at the checkpoint's seq has another hash: the chain was rewritten",
        )
    return full
