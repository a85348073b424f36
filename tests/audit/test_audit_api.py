from __future__ import annotations

import itertools
import json

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import DatabaseError, connection, transaction

from apps.audit.models import AuditEvent
from apps.audit.services import audit_chain_pending, audit_event_record, checkpoint_create
from apps.audit.signing import public_key_pem
from apps.audit.subjects import Subject, pseudonym_for

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/audit/events"
CHECKPOINTS = "/api/v1/audit/checkpoints"
PUBLIC_KEY = "/api/v1/audit/public-key"
VERIFY = "/api/v1/audit/verify"
EXPORT = "/api/v1/audit/export"
ENDPOINTS = [EVENTS, CHECKPOINTS, PUBLIC_KEY, VERIFY, EXPORT]
# hmac_key_id (the key that chained the event) is an addition to docs/api.md's fields.
EVENT_FIELDS = {
    "seq", "ts", "action", "outcome", "actor", "target", "request_id", "ip", "details",
    "prev_hash", "hash", "hmac_key_id",
}  # fmt: skip


def rows() -> list[AuditEvent]:
    audit_chain_pending()
    return list(AuditEvent.objects.order_by("seq"))


def as_auditor(api_client, actors):  # type: ignore[no-untyped-def]
    api_client.force_authenticate(actors["auditor"])
    return api_client


def error_code(response) -> str:  # type: ignore[no-untyped-def]
    body = response.json()
    assert set(body) == {"error"}
    return body["error"]["code"]


def error_paths(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [detail["path"] for detail in response.json()["error"]["details"]]


def seqs(response) -> list[int]:  # type: ignore[no-untyped-def]
    return [event["seq"] for event in response.json()["results"]]


@pytest.fixture
def varied_events(actors):  # type: ignore[no-untyped-def]
    """Six events across actions, outcomes and actors (two people, one API key, the system)."""
    key = Subject("api_key", "bwk_x")
    audit_event_record("model.created", actor=actors["ml_engineer"], target=("model", "pricing"))
    audit_event_record("auth.token.failed", actor=None, outcome="failure")
    audit_event_record("predict.rejected", actor=key, outcome="denied")
    audit_event_record("predict.succeeded", actor=key, details={"rows": 2})
    audit_event_record("incident.created", actor=actors["security_officer"], outcome="success")
    audit_event_record("auth.token.failed", actor=None, outcome="failure")
    return rows()


# The role matrix ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    ("role", "expected", "code"),
    [
        ("admin", 200, None),
        ("security_officer", 200, None),
        ("auditor", 200, None),
        ("ml_engineer", 403, "permission_denied"),
        ("api_client", 403, "permission_denied"),
        (None, 401, "authentication_required"),
    ],
)
def test_who_may_read_the_audit_trail(api_client, actors, path, role, expected, code):
    audit_event_record("model.created", actor=None)
    checkpoint_create()
    if role is not None:
        api_client.force_authenticate(actors[role])
    response = api_client.get(path)
    assert response.status_code == expected
    if code is not None:
        assert error_code(response) == code


@pytest.mark.parametrize("role", ["ml_engineer", "api_client"])
def test_a_refused_export_records_nothing_and_leaks_no_events(api_client, actors, role):
    audit_event_record("model.created", actor=None, details={"n": 1})
    before = len(rows())
    api_client.force_authenticate(actors[role])
    response = api_client.get(EXPORT)
    assert response.status_code == 403
    assert b"model.created" not in response.content
    assert len(rows()) == before


# Events -----------------------------------------------------------------------------------


def test_events_are_listed_oldest_first_with_every_field_of_api_md(
    api_client, actors, varied_events
):
    response = as_auditor(api_client, actors).get(EVENTS)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"results", "next"}
    assert body["next"] is None
    events = body["results"]
    assert [event["seq"] for event in events] == [row.seq for row in varied_events]
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    for event in events:
        assert set(event) == EVENT_FIELDS
        assert event["outcome"] in {"success", "failure", "denied"}
        assert set(event["actor"]) == {"type", "ref"}
        assert set(event["target"]) == {"type", "id"}
    for previous, event in itertools.pairwise(events):
        assert event["prev_hash"] == previous["hash"]
    first = events[0]
    assert first["action"] == "model.created"
    assert first["actor"] == {"type": "user", "ref": pseudonym_for(actors["ml_engineer"])}
    assert first["target"] == {"type": "model", "id": "pricing"}
    assert first["prev_hash"] == "0" * 64
    assert first["hash"] == varied_events[0].hash
    assert actors["ml_engineer"].username not in response.content.decode()


def test_events_are_paged_with_a_cursor(api_client, actors, varied_events):
    client = as_auditor(api_client, actors)
    first = client.get(EVENTS, {"limit": 2}).json()
    assert [event["seq"] for event in first["results"]] == [1, 2]
    assert first["next"]
    second = client.get(EVENTS, {"limit": 2, "cursor": first["next"]}).json()
    assert [event["seq"] for event in second["results"]] == [3, 4]
    assert second["next"] and second["next"] != first["next"]
    last = client.get(EVENTS, {"limit": 2, "cursor": second["next"]}).json()
    assert [event["seq"] for event in last["results"]] == [5, 6]
    assert last["next"] is None


def test_a_forged_cursor_is_invalid_input(api_client, actors, varied_events):
    response = as_auditor(api_client, actors).get(EVENTS, {"cursor": "not a cursor!"})
    assert response.status_code == 400
    assert error_code(response) == "invalid_input"
    assert error_paths(response) == ["cursor"]


def test_events_filtered_by_action(api_client, actors, varied_events):
    response = as_auditor(api_client, actors).get(EVENTS, {"action": "auth.token.failed"})
    assert seqs(response) == [2, 6]
    assert {event["action"] for event in response.json()["results"]} == {"auth.token.failed"}


@pytest.mark.parametrize(
    ("outcome", "expected"), [("success", [1, 4, 5]), ("failure", [2, 6]), ("denied", [3])]
)
def test_events_filtered_by_outcome(api_client, actors, varied_events, outcome, expected):
    response = as_auditor(api_client, actors).get(EVENTS, {"outcome": outcome})
    assert seqs(response) == expected


def test_events_filtered_by_a_persons_pseudonym(api_client, actors, varied_events):
    pseudonym = pseudonym_for(actors["security_officer"])
    response = as_auditor(api_client, actors).get(EVENTS, {"actor": pseudonym})
    assert seqs(response) == [5]
    assert response.json()["results"][0]["actor"] == {"type": "user", "ref": pseudonym}


def test_events_filtered_by_an_api_key_prefix(api_client, actors, varied_events):
    response = as_auditor(api_client, actors).get(EVENTS, {"actor": "bwk_x"})
    assert seqs(response) == [3, 4]


def test_events_filtered_by_an_unknown_actor_are_none(api_client, actors, varied_events):
    response = as_auditor(api_client, actors).get(EVENTS, {"actor": "p_nobody"})
    assert response.status_code == 200
    assert response.json() == {"results": [], "next": None}


def test_since_keeps_events_at_or_after_it(api_client, actors, varied_events):
    since = varied_events[3].ts
    response = as_auditor(api_client, actors).get(EVENTS, {"since": since.isoformat()})
    expected = [row.seq for row in varied_events if row.ts >= since]
    assert seqs(response) == expected
    assert 0 < len(expected) < len(varied_events)


def test_until_keeps_events_before_it(api_client, actors, varied_events):
    until = varied_events[3].ts
    response = as_auditor(api_client, actors).get(EVENTS, {"until": until.isoformat()})
    expected = [row.seq for row in varied_events if row.ts < until]
    assert seqs(response) == expected
    assert 0 < len(expected) < len(varied_events)
    assert 4 not in expected  # until is exclusive


