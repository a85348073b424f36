"""Input rows as the model's feature matrix, and its outputs as JSON values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from apps.serving.errors import PredictionFailed


def feature_matrix(
    rows: Sequence[dict[str, Any]],
    feature_order: Sequence[str],
    feature_names: Sequence[str] | None = None,
) -> Any:
    """Columns in the version's feature order. A model fitted with named features gets a
    DataFrame with those names, so scikit-learn checks them instead of warning per call."""
    matrix = [[row[name] for name in feature_order] for row in rows]
    if feature_names is not None:
        import pandas as pd  # only models fitted on DataFrames need it

        return pd.DataFrame(matrix, columns=list(feature_order))
    return np.array(matrix)


def plain_outputs(outputs: Any) -> list[Any]:
    """The model's outputs as JSON values. Non-finite numbers are refused, not sent (JSON has
    no NaN, and a model that produces one for a valid row is not to be trusted with it)."""
    values = outputs.tolist() if hasattr(outputs, "tolist") else list(outputs)
    for index, value in enumerate(values):
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, float) and not math.isfinite(item):
                raise PredictionFailed(
                    f"The model produced a non-finite output for inputs[{index}].",
                    details=[{"path": f"inputs/{index}", "message": "non-finite output"}],
                )
    return values
