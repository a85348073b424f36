"""The orjson fast path of apps.core.strict_json returns exactly what the careful parser
returns, and refuses nothing the careful parser would accept (or the other way round)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from apps.core import strict_json
from apps.core.errors import InvalidInput, MalformedJson

keys = st.text(
    alphabet=st.sampled_from(["a", "b", ":", '"', "\\", "\x00", "é", "\ud800"]), max_size=3
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    keys,
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=12,
)


def careful(raw: bytes) -> Any:
    """The careful parser alone: the fast path told to step aside."""
    original = strict_json._loads_fast
    strict_json._loads_fast = lambda raw: strict_json._CAREFUL  # type: ignore[assignment]
    try:
        return strict_json.loads_strict(raw)
    finally:
        strict_json._loads_fast = original  # type: ignore[assignment]


def outcome(parse: Any, raw: bytes) -> tuple[str, Any]:
    try:
        return "ok", parse(raw)
    except (InvalidInput, MalformedJson) as exc:
        return type(exc).__name__, str(exc)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 and 1.0 are not the same body)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (a != a and b != b)


def texts(document: Any) -> list[bytes]:
    """The document as JSON texts, padded past the size below which the fast path is skipped."""
    plain = json.dumps(document).encode("utf-8", "surrogatepass")
    spaced = json.dumps(document, indent=1, ensure_ascii=False).encode("utf-8", "surrogatepass")
    pad = b" " * strict_json.FAST_FROM
    return [plain + pad, pad + spaced]


@settings(max_examples=1500, deadline=None)
@given(document=documents)
@example(document={"a": 1e308, "b": 5e-324, "c": -0.0})
@example(document={"big": 2**64, "neg": -(2**63) - 1})
@example(document=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]])
def test_the_fast_path_reads_what_the_careful_parser_reads(document: Any) -> None:
    for raw in texts(document):
        fast, slow = outcome(strict_json.loads_strict, raw), outcome(careful, raw)
        assert fast[0] == slow[0], raw
        assert same(fast[1], slow[1]), raw


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1, "a": 2}',
        b'{"a": {"b": 1, "b": 1}}',
        b'[{"x:": 1, "x:": 1}]',
        b'{"t": "12:30", "a": 1, "a": 2}',
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": 1e400}',
        b'{"a": "\\u0000"}',
        b'{"a\\u0000": 1}',
        b'\xef\xbb\xbf{"a": 1}',
        b'{"a": "\xff"}',
        b'{"a": "\\ud800"}',
        b'{"a": 12345678901234567890123}',
        b'{"a": 1} x',
        b'{"a": [' + b"[" * 40 + b"]" * 40 + b"]}",
        b"[" * 2000 + b"]" * 2000,
        b'{"a": 1,}',
    ],
)
def test_what_orjson_reads_differently_gets_the_careful_answer(raw: bytes) -> None:
    raw += b" " * strict_json.FAST_FROM
    assert outcome(strict_json.loads_strict, raw) == outcome(careful, raw)


def test_a_duplicate_key_is_refused_on_the_fast_path_too() -> None:
    with pytest.raises(MalformedJson, match="appears twice"):
        strict_json.loads_strict(b'{"inputs": [{"price": 1, "price": 2}]}' + b" " * 600)


def test_a_predict_body_takes_the_fast_path() -> None:
    rows = [{"price": 12.5 + i, "demand": 340 + i, "region": "emea"} for i in range(100)]
    raw = json.dumps({"inputs": rows}).encode()
    assert strict_json._loads_fast(raw) == {"inputs": rows}
