"""What is already stored: `manage.py artifacts_scan` runs the upload's analysis over every
version, and with --quarantine quarantines any whose globals are not allowed (never served,
never promoted, audited, shown in the API and the admin); the data migration runs it once."""

from __future__ import annotations

import importlib
import io
import json
from typing import Any

import joblib
import pytest
from django.apps import apps as django_apps
from django.core.management import CommandError, call_command

from apps.registry.models import ModelVersion, RegisteredModel
from apps.registry.services import model_version_stage
from apps.registry.version_loading import model_version_load
from apps.serving.catalog import catalog
from apps.serving.model_cache import models
from tests.registry.conftest import (
    assert_error,
    audit_events,
    make_model,
    stored_files,
    trained_bytes,
    upload,
)
from tests.serving import odd_models
from tests.serving.conftest import bearer

ODD = "tests.serving.odd_models.NanModel"


def odd_bytes() -> bytes:
    buffer = io.BytesIO()
    joblib.dump(odd_models.NanModel(), buffer)
    return buffer.getvalue()


@pytest.fixture
def two_versions(api_client: Any, actors: dict[str, Any], media_root: Any) -> Any:
    """v1 imports only default globals; v2 a type the deployment trusts today (in
    production: a name in PICKLE_TRUSTED_GLOBALS_EXTRA)."""
    make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])
    assert upload(api_client, "pricing", trained_bytes()).status_code == 201
    assert upload(api_client, "pricing", odd_bytes()).status_code == 201
    return api_client


def scan(*options: str) -> str:
    out = io.StringIO()
    call_command("artifacts_scan", *options, stdout=out)
    return out.getvalue()


def predict(client: Any, user: Any, path: str) -> Any:
    models.clear()
    catalog.sync(object())
    return client.post(
        path,
        json.dumps({"inputs": [{"rooms": 1.0, "area": 1.0}]}),
        content_type="application/json",
        **bearer(user),
    )


@pytest.mark.django_db
def test_a_clean_store_scans_clean(two_versions):
    assert "Scanned 2 version(s): 0 refused, 0 quarantined" in scan("--quarantine")
    assert set(ModelVersion.objects.values_list("status", flat=True)) == {"ok"}


@pytest.mark.django_db
def test_a_version_importing_what_is_no_longer_trusted_is_quarantined(
    two_versions, client, actors, settings
):
    model_version_stage(
        actor=actors["ml_engineer"], version=ModelVersion.objects.get(number=2), stage="production"
    )
    settings.PICKLE_TRUSTED_GLOBALS_EXTRA = []  # the deployment stops trusting the type

    with pytest.raises(CommandError, match="would be quarantined"):
        scan()  # a report only: nothing changes
    assert set(ModelVersion.objects.values_list("status", flat=True)) == {"ok"}

    report = scan("--quarantine")

    assert "1 refused, 1 quarantined" in report and "pricing v2: imports globals" in report
    v2 = ModelVersion.objects.get(number=2)
    assert v2.status == "quarantined" and ODD in v2.quarantine_reason
    assert v2.stage == "staging"  # out of production: the model has none until a promotion
    [event] = audit_events("model.version.quarantined")
    assert event["target"] == {"type": "model_version", "id": "pricing:2"}
    assert event["actor"] == {"type": "system", "ref": "registry.artifacts_scan"}
    [listed] = [
        item
        for item in two_versions.get("/api/v1/models/pricing/versions").json()["results"]
        if item["version"] == 2
    ]
    assert listed["status"] == "quarantined" and ODD in listed["quarantine_reason"]

    user = actors["ml_engineer"]
    assert_error(
        predict(client, user, "/api/v1/models/pricing/predict"), 404, "no_production_version"
    )
    assert_error(
        predict(client, user, "/api/v1/models/pricing/predict?version=2"), 404, "not_found"
    )
    assert_error(
        two_versions.post(
            "/api/v1/models/pricing/versions/2/stage", {"stage": "production"}, format="json"
        ),
        409,
        "conflict",
    )
    from apps.registry.errors import ArtifactRefused

    with pytest.raises(ArtifactRefused):
        model_version_load(version=v2)
    assert "Scanned 1 version(s)" in scan("--quarantine")  # quarantined ones are left alone


@pytest.mark.django_db
def test_a_version_failing_its_integrity_check_is_quarantined(two_versions, media_root):
    for stored in stored_files(media_root):
        content = bytearray(stored.read_bytes())
        content[len(content) // 2] ^= 0x01
        stored.write_bytes(bytes(content))
    scan("--quarantine")
    reasons = set(ModelVersion.objects.values_list("quarantine_reason", flat=True))
    assert reasons == {"integrity: tampered or truncated ciphertext"}


@pytest.mark.django_db
def test_versions_stored_before_the_analysis_get_their_globals_recorded(two_versions):
    ModelVersion.objects.update(allowed_globals=[])  # as every version was before
    v1 = ModelVersion.objects.get(number=1)
    from apps.registry.errors import ArtifactRefused

    with pytest.raises(ArtifactRefused):  # nothing recorded: the loader imports nothing
        model_version_load(version=v1)

    assert "2 with globals recorded now" in scan("--quarantine")

    v1.refresh_from_db()
    assert "sklearn.linear_model._base.LinearRegression" in v1.allowed_globals
    served = model_version_load(version=v1)
    assert served.predict([[1.0, 1.0]]) == [pytest.approx(1.5)]
    served.close()
    assert len(audit_events("model.version.globals_recorded")) == 2


@pytest.mark.django_db
def test_the_data_migration_makes_creators_owners_and_scans_once(
    actors, media_root, settings, api_client
):
    migration = importlib.import_module("apps.registry.migrations.0006_owners_and_scan")
    make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])
    upload(api_client, "pricing", odd_bytes())
    legacy = RegisteredModel.objects.create(name="legacy", created_by=actors["admin"])
    settings.PICKLE_TRUSTED_GLOBALS_EXTRA = []

    migration.creators_own(django_apps, None)
    migration.scan(django_apps, None)

    assert list(legacy.owners.all()) == [actors["admin"]]
    assert ModelVersion.objects.get().status == "quarantined"


@pytest.mark.django_db
def test_the_admin_shows_and_filters_quarantined_versions(
    two_versions, client, actors, settings, verified_login
):
    settings.PICKLE_TRUSTED_GLOBALS_EXTRA = []
    scan("--quarantine")
    admin = actors["admin"]
    admin.is_staff = admin.is_superuser = True
    admin.save()
    verified_login(client, admin)
    listing = client.get("/admin/registry/modelversion/?status__exact=quarantined")
    page = listing.content.decode()
    assert listing.status_code == 200 and "quarantined" in page
    version = ModelVersion.objects.get(number=2)
    detail = client.get(f"/admin/registry/modelversion/{version.pk}/change/").content.decode()
    assert ODD in detail and "imports globals that are not allowed" in detail
