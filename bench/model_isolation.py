"""What running a model in a runner that holds no secret costs, against running it in the web
process, measured in one run with interleaved rounds: predict with isolation against
in-process for 1 and 100 rows (the aim: isolation adds at most 0.15 ms to a one-row call at
p50), and the runner's memory against the model's own size in-process. Run with:

    .venv/bin/python -m bench.model_isolation

Both sides call the same servable interface serving uses (apps.registry.servable), on the
demo pricing model (gradient boosting, 60 trees) and on a ~100 MB random forest: the
difference is the JSON round trip over the runner's socket and the two context switches.
"""

from __future__ import annotations

import gc
import io
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.test_settings")
os.environ.setdefault("BULWARK_DOTENV", os.devnull)

import django

django.setup()

import joblib  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.ensemble import RandomForestRegressor  # noqa: E402

from apps.registry.artifacts.loading import describe, load_model  # noqa: E402
from apps.registry.artifacts.pickle_scan import joblib_globals  # noqa: E402
from apps.registry.isolation.client import zygote  # noqa: E402
from apps.registry.servable import InProcessModel, IsolatedModel  # noqa: E402
from apps.serving.demo import pricing_artifact  # noqa: E402

ROUNDS = 5
CALLS = 2000
LIMIT = 1 << 30


def forest_bytes() -> bytes:
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(10_000, 3))
    model = RandomForestRegressor(n_estimators=115, n_jobs=-1, random_state=0).fit(
        inputs, rng.normal(size=10_000)
    )
    # Predict one thread either way: a runner runs joblib sequentially, and a thread pool
    # per call in-process would measure the pool, not the isolation.
    model.n_jobs = None
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def in_process(data: bytes) -> InProcessModel:
    allowed = joblib_globals(data, limit=LIMIT)
    estimator = load_model(
        data, format="joblib", allowed_globals=allowed, skops_trusted=[], limit=LIMIT
    )
    return InProcessModel(estimator, facts=describe(estimator), size=len(data))


def in_process_bytes(data: bytes) -> int:
    """What the loaded model holds in a web process: the growth of a fresh fork's private
    memory across the load (scikit-learn's trees live in C arrays tracemalloc does not see)."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        gc.collect()
        before = memory_kib(os.getpid())["uss"]
        model = in_process(data)
        gc.collect()
        after = memory_kib(os.getpid())["uss"]
        os.write(writer, str((after - before) * 1024).encode())
        del model
        os._exit(0)
    os.close(writer)
    held = int(os.read(reader, 64))
    os.close(reader)
    os.waitpid(pid, 0)
    return held


def isolated(data: bytes) -> IsolatedModel:
    runner = zygote.spawn()
    facts = runner.load(
        data,
        format="joblib",
        allowed_globals=sorted(joblib_globals(data, limit=LIMIT)),
        skops_trusted=[],
        limit=LIMIT,
        timeout=300,
    )
    from apps.audit.subjects import Subject

    return IsolatedModel(runner, facts=facts, size=len(data), subject=Subject("bench", "x"))


def memory_kib(pid: int) -> dict[str, int]:
    """Rss, Pss and USS (private pages) of a process, from /proc/<pid>/smaps_rollup."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    return {
        "rss": fields["Rss"],
        "pss": fields["Pss"],
        "uss": fields["Private_Clean"] + fields["Private_Dirty"],
    }


def per_call_us(
    model: Any, values: list[list[float]], calls: int, inside: list[float]
) -> list[float]:
    times = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        model.predict(values)
        times.append((time.perf_counter_ns() - start) / 1000)
        if isinstance(model, IsolatedModel):
            inside.append(model.runner.work_us)
    return times


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def latency(label: str, data: bytes, calls: int) -> None:
    local = in_process(data)
    remote = isolated(data)
    rng = np.random.default_rng(1)
    for rows in (1, 100):
        values = rng.uniform(1, 100, size=(rows, 3)).tolist()
        assert np.allclose(local.predict(values), remote.predict(values))
        samples: dict[str, list[float]] = {"in-process": [], "isolated": []}
        inside: list[float] = []
        for _ in range(ROUNDS):  # interleaved: both sides see the same machine
            for name, model in (("in-process", local), ("isolated", remote)):
                samples[name].extend(per_call_us(model, values, calls, inside))
        p50 = {name: statistics.median(times) for name, times in samples.items()}
        p99 = {name: percentile(times, 0.99) for name, times in samples.items()}
        added = p50["isolated"] - p50["in-process"]
        print(
            f"{label:<16}{rows:>5}{p50['in-process']:>14.1f}{p50['isolated']:>12.1f}"
            f"{added:>12.1f}{p50['isolated'] / p50['in-process']:>8.2f}"
            f"{statistics.median(inside):>12.1f}"
            f"{p50['isolated'] - statistics.median(inside):>10.1f}"
            f"{p99['in-process']:>14.1f}{p99['isolated']:>12.1f}"
        )
    remote.close()


def memory(label: str, data: bytes) -> None:
    held = in_process_bytes(data)
    remote = isolated(data)
    runner = memory_kib(remote.runner.pid)
    zygote_pid = int(zygote.report["pid"])
    base = memory_kib(zygote_pid)
    print(
        f"{label:<16}{len(data) / 2**20:>10.1f}{held / 2**20:>12.1f}{runner['rss'] / 1024:>12.1f}"
        f"{runner['pss'] / 1024:>10.1f}{runner['uss'] / 1024:>10.1f}{base['rss'] / 1024:>12.1f}"
        f"{runner['uss'] / 1024 / max(held / 2**20, 0.001):>10.2f}"
    )
    remote.close()


def main() -> None:
    cases = [("demo pricing", pricing_artifact(), CALLS), ("random forest", forest_bytes(), 100)]
    print(f"predict latency, µs per call (p50 over {ROUNDS} interleaved rounds)")
    print(f"{'model':<16}{'rows':>5}{'in-process':>14}{'isolated':>12}{'added':>12}{'ratio':>8}"
          f"{'in runner':>12}{'handoff':>10}{'p99 in-proc':>14}{'p99 isol.':>12}")  # fmt: skip
    for label, data, calls in cases:
        latency(label, data, calls)
    print(
        "\nmemory, MiB: the model in-process (growth of a fork's private memory) against its runner"
    )
    print(f"{'model':<16}{'artifact':>10}{'in-process':>12}{'runner RSS':>12}{'PSS':>10}"
          f"{'USS':>10}{'zygote RSS':>12}{'USS/model':>10}")  # fmt: skip
    for label, data, _calls in cases:
        memory(label, data)
    print(f"\nsandbox: {zygote.report}")
    zygote.stop()


if __name__ == "__main__":
    main()
