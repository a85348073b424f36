"""Encryption of small secrets that must be recovered (API-key signing secrets, TOTP seeds):
AES-256-GCM under a key derived (HKDF-SHA256, one key per purpose) from the current master
key of BULWARK_MASTER_KEYS. The sealed text names the master key it used, so older values
still open after a new master key is put first."""

from __future__ import annotations

import base64
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from apps.core.secrets import get_secret
from apps.core.secrets.required import parse_master_keys

VERSION = "s1"


class SealError(ValueError):
    """A sealed value could not be opened: unknown key, wrong purpose, or tampered with."""


@lru_cache(maxsize=32)
def _derive(master: bytes, purpose: str) -> AESGCM:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"bulwark:{purpose}".encode()
    ).derive(master)
    return AESGCM(key)


def _master_keys() -> list[tuple[str, bytes]]:
    return parse_master_keys(get_secret("BULWARK_MASTER_KEYS"))


def _seal_under(key_id: str, master: bytes, plaintext: str, purpose: str) -> str:
    nonce = os.urandom(12)
    aad = f"{VERSION}:{key_id}:{purpose}".encode()
    ciphertext = _derive(master, purpose).encrypt(nonce, plaintext.encode(), aad)
    return f"{VERSION}:{key_id}:{base64.urlsafe_b64encode(nonce + ciphertext).decode()}"


def _unseal_with(sealed: str, purpose: str, masters: dict[str, bytes]) -> str:
    try:
        version, key_id, payload = sealed.split(":", 2)
        raw = base64.urlsafe_b64decode(payload)
    except ValueError:
        raise SealError("not a sealed value") from None
    if version != VERSION or key_id not in masters:
        raise SealError(f"sealed under an unknown master key {key_id!r}")
    aad = f"{version}:{key_id}:{purpose}".encode()
    try:
        return _derive(masters[key_id], purpose).decrypt(raw[:12], raw[12:], aad).decode()
    except InvalidTag:
        raise SealError("the sealed value was altered or belongs to another purpose") from None


def seal(plaintext: str, *, purpose: str) -> str:
    key_id, master = _master_keys()[0]
    return _seal_under(key_id, master, plaintext, purpose)


def unseal(sealed: str, *, purpose: str) -> str:
    return _unseal_with(sealed, purpose, dict(_master_keys()))


def sealed_key_id(sealed: str) -> str:
    """The id of the master key a sealed value names (no key needed; not authenticated until
    the value is opened). Raises SealError for text that is not a sealed value."""
    version, sep, rest = sealed.partition(":")
    key_id, sep2, _payload = rest.partition(":")
    if version != VERSION or not sep or not sep2 or not key_id:
        raise SealError("not a sealed value")
    return key_id


def reseal(sealed: str, *, purpose: str, master_keys: list[tuple[str, bytes]]) -> str:
    """The same plaintext sealed again under the first of `master_keys` (master-key rotation),
    opened under the key it names. Raises SealError when it does not open."""
    key_id, master = master_keys[0]
    return _seal_under(key_id, master, _unseal_with(sealed, purpose, dict(master_keys)), purpose)
