"""State changes of the registry: models and their owners, versions (analysed, optionally
signed, encrypted on arrival), stages and predict grants. The one verified way to load a
version's artifact is apps.registry.version_loading."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterator, Sequence
from typing import IO, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max

from apps.audit.services import audit_event_record
from apps.audit.subjects import pseudonym_for
from apps.core.errors import Conflict, InvalidInput, PermissionDenied
from apps.core.permissions import may
from apps.registry import watermarks
from apps.registry.analysis import (
    ArtifactDenied,
    artifact_analyse,
    artifact_policy_check,
    artifact_rejection_record,
)
from apps.registry.envelope import (
    EncryptedArtifact,
    encrypt_artifact,
    master_keys_from_secrets,
)
from apps.registry.errors import VersionQuarantined
from apps.registry.models import (
    ArtifactFormat,
    ModelVersion,
    PredictGrant,
    RegisteredModel,
    Stage,
    VersionStatus,
)
from apps.registry.scanning import model_version_quarantine
from apps.registry.schemas import check_feature_order, check_input_schema
from apps.registry.selectors import model_versions_writable_check
from apps.registry.trust import deployment_globals, global_name_problem
from apps.registry.version_checks import dp_pair_refusal

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


def registered_model_create(*, actor: Any, name: str, description: str = "") -> RegisteredModel:
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
            audit_event_record("model.created", actor=actor, target=model)
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
) -> RegisteredModel:
    """Change what is given; audited `model.updated` with the fields changed (owners by
    pseudonym). Owners, owner group and the allow-list extension are admins' to change; the
    description and turning signatures on are also the owners'; turning signatures off is
    admins' only. Removing a name from the extension quarantines the versions that import it
    (apps.registry.scanning). PermissionDenied, InvalidInput (unknown users or group, a name
    that can never be allowed)."""
    _update_permission_check(
        actor=actor,
        model=model,
        owners=owners,
        owner_group=owner_group,
        require_signed_artifacts=require_signed_artifacts,
        extra_allowed_globals=extra_allowed_globals,
    )
    people = None if owners is UNSET else _people(owners)
    group = None if owner_group is UNSET else _owner_group(owner_group)
    extension = (
        None if extra_allowed_globals is UNSET else _check_extra_globals(extra_allowed_globals)
    )

    with transaction.atomic():
        locked = RegisteredModel.objects.select_for_update().get(pk=model.pk)
        changed, removed = _fields_change(
            locked,
            description=description,
            require_signed_artifacts=require_signed_artifacts,
            owner_group=owner_group,
            group=group,
            extension=extension,
        )
        locked.full_clean()
        locked.save()
        changed.update(_owners_change(locked, people))
        if not changed:
            return locked
        audit_event_record(
            "model.updated",
            actor=actor,
            target=locked,
            details={"fields": sorted(changed), **changed},
        )
        if removed:
            _quarantine_disallowed(actor=actor, model=locked)
    return locked


def _update_permission_check(
    *,
    actor: Any,
    model: RegisteredModel,
    owners: Sequence[str],
    owner_group: str | None,
    require_signed_artifacts: bool,
    extra_allowed_globals: list[str],
) -> None:
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


def _owner_group(name: str | None) -> Group | None:
    if name is None:
        return None
    group = Group.objects.filter(name=name).first()
    if group is None:
        raise _invalid("owner_group", "no group with this name")
    return group


def _fields_change(
    locked: RegisteredModel,
    *,
    description: str,
    require_signed_artifacts: bool,
    owner_group: str | None,
    group: Group | None,
    extension: list[str] | None,
) -> tuple[dict[str, Any], set[str]]:
    """Set on `locked` what differs (unsaved): the fields changed for the audit, and the names
    removed from the allow-list extension."""
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
    return changed, removed


def _owners_change(locked: RegisteredModel, people: list[Any] | None) -> dict[str, Any]:
    """Set the owners to `people` if they differ; what changed, for the audit."""
    if people is not None and {u.pk for u in people} != set(
        locked.owners.values_list("pk", flat=True)
    ):
        locked.owners.set(people)
        return {"owners": sorted(pseudonym_for(person) for person in people)}
    return {}


def _quarantine_disallowed(*, actor: Any, model: RegisteredModel) -> None:
    """Quarantine the model's usable versions that import a global no longer allowed."""
    allowed = deployment_globals() | set(model.extra_allowed_globals)
    for version in ModelVersion.objects.filter(model=model, status=VersionStatus.OK):
        lost = sorted(set(version.allowed_globals) - allowed)
        if lost:
            model_version_quarantine(
                actor=actor,
                version=version,
                reason="imports globals no longer allowed: " + ", ".join(lost),
            )


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
    model_versions_writable_check(actor=actor, model=model)
    schema = check_input_schema(input_schema)
    order = check_feature_order(feature_order, schema)
    watermark_set = (
        None if watermark is None else watermarks.watermark_check(watermark, input_schema=schema)
    )
    if (dp_epsilon is None) != (dp_sensitivity is None):
        raise _invalid("dp_epsilon", "give both dp_epsilon and dp_sensitivity, or neither")
    if dp_epsilon is not None and dp_sensitivity is not None:
        # Refused now rather than as a failed prediction (the check is serving's).
        refusal = dp_pair_refusal(
            epsilon=dp_epsilon, sensitivity=dp_sensitivity, max_batch=max_batch
        )
        if refusal is not None:
            raise _invalid("dp_epsilon", refusal)
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
        )
    except ArtifactDenied as denial:
        artifact_rejection_record(
            actor=actor,
            model=model,
            denial=denial,
            sha256=analysis.sha256 if analysis else None,
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
) -> ModelVersion:
    name = _artifact_name()
    try:
        with transaction.atomic():
            # The model's row lock serialises uploads to one model, so numbers are 1, 2, 3...
            # without gaps or duplicates. It is held while encrypting because the number is
            # bound into the ciphertext; uploads to other models are not blocked. The model's
            # rules (signatures, its allow-list extension) are read under the same lock.
            locked = RegisteredModel.objects.select_for_update().get(pk=model.pk)
            artifact_policy_check(model=locked, analysis=analysis)
            number = _next_version_number(locked)
            encrypted = encrypt_artifact(
                artifact, model=locked.name, version=number, master_keys=master_keys
            )
            name = default_storage.save(name, _CiphertextFile(encrypted.ciphertext, name))
            version = _version_save(
                actor=actor,
                model=locked,
                number=number,
                encrypted=encrypted,
                name=name,
                analysis=analysis,
                fields=fields,
                watermark_set=watermark_set,
            )
            _version_created_record(
                actor=actor, version=version, analysis=analysis, watermark_set=watermark_set
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


def _next_version_number(locked: RegisteredModel) -> int:
    latest = ModelVersion.objects.filter(model=locked).aggregate(top=Max("number"))["top"]
    return int(latest or 0) + 1


def _version_save(
    *,
    actor: Any,
    model: RegisteredModel,
    number: int,
    encrypted: EncryptedArtifact,
    name: str,
    analysis: Any,
    fields: dict[str, Any],
    watermark_set: dict[str, Any] | None,
) -> ModelVersion:
    version = ModelVersion(
        model=model,
        number=number,
        stage=Stage.STAGING,
        format=analysis.format,
        size=encrypted.size,
        sha256=encrypted.sha256,
        wrapped_data_key=encrypted.wrapped_key,
        master_key_id=encrypted.master_key_id,
        artifact=name,
        watermark_sealed="" if watermark_set is None else watermarks.watermark_seal(watermark_set),
        created_by=actor,
        allowed_globals=sorted(analysis.globals),
        signed_by=analysis.publisher,
        signature=analysis.signature,
        **fields,
    )
    version.full_clean()
    version.save()
    return version


def _version_created_record(
    *,
    actor: Any,
    version: ModelVersion,
    analysis: Any,
    watermark_set: dict[str, Any] | None,
) -> None:
    """Audits `model.version.created`, then `model.version.signature_verified` if signed."""
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
        )


def _move(*, actor: Any, version: ModelVersion, stage: str) -> None:
    previous = version.stage
    version.stage = stage
    version.full_clean()
    version.save(update_fields=["stage", "updated_at"])
    audit_event_record(
        "model.version.staged",
        actor=actor,
        target=version,
        details={"from": previous, "to": stage},
    )


@transaction.atomic
def model_version_stage(*, actor: Any, version: ModelVersion, stage: str) -> ModelVersion:
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
            _move(actor=actor, version=current, stage=Stage.STAGING)
    _move(actor=actor, version=version, stage=stage)
    return version


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
            )
    except IntegrityError:
        # The unique constraints, race-free: this grantee already holds predict on the model.
        raise Conflict("This user or group already holds predict on this model.") from None
    return grant


@transaction.atomic
def predict_grant_delete(*, actor: Any, grant: PredictGrant) -> None:
    """Withdraw a grant; audited `model.grant.deleted`. Keys already issued are not changed
    here; rotating one re-checks its owner's grants."""
    details = {"grantee": _grantee(grant), "grant": str(grant.pk)}
    grant.delete()
    audit_event_record("model.grant.deleted", actor=actor, target=grant.model, details=details)
