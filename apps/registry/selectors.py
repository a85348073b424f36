"""Reads of the registry. Every holder of `models.read` sees every model's metadata; writes to
a model's versions belong to its owners (users or a group) and admins, and security officers
may archive any version (containment)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet

from apps.core.errors import NotFound, PermissionDenied
from apps.core.permissions import may
from apps.core.timestamps import iso
from apps.registry.models import (
    MAX_BATCH_LIMIT,
    MODEL_NAME_PATTERN,
    ArtifactFormat,
    ModelVersion,
    PredictGrant,
    Publisher,
    RegisteredModel,
    Stage,
    VersionStatus,
    WatermarkKind,
    WatermarkResult,
    WatermarkStatus,
)
from apps.registry.trust import beyond_deployment


def registered_model_list(*, actor: Any) -> QuerySet[RegisteredModel]:
    return RegisteredModel.objects.select_related("created_by", "owner_group").prefetch_related(
        "owners"
    )


def registered_model_get(*, actor: Any, name: str) -> RegisteredModel:
    model = registered_model_list(actor=actor).filter(name=name).first()
    if model is None:
        raise NotFound("No model with this name.")
    return model


def model_version_list(*, actor: Any, model: RegisteredModel) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(model=model).select_related("model")


def model_version_get(*, actor: Any, model: RegisteredModel, number: int) -> ModelVersion:
    version = model_version_list(actor=actor, model=model).filter(number=number).first()
    if version is None:
        raise NotFound("No version with this number.")
    return version


def user_may_predict(user: Any, model_name: str) -> bool:
    """Whether `user` holds `predict` on the model named `model_name`: through a role with
    `predict.all_models`, or a grant to the user or to one of their groups. A model that does
    not exist is granted to nobody but those roles."""
    if may(user, "predict.all_models"):
        return True
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    return PredictGrant.objects.filter(
        Q(user=user) | Q(group__in=user.groups.all()), model__name=model_name
    ).exists()


def model_owned_by(user: Any, model: RegisteredModel) -> bool:
    """Whether `user` is one of `model`'s owners, directly or through its owner group."""
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    if model.owners.filter(pk=user.pk).exists():
        return True
    return model.owner_group_id is not None and user.groups.filter(pk=model.owner_group_id).exists()


def model_versions_writable_check(
    *, actor: Any, model: RegisteredModel, archive: bool = False
) -> None:
    """PermissionDenied unless `actor` may upload or stage `model`'s versions: an admin, or a
    holder of `models.write` who owns the model; to archive, a security officer too."""
    if may(actor, "models.admin") or (archive and may(actor, "models.archive_any")):
        return
    if may(actor, "models.write") and model_owned_by(actor, model):
        return
    raise PermissionDenied("Only this model's owners and admins may change its versions.")


def publisher_list(*, actor: Any) -> QuerySet[Publisher]:
    """Publishers whose signatures are trusted now (removed ones are kept, not listed)."""
    return Publisher.objects.filter(removed_at__isnull=True).order_by("name")


def publisher_get(*, actor: Any, publisher_id: Any) -> Publisher:
    publisher = publisher_list(actor=actor).filter(pk=publisher_id).first()
    if publisher is None:
        raise NotFound("No publisher with this id.")
    return publisher


def model_version_find(*, model_name: str, number: int) -> ModelVersion | None:
    """Any model's version by name and number, unscoped: for a containment, whose caller's
    right was checked by its own app (incidents.write)."""
    return (
        ModelVersion.objects.select_related("model")
        .filter(model__name=model_name, number=number)
        .first()
    )


def model_versions_stored() -> Iterator[ModelVersion]:
    """Every version of every model, with its model, by model name and number (streamed)."""
    versions = ModelVersion.objects.select_related("model").order_by("model__name", "number")
    return versions.iterator()


def production_versions_verified_since(since: datetime) -> list[tuple[ModelVersion, bool]]:
    """The versions in production, by model name, each with whether a verification of its own
    watermark succeeded since `since`."""
    verified = ModelVersion.objects.filter(
        pk=OuterRef("pk"),
        watermark_results__kind=WatermarkKind.VERIFY,
        watermark_results__status=WatermarkStatus.SUCCEEDED,
        watermark_results__finished_at__gte=since,
    )
    production = (
        ModelVersion.objects.filter(stage=Stage.PRODUCTION)
        .select_related("model")
        .annotate(verified=Exists(verified))
        .order_by("model__name")
    )
    return [(version, bool(version.verified)) for version in production]


