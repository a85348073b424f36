"""`format=skops`: an upload is inspected for untrusted types without being loaded; the verified
load decrypts and checks first, then lets skops build only trusted types, then checks trees."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import skops.io
import skops.io._persist
from sklearn.ensemble import GradientBoostingClassifier, RandomForestRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from apps.registry.errors import ArtifactRefused
from apps.registry.formats import DEFAULT_SKOPS_TRUSTED_TYPES
from apps.registry.models import ModelVersion, WatermarkResult
from apps.registry.version_loading import model_version_load
from tests.registry.conftest import (
    assert_error,
    audit_events,
    make_model,
    stored_files,
    trained_bytes,
    upload,
)

RNG = np.random.default_rng(11)
INPUTS = RNG.uniform(0, 10, size=(120, 2))
TARGETS = INPUTS @ np.array([2.0, -1.0]) + 0.5
CLASSES = (INPUTS[:, 0] > INPUTS[:, 1]).astype(int)
PROBE = np.array([[1.0, 1.0], [7.0, 2.0]])


def skops_bytes(model: object) -> bytes:
    return skops.io.dumps(model)


def linear() -> LinearRegression:
    return LinearRegression().fit(INPUTS, TARGETS)


def forest() -> RandomForestRegressor:
    return RandomForestRegressor(n_estimators=5, max_depth=4, random_state=0).fit(INPUTS, TARGETS)


def boosting() -> GradientBoostingClassifier:
    return GradientBoostingClassifier(n_estimators=5, random_state=0).fit(INPUTS, CLASSES)


def scaled_logistic() -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(INPUTS, CLASSES)


def upload_skops(client: Any, content: bytes, **fields: Any) -> Any:
    return upload(client, "pricing", content, format="skops", **fields)


@pytest.fixture
def engineer(api_client: Any, actors: dict[str, Any], media_root: Any) -> Any:
    make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])
    return api_client


@pytest.fixture
def skops_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call into skops's loaders and into its schema reader (which every entry point,
    get_untrusted_types included, goes through before it parses anything); still loads."""
    calls: list[str] = []

    def spy(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return real(*args, **kwargs)

        return recorded

    monkeypatch.setattr(skops.io, "load", spy("skops.io.load", skops.io.load))
    monkeypatch.setattr(skops.io, "loads", spy("skops.io.loads", skops.io.loads))
    monkeypatch.setattr(
        skops.io._persist, "read_schema", spy("read_schema", skops.io._persist.read_schema)
    )
    return calls


@pytest.mark.django_db
def test_a_skops_version_uploads_loads_and_predicts(
    engineer, media_root, no_temp_files, skops_calls, settings
):
    # In this process, so the spies see the load (a runner loads the same way: below).
    settings.MODEL_ISOLATION = "inprocess"
    model = linear()
    plaintext = skops_bytes(model)

    response = upload_skops(engineer, plaintext)

    assert response.status_code == 201, response.content
    assert response.json()["format"] == "skops"
    version = ModelVersion.objects.get()
    assert version.format == "skops" and version.size == len(plaintext)
    [stored] = stored_files(media_root)
    assert b"schema.json" not in stored.read_bytes()  # ciphertext only
    assert skops_calls == ["read_schema"]  # the upload's inspection; nothing loaded
    skops_calls.clear()

    loaded = model_version_load(version=version)

    assert skops_calls == ["skops.io.load", "read_schema"]  # never the pickle loader
    np.testing.assert_allclose(loaded.predict(PROBE.tolist()), model.predict(PROBE))
    listed = engineer.get("/api/v1/models/pricing/versions").json()["results"]
    assert [item["format"] for item in listed] == ["skops"]
    [event] = audit_events("model.version.created")
    assert event["details"]["format"] == "skops"


@pytest.mark.django_db
@pytest.mark.parametrize("build", [forest, boosting, scaled_logistic])
def test_common_models_are_trusted_by_default_and_predict_as_trained(engineer, build):
    model = build()
    assert upload_skops(engineer, skops_bytes(model)).status_code == 201

    loaded = model_version_load(version=ModelVersion.objects.get())  # in a model runner

    np.testing.assert_allclose(loaded.predict(PROBE.tolist()), model.predict(PROBE))
    loaded.close()


@pytest.mark.django_db
def test_an_untrusted_type_is_refused_at_upload_and_nothing_is_stored(
    engineer, media_root, skops_calls
):
    # Nearest neighbours keep a k-d tree and a distance metric: not on the default list.
    model = KNeighborsRegressor(n_neighbors=3).fit(INPUTS, TARGETS)

    response = upload_skops(engineer, skops_bytes(model))

    error = assert_error(response, 400, "invalid_input")
    [detail] = error["details"]
    assert detail["path"] == "artifact"
    assert "sklearn.neighbors._kd_tree.KDTree" in detail["message"]
    assert "not trusted" in detail["message"]
    assert not ModelVersion.objects.exists() and stored_files(media_root) == []
    assert audit_events("model.version.created") == []
    assert "skops.io.load" not in skops_calls and "skops.io.loads" not in skops_calls


@pytest.mark.django_db
def test_the_trusted_list_is_the_setting(engineer, media_root, settings):
    settings.BULWARK_SKOPS_TRUSTED_TYPES = []
    error = assert_error(upload_skops(engineer, skops_bytes(forest())), 400, "invalid_input")
    assert "sklearn.tree._tree.Tree" in error["message"]
    settings.BULWARK_SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]
    assert upload_skops(engineer, skops_bytes(forest())).status_code == 201
    assert "sklearn.tree._tree.Tree" in DEFAULT_SKOPS_TRUSTED_TYPES


def deflated_zeros(size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("schema.json", b" " * size)
    return buffer.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "words"),
    [
        (trained_bytes(), "not a skops file"),  # a joblib pickle
        (b"PK\x03\x04 not really a zip", "not a skops file"),
        (deflated_zeros(100), "not a readable skops file"),  # a zip without a skops schema
    ],
)
def test_a_file_that_is_not_skops_is_refused(engineer, media_root, content, words):
    error = assert_error(upload_skops(engineer, content), 400, "invalid_input")
    assert error["details"][0]["path"] == "artifact" and words in error["message"]
    assert not ModelVersion.objects.exists() and stored_files(media_root) == []


@pytest.mark.django_db
def test_a_skops_file_unpacking_past_the_limit_is_refused_unread(
    engineer, media_root, settings, skops_calls
):
    settings.BULWARK_MAX_ARTIFACT_BYTES = 100_000
    bomb = deflated_zeros(1_000_000)
    assert len(bomb) < 10_000

    error = assert_error(upload_skops(engineer, bomb), 400, "invalid_input")

    assert "unpacks to 1000000 bytes" in error["message"]
    assert skops_calls == []  # refused before skops read its schema
    assert not ModelVersion.objects.exists() and stored_files(media_root) == []


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["pickle", "SKOPS", "skops "])
def test_an_unknown_format_is_refused(engineer, media_root, value):
    error = assert_error(
        upload(engineer, "pricing", skops_bytes(linear()), format=value), 400, "invalid_input"
    )
    assert [detail["path"] for detail in error["details"]] == ["format"]
    assert not ModelVersion.objects.exists() and stored_files(media_root) == []


@pytest.mark.django_db
def test_a_tampered_skops_ciphertext_is_refused_before_skops_parses_it(
    engineer, media_root, skops_calls, loader_calls
):
    upload_skops(engineer, skops_bytes(forest()))
    [stored] = stored_files(media_root)
    tampered = bytearray(stored.read_bytes())
    tampered[len(tampered) // 2] ^= 0x01
    stored.write_bytes(bytes(tampered))
    skops_calls.clear()

    with pytest.raises(ArtifactRefused):
        model_version_load(version=ModelVersion.objects.get())

    assert skops_calls == [] and loader_calls == []  # no loader, here or in a runner
    [event] = audit_events("model.version.rejected")
    assert event["outcome"] == "failure"
    assert event["details"] == {"reason": "tampered or truncated ciphertext"}


@pytest.mark.django_db
def test_a_type_no_longer_trusted_is_refused_at_load(engineer, settings, skops_calls):
    upload_skops(engineer, skops_bytes(forest()))
    settings.BULWARK_SKOPS_TRUSTED_TYPES = []

    with pytest.raises(ArtifactRefused):
        model_version_load(version=ModelVersion.objects.get())

    [event] = audit_events("model.version.rejected")
    assert event["details"]["reason"] == "untrusted types"
    assert "sklearn.tree._tree.Tree" in event["details"]["detail"]


def crafted(mutate: Callable[[Any], None]) -> bytes:
    model = forest()
    mutate(model)
    return skops_bytes(model)


def child_out_of_range(model: Any) -> None:
    model.estimators_[2].tree_.children_left[0] = 10_000


def child_loops_back(model: Any) -> None:
    tree = model.estimators_[0].tree_
    internal = int(np.flatnonzero(tree.children_left != -1)[-1])
    tree.children_right[internal] = 0


def feature_out_of_range(model: Any) -> None:
    model.estimators_[1].tree_.feature[0] = 500


def member_wider_than_forest(model: Any) -> None:
    # A sound tree of three features in a forest that passes two: it would read a third.
    third = RNG.normal(size=len(INPUTS))
    model.estimators_[0] = DecisionTreeRegressor(max_depth=2).fit(
        np.column_stack([INPUTS, third]), third
    )
    assert 2 in model.estimators_[0].tree_.feature


def width_not_a_number(model: Any) -> None:
    model.estimators_[0].n_features_in_ = "2"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "mutate",
    [
        child_out_of_range,
        child_loops_back,
        feature_out_of_range,
        member_wider_than_forest,
        width_not_a_number,
    ],
)
def test_a_crafted_tree_is_refused_at_load(engineer, mutate):
    # Only trusted types: skops accepts the file, and scikit-learn would follow the indices
    # without bounds checks at predict. The load checks the trees and hands out nothing.
    assert upload_skops(engineer, crafted(mutate)).status_code == 201

    with pytest.raises(ArtifactRefused):
        model_version_load(version=ModelVersion.objects.get())

    [event] = audit_events("model.version.rejected")
    assert event["details"]["reason"] == "unsafe content"


WATERMARK = {
    "inputs": [{"rooms": float(a), "area": float(b)} for a, b in INPUTS[:10]],
    "labels": [int(label) for label in CLASSES[:10]],
    "threshold": 0.9,
}


@pytest.mark.django_db
def test_a_skops_version_verifies_its_watermark(engineer, django_capture_on_commit_callbacks):
    classifier = DecisionTreeClassifier(random_state=0).fit(INPUTS, CLASSES)

    with django_capture_on_commit_callbacks(execute=True):
        response = upload_skops(engineer, skops_bytes(classifier), watermark=json.dumps(WATERMARK))

    assert response.status_code == 201, response.content
    [result] = WatermarkResult.objects.all()
    assert result.status == "succeeded" and result.agreement == 1.0