def test_since_and_until_together_with_another_filter(api_client, actors, varied_events):
    since, until = varied_events[1].ts, varied_events[5].ts
    response = as_auditor(api_client, actors).get(
        EVENTS,
        {"since": since.isoformat(), "until": until.isoformat(), "outcome": "failure"},
    )
    assert seqs(response) == [2]


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2025-13-45T00:00:00Z"}, "until"),
        ({"outcome": "maybe"}, "outcome"),
        ({"since": "2025-01-02T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "until"),
        ({"since": "2025-01-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "until"),
        ({"action": "a" * 65}, "action"),
    ],
)
def test_bad_event_filters_are_invalid_input(api_client, actors, varied_events, params, path):
    response = as_auditor(api_client, actors).get(EVENTS, params)
    assert response.status_code == 400
    assert error_code(response) == "invalid_input"
    assert path in error_paths(response)


# Checkpoints and the public key ----------------------------------------------------------


def published_key(api_client) -> Ed25519PublicKey:  # type: ignore[no-untyped-def]
    body = api_client.get(PUBLIC_KEY).json()
    key = serialization.load_pem_public_key(body["public_key_pem"].encode())
    assert isinstance(key, Ed25519PublicKey)
    return key


def test_the_public_key_is_an_ed25519_pem(api_client, actors):
    response = as_auditor(api_client, actors).get(PUBLIC_KEY)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"algorithm", "public_key_pem"}
    assert body["algorithm"] == "Ed25519"
    assert body["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert "PRIVATE" not in body["public_key_pem"]
    assert isinstance(
        serialization.load_pem_public_key(body["public_key_pem"].encode()), Ed25519PublicKey
    )
    assert body["public_key_pem"] == public_key_pem()


def test_checkpoints_are_newest_first_and_signed_with_the_published_key(api_client, actors):
    audit_event_record("model.created", actor=None)
    audit_event_record("model.version.created", actor=None)
    older = checkpoint_create()
    audit_event_record("model.version.staged", actor=None)
    newer = checkpoint_create()
    assert older is not None and newer is not None
    client = as_auditor(api_client, actors)
    response = client.get(CHECKPOINTS)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"results", "next"} and body["next"] is None
    checkpoints = body["results"]
    assert [checkpoint["seq"] for checkpoint in checkpoints] == [3, 2]
    key = published_key(client)
    heads = {row.seq: row.hash for row in rows()}
    for checkpoint in checkpoints:
        assert set(checkpoint) == {"seq", "head", "ts", "signature"}
        assert checkpoint["head"] == heads[checkpoint["seq"]]
        statement = {name: checkpoint[name] for name in ("seq", "head", "ts")}
        message = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
        key.verify(bytes.fromhex(checkpoint["signature"]), message)  # raises if invalid


def test_a_checkpoint_signature_does_not_cover_another_head(api_client, actors):
    audit_event_record("model.created", actor=None)
    checkpoint_create()
    client = as_auditor(api_client, actors)
    [checkpoint] = client.get(CHECKPOINTS).json()["results"]
    forged = {"seq": checkpoint["seq"], "head": "f" * 64, "ts": checkpoint["ts"]}
    message = json.dumps(forged, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(InvalidSignature):
        published_key(client).verify(bytes.fromhex(checkpoint["signature"]), message)


def test_checkpoints_are_paged_with_limit_and_cursor(api_client, actors):
    for action in ("a.one", "a.two"):
        audit_event_record(action, actor=None)
        checkpoint_create()
    client = as_auditor(api_client, actors)
    first = client.get(CHECKPOINTS, {"limit": 1}).json()
    assert [checkpoint["seq"] for checkpoint in first["results"]] == [2]
    assert first["next"]
    second = client.get(CHECKPOINTS, {"limit": 1, "cursor": first["next"]}).json()
    assert [checkpoint["seq"] for checkpoint in second["results"]] == [1]


def test_no_checkpoints_on_an_empty_chain(api_client, actors):
    assert checkpoint_create() is None
    response = as_auditor(api_client, actors).get(CHECKPOINTS)
    assert response.json() == {"results": [], "next": None}


# Verification ------------------------------------------------------------------------------


def test_verify_reports_an_intact_chain(api_client, actors, varied_events):
    response = as_auditor(api_client, actors).get(VERIFY)
    assert response.status_code == 200
    assert response.json() == {
        "ok": True,
        "checked": len(varied_events),
        "head": varied_events[-1].hash,
    }


def test_verify_on_an_empty_chain_is_ok(api_client, actors):
    response = as_auditor(api_client, actors).get(VERIFY)
    assert response.json() == {"ok": True, "checked": 0, "head": "0" * 64}


def tamper(sql: str, params: list) -> None:  # type: ignore[type-arg]
    """Rewrite events behind the trigger's back, as someone with the table owner's rights
    could. The test's transaction rolls all of it back."""
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        (
            "UPDATE audit_auditevent SET body = replace(body, '\"rows\":2', '\"rows\":3') "
            "WHERE seq = %s",
            "hash does not match",
        ),
        (
            "UPDATE audit_auditevent SET hash = repeat('a', 64) WHERE seq = %s",
            "hash does not match",
        ),
        (
            "UPDATE audit_auditevent SET outcome = 'failure' WHERE seq = %s",
            "a filter column differs",
        ),
        ("DELETE FROM audit_auditevent WHERE seq = %s", "seq 4 is missing"),
    ],
    ids=["body edited", "hash replaced", "filter column edited", "event deleted"],
)
def test_verify_names_the_first_tampered_event(api_client, actors, varied_events, sql, reason):
    tampered = 4  # predict.succeeded, details {"rows": 2}
    assert '"rows":2' in varied_events[tampered - 1].body
    tamper(sql, [tampered])
    response = as_auditor(api_client, actors).get(VERIFY)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"ok", "first_bad_seq", "reason"}
    assert body["ok"] is False
    assert body["first_bad_seq"] == tampered
    assert reason in body["reason"]


def test_the_events_table_refuses_updates_while_its_trigger_is_on(varied_events):
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(seq=1).update(outcome="failure")
    assert AuditEvent.objects.get(seq=1).outcome == "success"


# URLs and methods ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_trailing_slash_is_not_found_and_never_redirected(api_client, actors, path, method):
    response = getattr(as_auditor(api_client, actors), method)(path + "/")
    assert response.status_code == 404
    assert "Location" not in response.headers
    assert error_code(response) == "not_found"


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_the_audit_trail_cannot_be_written_through_the_api(api_client, actors, path, method):
    audit_event_record("model.created", actor=None)
    before = [(row.seq, row.hash) for row in rows()]
    response = getattr(as_auditor(api_client, actors), method)(path, {}, format="json")
    assert response.status_code == 405
    assert error_code(response) == "method_not_allowed"
    assert [(row.seq, row.hash) for row in rows()] == before


def test_every_audit_response_carries_a_request_id(api_client, actors):
    response = as_auditor(api_client, actors).get(EVENTS, HTTP_X_REQUEST_ID="trace-123")
    assert response.headers["X-Request-ID"] == "trace-123"
