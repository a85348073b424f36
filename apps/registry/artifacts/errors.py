"""Why an artifact was refused. Django-free: raised in web and worker processes and in the
model runner alike."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    UNKNOWN_MASTER_KEY = "unknown master key"
    KEY_UNWRAP_FAILED = "key unwrap failed"
    TAMPERED = "tampered or truncated ciphertext"
    DIGEST_MISMATCH = "digest mismatch"
    BAD_HEADER = "bad header"
    # Refusals of a format's loader, after the artifact was proven to be the recorded one.
    UNTRUSTED_TYPES = "untrusted types"
    UNREADABLE = "unreadable artifact"
    UNSAFE_CONTENT = "unsafe content"


class ArtifactRejected(Exception):
    """The artifact cannot be proven to be the recorded one, or its format's loader refused
    it; nothing was unpickled, nothing loaded is returned. `detail` says why in words (the
    uploader sees it for their own file; at load it goes to the logs and the audit only)."""

    def __init__(self, reason: Reason, *, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(reason.value if not detail else f"{reason.value}: {detail}")


class UntrustedGlobals(ArtifactRejected):
    """The pickle imports globals outside the allow-list; `names` lists them, sorted."""

    def __init__(self, names: set[str] | frozenset[str]) -> None:
        self.names = sorted(names)
        super().__init__(Reason.UNTRUSTED_TYPES, detail=", ".join(self.names))
