"""The one verified way to load a version's artifact: authenticated decryption and a digest
check first (apps.registry.envelope), then the restricted loader with only what the version
was allowed, in this process or in a model runner that holds no secret
(apps.registry.servable). Services, scanning and watermarks all build on it."""

from __future__ import annotations

import logging
import mmap
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction

from apps.audit.services import audit_event_record
from apps.registry.artifacts.loading import describe, load_model
from apps.registry.envelope import (
    ArtifactRejected,
    Reason,
    load_artifact,
    master_keys_from_secrets,
)
from apps.registry.errors import ArtifactRefused, ModelRunnerFailed
from apps.registry.formats import skops_trusted_types
from apps.registry.isolation.client import RunnerFailed, zygote
from apps.registry.models import ModelVersion, VersionStatus
from apps.registry.servable import (
    InProcessModel,
    IsolatedModel,
    Servable,
    runner_failure_record,
)
from apps.registry.trust import loadable_globals

logger = logging.getLogger("bulwark.registry")


_INTEGRITY = {reason.value for reason in Reason} - {
    Reason.UNTRUSTED_TYPES,
    Reason.UNREADABLE,
    Reason.UNSAFE_CONTENT,
}


def _refused(version: ModelVersion, reason: str, detail: str = "") -> ArtifactRefused:
    """Record `model.version.rejected` on its own and return the 503 to raise (its message
    says which kind of refusal, never the detail: that is for the audit and the logs)."""
    logger.error(
        "model artifact refused",
        extra={
            "model": version.model.name,
            "version": version.number,
            "reason": reason,
            "detail": detail,
        },
    )
    with transaction.atomic():
        audit_event_record(
            "model.version.rejected",
            actor=None,
            target=version,
            outcome="failure",
            details={"reason": reason, **({"detail": detail[:300]} if detail else {})},
        )
    if reason == "quarantined":
        return ArtifactRefused("This model version is quarantined; it was not loaded.")
    if reason in _INTEGRITY or reason == "artifact missing":
        return ArtifactRefused()
    return ArtifactRefused(
        "The model version's artifact imports or holds what it is not allowed to; "
        "it was not loaded."
    )


def _loadable(version: ModelVersion) -> list[str]:
    return loadable_globals(version.allowed_globals, extension=version.model.extra_allowed_globals)


def _inprocess(version: ModelVersion) -> Callable[[mmap.mmap], Servable]:
    if not _inprocess_announced:
        _announce_inprocess()

    def load(plaintext: mmap.mmap) -> Servable:
        estimator = load_model(
            plaintext,
            format=version.format,
            allowed_globals=_loadable(version),
            skops_trusted=skops_trusted_types(),
            limit=settings.BULWARK_MAX_ARTIFACT_BYTES,
        )
        return InProcessModel(estimator, facts=describe(estimator), size=version.size)

    return load


def _isolated(version: ModelVersion) -> Callable[[mmap.mmap], Servable]:
    def load(plaintext: mmap.mmap) -> Servable:
        runner = zygote.spawn()
        try:
            facts = runner.load(
                plaintext,
                format=version.format,
                allowed_globals=_loadable(version),
                skops_trusted=skops_trusted_types(),
                limit=settings.BULWARK_MAX_ARTIFACT_BYTES,
                timeout=settings.MODEL_RUNNER_LOAD_TIMEOUT,
            )
        except BaseException:
            runner.kill()
            raise
        return IsolatedModel(
            runner, facts=facts, size=version.size, subject=version.audit_subject()
        )

    return load


_inprocess_announced = False


def _announce_inprocess() -> None:
    global _inprocess_announced
    _inprocess_announced = True
    logger.warning(
        "models run in this process (MODEL_ISOLATION=inprocess): the embedded default only; "
        "production runs them in model runners that hold no secret"
    )


def model_version_open(
    *,
    version: ModelVersion,
    loader: Callable[[mmap.mmap], Any],
    master_keys: Sequence[tuple[str, bytes]] | None = None,
) -> Any:
    """`loader(plaintext)` on the version's stored artifact, once its ciphertext is
    authenticated and its digest checked (apps.registry.envelope). ArtifactRejected or
    FileNotFoundError otherwise; nothing reaches the loader."""
    with default_storage.open(version.artifact, "rb") as stream:
        return load_artifact(
            stream,
            wrapped_key=bytes(version.wrapped_data_key),
            master_key_id=version.master_key_id,
            model=version.model.name,
            version=version.number,
            sha256=version.sha256,
            master_keys=master_keys_from_secrets() if master_keys is None else master_keys,
            loader=loader,
        )


def model_version_load(*, version: ModelVersion) -> Servable:
    """The version's model, ready to predict, loaded only after its ciphertext is
    authenticated and its plaintext digest matches the recorded one, and only with what it
    was allowed at upload: a joblib artifact by the restricted unpickler importing just the
    version's recorded globals, a `skops` one with BULWARK_SKOPS_TRUSTED_TYPES; every
    decision tree is checked. With MODEL_ISOLATION=process (production) the plaintext is handed
    once to a new model runner that holds no secret, and the model lives there.

    On any refusal (quarantined, tampered, truncated or swapped ciphertext, unknown master
    key, missing file, a global or type no longer allowed) nothing is unpickled outside that
    list and nothing is returned: `model.version.rejected` (outcome failure) is committed on
    its own and ArtifactRefused (503) is raised. A runner that cannot start or fails while
    loading is `model.runner.failed` and ModelRunnerFailed (503). Call it outside a
    transaction that the error would roll back, or the event goes with it.
    """
    if version.status == VersionStatus.QUARANTINED:
        raise _refused(version, "quarantined", version.quarantine_reason)
    loader = _isolated(version) if settings.MODEL_ISOLATION == "process" else _inprocess(version)
    try:
        loaded = model_version_open(version=version, loader=loader)
    except ArtifactRejected as exc:
        raise _refused(version, exc.reason.value, exc.detail) from None
    except FileNotFoundError:
        raise _refused(version, "artifact missing") from None
    except RunnerFailed as exc:
        runner_failure_record(subject=version.audit_subject(), reason=exc.reason)
        raise ModelRunnerFailed() from None
    servable: Servable = loaded
    return servable
