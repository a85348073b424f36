from __future__ import annotations

import io
import json
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import django.core.files.temp
import django.core.files.uploadhandler
import joblib
import numpy as np
import pytest
from django.http import HttpResponse
from sklearn.linear_model import LinearRegression

from apps.audit.models import AuditEvent
from apps.audit.services import audit_chain_pending
from apps.registry.models import RegisteredModel

SCHEMA = {
    "type": "object",
    "properties": {"rooms": {"type": "number"}, "area": {"type": "number"}},
    "required": ["rooms", "area"],
    "additionalProperties": False,
}


@pytest.fixture
def media_root(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "media"
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture
def no_temp_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries to spill an upload to a temporary file."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an upload was written to a temporary file")

    # Django binds NamedTemporaryFile at import (django.core.files.temp) and the handler binds
    # TemporaryUploadedFile at import: patch where they are looked up.
    monkeypatch.setattr(django.core.files.temp, "NamedTemporaryFile", refuse)
    monkeypatch.setattr(django.core.files.uploadhandler, "TemporaryUploadedFile", refuse)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)


def stored_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


@cache
def trained_bytes() -> bytes:
    """A fitted LinearRegression as a joblib file: y = 2 rooms - area + 0.5."""
    rng = np.random.default_rng(3)
    inputs = rng.normal(size=(50, 2))
    model = LinearRegression().fit(inputs, inputs @ np.array([2.0, -1.0]) + 0.5)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def array_bytes(size: int) -> bytes:
    """A joblib file of about `size` bytes that imports only trusted globals (an array)."""
    buffer = io.BytesIO()
    joblib.dump(np.zeros(size // 8), buffer)
    return buffer.getvalue()


@pytest.fixture
def loader_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each time a version's verified plaintext reached a loader (a runner's or this
    process's): what any refusal before loading must leave empty."""
    from apps.registry import version_loading

    calls: list[str] = []
    for name in ("_isolated", "_inprocess"):
        real = getattr(version_loading, name)

        def factory(version: Any, real: Any = real, name: str = name) -> Any:
            load = real(version)

            def spy(plaintext: Any) -> Any:
                calls.append(name)
                return load(plaintext)

            return spy

        monkeypatch.setattr(version_loading, name, factory)
    return calls


def artifact(content: bytes, name: str = "model.joblib") -> io.BytesIO:
    upload = io.BytesIO(content)
    upload.name = name
    return upload


def upload(client: Any, model: str, content: bytes, **fields: Any) -> HttpResponse:
    data: dict[str, Any] = {"artifact": artifact(content), "input_schema": json.dumps(SCHEMA)}
    data.update(fields)
    return client.post(f"/api/v1/models/{model}/versions", data, format="multipart")


def make_model(owner: Any, name: str = "pricing") -> RegisteredModel:
    model = RegisteredModel.objects.create(name=name, created_by=owner)
    model.owners.add(owner)
    return model


def audit_events(action: str | None = None) -> list[dict[str, Any]]:
    audit_chain_pending()
    events = [json.loads(event.body) for event in AuditEvent.objects.order_by("seq")]
    return [event for event in events if action is None or event["action"] == action]


def assert_error(response: HttpResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = json.loads(response.content)
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    return body["error"]
