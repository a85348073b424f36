"""Input rows as a model's feature matrix: one place for predict and watermark verification."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def feature_names_of(model: Any) -> tuple[str, ...] | None:
    """The feature names a scikit-learn model was fitted with, or None (fitted on arrays)."""
    names = getattr(model, "feature_names_in_", None)
    return None if names is None else tuple(str(name) for name in names)


def feature_matrix(
    rows: Sequence[dict[str, Any]],
    feature_order: Sequence[str],
    feature_names: Sequence[str] | None = None,
) -> Any:
    """Columns in the version's feature order. A model fitted with named features gets a
    DataFrame with those names, in the order it was fitted with (API.md: the names decide,
    so scikit-learn checks them instead of warning on every call). KeyError names a feature
    the model needs that a row lacks."""
    if feature_names is not None:
        import pandas as pd  # only models fitted on DataFrames need it

        matrix = [[row[name] for name in feature_names] for row in rows]
        return pd.DataFrame(matrix, columns=list(feature_names))
    return np.array([[row[name] for name in feature_order] for row in rows])
