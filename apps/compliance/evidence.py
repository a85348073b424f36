"""Evidence files: what may be stored (an allow-list of types, checked against the bytes,
not only the name), and how (AES-256-GCM under a per-file data key that is itself sealed
under the current master key, apps.core.sealing). Pure functions; no models."""

from __future__ import annotations

import base64
import hashlib
import os
import unicodedata
from pathlib import PurePosixPath, PureWindowsPath

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from apps.compliance.errors import EvidenceTypeRefused, EvidenceUnreadable, invalid
from apps.core.errors import ApplicationError
from apps.core.sealing import SealError, seal, unseal
from apps.core.strict_json import loads_strict

PURPOSE = "compliance.evidence"
_NONCE = 12

ALLOWED_TYPES: dict[str, str] = {
    "application/pdf": "PDF document",
    "image/png": "PNG image",
    "image/jpeg": "JPEG image",
    "text/plain": "plain text",
    "text/csv": "CSV",
    "application/json": "JSON",
}
EXTENSIONS: dict[str, str] = {
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".txt": "text/plain",
    ".log": "text/plain",
    ".csv": "text/csv",
    ".json": "application/json",
}
_ALIASES = {"image/jpg": "image/jpeg", "application/csv": "text/csv"}
_SIGNATURES = {
    "application/pdf": b"%PDF-",
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff",
}


def clean_file_name(name: str) -> str:
    """The last path component, without control characters, at most 255 characters."""
    base = PureWindowsPath(PurePosixPath(name or "").name).name
    cleaned = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return (cleaned or "evidence")[-255:]


def evidence_content_type(*, name: str, declared: str, content: bytes) -> str:
    """The allowed type this file is, judged by its declared type (or, when that says
    nothing useful, its extension) and confirmed by its bytes; EvidenceTypeRefused (415)
    when it is not one of ALLOWED_TYPES or its bytes are not what it claims."""
    declared = _ALIASES.get(declared.split(";")[0].strip().lower(), declared.strip().lower())
    if declared not in ALLOWED_TYPES:
        declared = EXTENSIONS.get(PurePosixPath(name.lower()).suffix, declared)
    if declared not in ALLOWED_TYPES:
        shown = declared or "an unknown type"
        raise EvidenceTypeRefused(
            f"file: {shown} is not accepted; send a PDF, PNG, JPEG, plain text, CSV or JSON file.",
            details=[{"path": "file", "message": f"{shown} is not an accepted type"}],
        )
    signature = _SIGNATURES.get(declared)
    if signature is not None:
        well_formed = content.startswith(signature)
    else:
        well_formed = _is_text(content) and (declared != "application/json" or _is_json(content))
    if not well_formed:
        label = ALLOWED_TYPES[declared]
        raise EvidenceTypeRefused(
            f"file: the content is not a valid {label}, as its type or name says.",
            details=[{"path": "file", "message": f"content is not a valid {label}"}],
        )
    return declared


def _is_text(content: bytes) -> bool:
    if b"\x00" in content:
        return False
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _is_json(content: bytes) -> bool:
    try:
        loads_strict(content)
    except (ApplicationError, ValueError):  # the strict parser's refusals
        return False
    return True


def _aad(evidence_id: str, sha256: str) -> bytes:
    return f"bulwark-evidence:{evidence_id}:{sha256}".encode()


def evidence_encrypt(content: bytes, *, evidence_id: str) -> tuple[str, str, bytes]:
    """(sha256 of the plaintext, the sealed data key, nonce | ciphertext). The ciphertext
    is bound to this evidence record and digest, so it cannot be moved to another one."""
    if not content:
        raise invalid("file", "is empty")
    digest = hashlib.sha256(content).hexdigest()
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(_NONCE)
    ciphertext = AESGCM(data_key).encrypt(nonce, content, _aad(evidence_id, digest))
    sealed = seal(base64.b64encode(data_key).decode(), purpose=PURPOSE)
    return digest, sealed, nonce + ciphertext


def evidence_decrypt(
    *, evidence_id: str, sha256: str, data_key_sealed: str, ciphertext: bytes
) -> bytes:
    """The plaintext, proven to be what was stored; EvidenceUnreadable otherwise."""
    try:
        data_key = base64.b64decode(unseal(data_key_sealed, purpose=PURPOSE))
        plaintext = AESGCM(data_key).decrypt(
            ciphertext[:_NONCE], ciphertext[_NONCE:], _aad(evidence_id, sha256)
        )
    except (SealError, InvalidTag, ValueError):
        raise EvidenceUnreadable() from None
    if hashlib.sha256(plaintext).hexdigest() != sha256:
        raise EvidenceUnreadable()
    return plaintext
