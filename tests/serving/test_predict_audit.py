"""One audit event per predict call, accepted or refused, durable before the answer, with
the inputs' digest and never the inputs."""

from __future__ import annotations

import hashlib

import pytest

from apps.audit.canonical import canonical_json
from apps.audit.models import AuditEvent, PendingEvent
from tests.apikeys.factories import ApiKeyFactory
from tests.serving.conftest import ROW, assert_error, audit_events, bearer, post

pytestmark = pytest.mark.django_db

SECRET_PRICE = 4321.5


def predict_events() -> list[dict]:
    return audit_events("predict.") + audit_events("apikey.rejected")


def test_success_is_one_event_with_digest_caller_and_latency(client, actors, pricing):
    api_key, key = ApiKeyFactory.issue(owner=actors["ml_engineer"])
    rows = [dict(ROW, price=SECRET_PRICE), ROW]
    assert post(client, {"inputs": rows}, HTTP_X_API_KEY=key).status_code == 200
    [event] = predict_events()
    assert event["action"] == "predict.succeeded" and event["outcome"] == "success"
    assert event["actor"] == {"type": "api_key", "ref": api_key.prefix}
    assert event["target"] == {"type": "model_version", "id": "pricing:1"}
    details = event["details"]
    assert details["model"] == "pricing" and details["version"] == 1 and details["rows"] == 2
    assert details["inputs"] == {
        "sha256": hashlib.sha256(canonical_json(rows).encode()).hexdigest(),
        "rows": 2,
    }
    assert details["latency_ms"] > 0
    assert str(SECRET_PRICE) not in AuditEvent.objects.get(seq=event["seq"]).body


def test_the_event_is_committed_before_the_answer(client, actors, pricing, settings):
    settings.AUDIT_CHAIN_INLINE = False  # leave it pending: the row itself is the proof
    auth = bearer(actors["ml_engineer"])
    before = PendingEvent.objects.count()
    assert post(client, {"inputs": [ROW]}, **auth).status_code == 200
    assert PendingEvent.objects.count() == before + 1


def test_jwt_caller_is_named_by_pseudonym(client, actors, pricing):
    user = actors["ml_engineer"]
    post(client, {"inputs": [ROW]}, **bearer(user))
    [event] = audit_events("predict.")
    assert event["actor"]["type"] == "user"
    assert user.username not in event["actor"]["ref"] and len(event["actor"]["ref"]) >= 16


@pytest.mark.parametrize(
    ("make_call", "status", "code", "outcome"),
    [
        (lambda c, a: post(c, {"inputs": [ROW]}), 401, "authentication_required", "failure"),
        (
            lambda c, a: post(c, {"inputs": [ROW]}, HTTP_X_API_KEY="bwk_x_y"),
            401,
            "api_key_invalid",
            "failure",
        ),
        (
            lambda c, a: post(c, {"inputs": [ROW]}, **bearer(a["key_owner"])),
            403,
            "permission_denied",
            "denied",
        ),
        (
            lambda c, a: post(c, {"inputs": [dict(ROW, price=-1)]}, **bearer(a["ml_engineer"])),
            400,
            "invalid_input",
            "failure",
        ),
        (lambda c, a: post(c, b"[", **bearer(a["ml_engineer"])), 400, "malformed_json", "failure"),
    ],
)
def test_each_refusal_is_exactly_one_predict_rejected_event(
    client, actors, pricing, make_call, status, code, outcome
):
    assert_error(make_call(client, actors), status, code)
    [event] = predict_events()
    assert event["action"] == "predict.rejected"
    assert event["outcome"] == outcome
    assert event["details"]["code"] == code
    assert event["details"]["model"] == "pricing"


def test_an_api_key_refusal_names_the_key_once_proven(client, actors, pricing):
    from apps.apikeys.services import api_key_revoke

    api_key, key = ApiKeyFactory.issue(owner=actors["ml_engineer"])
    api_key_revoke(actor=actors["admin"], api_key=api_key)
    assert_error(post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key), 401, "api_key_revoked")
    [event] = predict_events()
    assert event["actor"] == {"type": "api_key", "ref": api_key.prefix}
    assert event["details"]["reason"] == "revoked"


def test_a_refused_row_is_recorded_by_digest_not_content(client, actors, pricing):
    rows = [dict(ROW, price=-SECRET_PRICE)]
    assert_error(
        post(client, {"inputs": rows}, **bearer(actors["ml_engineer"])), 400, "invalid_input"
    )
    [event] = predict_events()
    assert event["details"]["rows"] == 1 and "sha256" in event["details"]["inputs"]
    assert str(SECRET_PRICE) not in AuditEvent.objects.get(seq=event["seq"]).body
