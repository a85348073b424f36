"""Ed25519 signatures over checkpoints and export manifests. Verification needs only the
public key, so an auditor checks our statements without any secret of ours."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from apps.audit.canonical import canonical_json
from apps.core.secrets import get_secret


@lru_cache(maxsize=4)
def _private_key(pem: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("AUDIT_SIGNING_KEY is not an Ed25519 key")
    return key


def signing_key() -> Ed25519PrivateKey:
    return _private_key(get_secret("AUDIT_SIGNING_KEY"))


def public_key_pem(key: Ed25519PrivateKey | None = None) -> str:
    key = key or signing_key()
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def load_public_key(pem: str) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def sign(statement: dict[str, Any]) -> str:
    """Hex Ed25519 signature over the statement's canonical JSON."""
    return signing_key().sign(canonical_json(statement).encode()).hex()


def signature_valid(
    statement: dict[str, Any], signature: str, public_key: Ed25519PublicKey
) -> bool:
    try:
        public_key.verify(bytes.fromhex(signature), canonical_json(statement).encode())
    except (InvalidSignature, ValueError):
        return False
    return True
