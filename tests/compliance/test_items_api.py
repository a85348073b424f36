"""GET /api/v1/compliance/items, GET and PATCH /api/v1/compliance/items/{id}."""

from __future__ import annotations

import uuid

import pytest

from apps.compliance.models import ChecklistItem
from apps.compliance.services import compliance_checks_run, evidence_add
from tests.compliance.conftest import assert_error, audit_events, item

ITEMS = "/api/v1/compliance/items"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("admin", 200),
        ("security_officer", 200),
        ("auditor", 200),
        ("ml_engineer", 403),
        ("api_client", 403),
    ],
)
def test_who_may_read_the_checklist(api_client, actors, role, expected):
    api_client.force_authenticate(actors[role])
    response = api_client.get(ITEMS)
    assert response.status_code == expected
    if expected == 403:
        assert_error(response, 403, "permission_denied")


@pytest.mark.django_db
def test_reading_needs_authentication(api_client):
    assert_error(api_client.get(ITEMS), 401, "authentication_required")


@pytest.mark.django_db
def test_items_list_in_checklist_order_with_status_owner_evidence_controls_and_check(
    api_client, actors
):
    officer = actors["security_officer"]
    ChecklistItem.objects.filter(key="auth-token-expiry").update(owner=officer, notes="see wiki")
    evidence_add(actor=officer, item=item("auth-token-expiry"), url="https://wiki.example/jwt")
    compliance_checks_run(actor=officer)
    api_client.force_authenticate(actors["auditor"])

    body = api_client.get(ITEMS, {"limit": 100}).json()

    assert set(body) == {"results", "next"} and body["next"] is None
    keys = [entry["key"] for entry in body["results"]]
    assert len(keys) == ChecklistItem.objects.count() and keys[0] == "auth-api-keys"
    token = next(entry for entry in body["results"] if entry["key"] == "auth-token-expiry")
    assert set(token) == {
        "id",
        "key",
        "category",
        "title",
        "description",
        "status",
        "owner",
        "notes",
        "last_reviewed_at",
        "controls",
        "evidence",
        "check",
    }
    assert token["status"] == "not_started" and token["owner"] == officer.username
    assert token["notes"] == "see wiki" and token["category"] == "authentication"
    assert {
        "framework": "hipaa",
        "code": "164.312(d)",
        "title": "Person or entity authentication",
    } in token["controls"]
    [evidence] = token["evidence"]
    assert evidence["kind"] == "link" and evidence["url"] == "https://wiki.example/jwt"
    assert token["check"]["name"] == "jwt_lifetimes" and token["check"]["result"] == "pass"
    assert token["check"]["detail"].startswith("Access tokens live 15 minutes")
    assert token["check"]["checked_at"] is not None
    rbac = next(entry for entry in body["results"] if entry["key"] == "auth-rbac")
    assert rbac["check"] == {
        "name": "",
        "result": "manual",
        "detail": "No automated check: people review it.",
        "checked_at": None,
    }


@pytest.mark.django_db
def test_items_are_cursor_paginated(api_client, actors):
    api_client.force_authenticate(actors["auditor"])
    first = api_client.get(ITEMS, {"limit": 20}).json()
    second = api_client.get(ITEMS, {"limit": 20, "cursor": first["next"]}).json()

    keys = [entry["key"] for entry in first["results"] + second["results"]]
    assert len(first["results"]) == 20 and second["next"] is None
    assert keys == list(ChecklistItem.objects.order_by("position").values_list("key", flat=True))
    assert_error(api_client.get(ITEMS, {"cursor": "nonsense"}), 400, "invalid_input")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "expected_keys"),
    [
        ({"framework": "checklist", "category": "incident_response"}, 6),
        ({"framework": "gdpr", "category": "authentication"}, 3),
        ({"framework": "hipaa", "category": "input"}, 2),
        ({"framework": "soc2", "category": "secrets"}, 4),
    ],
)
def test_items_filter_by_framework_and_category(api_client, actors, query, expected_keys):
    api_client.force_authenticate(actors["auditor"])
    results = api_client.get(ITEMS, query).json()["results"]
    assert len(results) == expected_keys
    assert {entry["category"] for entry in results} == {query["category"]}
    if query["framework"] != "checklist":
        for entry in results:
            assert query["framework"] in {control["framework"] for control in entry["controls"]}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "path"), [({"framework": "pci"}, "framework"), ({"category": "x"}, "category")]
)
def test_an_unknown_filter_value_is_400(api_client, actors, query, path):
    api_client.force_authenticate(actors["auditor"])
    error = assert_error(api_client.get(ITEMS, query), 400, "invalid_input")
    assert error["details"][0]["path"] == path and "must be one of" in error["message"]


