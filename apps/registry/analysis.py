"""What an uploaded artifact is, decided before it is stored: who signed it (verified before
anything else reads it), what its pickle would import (walked, never run), and whether the
model takes it. Every refusal here is recorded as `model.version.rejected` with its reason."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.audit.services import audit_event_record
from apps.core.errors import InvalidInput
from apps.registry.artifacts.errors import ArtifactRejected
from apps.registry.artifacts.pickle_scan import joblib_globals
from apps.registry.formats import skops_check_upload
from apps.registry.models import ArtifactFormat, Publisher, RegisteredModel
from apps.registry.signing import SignatureRefused, parse_bundle, verify_bundle
from apps.registry.trust import beyond_deployment


def _invalid(path: str, message: str) -> InvalidInput:
    return InvalidInput(f"{path}: {message}", details=[{"path": path, "message": message}])


class ArtifactDenied(Exception):
    """An upload refused for what its artifact is: `error` is the API's answer, `reason` and
    `details` go to the audit event."""

    def __init__(self, error: InvalidInput, *, reason: str, **details: Any) -> None:
        self.error = error
        self.reason = reason
        self.details = details
        super().__init__(reason)


@dataclass(frozen=True)
class Analysis:
    sha256: str
    format: str
    globals: frozenset[str]  # what a joblib artifact imports; empty for skops
    beyond: tuple[str, ...]  # of those, the names outside the deployment's list
    publisher: Publisher | None
    signature: str  # the verified bundle, as uploaded ("" if none)


def _signed_by(signature: str, digest: bytes) -> Publisher:
    try:
        bundle, key_id = parse_bundle(signature)
    except SignatureRefused as exc:
        raise ArtifactDenied(
            _invalid("signature", str(exc)), reason="signature unreadable"
        ) from None
    publisher = Publisher.objects.filter(key_id=key_id, removed_at__isnull=True).first()
    if publisher is None:
        raise ArtifactDenied(
            _invalid("signature", "is not from a trusted publisher (no publisher has its key)"),
            reason="signature by an unknown or removed publisher",
            key_id=key_id,
        )
    try:
        verify_bundle(bundle, public_key=publisher.public_key, artifact_sha256=digest)
    except SignatureRefused as exc:
        raise ArtifactDenied(
            _invalid("signature", str(exc)),
            reason="signature invalid",
            publisher=publisher.name,
            problem=str(exc),
        ) from None
    return publisher


def artifact_analyse(*, data: bytes, format: str, signature: str | None) -> Analysis:
    """The signature first (over the bytes as uploaded), then the format's inspection.
    ArtifactDenied for a bundle that does not verify, an unreadable artifact, or a pickle the
    walk refuses; the allow-list itself is the model's to apply (`artifact_policy_check`)."""
    digest = hashlib.sha256(data).digest()
    publisher = _signed_by(signature, digest) if signature else None
    found: frozenset[str] = frozenset()
    if format == ArtifactFormat.SKOPS:
        try:
            skops_check_upload(data, limit=settings.BULWARK_MAX_ARTIFACT_BYTES)
        except InvalidInput as exc:
            raise ArtifactDenied(
                exc, reason="skops artifact refused", problem=exc.message
            ) from None
    else:
        try:
            found = joblib_globals(data, limit=settings.BULWARK_MAX_ARTIFACT_BYTES)
        except ArtifactRejected as exc:
            raise ArtifactDenied(
                _invalid("artifact", exc.detail or exc.reason.value),
                reason=exc.reason.value,
                problem=exc.detail,
            ) from None
    return Analysis(
        sha256=digest.hex(),
        format=format,
        globals=found,
        beyond=tuple(beyond_deployment(found)),
        publisher=publisher,
        signature=signature or "",
    )


def artifact_policy_check(*, model: RegisteredModel, analysis: Analysis) -> None:
    """ArtifactDenied unless `model` takes the artifact: signed if it requires signatures,
    and every global outside the deployment's list both added to the model's own list by an
    admin and vouched for by a trusted publisher's signature."""
    if model.require_signed_artifacts and analysis.publisher is None:
        raise ArtifactDenied(
            _invalid("signature", "this model requires artifacts signed by a trusted publisher"),
            reason="unsigned artifact for a model that requires signatures",
        )
    if not analysis.beyond:
        return
    extension = set(model.extra_allowed_globals) if analysis.publisher is not None else set()
    untrusted = [name for name in analysis.beyond if name not in extension]
    if not untrusted:
        return
    message = "imports globals that are not trusted: " + ", ".join(untrusted)
    if analysis.publisher is None and set(untrusted) <= set(model.extra_allowed_globals):
        message += " (this model allows them only in artifacts signed by a trusted publisher)"
    error = InvalidInput(
        f"artifact: {message}",
        details=[
            {"path": "artifact", "message": f"untrusted global: {name}"} for name in untrusted
        ],
    )
    raise ArtifactDenied(error, reason="untrusted globals", globals=untrusted)


def artifact_rejection_record(
    *,
    actor: Any,
    model: RegisteredModel,
    denial: ArtifactDenied,
    sha256: str | None,
) -> None:
    """`model.version.rejected` for a refused upload, committed on its own (the upload's own
    transaction, if any, rolled back)."""
    details = {"reason": denial.reason, **denial.details}
    if sha256:
        details["sha256"] = sha256
    with transaction.atomic():
        audit_event_record(
            "model.version.rejected",
            actor=actor,
            target=model,
            outcome="denied",
            details=details,
        )
