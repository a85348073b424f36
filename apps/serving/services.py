"""The predict path after authentication (IP allow-list and signature are checked by the
API-key authenticator): rate limit → grant or scope → version → input → privacy budget →
predict → audit. Cheap refusals come first; nothing expensive runs for a caller who will be
refused. Each step raises its docs/api.md error; the view records the refusal."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from django.conf import settings

from apps.apikeys.errors import ScopeMissing
from apps.apikeys.validation import SCOPE_ALL_MODELS
from apps.audit.services import audit_event_commit
from apps.core.errors import PermissionDenied, RateLimited
from apps.registry.artifacts.loading import PredictionRefused
from apps.registry.features import feature_values
from apps.registry.selectors import version_with_model
from apps.registry.version_loading import model_version_load
from apps.serving import limits
from apps.serving.catalog import ServedVersion, catalog
from apps.serving.errors import PredictionFailed, PrivacyBudgetExhausted
from apps.serving.features import plain_outputs
from apps.serving.model_cache import LoadedModel, models
from apps.serving.privacy.budget import budget_spend
from apps.serving.privacy.laplace import NonFiniteOutput, is_numeric_output, privatise
from apps.serving.validation import validate_body, validate_rows


@dataclass
class PredictCall:
    """One call's state, kept by the view so that a refusal at any step is audited with what
    was known by then."""

    user: Any
    api_key: Any
    model: str
    version_number: int | None
    started: float = field(default_factory=time.perf_counter)
    verdict: limits.Verdict | None = None
    gate: limits.GateResult | None = None  # the API-key gate's early read and count, if any
    version: ServedVersion | None = None
    rows: list[dict[str, Any]] | None = None

    @property
    def actor(self) -> Any:
        return self.api_key if self.api_key is not None else self.user

    @property
    def budget_holder(self) -> str:
        if self.api_key is not None:
            return f"key:{self.api_key.public_id}"
        return f"user:{self.user.pk}"


def predict_rate_limit(call: PredictCall) -> None:
    """Count the call (RateLimited beyond the caller's rate) and catch up with the serving
    generation that came back in the same round trip."""
    call.verdict = limits.predict_count(user=call.user, api_key=call.api_key, gate=call.gate)
    if not call.verdict.window.allowed:
        raise RateLimited(
            "You have used up this window's predict calls.",
            retry_after=call.verdict.window.reset_in,
        )
    catalog.sync(call.verdict.generation)


def predict_authorize(call: PredictCall) -> None:
    """The key's scope and its owner's grant, or the JWT user's grant, on this model."""
    if call.api_key is not None:
        scopes = call.api_key.scopes
        if SCOPE_ALL_MODELS not in scopes and f"predict:{call.model}" not in scopes:
            raise ScopeMissing("This API key has no predict scope for this model.")
        if not catalog.may_predict(call.user, call.model):
            raise ScopeMissing("This API key's owner no longer holds predict on this model.")
        return
    if not catalog.may_predict(call.user, call.model):
        raise PermissionDenied("You do not hold predict on this model.")


def _load(version: ServedVersion) -> Callable[[], LoadedModel]:
    def load() -> LoadedModel:
        row = version_with_model(version.pk)
        return model_version_load(version=row)

    return load


def predict_run(call: PredictCall, data: Any) -> dict[str, Any]:
    """Resolve, validate, spend the privacy budget, predict, audit; the response body."""
    version = call.version = catalog.resolve(call.model, call.version_number)
    rows = call.rows = validate_body(data, max_batch=version.max_batch)
    validate_rows(rows, version.validator, version.feature_order, version.row_check)

    spend = None
    if version.dp_epsilon is not None:
        spend = budget_spend(
            call.budget_holder, version.dp_epsilon, daily_budget=settings.PRIVACY_DAILY_EPSILON
        )
        if not spend.allowed:
            raise PrivacyBudgetExhausted(retry_after=spend.reset_in)

    loaded = models.get(version.pk, _load(version))
    try:
        values = feature_values(rows, version.feature_order, loaded.facts.feature_names)
    except KeyError as exc:  # the model was fitted on a feature the schema does not require
        raise PredictionFailed(
            f"The model needs the field {exc.args[0]!r}, which the rows do not all carry.",
            details=[{"path": "inputs", "message": f"missing field {exc.args[0]!r}"}],
        ) from None
    try:
        outputs = loaded.predict(values)
    except PredictionRefused as exc:  # the model refused these values
        raise PredictionFailed(details=[{"path": "inputs", "message": exc.kind}]) from None
    predictions = plain_outputs(outputs)

    body: dict[str, Any] = {"model": version.model, "version": version.number}
    noisy = False
    if spend is not None and not loaded.facts.classifier and is_numeric_output(predictions):
        try:
            # A spend means dp_epsilon is set, and a constraint sets dp_sensitivity with it.
            predictions = privatise(
                predictions,
                epsilon=cast(float, version.dp_epsilon),
                sensitivity=cast(float, version.dp_sensitivity),
            )
        except NonFiniteOutput:  # plain_outputs refuses these first; the mechanism re-checks
            raise PredictionFailed(
                details=[{"path": "inputs", "message": "non-finite output"}]
            ) from None
        noisy = True
    body["predictions"] = predictions
    if spend is not None:
        body["privacy"] = {
            "epsilon_spent": spend.epsilon_spent,
            "epsilon_remaining": spend.epsilon_remaining,
            "noise": "laplace" if noisy else "none: labels are returned as they are",
        }

    # Durable before the 2xx leaves: committed here (with other workers' events when the host
    # has an audit writer), and AuditUnavailable (503) if it cannot be.
    audit_event_commit(
        "predict.succeeded",
        actor=call.actor,
        target=version,
        details=_details(call, extra={"dp": spend is not None}),
    )
    return body


def _details(call: PredictCall, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {"model": call.model}
    if call.version is not None:
        details["version"] = call.version.number
    if call.rows is not None:
        details["rows"] = len(call.rows)
        details["inputs"] = call.rows  # the audit keeps their digest only, never them
    details["latency_ms"] = round((time.perf_counter() - call.started) * 1000, 2)
    details.update(extra or {})
    return details


def predict_rejection_record(
    call: PredictCall | None,
    *,
    model: str,
    code: str,
    status: int,
    reason: str | None,
    actor: Any,
) -> None:
    """The one `predict.rejected` event of a refused call."""
    if call is None:
        details: dict[str, Any] = {"model": model}
    else:
        details = _details(call)
    details["code"] = code
    if reason:
        details["reason"] = reason
    target = call.version if call is not None and call.version is not None else ("model", model)
    audit_event_commit(
        "predict.rejected",
        actor=actor,
        target=target,
        outcome="denied" if status in {403, 429} else "failure",
        details=details,
    )
