"""The predict rate limit: the key's own rate or PREDICT_USER_RATE_LIMIT, 429 with
Retry-After, RateLimit-* on every response, exact under concurrency on a real server."""

from __future__ import annotations

import http.client
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connection

from apps.serving.model_cache import models
from tests.apikeys.factories import ApiKeyFactory
from tests.services import database_url_of, web_process
from tests.serving.conftest import ROW, assert_error, bearer, post


@pytest.mark.django_db
def test_the_keys_own_rate_then_429_with_retry_after(client, actors, pricing):
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="3/m")
    for remaining in (2, 1, 0):
        response = post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key)
        assert response.status_code == 200
        assert response["RateLimit-Remaining"] == str(remaining)
    refused = post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key)
    assert_error(refused, 429, "rate_limited")
    assert 0 < int(refused["Retry-After"]) <= 60
    assert refused["RateLimit-Limit"] == "3" and refused["RateLimit-Remaining"] == "0"
    # Another key of the same owner has its own window.
    _, other = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="3/m")
    assert post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=other).status_code == 200


@pytest.mark.django_db
def test_jwt_callers_get_the_per_user_rate(client, actors, pricing, settings):
    settings.PREDICT_USER_RATE_LIMIT = "2/h"
    auth = bearer(actors["ml_engineer"])
    assert post(client, {"inputs": [ROW]}, **auth)["RateLimit-Limit"] == "2"
    assert post(client, {"inputs": [ROW]}, **auth).status_code == 200
    refused = post(client, {"inputs": [ROW]}, **auth)
    assert_error(refused, 429, "rate_limited")
    assert 3000 < int(refused["Retry-After"]) <= 3600


@pytest.mark.django_db
def test_a_limited_caller_is_refused_before_anything_expensive(client, actors, pricing):
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="1/m")
    assert post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key).status_code == 200
    models.clear()
    # Malformed body, unknown model: the rate limit answers first, nothing is parsed or loaded.
    assert_error(post(client, b"{not json", HTTP_X_API_KEY=key), 429, "rate_limited")
    response = post(
        client, {"inputs": [ROW]}, path="/api/v1/models/nope/predict", HTTP_X_API_KEY=key
    )
    assert_error(response, 429, "rate_limited")
    assert models.loads == 0


@pytest.mark.django_db
def test_a_caller_without_the_grant_is_refused_before_the_body_is_read(client, actors, pricing):
    user = actors["key_owner"]
    assert_error(post(client, b"{not json", **bearer(user)), 403, "permission_denied")
    assert models.loads == 0


@pytest.mark.django_db(transaction=True)
def test_200_parallel_requests_against_a_limit_of_100_yield_exactly_100(
    actors, pricing, media_root: Path, tmp_path: Path
):
    # Four real gunicorn worker processes race on the one Redis counter.
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="100/h")
    env = {"DATABASE_URL": database_url_of(connection.settings_dict), "MEDIA_ROOT": str(media_root)}
    body = json.dumps({"inputs": [ROW]})
    with web_process(env, tmp_path / "web.log", workers=4) as port:

        def call(_: int) -> int:
            client = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                client.request(
                    "POST", "/api/v1/models/pricing/predict", body,
                    {"Content-Type": "application/json", "X-API-Key": key},
                )  # fmt: skip
                return client.getresponse().status
            finally:
                client.close()

        with ThreadPoolExecutor(max_workers=50) as pool:
            statuses = list(pool.map(call, range(200)))
    assert statuses.count(200) == 100
    assert statuses.count(429) == 100


