"""GDPR subject access: a person downloads everything held about them; an officer does the
same for anyone. Every category is there, with the right data, and no secret at all."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.apps import apps

from apps.gdpr import selectors
from apps.gdpr.relations import user_relations
from apps.gdpr.selectors import subject_data
from tests.gdpr.conftest import Subject, audit_events, bearer, error_code

pytestmark = pytest.mark.django_db

ME = "/api/v1/privacy/me/export"
ACCESS = "/api/v1/privacy/subject-access"


def export_of(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith('attachment; filename="subject-access-')
    assert response["Content-Disposition"].endswith('.json"')
    return json.loads(response.content)


def assert_complete(data: dict[str, Any], subject: Subject) -> None:
    user = subject.user
    account = data["account"]
    assert account["id"] == str(user.pk)
    assert (account["username"], account["email"]) == (user.username, user.email)
    assert (account["first_name"], account["last_name"]) == ("Erin", "Quill")
    assert account["roles"] == ["api_client"] and account["is_active"] is True
    assert account["date_joined"] == user.date_joined.isoformat()

    pseudonym = data["audit_pseudonym"]
    assert pseudonym and pseudonym.startswith("p_")

    devices = {(device["type"], device["name"]): device for device in data["mfa_devices"]}
    assert devices[("totp", "Erin's phone")]["confirmed"] is True
    assert devices[("recovery_codes", "Recovery codes")]["codes_remaining"] == 3

    [family] = data["token_families"]
    assert family["revoked"] is False and len(family["refresh_tokens"]) == 2
    assert sum(token["used_at"] is not None for token in family["refresh_tokens"]) == 1
    assert set(family["refresh_tokens"][0]) == {"issued_at", "expires_at", "used_at"}

    [key] = data["api_keys"]
    assert key["prefix"] == subject.api_key.prefix and key["name"] == "churn job"
    assert key["scopes"] == ["predict:churn"] and key["status"] == "active"
    assert key["require_signature"] is True and key["expires_at"]

    assert data["predict_grants"] == [
        {
            "model": "churn",
            "created_at": subject.model.predict_grants.get().created_at.isoformat(),
            "you_are": ["grantee"],
            "grantee_group": None,
        }
    ]
    assert [model["name"] for model in data["models"]["owned"]] == ["churn"]

    incidents = data["incidents"]
    [incident] = incidents["involved_in"]
    assert incident["id"] == str(subject.incident.pk) and incident["you_are"] == ["assignee"]
    assert incidents["action_items"][0]["description"] == "Rotate keys"
    assert incidents["timeline_entries_by_you"][0]["text"] == "Contained by rotating."

    assert [entry["object"] for entry in data["admin_log"]["about_you"]] == [user.username]

    events = data["audit_events"]
    actions = {event["action"] for event in events}
    assert {"auth.token.issued", "apikey.created"} <= actions
    assert all(
        pseudonym in (event["actor"]["ref"], event["target"]["id"])
        or pseudonym in json.dumps(event["details"])
        for event in events
    )
    assert all({"seq", "hash", "prev_hash"} <= set(event) for event in events)

    if apps.is_installed("apps.compliance"):
        [item] = data["compliance"]
        assert item["model"] == "compliance.checklistitem"
        assert item["fields"]["key"] == subject.compliance_item.key
        assert item["fields"]["title"] == subject.compliance_item.title


FORBIDDEN_KEYS = frozenset(
    {"password", "secret_hash", "signing_secret", "signing_secret_sealed", "jti", "bin_key",
     "token", "tokens", "access", "refresh", "session_key", "session_data", "data_key_sealed"}
)  # fmt: skip


def keys_of(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in keys_of(item)}
    if isinstance(value, list):
        return {key for item in value for key in keys_of(item)}
    return set()


def assert_no_secret(raw: bytes, subject: Subject) -> None:
    text = raw.decode()
    for secret in subject.secrets:
        assert secret, "every secret of the fixture is known"
        assert secret not in text, secret[:12]
    assert not keys_of(json.loads(text)) & FORBIDDEN_KEYS


def test_a_user_downloads_everything_held_about_them_and_no_secret(api_client, subject):
    response = api_client.get(ME, **bearer(subject.access))
    data = export_of(response)
    assert_complete(data, subject)
    assert_no_secret(response.content, subject)


def test_the_export_is_audited(api_client, subject):
    api_client.get(ME, **bearer(subject.access))
    [event] = audit_events("privacy.subject_access")
    pseudonym = subject_data(user=subject.user)["audit_pseudonym"]
    assert event["actor"]["ref"] == pseudonym and event["target"]["id"] == pseudonym
    assert event["details"]["requested_by"] == "self"
    assert subject.user.username not in json.dumps(event)


@pytest.mark.parametrize("role", ["admin", "security_officer"])
def test_officers_export_anyone(api_client, actors, subject, role):
    api_client.force_authenticate(actors[role])
    response = api_client.post(ACCESS, {"username": subject.user.username}, format="json")
    data = export_of(response)
    assert_complete(data, subject)
    assert_no_secret(response.content, subject)
    [event] = audit_events("privacy.subject_access")
    assert event["details"]["requested_by"] == "officer"
    assert event["target"]["id"] == data["audit_pseudonym"]
    assert event["actor"]["ref"] != event["target"]["id"]


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
def test_who_may_export_someone_else(api_client, actors, role, expected):
    api_client.force_authenticate(actors[role])
    response = api_client.post(ACCESS, {"username": actors["outsider"].username}, format="json")
    assert response.status_code == expected
    if expected == 403:
        assert error_code(response) == "permission_denied"
        assert audit_events("privacy.subject_access") == []


def test_anyone_signed_in_may_export_themselves_and_nobody_else_may_without_signing_in(
    api_client, actors
):
    for role in ("auditor", "api_client", "ml_engineer"):
        api_client.force_authenticate(actors[role])
        assert api_client.get(ME).status_code == 200
    api_client.force_authenticate(None)
    response = api_client.get(ME)
    assert response.status_code == 401 and error_code(response) == "authentication_required"


def test_an_unknown_username_is_404(api_client, actors):
    api_client.force_authenticate(actors["security_officer"])
    response = api_client.post(ACCESS, {"username": "nobody-here"}, format="json")
    assert response.status_code == 404 and error_code(response) == "not_found"
    assert audit_events("privacy.subject_access") == []


@pytest.mark.parametrize("body", [{}, {"username": ""}, {"username": ["a"]}, {"name": "x"}])
def test_a_bad_body_is_400(api_client, actors, body):
    api_client.force_authenticate(actors["admin"])
    response = api_client.post(ACCESS, body, format="json")
    assert response.status_code == 400 and error_code(response) == "invalid_input"


def test_a_user_with_nothing_yet_gets_empty_categories(actors):
    data = subject_data(user=actors["outsider"])
    assert data["audit_pseudonym"] is None and data["audit_events"] == []
    assert data["api_keys"] == [] and data["mfa_devices"] == [] and data["token_families"] == []


def test_rows_of_other_apps_that_point_at_the_person_are_exported_generically(subject, monkeypatch):
    # The extension point: pretend no section reads registered models; the generic one does,
    # and leaves out any column whose name says secret.
    monkeypatch.setattr(selectors, "COVERED", selectors.COVERED - {"registry.registeredmodel"})
    data = subject_data(user=subject.user)
    [row] = [row for row in data["other_records"] if row["model"] == "registry.registeredmodel"]
    assert row["relation"] == "created_by"
    assert row["fields"]["name"] == "churn" and row["fields"]["id"] == str(subject.model.pk)
    assert "created_by" not in row["fields"]  # the person themselves, not data about them


@pytest.mark.skipif(
    not apps.is_installed("apps.compliance"), reason="the compliance app is not installed"
)
def test_compliance_evidence_they_added_is_exported_without_its_key_or_ciphertext(subject):
    evidence_model = apps.get_model("compliance", "Evidence")
    sealed = "v1.sealed-data-key-that-must-not-leave"
    evidence = evidence_model.objects.create(
        item=subject.compliance_item,
        kind="file",
        file_name="policy.pdf",
        content_type="application/pdf",
        size=3,
        sha256="a" * 64,
        data_key_sealed=sealed,
        ciphertext=b"\x00\x01\x02",
        added_by=subject.user,
    )
    data = subject_data(user=subject.user)
    [row] = [row for row in data["compliance"] if row["model"] == "compliance.evidence"]
    assert row["relation"] == "added_by" and row["fields"]["id"] == str(evidence.pk)
    assert row["fields"]["file_name"] == "policy.pdf"
    assert not {"data_key_sealed", "ciphertext", "added_by"} & set(row["fields"])
    assert sealed not in json.dumps(data)


def test_every_relation_to_a_user_is_exported_by_a_section_or_the_generic_one():
    labels = {model._meta.label_lower for model, _field in user_relations()}
    assert labels >= {"apikeys.apikey", "incidents.incident", "registry.predictgrant"}
    # Sections cover what they claim: a new relation appears in the generic export by itself.
    assert selectors.COVERED - {"accounts.user"} <= labels
