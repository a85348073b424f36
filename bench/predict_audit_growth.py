"""Predict latency as the audit trail grows. Aim (issue): p50 flat as the audit table grows from
0 to 10 million events. One command (from the project folder; PostgreSQL and Redis on
127.0.0.1):

    .venv/bin/python -m bench.predict_audit_growth [--calls 2000] [--levels 1000000,10000000]

About 9 minutes on 2 cores, 7 of them the COPY to 10M (PostgreSQL-bound: random inserts into
the two `hash` indexes, and full-page images in the WAL after each checkpoint).

On its own database `bulwark_bench_growth` (dropped and recreated at the start, dropped at the
end unless --keep) and Redis database 12 (emptied), with the predict bench's production
environment (bench.predict.run.server_env: BULWARK_ENV=production, DEBUG off, Redis, so the
settings leave AUDIT_CHAIN_INLINE off), it makes the predict bench's fixtures through the
project's services (bench.predict.fixtures: users, the promoted `pricing` model, API keys),
then times `POST /api/v1/models/pricing/predict`, one row, X-API-Key, in-process: the WSGI
application called directly like bench.predict.inprocess (no server, no network).

The chained table `audit_auditevent` is filled to each level (0, 1M, 10M) with COPY from a
generator, in batches, two connections at a time: seq continuing, bodies shaped like the
service's predict events, `hash` unique (a SHA-256 of the seq; they do not verify as a chain:
nothing on the predict path verifies them). After each fill: VACUUM ANALYZE and a CHECKPOINT,
so the fill's dirty pages are not written during the measurement.

Against drift on a shared machine, each filled level is measured interleaved with 0 events: an
empty twin of the table (CREATE TABLE ... LIKE audit_auditevent INCLUDING ALL, the same
indexes, constraints and trigger) is swapped in by renaming, block by block, so "N events" and
"0 events" rows of a level come from the same minutes. The first level (0) and a last one
(the filled table emptied with TRUNCATE) are measured on their own, as a check.

Each is measured in two modes, also interleaved block by block:
- `pending` (the production configuration, AUDIT_CHAIN_INLINE off: the beat job chains): a
  request writes one row to audit_pendingevent, which grows as the predicts run (until the
  next `inline` block chains the backlog, as the beat job would);
- `inline` (AUDIT_CHAIN_INLINE on: the embedded default without a broker): each commit also
  chains (chain head read from audit_auditevent, rows inserted there with its 8 indexes).
Each block starts with warm-up calls (not measured; in `inline` they chain the backlog the
`pending` block left); the order of the blocks is reversed every other round.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.predict import fixtures

DB_NAME = "bulwark_bench_growth"
DATABASE_URL = f"{fixtures.PG_SERVER}/{DB_NAME}"
REDIS_URL = "redis://127.0.0.1:6379/12"
PREDICT_PATH = f"/api/v1/models/{fixtures.MODEL}/predict"
AUDIT_STAGE = "audit event (INSERT + commit)"  # bench.predict.inprocess.STAGES
MODES = ("pending", "inline")
LIVE = "audit_auditevent"
TWIN = "bench_growth_twin"  # the other one of the two tables (filled or empty)
PENDING = "audit_pendingevent"
COLUMNS = "seq, ts, action, outcome, actor_type, actor_ref, body, prev_hash, hash, hmac_key_id"
# The id of the HMAC key an event names (issue 13's rotation): any fixed id, as nothing here
# verifies the filler's chain.
FILLER_KEY_ID = "0000000000b3c4f1"
# A chained predict event as the service writes it (canonical JSON, keys sorted, seq added).
BODY = (
    '{"action":"%s","actor":{"ref":"%s","type":"%s"},"details":{"dp":false,'
    '"inputs":{"rows":1,"sha256":"%s"},"latency_ms":%d.%02d,"model":"pricing","rows":1,'
    '"version":1},"ip":"203.0.113.0/24","outcome":"%s","request_id":"%032x","seq":%d,'
    '"target":{"id":"pricing:1","type":"model_version"},"ts":"%s"}'
)
ACTIONS = ("predict.succeeded",) * 8 + ("predict.rejected", "apikey.used")
DIGESTS = tuple(hashlib.sha256(b"inputs %d" % index).hexdigest() for index in range(4096))
EVENT_SPACING_S = 0.25  # the filled events are 4 a second, ending before the run starts
FILL_CONNECTIONS = 2


@dataclass
class Series:
    """One row group of the table: measurements with the live table in one state."""

    label: str
    filled: bool  # the filled table live (else the empty twin)
    chained: int = -1  # rows in the live table when first measured
    chained_end: int = 0
    pending_peak: int = 0  # audit_pendingevent rows after the fullest `pending` block
    totals: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    audit: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    baseline: Series | None = None  # the 0-event series measured interleaved with this one


@dataclass
class Step:
    label: str
    sizes: dict[str, tuple[int, int]]  # table: (heap + TOAST, indexes) bytes
    fill_s: float = 0.0
    settle_s: float = 0.0


# --- the tables ------------------------------------------------------------------------------


def _guard() -> None:
    """Every write below goes to the bench's own database, and only there."""
    from django.db import connection

    assert connection.settings_dict["NAME"] == DB_NAME, connection.settings_dict["NAME"]


