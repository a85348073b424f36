"""Checking the chain: every seq present, every link intact, every hash the HMAC of its body,
every filter column equal to the body; and that the chain extends a checkpoint kept earlier."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection

from apps.audit.canonical import GENESIS_HASH
from apps.audit.models import AuditEvent
from apps.audit.services import audit_chain_pending, checkpoint_statement
from apps.audit.signing import load_public_key, public_key_pem, signature_valid
from controlplane.secrets import get_secret

BATCH = 5000


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    head: str
    last_seq: int
    first_bad_seq: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.ok:
            return {"ok": True, "checked": self.checked, "head": self.head}
        return {"ok": False, "first_bad_seq": self.first_bad_seq, "reason": self.reason}


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)
_COLUMNS = "seq, {ts}, action, outcome, actor_type, actor_ref, body, prev_hash, hash"
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


def _column_mismatch(row: tuple[Any, ...], event: dict[str, Any]) -> str | None:
    seq, ts, action, outcome, actor_type, actor_ref = row[:6]
    if event.get("seq") != seq:
        return "the body's seq differs from the row's"
    expected = (action, outcome, actor_type, actor_ref)
    actual = (event["action"], event["outcome"], event["actor"]["type"], event["actor"]["ref"])
    if expected != actual:
        return "a filter column differs from the hashed body"
    if _micros(datetime.fromisoformat(event["ts"])) != _micros(ts):
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


def audit_chain_verify(
    *, after_seq: int = 0, after_hash: str = GENESIS_HASH, chain_first: bool = True
) -> VerifyResult:
    """Verify events with seq > after_seq, whose predecessor's hash is after_hash (the genesis
    hash for a full verification). Memory stays flat: rows are read in keyset batches."""
    if chain_first:
        audit_chain_pending(wait=True)
    keyed = hmac.new(get_secret("AUDIT_HMAC_KEY").encode(), digestmod=hashlib.sha256)
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
                # Same bytes as canonical.chain_hash, from a keyed object copied per row.
                digest = keyed.copy()
                digest.update(prev_hash.encode("ascii") + body.encode("utf-8"))
                if not hmac.compare_digest(digest.hexdigest(), stored_hash):
                    problem = "hash does not match the event's content"
                else:
                    problem = _column_mismatch(row, json.loads(body))
            if problem is not None:
                return VerifyResult(False, checked, prev_hash, expected_seq - 1, seq, problem)
            prev_hash, expected_seq, checked = stored_hash, expected_seq + 1, checked + 1
    return VerifyResult(True, checked, prev_hash, expected_seq - 1)


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
