"""GDPR erasure: afterwards nothing in any table leads to the person, their tokens and keys are
refused at once, the audit chain still verifies, and the erasure itself is audited without
naming them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.sessions.models import Session
from django.db import connection

from apps.accounts.models import TokenFamily, User
from apps.apikeys.models import ApiKey
from apps.audit.models import ActorPseudonym, AuditEvent
from apps.audit.verification import audit_chain_verify
from apps.gdpr.selectors import pseudonym_of
from apps.incidents.models import Incident, TimelineEntry
from apps.registry.models import PredictGrant, RegisteredModel
from tests.accounts.factories import UserFactory
from tests.gdpr.conftest import Subject, audit_events, bearer, error_code, predict_with_key

pytestmark = pytest.mark.django_db

ERASE = "/api/v1/privacy/erasure"
ME = "/api/v1/auth/me"
TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb", "uuid")


def tables_and_text_columns() -> dict[str, list[str]]:
    """Every table of the schema (Django's own, many-to-many links, sessions, admin log
    included) and its text, JSON and UUID columns: where a name, address or id could sit."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type = ANY(%s) "
            "ORDER BY table_name, column_name",
            [list(TEXT_TYPES)],
        )
        found: dict[str, list[str]] = {}
        for table, column in cursor.fetchall():
            found.setdefault(table, []).append(column)
    return found


def traces_in_the_database(needles: list[str]) -> list[tuple[str, str, str]]:
    """(table, column, needle) for every column of every table holding any needle."""
    hits = []
    with connection.cursor() as cursor:
        for table, columns in tables_and_text_columns().items():
            for column in columns:
                for needle in needles:
                    cursor.execute(
                        f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS text) ILIKE %s',  # noqa: S608  # names from information_schema
                        [f"%{needle}%"],
                    )
                    if cursor.fetchone()[0]:
                        hits.append((table, column, needle))
    return hits


def erase(client: Any, actor: User, username: str, capture: Any) -> Any:
    client.force_authenticate(actor)
    with capture(execute=True):
        response = client.post(ERASE, {"username": username}, format="json")
    client.force_authenticate(None)
    return response


def test_erasure_leaves_nothing_that_leads_to_the_person(
    api_client, actors, subject: Subject, django_capture_on_commit_callbacks
):
    user = subject.user
    pseudonym = pseudonym_of(user)
    assert len(traces_in_the_database(subject.traces)) > 5  # the search does find them
    before = AuditEvent.objects.count()

    response = erase(
        api_client, actors["security_officer"], user.username, django_capture_on_commit_callbacks
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["erased"] is True and body["reference"].startswith("er_")
    assert body["counts"]["keys_deleted"] == 1 and body["counts"]["sign_in_families"] == 1
    assert body["counts"]["pseudonym_unlinked"] == 1 and body["counts"]["sessions"] == 1
    assert body["mentions"] == []
    assert traces_in_the_database(subject.traces) == []
    # The events stay, with the pseudonym, and the chain over them verifies...
    assert AuditEvent.objects.count() > before
    assert AuditEvent.objects.filter(actor_ref=pseudonym).exists()
    assert audit_chain_verify().ok
    # ...but no table maps the pseudonym to anyone any more.
    assert not ActorPseudonym.objects.filter(pseudonym=pseudonym).exists()


def test_what_happens_to_each_table(
    api_client, actors, subject: Subject, django_capture_on_commit_callbacks
):
    erase(api_client, actors["admin"], subject.user.username, django_capture_on_commit_callbacks)
    assert not User.objects.filter(pk=subject.user.pk).exists()
    assert not TokenFamily.objects.filter(user_id=subject.user.pk).exists()
    assert not ApiKey.objects.filter(pk=subject.api_key.pk).exists()
    assert not PredictGrant.objects.filter(model=subject.model).exists()
    assert not Session.objects.filter(session_key=subject.session_key).exists()
    # What they owned or were assigned stays, without them.
    model = RegisteredModel.objects.get(pk=subject.model.pk)
    assert model.created_by is None and not model.owners.exists()
    incident = Incident.objects.get(pk=subject.incident.pk)
    assert incident.assignee is None and incident.actions.get().owner is None
    assert TimelineEntry.objects.filter(pk=subject.note.pk).exists()
    # The admin log: entries about them gone, entries naming them redacted.
    assert not LogEntry.objects.filter(object_id=str(subject.user.pk)).exists()
    assert LogEntry.objects.filter(object_repr="[erased]").count() == 1
    if subject.compliance_item is not None:
        subject.compliance_item.refresh_from_db()
        assert subject.compliance_item.owner is None
    # Their keys were revoked (audited) before they were deleted.
    [revoked] = audit_events("apikey.revoked")
    assert revoked["target"]["id"] == subject.api_key.prefix
    assert revoked["details"] == {"reason": "erasure"}
    assert [event["action"] for event in audit_events("model.grant.deleted")] == [
        "model.grant.deleted"
    ]


def test_their_tokens_and_keys_are_refused_at_once(
    api_client, actors, subject: Subject, django_capture_on_commit_callbacks
):
    assert api_client.get(ME, **bearer(subject.access)).status_code == 200
    browser = api_client.__class__()
    browser.cookies[settings.SESSION_COOKIE_NAME] = subject.session_key
    assert browser.get(ME).status_code == 200
    # The key is known and live: it gets as far as its signature check.
    assert error_code(predict_with_key(api_client, subject.key)) == "signature_required"

    erase(api_client, actors["admin"], subject.user.username, django_capture_on_commit_callbacks)

    response = api_client.get(ME, **bearer(subject.access))
    assert response.status_code == 401 and error_code(response) == "token_invalid"
    refreshed = api_client.post(
        "/api/v1/auth/token/refresh", {"refresh": subject.refresh}, format="json"
    )
    assert refreshed.status_code == 401 and error_code(refreshed) == "token_invalid"
    refused = predict_with_key(api_client, subject.key)
    assert refused.status_code == 401 and error_code(refused) == "api_key_invalid"
    assert browser.get(ME).status_code == 401


def test_the_erasure_is_audited_without_naming_the_person(
    api_client, actors, subject: Subject, django_capture_on_commit_callbacks
):
    officer = actors["security_officer"]
    response = erase(api_client, officer, subject.user.username, django_capture_on_commit_callbacks)
    [event] = audit_events("privacy.erasure")
    assert event["target"] == {"type": "erasure", "id": response.json()["reference"]}
    assert event["actor"]["ref"] == pseudonym_of(officer)
    assert event["details"] == {
        "keys_deleted": 1,
        "grants_deleted": 1,
        "sign_in_families": 1,
        "mfa_devices": 2,
        "sessions": 1,
        "admin_log_entries": 2,
        "pseudonym_unlinked": 1,
        "free_text_mentions": 0,
    }
    stored = AuditEvent.objects.get(seq=event["seq"]).body
    for trace in subject.traces:
        assert trace.lower() not in stored.lower()
    assert subject.user.first_name not in stored


def test_free_text_that_names_the_person_is_listed_for_review(
    api_client, actors, subject: Subject, django_capture_on_commit_callbacks
):
    note = TimelineEntry.objects.create(
        incident=subject.incident,
        kind="note",
        actor_type="system",
        actor_ref="bulwark",
        text=f"Spoke to {subject.user.username} about it; mail {subject.user.email}.",
    )
    response = erase(
        api_client, actors["admin"], subject.user.username, django_capture_on_commit_callbacks
    )
    assert response.json()["mentions"] == [
        {"model": "incidents.timelineentry", "id": str(note.pk), "field": "text"}
    ]
    [event] = audit_events("privacy.erasure")
    assert event["details"]["free_text_mentions"] == 1


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("admin", 200),
        ("security_officer", 200),
        ("auditor", 403),
        ("ml_engineer", 403),
        ("api_client", 403),
        ("key_owner", 403),
    ],
)
def test_who_may_erase(api_client, actors, role, expected, django_capture_on_commit_callbacks):
    target = UserFactory()
    response = erase(api_client, actors[role], target.username, django_capture_on_commit_callbacks)
    assert response.status_code == expected
    assert User.objects.filter(pk=target.pk).exists() is (expected != 200)
    if expected == 403:
        assert error_code(response) == "permission_denied"


