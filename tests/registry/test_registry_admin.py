"""The registry in the admin: read-only, digest and master key shown, no key material."""

from __future__ import annotations

import pytest

from apps.registry.models import ModelVersion
from tests.registry.conftest import make_model, trained_bytes, upload


@pytest.mark.django_db
def test_admin_lists_versions_read_only_without_key_material(
    client, api_client, actors, media_root, verified_login
):
    make_model(actors["admin"])
    api_client.force_authenticate(actors["admin"])
    upload(api_client, "pricing", trained_bytes())
    version = ModelVersion.objects.get()
    admin = actors["admin"]
    admin.is_staff = admin.is_superuser = True
    admin.save()
    verified_login(client, admin)

    listing = client.get("/admin/registry/modelversion/")
    detail = client.get(f"/admin/registry/modelversion/{version.pk}/change/")

    assert listing.status_code == 200 and detail.status_code == 200
    page = listing.content.decode() + detail.content.decode()
    assert version.sha256 in page and version.master_key_id in page
    assert version.artifact not in page
    assert bytes(version.wrapped_data_key).hex() not in page
    assert client.get("/admin/registry/modelversion/add/").status_code == 403
