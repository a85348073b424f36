"""Full verification of the audit chain (`audit_chain_verify`) over N events (default 1M), against
baselines in the same run over the same rows: plain SHA-256 of every body fetched the same way
(same ORM keyset query, same batch), the fetch alone, and SHA-256 / HMAC-SHA256 over the bodies
already in memory. Aim (issue): at least 100,000 events/s. Run with:

    .venv/bin/python -m bench.audit_verify [--events 1000000] [--fresh] [--repeat 3] [--profile]

The events are generated once (see bench/_data.py) and reused while their count matches.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import pstats
import statistics
import time
from collections.abc import Callable

from bench._db import machine, peak_rss_mb, setup

COLUMNS = (
    "seq", "ts", "action", "outcome", "actor_type", "actor_ref", "body", "prev_hash", "hash",
)  # fmt: skip


def keyset_rows(batch: int, columns: tuple[str, ...] = COLUMNS):  # type: ignore[no-untyped-def]
    """Every event row, fetched exactly as audit_chain_verify fetches them."""
    from apps.audit.models import AuditEvent

    after = 0
    while True:
        rows = list(
            AuditEvent.objects.filter(seq__gt=after).order_by("seq").values_list(*columns)[:batch]
        )
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1][0]


def fetch_only() -> int:
    from apps.audit.verification import BATCH

    count = 0
    for _row in keyset_rows(BATCH):
        count += 1
    return count


def fetch_without_ts() -> int:
    """The same fetch less the `ts` column: what loading a timestamptz costs (Django's
    timezone-aware loader for psycopg is pure Python)."""
    from apps.audit.verification import BATCH

    count = 0
    for _row in keyset_rows(BATCH, tuple(name for name in COLUMNS if name != "ts")):
        count += 1
    return count


def fetch_sha256() -> int:
    from apps.audit.verification import BATCH

    count = 0
    for row in keyset_rows(BATCH):
        hashlib.sha256(row[6].encode()).hexdigest()
        count += 1
    return count


def fetch_raw_cursor() -> int:
    """The same keyset query through a plain cursor: what the ORM adds on top of the driver."""
    from django.db import connection

    from apps.audit.verification import BATCH

    count, after = 0, 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                f"SELECT {', '.join(COLUMNS)} FROM audit_auditevent WHERE seq > %s"  # noqa: S608
                " ORDER BY seq LIMIT %s",
                [after, BATCH],
            )
            rows = cursor.fetchall()
            count += len(rows)
            if len(rows) < BATCH:
                return count
            after = rows[-1][0]


def verify() -> int:
    from apps.audit.verification import audit_chain_verify

    result = audit_chain_verify(chain_first=False)
    assert result.ok, result
    return result.checked


def in_memory(bodies: list[bytes], *, keyed: bool) -> Callable[[], int]:
    import hmac

    from apps.core.secrets import get_secret

    key = get_secret("AUDIT_HMAC_KEY").encode()
    prev = b"0" * 64

    def run() -> int:
        if keyed:
            for body in bodies:
                hmac.new(key, prev + body, hashlib.sha256).hexdigest()
        else:
            for body in bodies:
                hashlib.sha256(body).hexdigest()
        return len(bodies)

    return run


def all_bodies() -> list[bytes]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT body FROM audit_auditevent ORDER BY seq")
        return [body.encode() for (body,) in cursor.fetchall()]


def timed(function: Callable[[], int], expected: int, repeat: int) -> float:
    """Median events/s over `repeat` runs."""
    rates = []
    for _ in range(repeat):
        started = time.perf_counter()
        count = function()
        elapsed = time.perf_counter() - started
        assert count == expected, (count, expected)
        rates.append(count / elapsed)
    return statistics.median(rates)


def profile_verify(top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    verify()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--fresh", action="store_true", help="regenerate the events")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (median)")
    parser.add_argument("--profile", action="store_true", help="cProfile one verification")
    args = parser.parse_args()

    setup()
    from bench._data import ensure_events

    print(machine())
    generated = ensure_events(args.events, fresh=args.fresh)
    if generated.reused:
        print(f"events: {args.events:,} reused (--fresh regenerates)")
    else:
        print(
            f"events: {args.events:,} generated in {generated.total_s:.1f} s "
            f"(build + COPY pending {generated.build_copy_s:.1f} s, "
            f"audit_chain_pending(batch=10000) {generated.chain_s:.1f} s = "
            f"{args.events / generated.chain_s:,.0f} events/s chained)"
        )

    n = args.events
    bodies = all_bodies()
    total_bytes = sum(len(body) for body in bodies)
    print(f"bodies: {total_bytes / n:.0f} B on average; median of {args.repeat} runs per row\n")
    rows: list[tuple[str, float]] = [
        ("sha256, bodies in memory", timed(in_memory(bodies, keyed=False), n, args.repeat)),
        ("HMAC-SHA256, bodies in memory", timed(in_memory(bodies, keyed=True), n, args.repeat)),
    ]
    del bodies
    rows += [
        ("fetch only, raw cursor (same SQL)", timed(fetch_raw_cursor, n, args.repeat)),
        ("fetch only, ORM, without ts column", timed(fetch_without_ts, n, args.repeat)),
        ("fetch only (ORM keyset, as verify)", timed(fetch_only, n, args.repeat)),
        ("fetch + sha256 (BASELINE)", timed(fetch_sha256, n, args.repeat)),
        ("audit_chain_verify(chain_first=False)", timed(verify, n, args.repeat)),
    ]
    baseline = dict(rows)["fetch + sha256 (BASELINE)"]
    title = f"over {n:,} events"
    print(f"{title:<40} {'events/s':>11} {'µs/event':>9} {'x base':>7}")
    for name, rate in rows:
        print(f"{name:<40} {rate:>11,.0f} {1e6 / rate:>9.2f} {baseline / rate:>6.2f}x")
    verify_rate = dict(rows)["audit_chain_verify(chain_first=False)"]
    verdict = "met" if verify_rate >= 100_000 else "NOT met"
    print(f"\naim ≥ 100,000 events/s: {verdict} ({verify_rate:,.0f} events/s)")
    print(
        f"peak RSS of this process: {peak_rss_mb():.0f} MB (it held every body for the first rows)"
    )
    if args.profile:
        print("\ncProfile of one audit_chain_verify (sorted by own time):")
        print(profile_verify(18))


if __name__ == "__main__":
    main()
