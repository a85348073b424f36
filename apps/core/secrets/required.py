"""The secrets Bulwark needs: how each is checked and, in development, generated."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# Values that ship in examples and tutorials; a deployment that still has one is not keyed.
_PLACEHOLDERS = (
    "changeme",
    "change-me",
    "change_me",
    "replace-me",
    "example",
    "insecure",
    "default",
)
_MASTER_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def _check_random_text(value: str, *, minimum: int) -> str | None:
    if len(value) < minimum:
        return f"is shorter than {minimum} characters"
    lowered = value.lower()
    if any(placeholder in lowered for placeholder in _PLACEHOLDERS):
        return "is a placeholder value, not a secret"
    if len(set(value)) < 10:
        return "has too few distinct characters to be random"
    return None


def _check_django_secret_key(value: str) -> str | None:
    if value.startswith("django-insecure"):
        return "is Django's insecure development key"
    return _check_random_text(value, minimum=50)


def _check_signing_key(value: str) -> str | None:
    try:
        key = serialization.load_pem_private_key(value.encode(), password=None)
    except (ValueError, TypeError):
        return "is not an unencrypted PEM private key"
    if not isinstance(key, Ed25519PrivateKey):
        return "is not an Ed25519 private key"
    return None


def parse_master_keys(value: str) -> list[tuple[str, bytes]]:
    """`id:base64-32-bytes,...`, the first entry current. Raises ValueError naming no key
    material."""
    entries: list[tuple[str, bytes]] = []
    for position, item in enumerate(value.split(","), start=1):
        key_id, sep, encoded = item.strip().partition(":")
        if not sep or not _MASTER_KEY_ID.match(key_id):
            raise ValueError(
                f"entry {position} is not id:base64 with an id of letters, digits, - or _"
            )
        try:
            material = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"entry {key_id!r} is not valid base64") from None
        if len(material) != 32:
            raise ValueError(f"entry {key_id!r} is {len(material)} bytes, not 32")
        if any(existing == key_id for existing, _ in entries):
            raise ValueError(f"the id {key_id!r} appears twice")
        entries.append((key_id, material))
    return entries


def _check_master_keys(value: str) -> str | None:
    try:
        keys = parse_master_keys(value)
    except ValueError as exc:
        return str(exc)
    if any(len(set(material)) < 8 for _, material in keys):
        return "holds a key with too few distinct bytes to be random"
    return None


AUDIT_HMAC_KEYS_RETIRED = "AUDIT_HMAC_KEYS_RETIRED"


def _check_metrics_token(value: str) -> str | None:
    return _check_random_text(value, minimum=32)


_AUDIT_HMAC_KEY_ID = re.compile(r"^[0-9a-f]{16}$")


def audit_hmac_key_id(key: bytes) -> str:
    """The id of an audit HMAC key: 16 hex digits of HMAC-SHA256(key, "bulwark-audit-hmac-key-id").

    Derived from the key, not configured beside it: AUDIT_HMAC_KEY stays one plain secret as
    before (no deployment changes anything to upgrade), and an id can never be paired with the
    wrong key. Showing it gives nothing away: every chained event already is an HMAC under the
    same key of a text its readers see, which is as good a test of a guessed key as this."""
    return hmac.new(key, b"bulwark-audit-hmac-key-id", hashlib.sha256).hexdigest()[:16]


def parse_audit_hmac_keys_retired(value: str) -> list[tuple[str, bytes]]:
    """AUDIT_HMAC_KEYS_RETIRED: `id:base64-of-the-key` entries, comma-separated; keys that
    chained earlier audit events, kept only to verify them. Base64, because a key is any text
    (commas and colons included); the id must be the key's own (`audit_hmac_key_id`), which
    catches a key pasted into the wrong entry. Raises ValueError naming no key material."""
    entries: list[tuple[str, bytes]] = []
    for position, item in enumerate(value.split(","), start=1):
        key_id, sep, encoded = item.strip().partition(":")
        if not sep or not _AUDIT_HMAC_KEY_ID.match(key_id):
            raise ValueError(
                f"entry {position} is not id:base64 with an id of 16 lower-case hex digits "
                "(rotate_audit_hmac_key prints the value to install)"
            )
        try:
            material = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"entry {key_id!r} is not valid base64") from None
        if not material:
            raise ValueError(f"entry {key_id!r} holds an empty key")
        if audit_hmac_key_id(material) != key_id:
            raise ValueError(
                f"entry {key_id!r} holds a key whose id is {audit_hmac_key_id(material)!r}: "
                "the id and the key do not belong together"
            )
        if any(existing == key_id for existing, _ in entries):
            raise ValueError(f"the id {key_id!r} appears twice")
        entries.append((key_id, material))
    return entries


def audit_hmac_keys_retired_entry(key: bytes) -> str:
    """One AUDIT_HMAC_KEYS_RETIRED entry for `key`, as `parse_audit_hmac_keys_retired` reads it."""
    return f"{audit_hmac_key_id(key)}:{base64.b64encode(key).decode()}"


def _check_audit_hmac_keys_retired(value: str) -> str | None:
    try:
        parse_audit_hmac_keys_retired(value)
    except ValueError as exc:
        return str(exc)
    return None


def _generate_signing_key() -> str:
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def _generate_master_keys() -> str:
    return "mk1:" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class SecretSpec:
    name: str
    meaning: str
    check: Callable[[str], str | None]
    generate: Callable[[], str]


REQUIRED_SECRETS: tuple[SecretSpec, ...] = (
    SecretSpec(
        "DJANGO_SECRET_KEY",
        "Django's signing key (sessions, CSRF, password reset)",
        _check_django_secret_key,
        lambda: secrets.token_urlsafe(64),
    ),
    SecretSpec(
        "JWT_SIGNING_KEY",
        "HS256 key for access and refresh tokens (not SECRET_KEY)",
        lambda value: _check_random_text(value, minimum=32),
        lambda: secrets.token_urlsafe(48),
    ),
    SecretSpec(
        "API_KEY_PEPPER",
        "HMAC key under which API-key secrets are hashed",
        lambda value: _check_random_text(value, minimum=32),
        lambda: secrets.token_urlsafe(48),
    ),
    SecretSpec(
        "AUDIT_HMAC_KEY",
        "HMAC key of the audit hash chain",
        lambda value: _check_random_text(value, minimum=32),
        lambda: secrets.token_urlsafe(48),
    ),
    SecretSpec(
        "AUDIT_SIGNING_KEY",
        "Ed25519 private key (PEM) that signs audit checkpoints and export manifests",
        _check_signing_key,
        _generate_signing_key,
    ),
    SecretSpec(
        "BULWARK_MASTER_KEYS",
        "master keys wrapping artifact data keys (id:base64-32-bytes, comma-separated, "
        "the first is current)",
        _check_master_keys,
        _generate_master_keys,
    ),
)
# Secrets that may be absent (name, check); when present, malformed key material stops startup
# in every environment, since it cannot be used at all.
OPTIONAL_SECRETS: tuple[tuple[str, Callable[[str], str | None]], ...] = (
    (AUDIT_HMAC_KEYS_RETIRED, _check_audit_hmac_keys_retired),
    # The bearer token of /metrics (docs/metrics.md); absent: only METRICS_ALLOWED_NETWORKS.
    ("METRICS_TOKEN", _check_metrics_token),
)
