"""Request signing (docs/api.md "Request signing") for keys with `require_signature`.

    X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=<hex>...]

over `<t>.<METHOD>.<path with query, as sent>.<hex SHA-256 of the raw body>`, keyed by the
UTF-8 bytes of the key's signing secret. Several `v1` values may be sent (secret rotation on
the client side); one match is enough. A matching `(key, t, v1)` is accepted once.

What a signature covers is handed over as a `SignedRequest`, read from the request by the
caller; `signature_refusal` says whether, and why, the request is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from rest_framework.exceptions import AuthenticationFailed

from apps.apikeys import records
from apps.apikeys.errors import (
    SignatureExpired,
    SignatureInvalid,
    SignatureReplayed,
    SignatureRequired,
)
from apps.apikeys.models import ApiKey
from apps.core.errors import ServiceUnavailable
from apps.core.sealing import SealError, unseal

logger = logging.getLogger("bulwark.apikeys")

SIGNING_PURPOSE = "apikey-signing"
MAX_SIGNATURES = 5  # v1 values per header: enough for rotation, bounded work per request
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_HEX_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def parse_signature_header(header: str) -> tuple[str, list[str]] | None:
    """(t as sent, v1 values lowercased), or None when malformed. Unknown schemes (v2=...)
    are ignored so that clients can send a future scheme alongside v1."""
    timestamp: str | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return None
        if name == "t":
            if timestamp is not None or not _TIMESTAMP.match(value):
                return None
            timestamp = value
        elif name == "v1":
            if not _HEX_SHA256.match(value):
                return None
            signatures.append(value.lower())
    if timestamp is None or not signatures or len(signatures) > MAX_SIGNATURES:
        return None
    return timestamp, signatures


def signing_message(timestamp: str, method: str, full_path: str, body: bytes) -> bytes:
    return f"{timestamp}.{method}.{full_path}.{hashlib.sha256(body).hexdigest()}".encode()


def sign(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def replay_window_seconds() -> int:
    # A signature is acceptable for 2 x tolerance (t - tol .. t + tol); remember it longer.
    return 2 * settings.SIGNATURE_TOLERANCE_SECONDS + 60


def sent_path(request: Any) -> str:
    """The path with query exactly as the client sent it (docs/api.md), escapes and all: gunicorn
    passes the raw request target as RAW_URI. Elsewhere (the test client, runserver) Django's
    re-escaped full path stands in."""
    raw = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")
    return raw if raw and raw.startswith("/") else request.get_full_path()


@dataclass(frozen=True)
class SignedRequest:
    """What a signature covers (docs/api.md "Request signing"), as the client sent it."""

    header: str | None  # X-Signature
    method: str
    path: str  # with query, exactly as sent (`sent_path`)
    # Read only for a key that requires signing: other calls never load their body here.
    body: Callable[[], bytes]

    @classmethod
    def of(cls, request: HttpRequest) -> SignedRequest:
        return cls(
            header=request.META.get("HTTP_X_SIGNATURE"),
            method=request.method or "",
            path=sent_path(request),
            body=lambda: request.body,
        )


def signature_refusal(
    signed: SignedRequest, api_key: ApiKey
) -> tuple[AuthenticationFailed, str] | None:
    """None when the request's signature is valid for `api_key` (or the key does not require
    signing), else the refusal and its reason: SignatureRequired, SignatureInvalid,
    SignatureExpired or SignatureReplayed (401). Raises ServiceUnavailable (503) when the
    signing secret cannot be opened (a master key is missing): an unverifiable request is
    refused, not waved through."""
    if not api_key.require_signature:
        return None
    if not signed.header:
        return SignatureRequired(), "missing"
    parsed = parse_signature_header(signed.header)
    if parsed is None:
        return SignatureInvalid(), "malformed"
    timestamp, signatures = parsed
    if abs(time.time() - int(timestamp)) > settings.SIGNATURE_TOLERANCE_SECONDS:
        return SignatureExpired(), "stale"
    try:
        secret = unseal(api_key.signing_secret_sealed, purpose=SIGNING_PURPOSE)
    except SealError:
        logger.error("signing secret cannot be opened", extra={"prefix": api_key.prefix})
        raise ServiceUnavailable("This key's signing secret cannot be read; retry later.") from None
    message = signing_message(timestamp, signed.method, signed.path, signed.body())
    expected = sign(secret, message)
    matched = None
    for candidate in signatures:  # every candidate compared, each in constant time
        if hmac.compare_digest(expected, candidate):
            matched = candidate
    if matched is None:
        return SignatureInvalid(), "mismatch"
    # Only valid signatures are remembered, so garbage cannot fill the cache.
    if not records.claim_once(f"sig:{api_key.pk}:{timestamp}:{matched}", replay_window_seconds()):
        return SignatureReplayed(), "replayed"
    return None
