"""JSONL export (`export_jsonl`) of 100k and 1M events to /dev/null, each in a fresh child
process: wall time, events/s and the child's peak RSS (VmHWM), against children in the same
run that only start Django and run one trivial query (the memory floor) and that only fetch the
same rows the export fetches (`apps.audit.export._rows`, the time floor).
Aim (issue): under 150 MB peak, flat as the count grows.

    .venv/bin/python -m bench.audit_export [--sizes 100000 1000000] [--repeat 1]

Needs the events of bench/audit_verify.py (the largest size; generated here when missing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from bench._db import bench_env, machine, peak_rss_mb, setup


def child(kind: str, last_seq: int) -> None:
    """Run in the child: one measurement, printed as a JSON line."""
    setup(migrate=False)
    from apps.audit.export import _rows, export_jsonl
    from apps.audit.models import AuditEvent

    AuditEvent.objects.filter(seq=1).exists()  # connected, the query path imported
    floor = peak_rss_mb()
    events = written = 0
    started = time.perf_counter()
    if kind == "export":
        with open(os.devnull, "wb") as out:
            for chunk in export_jsonl(since=None, until=None, last_seq=last_seq):
                out.write(chunk)
                written += len(chunk)
                events += chunk.count(b"\n")
        events -= 1  # the manifest line
    elif kind == "fetch":
        for _row in _rows(None, None, last_seq):
            events += 1
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "events": events,
                "bytes": written,
                "seconds": elapsed,
                "floor_mb": floor,
                "peak_mb": peak_rss_mb(),
            }
        )
    )


def run_child(kind: str, last_seq: int, env: dict[str, str]) -> dict[str, float]:
    command = [sys.executable, "-m", "bench.audit_export", "--child", kind, str(last_seq)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child {kind} {last_seq} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=1, help="children per row (median)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "LAST_SEQ"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return

    env = bench_env()
    setup()
    from bench._data import ensure_events

    print(machine())
    largest = max(args.sizes)
    generated = ensure_events(largest)
    how = "reused" if generated.reused else f"generated in {generated.total_s:.0f} s"
    print(f"events in the database: {largest:,} ({how}); each row a fresh child process")
    print()
    print(
        f"{'child':<26} {'events':>9} {'seconds':>8} {'events/s':>10} {'MB/s':>6} "
        f"{'x fetch':>7} {'peak RSS':>9} {'above floor':>11}"
    )
    floor = statistics.median(run_child("floor", 0, env)["peak_mb"] for _ in range(args.repeat))
    print(f"{'django.setup + 1 query':<26} {'':>52} {floor:>7.0f}MB")
    peaks: dict[int, float] = {}
    for size in args.sizes:
        runs = {
            kind: [run_child(kind, size, env) for _ in range(args.repeat)]
            for kind in ("fetch", "export")
        }
        fetch_s = statistics.median(run["seconds"] for run in runs["fetch"])
        for kind, label in (("fetch", "fetch only (_rows)"), ("export", "export_jsonl")):
            seconds = statistics.median(run["seconds"] for run in runs[kind])
            peak = statistics.median(run["peak_mb"] for run in runs[kind])
            events = int(runs[kind][0]["events"])
            assert events == size, (kind, events, size)
            megabytes = runs[kind][0]["bytes"] / 1e6
            rate = f"{megabytes / seconds:>6.0f}" if megabytes else f"{'':>6}"
            print(
                f"{label:<26} {events:>9,} {seconds:>8.2f} {events / seconds:>10,.0f} {rate} "
                f"{seconds / fetch_s:>6.2f}x {peak:>7.0f}MB {peak - floor:>9.0f}MB"
            )
            if kind == "export":
                peaks[size] = peak
    print()
    worst = max(peaks.values())
    verdict = "met" if worst < 150 else "NOT met"
    print(f"aim peak < 150 MB: {verdict} (highest {worst:.0f} MB)")
    if len(peaks) > 1:
        low, high = min(peaks), max(peaks)
        growth = peaks[high] - peaks[low]
        verdict = "met" if growth < 10 else "NOT met"
        print(
            f"aim flat as the count grows: {verdict} ({low:,} → {high:,} events: {growth:+.0f} MB)"
        )


if __name__ == "__main__":
    main()
