"""A compiled check of input rows for the common shape of an input schema: flat rows of typed
fields with bounds, lengths, patterns and string enums. It answers only valid or not; a row it
refuses (and every schema outside the subset) goes to jsonschema (apps.serving.validation),
which explains the refusal in `details`.

Built from closures, not generated source: the schema is the publisher's, and nothing of it is
ever executed as code. Each keyword does here what jsonschema's draft 2020-12 keyword does:
`integer` admits 1.0, numbers exclude booleans, bounds and lengths ignore values of another
type, `pattern` is `re.search`. A schema using any keyword not listed (a `$ref`, `format`,
`allOf`, `multipleOf`, an enum of non-strings, ...) gets no compiled check, so the subset can
only ever be as strict as jsonschema (tests/serving/test_row_check.py compares the two).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

RowCheck = Callable[[Any], bool]

# Keywords that annotate and never refuse.
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)
_ROW_KEYWORDS = _ANNOTATIONS | {"type", "properties", "required", "additionalProperties"}
_FIELD_KEYWORDS = _ANNOTATIONS | {
    "type",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
}


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)  # JSON numbers as parsed: never a bool


def _is_integer(value: Any) -> bool:
    kind = type(value)
    return kind is int or (kind is float and value.is_integer())


_TYPES: dict[str, Callable[[Any], bool]] = {
    "null": lambda value: value is None,
    "boolean": lambda value: type(value) is bool,
    "integer": _is_integer,
    "number": _is_number,
    "string": lambda value: type(value) is str,
    "object": lambda value: type(value) is dict,
    "array": lambda value: type(value) is list,
}


_BOUNDS: dict[str, Callable[[Any, Any], bool]] = {
    "minimum": lambda value, bound: value >= bound,
    "maximum": lambda value, bound: value <= bound,
    "exclusiveMinimum": lambda value, bound: value > bound,
    "exclusiveMaximum": lambda value, bound: value < bound,
}
_LENGTHS: dict[str, Callable[[int, int], bool]] = {
    "minLength": lambda length, limit: length >= limit,
    "maxLength": lambda length, limit: length <= limit,
}


def _member_of(members: frozenset[str]) -> RowCheck:
    return lambda value: type(value) is str and value in members


def _bounded(bound: Any, holds: Callable[[Any, Any], bool]) -> RowCheck:
    return lambda value: not _is_number(value) or holds(value, bound)


def _sized(limit: int, holds: Callable[[int, int], bool]) -> RowCheck:
    return lambda value: type(value) is not str or holds(len(value), limit)


def _matching(search: Callable[[str], Any]) -> RowCheck:
    return lambda value: type(value) is not str or search(value) is not None


def _any_of(kinds: list[RowCheck]) -> RowCheck:
    return lambda value: any(kind(value) for kind in kinds)


def _all_of(checks: list[RowCheck]) -> RowCheck:
    return lambda value: all(check(value) for check in checks)


def _field_check(schema: Any) -> RowCheck | None:
    """The check of one field's value, or None if the schema is outside the subset."""
    if schema is True or schema == {}:
        return lambda value: True
    if not isinstance(schema, dict) or not set(schema) <= _FIELD_KEYWORDS:
        return None
    checks: list[RowCheck] = []
    declared = schema.get("type")
    if declared is not None:
        names = [declared] if isinstance(declared, str) else declared
        if not isinstance(names, list) or not all(name in _TYPES for name in names):
            return None
        kinds = [_TYPES[name] for name in names]
        checks.append(kinds[0] if len(kinds) == 1 else _any_of(kinds))
    for keyword in ("enum", "const"):
        if keyword in schema:
            allowed = schema[keyword] if keyword == "enum" else [schema[keyword]]
            if not isinstance(allowed, list) or not all(type(v) is str for v in allowed):
                return None  # jsonschema's equality across types (1 == 1.0, 1 != true) is its own
            checks.append(_member_of(frozenset(allowed)))
    for keyword, holds in _BOUNDS.items():
        if keyword in schema:
            bound = schema[keyword]
            if not _is_number(bound):
                return None
            checks.append(_bounded(bound, holds))
    for keyword, holds in _LENGTHS.items():
        if keyword in schema:
            length = schema[keyword]
            if type(length) is not int:
                return None
            checks.append(_sized(length, holds))
    if "pattern" in schema:
        if not isinstance(schema["pattern"], str):
            return None
        try:
            search = re.compile(schema["pattern"]).search
        except re.error:
            return None
        checks.append(_matching(search))
    return checks[0] if len(checks) == 1 else _all_of(checks)


def compile_row_check(schema: Any, feature_order: Sequence[str]) -> RowCheck | None:
    """True for a row that the schema accepts and that carries every feature the model needs;
    None when the schema is outside the subset (jsonschema alone then decides)."""
    if not isinstance(schema, dict) or not set(schema) <= _ROW_KEYWORDS:
        return None
    if schema.get("type") != "object":
        return None
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    closed = schema.get("additionalProperties", True)
    if (
        not isinstance(properties, dict)
        or not isinstance(required, list)
        or not all(isinstance(name, str) for name in required)
        or not isinstance(closed, bool)
    ):
        return None
    fields: dict[str, RowCheck] = {}
    for name, field_schema in properties.items():
        check = _field_check(field_schema)
        if check is None:
            return None
        fields[name] = check
    # A feature the schema leaves optional is still one the model needs (validate_rows).
    needed = tuple(dict.fromkeys([*required, *feature_order]))
    open_rows = closed is not False

    def row_check(row: Any) -> bool:
        if type(row) is not dict:
            return False
        for name in needed:
            if name not in row:
                return False
        for name, value in row.items():
            check = fields.get(name)
            if check is None:
                if open_rows:
                    continue
                return False
            if not check(value):
                return False
        return True

    return row_check
