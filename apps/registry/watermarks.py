"""Watermark verification: a version may carry a watermark set (inputs, expected labels,
threshold), sealed at rest. A job loads the version the verified way, predicts the inputs and
succeeds when the share of predictions equal to the labels reaches the threshold. A second job
sends the same inputs to a suspect prediction endpoint (allow-listed hosts only) to support an
ownership claim. Every job is a WatermarkResult row; its id is the API's job id."""

from __future__ import annotations

import http.client
import json
import logging
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import numpy as np
from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from jsonschema import Draft202012Validator

from apps.audit.services import audit_event_record
from apps.core.errors import Conflict, InvalidInput, NotFound
from apps.core.sealing import SealError, seal, unseal
from apps.registry.artifacts.loading import PredictionRefused
from apps.registry.errors import ArtifactRefused, ModelFailed, ModelRunnerFailed
from apps.registry.features import feature_values
from apps.registry.models import (
    WATERMARK_PURPOSE,
    ModelVersion,
    Stage,
    WatermarkKind,
    WatermarkResult,
    WatermarkStatus,
)
from apps.registry.version_loading import model_version_load

logger = logging.getLogger("bulwark.registry")

MAX_WATERMARK_ROWS = 10_000
MAX_SUSPECT_RESPONSE_BYTES = 4 * 1024 * 1024
SYSTEM_ACTOR = "registry.verify_watermark"
# The Celery tasks' names (apps.registry.tasks; the scheduled one is in CELERY_BEAT_SCHEDULE).
VERIFY_TASK = "registry.verify_watermark"
SUSPECT_TASK = "registry.check_suspect_endpoint"


def _invalid(path: str, message: str) -> InvalidInput:
    return InvalidInput(f"{path}: {message}", details=[{"path": path, "message": message}])


def watermark_check(watermark: Any, *, input_schema: dict[str, Any]) -> dict[str, Any]:
    """The watermark set `{"inputs", "labels", "threshold"}` if valid: inputs and labels
    non-empty lists of the same length, every input row valid against the version's schema,
    threshold in (0, 1]. Else InvalidInput naming the first problem."""
    if not isinstance(watermark, dict) or set(watermark) != {"inputs", "labels", "threshold"}:
        raise _invalid("watermark", 'must be an object {"inputs", "labels", "threshold"}')
    inputs, labels, threshold = watermark["inputs"], watermark["labels"], watermark["threshold"]
    if not isinstance(inputs, list) or not inputs or len(inputs) > MAX_WATERMARK_ROWS:
        raise _invalid("watermark/inputs", f"must be a list of 1 to {MAX_WATERMARK_ROWS} rows")
    if not isinstance(labels, list) or len(labels) != len(inputs):
        raise _invalid("watermark/labels", "must be a list as long as watermark/inputs")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not math.isfinite(threshold)
        or not 0 < threshold <= 1
    ):
        raise _invalid("watermark/threshold", "must be a number greater than 0, at most 1")
    validator = Draft202012Validator(input_schema)
    for index, row in enumerate(inputs):
        error = next(iter(validator.iter_errors(row)), None)
        if error is not None:
            raise _invalid(f"watermark/inputs/{index}", error.message)
    for index, label in enumerate(labels):
        if not isinstance(label, str | int | float) or isinstance(label, bool):
            raise _invalid(f"watermark/labels/{index}", "must be a string or a number")
    return {"inputs": inputs, "labels": labels, "threshold": float(threshold)}


def watermark_seal(watermark: dict[str, Any]) -> str:
    return seal(json.dumps(watermark, separators=(",", ":")), purpose=WATERMARK_PURPOSE)


def watermark_unseal(version: ModelVersion) -> dict[str, Any]:
    """The version's watermark set; SealError if it cannot be opened."""
    if not version.watermark_sealed:
        raise SealError("the version has no watermark")
    return json.loads(unseal(version.watermark_sealed, purpose=WATERMARK_PURPOSE))


def _queue(result: WatermarkResult) -> None:
    # By name: the tasks (apps.registry.tasks, registered by RegistryConfig.ready) call into
    # this module, not the other way round.
    name = SUSPECT_TASK if result.kind == WatermarkKind.SUSPECT else VERIFY_TASK
    task = current_app.tasks[name]
    result_id = str(result.id)
    transaction.on_commit(lambda: task.delay(result_id))


