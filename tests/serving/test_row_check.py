"""The compiled row check agrees with jsonschema on every schema it compiles, and compiles
nothing it cannot decide exactly (apps.serving.row_check)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.core.errors import InvalidInput
from apps.serving.row_check import compile_row_check
from apps.serving.validation import compile_validator, validate_rows

FIELDS = ("price", "demand", "kind")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, 1.0, -0.0, 2.5, 10, 10.0, True, False]),
    st.text(max_size=6),
    st.sampled_from(["a", "b", "ab", "", "A1", "xyz"]),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=2),
    st.dictionaries(st.text(max_size=2), scalars, max_size=2),
)
types = st.sampled_from(["null", "boolean", "integer", "number", "string", "object", "array"])
numbers = st.one_of(st.integers(-20, 20), st.floats(-20, 20, allow_nan=False))


@st.composite
def field_schemas(draw: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    if draw(st.booleans()):
        schema["type"] = draw(
            st.one_of(types, st.lists(types, min_size=1, max_size=3, unique=True))
        )
    for keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if draw(st.integers(0, 3)) == 0:
            schema[keyword] = draw(numbers)
    for keyword in ("minLength", "maxLength"):
        if draw(st.integers(0, 3)) == 0:
            schema[keyword] = draw(st.integers(0, 4))
    if draw(st.integers(0, 4)) == 0:
        schema["pattern"] = draw(st.sampled_from(["^a", "b$", "[0-9]", "^$", "x|y"]))
    if draw(st.integers(0, 4)) == 0:
        schema["enum"] = draw(st.lists(st.sampled_from(["a", "b", "ab", ""]), min_size=1))
    if draw(st.integers(0, 6)) == 0:
        schema["const"] = draw(st.sampled_from(["a", "xyz"]))
    if draw(st.integers(0, 5)) == 0:
        schema["description"] = "an annotation"
    return schema


@st.composite
def row_schemas(draw: Any) -> dict[str, Any]:
    properties = {name: draw(field_schemas()) for name in FIELDS}
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    schema["required"] = draw(st.lists(st.sampled_from(FIELDS), unique=True))
    if draw(st.booleans()):
        schema["additionalProperties"] = draw(st.booleans())
    return schema


rows = st.one_of(
    st.dictionaries(st.sampled_from([*FIELDS, "extra"]), values, max_size=4),
    values,
)


@settings(max_examples=1000, deadline=None)
@given(schema=row_schemas(), row=rows)
def test_the_compiled_check_agrees_with_jsonschema(schema: dict[str, Any], row: Any) -> None:
    check = compile_row_check(schema, feature_order=[])
    assert check is not None, schema
    assert check(row) == compile_validator(schema).is_valid(row), (schema, row)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "number", "multipleOf": 0.1}}},
        {"type": "object", "properties": {"a": {"type": "string", "format": "email"}}},
        {"type": "object", "properties": {"a": {"enum": [1, "1"]}}},
        {"type": "object", "properties": {"a": {"const": 1}}},
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {}}},
        {"type": "object", "properties": {"a": {"allOf": [{"type": "number"}]}}},
        {"type": "object", "properties": {"a": False}},
        {"type": "object", "properties": {"a": {}}, "additionalProperties": {"type": "number"}},
        {"type": "object", "properties": {"a": {}}, "patternProperties": {"^b": {}}},
        {"type": "object", "properties": {"a": {}}, "unevaluatedProperties": False},
        {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<x>a)"}}},
        {"type": "object", "properties": {"a": {}}, "minProperties": 1},
    ],
)
def test_a_schema_outside_the_subset_gets_no_compiled_check(schema: dict[str, Any]) -> None:
    assert compile_row_check(schema, feature_order=[]) is None


def test_a_feature_the_schema_leaves_optional_is_still_needed() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}
    check = compile_row_check(schema, feature_order=["a", "b"])
    assert check is not None
    assert check({"a": 1, "b": 2})
    assert not check({"a": 1})
    with pytest.raises(InvalidInput) as refused:
        validate_rows([{"a": 1, "b": 2}, {"a": 1}], compile_validator(schema), ["a", "b"], check)
    assert refused.value.details == [{"path": "inputs/1/b", "message": "is needed by the model"}]


def test_a_refused_row_is_explained_by_jsonschema() -> None:
    schema = {
        "type": "object",
        "properties": {"price": {"type": "number", "minimum": 0}},
        "required": ["price"],
        "additionalProperties": False,
    }
    check = compile_row_check(schema, feature_order=["price"])
    assert check is not None
    validate_rows([{"price": 1.5}] * 100, compile_validator(schema), ["price"], check)
    with pytest.raises(InvalidInput) as refused:
        validate_rows(
            [{"price": 1.5}, {"price": -1}, {"cost": 2}],
            compile_validator(schema),
            ["price"],
            check,
        )
    assert refused.value.details == [
        {"path": "inputs/1/price", "message": "-1 is less than the minimum of 0"},
        {"path": "inputs/2/price", "message": "is a required field and is missing"},
        {"path": "inputs/2/cost", "message": "is not a field of this model's input"},
    ]
