"""Input rows as the values a model predicts on, in its column order: one place for predict
and watermark verification. The model (here or in a runner) turns them into its matrix
(apps.registry.artifacts.loading.predict_values)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def feature_values(
    rows: Sequence[dict[str, Any]],
    feature_order: Sequence[str],
    feature_names: Sequence[str] | None = None,
) -> list[list[Any]]:
    """Each row's values in the version's feature order, or, for a model fitted with named
    features, in the order it was fitted with (docs/api.md: the names decide, so scikit-learn
    checks them instead of warning on every call). KeyError names a feature the model needs
    that a row lacks."""
    columns = feature_order if feature_names is None else feature_names
    return [[row[name] for name in columns] for row in rows]
