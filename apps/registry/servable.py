"""A loaded model as the serving side and the watermark jobs use it, wherever it runs: in
this process (MODEL_ISOLATION=inprocess, the embedded default) or in a model runner that
holds no secret (apps.registry.isolation, production). Both take rows as values in column
order and give JSON-ready outputs, so callers never hold the estimator itself."""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import numpy as np
from django.conf import settings
from django.db import transaction

from apps.audit.services import audit_event_record
from apps.audit.subjects import Subject
from apps.registry.artifacts.loading import (
    RAW_FROM,
    ModelFacts,
    PredictionRefused,
    numeric_array_header,
    predict_values,
)
from apps.registry.errors import ModelFailed, ModelRunnerFailed
from apps.registry.isolation.client import Runner, RunnerFailed

logger = logging.getLogger("bulwark.registry")

# Retire a runner before its CPU-seconds limit would kill it in the middle of a call.
RETIRE_AT = 0.9


class Servable(Protocol):
    facts: ModelFacts
    size: int

    @property
    def expired(self) -> bool: ...

    def predict(self, values: list[list[Any]]) -> list[Any]:
        """Outputs, one per row. PredictionRefused when the model refuses the values,
        ModelFailed / ModelRunnerFailed (503) for a failure of the model or its runner."""
        ...

    def close(self) -> None: ...


class InProcessModel:
    def __init__(self, estimator: Any, *, facts: ModelFacts, size: int) -> None:
        self.estimator = estimator
        self.facts = facts
        self.size = size
        self.expired = False

    def predict(self, values: list[list[Any]]) -> list[Any]:
        try:
            return predict_values(self.estimator, values, self.facts.input_names)
        except PredictionRefused:
            raise
        except Exception as exc:
            logger.warning("model failed while predicting", extra={"error": type(exc).__name__})
            raise ModelFailed() from None

    def close(self) -> None:
        self.estimator = None


class IsolatedModel:
    """A model in its own runner; calls are one at a time (the runner serves one)."""

    def __init__(self, runner: Runner, *, facts: ModelFacts, size: int, subject: Subject) -> None:
        self.runner = runner
        self.facts = facts
        self.size = size
        self.subject = subject
        self._lock = threading.Lock()

    @property
    def expired(self) -> bool:
        """Dead, or close to its CPU limit: to be replaced before the next call."""
        used = self.runner.cpu / settings.MODEL_RUNNER_CPU_SECONDS
        return not self.runner.alive or used >= RETIRE_AT

    def predict(self, values: list[list[Any]]) -> list[Any]:
        # Rows cross as raw bytes when numpy makes a numeric array of them (the matrix the
        # model would get in-process); a model that needs a DataFrame with its feature names
        # gets it built in the runner from the values themselves.
        rows: Any = values
        if not self.facts.named_input and len(values) * len(values[0]) >= RAW_FROM:
            matrix = np.array(values)
            if numeric_array_header(matrix) is not None:
                rows = matrix
        with self._lock:
            try:
                reply = self.runner.predict(rows, timeout=settings.MODEL_RUNNER_TIMEOUT)
            except RunnerFailed as exc:
                runner_failure_record(subject=self.subject, reason=exc.reason)
                raise ModelRunnerFailed() from None
        if reply["ok"]:
            outputs: list[Any] = reply["outputs"]
            return outputs
        if "refused" in reply:
            raise PredictionRefused(str(reply["refused"])[:100])
        logger.warning("model failed while predicting", extra={"error": str(reply["error"])[:100]})
        raise ModelFailed()

    def close(self) -> None:
        self.runner.close()


def runner_failure_record(*, subject: Subject, reason: str) -> None:
    """`model.runner.failed`, committed on its own: the failing call rolls back its own work."""
    logger.error("model runner failed", extra={"version": subject.ref, "reason": reason})
    try:
        with transaction.atomic():
            audit_event_record(
                "model.runner.failed",
                actor=None,
                target=subject,
                outcome="failure",
                details={"reason": reason},
            )
    except Exception:  # the refusal stands even when it cannot be recorded
        logger.exception("runner failure could not be audited")
