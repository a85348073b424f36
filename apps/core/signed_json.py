"""JSON records with an HMAC, for what we keep in Redis and read back on the hot path
(authentication records). Never pickles: a pickle from Redis would be code from whoever can
write to it; a record that fails its MAC is simply not believed."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any


def derive_key(secret: str | bytes, purpose: str) -> bytes:
    """A MAC key for one purpose, so one secret never keys two kinds of record."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(raw, f"bulwark:{purpose}".encode(), hashlib.sha256).digest()


def dumps_signed(payload: Any, key: bytes) -> str:
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest() + "." + body


def loads_signed(text: str, key: bytes) -> Any | None:
    """The payload, or None when the MAC does not verify."""
    mac, _, body = text.partition(".")
    expected = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, expected):
        return None
    return json.loads(body)
