"""A chained audit trail of N events for the verification and export benchmarks.

Bodies are built the way `audit_event_record` builds them (same fields, details through its
`_safe_details`, so masked and digested, `canonical_json`), written as pending events with
COPY, then chained by the real `audit_chain_pending(batch=10000)`: the result is exactly what
the application would have written, and verifies under the bench database's AUDIT_HMAC_KEY.
Going through `audit_event_record` one event per transaction would take hours for 1M.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

ACTIONS = (
    "model.predicted",
    "model.created",
    "apikey.used",
    "auth.login",
    "policy.updated",
    "artifact.downloaded",
)
OUTCOMES = ("success", "success", "success", "failure", "denied")
PSEUDONYMS = tuple(f"p_{index:020x}" for index in range(50))
DETAIL_VARIANTS = 4096


@lru_cache(maxsize=DETAIL_VARIANTS)
def _details(variant: int) -> dict[str, object]:
    # Masking and digesting cost ~90 µs an event: done once per variant, not 1M times.
    from apps.audit.services import _safe_details

    return _safe_details(
        {
            "model": f"pricing-v{variant % 7}",
            "path": "/api/v1/models/pricing/predict",
            "status": 200 if variant % 5 else 403,
            "latency_ms": variant % 97,
            "inputs": [{"price": 12.5, "demand": variant}],
        }
    )


@lru_cache(maxsize=256)
def _ip(variant: int) -> str | None:
    from apps.audit.subjects import truncated_ip

    return truncated_ip(f"203.0.113.{variant}")


def event_dict(index: int, ts: datetime) -> dict[str, object]:
    """Event `index` (0-based) as audit_event_record would build it at time `ts`."""
    if index % 3 == 0:
        actor = {"type": "system", "ref": "bulwark"}
    else:
        actor = {"type": "user", "ref": PSEUDONYMS[index % len(PSEUDONYMS)]}
    return {
        "ts": ts.isoformat(timespec="microseconds"),
        "action": ACTIONS[index % len(ACTIONS)],
        "outcome": OUTCOMES[index % len(OUTCOMES)],
        "actor": actor,
        "target": {"type": "model", "id": f"pricing-v{index % 7}"},
        "request_id": str(uuid.UUID(int=index + 1)),
        "ip": _ip(index % 250),
        "details": _details(index % DETAIL_VARIANTS),
    }


def pending_bodies(count: int) -> Iterator[str]:
    from apps.audit.canonical import canonical_json

    start = datetime.now(UTC) - timedelta(milliseconds=count)
    for index in range(count):
        yield canonical_json(event_dict(index, start + timedelta(milliseconds=index)))


@dataclass
class Generated:
    events: int
    reused: bool
    build_copy_s: float = 0.0
    chain_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.build_copy_s + self.chain_s


def copy_pending(bodies: Iterator[str]) -> int:
    """COPY pending bodies in (one statement, streamed). Returns how many."""
    from django.db import connection, transaction

    written = 0
    with (
        transaction.atomic(),
        connection.cursor() as cursor,
        cursor.cursor.copy("COPY audit_pendingevent (body) FROM STDIN") as copy,
    ):
        for body in bodies:
            copy.write_row((body,))
            written += 1
    return written


def ensure_events(count: int, *, fresh: bool = False) -> Generated:
    """Make the bench database hold exactly `count` chained events (seq 1..count, nothing
    pending), reusing what is there when it already does."""
    from apps.audit.services import audit_chain_pending
    from bench._db import audit_counts, truncate_audit

    if not fresh and audit_counts() == (count, 0, count):
        return Generated(count, reused=True)
    truncate_audit()
    started = time.perf_counter()
    copy_pending(pending_bodies(count))
    copied = time.perf_counter()
    chained = audit_chain_pending(batch=10_000)
    done = time.perf_counter()
    assert chained == count, (chained, count)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE audit_auditevent")
    return Generated(count, reused=False, build_copy_s=copied - started, chain_s=done - copied)
