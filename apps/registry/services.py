"""State changes of the registry: models and their owners, versions (analysed, optionally
signed, encrypted on arrival), stages, and the one verified way to load a version's artifact
(apps.registry.servable: in this process or in a model runner that holds no secret)."""

from __future__ import annotations

import io
import logging
import mmap
import secrets
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.http import HttpRequest

from apps.audit.services import audit_event_record
from apps.audit.subjects import pseudonym_for
from apps.core.errors import Conflict, InvalidInput, PermissionDenied
from apps.core.permissions import may
from apps.privacy.laplace import InvalidMechanism, snapping_parameters
from apps.registry.analysis import (
    ArtifactDenied,
    artifact_analyse,
    artifact_policy_check,
    artifact_rejection_record,
)
from apps.registry.artifacts.loading import describe, load_model
from apps.registry.envelope import (
    ArtifactRejected,
    Reason,
    encrypt_artifact,
    load_artifact,
    master_keys_from_secrets,
)
from apps.registry.errors import ArtifactRefused, ModelRunnerFailed, VersionQuarantined
from apps.registry.formats import skops_trusted_types
from apps.registry.isolation.client import RunnerFailed, zygote
from apps.registry.models import (
    ArtifactFormat,
    ModelVersion,
    PredictGrant,
    RegisteredModel,
    Stage,
    VersionStatus,
)
from apps.registry.schemas import check_feature_order, check_input_schema
from apps.registry.selectors import model_versions_writable_check
from apps.registry.servable import (
    InProcessModel,
    IsolatedModel,
    Servable,
    runner_failure_record,
)
from apps.registry.trust import deployment_globals, global_name_problem, loadable_globals

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
    """Register a model owned by `actor` (its first owner); audited `model.created`. Conflict
    if the name is taken."""
    if RegisteredModel.objects.filter(name=name).exists():
        raise Conflict("A model with this name already exists.")
    model = RegisteredModel(name=name, description=description, created_by=actor)
    model.full_clean(validate_unique=False)  # uniqueness: the constraint, race-free, below
    try:
        with transaction.atomic():
            model.save()
            model.owners.add(actor)
            audit_event_record("model.created", actor=actor, target=model, request=request)
    except IntegrityError:
        # A concurrent request registered the same name between our check and our insert.
        raise Conflict("A model with this name already exists.") from None
    return model


MAX_EXTRA_GLOBALS = 200
UNSET: Any = object()


def _check_extra_globals(names: Any) -> list[str]:
    if not isinstance(names, list) or len(names) > MAX_EXTRA_GLOBALS:
        raise _invalid("extra_allowed_globals", f"must be a list of at most {MAX_EXTRA_GLOBALS}")
    details = [
        {"path": f"extra_allowed_globals/{index}", "message": problem}
        for index, name in enumerate(names)
        if (problem := global_name_problem(name))
    ]
    if details:
        raise InvalidInput(f"extra_allowed_globals: {details[0]['message']}", details=details)
    return sorted(set(names))


def _people(usernames: Any) -> list[Any]:
    if not isinstance(usernames, list) or not all(isinstance(name, str) for name in usernames):
        raise _invalid("owners", "must be a list of usernames")
    users = list(get_user_model().objects.filter(username__in=usernames, is_active=True))
    unknown = sorted(set(usernames) - {user.username for user in users})
    if unknown:
        # Named back to the admin who sent them; no other user's existence is revealed.
        raise _invalid("owners", "no active user with the username(s): " + ", ".join(unknown))
    return users