def watermark_job_create(
    *, version: ModelVersion, kind: str = WatermarkKind.VERIFY, suspect_url: str = ""
) -> WatermarkResult:
    """A pending job for `version`, queued once the caller's transaction commits."""
    result = WatermarkResult(version=version, kind=kind, suspect_url=suspect_url)
    result.full_clean()
    result.save()
    _queue(result)
    return result


@transaction.atomic
def watermark_verification_request(*, actor: Any, version: ModelVersion) -> WatermarkResult:
    """Queue a verification of `version`; Conflict if it carries no watermark."""
    if not version.watermark_sealed:
        raise Conflict("This version has no watermark set: upload one with the version.")
    result = watermark_job_create(version=version)
    audit_event_record(
        "model.version.watermark_requested",
        actor=actor,
        target=version,
        details={"job_id": str(result.id), "kind": result.kind},
    )
    return result


@transaction.atomic
def suspect_endpoint_check_request(
    *, actor: Any, version: ModelVersion, url: str
) -> WatermarkResult:
    """Queue a check of the prediction endpoint at `url` against `version`'s watermark. The
    host allow-list is enforced by the job itself, before any connection."""
    if not version.watermark_sealed:
        raise Conflict("This version has no watermark set: upload one with the version.")
    result = watermark_job_create(version=version, kind=WatermarkKind.SUSPECT, suspect_url=url)
    audit_event_record(
        "model.version.watermark_requested",
        actor=actor,
        target=version,
        details={"job_id": str(result.id), "kind": result.kind, "url": url},
    )
    return result


def watermark_verify_scheduled() -> int:
    """Queue a verification of every production version that carries a watermark (the
    daily beat job); returns how many were queued."""
    versions = (
        ModelVersion.objects.filter(stage=Stage.PRODUCTION)
        .exclude(watermark_sealed="")
        .select_related("model")
    )
    count = 0
    for version in versions:
        with transaction.atomic():
            watermark_job_create(version=version)
        count += 1
    return count


