"""Garbage-collector pauses of one server process, per generation, for `--experiments`:
installed at worker start (after gc.freeze(), when the configuration freezes), reported as one
`BENCHGC {...}` line on stderr (the server's log) when the worker exits."""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from typing import Any

_started: list[float] = []
# generation -> [collections, total seconds, longest seconds]
_pauses: dict[int, list[float]] = {0: [0, 0.0, 0.0], 1: [0, 0.0, 0.0], 2: [0, 0.0, 0.0]}


def _callback(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started.append(time.perf_counter())
        return
    if not _started:
        return
    elapsed = time.perf_counter() - _started.pop()
    pause = _pauses[info["generation"]]
    pause[0] += 1
    pause[1] += elapsed
    pause[2] = max(pause[2], elapsed)


def install() -> None:
    gc.callbacks.append(_callback)


def report() -> None:
    line = {"pid": os.getpid(), "frozen": gc.get_freeze_count(), "pauses": _pauses}
    sys.stderr.write(f"BENCHGC {json.dumps(line)}\n")
    sys.stderr.flush()


def read(log_text: str) -> dict[str, float]:
    """Totals over every worker that reported in `log_text`: how many did, full (generation 2)
    collections, their total and longest pause in ms, and how many objects were frozen."""
    full = total = longest = frozen = workers = 0.0
    for text in log_text.splitlines():
        if not text.startswith("BENCHGC "):
            continue
        workers += 1
        line = json.loads(text.removeprefix("BENCHGC "))
        count, seconds, most = line["pauses"]["2"]
        full += count
        total += seconds * 1000
        longest = max(longest, most * 1000)
        frozen += line["frozen"]
    return {
        "workers": workers,
        "full": full,
        "total_ms": total,
        "longest_ms": longest,
        "frozen": frozen,
    }