def registered_model_update(
    *,
    actor: Any,
    model: RegisteredModel,
    description: str = UNSET,
    owners: Sequence[str] = UNSET,
    owner_group: str | None = UNSET,
    require_signed_artifacts: bool = UNSET,
    extra_allowed_globals: list[str] = UNSET,
    request: HttpRequest | None = None,
) -> RegisteredModel:
    """Change what is given; audited `model.updated` with the fields changed (owners by
    pseudonym). Owners, owner group and the allow-list extension are admins' to change; the
    description and turning signatures on are also the owners'; turning signatures off is
    admins' only. Removing a name from the extension quarantines the versions that import it
    (apps.registry.scanning). PermissionDenied, InvalidInput (unknown users or group, a name
    that can never be allowed)."""
    from apps.registry.scanning import model_version_quarantine  # it builds on this module

    admin = may(actor, "models.admin")
    if not admin and (
        owners is not UNSET
        or owner_group is not UNSET
        or extra_allowed_globals is not UNSET
        or (require_signed_artifacts is False and model.require_signed_artifacts)
    ):
        raise PermissionDenied(
            "Only admins change a model's owners and allow-list, or stop requiring signatures."
        )
    if not admin:
        model_versions_writable_check(actor=actor, model=model)
    people = None if owners is UNSET else _people(owners)
    group = None
    if owner_group is not UNSET and owner_group is not None:
        group = Group.objects.filter(name=owner_group).first()
        if group is None:
            raise _invalid("owner_group", "no group with this name")
    extension = (
        None if extra_allowed_globals is UNSET else _check_extra_globals(extra_allowed_globals)
    )

    with transaction.atomic():
        locked = RegisteredModel.objects.select_for_update().get(pk=model.pk)
        changed: dict[str, Any] = {}
        if description is not UNSET and description != locked.description:
            locked.description = description
            changed["description"] = True
        if require_signed_artifacts is not UNSET and (
            require_signed_artifacts != locked.require_signed_artifacts
        ):
            locked.require_signed_artifacts = require_signed_artifacts
            changed["require_signed_artifacts"] = require_signed_artifacts
        if owner_group is not UNSET and locked.owner_group_id != (group.pk if group else None):
            locked.owner_group = group
            changed["owner_group"] = group.name if group else None
        removed: set[str] = set()
        if extension is not None and extension != sorted(locked.extra_allowed_globals):
            removed = set(locked.extra_allowed_globals) - set(extension)
            locked.extra_allowed_globals = extension
            changed["extra_allowed_globals"] = extension
        locked.full_clean()
        locked.save()
        if people is not None and {u.pk for u in people} != set(
            locked.owners.values_list("pk", flat=True)
        ):
            locked.owners.set(people)
            changed["owners"] = sorted(pseudonym_for(person) for person in people)
        if not changed:
            return locked
        audit_event_record(
            "model.updated",
            actor=actor,
            target=locked,
            details={"fields": sorted(changed), **changed},
            request=request,
        )
        if removed:
            allowed = deployment_globals() | set(locked.extra_allowed_globals)
            for version in ModelVersion.objects.filter(model=locked, status=VersionStatus.OK):
                lost = sorted(set(version.allowed_globals) - allowed)
                if lost:
                    model_version_quarantine(
                        actor=actor,
                        version=version,
                        reason="imports globals no longer allowed: " + ", ".join(lost),
                        request=request,
                    )
    return locked


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
    signature: str | None = None,
    request: HttpRequest | None = None,
) -> ModelVersion:
    """Analyse `artifact`, encrypt it under a fresh data key, store the ciphertext in the
    default storage and record the next version (staging); audited `model.version.created`
    (and `model.version.signature_verified` for a signed one).

    Only the model's owners and admins upload (PermissionDenied). A `signature` (an OpenSSF
    model-signing bundle) is verified before anything else reads the artifact. A joblib
    artifact's pickle is walked, never run, and every global it would import must be on the
    deployment's list, or on the model's own extension and signed by a trusted publisher; the
    globals are recorded, and loading imports no other. A `skops` artifact is inspected for
    BULWARK_SKOPS_TRUSTED_TYPES. Every refusal of the artifact itself is InvalidInput (path
    `artifact` or `signature`) recorded as `model.version.rejected`. Raises InvalidInput for
    a bad format, schema, feature order, DP pair, watermark or an empty artifact too.

    `artifact` should be the in-memory upload itself (it is read twice, never copied or written
    to disk in plaintext). All or nothing: on any failure no row and no stored file remain. A
    watermark set is stored sealed and its verification queued after commit.
    """
    from apps.registry import watermarks  # it builds on this module's verified load

    model_versions_writable_check(actor=actor, model=model)
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
    data = _artifact_bytes(artifact)
    if not data:
        raise _invalid("artifact", "is empty")
    analysis = None
    try:
        # Before the model's lock is taken: the signature and the walk read the whole file.
        analysis = artifact_analyse(data=data, format=format, signature=signature)
        master_keys = master_keys_from_secrets()
        version = _store(
            actor=actor,
            model=model,
            artifact=artifact,
            analysis=analysis,
            master_keys=master_keys,
            fields={
                "input_schema": schema,
                "feature_order": order,
                "max_batch": max_batch,
                "dp_epsilon": dp_epsilon,
                "dp_sensitivity": dp_sensitivity,
            },
            watermark_set=watermark_set,
            request=request,
        )
    except ArtifactDenied as denial:
        artifact_rejection_record(
            actor=actor,
            model=model,
            denial=denial,
            sha256=analysis.sha256 if analysis else None,
            request=request,
        )
        raise denial.error from None
    return version


