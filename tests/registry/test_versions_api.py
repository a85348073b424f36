"""Uploading versions (encrypted, in memory, bounded), stages, and verified loading."""

from __future__ import annotations

import json

import pytest

from apps.registry.errors import ArtifactRefused
from apps.registry.models import ModelVersion, Stage
from apps.registry.uploads import InMemoryArtifactUploadHandler
from apps.registry.version_loading import model_version_load
from tests.registry.conftest import (
    SCHEMA,
    array_bytes,
    assert_error,
    audit_events,
    make_model,
    stored_files,
    trained_bytes,
    upload,
)


def version_globals() -> list[str]:
    return ModelVersion.objects.get().allowed_globals


def version_format_listed(api_client) -> list[str]:
    listed = api_client.get("/api/v1/models/pricing/versions").json()
    return [item["format"] for item in listed["results"]]


@pytest.mark.django_db
def test_an_uploaded_version_is_stored_encrypted_and_loads_verified(
    api_client, actors, media_root, no_temp_files, loader_calls
):
    make_model(actors["ml_engineer"])
    plaintext = trained_bytes()
    api_client.force_authenticate(actors["ml_engineer"])

    response = upload(api_client, "pricing", plaintext, max_batch="20")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {
        "version",
        "sha256",
        "size",
        "stage",
        "status",
        "format",
        "allowed_globals",
        "signed_by",
        "encrypted",
        "created_at",
    }
    assert body["status"] == "ok" and body["signed_by"] is None
    assert body["allowed_globals"]["beyond_default"] == []
    assert body["allowed_globals"]["count"] == len(version_globals()) > 0
    assert body["version"] == 1 and body["stage"] == "staging" and body["encrypted"] is True
    assert body["format"] == "joblib" and version_format_listed(api_client) == ["joblib"]
    assert body["size"] == len(plaintext)
    version = ModelVersion.objects.get(model__name="pricing", number=1)
    assert version.feature_order == ["rooms", "area"] and version.max_batch == 20
    [stored] = stored_files(media_root)
    ciphertext = stored.read_bytes()
    assert plaintext[:64] not in ciphertext and plaintext[-64:] not in ciphertext
    assert stored.resolve().is_relative_to(media_root.resolve())

    model = model_version_load(version=version)

    assert loader_calls == ["_isolated"]
    assert model.predict([[1.0, 1.0]])[0] == pytest.approx(1.5)
    model.close()
    [event] = audit_events("model.version.created")
    assert event["target"] == {"type": "model_version", "id": "pricing:1"}


@pytest.mark.django_db
def test_a_large_upload_stays_in_memory(api_client, actors, media_root, no_temp_files):
    # 3 MB: over Django's 2.5 MB threshold for spilling uploads to a temporary file.
    make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])
    content = array_bytes(3 * 1024 * 1024)
    response = upload(api_client, "pricing", content)
    assert response.status_code == 201, response.content
    assert ModelVersion.objects.get().size == len(content) > 3 * 1024 * 1024


def test_the_upload_view_uses_only_the_in_memory_handler(rf):
    from apps.registry.views import ModelVersionUploadApi

    request = rf.post("/api/v1/models/pricing/versions")
    drf_request = ModelVersionUploadApi().initialize_request(request)
    handlers = drf_request._request.upload_handlers
    assert [type(handler) for handler in handlers] == [InMemoryArtifactUploadHandler]


@pytest.mark.django_db
def test_version_numbers_count_up_per_model(api_client, actors, media_root):
    make_model(actors["admin"])
    make_model(actors["admin"], name="other")
    api_client.force_authenticate(actors["admin"])
    numbers = [upload(api_client, "pricing", trained_bytes()).json()["version"] for _ in range(3)]
    assert numbers == [1, 2, 3]
    assert upload(api_client, "other", trained_bytes()).json()["version"] == 1
    listed = api_client.get("/api/v1/models/pricing/versions").json()
    assert [item["version"] for item in listed["results"]] == [3, 2, 1]