def sql(*statements: str) -> list[tuple[Any, ...]]:
    """Run statements on Django's connection; the rows of the last one that returns any."""
    from django.db import connection

    _guard()
    rows: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
            if cursor.description is not None:
                rows = cursor.fetchall()
    return rows


class Tables:
    """The filled table and its empty twin; either is `audit_auditevent` (the live one)."""

    def __init__(self) -> None:
        trigger = sql(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger"  # noqa: S608
            f" WHERE tgrelid = '{LIVE}'::regclass AND NOT tgisinternal"
        )
        statements = [f"CREATE TABLE {TWIN} (LIKE {LIVE} INCLUDING ALL)"]
        statements += [
            definition.replace(f" ON public.{LIVE} ", f" ON public.{TWIN} ")
            for (definition,) in trigger
        ]
        sql(*statements)
        self.filled_live = True

    def show(self, *, filled: bool) -> None:
        """Make the filled table (or the empty one) `audit_auditevent`."""
        from django.db import transaction

        if filled == self.filled_live:
            return
        with transaction.atomic():
            sql(
                f"ALTER TABLE {LIVE} RENAME TO bench_growth_swap",
                f"ALTER TABLE {TWIN} RENAME TO {LIVE}",
                f"ALTER TABLE bench_growth_swap RENAME TO {TWIN}",
            )
        self.filled_live = filled

    def name(self, *, filled: bool) -> str:
        return LIVE if filled == self.filled_live else TWIN

    def count(self, *, filled: bool) -> int:
        return sql(f"SELECT count(*) FROM {self.name(filled=filled)}")[0][0]  # noqa: S608

    def empty(self, *, filled: bool) -> None:
        sql(f"TRUNCATE {self.name(filled=filled)}")

    def sizes(self) -> dict[str, tuple[int, int]]:
        """(heap + TOAST, indexes) bytes of the filled table and of the pending one."""
        out = {}
        for label, table in (("filled", self.name(filled=True)), ("pending", PENDING)):
            out[label] = sql(
                f"SELECT pg_total_relation_size('{table}') - pg_indexes_size('{table}'),"
                f" pg_indexes_size('{table}')"
            )[0]
        return out

    def settle(self) -> float:
        """VACUUM ANALYZE, then CHECKPOINT (the fill's dirty pages and WAL are written now, not
        during the measurement). Returns the seconds taken."""
        started = time.perf_counter()
        sql(f"VACUUM ANALYZE {LIVE}, {TWIN}, {PENDING}", "CHECKPOINT")
        return time.perf_counter() - started


