"""Signed artifacts: OpenSSF model signing (the `model-signing` package), key-based.

A bundle names its key by a hint (SHA-256 of the signer's public key, PEM); the publisher
registered with that key verifies it: the DSSE envelope's signature, the in-toto statement,
the manifest's root digest, and then that the manifest describes exactly one file whose
SHA-256 is the uploaded artifact's. The artifact is hashed from memory: model-signing's own
`verify` hashes files on disk, and the plaintext of an artifact never touches disk.

Sigstore's keyless flow (a certificate from Fulcio, a Rekor entry) needs the internet;
`verify_bundle` dispatches on the bundle's verification material, so a keyless branch can
be added beside the key branch without changing callers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from model_signing._signing import sign_ec_key, sign_sigstore_pb
from sigstore_models.bundle import v1 as bundle_pb

MAX_BUNDLE_BYTES = 64 * 1024
CURVES = {"secp256r1", "secp384r1", "secp521r1"}


class SignatureRefused(Exception):
    """The bundle does not prove a trusted publisher signed these bytes; the message says why
    in words fit for the uploader."""


def canonical_public_key(pem: str) -> tuple[str, str]:
    """(canonical PEM, key id) of an elliptic-curve public key model signing accepts.
    ValueError naming the problem otherwise."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ValueError("is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in CURVES:
        raise ValueError("must be an elliptic-curve key on P-256, P-384 or P-521")
    canonical = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return canonical.decode(), hashlib.sha256(canonical).hexdigest()


class _KeyVerifier(sign_ec_key.Verifier):
    """model-signing's key verifier, given the key itself rather than a file holding it."""

    def __init__(self, pem: str) -> None:
        self._public_key = serialization.load_pem_public_key(pem.encode())
        sign_ec_key._check_supported_ec_key(self._public_key)  # type: ignore[arg-type]  # checks it is EC


def parse_bundle(raw: str) -> tuple[Any, str]:
    """The bundle and the key id it names. SignatureRefused if it is not a readable bundle."""
    if len(raw.encode()) > MAX_BUNDLE_BYTES:
        raise SignatureRefused(f"is larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        document = json.loads(raw)
        material = document["verificationMaterial"]
        # As model-signing's own reader adjusts bundles written by its earlier releases.
        material.setdefault("tlogEntries", [])
        hint = material["publicKey"]["hint"]
        for field in ("rawBytes", "keyDetails"):
            material["publicKey"].pop(field, None)
        bundle = bundle_pb.Bundle.from_dict(document)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise SignatureRefused("is not an OpenSSF model-signing bundle (JSON)") from None
    except Exception:  # the bundle model's own validation errors
        raise SignatureRefused("is not an OpenSSF model-signing bundle (JSON)") from None
    if not isinstance(hint, str) or len(hint) != 64:
        raise SignatureRefused(
            "names no signing key: sign with a key, using model-signing 1.0 or later"
        )
    return bundle, hint


def verify_bundle(bundle: Any, *, public_key: str, artifact_sha256: bytes) -> None:
    """Raise SignatureRefused unless `bundle` is a valid signature by `public_key` over one
    file whose SHA-256 is `artifact_sha256`."""
    try:
        manifest = _KeyVerifier(public_key).verify(sign_sigstore_pb.Signature(bundle))
    except Exception:  # any failure of the signature, the envelope or the statement
        raise SignatureRefused("does not verify with the publisher's key") from None
    serialization_type = manifest.serialization_type
    if serialization_type.get("method") != "files" or serialization_type.get("hash_type") not in {
        "sha256",
        None,
    }:
        raise SignatureRefused("must sign one file with SHA-256 (model-signing's default)")
    resources = list(manifest.resource_descriptors())
    if len(resources) != 1:
        raise SignatureRefused(f"signs {len(resources)} files; an artifact is one file")
    digest = resources[0].digest
    if digest.algorithm != "sha256" or not hmac.compare_digest(
        digest.digest_value, artifact_sha256
    ):
        raise SignatureRefused("was made for other bytes than this artifact")
