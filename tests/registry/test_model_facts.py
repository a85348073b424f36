"""A model fitted with named features gets its rows as a plain array when it only checks the
names (a single estimator), and as a DataFrame when it may select columns by them."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from apps.registry.artifacts.loading import describe, predict_values

FRAME = pd.DataFrame({"inventory": [1.0, 2.0, 3.0, 4.0], "price": [10.0, 20.0, 30.0, 45.0]})
TARGET = [1.0, 2.0, 3.0, 4.5]
ROWS = [[3.0, 25.0], [1.5, 12.0]]  # in the fitted order: inventory, price


def test_a_single_estimator_takes_an_array_and_never_compares_names() -> None:
    fitted = LinearRegression().fit(FRAME, TARGET)
    expected = fitted.predict(pd.DataFrame(ROWS, columns=list(FRAME.columns)))
    facts = describe(fitted)
    assert facts.feature_names == ("inventory", "price")  # the order rows are built in
    assert facts.named_input is False and facts.input_names is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "X does not have valid feature names" would raise
        outputs = predict_values(fitted, ROWS, facts.input_names)
    assert outputs == list(expected)


def test_a_pipeline_that_picks_columns_by_name_keeps_its_dataframe() -> None:
    picking = ColumnTransformer([("scaled", StandardScaler(), ["price"])], remainder="drop")
    fitted = make_pipeline(picking, LinearRegression()).fit(FRAME, TARGET)
    expected = fitted.predict(pd.DataFrame(ROWS, columns=list(FRAME.columns)))
    facts = describe(fitted)
    assert facts.named_input is True and facts.input_names == ("inventory", "price")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outputs = predict_values(fitted, ROWS, facts.input_names)
    assert outputs == list(expected)


def test_a_model_without_names_is_unchanged() -> None:
    fitted = LinearRegression().fit(np.array(FRAME), TARGET)
    facts = describe(fitted)
    assert facts.feature_names is None and facts.named_input is False
    assert predict_values(fitted, ROWS, facts.input_names) == list(fitted.predict(np.array(ROWS)))