def _start(result_id: UUID | str) -> WatermarkResult | None:
    """Claim a pending job (running); None if it already ran or is running elsewhere."""
    with transaction.atomic():
        result = (
            WatermarkResult.objects.select_for_update()
            .select_related("version__model")
            .get(pk=result_id)
        )
        if result.status != WatermarkStatus.PENDING:
            return None
        result.status = WatermarkStatus.RUNNING
        result.started_at = timezone.now()
        result.save(update_fields=["status", "started_at", "updated_at"])
    return result


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def agreement_of(predictions: Sequence[Any], labels: Sequence[Any]) -> float:
    """The share of predictions equal to their labels (classifiers: exact equality)."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    equal = sum(1 for got, want in zip(predictions, labels, strict=True) if _plain(got) == want)
    return equal / len(labels)


def _finish(
    result: WatermarkResult,
    *,
    agreement: float | None,
    threshold: float | None,
    reason: str = "",
) -> WatermarkResult:
    succeeded = agreement is not None and threshold is not None and agreement >= threshold
    result.status = WatermarkStatus.SUCCEEDED if succeeded else WatermarkStatus.FAILED
    result.agreement = agreement
    result.threshold = threshold
    result.reason = reason[:500]
    result.finished_at = timezone.now()
    with transaction.atomic():
        result.full_clean()
        result.save()
        audit_event_record(
            "model.version.watermark_verified",
            actor=SYSTEM_ACTOR,
            target=result.version,
            outcome="success" if succeeded else "failure",
            details={
                "job_id": str(result.id),
                "kind": result.kind,
                "agreement": agreement,
                "threshold": threshold,
                "reason": result.reason,
                **({"url": result.suspect_url} if result.suspect_url else {}),
            },
        )
        if not succeeded:
            # In the same transaction: the failure and whatever the handlers record (an
            # incident, later) commit together or not at all.
            for path in settings.WATERMARK_FAILURE_HANDLERS:
                import_string(path)(result=result)
    return result


def watermark_verify(*, result_id: UUID | str) -> WatermarkResult:
    """Run a pending verification job: load the version (integrity checked; a refused load
    fails the job), predict its watermark inputs, succeed when agreement >= threshold.
    Audited `model.version.watermark_verified`; a failure also calls
    WATERMARK_FAILURE_HANDLERS. A job that is not pending is returned unchanged."""
    result = _start(result_id)
    if result is None:
        return WatermarkResult.objects.get(pk=result_id)
    version = result.version
    try:
        watermark = watermark_unseal(version)
    except (SealError, ValueError):
        return _finish(result, agreement=None, threshold=None, reason="watermark unreadable")
    threshold = watermark["threshold"]
    try:
        model = model_version_load(version=version)  # audits its own refusal
    except ArtifactRefused:
        return _finish(
            result, agreement=None, threshold=threshold, reason="artifact refused: integrity"
        )
    except ModelRunnerFailed:
        return _finish(result, agreement=None, threshold=threshold, reason="model runner failed")
    try:
        values = feature_values(
            watermark["inputs"], version.feature_order, model.facts.feature_names
        )
        predictions = model.predict(values)
        agreement = agreement_of(predictions, watermark["labels"])
    except (KeyError, ValueError, PredictionRefused, ModelFailed, ModelRunnerFailed) as exc:
        # A model that cannot predict its own watermark fails the job.
        logger.warning("watermark prediction failed", extra={"error": type(exc).__name__})
        return _finish(
            result,
            agreement=None,
            threshold=threshold,
            reason=f"prediction failed: {type(exc).__name__}",
        )
    finally:
        model.close()  # a job's model is used once: its runner stops here
    reason = "" if agreement >= threshold else "agreement below threshold"
    return _finish(result, agreement=agreement, threshold=threshold, reason=reason)


class SuspectRefused(Exception):
    """The suspect URL may not be contacted (scheme or host not allowed)."""


def _allowed_target(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of `url` if its host is on WATERMARK_SUSPECT_HOSTS."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise SuspectRefused("only http and https URLs with a host are allowed")
    host = parts.hostname.lower()
    if host not in settings.WATERMARK_SUSPECT_HOSTS:
        raise SuspectRefused(f"host {host!r} is not on WATERMARK_SUSPECT_HOSTS")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise SuspectRefused("the URL's port is not valid") from None
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return parts.scheme, host, port, path


def _post_json(url: str, body: dict[str, Any]) -> Any:
    """POST `body` to an allow-listed URL: connect within the connect time-out, each read
    within the read time-out, no redirects followed, no proxy, the answer size bounded."""
    scheme, host, port, path = _allowed_target(url)
    connection_class = (
        http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(host, port, timeout=settings.WATERMARK_SUSPECT_CONNECT_TIMEOUT)
    try:
        connection.connect()
        if connection.sock is None:
            raise OSError("no connection")
        connection.sock.settimeout(settings.WATERMARK_SUSPECT_READ_TIMEOUT)
        payload = json.dumps(body).encode()
        connection.request(
            "POST",
            path,
            body=payload,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        response = connection.getresponse()
        if response.status != 200:
            raise ValueError(f"the endpoint answered HTTP {response.status}")
        raw = response.read(MAX_SUSPECT_RESPONSE_BYTES + 1)
        if len(raw) > MAX_SUSPECT_RESPONSE_BYTES:
            raise ValueError("the endpoint's answer is too large")
        return json.loads(raw)
    finally:
        connection.close()


def suspect_endpoint_check(*, result_id: UUID | str) -> WatermarkResult:
    """Run a pending suspect-endpoint job: POST the watermark inputs as `{"inputs": [...]}`
    to the job's URL and compare the answer's `predictions` with the labels. A URL whose host
    is not allow-listed fails the job without any connection being opened."""
    result = _start(result_id)
    if result is None:
        return WatermarkResult.objects.get(pk=result_id)
    try:
        _allowed_target(result.suspect_url)
    except SuspectRefused as exc:
        return _finish(result, agreement=None, threshold=None, reason=f"refused: {exc}")
    try:
        watermark = watermark_unseal(result.version)
    except (SealError, ValueError):
        return _finish(result, agreement=None, threshold=None, reason="watermark unreadable")
    threshold = watermark["threshold"]
    try:
        answer = _post_json(result.suspect_url, {"inputs": watermark["inputs"]})
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        if not isinstance(predictions, list):
            raise ValueError("the answer has no `predictions` list")
        agreement = agreement_of(predictions, watermark["labels"])
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return _finish(
            result, agreement=None, threshold=threshold, reason=f"endpoint failed: {exc}"
        )
    reason = "" if agreement >= threshold else "agreement below threshold"
    return _finish(result, agreement=agreement, threshold=threshold, reason=reason)


def watermark_result_get(*, actor: Any, job_id: UUID | str) -> WatermarkResult:
    """A job by id (every holder of `models.read` sees every model's jobs); NotFound else."""
    result = WatermarkResult.objects.filter(pk=job_id).first()
    if result is None:
        raise NotFound("No job with this id.")
    return result
