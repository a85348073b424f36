"""What is known of the current request wherever code runs during it: its id (for every log
line) and the client's address (for the audit trail). Set by the outer middleware
(apps.core.middleware), so that services and the audit need no HttpRequest; empty outside a
request (Celery jobs, commands)."""

from __future__ import annotations

import contextvars
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
# After trusted proxies are resolved: the address audit events record (truncated there).
current_client_ip: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "client_ip", default=None
)

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def request_id_from_header(value: str | None) -> str:
    """The client's id when it is sane (docs/api.md: at most 128 of [A-Za-z0-9._-]), else a
    new one."""
    if value and _SANE_REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


@contextmanager
def request_facts(*, request_id: str, client_ip: str | None) -> Iterator[None]:
    """What the middleware sets, for code that runs on a request's behalf outside it (and
    for tests)."""
    id_token = current_request_id.set(request_id)
    ip_token = current_client_ip.set(client_ip)
    try:
        yield
    finally:
        current_client_ip.reset(ip_token)
        current_request_id.reset(id_token)
