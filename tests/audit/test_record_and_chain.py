from __future__ import annotations

import itertools
import json

import pytest
from django.db import connection, transaction

from apps.audit.errors import AuditUnavailable
from apps.audit.models import ActorPseudonym, AuditEvent, PendingEvent
from apps.audit.selectors import event_as_dict
from apps.audit.services import audit_chain_pending, audit_event_record, inputs_digest
from apps.audit.subjects import Subject, truncated_ip
from apps.audit.verification import audit_chain_verify
from apps.core.request_context import request_facts
from tests.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db


def events() -> list[dict]:
    audit_chain_pending()
    return [event_as_dict(e.body, e.prev_hash, e.hash) for e in AuditEvent.objects.order_by("seq")]


def test_an_event_has_every_field_of_api_md():
    user = UserFactory(username="alice", email="alice@example.test")
    with request_facts(request_id="req-1", client_ip="203.0.113.77"):
        audit_event_record(
            "model.created", actor=user, target=("model", "pricing"), details={"n": 1}
        )
    [event] = events()
    assert set(event) == {
        "seq", "ts", "action", "outcome", "actor", "target", "request_id", "ip", "details",
        "prev_hash", "hash", "hmac_key_id",
    }  # fmt: skip
    assert event["seq"] == 1 and event["prev_hash"] == "0" * 64 and len(event["hash"]) == 64
    assert event["action"] == "model.created" and event["outcome"] == "success"
    assert event["actor"]["type"] == "user" and event["actor"]["ref"].startswith("p_")
    assert event["target"] == {"type": "model", "id": "pricing"}
    assert event["request_id"] == "req-1" and event["ip"] == "203.0.113.0/24"
    assert event["details"] == {"n": 1}
    text = json.dumps(event)
    assert "alice" not in text and str(user.pk) not in text  # people only as a pseudonym


def test_seq_is_contiguous_and_each_event_links_to_the_previous():
    for index in range(5):
        audit_event_record("test.happened", actor=None, details={"i": index})
    chain = events()
    assert [event["seq"] for event in chain] == [1, 2, 3, 4, 5]
    for previous, event in itertools.pairwise(chain):
        assert event["prev_hash"] == previous["hash"]
    assert audit_chain_verify().as_dict() == {"ok": True, "checked": 5, "head": chain[-1]["hash"]}


def test_a_person_keeps_one_random_pseudonym():
    user = UserFactory()
    audit_event_record("a.one", actor=user)
    audit_event_record("a.two", actor=user, target=user)
    first, second = events()
    assert first["actor"]["ref"] == second["actor"]["ref"] == second["target"]["id"]
    assert ActorPseudonym.objects.get(user=user).pseudonym == first["actor"]["ref"]
    other = UserFactory()
    audit_event_record("a.three", actor=other)
    assert events()[2]["actor"]["ref"] != first["actor"]["ref"]


def test_actors_of_every_kind():
    audit_event_record("x.one", actor=Subject("api_key", "bwk_abc123"))
    audit_event_record("x.two", actor="celery.beat")
    audit_event_record("x.three", actor=None)
    assert [e["actor"] for e in events()] == [
        {"type": "api_key", "ref": "bwk_abc123"},
        {"type": "system", "ref": "celery.beat"},
        {"type": "system", "ref": "bulwark"},
    ]


def test_details_are_masked_and_inputs_kept_only_as_a_digest():
    inputs = [{"price": 12.5, "ssn": "078-05-1120"}]
    audit_event_record(
        "predict.succeeded",
        actor=None,
        details={
            "password": "hunter2-Secret",
            "nested": {
                "authorization": "Bearer abc.def.ghi",
                "note": "key bwk_pub_S3cr3tS3cr3tS3cr3t",
            },
            "contact": "mail bob@example.org now",
            "card": "4111 1111 1111 1111",
            "inputs": inputs,
        },
    )
    [event] = events()
    text = json.dumps(event)
    for secret in (
        "hunter2",
        "abc.def.ghi",
        "S3cr3tS3cr3tS3cr3t",
        "bob@example.org",
        "4111",
        "078-05",
    ):
        assert secret not in text
    assert event["details"]["inputs"] == inputs_digest(inputs)
    assert event["details"]["inputs"]["rows"] == 1


def test_unknown_outcome_is_a_programming_error():
    with pytest.raises(ValueError):
        audit_event_record("x.y", actor=None, outcome="maybe")


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("198.51.100.23", "198.51.100.0/24"),
        ("2001:db8:abcd:12:1:2:3:4", "2001:db8:abcd::/48"),
        ("not-an-ip", None),
        ("", None),
    ],
)
def test_ip_addresses_are_truncated(address, expected):
    assert truncated_ip(address) == expected


def test_an_event_is_durable_with_its_change_or_neither_is_written():
    user = UserFactory()
    with pytest.raises(RuntimeError), transaction.atomic():
        user.first_name = "Changed"
        user.save()
        audit_event_record("user.changed", actor=user)
        raise RuntimeError("the action failed after recording")
    user.refresh_from_db()
    assert user.first_name != "Changed"
    assert PendingEvent.objects.count() == 0 and AuditEvent.objects.count() == 0


@pytest.fixture
def failing_audit_writes():
    """Make PostgreSQL refuse every audit write, as a full disk or a revoked grant would."""
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION test_refuse() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql;"
            "CREATE TRIGGER test_refuse BEFORE INSERT ON audit_pendingevent "
            "FOR EACH ROW EXECUTE FUNCTION test_refuse();"
        )
    yield
    # The test's transaction is rolled back at its end, and the trigger with it.


def test_a_failing_audit_write_refuses_the_action_and_commits_nothing(failing_audit_writes):
    user = UserFactory(first_name="Before")
    with pytest.raises(AuditUnavailable), transaction.atomic():
        user.first_name = "After"
        user.save()
        audit_event_record("user.changed", actor=None, target=user)
    user.refresh_from_db()
    assert user.first_name == "Before"


def test_events_chain_right_after_their_transaction_commits(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        audit_event_record("x.inline", actor=None)
    assert PendingEvent.objects.count() == 0
    assert AuditEvent.objects.get().action == "x.inline"


def test_an_endpoint_whose_event_cannot_be_written_answers_503(
    failing_audit_writes, api_client, actors
):
    api_client.force_authenticate(actors["auditor"])
    response = api_client.get("/api/v1/audit/export")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert response["Retry-After"]
    assert "disk full" not in response.content.decode()
