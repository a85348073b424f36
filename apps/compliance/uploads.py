"""Evidence files arrive in memory only (never in a temporary file), bounded by
COMPLIANCE_EVIDENCE_MAX_BYTES: the registry's in-memory handler with this app's limit."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from apps.compliance.errors import EvidenceTooLarge
from apps.registry.uploads import InMemoryArtifactUploadHandler


class InMemoryEvidenceUploadHandler(InMemoryArtifactUploadHandler):
    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request, limit=settings.COMPLIANCE_EVIDENCE_MAX_BYTES)

    def _refuse(self) -> EvidenceTooLarge:  # type: ignore[override]  # a narrower 413
        return EvidenceTooLarge(
            f"The evidence file is larger than the limit of {self.limit} bytes."
        )
