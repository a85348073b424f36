"""Owners: only a model's owners (users or a group) and admins upload, stage or archive its
versions; security officers may archive any version (containment); everyone else gets 403
`permission_denied`. Owners are shown by the API and changed by admins only, audited."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group

from apps.audit.models import ActorPseudonym
from apps.registry.models import ModelVersion, RegisteredModel
from tests.accounts.factories import UserFactory
from tests.registry.conftest import assert_error, audit_events, make_model, trained_bytes, upload


def staged(client: Any, number: int, stage: str) -> Any:
    return client.post(
        f"/api/v1/models/pricing/versions/{number}/stage", {"stage": stage}, format="json"
    )


@pytest.fixture
def owned(actors: dict[str, Any], media_root: Any, api_client: Any) -> RegisteredModel:
    """`pricing`, owned by the ML engineer, with version 1 uploaded by them."""
    model = make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])
    assert upload(api_client, "pricing", trained_bytes()).status_code == 201
    return model


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("who", "upload_status", "promote_status", "archive_status"),
    [
        ("admin", 201, 200, 200),
        ("owner", 201, 200, 200),
        ("other_engineer", 403, 403, 403),
        ("security_officer", 403, 403, 200),
        ("auditor", 403, 403, 403),
        ("api_client", 403, 403, 403),
    ],
)
def test_who_may_upload_stage_and_archive_a_models_versions(
    api_client, actors, owned, who, upload_status, promote_status, archive_status
):
    people = {
        **actors,
        "owner": actors["ml_engineer"],
        "other_engineer": UserFactory(roles=["ml_engineer"]),
    }
    api_client.force_authenticate(people[who])

    uploaded = upload(api_client, "pricing", trained_bytes())
    promoted = staged(api_client, 1, "production")
    archived = staged(api_client, 1, "archived")

    assert (uploaded.status_code, promoted.status_code, archived.status_code) == (
        upload_status,
        promote_status,
        archive_status,
    )
    for response in (uploaded, promoted, archived):
        if response.status_code == 403:
            assert_error(response, 403, "permission_denied")
    assert ModelVersion.objects.count() == (2 if upload_status == 201 else 1)


@pytest.mark.django_db
def test_members_of_the_owner_group_are_owners(api_client, actors, owned):
    engineer = UserFactory(roles=["ml_engineer"])
    team = Group.objects.create(name="pricing-team")
    api_client.force_authenticate(engineer)
    assert_error(upload(api_client, "pricing", trained_bytes()), 403, "permission_denied")
    engineer.groups.add(team)
    RegisteredModel.objects.filter(name="pricing").update(owner_group=team)
    assert upload(api_client, "pricing", trained_bytes()).status_code == 201
    # A group member still needs the role that writes models at all.
    auditor = UserFactory(roles=["auditor"])
    auditor.groups.add(team)
    api_client.force_authenticate(auditor)
    assert_error(upload(api_client, "pricing", trained_bytes()), 403, "permission_denied")


@pytest.mark.django_db
def test_the_api_shows_owners_and_an_admin_changes_them_audited(api_client, actors, owned):
    newcomer = UserFactory(roles=["ml_engineer"])
    Group.objects.create(name="pricing-team")
    api_client.force_authenticate(actors["admin"])

    response = api_client.patch(
        "/api/v1/models/pricing",
        {"owners": [newcomer.username], "owner_group": "pricing-team"},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["owners"] == [newcomer.username] and body["owner_group"] == "pricing-team"
    assert api_client.get("/api/v1/models/pricing").json()["owners"] == [newcomer.username]
    [event] = audit_events("model.updated")
    assert event["details"]["fields"] == ["owner_group", "owners"]
    pseudonym = ActorPseudonym.objects.get(user_id=newcomer.pk).pseudonym
    assert event["details"]["owners"] == [pseudonym]
    assert newcomer.username not in str(event)  # people appear as pseudonyms only
    # The former owner lost the model; the new one has it.
    api_client.force_authenticate(actors["ml_engineer"])
    assert_error(upload(api_client, "pricing", trained_bytes()), 403, "permission_denied")
    api_client.force_authenticate(newcomer)
    assert upload(api_client, "pricing", trained_bytes()).status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["ml_engineer", "security_officer", "auditor", "api_client"])
def test_only_admins_change_owners_and_the_allow_list(api_client, actors, owned, role):
    api_client.force_authenticate(actors[role])
    for change in ({"owners": [actors[role].username]}, {"extra_allowed_globals": ["a.b"]}):
        response = api_client.patch("/api/v1/models/pricing", change, format="json")
        assert_error(response, 403, "permission_denied")
    model = RegisteredModel.objects.get(name="pricing")
    assert list(model.owners.all()) == [actors["ml_engineer"]]
    assert model.extra_allowed_globals == []
    assert audit_events("model.updated") == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"owners": ["nobody-here"]}, "owners"),
        ({"owner_group": "no-such-group"}, "owner_group"),
        ({"extra_allowed_globals": ["os.system"]}, "extra_allowed_globals/0"),
        ({"extra_allowed_globals": ["ok.Name", "not a name"]}, "extra_allowed_globals/1"),
        ({"extra_allowed_globals": "a.b"}, "extra_allowed_globals"),
        ({"require_signed_artifacts": "maybe"}, "require_signed_artifacts"),
    ],
)
def test_a_bad_change_is_400_and_changes_nothing(api_client, actors, owned, change, path):
    api_client.force_authenticate(actors["admin"])
    error = assert_error(
        api_client.patch("/api/v1/models/pricing", change, format="json"), 400, "invalid_input"
    )
    assert path in [detail["path"] for detail in error["details"]]
    model = RegisteredModel.objects.get(name="pricing")
    assert list(model.owners.all()) == [actors["ml_engineer"]] and model.owner_group is None
    assert model.extra_allowed_globals == [] and not model.require_signed_artifacts


@pytest.mark.django_db
def test_an_owner_edits_the_description_and_a_non_owner_cannot(api_client, actors, owned):
    response = api_client.patch(
        "/api/v1/models/pricing", {"description": "house prices"}, format="json"
    )
    assert response.status_code == 200 and response.json()["description"] == "house prices"
    api_client.force_authenticate(UserFactory(roles=["ml_engineer"]))
    assert_error(
        api_client.patch("/api/v1/models/pricing", {"description": "mine"}, format="json"),
        403,
        "permission_denied",
    )


@pytest.mark.django_db
def test_an_admin_changes_owners_in_the_admin_and_it_is_audited(
    client, actors, owned, verified_login
):
    admin = actors["admin"]
    admin.is_staff = admin.is_superuser = True
    admin.save()
    verified_login(client, admin)
    newcomer = UserFactory(roles=["ml_engineer"])
    url = f"/admin/registry/registeredmodel/{owned.pk}/change/"
    assert client.get(url).status_code == 200

    response = client.post(
        url,
        {
            "description": "",
            "owners": [str(newcomer.pk)],
            "owner_group": "",
            "require_signed_artifacts": "on",
            "extra_allowed_globals": "tests.registry.custom_model.ClippedSum\n",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    model = RegisteredModel.objects.get(pk=owned.pk)
    assert list(model.owners.all()) == [newcomer] and model.require_signed_artifacts
    assert model.extra_allowed_globals == ["tests.registry.custom_model.ClippedSum"]
    [event] = audit_events("model.updated")
    assert event["details"]["fields"] == [
        "extra_allowed_globals",
        "owners",
        "require_signed_artifacts",
    ]
    refused = client.post(
        url,
        {"description": "", "owners": [str(newcomer.pk)], "extra_allowed_globals": "os.system"},
    )
    assert refused.status_code == 200 and "never allowed" in refused.content.decode()


@pytest.mark.django_db
def test_a_staff_engineer_sees_the_model_page_read_only(client, actors, owned, verified_login):
    engineer = actors["ml_engineer"]
    engineer.is_staff = True
    engineer.save()
    verified_login(client, engineer)
    url = f"/admin/registry/registeredmodel/{owned.pk}/change/"
    before = list(RegisteredModel.objects.get(pk=owned.pk).owners.all())
    client.post(url, {"owners": [str(actors["admin"].pk)], "extra_allowed_globals": "a.b"})
    model = RegisteredModel.objects.get(pk=owned.pk)
    assert list(model.owners.all()) == before and model.extra_allowed_globals == []