def pending_count() -> int:
    return sql(f"SELECT count(*) FROM {PENDING}")[0][0]  # noqa: S608


# --- the fill --------------------------------------------------------------------------------


def _digest(seq: int) -> str:
    return hashlib.sha256(b"bench-growth %d" % seq).hexdigest()


def event_lines(first: int, last: int, prev_hash: str, epoch: float) -> Iterator[str]:
    """COPY text lines for seq first..last (no tab, newline or backslash in any value)."""
    from bench._data import PSEUDONYMS

    for seq in range(first, last + 1):
        ts = datetime.fromtimestamp(epoch + seq * EVENT_SPACING_S, UTC).isoformat(
            timespec="microseconds"
        )
        action = ACTIONS[seq % len(ACTIONS)]
        outcome = "denied" if action == "predict.rejected" else "success"
        actor_type, ref = ("system", "bulwark") if seq % 7 == 0 else ("user", PSEUDONYMS[seq % 50])
        body = BODY % (
            action, ref, actor_type, DIGESTS[seq % 4096], seq % 97, seq % 100, outcome, seq, seq, ts
        )  # fmt: skip
        digest = _digest(seq)
        yield (
            f"{seq}\t{ts}\t{action}\t{outcome}\t{actor_type}\t{ref}\t{body}\t"
            f"{prev_hash}\t{digest}\t{FILLER_KEY_ID}\n"
        )
        prev_hash = digest


def _copy(table: str, first: int, last: int, prev_hash: str, epoch: float) -> None:
    """One COPY (its own connection and transaction) of seq first..last."""
    import psycopg

    with (
        psycopg.connect(DATABASE_URL, autocommit=True) as conn,
        conn.cursor() as cursor,
        cursor.copy(f"COPY {table} ({COLUMNS}) FROM STDIN") as copy,
    ):
        chunk: list[str] = []
        for line in event_lines(first, last, prev_hash, epoch):
            chunk.append(line)
            if len(chunk) == 5000:
                copy.write("".join(chunk))
                chunk.clear()
        copy.write("".join(chunk))


