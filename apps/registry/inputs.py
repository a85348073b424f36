"""A version upload's form fields as `model_version_register` takes them: shared by the API view
(multipart) and the admin's upload form, so both parse and refuse the same way. The rules on
the values themselves (schema, feature order, DP pair, watermark, artifact) are the service's."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError

from apps.core.errors import ApplicationError
from apps.core.strict_json import loads_strict
from apps.registry.models import ArtifactFormat


def json_field(raw: str, path: str) -> Any:
    """A JSON document sent as a form field, parsed as strictly as a JSON body; errors carry
    `path`."""
    try:
        return loads_strict(raw.encode())
    except ApplicationError as exc:
        exc.details = [{"path": path, "message": exc.message}]
        exc.message = f"{path}: {exc.message}"
        raise


def positive_finite(value: float) -> None:
    """A validator for DP parameters (a Django ValidationError: DRF and forms both take it)."""
    if not math.isfinite(value) or value <= 0:
        raise ValidationError("Must be a finite number greater than 0.")


def _optional_json(data: Mapping[str, Any], name: str) -> Any:
    raw = data.get(name)
    return None if raw in (None, "") else json_field(raw, name)


def version_arguments(data: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of `model_version_register` from validated form data (artifact,
    format, input_schema, feature_order, max_batch, dp_epsilon, dp_sensitivity, watermark,
    signature; JSON fields still as text). Raises MalformedJson or InvalidInput naming the field."""
    return {
        "artifact": data["artifact"],
        "format": data.get("format") or ArtifactFormat.JOBLIB,
        "input_schema": json_field(data["input_schema"], "input_schema"),
        "feature_order": _optional_json(data, "feature_order"),
        "max_batch": data["max_batch"],
        "dp_epsilon": data.get("dp_epsilon"),
        "dp_sensitivity": data.get("dp_sensitivity"),
        "watermark": _optional_json(data, "watermark"),
        "signature": data.get("signature") or None,
    }