def _store(
    *,
    actor: Any,
    model: RegisteredModel,
    artifact: IO[bytes],
    analysis: Any,
    master_keys: Any,
    fields: dict[str, Any],
    watermark_set: dict[str, Any] | None,
    request: HttpRequest | None,
) -> ModelVersion:
    from apps.registry import watermarks

    name = _artifact_name()
    try:
        with transaction.atomic():
            # The model's row lock serialises uploads to one model, so numbers are 1, 2, 3...
            # without gaps or duplicates. It is held while encrypting because the number is
            # bound into the ciphertext; uploads to other models are not blocked. The model's
            # rules (signatures, its allow-list extension) are read under the same lock.
            locked = RegisteredModel.objects.select_for_update().get(pk=model.pk)
            artifact_policy_check(model=locked, analysis=analysis)
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
                format=analysis.format,
                size=encrypted.size,
                sha256=encrypted.sha256,
                wrapped_data_key=encrypted.wrapped_key,
                master_key_id=encrypted.master_key_id,
                artifact=name,
                watermark_sealed=""
                if watermark_set is None
                else watermarks.watermark_seal(watermark_set),
                created_by=actor,
                allowed_globals=sorted(analysis.globals),
                signed_by=analysis.publisher,
                signature=analysis.signature,
                **fields,
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
                    "globals": len(analysis.globals),
                    "globals_beyond_default": list(analysis.beyond),
                    "signed_by": analysis.publisher.name if analysis.publisher else None,
                },
                request=request,
            )
            if analysis.publisher is not None:
                audit_event_record(
                    "model.version.signature_verified",
                    actor=actor,
                    target=version,
                    details={
                        "publisher": analysis.publisher.name,
                        "key_id": analysis.publisher.key_id,
                        "sha256": version.sha256,
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
    version to the stage it is in changes nothing and records nothing. Only the model's owners
    and admins move versions; security officers may archive any (PermissionDenied). A
    quarantined version is never promoted (VersionQuarantined, 409)."""
    if stage not in Stage.values:
        raise _invalid("stage", f"must be one of {', '.join(Stage.values)}")
    # Lock the model first, then its versions: every stage change of one model takes the locks
    # in this order, so two concurrent promotions queue instead of deadlocking or both winning.
    model = RegisteredModel.objects.select_for_update().get(pk=version.model_id)
    model_versions_writable_check(actor=actor, model=model, archive=stage == Stage.ARCHIVED)
    version = ModelVersion.objects.select_for_update().select_related("model").get(pk=version.pk)
    if stage == Stage.PRODUCTION and version.status == VersionStatus.QUARANTINED:
        raise VersionQuarantined()
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
