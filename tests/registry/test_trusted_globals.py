"""The default allow-list of pickle globals: it covers the estimators and pipelines teams
commonly serve (fitted here on every run, so a library upgrade that renames something fails
this test rather than a user's upload), each loads through the restricted unpickler and
predicts as it was fitted, and nothing on it reaches the OS, the interpreter or the import
system."""

from __future__ import annotations

import importlib
import io
import pickle
import warnings
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from django.core.exceptions import ImproperlyConfigured
from sklearn import (
    calibration,
    cluster,
    compose,
    decomposition,
    dummy,
    ensemble,
    feature_extraction,
    feature_selection,
    gaussian_process,
    impute,
    linear_model,
    multiclass,
    naive_bayes,
    neighbors,
    neural_network,
    pipeline,
    preprocessing,
    svm,
    tree,
)
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from apps.registry.artifacts.pickle_load import load_joblib
from apps.registry.artifacts.pickle_scan import joblib_globals
from apps.registry.artifacts.trusted import DEFAULT_TRUSTED_GLOBALS, never_trusted
from apps.registry.trust import _deployment, global_name_problem

DEFAULT = frozenset(DEFAULT_TRUSTED_GLOBALS)
RNG = np.random.default_rng(0)
X = RNG.normal(size=(60, 4))
Y_NUMBER = X @ [1.0, -2.0, 0.5, 0.0] + RNG.normal(size=60) * 0.1
Y_CLASS = np.digitize(Y_NUMBER, [-1.0, 1.0])
FRAME = pd.DataFrame(X, columns=list("abcd")).assign(kind=RNG.choice(["x", "y", "z"], 60))
TEXTS = ["good film", "bad plot", "great cast", "awful pace", "good pace"] * 6
TEXT_LABELS = [1, 0, 1, 0, 1] * 6


def regressors() -> list[Any]:
    return [
        linear_model.LinearRegression(),
        linear_model.Ridge(),
        linear_model.Lasso(),
        linear_model.ElasticNet(),
        linear_model.SGDRegressor(),
        linear_model.HuberRegressor(),
        linear_model.BayesianRidge(),
        tree.DecisionTreeRegressor(max_depth=3),
        ensemble.RandomForestRegressor(n_estimators=3),
        ensemble.ExtraTreesRegressor(n_estimators=3),
        ensemble.GradientBoostingRegressor(n_estimators=3),
        ensemble.AdaBoostRegressor(n_estimators=3),
        ensemble.BaggingRegressor(n_estimators=3),
        ensemble.StackingRegressor([("r", linear_model.Ridge())]),
        ensemble.VotingRegressor(
            [("r", linear_model.Ridge()), ("t", tree.DecisionTreeRegressor())]
        ),
        svm.SVR(),
        svm.LinearSVR(),
        neighbors.KNeighborsRegressor(algorithm="brute"),
        neural_network.MLPRegressor(max_iter=30),
        gaussian_process.GaussianProcessRegressor(),
        dummy.DummyRegressor(),
        compose.TransformedTargetRegressor(
            regressor=linear_model.Ridge(), transformer=preprocessing.StandardScaler()
        ),
        pipeline.make_pipeline(
            impute.SimpleImputer(), preprocessing.StandardScaler(), linear_model.Ridge()
        ),
        pipeline.make_pipeline(preprocessing.PolynomialFeatures(), linear_model.Ridge()),
        pipeline.make_pipeline(decomposition.PCA(2), linear_model.Ridge()),
    ]


def classifiers() -> list[Any]:
    return [
        linear_model.LogisticRegression(),
        linear_model.SGDClassifier(),
        linear_model.RidgeClassifier(),
        tree.DecisionTreeClassifier(max_depth=3),
        ensemble.RandomForestClassifier(n_estimators=3),
        ensemble.GradientBoostingClassifier(n_estimators=3),
        ensemble.IsolationForest(n_estimators=3),
        svm.SVC(probability=True),
        svm.LinearSVC(),
        naive_bayes.GaussianNB(),
        neural_network.MLPClassifier(max_iter=30),
        calibration.CalibratedClassifierCV(linear_model.LogisticRegression(), cv=3),
        multiclass.OneVsRestClassifier(linear_model.LogisticRegression()),
        ensemble.VotingClassifier(
            [("l", linear_model.LogisticRegression()), ("t", tree.DecisionTreeClassifier())],
            voting="soft",
        ),
        pipeline.make_pipeline(
            feature_selection.SelectKBest(k=2), preprocessing.MinMaxScaler(), svm.SVC()
        ),
        cluster.KMeans(n_clusters=3, n_init=2),
    ]


