"""Refusals of the compliance app, in docs/api.md's codes."""

from __future__ import annotations

from apps.core.errors import (
    ApplicationError,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedMediaType,
)


def invalid(path: str, message: str) -> InvalidInput:
    return InvalidInput(f"{path}: {message}", details=[{"path": path, "message": message}])


class EvidenceTooLarge(PayloadTooLarge):
    default_message = "The evidence file is larger than the upload limit."


class EvidenceTypeRefused(UnsupportedMediaType):
    default_message = "The evidence file must be a PDF, PNG, JPEG, plain text, CSV or JSON file."


class EvidenceUnreadable(ApplicationError):
    """Fail closed: a stored file that does not decrypt, or decrypts to other bytes than were
    recorded, is never served."""

    status_code = 503
    code = "service_unavailable"
    default_message = (
        "The evidence file could not be decrypted and verified (its master key may have been "
        "retired); it was not served."
    )
