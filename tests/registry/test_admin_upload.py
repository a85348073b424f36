"""Uploading a version from the admin: holders of `models.write` only, the API's service (so
encrypted and audited alike), errors on the form, and the plaintext never on disk."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import skops.io
from django.test import Client
from sklearn.neighbors import KNeighborsRegressor

from apps.registry import admin as registry_admin
from apps.registry.models import ModelVersion
from apps.registry.uploads import InMemoryArtifactUploadHandler
from tests.registry.conftest import (
    SCHEMA,
    array_bytes,
    artifact,
    audit_events,
    make_model,
    stored_files,
    trained_bytes,
)


def upload_url(model: Any) -> str:
    return f"/admin/registry/registeredmodel/{model.pk}/upload-version/"


def form_data(content: bytes, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "artifact": artifact(content),
        "format": "joblib",
        "input_schema": json.dumps(SCHEMA),
        "feature_order": "",
        "max_batch": "100",
        "dp_epsilon": "",
        "dp_sensitivity": "",
        "watermark": "",
    }
    data.update(fields)
    return data


def staff(user: Any, *, superuser: bool = False) -> Any:
    user.is_staff, user.is_superuser = True, superuser
    user.save()
    return user


@pytest.fixture
def model(actors: dict[str, Any]) -> Any:
    return make_model(actors["admin"])


@pytest.fixture
def admin_user_client(client: Client, actors: dict[str, Any], verified_login: Any) -> Client:
    return verified_login(client, staff(actors["admin"], superuser=True))


@pytest.mark.django_db
def test_an_admin_uploads_a_version_encrypted_and_audited(
    admin_user_client, actors, model, media_root, no_temp_files
):
    page = admin_user_client.get(f"/admin/registry/registeredmodel/{model.pk}/change/")
    assert page.status_code == 200 and upload_url(model) in page.content.decode()
    assert admin_user_client.get(upload_url(model)).status_code == 200
    plaintext = trained_bytes()

    response = admin_user_client.post(
        upload_url(model),
        form_data(plaintext, max_batch="20", feature_order=json.dumps(["area", "rooms"])),
    )

    version = ModelVersion.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/registry/modelversion/{version.pk}/change/"
    assert (version.number, version.format, version.max_batch) == (1, "joblib", 20)
    assert version.feature_order == ["area", "rooms"] and version.size == len(plaintext)
    [stored] = stored_files(media_root)
    assert plaintext[:64] not in stored.read_bytes()
    [event] = audit_events("model.version.created")
    assert event["target"] == {"type": "model_version", "id": "pricing:1"}
    assert event["actor"]["type"] == "user"
    followed = admin_user_client.get(response["Location"])
    assert f"Uploaded {version}" in followed.content.decode()


@pytest.mark.django_db
def test_a_skops_version_is_uploaded_from_the_admin(admin_user_client, model, media_root):
    from sklearn.linear_model import LinearRegression

    content = skops.io.dumps(LinearRegression().fit([[0, 1], [1, 0], [1, 1]], [1, 2, 3]))
    response = admin_user_client.post(upload_url(model), form_data(content, format="skops"))
    assert response.status_code == 302
    assert ModelVersion.objects.get().format == "skops"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "content", "field", "words"),
    [
        ({"input_schema": "not json"}, None, "input_schema", "JSON"),
        ({"input_schema": json.dumps({"type": "array"})}, None, "input_schema", "type"),
        (
            {"feature_order": json.dumps(["rooms", "floors"])},
            None,
            "feature_order",
            "feature_order/1: is not a property",
        ),
        ({"dp_epsilon": "0.5"}, None, "dp_epsilon", "both"),
        ({"dp_epsilon": "-1", "dp_sensitivity": "1"}, None, "dp_epsilon", "greater than 0"),
        ({"max_batch": "0"}, None, "max_batch", "greater than or equal"),
        ({"watermark": json.dumps([1])}, None, "watermark", "inputs"),
        ({"format": "pickle"}, None, "format", "pickle"),
        ({"format": "skops"}, b"not a zip", "artifact", "not a skops file"),
        ({"format": "skops"}, "knn", "artifact", "KDTree"),
    ],
)
def test_a_refused_upload_shows_why_on_the_form_and_stores_nothing(
    admin_user_client, model, media_root, fields, content, field, words
):
    if content == "knn":
        knn = KNeighborsRegressor(n_neighbors=1, algorithm="kd_tree")
        content = skops.io.dumps(knn.fit([[0, 1], [1, 0]], [1, 2]))
    response = admin_user_client.post(
        upload_url(model), form_data(content or trained_bytes(), **fields)
    )

    assert response.status_code == 200
    form = response.context["form"]
    assert field in form.errors, form.errors
    assert words in " ".join(form.errors[field]), form.errors
    assert words in response.content.decode()
    assert not ModelVersion.objects.exists() and stored_files(media_root) == []
    assert audit_events("model.version.created") == []


@pytest.mark.django_db
def test_an_upload_over_the_limit_shows_an_error_and_leaves_nothing(
    admin_user_client, model, media_root, settings, no_temp_files
):
    settings.BULWARK_MAX_ARTIFACT_BYTES = 1000

    response = admin_user_client.post(upload_url(model), form_data(b"x" * 5000))

    assert response.status_code == 413
    assert "larger than the limit of 1000 bytes" in response.content.decode()
    assert response.context["form"].is_bound is False  # the fields sent were not read
    assert not ModelVersion.objects.exists() and stored_files(media_root) == []
    assert audit_events("model.version.created") == []


@pytest.mark.django_db
def test_the_admin_upload_keeps_the_artifact_in_memory_only(
    admin_user_client, model, media_root, monkeypatch, no_temp_files
):
    # 3 MB: over Django's 2.5 MB threshold for spilling an upload to a temporary file, which
    # `no_temp_files` turns into a failure. And the view's only handler is the in-memory one.
    seen: list[list[type]] = []
    real_register = registry_admin.RegisteredModelAdmin._register_and_log

    def register(self: Any, request: Any, *args: Any) -> Any:
        seen.append([type(handler) for handler in request.upload_handlers])
        return real_register(self, request, *args)

    monkeypatch.setattr(registry_admin.RegisteredModelAdmin, "_register_and_log", register)

    content = array_bytes(3 * 1024 * 1024)
    response = admin_user_client.post(upload_url(model), form_data(content))

    assert response.status_code == 302
    assert seen == [[InMemoryArtifactUploadHandler]]
    assert ModelVersion.objects.get().size == len(content) > 3 * 1024 * 1024


@pytest.mark.django_db
def test_the_admin_upload_checks_csrf_after_setting_its_handler(
    actors, model, media_root, verified_login, no_temp_files
):
    client = verified_login(
        Client(enforce_csrf_checks=True), staff(actors["admin"], superuser=True)
    )

    refused = client.post(upload_url(model), form_data(trained_bytes()))
    assert refused.status_code == 403 and not ModelVersion.objects.exists()

    page = client.get(upload_url(model))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token is not None
    # 3 MB: had the CSRF check read the body before the view set its handler, Django's
    # default handlers would have spilled it to a temporary file (`no_temp_files` fails that).
    accepted = client.post(
        upload_url(model),
        form_data(array_bytes(3 * 1024 * 1024), csrfmiddlewaretoken=token.group(1)),
    )
    assert accepted.status_code == 302 and ModelVersion.objects.count() == 1


@pytest.mark.django_db
def test_someone_without_admin_access_is_sent_to_the_login(client, actors, model, media_root):
    # An ML engineer holds models.write, but not admin access (no staff flag).
    client.force_login(actors["ml_engineer"])

    for response in (
        client.get(upload_url(model)),
        client.post(upload_url(model), form_data(trained_bytes())),
    ):
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not ModelVersion.objects.exists() and stored_files(media_root) == []


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["security_officer", "auditor"])
def test_staff_without_models_write_are_refused(
    client, actors, model, media_root, verified_login, role
):
    verified_login(client, staff(actors[role], superuser=True))

    assert client.get(upload_url(model)).status_code == 403
    assert client.post(upload_url(model), form_data(trained_bytes())).status_code == 403
    page = client.get(f"/admin/registry/registeredmodel/{model.pk}/change/")
    assert page.status_code == 200 and upload_url(model) not in page.content.decode()
    assert not ModelVersion.objects.exists() and stored_files(media_root) == []


@pytest.mark.django_db
def test_a_staff_ml_engineer_who_owns_the_model_may_upload(
    client, actors, model, media_root, verified_login
):
    verified_login(client, staff(actors["ml_engineer"]))
    refused = client.post(upload_url(model), form_data(trained_bytes()))
    assert refused.status_code == 200 and not ModelVersion.objects.exists()
    assert "owners and admins" in refused.content.decode()
    model.owners.add(actors["ml_engineer"])
    response = client.post(upload_url(model), form_data(trained_bytes()))
    assert response.status_code == 302 and ModelVersion.objects.count() == 1
