"""The current request's id, for log lines written anywhere during the request."""

from __future__ import annotations

import contextvars
import re
import uuid

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def request_id_from_header(value: str | None) -> str:
    """The client's id when it is sane (docs/api.md: at most 128 of [A-Za-z0-9._-]), else a
    new one."""
    if value and _SANE_REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex
