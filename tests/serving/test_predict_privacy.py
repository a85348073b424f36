"""Differential privacy on predict: Laplace noise on numeric outputs, the caller's daily
epsilon budget spent atomically, the `privacy` block, 429 privacy_budget_exhausted."""

from __future__ import annotations

import io
import math

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from apps.registry.services import model_version_stage
from apps.serving.demo import train_pricing_model
from tests.apikeys.factories import ApiKeyFactory
from tests.serving.conftest import PREDICT, ROW, add_version, assert_error, bearer, post

pytestmark = pytest.mark.django_db


@pytest.fixture
def private(actors, pricing):
    """Version 2 of pricing, in production, with epsilon 1.0 per call and sensitivity 5."""
    version = add_version(actors["ml_engineer"], pricing.model, dp_epsilon=1.0, dp_sensitivity=5.0)
    return model_version_stage(actor=actors["ml_engineer"], version=version, stage="production")


def test_numeric_outputs_get_noise_and_the_privacy_block(client, actors, private, settings):
    settings.PRIVACY_DAILY_EPSILON = 100.0
    auth = bearer(actors["ml_engineer"])
    exact = train_pricing_model().predict([[ROW["price"], ROW["demand"], ROW["inventory"]]])[0]
    answers = []
    for call in range(1, 31):
        body = post(client, {"inputs": [ROW]}, **auth).json()
        assert body["privacy"]["epsilon_spent"] == 1.0
        assert body["privacy"]["epsilon_remaining"] == pytest.approx(100.0 - call)
        [value] = body["predictions"]
        assert math.isfinite(value)
        answers.append(value)
    assert len(set(answers)) >= 3  # noise, not the same answer every time
    # Snapped (Mironov): every answer on the grid of the power of two at or above the scale.
    assert all(value % 8 == 0 for value in answers)
    # Laplace with scale 5: the mean of 30 draws is near the true value, the spread is real.
    assert abs(np.mean(answers) - exact) < 6
    assert 2 < np.std(answers) < 15


def test_a_call_the_budget_cannot_cover_is_refused_whole(client, actors, private, settings):
    settings.PRIVACY_DAILY_EPSILON = 2.5
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"])
    for remaining in (1.5, 0.5):
        body = post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key).json()
        assert body["privacy"]["epsilon_remaining"] == pytest.approx(remaining)
    response = post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key)
    assert_error(response, 429, "privacy_budget_exhausted")
    assert 0 < int(response["Retry-After"]) <= 86400
    # The budget is the caller's: another key, or a JWT user, still has theirs.
    _, other = ApiKeyFactory.issue(owner=actors["ml_engineer"])
    assert post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=other).status_code == 200
    assert post(client, {"inputs": [ROW]}, **bearer(actors["ml_engineer"])).status_code == 200


def test_versions_without_dp_spend_nothing(client, actors, private):
    body = post(
        client, {"inputs": [ROW]}, path=f"{PREDICT}?version=1", **bearer(actors["ml_engineer"])
    ).json()
    assert "privacy" not in body


def test_a_refused_input_spends_no_budget(client, actors, private, settings):
    settings.PRIVACY_DAILY_EPSILON = 1.0
    auth = bearer(actors["ml_engineer"])
    assert_error(post(client, {"inputs": [dict(ROW, price=-1)]}, **auth), 400, "invalid_input")
    assert post(client, {"inputs": [ROW]}, **auth).json()["privacy"]["epsilon_remaining"] == 0


def test_classifier_labels_are_returned_unchanged(client, actors, pricing):
    features = np.random.default_rng(1).uniform([5, 0, 0], [500, 1, 5000], size=(200, 3))
    classifier = LogisticRegression(max_iter=500).fit(features, (features[:, 0] < 200).astype(int))
    buffer = io.BytesIO()
    joblib.dump(classifier, buffer)
    add_version(
        actors["ml_engineer"],
        pricing.model,
        content=buffer.getvalue(),
        dp_epsilon=0.5,
        dp_sensitivity=1.0,
    )
    body = post(
        client,
        {"inputs": [ROW, dict(ROW, price=400)]},
        path=f"{PREDICT}?version=2",
        **bearer(actors["ml_engineer"]),
    ).json()
    assert body["predictions"] == [1, 0]
    assert body["privacy"]["epsilon_spent"] == 0.5
    assert body["privacy"]["noise"].startswith("none")


def test_parameters_the_mechanism_cannot_serve_are_refused_at_upload(actors, pricing):
    from apps.core.errors import InvalidInput
    from apps.registry.models import ModelVersion

    with pytest.raises(InvalidInput) as refused:
        add_version(actors["ml_engineer"], pricing.model, dp_epsilon=1e-300, dp_sensitivity=1.0)
    assert refused.value.details[0]["path"] == "dp_epsilon"
    assert ModelVersion.objects.filter(model=pricing.model).count() == 1
