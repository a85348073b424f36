"""Failed authentication is limited per client address (docs/api.md: default 30/m), whatever the
credential: JWTs and API keys count against the same bucket."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from django.conf import settings

from apps.core.env import parse_rate


def failure_limit() -> tuple[int, int]:
    """(failures allowed, window seconds) per client address."""
    return parse_rate(settings.AUTH_FAILURES_PER_IP_RATE)


def failure_bucket(request: Any) -> str:
    """The counter of the request's client address (`failure_bucket_of`)."""
    return failure_bucket_of(request.META.get("REMOTE_ADDR", ""))


@lru_cache(maxsize=4096)  # a pure function of the address, asked on every API request
def failure_bucket_of(address: str) -> str:
    """The counter of a client address. IPv6 clients usually hold a whole /64, so they are
    counted per /64: otherwise each of their 2^64 addresses would get its own allowance."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"authfail:ip:{address}"
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 6:
        return f"authfail:ip:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"authfail:ip:{ip}"