def predict_grants_of_group(group: Any) -> list[PredictGrant]:
    """The predict grants given to a group, with their models."""
    return list(PredictGrant.objects.filter(group=group).select_related("model", "group"))


def registered_model_exists(name: str) -> bool:
    return RegisteredModel.objects.filter(name=name).exists()


def watermark_result_is_self_check(result: Any) -> bool:
    """Whether a watermark result is a version checked against its own watermark (not a
    suspect endpoint checked for ours)."""
    return bool(result.kind == WatermarkKind.VERIFY)


def predict_grants_of_user(user: Any) -> list[PredictGrant]:
    """The predict grants given to a user themself (not through a group), with their models."""
    return list(PredictGrant.objects.filter(user=user).select_related("model", "group"))


# --- For serving's catalog (docs/architecture.md "A predict request"): one query each ---------


def version_in_production(model_name: str) -> ModelVersion | None:
    """The model's production version, with its model, unless it is quarantined (its
    quarantine moves it out of production; the status check holds even for a row written
    otherwise)."""
    return (
        ModelVersion.objects.select_related("model")
        .filter(model__name=model_name, stage=Stage.PRODUCTION, status=VersionStatus.OK)
        .first()
    )


def version_numbered(model_name: str, number: int) -> ModelVersion | None:
    """The model's version with this number, with its model, whatever its stage."""
    return (
        ModelVersion.objects.select_related("model")
        .filter(model__name=model_name, number=number)
        .first()
    )


def version_with_model(pk: Any) -> ModelVersion:
    return ModelVersion.objects.select_related("model").get(pk=pk)


def versions_not_archived(pks: Iterable[Any]) -> set[Any]:
    """Those of `pks` whose versions still exist and are not archived."""
    return set(
        ModelVersion.objects.filter(pk__in=list(pks))
        .exclude(stage=Stage.ARCHIVED)
        .values_list("pk", flat=True)
    )


def subject_predict_grants(user: Any) -> list[dict[str, Any]]:
    grants = (
        PredictGrant.objects.filter(Q(user=user) | Q(granted_by=user))
        .select_related("model", "group")
        .order_by("created_at")
    )
    return [
        {
            "model": grant.model.name,
            "created_at": iso(grant.created_at),
            "you_are": [
                role
                for role, held in (
                    ("grantee", grant.user_id == user.pk),
                    ("granted_by", grant.granted_by_id == user.pk),
                )
                if held
            ],
            "grantee_group": grant.group.name if grant.group is not None else None,
        }
        for grant in grants
    ]


def subject_models(user: Any) -> dict[str, list[dict[str, Any]]]:
    return {
        "owned": [
            {"name": name, "description": description, "created_at": iso(created)}
            for name, description, created in RegisteredModel.objects.filter(owners=user)
            .order_by("name")
            .values_list("name", "description", "created_at")
        ],
        "registered": [
            {"name": name, "created_at": iso(created)}
            for name, created in RegisteredModel.objects.filter(created_by=user)
            .order_by("name")
            .values_list("name", "created_at")
        ],
        "versions_uploaded": [
            {"model": name, "version": number, "stage": stage, "created_at": iso(created)}
            for name, number, stage, created in ModelVersion.objects.filter(created_by=user)
            .order_by("model__name", "number")
            .values_list("model__name", "number", "stage", "created_at")
        ],
    }


def versions_needing_attention(*, limit: int) -> tuple[list[ModelVersion], dict[str, int]]:
    """Versions not archived that are quarantined or carry no publisher's signature: the
    latest `limit`, with their models, and how many of each kind there are."""
    live = ModelVersion.objects.exclude(stage=Stage.ARCHIVED)
    quarantined = Q(status=VersionStatus.QUARANTINED)
    unsigned = Q(signed_by__isnull=True)
    counts = live.aggregate(
        quarantined=Count("pk", filter=quarantined), unsigned=Count("pk", filter=unsigned)
    )
    versions = list(
        live.filter(quarantined | unsigned)
        .select_related("model", "signed_by")
        .order_by("-created_at")[:limit]
    )
    return versions, counts


