"""What is already stored: the upload's analysis run again over every version, and the
quarantine of those that import what is not (or no longer) allowed, or whose ciphertext
fails its integrity check. A quarantined version is never served and never promoted."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.audit.services import audit_event_record
from apps.core.errors import InvalidInput
from apps.registry.artifacts.errors import ArtifactRejected
from apps.registry.artifacts.pickle_scan import joblib_globals
from apps.registry.envelope import master_keys_from_secrets
from apps.registry.formats import skops_check_upload
from apps.registry.models import ArtifactFormat, ModelVersion, Stage, VersionStatus
from apps.registry.trust import deployment_globals
from apps.registry.version_loading import model_version_open

logger = logging.getLogger("bulwark.registry")
SCAN_ACTOR = "registry.artifacts_scan"


def model_version_quarantine(*, actor: Any, version: ModelVersion, reason: str) -> ModelVersion:
    """Quarantine `version` in the caller's transaction; audited `model.version.quarantined`.
    A production version moves to staging first (audited `model.version.staged`), so the
    model has no production version until another is promoted. Idempotent."""
    with transaction.atomic():
        version = (
            ModelVersion.objects.select_for_update().select_related("model").get(pk=version.pk)
        )
        if version.status == VersionStatus.QUARANTINED:
            return version
        if version.stage == Stage.PRODUCTION:
            version.stage = Stage.STAGING
            version.save(update_fields=["stage", "updated_at"])
            audit_event_record(
                "model.version.staged",
                actor=actor,
                target=version,
                details={"from": Stage.PRODUCTION, "to": Stage.STAGING, "reason": "quarantine"},
            )
        version.status = VersionStatus.QUARANTINED
        version.quarantine_reason = reason[:500]
        version.full_clean()
        version.save(update_fields=["status", "quarantine_reason", "updated_at"])
        audit_event_record(
            "model.version.quarantined",
            actor=actor,
            target=version,
            outcome="failure",
            details={"reason": version.quarantine_reason},
        )
    return version


@dataclass
class ScanReport:
    scanned: int = 0
    recorded: int = 0  # versions whose imported globals were recorded by this scan
    refused: list[tuple[str, int, str]] = field(default_factory=list)  # (model, number, why)
    quarantined: int = 0


def _verdict(version: ModelVersion, plaintext: Any) -> tuple[str | None, list[str] | None]:
    """(why the version is refused or None, the globals it imports for joblib)."""
    if version.format == ArtifactFormat.SKOPS:
        try:
            with memoryview(plaintext) as view:
                skops_check_upload(bytes(view), limit=settings.BULWARK_MAX_ARTIFACT_BYTES)
        except InvalidInput as exc:
            return exc.message, None
        return None, None
    try:
        found = joblib_globals(plaintext, limit=settings.BULWARK_MAX_ARTIFACT_BYTES)
    except ArtifactRejected as exc:
        return f"artifact: {exc.detail or exc.reason.value}", None
    allowed = set(deployment_globals())
    if version.signed_by_id is not None and version.signed_by.removed_at is None:  # type: ignore[union-attr]  # signed_by_id is set
        allowed |= set(version.model.extra_allowed_globals)
    untrusted = sorted(found - allowed)
    if untrusted:
        return "imports globals that are not allowed: " + ", ".join(untrusted), None
    return None, sorted(found)


def artifacts_scan(*, quarantine: bool, actor: Any = SCAN_ACTOR) -> ScanReport:
    """Decrypt and analyse every version not yet quarantined, as an upload would be. With
    `quarantine`, quarantine each refused one and record the globals of each accepted one
    that has none recorded yet (versions stored before the analysis existed); without, only
    report. One transaction per version: safe to interrupt and run again."""
    report = ScanReport()
    master_keys = master_keys_from_secrets()
    versions = (
        ModelVersion.objects.filter(status=VersionStatus.OK)
        .select_related("model", "signed_by")
        .order_by("model__name", "number")
    )
    for version in versions.iterator(chunk_size=100):
        report.scanned += 1
        try:
            why, found = model_version_open(
                version=version,
                loader=lambda plaintext, version=version: _verdict(version, plaintext),  # type: ignore[misc]  # the default binds this version
                master_keys=master_keys,
            )
        except ArtifactRejected as exc:
            why, found = f"integrity: {exc.reason.value}", None
        except FileNotFoundError:
            why, found = "integrity: artifact missing", None
        if why is not None:
            report.refused.append((version.model.name, version.number, why))
            if quarantine:
                model_version_quarantine(actor=actor, version=version, reason=why)
                report.quarantined += 1
        elif quarantine and found is not None and sorted(version.allowed_globals) != found:
            if version.allowed_globals and not set(found) <= set(version.allowed_globals):
                # Authenticated bytes import more than was recorded: record nothing, refuse.
                reason = "imports globals that were not recorded at upload"
                report.refused.append((version.model.name, version.number, reason))
                model_version_quarantine(actor=actor, version=version, reason=reason)
                report.quarantined += 1
                continue
            with transaction.atomic():
                ModelVersion.objects.filter(pk=version.pk).update(allowed_globals=found)
                audit_event_record(
                    "model.version.globals_recorded",
                    actor=actor,
                    target=version,
                    details={"globals": len(found)},
                )
            report.recorded += 1
    return report
