"""State changes of the registry: models, versions (upload with envelope encryption), stages,
and the one verified way to load a version's artifact."""

from __future__ import annotations

import io
import logging
import mmap
import secrets
from collections.abc import Callable, Iterator
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.http import HttpRequest

from apps.audit.services import audit_event_record
from apps.audit.subjects import pseudonym_for
from apps.core.errors import Conflict, InvalidInput
from apps.privacy.laplace import InvalidMechanism, snapping_parameters
from apps.registry.envelope import (
    ArtifactRejected,
    Reason,
    encrypt_artifact,
    load_artifact,
    master_keys_from_secrets,
)
from apps.registry.errors import ArtifactRefused
from apps.registry.formats import skops_check_upload, skops_loader, skops_trusted_types
from apps.registry.models import (
    ArtifactFormat,
    ModelVersion,
    PredictGrant,
    RegisteredModel,
    Stage,
)
from apps.registry.schemas import check_feature_order, check_input_schema

logger = logging.getLogger("bulwark.registry")

ARTIFACT_DIRECTORY = "artifacts"


class _CiphertextFile(File):  # type: ignore[type-arg]  # no underlying file object
    """The ciphertext iterator as something Django's storage can save chunk by chunk, so the
    whole ciphertext is never joined into one more in-memory copy."""

    def __init__(self, ciphertext: Iterator[bytes], name: str) -> None:
        super().__init__(None, name)
        self._ciphertext = ciphertext

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        yield from self._ciphertext

    def __bool__(self) -> bool:
        return True


def _artifact_name() -> str:
    # Random, so a stored name says nothing about the model and cannot be guessed.
    return f"{ARTIFACT_DIRECTORY}/{secrets.token_hex(16)}.bwae"


def _invalid(path: str, message: str) -> InvalidInput:
    return InvalidInput(f"{path}: {message}", details=[{"path": path, "message": message}])


def registered_model_create(
    *, actor: Any, name: str, description: str = "", request: HttpRequest | None = None
) -> RegisteredModel:
    """Register a model owned by `actor`; audited `model.created`. Conflict if the name is taken."""
    if RegisteredModel.objects.filter(name=name).exists():
        raise Conflict("A model with this name already exists.")
    model = RegisteredModel(name=name, description=description, owner=actor)
    model.full_clean(validate_unique=False)  # uniqueness: the constraint, race-free, below
    try:
        with transaction.atomic():
            model.save()
            audit_event_record("model.created", actor=actor, target=model, request=request)
    except IntegrityError:
        # A concurrent request registered the same name between our check and our insert.
        raise Conflict("A model with this name already exists.") from None
    return model


def _artifact_bytes(artifact: IO[bytes]) -> bytes:
    """The whole artifact as bytes, for skops's inspection. For the in-memory upload, its
    buffer itself: BytesIO.getvalue() shares it (until a write, and nothing writes to it)."""
    inner = getattr(artifact, "file", artifact)
    if isinstance(inner, io.BytesIO):
        return inner.getvalue()
    start = artifact.tell()
    try:
        return artifact.read()
    finally:
        artifact.seek(start)


