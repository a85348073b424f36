"""The one model every scenario serves: a scikit-learn regressor trained here, on synthetic
pricing data (features price, demand, inventory), and the request bodies sent to it.

Trained on a plain array (no feature names), so `predict` takes rows in FEATURES order and
never warns; every server below builds that array the same way. Nothing is downloaded.
"""

from __future__ import annotations

import io
import json
import os
from functools import cache
from typing import Any

FEATURES = ("price", "demand", "inventory")
MODEL_ENV = "BENCH_PREDICT_MODEL"  # path of the joblib dump the bench servers load

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {name: {"type": "number"} for name in FEATURES},
    "required": list(FEATURES),
    "additionalProperties": False,
}


def train(*, samples: int = 5000, seed: int = 7) -> Any:
    """A gradient-boosted regressor (100 trees of depth 3) of the price that sells the stock:
    up with demand, down with inventory, plus noise."""
    import numpy as np
    from sklearn.ensemble import GradientBoostingRegressor

    rng = np.random.default_rng(seed)
    price = rng.uniform(10, 200, samples)
    demand = rng.uniform(0, 1000, samples)
    inventory = rng.uniform(0, 500, samples)
    target = price * (1 + 0.3 * np.tanh((demand - inventory) / 300)) + rng.normal(0, 2, samples)
    features = np.column_stack([price, demand, inventory])
    return GradientBoostingRegressor(n_estimators=100, max_depth=3, random_state=0).fit(
        features, target
    )


def dumped(model: Any) -> bytes:
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


@cache
def served_model() -> Any:
    """The model of the bench servers (bare, naive, FastAPI), loaded once per process."""
    import joblib

    return joblib.load(os.environ[MODEL_ENV])


def feature_array(inputs: list[dict[str, Any]]) -> Any:
    """Rows (dicts) as the model's feature matrix: what the baselines do instead of a schema."""
    import numpy as np

    return np.array([[row[name] for name in FEATURES] for row in inputs], dtype=float)


def rows(count: int, *, seed: int | str) -> list[dict[str, float]]:
    """`count` plausible input rows; a different seed gives different values."""
    import random

    rng = random.Random(seed)  # noqa: S311  # test data, reproducible by seed
    return [
        {
            "price": round(rng.uniform(10, 200), 2),
            "demand": round(rng.uniform(0, 1000), 1),
            "inventory": float(rng.randint(0, 500)),
        }
        for _ in range(count)
    ]


def body(count: int, *, seed: int | str) -> bytes:
    """A predict request body, compact JSON, as `{"inputs": [row, ...]}`."""
    return json.dumps({"inputs": rows(count, seed=seed)}, separators=(",", ":")).encode()
