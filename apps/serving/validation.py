"""Validation of a predict body against the version's input schema (draft 2020-12).

The validator is compiled once per version (apps.serving.catalog keeps it) and every error is
reported with its row and field, `inputs/0/price`, including missing and unexpected fields,
whose names jsonschema leaves in the message rather than the path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from apps.core.errors import InvalidInput
from apps.serving.row_check import RowCheck

MAX_REPORTED_ERRORS = 100  # a 100-row batch of bad rows is not answered with 10,000 details


def compile_validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _pointer(parts: Iterable[Any]) -> str:
    return "/".join(str(part) for part in parts)


def _details(error: ValidationError, row: int) -> list[dict[str, str]]:
    base = ["inputs", row, *error.absolute_path]
    instance = error.instance
    if error.validator == "required" and isinstance(instance, dict):
        missing = [name for name in error.validator_value if name not in instance]  # type: ignore[union-attr]  # set by a validator
        return [
            {"path": _pointer([*base, name]), "message": "is a required field and is missing"}
            for name in missing
        ]
    if error.validator in {"additionalProperties", "unevaluatedProperties"} and isinstance(
        instance, dict
    ):
        known = set(error.schema.get("properties", {}))  # type: ignore[union-attr]  # a dict here
        extra = [name for name in instance if name not in known] or [""]
        return [
            {"path": _pointer([*base, name]), "message": "is not a field of this model's input"}
            for name in extra
        ]
    # jsonschema quotes the offending value: bounded, so a huge string is not echoed whole.
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return [{"path": _pointer(base), "message": message}]


def validate_body(data: Any, *, max_batch: int) -> list[dict[str, Any]]:
    """The body's rows, if it is `{"inputs": [row, ...]}` with 1 to `max_batch` rows."""
    if not isinstance(data, dict):
        raise _one("", 'the body must be a JSON object {"inputs": [...]}')
    extra = sorted(set(data) - {"inputs"})
    if extra:
        raise _one(extra[0], "is not a field of a predict request (only `inputs`)")
    rows = data.get("inputs")
    if not isinstance(rows, list):
        raise _one("inputs", "must be a list of input rows")
    if not 1 <= len(rows) <= max_batch:
        raise _one("inputs", f"must hold 1 to {max_batch} rows, not {len(rows)}")
    return rows


def validate_rows(
    rows: Sequence[Any],
    validator: Draft202012Validator,
    feature_order: Sequence[str],
    row_check: RowCheck | None = None,
) -> None:
    """InvalidInput with every error of every row (up to MAX_REPORTED_ERRORS) in `details`.
    Rows that the version's compiled check accepts are valid; jsonschema walks the rest (and
    every row of a schema outside the compiled subset) to say what is wrong."""
    if row_check is not None and all(map(row_check, rows)):
        return
    details: list[dict[str, str]] = []
    for index, row in enumerate(rows):
        errors = sorted(validator.iter_errors(row), key=lambda error: list(error.absolute_path))
        for error in errors:
            details.extend(_details(error, index))
        if not errors and isinstance(row, dict):
            # A feature the schema leaves optional is still one the model needs.
            details.extend(
                {"path": _pointer(["inputs", index, name]), "message": "is needed by the model"}
                for name in feature_order
                if name not in row
            )
        if len(details) >= MAX_REPORTED_ERRORS:
            break
    if details:
        details = details[:MAX_REPORTED_ERRORS]
        first = details[0]
        raise InvalidInput(f"{_dotted(first['path'])}: {first['message']}", details=details)


def _dotted(path: str) -> str:
    """`inputs/0/price` as the message shows it: `inputs[0].price`."""
    shown = ""
    for part in path.split("/"):
        shown += f"[{part}]" if part.isdigit() else (f".{part}" if shown else part)
    return shown


def _one(path: str, message: str) -> InvalidInput:
    shown = f"{_dotted(path)}: {message}" if path else message
    return InvalidInput(shown, details=[{"path": path, "message": message}])
