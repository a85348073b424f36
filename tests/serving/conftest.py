from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from django.http import HttpResponse

from apps.accounts.tokens import token_pair_issue
from apps.audit.models import AuditEvent
from apps.audit.services import audit_chain_pending
from apps.registry.models import ModelVersion, RegisteredModel
from apps.registry.services import model_version_register, model_version_stage
from apps.serving.catalog import catalog
from apps.serving.demo import PRICING_SCHEMA, pricing_artifact
from apps.serving.model_cache import models

PREDICT = "/api/v1/models/pricing/predict"
ROW = {"price": 120.0, "demand": 0.6, "inventory": 300}


@cache
def artifact_bytes() -> bytes:
    return pricing_artifact()


@pytest.fixture(autouse=True)
def _fresh_process_state() -> None:
    # Each test starts as a fresh web process would: nothing resolved, nothing loaded.
    models.clear()  # first: with no model cached, the catalog needs no database to reset
    catalog.sync(object())


@pytest.fixture
def media_root(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "media"
    settings.MEDIA_ROOT = root
    return root


def add_version(owner: Any, model: RegisteredModel, **fields: Any) -> ModelVersion:
    upload = io.BytesIO(fields.pop("content", None) or artifact_bytes())
    upload.name = "model.joblib"
    return model_version_register(
        actor=owner,
        model=model,
        artifact=upload,
        input_schema=fields.pop("input_schema", PRICING_SCHEMA),
        **fields,
    )


@pytest.fixture
def pricing(actors: dict[str, Any], media_root: Path) -> ModelVersion:
    """Model `pricing` with version 1 in production."""
    engineer = actors["ml_engineer"]
    model = RegisteredModel.objects.create(name="pricing", created_by=engineer)
    model.owners.add(engineer)
    version = add_version(engineer, model)
    return model_version_stage(actor=engineer, version=version, stage="production")


def bearer(user: Any) -> dict[str, str]:
    access = token_pair_issue(user=user)["access"]
    return {"HTTP_AUTHORIZATION": f"Bearer {access}"}


def post(client: Any, body: Any, path: str = PREDICT, **headers: Any) -> HttpResponse:
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.generic(
        "POST", path, raw, content_type=headers.pop("content_type", "application/json"), **headers
    )


def audit_events(action: str | None = None) -> list[dict[str, Any]]:
    audit_chain_pending()
    events = [json.loads(event.body) for event in AuditEvent.objects.order_by("seq")]
    return [event for event in events if action is None or event["action"].startswith(action)]


def assert_error(response: HttpResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = json.loads(response.content)
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == code, error
    assert error["request_id"] == response["X-Request-ID"]
    return error