def model_version_register(
    *,
    actor: Any,
    model: RegisteredModel,
    artifact: IO[bytes],
    input_schema: Any,
    format: str = ArtifactFormat.JOBLIB,
    feature_order: Any = None,
    max_batch: int = 100,
    dp_epsilon: float | None = None,
    dp_sensitivity: float | None = None,
    watermark: Any = None,
    request: HttpRequest | None = None,
) -> ModelVersion:
    """Encrypt `artifact` under a fresh data key, store the ciphertext in the default storage
    and record the next version (staging); audited `model.version.created`.

    `artifact` should be the in-memory upload itself (it is read twice, never copied or written
    to disk in plaintext). All or nothing: on any failure no row and no stored file remain.
    Raises InvalidInput for a bad format, schema, feature order, DP pair, watermark or an empty
    artifact, and for a `skops` artifact that is not a skops file or names a type outside
    BULWARK_SKOPS_TRUSTED_TYPES (inspected, never loaded). A watermark set is stored sealed
    and its verification queued after commit.
    """
    from apps.registry import watermarks  # it builds on this module's verified load

    schema = check_input_schema(input_schema)
    order = check_feature_order(feature_order, schema)
    watermark_set = (
        None if watermark is None else watermarks.watermark_check(watermark, input_schema=schema)
    )
    if (dp_epsilon is None) != (dp_sensitivity is None):
        raise _invalid("dp_epsilon", "give both dp_epsilon and dp_sensitivity, or neither")
    if dp_epsilon is not None and dp_sensitivity is not None:
        # Refused now rather than as a failed prediction: the mechanism's limits only tighten
        # as the batch grows, so one row and a full batch bound every call in between.
        try:
            for count in (1, max_batch):
                snapping_parameters(epsilon=dp_epsilon, sensitivity=dp_sensitivity, count=count)
        except InvalidMechanism as exc:
            raise _invalid("dp_epsilon", str(exc)) from None
    if format not in ArtifactFormat.values:
        raise _invalid("format", f"must be one of {', '.join(ArtifactFormat.values)}")
    if getattr(artifact, "size", None) == 0:
        raise _invalid("artifact", "is empty")
    if format == ArtifactFormat.SKOPS:
        # Before the model's lock is taken: the inspection reads the whole file.
        skops_check_upload(_artifact_bytes(artifact), limit=settings.BULWARK_MAX_ARTIFACT_BYTES)
    master_keys = master_keys_from_secrets()

    name = _artifact_name()
    try:
        with transaction.atomic():
            # The model's row lock serialises uploads to one model, so numbers are 1, 2, 3...
            # without gaps or duplicates. It is held while encrypting because the number is
            # bound into the ciphertext; uploads to other models are not blocked.
            locked = RegisteredModel.objects.select_for_update().get(pk=model.pk)
            latest = ModelVersion.objects.filter(model=locked).aggregate(top=Max("number"))["top"]
            number = (latest or 0) + 1
            encrypted = encrypt_artifact(
                artifact, model=locked.name, version=number, master_keys=master_keys
            )
            name = default_storage.save(name, _CiphertextFile(encrypted.ciphertext, name))
            version = ModelVersion(
                model=locked,
                number=number,
                stage=Stage.STAGING,
                format=format,
                size=encrypted.size,
                sha256=encrypted.sha256,
                input_schema=schema,
                feature_order=order,
                max_batch=max_batch,
                dp_epsilon=dp_epsilon,
                dp_sensitivity=dp_sensitivity,
                wrapped_data_key=encrypted.wrapped_key,
                master_key_id=encrypted.master_key_id,
                artifact=name,
                watermark_sealed=""
                if watermark_set is None
                else watermarks.watermark_seal(watermark_set),
                created_by=actor,
            )
            version.full_clean()
            version.save()
            audit_event_record(
                "model.version.created",
                actor=actor,
                target=version,
                details={
                    "sha256": version.sha256,
                    "size": version.size,
                    "format": version.format,
                    "stage": version.stage,
                    "watermark": watermark_set is not None,
                },
                request=request,
            )
            if watermark_set is not None:
                watermarks.watermark_job_create(version=version)
    except BaseException:
        # The row is rolled back with the transaction; the file is not transactional. The
        # name is random, so whatever is stored under it (even a partial write) is ours.
        if default_storage.exists(name):
            default_storage.delete(name)
        raise
    return version


def _move(*, actor: Any, version: ModelVersion, stage: str, request: HttpRequest | None) -> None:
    previous = version.stage
    version.stage = stage
    version.full_clean()
    version.save(update_fields=["stage", "updated_at"])
    audit_event_record(
        "model.version.staged",
        actor=actor,
        target=version,
        details={"from": previous, "to": stage},
        request=request,
    )


