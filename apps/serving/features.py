"""A model's outputs as JSON values (its inputs: apps.registry.features)."""

from __future__ import annotations

import math
from typing import Any

from apps.serving.errors import PredictionFailed


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
