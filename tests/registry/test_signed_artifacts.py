"""Signed artifacts (OpenSSF model signing, key-based) and trusted publishers: a bundle is
verified before anything else reads the artifact; every outcome is audited; a global beyond
the deployment's list needs both a trusted signature and an admin's extension of that
model's list, and taking either away quarantines the versions that relied on it."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from model_signing import signing
from rest_framework.test import APIClient

from apps.registry.models import ModelVersion, Publisher
from apps.serving.catalog import catalog
from apps.serving.model_cache import models
from tests.registry import custom_model
from tests.registry.conftest import (
    artifact,
    assert_error,
    audit_events,
    make_model,
    stored_files,
    trained_bytes,
    upload,
)


def private_key_file(tmp_path: Path, name: str) -> tuple[Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / f"{name}.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, public.decode()


def signed(content: bytes, key: Path, tmp_path: Path) -> str:
    """A model-signing bundle for `content`, as the library writes it for a file."""
    model = tmp_path / "model.joblib"
    model.write_bytes(content)
    bundle = tmp_path / "model.sig"
    signing.Config().use_elliptic_key_signer(private_key=key).sign(model, bundle)
    return bundle.read_text()


def custom_bytes() -> bytes:
    buffer = io.BytesIO()
    joblib.dump(custom_model.ClippedSum(low=0.0, high=5.0), buffer)
    return buffer.getvalue()


@pytest.fixture
def trusted(actors: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """A publisher registered by a security officer (on a client of their own), and its
    private key file."""
    key, public = private_key_file(tmp_path, "trusted")
    officer = APIClient()
    officer.force_authenticate(actors["security_officer"])
    response = officer.post(
        "/api/v1/publishers", {"name": "ml-platform", "public_key": public}, format="json"
    )
    assert response.status_code == 201, response.content
    return {"key": key, **response.json()}


@pytest.fixture
def engineer(api_client: Any, actors: dict[str, Any], media_root: Path) -> Any:
    make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])
    return api_client


# --- publishers -------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("admin", 201),
        ("security_officer", 201),
        ("ml_engineer", 403),
        ("auditor", 403),
        ("api_client", 403),
    ],
)
def test_who_may_register_and_list_publishers(api_client, actors, tmp_path, role, expected):
    _, public = private_key_file(tmp_path, "k")
    api_client.force_authenticate(actors[role])
    created = api_client.post(
        "/api/v1/publishers", {"name": "p", "public_key": public}, format="json"
    )
    assert created.status_code == expected, created.content
    listed = api_client.get("/api/v1/publishers")
    assert listed.status_code == (200 if expected == 201 else 403)
    if expected == 201:
        [item] = listed.json()["results"]
        assert item["name"] == "p" and item["public_key"].startswith("-----BEGIN PUBLIC KEY")
        [event] = audit_events("publisher.created")
        assert event["details"] == {"name": "p", "key_id": item["key_id"]}
    else:
        assert_error(created, 403, "permission_denied")
        assert not Publisher.objects.exists()


@pytest.mark.django_db
def test_a_publisher_key_must_be_an_elliptic_curve_pem_and_unique(api_client, actors, tmp_path):
    api_client.force_authenticate(actors["security_officer"])
    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    ed_pem = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for bad in ("not a key", rsa_pem.decode(), ed_pem.decode(), ""):
        response = api_client.post(
            "/api/v1/publishers", {"name": "p", "public_key": bad}, format="json"
        )
        error = assert_error(response, 400, "invalid_input")
        assert error["details"][0]["path"] == "public_key"
    _, public = private_key_file(tmp_path, "k")
    assert api_client.post(
        "/api/v1/publishers", {"name": "p", "public_key": public}, format="json"
    ).status_code == 201  # fmt: skip
    _, other = private_key_file(tmp_path, "other")
    for name, key in (("p", other), ("q", public)):
        response = api_client.post(
            "/api/v1/publishers", {"name": name, "public_key": key}, format="json"
        )
        assert_error(response, 409, "conflict")
    assert Publisher.objects.count() == 1


@pytest.mark.django_db
def test_removing_a_publisher_is_audited_and_it_is_no_longer_listed(api_client, actors, trusted):
    api_client.force_authenticate(actors["ml_engineer"])
    assert_error(api_client.delete(f"/api/v1/publishers/{trusted['id']}"), 403, "permission_denied")
    api_client.force_authenticate(actors["admin"])
    assert api_client.delete(f"/api/v1/publishers/{trusted['id']}").status_code == 204
    assert api_client.get("/api/v1/publishers").json()["results"] == []
    assert_error(api_client.delete(f"/api/v1/publishers/{trusted['id']}"), 404, "not_found")
    [event] = audit_events("publisher.removed")
    assert event["details"]["key_id"] == trusted["key_id"]
    assert Publisher.objects.get().removed_at is not None  # kept: versions name their signer


# --- signatures on upload ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_valid_bundle_from_a_trusted_publisher_is_accepted(engineer, trusted, tmp_path):
    content = trained_bytes()
    bundle = signed(content, trusted["key"], tmp_path)

    response = upload(engineer, "pricing", content, signature=artifact(bundle.encode(), "m.sig"))

    assert response.status_code == 201, response.content
    assert response.json()["signed_by"] == "ml-platform"
    version = ModelVersion.objects.get()
    assert version.signed_by.name == "ml-platform" and json.loads(version.signature)
    listed = engineer.get("/api/v1/models/pricing/versions").json()["results"]
    assert listed[0]["signed_by"] == "ml-platform"
    [event] = audit_events("model.version.signature_verified")
    assert event["details"] == {
        "publisher": "ml-platform",
        "key_id": trusted["key_id"],
        "sha256": version.sha256,
    }


def _tampered_bundle(bundle: str) -> str:
    document = json.loads(bundle)
    signature = bytearray(base64.b64decode(document["dsseEnvelope"]["signatures"][0]["sig"]))
    signature[10] ^= 0x01
    document["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(signature).decode()
    return json.dumps(document)


def _tampered_artifact(content: bytes) -> bytes:
    # A byte of the coefficients' raw data: still a loadable pickle, other bytes.
    index = content.index(b"coef_") + 200
    return content[:index] + bytes([content[index] ^ 0x01]) + content[index + 1 :]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("case", "words", "reason"),
    [
        ("tampered artifact", "other bytes", "signature invalid"),
        ("bundle for other bytes", "other bytes", "signature invalid"),
        ("tampered bundle", "does not verify", "signature invalid"),
        ("unknown publisher", "trusted publisher", "signature by an unknown or removed publisher"),
        ("removed publisher", "trusted publisher", "signature by an unknown or removed publisher"),
        ("not a bundle", "not an OpenSSF", "signature unreadable"),
    ],
)
def test_a_signature_that_does_not_prove_a_trusted_publisher_is_refused(
    engineer, api_client, actors, trusted, tmp_path, media_root, case, words, reason
):
    content = trained_bytes()
    bundle = signed(content, trusted["key"], tmp_path)
    if case == "tampered artifact":
        content = _tampered_artifact(content)
    elif case == "bundle for other bytes":
        bundle = signed(custom_bytes(), trusted["key"], tmp_path)
    elif case == "tampered bundle":
        bundle = _tampered_bundle(bundle)
    elif case == "unknown publisher":
        stranger, _ = private_key_file(tmp_path, "stranger")
        bundle = signed(content, stranger, tmp_path)
    elif case == "removed publisher":
        api_client.force_authenticate(actors["security_officer"])
        api_client.delete(f"/api/v1/publishers/{trusted['id']}")
        api_client.force_authenticate(actors["ml_engineer"])
    elif case == "not a bundle":
        bundle = '{"hello": "world"}'

    response = upload(engineer, "pricing", content, signature=bundle)

    error = assert_error(response, 400, "invalid_input")
    assert error["details"][0]["path"] == "signature" and words in error["message"]
    assert not ModelVersion.objects.exists() and stored_files(media_root) == []
    [event] = audit_events("model.version.rejected")
    assert event["details"]["reason"] == reason and event["outcome"] == "denied"


@pytest.mark.django_db
def test_the_signature_is_checked_before_the_artifact_is_read(engineer, trusted, tmp_path):
    # Bytes the walk would refuse, with a bundle for other bytes: the signature answers.
    bundle = signed(trained_bytes(), trusted["key"], tmp_path)
    error = assert_error(
        upload(engineer, "pricing", b"not a pickle", signature=bundle), 400, "invalid_input"
    )
    assert error["details"][0]["path"] == "signature"


@pytest.mark.django_db
def test_a_model_that_requires_signatures_refuses_an_unsigned_upload(
    engineer, api_client, actors, trusted, tmp_path
):
    on = api_client.patch(
        "/api/v1/models/pricing", {"require_signed_artifacts": True}, format="json"
    )
    assert on.status_code == 200 and on.json()["require_signed_artifacts"] is True

    error = assert_error(upload(engineer, "pricing", trained_bytes()), 400, "invalid_input")

    assert error["details"][0]["path"] == "signature" and "requires" in error["message"]
    [event] = audit_events("model.version.rejected")
    assert event["details"]["reason"] == "unsigned artifact for a model that requires signatures"
    content = trained_bytes()
    accepted = upload(
        engineer, "pricing", content, signature=signed(content, trusted["key"], tmp_path)
    )
    assert accepted.status_code == 201, accepted.content
    # An owner may not turn the requirement off again; an admin may.
    assert_error(
        api_client.patch(
            "/api/v1/models/pricing", {"require_signed_artifacts": False}, format="json"
        ),
        403,
        "permission_denied",
    )


# --- globals beyond the default list ----------------------------------------------------


def predict(client: Any, user: Any, number: int) -> Any:
    from tests.serving.conftest import bearer

    models.clear()
    catalog.sync(object())
    return client.post(
        f"/api/v1/models/pricing/predict?version={number}",
        json.dumps({"inputs": [{"rooms": 2.0, "area": 9.0}]}),
        content_type="application/json",
        **bearer(user),
    )


@pytest.mark.django_db
def test_a_global_beyond_the_list_needs_a_trusted_signature_and_an_admin_extension(
    engineer, api_client, client, actors, trusted, tmp_path
):
    content = custom_bytes()
    bundle = signed(content, trusted["key"], tmp_path)

    # Neither: the global is named.
    error = assert_error(upload(engineer, "pricing", content), 400, "invalid_input")
    assert {"path": "artifact", "message": f"untrusted global: {custom_model.NAME}"} in error[
        "details"
    ]
    # Signed, but the model does not allow it.
    assert_error(upload(engineer, "pricing", content, signature=bundle), 400, "invalid_input")
    # Allowed by an admin (owners may not), but unsigned.
    assert_error(
        api_client.patch(
            "/api/v1/models/pricing", {"extra_allowed_globals": [custom_model.NAME]}, format="json"
        ),
        403,
        "permission_denied",
    )
    api_client.force_authenticate(actors["admin"])
    extended = api_client.patch(
        "/api/v1/models/pricing", {"extra_allowed_globals": [custom_model.NAME]}, format="json"
    )
    assert extended.json()["extra_allowed_globals"] == [custom_model.NAME]
    api_client.force_authenticate(actors["ml_engineer"])
    error = assert_error(upload(engineer, "pricing", content), 400, "invalid_input")
    assert "only in artifacts signed" in error["message"]

    # Both: accepted, shown on the version, served by a runner.
    response = upload(engineer, "pricing", content, signature=bundle)
    assert response.status_code == 201, response.content
    assert response.json()["allowed_globals"]["beyond_default"] == [custom_model.NAME]
    served = predict(client, actors["ml_engineer"], 1)
    assert served.status_code == 200, served.content
    assert served.json()["predictions"] == [5.0]  # 2 + 9, clipped to 5
    [event] = audit_events("model.updated")
    assert event["details"]["extra_allowed_globals"] == [custom_model.NAME]

    # The admin takes the name back: the version is quarantined and never served.
    api_client.force_authenticate(actors["admin"])
    api_client.patch("/api/v1/models/pricing", {"extra_allowed_globals": []}, format="json")
    version = ModelVersion.objects.get()
    assert version.status == "quarantined" and custom_model.NAME in version.quarantine_reason
    [event] = audit_events("model.version.quarantined")
    assert event["target"] == {"type": "model_version", "id": "pricing:1"}
    assert_error(predict(client, actors["ml_engineer"], 1), 404, "not_found")


@pytest.mark.django_db
def test_removing_the_signer_quarantines_versions_that_needed_its_signature(
    engineer, api_client, actors, trusted, tmp_path
):
    model = ModelVersion.objects.model._meta.apps.get_model("registry", "RegisteredModel")
    model.objects.filter(name="pricing").update(extra_allowed_globals=[custom_model.NAME])
    content = custom_bytes()
    upload(engineer, "pricing", content, signature=signed(content, trusted["key"], tmp_path))
    plain = trained_bytes()
    upload(engineer, "pricing", plain, signature=signed(plain, trusted["key"], tmp_path))

    api_client.force_authenticate(actors["security_officer"])
    assert api_client.delete(f"/api/v1/publishers/{trusted['id']}").status_code == 204

    statuses = dict(ModelVersion.objects.values_list("number", "status"))
    assert statuses == {1: "quarantined", 2: "ok"}  # v2 imports only default globals


@pytest.mark.django_db
def test_the_readme_signing_command_signs_an_artifact_bulwark_accepts(engineer, trusted, tmp_path):
    model = tmp_path / "model.joblib"
    model.write_bytes(trained_bytes())
    command = Path(sys.executable).parent / "model_signing"
    subprocess.run(
        [
            str(command),
            "sign",
            "key",
            "--private_key",
            str(trusted["key"]),
            "--signature",
            str(tmp_path / "model.sig"),
            str(model),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    response = upload(
        engineer,
        "pricing",
        model.read_bytes(),
        signature=artifact((tmp_path / "model.sig").read_bytes(), "model.sig"),
    )
    assert response.status_code == 201, response.content
    assert response.json()["signed_by"] == "ml-platform"
    assert np.isfinite(ModelVersion.objects.get().size)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "p\u0000", "public_key": "x"}, 400, "invalid_input"),  # NUL
        ({"name": "p"}, 400, "invalid_input"),  # no key
        ({"name": "", "public_key": "x"}, 400, "invalid_input"),
        ({"name": "p" * 101, "public_key": "x"}, 400, "invalid_input"),
        ({"name": "p", "public_key": "A" * 5000}, 400, "invalid_input"),
        ({"name": ["p"], "public_key": "x"}, 400, "invalid_input"),
    ],
)
def test_a_bad_publisher_is_refused_with_its_code(api_client, actors, body, status, code):
    api_client.force_authenticate(actors["security_officer"])
    assert_error(api_client.post("/api/v1/publishers", body, format="json"), status, code)
    assert not Publisher.objects.exists() and audit_events("publisher.created") == []


@pytest.mark.django_db
def test_publisher_ids_and_bodies_that_are_not_json_are_refused(api_client, actors):
    api_client.force_authenticate(actors["admin"])
    assert_error(api_client.delete("/api/v1/publishers/not-a-uuid"), 404, "not_found")
    assert_error(
        api_client.generic(
            "POST", "/api/v1/publishers", '{"name": "a", "name": "b"}', "application/json"
        ),
        400,
        "malformed_json",
    )
    assert_error(
        api_client.generic("POST", "/api/v1/publishers", "name=a", "text/plain"),
        415,
        "unsupported_media_type",
    )


@pytest.mark.django_db
def test_a_signature_bundle_too_large_or_not_text_is_refused(engineer, media_root):
    for bundle in (
        artifact(b"{" + b" " * (64 * 1024) + b"}", "m.sig"),
        artifact(b"\xff\xfe", "m.sig"),
    ):
        error = assert_error(
            upload(engineer, "pricing", trained_bytes(), signature=bundle), 400, "invalid_input"
        )
        assert error["details"][0]["path"] == "signature"
    assert not ModelVersion.objects.exists() and stored_files(media_root) == []
