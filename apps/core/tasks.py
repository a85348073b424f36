from __future__ import annotations

import socket

from celery import shared_task


@shared_task(name="core.ping")
def ping_task(payload: str) -> dict[str, str]:
    """Round trip through the broker: returns what it was given and which host ran it."""
    return {"echo": payload, "host": socket.gethostname()}