# --- For the console's models pages (apps.console.views.models) ---------------------------


def model_upload_rules() -> dict[str, Any]:
    """What a form for the registry's writes must know to refuse early what the services
    refuse: the model name's pattern, the artifact formats (value, label), the largest
    max_batch and the upload limit in bytes."""
    return {
        "name_pattern": MODEL_NAME_PATTERN,
        "formats": [(str(value), str(label)) for value, label in ArtifactFormat.choices],
        "max_batch_limit": MAX_BATCH_LIMIT,
        "artifact_bytes": int(settings.BULWARK_MAX_ARTIFACT_BYTES),
    }


def registered_model_stage_summaries(
    *, actor: Any, models: Iterable[RegisteredModel]
) -> dict[Any, dict[str, Any]]:
    """For each of `models` (a page of them), by primary key: its production version's number
    (or None), how many versions it has, how many in staging, the newest in staging, and how
    many are quarantined. One query, whatever the number of models."""
    ids = [model.pk for model in models]
    staging = Q(stage=Stage.STAGING)
    rows = (
        ModelVersion.objects.filter(model_id__in=ids)
        .order_by()
        .values("model_id")
        .annotate(
            versions=Count("pk"),
            production=Max("number", filter=Q(stage=Stage.PRODUCTION)),
            staging=Count("pk", filter=staging),
            newest_staging=Max("number", filter=staging),
            quarantined=Count("pk", filter=Q(status=VersionStatus.QUARANTINED)),
        )
    )
    empty = {
        "versions": 0,
        "production": None,
        "staging": 0,
        "newest_staging": None,
        "quarantined": 0,
    }
    summaries: dict[Any, dict[str, Any]] = {pk: dict(empty) for pk in ids}
    for row in rows:
        summaries[row["model_id"]] = {key: row[key] for key in empty}  # type: ignore[literal-required]  # the keys annotated above
    return summaries


def model_version_latest(*, actor: Any, model: RegisteredModel) -> ModelVersion | None:
    """The model's newest version (its schema is what the next upload most likely keeps)."""
    return model_version_list(actor=actor, model=model).order_by("-number").first()


def model_version_rollback_pair(
    *, actor: Any, model: RegisteredModel
) -> tuple[ModelVersion | None, ModelVersion | None]:
    """(the model's production version, the version a roll back puts in its place). The
    second is the newest version numbered below the production one that is in staging and not
    quarantined: in the usual order of releases, the production version before it, which its
    promotion moved back to staging (an archived version stays archived: archiving is how a
    version is withdrawn). (None, None) without a production version; (production, None)
    when nothing older can take its place."""
    production = model_version_list(actor=actor, model=model).filter(stage=Stage.PRODUCTION).first()
    if production is None:
        return None, None
    previous = (
        model_version_list(actor=actor, model=model)
        .filter(
            number__lt=production.number,
            stage=Stage.STAGING,
            status=VersionStatus.OK,
        )
        .order_by("-number")
        .first()
    )
    return production, previous


def model_version_facts(*, actor: Any, version: ModelVersion) -> dict[str, Any]:
    """What a version's page shows beyond its row: the globals its artifact imports beyond
    the deployment's list, its signer and whether that publisher is still trusted, and its
    watermark (none, set but never checked, or the last check's outcome). Never the
    watermark set itself (sealed) or any key material."""
    signer = version.signed_by
    last = (
        WatermarkResult.objects.filter(version=version, kind=WatermarkKind.VERIFY)
        .order_by("-created_at")
        .first()
    )
    return {
        "globals_count": len(version.allowed_globals),
        "globals_beyond_default": beyond_deployment(version.allowed_globals),
        "signed_by": signer.name if signer is not None else None,
        "signer_key_id": signer.key_id if signer is not None else None,
        "signer_removed": bool(signer is not None and signer.removed_at is not None),
        "watermark_set": bool(version.watermark_sealed),
        "watermark_last": last,
    }
