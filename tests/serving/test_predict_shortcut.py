"""Predict answered by apps.serving.middleware.PredictShortcutMiddleware gives, request by
request, the status, error code, headers and audit event it gives through the whole middleware
chain and URL resolution: every refusal of predict is unchanged by the short way."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings

from tests.apikeys.factories import ApiKeyFactory
from tests.serving.conftest import PREDICT, ROW, audit_events, bearer

pytestmark = pytest.mark.django_db

SHORTCUT = "apps.serving.middleware.PredictShortcutMiddleware"
# Headers whose values differ from one call to the next.
PER_CALL = {"X-Request-ID", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"}


def cases(actors: dict[str, Any], key: str, limited: str) -> list[tuple[str, dict[str, Any]]]:
    """(what, request) pairs: a success and every refusal predict has."""
    good = json.dumps({"inputs": [ROW]})
    engineer = bearer(actors["ml_engineer"])
    return [
        ("200 with a key", {"data": good, "HTTP_X_API_KEY": key}),
        ("200 with a token", {"data": good, **engineer}),
        ("200 for a version", {"data": good, "path": PREDICT + "?version=1", **engineer}),
        ("401 no credentials", {"data": good}),
        ("401 bad key", {"data": good, "HTTP_X_API_KEY": key[:-4] + "AAAA"}),
        ("401 bad token", {"data": good, "HTTP_AUTHORIZATION": "Bearer x.y.z"}),
        ("401 session only", {"data": good, "session": actors["ml_engineer"]}),
        ("403 no grant", {"data": good, **bearer(actors["auditor"])}),
        ("404 unknown model", {"data": good, "path": "/api/v1/models/nope/predict", **engineer}),
        ("404 unknown version", {"data": good, "path": PREDICT + "?version=9", **engineer}),
        ("400 bad version", {"data": good, "path": PREDICT + "?version=x", **engineer}),
        ("400 malformed JSON", {"data": "{nope", **engineer}),
        ("400 duplicate key", {"data": '{"inputs": [], "inputs": []}', **engineer}),
        ("400 invalid row", {"data": json.dumps({"inputs": [{"price": "x"}]}), **engineer}),
        ("400 no rows", {"data": json.dumps({"inputs": []}), **engineer}),
        ("413 too large", {"data": "[" + " " * (2 * 1024 * 1024) + "]", **engineer}),
        ("415 form body", {"data": "a=1", "content_type": "text/plain", **engineer}),
        ("406 HTML only", {"data": good, "HTTP_ACCEPT": "text/html", **engineer}),
        ("405 GET", {"method": "GET", **engineer}),
        ("429 over the key's rate", {"data": good, "HTTP_X_API_KEY": limited}),
        ("400 host not allowed", {"data": good, "HTTP_HOST": "evil.example", **engineer}),
        ("404 trailing slash", {"data": good, "path": PREDICT + "/", **engineer}),
    ]


def answer(client: Client, request: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    request = dict(request)
    path = request.pop("path", PREDICT)
    method = request.pop("method", "POST")
    data = request.pop("data", "")
    content_type = request.pop("content_type", "application/json")
    session_user = request.pop("session", None)
    if session_user is not None:
        client.force_login(session_user)
    response = client.generic(method, path, data, content_type=content_type, **request)
    try:
        body = json.loads(response.content)
    except ValueError:
        body = response.content[:60]
    if isinstance(body, dict):
        body.pop("request_id", None)  # per call
    code = body["error"]["code"] if isinstance(body, dict) and "error" in body else None
    headers = {name: value for name, value in response.items() if name not in PER_CALL}
    return response.status_code, code or body, headers


def test_every_answer_is_the_same_with_and_without_the_shortcut(actors, pricing):
    assert SHORTCUT in settings.MIDDLEWARE
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="1000/m")
    _, limited = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="1/h")
    Client().post(PREDICT, {"inputs": [ROW]}, "application/json", HTTP_X_API_KEY=limited)
    requests = cases(actors, key, limited)
    before = len(audit_events("predict."))
    short = {what: answer(Client(), request) for what, request in requests}
    between = len(audit_events("predict."))
    without = [name for name in settings.MIDDLEWARE if name != SHORTCUT]
    with override_settings(MIDDLEWARE=without):
        full = {what: answer(Client(), request) for what, request in requests}
    # The same events, in the same order, each way.
    events = [
        (event["action"], event["outcome"], event["details"].get("code"))
        for event in audit_events("predict.")
    ]
    assert events[before:between] == events[between:]
    assert len(events[before:between]) >= len(requests) - 5  # guards and host: no event
    for what, _ in requests:
        assert short[what] == full[what], what
        assert str(short[what][0]) == what.split()[0], (what, short[what])


def test_predict_takes_the_short_way_and_other_api_paths_do_not(actors, pricing):
    auth = bearer(actors["ml_engineer"])
    response = Client().post(PREDICT, {"inputs": [ROW]}, "application/json", **auth)
    assert response.status_code == 200
    assert response.wsgi_request.resolver_match is None  # answered before URL resolution
    assert not hasattr(response.wsgi_request, "session")  # and before SessionMiddleware
    other = Client().get("/api/v1/models", **auth)
    assert other.status_code == 200
    assert other.wsgi_request.resolver_match is not None
