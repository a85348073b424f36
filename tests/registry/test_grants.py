"""Per-model predict grants: who holds them, what keys they allow, and their admin (audited)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction

from apps.apikeys.models import ApiKey
from apps.audit.subjects import pseudonym_for
from apps.core.errors import Conflict, InvalidInput
from apps.registry.models import PredictGrant
from apps.registry.selectors import user_may_predict
from apps.registry.services import predict_grant_create, predict_grant_delete
from tests.registry.conftest import assert_error, audit_events, make_model

pytestmark = pytest.mark.django_db

KEYS = "/api/v1/api-keys"
GRANTS = "/admin/registry/predictgrant/"


@pytest.fixture
def models(actors):  # type: ignore[no-untyped-def]
    return {name: make_model(actors["ml_engineer"], name) for name in ("pricing", "churn")}


@pytest.fixture
def superuser(client, actors, verified_login):  # type: ignore[no-untyped-def]
    admin = actors["admin"]
    admin.is_staff = admin.is_superuser = True
    admin.save()
    verified_login(client, admin)
    return admin


def create_key(api_client, user, scopes):  # type: ignore[no-untyped-def]
    api_client.force_authenticate(user)
    return api_client.post(KEYS, {"name": "svc", "scopes": scopes}, format="json")


@pytest.mark.parametrize(
    ("who", "grant", "expected"),
    [
        ("admin", None, {"pricing": True, "churn": True, "absent": True}),
        ("ml_engineer", None, {"pricing": True, "churn": True, "absent": True}),
        ("api_client", None, {"pricing": False, "churn": False, "absent": False}),
        ("api_client", "user", {"pricing": True, "churn": False, "absent": False}),
        ("api_client", "group", {"pricing": True, "churn": False, "absent": False}),
        ("auditor", None, {"pricing": False, "churn": False, "absent": False}),
        ("security_officer", None, {"pricing": False, "churn": False, "absent": False}),
    ],
)
def test_who_may_predict_on_which_model(actors, models, who, grant, expected):
    user = actors[who]
    # Grants to someone else, on the same model, give this user nothing.
    PredictGrant.objects.create(model=models["pricing"], user=actors["outsider"])
    PredictGrant.objects.create(model=models["pricing"], group=Group.objects.create(name="other"))
    if grant == "user":
        PredictGrant.objects.create(model=models["pricing"], user=user)
    elif grant == "group":
        group = Group.objects.create(name="pricing-clients")
        user.groups.add(group)
        PredictGrant.objects.create(model=models["pricing"], group=group)
    assert {name: user_may_predict(user, name) for name in expected} == expected


def test_anonymous_users_may_predict_nothing(models):
    from django.contrib.auth.models import AnonymousUser

    assert user_may_predict(AnonymousUser(), "pricing") is False
    assert user_may_predict(None, "pricing") is False


def test_an_api_client_with_a_grant_may_create_a_key_for_that_model_only(
    api_client, actors, models
):
    client_user = actors["api_client"]
    PredictGrant.objects.create(model=models["pricing"], user=client_user)

    response = create_key(api_client, client_user, ["predict:pricing"])
    assert response.status_code == 201, response.content
    assert ApiKey.objects.get(pk=response.json()["id"]).owner == client_user

    for scopes, path in (
        (["predict:churn"], "scopes/0"),
        (["predict:*"], "scopes/0"),
        (["predict:pricing", "predict:churn"], "scopes/1"),
        (["predict:absent"], "scopes/0"),
    ):
        error = assert_error(create_key(api_client, client_user, scopes), 403, "scope_missing")
        assert error["details"] == [{"path": path, "message": "beyond your grants"}], scopes
    assert ApiKey.objects.count() == 1


def test_a_group_grant_lets_its_members_create_keys(api_client, actors, models):
    group = Group.objects.create(name="pricing-clients")
    PredictGrant.objects.create(model=models["pricing"], group=group)
    member, other = actors["key_owner"], actors["outsider"]
    member.groups.add(group)
    assert create_key(api_client, member, ["predict:pricing"]).status_code == 201
    assert_error(create_key(api_client, other, ["predict:pricing"]), 403, "scope_missing")


def test_a_withdrawn_grant_allows_no_new_key(api_client, actors, models):
    grant = PredictGrant.objects.create(model=models["pricing"], user=actors["api_client"])
    predict_grant_delete(actor=actors["admin"], grant=grant)
    assert_error(
        create_key(api_client, actors["api_client"], ["predict:pricing"]), 403, "scope_missing"
    )


@pytest.mark.parametrize("grantee", ["neither", "both"])
def test_a_grant_names_exactly_one_user_or_group(actors, models, grantee):
    fields = {}
    if grantee == "both":
        fields = {"user": actors["api_client"], "group": Group.objects.create(name="g")}
    with pytest.raises(IntegrityError), transaction.atomic():
        PredictGrant.objects.create(model=models["pricing"], **fields)
    with pytest.raises(InvalidInput):
        predict_grant_create(actor=actors["admin"], model=models["pricing"], **fields)
    assert not PredictGrant.objects.exists()
    assert audit_events("model.grant.created") == []


def test_a_grantee_holds_a_grant_on_a_model_once(actors, models):
    group = Group.objects.create(name="g")
    for grantee in ({"user": actors["api_client"]}, {"group": group}):
        predict_grant_create(actor=actors["admin"], model=models["pricing"], **grantee)
        with pytest.raises(IntegrityError), transaction.atomic():
            PredictGrant.objects.create(model=models["pricing"], **grantee)
        with pytest.raises(Conflict):
            predict_grant_create(actor=actors["admin"], model=models["pricing"], **grantee)
        # The same grantee on another model is another grant.
        predict_grant_create(actor=actors["admin"], model=models["churn"], **grantee)
    assert PredictGrant.objects.count() == 4
    assert len(audit_events("model.grant.created")) == 4


def test_granting_in_the_admin_is_audited(client, superuser, actors, models):
    form = client.get(f"{GRANTS}add/").content.decode()
    for field in ("model", "user", "group"):
        assert f'name="{field}"' in form
    assert 'name="granted_by"' not in form

    response = client.post(
        f"{GRANTS}add/", {"model": models["pricing"].pk, "user": actors["api_client"].pk}
    )

    assert response.status_code == 302, response.content
    grant = PredictGrant.objects.get()
    assert grant.user == actors["api_client"] and grant.group is None
    assert grant.granted_by == superuser
    [event] = audit_events("model.grant.created")
    assert event["target"] == {"type": "model", "id": "pricing"}
    assert event["actor"] == {"type": "user", "ref": pseudonym_for(superuser)}
    assert event["details"]["grantee"] == {
        "type": "user",
        "id": pseudonym_for(actors["api_client"]),
    }
    page = client.get(GRANTS).content.decode()
    assert "pricing" in page and actors["api_client"].username in page
    assert user_may_predict(actors["api_client"], "pricing")


def test_granting_a_group_in_the_admin_is_audited(client, superuser, models):
    group = Group.objects.create(name="pricing-clients")
    response = client.post(f"{GRANTS}add/", {"model": models["pricing"].pk, "group": group.pk})
    assert response.status_code == 302, response.content
    [event] = audit_events("model.grant.created")
    assert event["details"]["grantee"] == {"type": "group", "id": "pricing-clients"}


@pytest.mark.parametrize("grantee", ["neither", "both", "duplicate"])
def test_the_admin_refuses_an_invalid_grant(client, superuser, actors, models, grantee):
    group = Group.objects.create(name="g")
    if grantee == "duplicate":
        PredictGrant.objects.create(model=models["pricing"], user=actors["api_client"])
    data = {"model": models["pricing"].pk}
    if grantee in ("both", "duplicate"):
        data["user"] = actors["api_client"].pk
    if grantee == "both":
        data["group"] = group.pk
    response = client.post(f"{GRANTS}add/", data)
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    assert PredictGrant.objects.count() == (1 if grantee == "duplicate" else 0)
    assert audit_events("model.grant.created") == []


def test_grants_are_not_edited_in_place(client, superuser, actors, models):
    grant = PredictGrant.objects.create(model=models["pricing"], user=actors["api_client"])
    response = client.post(
        f"{GRANTS}{grant.pk}/change/", {"model": models["churn"].pk, "user": actors["outsider"].pk}
    )
    assert response.status_code == 403
    grant.refresh_from_db()
    assert grant.model == models["pricing"] and grant.user == actors["api_client"]


def test_deleting_a_grant_in_the_admin_is_audited(client, superuser, actors, models):
    grant = predict_grant_create(
        actor=superuser, model=models["pricing"], user=actors["api_client"]
    )
    response = client.post(f"{GRANTS}{grant.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.content
    assert not PredictGrant.objects.exists()
    [event] = audit_events("model.grant.deleted")
    assert event["target"] == {"type": "model", "id": "pricing"}
    assert event["details"]["grantee"] == {
        "type": "user",
        "id": pseudonym_for(actors["api_client"]),
    }
    assert not user_may_predict(actors["api_client"], "pricing")


def test_deleting_selected_grants_in_the_admin_audits_each(client, superuser, actors, models):
    grants = [
        predict_grant_create(actor=superuser, model=models[name], user=actors["api_client"])
        for name in ("pricing", "churn")
    ]
    response = client.post(
        GRANTS,
        {
            "action": "delete_selected",
            "_selected_action": [str(grant.pk) for grant in grants],
            "post": "yes",
        },
    )
    assert response.status_code == 302, response.content
    assert not PredictGrant.objects.exists()
    deleted = audit_events("model.grant.deleted")
    assert sorted(event["target"]["id"] for event in deleted) == ["churn", "pricing"]
