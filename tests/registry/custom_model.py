"""A team's own model type: not on the deployment's allow-list, so its artifacts load only
when signed by a trusted publisher and the model's owners had an admin allow it by name."""

from __future__ import annotations

from typing import Any

import numpy as np

NAME = "tests.registry.custom_model.ClippedSum"


class ClippedSum:
    """Predicts the sum of a row's features, clipped to [low, high]."""

    def __init__(self, low: float = 0.0, high: float = 10.0) -> None:
        self.low, self.high = low, high

    def predict(self, matrix: Any) -> np.ndarray:
        return np.clip(np.asarray(matrix, dtype=float).sum(axis=1), self.low, self.high)
