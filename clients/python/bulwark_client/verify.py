"""Offline verification of a JSONL audit export: a re-implementation of the server's
`manage.py audit_verify_export` (apps/audit/export.py `verify_export`) that needs neither the
server nor Django, only the `cryptography` package and the deployment's Ed25519 public key
(`GET /api/v1/audit/public-key`, or `bulwark audit public-key`).

It checks, line by line, what the server's verifier checks: every line is a JSON object;
sequence numbers follow each other without gaps; each event's `prev_hash` is the previous
line's `hash`; the order of the HMAC keys that chained the events (events without a key id
first; a key that another followed never chains again); nothing follows the manifest; then the
manifest's `count`, `first_seq`, `last_seq`, `head` and `sha256` (of every event line) against
the lines read, and its Ed25519 signature over the canonical JSON of those fields and
`generated_at`. A changed, removed, reordered or added line, a file cut short and a wrong
public key are all refused. (The events' own HMACs need the HMAC keys; the server checks those
with `audit_verify`.)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

LEGACY_KEY_ID = ""  # events chained before HMAC key ids existed carry none
KEY_ID = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class KeyRun:
    """Consecutive events chained under one HMAC key (`legacy`: chained before key ids)."""

    key_id: str
    first_seq: int
    last_seq: int
    legacy: bool = False


@dataclass(frozen=True)
class ExportCheck:
    ok: bool
    count: int
    reason: str | None = None
    line: int | None = None
    key_runs: tuple[KeyRun, ...] = ()


def canonical_json(value: Any) -> str:
    """The server's canonical JSON (apps/audit/canonical.py): sorted keys, no whitespace,
    UTF-8, finite numbers only."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; ValueError for anything else."""
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def signature_valid(
    statement: dict[str, Any], signature: str, public_key: Ed25519PublicKey
) -> bool:
    try:
        public_key.verify(bytes.fromhex(signature), canonical_json(statement).encode())
    except (InvalidSignature, ValueError):
        return False
    return True


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


def describe_key_runs(runs: tuple[KeyRun, ...]) -> str:
    """`seq 1-40 (chained before key ids); seq 41-60 under 9b1c…`, as the server prints it."""
    parts = []
    for run in runs:
        seqs = f"seq {run.first_seq}" + (f"-{run.last_seq}" if run.last_seq > run.first_seq else "")
        under = f" under {run.key_id}" if run.key_id else ""
        parts.append(f"{seqs}{under}" + (" (chained before key ids)" if run.legacy else ""))
    return "; ".join(parts)


@dataclass
class _Reading:
    number: int = 0  # the line being read (the last one once all are read)
    count: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    prev_hash: str | None = None
    head: str | None = None
    manifest: Any = None
    starts: list[tuple[str, int]] = field(default_factory=list)  # (key id, first seq) per run
    seen_keys: set[str] = field(default_factory=set)
    digest: Any = field(default_factory=hashlib.sha256)


def verify_export(lines: Iterable[bytes], public_key: Ed25519PublicKey) -> ExportCheck:
    """Check a JSONL export (its lines as bytes, e.g. a file opened "rb") offline."""
    reading = _Reading()
    for number, line in enumerate(lines, start=1):
        reading.number = number
        if (refusal := _read_line(reading, line)) is not None:
            return refusal
    return _check_manifest(reading, public_key)


def _runs(starts: list[tuple[str, int]], last_seq: int | None) -> tuple[KeyRun, ...]:
    if not starts or last_seq is None:
        return ()
    ends = [first_seq - 1 for _, first_seq in starts[1:]] + [last_seq]
    return tuple(
        KeyRun(key_id, first_seq, end, legacy=key_id == LEGACY_KEY_ID)
        for (key_id, first_seq), end in zip(starts, ends, strict=True)
    )


def _refused(reading: _Reading, reason: str) -> ExportCheck:
    return ExportCheck(False, reading.count, reason, reading.number)


def _read_line(reading: _Reading, line: bytes) -> ExportCheck | None:
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
    if not reading.starts or key_id != reading.starts[-1][0]:
        previous = reading.starts[-1][0] if reading.starts else None
        if key_id == LEGACY_KEY_ID and previous not in (None, LEGACY_KEY_ID):
            return "an event without an HMAC key id follows events that have one"
        if key_id in reading.seen_keys:
            return f"HMAC key {key_id} chains again after key {previous} took over"
        reading.seen_keys.add(key_id)
        reading.starts.append((key_id, seq))
    return None


def _check_manifest(reading: _Reading, public_key: Ed25519PublicKey) -> ExportCheck:
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
