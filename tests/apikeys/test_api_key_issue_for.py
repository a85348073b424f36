"""The services of the key pages (issue 16): api_key_issue_for (an owner chosen by those who
manage every key: themselves or a service account) and api_key_rotate_for_owner (they rotate
a service account's key, not a person's: whoever sees a secret could act as its owner); the
API's own services keep their rules (tests/apikeys/test_api_key_create.py,
test_api_key_rotate.py)."""

from __future__ import annotations

import pytest

from apps.apikeys.errors import NotKeyOwner, ScopeMissing
from apps.apikeys.models import ApiKey
from apps.apikeys.services import api_key_issue_for, api_key_revoke, api_key_rotate_for_owner
from apps.audit.subjects import pseudonym_for
from apps.core.errors import InvalidInput, PermissionDenied
from tests.accounts.factories import UserFactory
from tests.apikeys.conftest import audit_events
from tests.apikeys.factories import ApiKeyFactory
from tests.console.keys_helpers import service_account

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_client(actors):  # type: ignore[no-untyped-def]
    return service_account(actors["admin"])


def issue(actor, owner, **fields):  # type: ignore[no-untyped-def]
    return api_key_issue_for(
        actor=actor, owner=owner, name="svc", scopes=fields.pop("scopes", ["predict:pricing"]),
        **fields,
    )  # fmt: skip


@pytest.mark.parametrize("role", ["security_officer", "admin"])
def test_those_who_manage_every_key_issue_for_a_service_account(actors, demo_client, role):
    issued = issue(actors[role], demo_client)
    assert issued.api_key.owner == demo_client and issued.key.startswith(issued.api_key.prefix)
    [event] = audit_events("apikey.created")
    assert event["details"]["owner"] == pseudonym_for(demo_client)
    assert event["actor"]["ref"] == pseudonym_for(actors[role])


@pytest.mark.parametrize("role", ["ml_engineer", "auditor", "api_client"])
def test_anyone_else_issues_for_themselves_only(actors, demo_client, role):
    with pytest.raises(PermissionDenied):
        issue(actors[role], demo_client)
    assert not ApiKey.objects.exists() and audit_events("apikey.created") == []


def test_an_owner_who_cannot_hold_a_key_is_refused(actors):
    officer = actors["security_officer"]
    gone = UserFactory(roles=["api_client"], is_active=False)
    nobody = UserFactory(roles=[])
    for owner, message in (
        (gone, "is deactivated"),
        (actors["auditor"], "is a person with the auditor role"),
        (nobody, "is not a service account"),
    ):
        with pytest.raises(InvalidInput) as refused:
            issue(officer, owner, scopes=["predict:*"])
        assert message in refused.value.message
        assert refused.value.details[0]["path"] == "owner"
    assert not ApiKey.objects.exists()


def test_the_owners_grants_bound_the_scopes(actors, demo_client):
    with pytest.raises(ScopeMissing):
        issue(actors["security_officer"], demo_client, scopes=["predict:*"])
    assert not ApiKey.objects.exists()


def test_issuing_for_oneself_is_the_apis_rule(actors):
    # No role check for one's own key (the API lets anyone hold keys within their grants).
    engineer = actors["ml_engineer"]
    assert issue(engineer, engineer, scopes=["predict:*"]).api_key.owner == engineer


def test_those_who_manage_every_key_rotate_anyones(actors, demo_client):
    api_key, _ = ApiKeyFactory.issue(owner=demo_client, scopes=["predict:pricing"])
    issued = api_key_rotate_for_owner(actor=actors["security_officer"], api_key=api_key)
    assert issued.api_key.owner == demo_client
    api_key.refresh_from_db()
    assert api_key.rotated_to == issued.api_key
    [event] = audit_events("apikey.rotated")
    assert event["actor"]["ref"] == pseudonym_for(actors["security_officer"])


def test_anyone_else_rotates_their_own_keys_only(actors, demo_client):
    api_key, _ = ApiKeyFactory.issue(owner=demo_client, scopes=["predict:pricing"])
    with pytest.raises(NotKeyOwner):
        api_key_rotate_for_owner(actor=actors["ml_engineer"], api_key=api_key)
    assert api_key_rotate_for_owner(actor=demo_client, api_key=api_key).api_key.owner == (
        demo_client
    )


PEOPLE = [
    ("admin", "admin"),
    ("ml_engineer", "ML engineer"),
    ("security_officer", "security officer"),
    ("auditor", "auditor"),
]


@pytest.mark.parametrize("actor_role", ["security_officer", "admin"])
@pytest.mark.parametrize(("owner_role", "label"), PEOPLE)
def test_no_one_issues_a_key_for_a_person_and_sees_its_secret(
    actors, actor_role, owner_role, label
):
    # An officer (no predict rights) who issued predict:* for an admin would predict as them.
    actor = actors[actor_role]
    owner = UserFactory(roles=[owner_role, "api_client"])  # any person role, even with API client
    with pytest.raises(InvalidInput) as refused:
        issue(actor, owner, scopes=["predict:*"])
    expected = (
        f"{owner.get_username()} is a person with the {label} role: whoever issues a key sees "
        "its secret, so they issue their own keys."
    )
    assert refused.value.details == [{"path": "owner", "message": expected}]
    assert refused.value.status_code == 400
    assert not ApiKey.objects.exists() and audit_events("apikey.created") == []


@pytest.mark.parametrize("actor_role", ["security_officer", "admin"])
@pytest.mark.parametrize(("owner_role", "label"), PEOPLE)
def test_no_one_rotates_a_persons_key_and_sees_its_secret(actors, actor_role, owner_role, label):
    owner = UserFactory(roles=[owner_role])
    # (a different person holding the actor's own role is refused alike)
    api_key, _ = ApiKeyFactory.issue(owner=owner, scopes=["predict:pricing"])
    with pytest.raises(NotKeyOwner) as refused:
        api_key_rotate_for_owner(actor=actors[actor_role], api_key=api_key)
    assert refused.value.status_code == 403
    assert (
        f"This key belongs to {owner.get_username()}, a person with the {label} role"
        in refused.value.message
    )
    assert "revoke it instead" in refused.value.message
    api_key.refresh_from_db()
    assert api_key.rotated_to is None and ApiKey.objects.count() == 1
    assert audit_events("apikey.rotated") == []


def test_a_person_rotates_their_own_key_on_the_pages(actors):
    admin = actors["admin"]
    api_key, _ = ApiKeyFactory.issue(owner=admin, scopes=["predict:*"])
    assert api_key_rotate_for_owner(actor=admin, api_key=api_key).api_key.owner == admin


def test_an_officer_still_revokes_a_persons_key(actors):
    # Containment needs no secret: revoking anyone's key stays open to officers.
    engineer = actors["ml_engineer"]
    api_key, _ = ApiKeyFactory.issue(owner=engineer, scopes=["predict:*"])
    api_key_revoke(actor=actors["security_officer"], api_key=api_key, reason="leaked")
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    [event] = audit_events("apikey.revoked")
    assert event["actor"]["ref"] == pseudonym_for(actors["security_officer"])
