"""Models that misbehave on purpose (importable, so their pickles load in tests)."""

from __future__ import annotations

from typing import Any

import numpy as np


class NanModel:
    def predict(self, matrix: Any) -> np.ndarray:
        return np.full(len(matrix), np.nan)


class RefusingModel:
    def predict(self, matrix: Any) -> np.ndarray:
        raise ValueError("Input contains values this model cannot take: /srv/models/secret.py")


class NamedFeatureModel:
    """Fitted (as scikit-learn would record it) on a feature the schema leaves optional."""

    feature_names_in_ = np.array(["price", "demand", "inventory", "season"])

    def predict(self, matrix: Any) -> np.ndarray:
        return np.zeros(len(matrix))
