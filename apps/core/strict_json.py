"""JSON parsing that refuses what other parsers would read differently, or what would fail later.

Refused: duplicate keys (400 malformed_json: parsers disagree on which wins), invalid UTF-8,
NaN, ±Infinity and numbers that overflow to infinity such as 1e400, NUL characters
(PostgreSQL cannot store them), and nesting deeper than MAX_DEPTH (all 400 invalid_input).
"""

from __future__ import annotations

import json
import math
from typing import Any

from apps.core.errors import InvalidInput, MalformedJson

MAX_DEPTH = 32


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _NotFinite(ValueError):
    def __init__(self, literal: str) -> None:
        super().__init__(literal)
        self.literal = literal


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise _NotFinite(literal)
    return value


def _refuse_constant(literal: str) -> float:
    raise _NotFinite(literal)


_decoder = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates,
    parse_float=_finite_float,
    parse_constant=_refuse_constant,
)


def _path(parts: list[str | int]) -> str:
    return "/".join(str(part) for part in parts)


def _check_depth_and_nul(document: Any) -> None:
    # Iterative walk: a recursive one is exactly what a deep document would crash.
    stack: list[tuple[Any, int, list[str | int]]] = [(document, 1, [])]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_DEPTH:
                raise _too_deep(path)
            for key, item in value.items():
                if "\x00" in key:
                    raise _nul([*path, key])
                stack.append((item, depth + 1, [*path, key]))
        elif isinstance(value, list):
            if depth > MAX_DEPTH:
                raise _too_deep(path)
            stack.extend((item, depth + 1, [*path, index]) for index, item in enumerate(value))
        elif isinstance(value, str) and "\x00" in value:
            raise _nul(path)


def _too_deep(path: list[str | int]) -> InvalidInput:
    return InvalidInput(
        f"JSON is nested deeper than {MAX_DEPTH} levels.",
        details=[{"path": _path(path), "message": f"nesting deeper than {MAX_DEPTH}"}],
    )


def _nul(path: list[str | int]) -> InvalidInput:
    return InvalidInput(
        "Strings may not contain the NUL character (\\u0000).",
        details=[{"path": _path(path), "message": "contains a NUL character"}],
    )


def loads_strict(raw: bytes) -> Any:
    """Parse a request body; raises MalformedJson or InvalidInput with a sentence a client
    can act on."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedJson(f"The body is not valid UTF-8 (byte {exc.start}).") from None
    text = text.removeprefix("\ufeff")
    try:
        document, end = _decoder.raw_decode(text, json.decoder.WHITESPACE.match(text, 0).end())
    except _DuplicateKey as exc:
        raise MalformedJson(f"The key {exc.key!r} appears twice in one object.") from None
    except _NotFinite as exc:
        raise InvalidInput(
            f"{exc.literal} is not a finite number; JSON numbers must be finite."
        ) from None
    except RecursionError:
        raise InvalidInput(f"JSON is nested deeper than {MAX_DEPTH} levels.") from None
    except json.JSONDecodeError as exc:
        raise MalformedJson(
            f"Malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from None
    except ValueError as exc:  # e.g. an integer with more digits than Python will convert
        raise InvalidInput(f"A number in the body cannot be read: {exc}.") from None
    if text[end:].strip():
        raise MalformedJson("Malformed JSON: extra data after the document.")
    _check_depth_and_nul(document)
    return document
