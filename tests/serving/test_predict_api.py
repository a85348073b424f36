"""The predict endpoint's contract (docs/api.md "Predict"): success by JWT and by API key, the
response body and headers, version resolution, and every refusal with its code."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group

from apps.registry.models import PredictGrant
from apps.registry.services import model_version_stage, predict_grant_create, predict_grant_delete
from apps.serving.demo import PRICING_SCHEMA, train_pricing_model
from tests.apikeys.factories import ApiKeyFactory
from tests.serving.conftest import PREDICT, ROW, add_version, assert_error, bearer, post

pytestmark = pytest.mark.django_db


def expected(rows: list[dict]) -> list[float]:
    return (
        train_pricing_model()
        .predict([[r["price"], r["demand"], r["inventory"]] for r in rows])
        .tolist()
    )


def test_jwt_caller_with_the_role_gets_predictions(client, actors, pricing):
    response = post(client, {"inputs": [ROW]}, **bearer(actors["ml_engineer"]))
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"model", "version", "predictions", "request_id"}
    assert body["model"] == "pricing" and body["version"] == 1
    assert body["predictions"] == pytest.approx(expected([ROW]))
    assert body["request_id"] == response["X-Request-ID"]
    assert response["RateLimit-Limit"] == "60"
    assert response["RateLimit-Remaining"] == "59"
    assert 0 < int(response["RateLimit-Reset"]) <= 60


def test_api_key_caller_gets_predictions_for_a_batch(client, actors, pricing):
    _, key = ApiKeyFactory.issue(
        owner=actors["ml_engineer"], scopes=["predict:pricing"], rate_limit="5/s"
    )
    rows = [dict(ROW, price=float(price)) for price in range(10, 110)]
    response = post(client, {"inputs": rows}, HTTP_X_API_KEY=key)
    assert response.status_code == 200, response.content
    assert response.json()["predictions"] == pytest.approx(expected(rows))
    assert response["RateLimit-Limit"] == "5"
    assert response["RateLimit-Remaining"] == "4"


def test_api_client_needs_a_grant_on_the_model(client, actors, pricing):
    user = actors["key_owner"]
    assert_error(post(client, {"inputs": [ROW]}, **bearer(user)), 403, "permission_denied")
    grant = predict_grant_create(actor=actors["admin"], model=pricing.model, user=user)
    assert post(client, {"inputs": [ROW]}, **bearer(user)).status_code == 200
    predict_grant_delete(actor=actors["admin"], grant=grant)
    # The next request already sees the grant gone (the serving generation moved).
    assert_error(post(client, {"inputs": [ROW]}, **bearer(user)), 403, "permission_denied")


def test_a_grant_through_a_group_counts_and_leaving_the_group_ends_it(client, actors, pricing):
    user = actors["key_owner"]
    group = Group.objects.create(name="pricing-team")
    predict_grant_create(actor=actors["admin"], model=pricing.model, group=group)
    assert_error(post(client, {"inputs": [ROW]}, **bearer(user)), 403, "permission_denied")
    user.groups.add(group)
    assert post(client, {"inputs": [ROW]}, **bearer(user)).status_code == 200
    user.groups.remove(group)
    assert_error(post(client, {"inputs": [ROW]}, **bearer(user)), 403, "permission_denied")


def test_api_key_needs_the_scope_and_its_owner_the_grant(client, actors, pricing):
    owner = actors["key_owner"]
    grant = PredictGrant.objects.create(model=pricing.model, user=owner)
    _, other_model_key = ApiKeyFactory.issue(owner=owner, scopes=["predict:other"])
    error = assert_error(
        post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=other_model_key), 403, "scope_missing"
    )
    assert "scope" in error["message"]
    _, key = ApiKeyFactory.issue(owner=owner, scopes=["predict:pricing"])
    assert post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key).status_code == 200
    predict_grant_delete(actor=actors["admin"], grant=grant)
    error = assert_error(post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key), 403, "scope_missing")
    assert "owner" in error["message"]


def test_unauthenticated_and_bad_credentials(client, actors, pricing):
    assert_error(post(client, {"inputs": [ROW]}), 401, "authentication_required")
    assert_error(post(client, {"inputs": [ROW]}, HTTP_X_API_KEY="bwk_nope"), 401, "api_key_invalid")
    assert_error(
        post(client, {"inputs": [ROW]}, HTTP_AUTHORIZATION="Bearer x.y.z"), 401, "token_invalid"
    )


def test_a_session_does_not_authenticate_predict(client, actors, pricing):
    client.force_login(actors["ml_engineer"])
    assert_error(post(client, {"inputs": [ROW]}), 401, "authentication_required")


def test_revoked_key_and_disallowed_ip(client, actors, pricing):
    from apps.apikeys.services import api_key_revoke

    api_key, key = ApiKeyFactory.issue(owner=actors["ml_engineer"])
    assert post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key).status_code == 200
    api_key_revoke(actor=actors["admin"], api_key=api_key)
    assert_error(post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key), 401, "api_key_revoked")
    _, fenced = ApiKeyFactory.issue(owner=actors["ml_engineer"], allowed_ips=["203.0.113.0/24"])
    assert_error(post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=fenced), 403, "ip_not_allowed")


def test_key_requiring_signature_refuses_an_unsigned_call(client, actors, pricing):
    _, key, _ = ApiKeyFactory.issue_signed(owner=actors["ml_engineer"])
    assert_error(post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key), 401, "signature_required")


def test_version_resolution(client, actors, pricing):
    auth = bearer(actors["ml_engineer"])
    v2 = add_version(actors["ml_engineer"], pricing.model)
    # The default is the production version; a staging one is served when named.
    assert post(client, {"inputs": [ROW]}, **auth).json()["version"] == 1
    assert (
        post(client, {"inputs": [ROW]}, path=f"{PREDICT}?version=2", **auth).json()["version"] == 2
    )
    assert_error(
        post(client, {"inputs": [ROW]}, path=f"{PREDICT}?version=9", **auth), 404, "not_found"
    )
    assert_error(
        post(client, {"inputs": [ROW]}, path=f"{PREDICT}?version=x", **auth), 400, "invalid_input"
    )
    for odd in (
        "\u00b2",
        "\u0661",
        "0",
        "-1",
        "1.0",
    ):  # superscript two, Arabic-Indic one: int() refuses or misreads
        response = post(client, {"inputs": [ROW]}, path=f"{PREDICT}?version={odd}", **auth)
        assert_error(response, 400, "invalid_input")
    # Promoting v2 changes the default at once.
    model_version_stage(actor=actors["ml_engineer"], version=v2, stage="production")
    assert post(client, {"inputs": [ROW]}, **auth).json()["version"] == 2
    # An archived version serves nothing, named or not; no production version is its own 404.
    model_version_stage(actor=actors["ml_engineer"], version=v2, stage="archived")
    assert_error(
        post(client, {"inputs": [ROW]}, path=f"{PREDICT}?version=2", **auth), 404, "not_found"
    )
    assert_error(post(client, {"inputs": [ROW]}, **auth), 404, "no_production_version")
    assert_error(
        post(client, {"inputs": [ROW]}, path="/api/v1/models/nope/predict", **auth),
        404,
        "not_found",
    )


def test_no_production_version_is_404_with_its_code(client, actors, pricing):
    model_version_stage(actor=actors["ml_engineer"], version=pricing, stage="staging")
    assert_error(
        post(client, {"inputs": [ROW]}, **bearer(actors["ml_engineer"])),
        404,
        "no_production_version",
    )


@pytest.mark.parametrize(
    ("row", "path", "message"),
    [
        ({"demand": 0.5, "inventory": 3}, "inputs/0/price", "required"),
        (dict(ROW, colour="red"), "inputs/0/colour", "not a field"),
        (dict(ROW, price=0), "inputs/0/price", "less than the minimum of 1"),
        (dict(ROW, price="cheap"), "inputs/0/price", "is not of type 'number'"),
        (dict(ROW, inventory=2.5), "inputs/0/inventory", "is not of type 'integer'"),
        ("a row", "inputs/0", "is not of type 'object'"),
    ],
)
def test_each_invalid_row_is_400_naming_the_row_and_field(
    client, actors, pricing, row, path, message
):
    rows = [ROW, row] if path.startswith("inputs/0") is False else [row]
    error = assert_error(
        post(client, {"inputs": rows}, **bearer(actors["ml_engineer"])), 400, "invalid_input"
    )
    assert error["details"][0]["path"] == path
    assert message in error["details"][0]["message"]


def test_every_bad_row_is_reported(client, actors, pricing):
    rows = [dict(ROW, price=0), ROW, dict(ROW, demand=2, extra=1)]
    error = assert_error(
        post(client, {"inputs": rows}, **bearer(actors["ml_engineer"])), 400, "invalid_input"
    )
    paths = [detail["path"] for detail in error["details"]]
    assert paths == ["inputs/0/price", "inputs/2/extra", "inputs/2/demand"] or sorted(
        paths
    ) == sorted(["inputs/0/price", "inputs/2/extra", "inputs/2/demand"])
    assert error["message"].startswith("inputs[0].price: ")


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"inputs": []}, "inputs"),
        ({"inputs": [ROW] * 101}, "inputs"),
        ({"inputs": ROW}, "inputs"),
        ({"rows": [ROW]}, "rows"),
        ({"inputs": [ROW], "debug": True}, "debug"),
        ([ROW], ""),
    ],
)
def test_body_shape_and_batch_size(client, actors, pricing, body, path):
    error = assert_error(post(client, body, **bearer(actors["ml_engineer"])), 400, "invalid_input")
    assert error["details"][0]["path"] == path


def test_max_batch_is_the_versions(client, actors, pricing):
    add_version(actors["ml_engineer"], pricing.model, max_batch=2)
    auth = bearer(actors["ml_engineer"])
    assert (
        post(client, {"inputs": [ROW, ROW]}, path=f"{PREDICT}?version=2", **auth).status_code == 200
    )
    error = assert_error(
        post(client, {"inputs": [ROW] * 3}, path=f"{PREDICT}?version=2", **auth),
        400,
        "invalid_input",
    )
    assert "1 to 2 rows" in error["message"]


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        ('{"inputs": [{"price": NaN, "demand": 0.5, "inventory": 1}]}', 400, "invalid_input"),
        ('{"inputs": [{"price": Infinity, "demand": 0.5, "inventory": 1}]}', 400, "invalid_input"),
        ('{"inputs": [' + "[" * 40 + "]" * 40 + "]}", 400, "invalid_input"),
        ('{"inputs": [], "inputs": [1]}', 400, "malformed_json"),
        ('{"inputs": [', 400, "malformed_json"),
    ],
)
def test_json_level_refusals(client, actors, pricing, raw, status, code):
    assert_error(post(client, raw, **bearer(actors["ml_engineer"])), status, code)


def test_non_json_and_oversized_bodies(client, actors, pricing):
    auth = bearer(actors["ml_engineer"])
    assert_error(
        post(client, "price=1", content_type="application/x-www-form-urlencoded", **auth),
        415,
        "unsupported_media_type",
    )
    assert_error(
        post(client, b"--x\r\n", content_type="multipart/form-data; boundary=x", **auth),
        415,
        "unsupported_media_type",
    )
    huge = json.dumps({"inputs": [dict(ROW, pad="x" * (1024 * 1024))]})
    assert_error(post(client, huge, **auth), 413, "payload_too_large")


def test_get_is_405(client, actors, pricing):
    response = client.get(PREDICT, **bearer(actors["ml_engineer"]))
    assert_error(response, 405, "method_not_allowed")


def test_a_model_fitted_with_feature_names_gets_them_and_never_warns(client, actors, pricing):
    import io
    import warnings

    import joblib
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    frame = pd.DataFrame(
        {
            "inventory": [1.0, 2.0, 3.0, 4.0],
            "price": [10.0, 20.0, 30.0, 45.0],
            "demand": [0.1, 0.2, 0.3, 0.5],
        }
    )
    fitted = LinearRegression().fit(frame, [1.0, 2.0, 3.0, 4.5])
    buffer = io.BytesIO()
    joblib.dump(fitted, buffer)
    # The version's order differs from the training columns: the names, not positions, decide.
    add_version(
        actors["ml_engineer"], pricing.model, content=buffer.getvalue(),
        feature_order=["price", "demand", "inventory"],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        response = post(
            client, {"inputs": [ROW]}, path=f"{PREDICT}?version=2", **bearer(actors["ml_engineer"])
        )
    assert response.status_code == 200, response.content
    expected_value = fitted.predict(pd.DataFrame([ROW])[["inventory", "price", "demand"]])[0]
    assert response.json()["predictions"] == [pytest.approx(expected_value)]


@pytest.mark.parametrize(
    ("model_class", "message"),
    [
        ("NanModel", "non-finite output"),
        ("RefusingModel", "could not predict"),
        ("NamedFeatureModel", "season"),
    ],
)
def test_a_model_that_cannot_answer_is_400_never_a_500_or_a_nan(
    client, actors, pricing, model_class, message
):
    import io

    import joblib

    from tests.serving import odd_models

    buffer = io.BytesIO()
    joblib.dump(getattr(odd_models, model_class)(), buffer)
    schema = {
        "type": "object",
        "properties": {**PRICING_SCHEMA["properties"], "season": {"type": "string"}},
        "required": ["price", "demand", "inventory"],
        "additionalProperties": False,
    }
    add_version(
        actors["ml_engineer"], pricing.model, content=buffer.getvalue(), input_schema=schema,
        feature_order=["price", "demand", "inventory"],
    )  # fmt: skip
    response = post(
        client, {"inputs": [ROW]}, path=f"{PREDICT}?version=2", **bearer(actors["ml_engineer"])
    )
    error = assert_error(response, 400, "invalid_input")
    assert message in (error["message"] + " " + str(error["details"]))
    assert "/srv/models" not in response.content.decode()  # the model's own text stays inside
