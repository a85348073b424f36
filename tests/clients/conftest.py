"""The Python client (clients/python) against the live test server: a real HTTP server on a
free port (pytest-django's live_server), the project's database and Redis."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

CLIENT_ROOT = Path(__file__).resolve().parents[2] / "clients" / "python"
if str(CLIENT_ROOT) not in sys.path:
    sys.path.insert(0, str(CLIENT_ROOT))  # the client as `pip install clients/python` gives it

PASSWORD = "correct horse battery staple"  # tests.accounts.factories.UserFactory's


@pytest.fixture(autouse=True)
def _fresh_process_state() -> None:
    from apps.serving.catalog import catalog
    from apps.serving.model_cache import models

    models.clear()
    catalog.sync(object())


@pytest.fixture
def people(transactional_db: Any) -> dict[str, Any]:
    """One user per role that signs in with PASSWORD (no authenticator)."""
    from tests.accounts.factories import UserFactory

    return {
        role: UserFactory(roles=[role])
        for role in ("admin", "security_officer", "ml_engineer", "auditor", "api_client")
    }


@pytest.fixture
def pricing(people: dict[str, Any], settings: Any, tmp_path: Path) -> Any:
    """Model `pricing`, version 1 in production (as tests/serving/conftest.py makes it)."""
    from apps.registry.models import RegisteredModel
    from apps.registry.services import model_version_stage
    from tests.serving.conftest import add_version

    settings.MEDIA_ROOT = tmp_path / "media"
    engineer = people["ml_engineer"]
    model = RegisteredModel.objects.create(name="pricing", created_by=engineer)
    model.owners.add(engineer)
    version = add_version(engineer, model)
    return model_version_stage(actor=engineer, version=version, stage="production")


@pytest.fixture
def server(live_server: Any, pricing: Any) -> str:
    return str(live_server.url)
