"""Streaming exports (JSONL with a signed manifest, CSV) and their offline verification.

The manifest signs the SHA-256 of every event line, so any changed, removed, reordered or
added line is caught by someone who holds only our public key.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from apps.audit.keys import KeyRun
from apps.audit.models import LEGACY_KEY_ID, AuditEvent
from apps.audit.signing import sign, signature_valid

BATCH = 2000
CSV_COLUMNS = (
    "seq", "ts", "action", "outcome", "actor_type", "actor_ref", "target_type", "target_id",
    "request_id", "ip", "details", "prev_hash", "hash", "hmac_key_id",
)  # fmt: skip
KEY_ID = re.compile(r"^[0-9a-f]{16}$")


def _rows(
    since: datetime | None, until: datetime | None, last_seq: int
) -> Iterator[tuple[int, str, str, str]]:
    """Events up to `last_seq` (a snapshot taken when the export began), in keyset batches."""
    events = AuditEvent.objects.filter(seq__lte=last_seq)
    if since is not None:
        events = events.filter(ts__gte=since)
    if until is not None:
        events = events.filter(ts__lt=until)
    after = 0
    while True:
        batch = list(
            events.filter(seq__gt=after)
            .order_by("seq")
            .values_list("seq", "body", "prev_hash", "hash")[:BATCH]
        )
        yield from batch
        if len(batch) < BATCH:
            return
        after = batch[-1][0]


def event_line(body: str, prev_hash: str, digest: str) -> bytes:
    # The hashed body with its links appended: no parsing, so export runs at I/O speed.
    return f'{body[:-1]},"prev_hash":"{prev_hash}","hash":"{digest}"}}\n'.encode()


def manifest_statement(
    count: int,
    first_seq: int | None,
    last_seq: int | None,
    head: str | None,
    generated_at: str,
    sha256: str,
) -> dict[str, Any]:
    return {
        "count": count,
        "first_seq": first_seq,
        "last_seq": last_seq,
        "head": head,
        "generated_at": generated_at,
        "sha256": sha256,
    }


def export_jsonl(
    *, since: datetime | None, until: datetime | None, last_seq: int
) -> Iterator[bytes]:
    digest = hashlib.sha256()
    count, first_seq, seq, head = 0, None, None, None
    chunk: list[bytes] = []
    for seq, body, prev_hash, event_hash in _rows(since, until, last_seq):
        line = event_line(body, prev_hash, event_hash)
        digest.update(line)
        chunk.append(line)
        first_seq = seq if first_seq is None else first_seq
        head, count = event_hash, count + 1
        if len(chunk) >= BATCH:
            yield b"".join(chunk)
            chunk = []
    if chunk:
        yield b"".join(chunk)
    generated_at = datetime.now(UTC).isoformat(timespec="seconds")
    statement = manifest_statement(count, first_seq, seq, head, generated_at, digest.hexdigest())
    manifest = {**statement, "signature": sign(statement)}
    yield (json.dumps({"manifest": manifest}, separators=(",", ":")) + "\n").encode()


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # Spreadsheets run cells that start like a formula: neutralise them (CSV injection).
    return "'" + text if text[:1] in {"=", "+", "-", "@", "\t", "\r"} else text


def export_csv(*, since: datetime | None, until: datetime | None, last_seq: int) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for index, (_seq, body, prev_hash, event_hash) in enumerate(
        _rows(since, until, last_seq), start=1
    ):
        event = json.loads(body)
        details = json.dumps(event["details"], sort_keys=True, ensure_ascii=False)
        actor, target = event["actor"], event["target"]
        row = (
            event["seq"], event["ts"], event["action"], event["outcome"], actor["type"],
            actor["ref"], target["type"], target["id"], event["request_id"], event["ip"],
            details, prev_hash, event_hash, event.get("hmac_key_id", LEGACY_KEY_ID),
        )  # fmt: skip
        writer.writerow(_cell(value) for value in row)
        if index % BATCH == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


@dataclass(frozen=True)
class ExportCheck:
    ok: bool
    count: int
    reason: str | None = None
    line: int | None = None
    key_runs: tuple[KeyRun, ...] = ()


def _runs(starts: list[tuple[str, int]], last_seq: int | None) -> tuple[KeyRun, ...]:
    if not starts or last_seq is None:
        return ()
    ends = [first_seq - 1 for _, first_seq in starts[1:]] + [last_seq]
    return tuple(
        KeyRun(key_id, first_seq, end, legacy=key_id == LEGACY_KEY_ID)
        for (key_id, first_seq), end in zip(starts, ends, strict=True)
    )


def _key_order_problem(key_id: str, previous: str | None, seen: set[str]) -> str | None:
    """The order rules of apps/audit/keys.py that need no key: events without a key id come
    first, and a key that another followed never chains again. (The hashes themselves need
    the HMAC keys: `audit_verify` checks them in the database.)"""
    if key_id == LEGACY_KEY_ID and previous not in (None, LEGACY_KEY_ID):
        return "an event without an HMAC key id follows events that have one"
    if key_id in seen:
        return f"HMAC key {key_id} chains again after key {previous} took over"
    return None


def verify_export(lines: Iterable[bytes], public_key: Ed25519PublicKey) -> ExportCheck:
    """Check a JSONL export offline: links between lines, contiguous seqs, the order of HMAC
    keys, the manifest's counts and head, the SHA-256 of every event line, and the manifest's
    signature. Events chained under several HMAC keys verify alike: no HMAC key is needed."""
    reading = _Reading()
    for number, line in enumerate(lines, start=1):
        reading.number = number
        if (refusal := _read_line(reading, line)) is not None:
            return refusal
    return _check_manifest(reading, public_key)


@dataclass
class _Reading:
    """What verify_export has read so far."""

    number: int = 0  # the line being read (the last one once all are read)
    count: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    prev_hash: str | None = None
    head: str | None = None
    manifest: Any = None
    starts: list[tuple[str, int]] = field(default_factory=list)  # (key id, first seq) of each
    seen_keys: set[str] = field(default_factory=set)  # run of one key, and the keys seen
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)


def _refused(reading: _Reading, reason: str) -> ExportCheck:
    return ExportCheck(False, reading.count, reason, reading.number)


def _read_line(reading: _Reading, line: bytes) -> ExportCheck | None:
    """Keep the manifest or check and count an event; the refusal if the line fails."""
    if reading.manifest is not None:
        return _refused(reading, "a line follows the manifest")
    try:
        record = json.loads(line)
    except ValueError:
        return _refused(reading, "the line is not JSON")
    if not isinstance(record, dict):
        return _refused(reading, "the line is not a JSON object")
    if "manifest" in record:
        reading.manifest = record["manifest"]
        return None
    return _read_event(reading, line, record)


def _read_event(reading: _Reading, line: bytes, record: dict[str, Any]) -> ExportCheck | None:
    try:
        seq, event_prev, event_hash = (
            int(record["seq"]),
            str(record["prev_hash"]),
            str(record["hash"]),
        )
    except (KeyError, TypeError, ValueError):
        return _refused(reading, "the line is not an audit event")
    key_id = record.get("hmac_key_id", LEGACY_KEY_ID)
    if not isinstance(key_id, str) or not (key_id == LEGACY_KEY_ID or KEY_ID.match(key_id)):
        return _refused(reading, "the line's hmac_key_id is not a key id")
    if reading.last_seq is not None and seq != reading.last_seq + 1:
        return _refused(reading, f"seq {seq} follows seq {reading.last_seq}")
    if reading.prev_hash is not None and event_prev != reading.prev_hash:
        return _refused(reading, "prev_hash does not match the previous line's hash")
    if problem := _key_run_follow(reading, key_id, seq):
        runs = _runs(reading.starts, reading.last_seq)
        return ExportCheck(False, reading.count, problem, reading.number, runs)
    reading.digest.update(line if line.endswith(b"\n") else line + b"\n")
    reading.first_seq = seq if reading.first_seq is None else reading.first_seq
    reading.last_seq, reading.prev_hash, reading.head = seq, event_hash, event_hash
    reading.count += 1
    return None


def _key_run_follow(reading: _Reading, key_id: str, seq: int) -> str | None:
    """Start a run when the HMAC key changes; the order problem if it may not change so."""
    if not reading.starts or key_id != reading.starts[-1][0]:
        previous = reading.starts[-1][0] if reading.starts else None
        if problem := _key_order_problem(key_id, previous, reading.seen_keys):
            return problem
        reading.seen_keys.add(key_id)
        reading.starts.append((key_id, seq))
    return None


def _check_manifest(reading: _Reading, public_key: Ed25519PublicKey) -> ExportCheck:
    """The manifest against the lines read, then its signature."""
    manifest = reading.manifest
    if not isinstance(manifest, dict):
        cut_short = "the export has no manifest: it was cut short"
        return ExportCheck(False, reading.count, cut_short, reading.number or None)
    statement = manifest_statement(
        reading.count,
        reading.first_seq,
        reading.last_seq,
        reading.head,
        str(manifest.get("generated_at")),
        reading.digest.hexdigest(),
    )
    for name in ("count", "first_seq", "last_seq", "head", "sha256"):
        if manifest.get(name) != statement[name]:
            return _refused(reading, f"the manifest's {name} does not match the lines")
    if not signature_valid(statement, str(manifest.get("signature", "")), public_key):
        return _refused(reading, "the manifest's signature is not valid for this public key")
    return ExportCheck(True, reading.count, key_runs=_runs(reading.starts, reading.last_seq))
