"""The exact bytes an event's hash covers, and the hash itself."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from apps.audit.models import GENESIS_HASH


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8, finite numbers only: the same value gives the same
    text on every machine, and `canonical_json(json.loads(text)) == text` for our own texts."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def chain_hash(key: bytes, prev_hash: str, body: str) -> str:
    """HMAC-SHA256(audit key, prev_hash ‖ canonical JSON of the event), hex. The key is the
    one whose id the event names (apps/audit/keys.py)."""
    return hmac.new(
        key, prev_hash.encode("ascii") + body.encode("utf-8"), hashlib.sha256
    ).hexdigest()


def with_seq(pending_body: str, seq: int, *, hmac_key_id: str) -> str:
    """The chained body: the recorded one with its sequence number and the id of the key that
    chains it added, so the hash covers both."""
    event = json.loads(pending_body)
    event["seq"] = seq
    event["hmac_key_id"] = hmac_key_id
    return canonical_json(event)


__all__ = ["GENESIS_HASH", "canonical_json", "chain_hash", "with_seq"]