def fitted() -> list[tuple[str, Any, Any]]:
    """(name, fitted model, input to predict on)."""
    models: list[tuple[str, Any, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for model in regressors():
            models.append((type(model).__name__, model.fit(X, Y_NUMBER), X))
        for model in classifiers():
            models.append((type(model).__name__, model.fit(X, Y_CLASS), X))
        columns = compose.ColumnTransformer(
            [
                ("numbers", preprocessing.RobustScaler(), list("abcd")),
                ("kind", preprocessing.OneHotEncoder(handle_unknown="ignore"), ["kind"]),
            ]
        )
        with_frame = pipeline.make_pipeline(columns, ensemble.RandomForestClassifier(3))
        models.append(("ColumnTransformer", with_frame.fit(FRAME, Y_CLASS), FRAME))
        text = pipeline.make_pipeline(TfidfVectorizer(), linear_model.LogisticRegression())
        models.append(("Tfidf", text.fit(TEXTS, TEXT_LABELS), TEXTS))
        counts = pipeline.make_pipeline(CountVectorizer(), naive_bayes.MultinomialNB())
        models.append(("Counts", counts.fit(TEXTS, TEXT_LABELS), TEXTS))
        dicts = [{"a": 1.0, "b": "x"}, {"a": 2.0, "b": "y"}] * 5
        vector = pipeline.make_pipeline(
            feature_extraction.DictVectorizer(), linear_model.LogisticRegression()
        )
        models.append(("DictVectorizer", vector.fit(dicts, [0, 1] * 5), dicts))
    return models


CATALOGUE = fitted()


def dumped(model: Any, **options: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer, **options)
    return buffer.getvalue()


def predictions(model: Any, data: Any) -> np.ndarray:
    return np.asarray(model.predict(data))


@pytest.mark.parametrize(("name", "model", "data"), CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_a_common_model_needs_only_default_globals_and_loads_as_fitted(name, model, data):
    content = dumped(model)
    found = joblib_globals(content, limit=1 << 30)
    assert found <= DEFAULT, sorted(found - DEFAULT)

    loaded = load_joblib(content, allowed=found, limit=1 << 30)

    np.testing.assert_array_equal(predictions(loaded, data), predictions(model, data))


@pytest.mark.parametrize("protocol", range(6))
def test_every_protocol_and_compression_and_plain_pickle_stay_on_the_list(protocol):
    name, model, data = CATALOGUE[10]  # gradient boosting: trees, losses, random states
    assert name == "GradientBoostingRegressor"
    for content in (
        dumped(model, protocol=protocol),
        dumped(model, protocol=protocol, compress=3),
        pickle.dumps(model, protocol=protocol),
    ):
        found = joblib_globals(content, limit=1 << 30)
        assert found <= DEFAULT, sorted(found - DEFAULT)
        loaded = load_joblib(content, allowed=found, limit=1 << 30)
        np.testing.assert_array_equal(predictions(loaded, data), predictions(model, data))


@pytest.mark.parametrize(
    ("model", "missing"),
    [
        (neighbors.KNeighborsRegressor(algorithm="kd_tree"), "sklearn.neighbors._kd_tree.KDTree"),
        (
            neighbors.KNeighborsRegressor(algorithm="ball_tree"),
            "sklearn.neighbors._ball_tree.BallTree",
        ),
        (
            ensemble.HistGradientBoostingRegressor(max_iter=3),
            "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        ),
    ],
)
def test_models_that_follow_unchecked_indices_are_not_on_the_default_list(model, missing):
    found = joblib_globals(dumped(model.fit(X, Y_NUMBER)), limit=1 << 30)
    assert missing in found - DEFAULT


def test_every_default_entry_exists_here_and_none_is_ever_dangerous():
    assert len(set(DEFAULT_TRUSTED_GLOBALS)) == len(DEFAULT_TRUSTED_GLOBALS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core, numpy 1's spelling
        for name in DEFAULT_TRUSTED_GLOBALS:
            module, _, attribute = name.rpartition(".")
            assert hasattr(importlib.import_module(module), attribute), name
            assert not never_trusted(name), name
            assert global_name_problem(name) is None, name


@pytest.mark.parametrize(
    "name",
    [
        "builtins.eval",
        "builtins.exec",
        "builtins.open",
        "builtins.getattr",
        "builtins.__import__",
        "os.system",
        "posix.system",
        "subprocess.Popen",
        "sys.modules",
        "importlib.import_module",
        "pickle.loads",
        "marshal.loads",
        "types.FunctionType",
        "functools.partial",
        "operator.attrgetter",
        "io.open",
        "numpy.load",
        "joblib.load",
        "apps.registry.version_loading.model_version_load",
        "controlplane.settings.SECRET_KEY",
    ],
)
def test_names_that_reach_the_os_or_the_interpreter_can_never_be_allowed(name):
    assert never_trusted(name) and name not in DEFAULT
    assert "never allowed" in (global_name_problem(name) or "")
    with pytest.raises(ImproperlyConfigured, match="PICKLE_TRUSTED_GLOBALS_EXTRA"):
        _deployment((name,))
