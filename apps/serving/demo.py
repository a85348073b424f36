"""The demo pricing model: trained at bootstrap on synthetic data (nothing is downloaded).

Features: price (currency units), demand (an index from 0 to 1), inventory (units in stock); the
target is the units expected to sell this week. Used by `bootstrap_demo`, the README's tour,
the tests and the benchmarks, so all of them serve the same model.
"""

from __future__ import annotations

import io
from typing import Any

import joblib
import numpy as np
from sklearn.ensemble import GradientBoostingRegressor

PRICING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "price": {"type": "number", "minimum": 1, "maximum": 10000},
        "demand": {"type": "number", "minimum": 0, "maximum": 1},
        "inventory": {"type": "integer", "minimum": 0, "maximum": 1000000},
    },
    "required": ["price", "demand", "inventory"],
    "additionalProperties": False,
}
FEATURES = ("price", "demand", "inventory")


def pricing_data(rows: int = 2000, *, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    price = rng.uniform(5, 500, rows)
    demand = rng.uniform(0, 1, rows)
    inventory = rng.integers(0, 5000, rows).astype(float)
    # Sales fall with price, rise with demand, and cannot exceed the stock.
    expected = 400 * demand * np.exp(-price / 150) + rng.normal(0, 5, rows)
    sold = np.clip(np.minimum(expected, inventory), 0, None)
    return np.column_stack([price, demand, inventory]), sold


def train_pricing_model(*, seed: int = 7) -> GradientBoostingRegressor:
    features, target = pricing_data(seed=seed)
    return GradientBoostingRegressor(n_estimators=60, max_depth=3, random_state=seed).fit(
        features, target
    )


def pricing_artifact(*, seed: int = 7) -> bytes:
    """The trained model as a joblib file, in memory."""
    buffer = io.BytesIO()
    joblib.dump(train_pricing_model(seed=seed), buffer)
    return buffer.getvalue()