@pytest.mark.django_db
def test_failed_authentication_is_limited_per_client_ip_and_spoofing_changes_nothing(
    client, actors, pricing, settings
):
    settings.AUTH_FAILURES_PER_IP_RATE = "5/m"
    for attempt in range(5):
        response = post(
            client, {"inputs": [ROW]}, HTTP_X_API_KEY=f"bwk_guess{attempt}_x",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{attempt}",
        )  # fmt: skip
        assert_error(response, 401, "api_key_invalid")
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"])
    # Locked out by REMOTE_ADDR, whatever X-Forwarded-For claims: even a valid key now waits.
    response = post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key, HTTP_X_FORWARDED_FOR="192.0.2.9")
    assert_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) > 0
    response = post(
        client,
        {"inputs": [ROW]},
        HTTP_AUTHORIZATION="Bearer nope",
        HTTP_X_FORWARDED_FOR="192.0.2.10",
    )
    assert_error(response, 429, "rate_limited")


@pytest.mark.django_db
def test_an_unauthenticated_oversized_body_is_413_without_touching_the_database(client, pricing):
    from django.test.utils import CaptureQueriesContext

    huge = json.dumps({"inputs": [dict(ROW, pad="x" * (1024 * 1024))]})
    with CaptureQueriesContext(connection) as queries:
        assert_error(post(client, huge), 413, "payload_too_large")
    assert queries.captured_queries == []


@pytest.mark.django_db
def test_a_wrong_scope_caller_never_reaches_validation(client, actors, pricing, monkeypatch):
    from apps.serving import services

    reached = []
    monkeypatch.setattr(services, "validate_rows", lambda *args: reached.append(args))
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], scopes=["predict:other"])
    assert_error(post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key), 403, "scope_missing")
    assert reached == []


@pytest.mark.django_db
def test_refused_calls_through_the_gate_do_not_use_the_keys_window(client, actors, pricing):
    api_key, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="3/m")
    first = post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key)  # teaches this process the rate
    assert first["RateLimit-Remaining"] == "2"
    # Guesses at the same public id with a wrong secret are counted by the gate, then given
    # back: the key's own window is untouched by them.
    wrong = f"{api_key.prefix}_{'A' * 43}"
    for _ in range(5):
        assert_error(post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=wrong), 401, "api_key_invalid")
    assert post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key)["RateLimit-Remaining"] == "1"


@pytest.mark.django_db
def test_a_give_back_after_the_window_changed_leaves_the_new_window_alone(client, actors, pricing):
    from apps.core import ratelimit
    from apps.core.redis import shared_client
    from apps.serving import limits

    api_key, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="3/m")
    assert post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key).status_code == 200
    gate = limits.gate_for_key(public_id=api_key.public_id, failure_bucket="predict-test")
    assert gate is not None and gate.verdict.window.count == 2
    redis = shared_client()
    full = ratelimit.KEY_PREFIX + gate.bucket
    # The window ends and a legitimate call starts the next one before the give-back lands.
    redis.delete(full)
    assert post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key)["RateLimit-Remaining"] == "2"
    limits.give_back(gate)
    assert int(redis.get(full)) == 1  # the new window keeps its call
    # And a window that is simply gone is not recreated below zero.
    redis.delete(full)
    limits.give_back(gate)
    assert redis.get(full) is None


@pytest.mark.django_db
def test_refused_bearer_tokens_do_not_use_the_users_window(client, actors, pricing, settings):
    from rest_framework_simplejwt.tokens import AccessToken

    from apps.accounts.user_cache import _family_key, _store

    settings.PREDICT_USER_RATE_LIMIT = "3/m"
    user = actors["ml_engineer"]
    assert post(client, {"inputs": [ROW]}, **bearer(user))["RateLimit-Remaining"] == "2"
    # A token of a revoked family: its signature holds, so the gate counts the call in the
    # round trip that reads the family, then gives it back when authentication refuses.
    revoked = bearer(user)
    access = AccessToken(revoked["HTTP_AUTHORIZATION"].removeprefix("Bearer "))
    _store(_family_key(access["fam"]), "revoked", only_if_absent=False)
    for _ in range(4):
        assert_error(post(client, {"inputs": [ROW]}, **revoked), 401, "token_invalid")
    assert post(client, {"inputs": [ROW]}, **bearer(user))["RateLimit-Remaining"] == "1"