@transaction.atomic
def model_version_stage(
    *, actor: Any, version: ModelVersion, stage: str, request: HttpRequest | None = None
) -> ModelVersion:
    """Move `version` to `stage`; promoting to production moves the former production version
    to staging first. Each move is audited `model.version.staged` with from/to. Moving a
    version to the stage it is in changes nothing and records nothing."""
    if stage not in Stage.values:
        raise _invalid("stage", f"must be one of {', '.join(Stage.values)}")
    # Lock the model first, then its versions: every stage change of one model takes the locks
    # in this order, so two concurrent promotions queue instead of deadlocking or both winning.
    RegisteredModel.objects.select_for_update().get(pk=version.model_id)
    version = ModelVersion.objects.select_for_update().select_related("model").get(pk=version.pk)
    if version.stage == stage:
        return version
    if stage == Stage.PRODUCTION:
        current = (
            ModelVersion.objects.select_for_update()
            .filter(model_id=version.model_id, stage=Stage.PRODUCTION)
            .first()
        )
        if current is not None:
            # Demote first: the one-production constraint holds after every statement.
            _move(actor=actor, version=current, stage=Stage.STAGING, request=request)
    _move(actor=actor, version=version, stage=stage, request=request)
    return version


def _loader(version: ModelVersion) -> Callable[[mmap.mmap], object] | None:
    """The version's format loader for `load_artifact` (None: its default, joblib)."""
    if version.format == ArtifactFormat.SKOPS:
        return skops_loader(skops_trusted_types())
    if version.format == ArtifactFormat.JOBLIB:
        return None
    raise ArtifactRejected(Reason.UNREADABLE, detail=f"unknown format {version.format!r}")


def model_version_load(*, version: ModelVersion) -> object:
    """The version's model object, loaded only after its ciphertext is authenticated and its
    plaintext digest matches the recorded one; a `skops` version then loads only trusted types
    (BULWARK_SKOPS_TRUSTED_TYPES) and sound trees (apps.registry.formats).

    On any refusal (tampered, truncated or swapped ciphertext, unknown master key, missing
    file, a type no longer trusted) nothing is unpickled or returned: an audit event
    `model.version.rejected` (outcome failure) is committed on its own and ArtifactRefused
    (503) is raised. Call it outside a transaction that the error would roll back, or the event
    goes with it.
    """
    detail = ""
    try:
        loader = _loader(version)
        with default_storage.open(version.artifact, "rb") as stream:
            return load_artifact(
                stream,
                wrapped_key=bytes(version.wrapped_data_key),
                master_key_id=version.master_key_id,
                model=version.model.name,
                version=version.number,
                sha256=version.sha256,
                master_keys=master_keys_from_secrets(),
                loader=loader,
            )
    except ArtifactRejected as exc:
        reason, detail = exc.reason.value, exc.detail
    except FileNotFoundError:
        reason = "artifact missing"
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
            details={"reason": reason},
        )
    raise ArtifactRefused()


def _grantee(grant: PredictGrant) -> dict[str, str]:
    # A person by pseudonym (as audit events name people), a group by its name.
    if grant.user is not None:
        return {"type": "user", "id": pseudonym_for(grant.user)}
    return {"type": "group", "id": grant.group.name if grant.group is not None else ""}


def predict_grant_create(
    *,
    actor: Any,
    model: RegisteredModel,
    user: Any = None,
    group: Any = None,
    request: HttpRequest | None = None,
) -> PredictGrant:
    """Grant `predict` on `model` to one user or one group; audited `model.grant.created`.
    InvalidInput if neither or both are given, Conflict if that grantee already holds it."""
    if (user is None) == (group is None):
        raise InvalidInput("Grant to exactly one of a user or a group.")
    grant = PredictGrant(model=model, user=user, group=group, granted_by=actor)
    try:
        # Uniqueness: the constraints, race-free, on insert below.
        grant.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise InvalidInput(str(exc.messages[0])) from None
    try:
        with transaction.atomic():
            grant.save()
            audit_event_record(
                "model.grant.created",
                actor=actor,
                target=model,
                details={"grantee": _grantee(grant), "grant": str(grant.pk)},
                request=request,
            )
    except IntegrityError:
        # The unique constraints, race-free: this grantee already holds predict on the model.
        raise Conflict("This user or group already holds predict on this model.") from None
    return grant


@transaction.atomic
def predict_grant_delete(
    *, actor: Any, grant: PredictGrant, request: HttpRequest | None = None
) -> None:
    """Withdraw a grant; audited `model.grant.deleted`. Keys already issued are not changed
    here; rotating one re-checks its owner's grants."""
    details = {"grantee": _grantee(grant), "grant": str(grant.pk)}
    grant.delete()
    audit_event_record(
        "model.grant.deleted", actor=actor, target=grant.model, details=details, request=request
    )
