"""Request signing exactly as Bulwark verifies it (docs/api.md "Request signing",
apps/apikeys/signatures.py on the server):

    X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=<hex>...]

over the bytes `<t>.<METHOD>.<path with query, exactly as sent>.<hex SHA-256 of the raw body>`,
keyed by the UTF-8 bytes of the key's signing secret. Several secrets give several `v1` values
(while a secret is being rotated); the server accepts the request when one matches. The server
accepts a given `(key, t, v1)` once: a resent request needs a new signature.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

MAX_SIGNATURES = 5  # the server reads at most five v1 values


def signing_message(timestamp: int | str, method: str, path: str, body: bytes) -> bytes:
    return f"{timestamp}.{method.upper()}.{path}.{hashlib.sha256(body).hexdigest()}".encode()


def signature(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(
    secrets: str | Sequence[str],
    method: str,
    path: str,
    body: bytes,
    *,
    timestamp: int | None = None,
) -> str:
    """The X-Signature value for a request. `path` is the request target as it goes on the wire
    (path and query, percent-escapes as sent); `timestamp` defaults to now."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    if not 1 <= len(keys) <= MAX_SIGNATURES:
        raise ValueError(f"sign with 1 to {MAX_SIGNATURES} secrets")
    t = int(time.time()) if timestamp is None else int(timestamp)
    message = signing_message(t, method, path, body)
    return ",".join([f"t={t}", *(f"v1={signature(key, message)}" for key in keys)])