@pytest.mark.django_db
def test_an_upload_over_the_limit_is_413_and_leaves_nothing(
    api_client, actors, media_root, settings
):
    settings.BULWARK_MAX_ARTIFACT_BYTES = 1000
    make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])
    response = upload(api_client, "pricing", b"x" * 5000)
    assert_error(response, 413, "payload_too_large")
    assert not ModelVersion.objects.exists()
    assert stored_files(media_root) == []
    assert audit_events("model.version.created") == []


@pytest.mark.django_db
def test_a_failure_after_storing_leaves_no_row_and_no_file(
    api_client, actors, media_root, monkeypatch
):
    make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("audit down")

    monkeypatch.setattr("apps.registry.services.audit_event_record", broken)
    api_client.raise_request_exception = False
    response = upload(api_client, "pricing", trained_bytes())
    assert response.status_code == 500
    assert not ModelVersion.objects.exists()
    assert stored_files(media_root) == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"input_schema": json.dumps({"type": "nonsense"})}, "input_schema"),
        ({"input_schema": json.dumps({"type": "array"})}, "input_schema"),
        ({"input_schema": json.dumps({"minLength": -1, "type": "object"})}, "input_schema"),
        ({"input_schema": "not json"}, "input_schema"),
        ({"feature_order": json.dumps(["rooms", "floors"])}, "feature_order/1"),
        ({"feature_order": json.dumps("rooms")}, "feature_order"),
        ({"dp_epsilon": "0.5"}, "dp_epsilon"),
        ({"dp_epsilon": "0", "dp_sensitivity": "1"}, "dp_epsilon"),
        ({"max_batch": "10001"}, "max_batch"),
        ({"format": "pickle"}, "format"),
    ],
)
def test_bad_version_metadata_is_400_and_stores_nothing(
    api_client, actors, media_root, fields, path
):
    make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])
    response = upload(api_client, "pricing", trained_bytes(), **fields)
    error = assert_error(response, 400, response.json()["error"]["code"])
    assert error["code"] in {"invalid_input", "malformed_json"}
    assert path in [detail["path"] for detail in error["details"]]
    assert not ModelVersion.objects.exists()
    assert stored_files(media_root) == []


@pytest.mark.django_db
def test_dp_parameters_and_feature_order_are_recorded(api_client, actors, media_root):
    make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])
    response = upload(
        api_client,
        "pricing",
        trained_bytes(),
        feature_order=json.dumps(["area", "rooms"]),
        dp_epsilon="0.5",
        dp_sensitivity="2",
    )
    assert response.status_code == 201, response.content
    version = ModelVersion.objects.get()
    assert (version.feature_order, version.dp_epsilon, version.dp_sensitivity) == (
        ["area", "rooms"],
        0.5,
        2.0,
    )


@pytest.mark.django_db
def test_a_json_body_on_upload_is_415(api_client, actors):
    make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])
    response = api_client.post(
        "/api/v1/models/pricing/versions", {"input_schema": SCHEMA}, format="json"
    )
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.django_db
def test_multipart_elsewhere_keeps_the_json_body_limit(api_client, actors):
    api_client.force_authenticate(actors["ml_engineer"])
    response = api_client.post(
        "/api/v1/models", {"name": "x" * (2 * 1024 * 1024)}, format="multipart"
    )
    assert_error(response, 413, "payload_too_large")


def _staged(api_client, number, stage):
    return api_client.post(
        f"/api/v1/models/pricing/versions/{number}/stage", {"stage": stage}, format="json"
    )


@pytest.mark.django_db
def test_promoting_moves_the_former_production_version_to_staging(api_client, actors, media_root):
    make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])
    for _ in range(2):
        upload(api_client, "pricing", trained_bytes())

    first = _staged(api_client, 1, "production")
    assert first.status_code == 200 and first.json()["stage"] == "production"
    second = _staged(api_client, 2, "production")
    assert second.status_code == 200 and second.json()["stage"] == "production"

    stages = dict(ModelVersion.objects.values_list("number", "stage"))
    assert stages == {1: Stage.STAGING, 2: Stage.PRODUCTION}
    moves = [
        (event["target"]["id"], event["details"]["from"], event["details"]["to"])
        for event in audit_events("model.version.staged")
    ]
    assert moves == [
        ("pricing:1", "staging", "production"),
        ("pricing:1", "production", "staging"),
        ("pricing:2", "staging", "production"),
    ]
    assert _staged(api_client, 2, "archived").json()["stage"] == "archived"
    assert not ModelVersion.objects.filter(stage=Stage.PRODUCTION).exists()


