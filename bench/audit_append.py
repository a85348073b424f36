"""Appending audit events: events/s with 1 and 4 concurrent writer processes, one event per
transaction, against plain inserts measured in the same run with the same writer count.
Aims (issue): the chain costs at most 1.5x a plain insert; 4 writers together beat one.

    .venv/bin/python -m bench.audit_append [--events 2000] [--rounds 5]

Rows (each writer does `--events` transactions; the rate is all events over the wall time from
the first writer's start to the last one's end; median of `--rounds`):
- INSERT autocommit (BASELINE): `cursor.execute(INSERT ...)` outside any atomic block: one
  statement committed by itself, one round trip; the issue's "plain single-row INSERT + commit
  ≈ 0.24 ms" (its "ORM create ≈ 0.47 ms" matches the ORM create row below);
- INSERT in atomic(): `with transaction.atomic(): cursor.execute(INSERT ...)`, the same
  transaction shape as the audit rows (BEGIN, INSERT, COMMIT: three round trips);
- ORM create: `with transaction.atomic(): PendingEvent.objects.create(body=...)`;
- audit deferred: `with transaction.atomic(): audit_event_record(...)` with
  AUDIT_CHAIN_INLINE=False (only the pending row); everything is then chained by one
  `audit_chain_pending()`, timed separately (second table);
- audit inline: the same with AUDIT_CHAIN_INLINE=True (the default: each commit then tries the
  chain lock and chains what is pending). Events left pending because another writer held the
  lock are chained afterwards, and counted in the table;
- INSERT + audit deferred/inline, 1 tx: an audited write as the application does it, the plain
  INSERT and `audit_event_record` in one atomic(); against "INSERT in atomic()" this is what
  auditing adds to a write.
Every audit run ends with `audit_chain_verify()`: ok and the number checked must equal every
event written, so nothing forked or went missing.
The inserted bodies are as long as an audit event's (~330 bytes).
It empties the audit tables (TRUNCATE) before every run and at the end: run it before
bench.audit_verify / bench.audit_export, which then regenerate their 1M events.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from dataclasses import dataclass, field

from bench._db import bench_env, machine, setup, truncate_audit

MODES = (
    ("insert_autocommit", "INSERT autocommit (BASELINE)"),
    ("insert_atomic", "INSERT in atomic()"),
    ("orm_create", "ORM create (PendingEvent)"),
    ("audit_deferred", "audit deferred (pending only)"),
    ("audit_inline", "audit inline (chain on commit)"),
    ("insert_audit_deferred", "INSERT + audit deferred, 1 tx"),
    ("insert_audit_inline", "INSERT + audit inline, 1 tx"),
)
AUDIT_MODES = frozenset(mode for mode, _ in MODES if "audit" in mode)
BASELINE = "insert_autocommit"  # the "plain single-row INSERT + commit" (~0.24 ms)
SAME_SHAPE = "insert_atomic"
SCRATCH = "bench_insert"


def _details(writer: int, index: int) -> dict[str, object]:
    return {"writer": writer, "i": index, "path": "/api/v1/models/pricing", "status": 200}


def _sample_body() -> str:
    """A body as long as the audit events this benchmark writes."""
    from apps.audit.canonical import canonical_json

    return canonical_json(
        {
            "ts": "2026-01-01T00:00:00.000000+00:00",
            "action": "bench.event",
            "outcome": "success",
            "actor": {"type": "system", "ref": "bulwark"},
            "target": {"type": None, "id": None},
            "request_id": None,
            "ip": None,
            "details": _details(0, 0),
        }
    )


def _run(mode: str, writer: int, count: int) -> None:
    from django.conf import settings
    from django.db import connection, transaction

    from apps.audit.models import PendingEvent
    from apps.audit.services import audit_event_record

    body = _sample_body()
    sql = f"INSERT INTO {SCRATCH} (body) VALUES (%s)"  # noqa: S608
    if mode == "insert_autocommit":
        with connection.cursor() as cursor:
            for _ in range(count):
                cursor.execute(sql, [body])
    elif mode == "insert_atomic":
        with connection.cursor() as cursor:
            for _ in range(count):
                with transaction.atomic():
                    cursor.execute(sql, [body])
    elif mode == "orm_create":
        for _ in range(count):
            with transaction.atomic():
                PendingEvent.objects.create(body=body)
    elif mode in {"audit_deferred", "audit_inline"}:
        settings.AUDIT_CHAIN_INLINE = mode == "audit_inline"
        for index in range(count):
            with transaction.atomic():
                audit_event_record("bench.event", actor=None, details=_details(writer, index))
    else:  # an audited write: the change and its event in one transaction
        settings.AUDIT_CHAIN_INLINE = mode == "insert_audit_inline"
        with connection.cursor() as cursor:
            for index in range(count):
                with transaction.atomic():
                    cursor.execute(sql, [body])
                    audit_event_record("bench.event", actor=None, details=_details(writer, index))


def _warm_up() -> None:
    """Open the connection and import every code path, writing nothing that stays."""
    from django.db import transaction

    for mode, _ in MODES:
        with transaction.atomic():
            _run(mode, 0, 3)
            transaction.set_rollback(True)


def worker(writer: int, tasks, results) -> None:  # type: ignore[no-untyped-def]
    setup(migrate=False)
    _warm_up()
    results.put(("ready", writer))
    while (task := tasks.get()) is not None:
        mode, count = task
        started = time.monotonic()
        _run(mode, writer, count)
        results.put((writer, started, time.monotonic()))


@dataclass
class Row:
    rates: list[float] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    left_pending: list[int] = field(default_factory=list)
    chain_rates: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)


def _after_audit_run(mode: str, expected: int, row: Row) -> None:
    from apps.audit.services import audit_chain_pending
    from apps.audit.verification import audit_chain_verify
    from bench._db import audit_counts

    _, pending, _ = audit_counts()
    started = time.perf_counter()
    chained = audit_chain_pending()
    elapsed = time.perf_counter() - started
    assert chained == pending, (chained, pending)
    if mode.endswith("deferred"):
        assert pending == expected, (pending, expected)
    if mode == "audit_deferred":
        row.chain_rates.append(chained / elapsed)
    row.left_pending.append(pending)
    result = audit_chain_verify(chain_first=False)
    complete = result.ok and result.checked == expected
    row.checks.append(f"{'ok' if complete else 'FAILED'}/{result.checked}")
    assert complete, (result, expected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000, help="events per writer")
    parser.add_argument("--rounds", type=int, default=5, help="runs per row (median)")
    args = parser.parse_args()

    bench_env()  # secrets set here, once, before any writer is spawned: all share them
    setup()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {SCRATCH} (id bigserial PRIMARY KEY, body text NOT NULL)"
        )
    print(machine())
    print(f"{args.events} events per writer, one per transaction; median of {args.rounds} rounds")

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    queues = [context.Queue() for _ in range(4)]
    processes = [
        context.Process(target=worker, args=(index, queues[index], results), daemon=True)
        for index in range(4)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        assert results.get(timeout=120)[0] == "ready"

    rows: dict[tuple[str, int], Row] = {}
    for _round in range(args.rounds):
        for writers in (1, 4):
            for mode, _ in MODES:
                with connection.cursor() as cursor:
                    cursor.execute(f"TRUNCATE {SCRATCH}")
                truncate_audit()
                for queue in queues[:writers]:
                    queue.put((mode, args.events))
                spans = [results.get(timeout=600) for _ in range(writers)]
                wall = max(end for _, _, end in spans) - min(start for _, start, _ in spans)
                row = rows.setdefault((mode, writers), Row())
                row.rates.append(writers * args.events / wall)
                if mode in AUDIT_MODES:
                    _after_audit_run(mode, writers * args.events, row)
    for queue in queues:
        queue.put(None)
    for process in processes:
        process.join(timeout=30)
    truncate_audit()

    print()
    print(
        f"{'mode':<31} {'writers':>7} {'events/s':>9} {'ms/event':>8} {'cost':>6} {'cost':>6} "
        f"{'4 vs 1':>7}  verify/checked per round (left pending)"
    )
    print(f"{'':<31} {'':>7} {'':>9} {'(wall)':>8} {'vs ac':>6} {'vs tx':>6}")
    for writers in (1, 4):
        for mode, label in MODES:
            row = rows[(mode, writers)]
            speedup = f"{row.rate / rows[(mode, 1)].rate:.2f}x" if writers == 4 else ""
            check = ""
            if row.checks:
                check = f"{' '.join(row.checks)} ({' '.join(map(str, row.left_pending))})"
            print(
                f"{label:<31} {writers:>7} {row.rate:>9,.0f} {1e3 / row.rate:>8.3f} "
                f"{_cost(rows, mode, writers, BASELINE):>5.2f}x "
                f"{_cost(rows, mode, writers, SAME_SHAPE):>5.2f}x {speedup:>7}  {check}"
            )
    print(
        "\ncost = time per event / that of the plain INSERT with the same writer count:"
        "\n  vs ac = INSERT autocommit (the issue's baseline, ~0.24 ms),"
        "\n  vs tx = INSERT inside atomic() (BEGIN, INSERT, COMMIT: the audit rows' shape)"
    )

    print("\nchaining what the deferred writers left (one audit_chain_pending(), batch 1000)")
    print(f"{'writers':>7} {'pending':>8} {'chained events/s':>17}")
    for writers in (1, 4):
        rate = statistics.median(rows[("audit_deferred", writers)].chain_rates)
        print(f"{writers:>7} {writers * args.events:>8} {rate:>17,.0f}")

    print()
    for writers in (1, 4):
        for mode in ("audit_inline", "audit_deferred"):
            cost = _cost(rows, mode, writers, BASELINE)
            shape = _cost(rows, mode, writers, SAME_SHAPE)
            verdict = "met" if cost <= 1.5 else "NOT met"
            print(
                f"aim cost <= 1.5x a plain insert, {mode}, {writers} writer(s): {verdict} "
                f"({cost:.2f}x; {shape:.2f}x vs INSERT in atomic())"
            )
    for writers in (1, 4):
        for mode in ("insert_audit_inline", "insert_audit_deferred"):
            shape = _cost(rows, mode, writers, SAME_SHAPE)
            print(
                f"   audited write {mode}, {writers} writer(s): {shape:.2f}x "
                "an unaudited INSERT in atomic()"
            )
    for mode in ("audit_inline", "audit_deferred"):
        speedup = rows[(mode, 4)].rate / rows[(mode, 1)].rate
        verdict = "met" if speedup > 1 else "NOT met"
        print(f"aim 4 writers faster than 1, {mode}: {verdict} ({speedup:.2f}x)")


def _cost(rows: dict[tuple[str, int], Row], mode: str, writers: int, baseline: str) -> float:
    return rows[(baseline, writers)].rate / rows[(mode, writers)].rate


if __name__ == "__main__":
    main()
