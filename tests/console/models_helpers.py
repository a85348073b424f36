"""Shared by the console's models tests (pages and browser): signed-in clients per role, a model
owned by the ML engineer, and versions made through the registry's services."""

from __future__ import annotations

import io
import json
import re
from typing import Any

from django.test import Client

from apps.registry.selectors import model_version_get, registered_model_get
from apps.registry.services import (
    model_version_register,
    model_version_stage,
    registered_model_create,
)
from tests.registry.conftest import SCHEMA, trained_bytes

ROLES = ("admin", "ml_engineer", "other_engineer", "security_officer", "auditor")


def text_of(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def signed_in(actors: dict[str, Any], verified_login: Any, role: str) -> Client:
    return verified_login(Client(), actors[role])


def make_model(owner: Any, name: str = "pricing") -> Any:
    return registered_model_create(actor=owner, name=name, description="House prices.")


def make_version(owner: Any, name: str = "pricing", schema: Any = None, stage: str = "") -> Any:
    """A version of the model `name` uploaded by `owner` (a small fitted LinearRegression),
    then moved to `stage` if given."""
    upload = io.BytesIO(trained_bytes())
    upload.name = "model.joblib"
    model = registered_model_get(actor=owner, name=name)
    version = model_version_register(
        actor=owner, model=model, artifact=upload, input_schema=schema or SCHEMA
    )
    if stage:
        version = model_version_stage(actor=owner, version=version, stage=stage)
    return version


def fresh(version: Any) -> Any:
    model = registered_model_get(actor=None, name=version.model.name)
    return model_version_get(actor=None, model=model, number=version.number)


def upload_fields(content: bytes, **fields: Any) -> dict[str, Any]:
    artifact = io.BytesIO(content)
    artifact.name = "model.joblib"
    data: dict[str, Any] = {
        "artifact": artifact,
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