# --- PATCH ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_security_officer_sets_status_owner_and_notes_audited(api_client, actors):
    officer, engineer = actors["security_officer"], actors["ml_engineer"]
    target = item("auth-mfa")
    api_client.force_authenticate(officer)

    response = api_client.patch(
        f"{ITEMS}/{target.id}",
        {"status": "implemented", "owner": engineer.username, "notes": "TOTP enforced"},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["owner"], body["notes"]) == (
        "implemented",
        engineer.username,
        "TOTP enforced",
    )
    assert body["last_reviewed_at"] is not None
    target.refresh_from_db()
    assert target.status == "implemented" and target.owner == engineer
    [event] = audit_events("compliance.item.updated")
    assert event["target"] == {"type": "compliance_item", "id": "auth-mfa"}
    changes = event["details"]["changes"]
    assert changes["status"] == {"from": "not_started", "to": "implemented"}
    assert changes["owner"]["from"] is None and changes["owner"]["to"].startswith("p_")
    assert changes["notes"] == "changed"
    # People only as pseudonyms, never the notes' text.
    assert engineer.username not in str(event) and "TOTP enforced" not in str(event)


@pytest.mark.django_db
def test_status_alone_keeps_owner_and_notes_and_null_clears_the_owner(api_client, actors):
    officer = actors["security_officer"]
    ChecklistItem.objects.filter(key="auth-mfa").update(owner=officer, notes="kept")
    target = item("auth-mfa")
    api_client.force_authenticate(officer)

    body = api_client.patch(f"{ITEMS}/{target.id}", {"status": "in_progress"}, format="json").json()
    assert (body["status"], body["owner"], body["notes"]) == (
        "in_progress",
        officer.username,
        "kept",
    )

    body = api_client.patch(
        f"{ITEMS}/{target.id}", {"status": "in_progress", "owner": None}, format="json"
    ).json()
    assert body["owner"] is None and body["notes"] == "kept"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({}, "status"),
        ({"status": "done"}, "status"),
        ({"status": "implemented", "owner": "nobody-by-this-name"}, "owner"),
        ({"status": "implemented", "notes": "x" * 5001}, "notes"),
        ({"status": "implemented", "colour": "green"}, "colour"),
        ({"status": "implemented", "owner": 7}, "owner"),
    ],
)
def test_bad_updates_are_400_and_change_nothing(api_client, actors, payload, path):
    target = item("auth-mfa")
    api_client.force_authenticate(actors["security_officer"])

    error = assert_error(
        api_client.patch(f"{ITEMS}/{target.id}", payload, format="json"), 400, "invalid_input"
    )

    assert error["details"][0]["path"] == path
    target.refresh_from_db()
    assert target.status == "not_started" and target.last_reviewed_at is None
    assert audit_events("compliance.item.updated") == []


@pytest.mark.django_db
def test_an_api_client_may_not_own_an_item(api_client, actors):
    api_client.force_authenticate(actors["security_officer"])
    error = assert_error(
        api_client.patch(
            f"{ITEMS}/{item('auth-mfa').id}",
            {"status": "implemented", "owner": actors["api_client"].username},
            format="json",
        ),
        400,
        "invalid_input",
    )
    assert "may own an item" in error["message"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "expected"),
    [("admin", 200), ("security_officer", 200), ("auditor", 403), ("ml_engineer", 403)],
)
def test_who_may_update_an_item(api_client, actors, role, expected):
    api_client.force_authenticate(actors[role])
    response = api_client.patch(
        f"{ITEMS}/{item('auth-mfa').id}", {"status": "in_progress"}, format="json"
    )
    assert response.status_code == expected


@pytest.mark.django_db
def test_an_unknown_item_is_404_and_a_bad_body_400_or_415(api_client, actors):
    api_client.force_authenticate(actors["security_officer"])
    assert_error(
        api_client.patch(f"{ITEMS}/{uuid.uuid4()}", {"status": "implemented"}, format="json"),
        404,
        "not_found",
    )
    assert_error(api_client.get(f"{ITEMS}/not-a-uuid"), 404, "not_found")
    url = f"{ITEMS}/{item('auth-mfa').id}"
    assert_error(
        api_client.generic(
            "PATCH",
            url,
            '{"status": "implemented", "status": "x"}',
            content_type="application/json",
        ),
        400,
        "malformed_json",
    )
    assert_error(
        api_client.generic("PATCH", url, "status=implemented", content_type="text/plain"),
        415,
        "unsupported_media_type",
    )
    assert_error(api_client.delete(url), 405, "method_not_allowed")


@pytest.mark.django_db
def test_one_item_reads_like_in_the_list(api_client, actors):
    api_client.force_authenticate(actors["auditor"])
    target = item("monitoring-audit-trail")
    body = api_client.get(f"{ITEMS}/{target.id}").json()
    assert body["key"] == "monitoring-audit-trail" and body["check"]["name"] == "audit_chain"
