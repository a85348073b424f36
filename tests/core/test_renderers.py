"""FastJSONRenderer writes the JSON values DRF's JSONRenderer writes (apps.core.renderers):
the same document once parsed, numbers of the same type and value."""

from __future__ import annotations

import datetime
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.utils.translation import gettext_lazy
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.renderers import JSONRenderer

from apps.core.renderers import FastJSONRenderer

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(), inner, max_size=4)
    ),
    max_leaves=20,
)


def both(data: Any, media_type: str = "application/json") -> tuple[Any, Any]:
    fast = FastJSONRenderer().render(data, media_type, {})
    drf = JSONRenderer().render(data, media_type, {})
    return parsed(fast), parsed(drf)


def parsed(raw: bytes) -> Any:
    """The document with each number tagged by its type: 1 and 1.0 must not pass as equal."""
    if raw == b"":
        return None
    return json.loads(raw, parse_float=lambda text: ("float", float(text)),
                      parse_int=lambda text: ("int", int(text)))  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(data=json_values)
def test_json_values_are_written_as_drf_writes_them(data: Any) -> None:
    fast, drf = both(data)
    assert fast == drf


@pytest.mark.parametrize(
    "data",
    [
        {"predictions": [105.96490740592233, 1e-07, 1e300, -0.0, 3], "model": "pricing"},
        {"error": {"code": "invalid_input", "message": gettext_lazy("This field is required.")}},
        {"when": datetime.datetime(2026, 12, 7, 23, 0, tzinfo=datetime.UTC)},
        {"when": datetime.date(2026, 12, 7), "id": uuid.UUID(int=7), "amount": Decimal("1.50")},
        {"text": '€ \u2028 \x7f " \\ </script>'},
        {1: "a non-string key"},
        None,
    ],
)
def test_what_a_response_may_hold_is_written_as_drf_writes_it(data: Any) -> None:
    fast, drf = both(data)
    assert fast == drf


def test_an_indent_asked_for_is_honoured() -> None:
    raw = FastJSONRenderer().render({"a": [1, 2]}, "application/json; indent=2", {})
    assert raw == JSONRenderer().render({"a": [1, 2]}, "application/json; indent=2", {})
    assert b"\n" in raw
