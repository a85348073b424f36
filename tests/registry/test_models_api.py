"""Registering, listing and reading models (docs/api.md "Models and versions")."""

from __future__ import annotations

import pytest

from apps.registry.models import RegisteredModel
from tests.registry.conftest import assert_error, audit_events, make_model


@pytest.mark.django_db
def test_engineer_registers_a_model_and_it_is_audited(api_client, actors):
    api_client.force_authenticate(actors["ml_engineer"])
    response = api_client.post(
        "/api/v1/models", {"name": "pricing", "description": "house prices"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "pricing"
    model = RegisteredModel.objects.get(name="pricing")
    assert model.created_by == actors["ml_engineer"]
    assert list(model.owners.all()) == [actors["ml_engineer"]]
    assert response.json()["owners"] == [actors["ml_engineer"].username]
    [event] = audit_events("model.created")
    assert event["target"] == {"type": "model", "id": "pricing"}


@pytest.mark.django_db
def test_a_taken_name_is_a_conflict(api_client, actors):
    make_model(actors["admin"])
    api_client.force_authenticate(actors["ml_engineer"])
    response = api_client.post("/api/v1/models", {"name": "pricing"}, format="json")
    assert_error(response, 409, "conflict")


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["has space", "", "x" * 65, "slash/name"])
def test_a_name_that_is_not_a_slug_is_invalid(api_client, actors, name):
    api_client.force_authenticate(actors["ml_engineer"])
    response = api_client.post("/api/v1/models", {"name": name}, format="json")
    assert_error(response, 400, "invalid_input")


@pytest.mark.django_db
def test_models_are_listed_with_a_cursor(api_client, actors):
    for index in range(3):
        make_model(actors["admin"], name=f"model-{index}")
    api_client.force_authenticate(actors["auditor"])
    first = api_client.get("/api/v1/models?limit=2").json()
    assert len(first["results"]) == 2 and first["next"]
    second = api_client.get(f"/api/v1/models?limit=2&cursor={first['next']}").json()
    names = {item["name"] for item in first["results"] + second["results"]}
    assert names == {"model-0", "model-1", "model-2"} and second["next"] is None


@pytest.mark.django_db
def test_one_model_is_read_by_name_and_an_absent_one_is_404(api_client, actors):
    make_model(actors["admin"])
    api_client.force_authenticate(actors["auditor"])
    assert api_client.get("/api/v1/models/pricing").json()["name"] == "pricing"
    assert_error(api_client.get("/api/v1/models/absent"), 404, "not_found")
    assert_error(api_client.get("/api/v1/models/absent/versions"), 404, "not_found")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "read", "write"),
    [
        ("admin", 200, 201),
        ("ml_engineer", 200, 201),
        ("auditor", 200, 403),
        ("security_officer", 403, 403),
        ("api_client", 403, 403),
    ],
)
def test_who_may_read_and_register_models(api_client, actors, role, read, write):
    make_model(actors["admin"], name="existing")
    api_client.force_authenticate(actors[role])
    assert api_client.get("/api/v1/models").status_code == read
    assert api_client.get("/api/v1/models/existing").status_code == read
    assert api_client.get("/api/v1/models/existing/versions").status_code == read
    response = api_client.post("/api/v1/models", {"name": f"new-{role}"}, format="json")
    assert response.status_code == write
    if write == 403:
        assert_error(response, 403, "permission_denied")


@pytest.mark.django_db
def test_models_need_a_signed_in_caller(api_client, actors):
    make_model(actors["admin"])
    for response in [
        api_client.get("/api/v1/models"),
        api_client.get("/api/v1/models/pricing"),
        api_client.post("/api/v1/models", {"name": "other"}, format="json"),
        api_client.post("/api/v1/models/pricing/versions/1/stage", {"stage": "production"}),
    ]:
        assert response.status_code == 401
