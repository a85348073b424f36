"""JSON parsing that refuses what other parsers would read differently, or what would fail later.

Refused: duplicate keys (400 malformed_json: parsers disagree on which wins), invalid UTF-8,
NaN, ±Infinity and numbers that overflow to infinity such as 1e400, NUL characters
(PostgreSQL cannot store them), and nesting deeper than MAX_DEPTH (all 400 invalid_input).
"""

from __future__ import annotations

import json
import math
from itertools import chain, compress
from typing import Any

import orjson

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


def _first_violation(document: Any, *, too_deep: bool) -> list[str | int]:
    """Path to the first container deeper than MAX_DEPTH (or string/key holding NUL).
    Only walked after a violation is known, so tracking paths costs nothing on valid input."""
    stack: list[tuple[Any, int, list[str | int]]] = [(document, 1, [])]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, dict | list):
            if too_deep and depth > MAX_DEPTH:
                return path
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if not too_deep and isinstance(key, str) and "\x00" in key:
                    return [*path, key]
                stack.append((item, depth + 1, [*path, key]))
        elif not too_deep and isinstance(value, str) and "\x00" in value:
            return path
    return []


_CONTAINERS = (dict, list)


def _is_too_deep(document: Any) -> bool:
    # Iterative, and only over containers: a recursive walk is what a deep document would crash.
    # Level by level, so the loop body runs once per container, not once per value.
    level = [document]
    for _ in range(MAX_DEPTH):
        children: list[Any] = []
        for value in level:
            items = value.values() if type(value) is dict else value
            children.extend(child for child in items if isinstance(child, _CONTAINERS))
        if not children:
            return False
        level = children
    return True


def _check_depth_and_nul(document: Any, text: str) -> None:
    if isinstance(document, _CONTAINERS) and _is_too_deep(document):
        raise _too_deep(_first_violation(document, too_deep=True))
    # JSON can only carry NUL as the escape \u0000 (raw control characters are refused by the
    # decoder), so the text tells cheaply whether a walk is needed at all.
    if "\\u0000" in text:
        path = _first_violation(document, too_deep=False)
        if path or (isinstance(document, str) and "\x00" in document):
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


# Where orjson reads differently from the careful parser: it accepts the escape of NUL, and
# reads an integer beyond 64 bits as a float (caught below as a float of 2**63 or more).
_NUL_ESCAPE = b"\\u0000"
_BIG = float(2**63)
_CAREFUL = object()
# Below this size the careful parser is as fast (a few µs): _shape's fixed cost is not worth it.
FAST_FROM = 512
_is_dict = {dict}.__contains__
_is_list = {list}.__contains__
_is_float = {float}.__contains__
_is_container = set(_CONTAINERS).__contains__
_big = _BIG.__le__


def _shape(document: Any) -> tuple[int, bool]:
    """(keys in all objects, whether the careful parser must decide: nested deeper than
    MAX_DEPTH, or a float as large as 2**63), level by level as _is_too_deep, with C-level
    iterators only (no Python code runs per value)."""
    keys = 0
    level: list[Any] = [[document]]  # the document is the one value of level 0
    for _ in range(MAX_DEPTH + 1):
        kinds = list(map(type, level))
        dicts = list(compress(level, map(_is_dict, kinds)))
        keys += sum(map(len, dicts))
        values = [
            *chain.from_iterable(map(dict.values, dicts)),
            *chain.from_iterable(compress(level, map(_is_list, kinds))),
        ]
        kinds = list(map(type, values))
        if any(map(_big, map(abs, compress(values, map(_is_float, kinds))))):
            return keys, True
        level = list(compress(values, map(_is_container, kinds)))
        if not level:
            return keys, False
    return keys, True


def _loads_fast(raw: bytes) -> Any:
    """The document as orjson (C, several times json.loads) reads it, when that is certain to
    be what the careful parser would return; else _CAREFUL.

    orjson already refuses invalid UTF-8, NaN, Infinity, 1e400 and a byte-order mark, and
    keeps the last of duplicate keys. A duplicate is told by counting: the body's colons are
    its keys plus the colons inside strings, so when the colons number the keys read, no key
    appeared twice (a body with a colon in a string takes the careful parser). Anything orjson
    refuses, and any doubt, goes to the careful parser, which also words the refusal."""
    if len(raw) < FAST_FROM or _NUL_ESCAPE in raw:
        return _CAREFUL
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _CAREFUL
    keys, doubt = _shape(document)
    if doubt or raw.count(b":") != keys:
        return _CAREFUL
    return document


def loads_strict(raw: bytes) -> Any:
    """Parse a request body; raises MalformedJson or InvalidInput with a sentence a client
    can act on."""
    document = _loads_fast(raw)
    if document is not _CAREFUL:
        return document
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedJson(f"The body is not valid UTF-8 (byte {exc.start}).") from None
    text = text.removeprefix("\ufeff")
    try:
        document, end = _decoder.raw_decode(text, json.decoder.WHITESPACE.match(text, 0).end())  # type: ignore[attr-defined]  # not in typeshed
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
    _check_depth_and_nul(document, text)
    return document