def test_nobody_erases_themselves(api_client, actors, django_capture_on_commit_callbacks):
    admin = actors["admin"]
    response = erase(api_client, admin, admin.username, django_capture_on_commit_callbacks)
    assert response.status_code == 403 and error_code(response) == "permission_denied"
    assert User.objects.filter(pk=admin.pk).exists()
    assert audit_events("privacy.erasure") == []


def test_only_a_superuser_erases_a_superuser(
    api_client, actors, django_capture_on_commit_callbacks
):
    boss = UserFactory(is_superuser=True, is_staff=True)
    response = erase(
        api_client, actors["security_officer"], boss.username, django_capture_on_commit_callbacks
    )
    assert response.status_code == 403 and User.objects.filter(pk=boss.pk).exists()
    root = UserFactory(is_superuser=True, is_staff=True, roles=["admin"])
    response = erase(api_client, root, boss.username, django_capture_on_commit_callbacks)
    assert response.status_code == 200 and not User.objects.filter(pk=boss.pk).exists()


def test_an_unknown_username_is_404_and_unauthenticated_is_401(api_client, actors):
    api_client.force_authenticate(actors["admin"])
    response = api_client.post(ERASE, {"username": "nobody-here"}, format="json")
    assert response.status_code == 404 and error_code(response) == "not_found"
    api_client.force_authenticate(None)
    response = api_client.post(ERASE, {"username": actors["auditor"].username}, format="json")
    assert response.status_code == 401
    assert User.objects.filter(pk=actors["auditor"].pk).exists()


@pytest.mark.parametrize("body", [{}, {"username": ""}, {"username": {"a": 1}}, []])
def test_a_bad_body_is_400(api_client, actors, body):
    api_client.force_authenticate(actors["admin"])
    response = api_client.post(ERASE, body, format="json")
    assert response.status_code == 400 and error_code(response) == "invalid_input"


def test_a_trailing_slash_does_not_redirect(api_client, actors):
    api_client.force_authenticate(actors["admin"])
    response = api_client.post(ERASE + "/", {"username": "x"}, format="json")
    assert response.status_code == 404


def test_erasure_with_redis_down_fails_closed(api_client, actors, subject: Subject, monkeypatch):
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from apps.accounts import user_cache

    dead = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    monkeypatch.setattr(user_cache, "shared_client", lambda: dead)
    api_client.force_authenticate(actors["admin"])
    response = api_client.post(ERASE, {"username": subject.user.username}, format="json")
    assert response.status_code == 503 and error_code(response) == "service_unavailable"
    assert User.objects.filter(pk=subject.user.pk).exists()  # rolled back, nothing half-done
    assert ApiKey.objects.filter(pk=subject.api_key.pk).exists()
    assert json.loads(response.content)["error"]["details"] == []