@pytest.mark.django_db
def test_the_database_allows_one_production_version_per_model(actors, media_root):
    from django.db import IntegrityError, transaction

    model = make_model(actors["admin"])
    common = {"size": 1, "sha256": "0" * 64, "input_schema": SCHEMA, "master_key_id": "k"}
    ModelVersion.objects.create(model=model, number=1, stage=Stage.PRODUCTION, **common)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(model=model, number=2, stage=Stage.PRODUCTION, **common)


@pytest.mark.django_db
def test_a_bad_stage_or_absent_version_is_refused(api_client, actors, media_root):
    make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])
    upload(api_client, "pricing", trained_bytes())
    assert_error(_staged(api_client, 1, "live"), 400, "invalid_input")
    assert_error(_staged(api_client, 9, "production"), 404, "not_found")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("admin", (201, 200)),
        ("ml_engineer", (201, 200)),
        ("auditor", (403, 403)),
        ("security_officer", (403, 403)),
        ("api_client", (403, 403)),
    ],
)
def test_who_may_upload_and_stage_versions(api_client, actors, media_root, role, expected):
    make_model(actors["admin"]).owners.add(actors["ml_engineer"])
    api_client.force_authenticate(actors["admin"])
    upload(api_client, "pricing", trained_bytes())
    api_client.force_authenticate(actors[role])
    uploaded = upload(api_client, "pricing", trained_bytes())
    staged = _staged(api_client, 1, "production")
    assert (uploaded.status_code, staged.status_code) == expected
    if expected[0] == 403:
        assert_error(uploaded, 403, "permission_denied")
        assert ModelVersion.objects.count() == 1


@pytest.mark.django_db
def test_uploading_needs_a_signed_in_caller(api_client, actors, media_root):
    make_model(actors["admin"])
    assert_error(upload(api_client, "pricing", trained_bytes()), 401, "authentication_required")


@pytest.mark.django_db
def test_a_tampered_artifact_is_refused_before_unpickling(
    api_client, actors, media_root, loader_calls
):
    make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])
    upload(api_client, "pricing", trained_bytes())
    version = ModelVersion.objects.get()
    [stored] = stored_files(media_root)
    tampered = bytearray(stored.read_bytes())
    tampered[len(tampered) // 2] ^= 0x01
    stored.write_bytes(bytes(tampered))

    with pytest.raises(ArtifactRefused) as refused:
        model_version_load(version=version)

    assert refused.value.status_code == 503 and refused.value.code == "service_unavailable"
    assert loader_calls == []
    [event] = audit_events("model.version.rejected")
    assert event["outcome"] == "failure"
    assert event["details"] == {"reason": "tampered or truncated ciphertext"}


@pytest.mark.django_db
def test_a_missing_artifact_is_refused_with_an_event(api_client, actors, media_root, loader_calls):
    make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])
    upload(api_client, "pricing", trained_bytes())
    [stored] = stored_files(media_root)
    stored.unlink()
    with pytest.raises(ArtifactRefused):
        model_version_load(version=ModelVersion.objects.get())
    assert loader_calls == []
    assert [e["details"]["reason"] for e in audit_events("model.version.rejected")] == [
        "artifact missing"
    ]


@pytest.mark.django_db
def test_an_upload_declaring_a_body_over_the_limit_is_refused_unread(api_client, actors, settings):
    settings.BULWARK_MAX_ARTIFACT_BYTES = 1000
    make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])
    declared = 1000 + settings.BULWARK_MAX_JSON_BODY + 1
    response = api_client.generic(
        "POST",
        "/api/v1/models/pricing/versions",
        b"",
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(declared),
    )
    assert_error(response, 413, "payload_too_large")