def fill(tables: Tables, target: int, *, batch: int, epoch: float) -> float:
    """COPY events into the filled table until it holds `target` rows, seq continuing from
    its head, `batch` rows per COPY, FILL_CONNECTIONS at a time. Returns the seconds taken."""
    from apps.audit.models import GENESIS_HASH

    started = time.perf_counter()
    table = tables.name(filled=True)
    head = sql(f"SELECT seq, hash FROM {table} ORDER BY seq DESC LIMIT 1")  # noqa: S608
    seq, head_hash = head[0] if head else (0, GENESIS_HASH)
    assert tables.count(filled=True) == seq, seq  # the fill continues a gapless seq
    ranges = [
        (first, min(first + batch - 1, target)) for first in range(seq + 1, target + 1, batch)
    ]
    with ThreadPoolExecutor(FILL_CONNECTIONS) as pool:
        futures = [
            pool.submit(
                _copy,
                table,
                first,
                last,
                head_hash if first == seq + 1 else _digest(first - 1),
                epoch,
            )
            for first, last in ranges
        ]
        for done, future in enumerate(futures, 1):
            future.result()
            print(
                f"  COPY {done}/{len(futures)} done ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    return time.perf_counter() - started


# --- measurement -----------------------------------------------------------------------------


class Caller:
    """The WSGI app and the stage clock of bench.predict.inprocess, and one predict call."""

    def __init__(self, fx: fixtures.Fixtures) -> None:
        from django.core.wsgi import get_wsgi_application

        from bench.predict.inprocess import StageClock, instrument
        from bench.predict.model import body
        from bench.predict.servers import PROXY_HEADERS

        self.app = get_wsgi_application()
        self.clock = StageClock()
        instrument(self.clock)
        self.headers = {**PROXY_HEADERS, "X-API-Key": fx.api_key}
        self.payloads = [body(1, seed=f"growth-{index}") for index in range(64)]
        self.calls = 0

    def one(self) -> tuple[float, float]:
        """(total µs, audit stage µs) of one call."""
        from bench.predict.inprocess import call, environ

        payload = self.payloads[self.calls % len(self.payloads)]
        self.calls += 1
        env = environ(PREDICT_PATH, payload, self.headers)
        self.clock.totals.clear()
        self.clock.enabled = True
        started = time.perf_counter_ns()
        status = call(self.app, env)
        elapsed = time.perf_counter_ns() - started
        self.clock.enabled = False
        if not status.startswith("200"):
            raise RuntimeError(f"predict answered {status}")
        return elapsed / 1000, self.clock.totals.get(AUDIT_STAGE, 0) / 1000


def measure(caller: Caller, tables: Tables, series: list[Series], args: argparse.Namespace) -> None:
    """`args.calls` measured calls per series and mode, in blocks of `args.block` (each after
    `args.warmup` unmeasured calls), the series and the modes interleaved block by block, the
    order reversed every other round."""
    from django.conf import settings

    started = time.perf_counter()
    for round_number in range(-(-args.calls // args.block)):
        flip = -1 if round_number % 2 else 1  # A B, B A, A B...: neither goes first always
        for one in series[::flip]:
            tables.show(filled=one.filled)
            if one.chained < 0:
                one.chained = tables.count(filled=one.filled)
            for mode in MODES[::flip]:
                settings.AUDIT_CHAIN_INLINE = mode == "inline"
                for _ in range(args.warmup):
                    caller.one()
                for _ in range(min(args.block, args.calls - len(one.totals[mode]))):
                    total, audit = caller.one()
                    one.totals[mode].append(total)
                    one.audit[mode].append(audit)
                one.pending_peak = max(one.pending_peak, pending_count())
            one.chained_end = tables.count(filled=one.filled)
    settings.AUDIT_CHAIN_INLINE = False
    tables.show(filled=True)
    labels = " and ".join(one.label for one in series)
    print(f"{labels}: measured in {time.perf_counter() - started:.0f} s", flush=True)


# --- report ----------------------------------------------------------------------------------


def p50(values: list[float]) -> float:
    return statistics.median(values)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def mb(size: int) -> str:
    return f"{size / 2**20:,.0f}"


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("| " + " | ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def report(series: list[Series], steps: list[Step]) -> None:
    first = series[0]
    rows = [
        (
            "events in audit_auditevent",
            "mode",
            "chained (start-end) + pending (peak)",
            "p50 µs",
            "p99 µs",
            "p50 / 0 interleaved",
            "p50 / first 0",
            "audit stage p50 µs",
        )
    ]
    for one in series:
        for mode in MODES:
            totals, audit = one.totals[mode], one.audit[mode]
            interleaved = (
                f"{p50(totals) / p50(one.baseline.totals[mode]):.2f}x" if one.baseline else "-"
            )
            rows.append(
                (
                    one.label,
                    mode,
                    f"{one.chained:,}-{one.chained_end:,} + {one.pending_peak:,}",
                    f"{p50(totals):,.0f}",
                    f"{p99(totals):,.0f}",
                    interleaved,
                    f"{p50(totals) / p50(first.totals[mode]):.2f}x",
                    f"{p50(audit):,.0f}",
                )
            )
    print_table(rows)
    print()
    rows = [
        (
            "step",
            "auditevent heap MB",
            "auditevent indexes MB",
            "auditevent total MB",
            "pendingevent heap+idx MB",
            "fill s",
            "VACUUM+CHECKPOINT s",
        )
    ]
    for step in steps:
        heap, indexes = step.sizes["filled"]
        rows.append(
            (
                step.label,
                mb(heap),
                mb(indexes),
                mb(heap + indexes),
                mb(sum(step.sizes["pending"])),
                f"{step.fill_s:.0f}",
                f"{step.settle_s:.0f}",
            )
        )
    print_table(rows)


def machine() -> str:
    version, buffers = sql("SELECT version(), current_setting('shared_buffers')")[0]
    return (
        f"{os.cpu_count()} cores; {version.split(' on ')[0]} (shared_buffers={buffers}); "
        f"database {DB_NAME}, Redis db 12"
    )


# --- run -------------------------------------------------------------------------------------


def setup(workdir: Path) -> fixtures.Fixtures:
    """The predict bench's production environment, pointed at this bench's database and Redis
    db; then its fixtures, made through the project's services."""
    from bench.predict.model import dumped, train
    from bench.predict.run import server_env

    env = server_env(workdir, workdir / "model.joblib")  # the model file: baselines only
    env.update({"DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL})
    os.environ.update(env)
    import django

    django.setup()
    fixtures.recreate_database(DB_NAME)
    fixtures.flush_redis(REDIS_URL)
    _guard()
    return fixtures.create(dumped(train()), budget_for_calls=1000)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.predict_audit_growth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--calls", type=int, default=2000, help="measured calls per row")
    parser.add_argument("--block", type=int, default=100, help="calls per interleaved block")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured calls per block")
    parser.add_argument(
        "--levels", default="1000000,10000000", help="events to fill to, ascending (after 0)"
    )
    parser.add_argument("--batch", type=int, default=500_000, help="rows per COPY")
    parser.add_argument("--keep", action="store_true", help=f"keep {DB_NAME} at the end")
    args = parser.parse_args()
    args.levels = [int(level) for level in args.levels.split(",")]
    if args.levels != sorted(args.levels) or args.levels[0] <= 0:
        parser.error("--levels: ascending, above 0")
    return args


def run(args: argparse.Namespace, workdir: Path) -> None:
    fx = setup(workdir)
    caller = Caller(fx)
    sql(f"TRUNCATE {LIVE}, {PENDING}")  # the fixtures' own events: the first level holds none
    tables = Tables()
    for _ in range(200):  # model load, caches, connections
        caller.one()
    print(machine(), flush=True)
    epoch = time.time() - (args.levels[-1] + 1) * EVENT_SPACING_S  # filled events end now
    series = [Series("0", filled=True)]
    steps = [Step("0", tables.sizes(), settle_s=tables.settle())]
    measure(caller, tables, series[-1:], args)
    for target in args.levels:
        fill_s = fill(tables, target, batch=args.batch, epoch=epoch)
        tables.empty(filled=False)
        steps.append(Step(f"{target:,}", tables.sizes(), fill_s, tables.settle()))
        zero = Series(f"0 (with {target:,})", filled=False)
        series += [Series(f"{target:,}", filled=True, baseline=zero), zero]
        measure(caller, tables, series[-2:], args)
    tables.empty(filled=True)
    tables.empty(filled=False)
    steps.append(Step("TRUNCATE", tables.sizes(), settle_s=tables.settle()))
    series.append(Series("0 (after TRUNCATE)", filled=True))
    measure(caller, tables, series[-1:], args)
    print()
    print(
        f"POST {PREDICT_PATH}, 1 row, X-API-Key, in-process WSGI; {args.calls} calls per row in "
        f"blocks of {args.block} (each after {args.warmup} warm-up calls), interleaved with the "
        "other mode and, for a filled level, with the empty twin table (the 0 (with N) rows)"
    )
    print()
    report(series, steps)


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bulwark-bench-growth-"))
    try:
        run(args, workdir)
    finally:
        from django.conf import settings

        if settings.configured:
            from django.db import connections

            connections.close_all()
        if not args.keep:
            import psycopg
            from psycopg import sql as pgsql

            with psycopg.connect(f"{fixtures.PG_SERVER}/postgres", autocommit=True) as conn:
                name = pgsql.Identifier(DB_NAME)
                conn.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n(total {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
