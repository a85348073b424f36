"""Checks of a version's input schema and feature order, shared by the API and the services."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from apps.core.errors import InvalidInput


def _invalid(path: str, message: str) -> InvalidInput:
    return InvalidInput(f"{path}: {message}", details=[{"path": path, "message": message}])


def check_input_schema(schema: Any) -> dict[str, Any]:
    """The schema, if it is a valid draft 2020-12 schema of one object row; else InvalidInput."""
    if not isinstance(schema, dict):
        raise _invalid("input_schema", "must be a JSON Schema object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        # The message only: it names the offending keyword without echoing the whole schema.
        raise _invalid("input_schema", f"not a valid draft 2020-12 schema: {exc.message}") from None
    if schema.get("type") != "object":
        raise _invalid("input_schema", 'must describe one input row: "type": "object"')
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise _invalid("input_schema", "must name the row's fields in `properties`")
    return schema


def check_feature_order(feature_order: Any, schema: dict[str, Any]) -> list[str]:
    """The feature order (default: the schema's `properties` order), every name a property of
    the schema, each once; else InvalidInput."""
    properties = list(schema["properties"])
    if feature_order is None:
        return properties
    if not isinstance(feature_order, list) or not feature_order:
        raise _invalid("feature_order", "must be a non-empty JSON list of property names")
    for index, name in enumerate(feature_order):
        if not isinstance(name, str) or name not in schema["properties"]:
            raise _invalid(f"feature_order/{index}", "is not a property of input_schema")
    if len(set(feature_order)) != len(feature_order):
        raise _invalid("feature_order", "names a property more than once")
    return feature_order
