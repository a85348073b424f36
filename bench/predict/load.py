"""Load from a second process: wrk (one thread, a fixed number of keep-alive connections,
closed loop) driven by a generated Lua script that cycles through prepared requests.

The requests of a run are written to a data file the script reads at start: `B <body>` lines
(the bodies, 64 distinct ones, so no two consecutive requests are the same), then for signed
keys `S <body number> <X-Signature value>` lines, one per request: wrk's Lua has no HMAC and
the replay cache refuses a `(key, t, v1)` seen twice, so every signed request is made here,
ahead of time, with its own (body, t) pair. Timestamps are spread over now±200 s, inside the
±300 s tolerance for as long as one run lasts.

The script's `done` prints one `BENCHJSON {...}` line: requests, duration, p50/p99 (µs) and
wrk's error counts (non-2xx/3xx answers are `status`); the server's CPU time over the run is
read from /proc around it (bench.predict.servers.cpu_seconds). With `count_workers`, `response` also
tallies the `X-Bench-Worker` header of the bench baselines (how load spreads over workers).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.predict.model import body
from bench.predict.servers import backing_cpu_seconds, cpu_seconds

BODIES = 64
SPREAD_SECONDS = 200  # t in [now - 200, now + 200): within the ±300 s tolerance

LUA = r"""
local data_path = %(data)s
local path = %(path)s
local extra = %(headers)s
local count_workers = %(count_workers)s
local bodies, sig_body, sig_value = {}, {}, {}
for line in io.lines(data_path) do
  local kind = line:sub(1, 1)
  if kind == "B" then
    bodies[#bodies + 1] = line:sub(3)
  elseif kind == "S" then
    local space = line:find(" ", 3, true)
    sig_body[#sig_body + 1] = tonumber(line:sub(3, space - 1))
    sig_value[#sig_value + 1] = line:sub(space + 1)
  end
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
for name, value in pairs(extra) do wrk.headers[name] = value end
local n = 0
request = function()
  n = n + 1
  if #sig_value > 0 then
    -- Past the end the signatures repeat: those answers are 401 replays, counted as errors.
    local i = (n - 1) %% #sig_value + 1
    wrk.headers["X-Signature"] = sig_value[i]
    return wrk.format(nil, path, nil, bodies[sig_body[i]])
  end
  return wrk.format(nil, path, nil, bodies[(n - 1) %% #bodies + 1])
end
-- Per thread (a global, so that done() can read it through thread:get).
workers = {}
if count_workers then
  response = function(status, headers, body)
    local pid = headers["X-Bench-Worker"] or "?"
    workers[pid] = (workers[pid] or 0) + 1
  end
end
local threads = {}
setup = function(thread) threads[#threads + 1] = thread end
done = function(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for pid, count in pairs(thread:get("workers") or {}) do
      totals[pid] = (totals[pid] or 0) + count
    end
  end
  local parts = {}
  for pid, count in pairs(totals) do parts[#parts + 1] = string.format('"%%s":%%d', pid, count) end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,"max_us":%%d,' ..
    '"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d,"workers":{%%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ",")))
end
"""


@dataclass(frozen=True)
class Target:
    """What one scenario sends: where, with which headers, how many rows, signed or not."""

    port: int
    path: str
    rows: int
    headers: dict[str, str] = field(default_factory=dict)
    signing_secret: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    workers: dict[str, int]
    cpu_ms: float = 0.0  # CPU of the server's processes per request (0: not measured)
    backing_cpu_ms: float = 0.0  # PostgreSQL's and Redis's CPU per request

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def signature(secret: str, path: str, payload: bytes, t: int) -> str:
    """The X-Signature value of docs/api.md "Request signing", by the project's own functions."""
    from apps.apikeys.signatures import sign, signing_message

    return f"t={t},v1={sign(secret, signing_message(str(t), 'POST', path, payload))}"


def write_data(target: Target, data: Path, *, seed: int, signed_requests: int) -> None:
    count = BODIES
    if target.signing_secret is not None:
        # Each body is signed at up to 2 x SPREAD_SECONDS timestamps: enough bodies for all.
        count = max(BODIES, -(-signed_requests // (2 * SPREAD_SECONDS)))
    bodies = [body(target.rows, seed=seed * 100_000 + index) for index in range(count)]
    lines = [b"B " + payload for payload in bodies]
    if target.signing_secret is not None:
        start = int(time.time()) - SPREAD_SECONDS
        for index in range(signed_requests):
            number, offset = index % count, index // count
            header = signature(target.signing_secret, target.path, bodies[number], start + offset)
            lines.append(f"S {number + 1} {header}".encode())
    data.write_bytes(b"\n".join(lines) + b"\n")


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string of ASCII is a valid Lua string literal


def write_script(target: Target, script: Path, data: Path, *, count_workers: bool) -> None:
    headers = ", ".join(
        f"[{_lua_string(name)}] = {_lua_string(value)}" for name, value in target.headers.items()
    )
    script.write_text(
        LUA
        % {
            "data": _lua_string(str(data)),
            "path": _lua_string(target.path),
            "headers": "{" + headers + "}",
            "count_workers": "true" if count_workers else "false",
        }
    )


def run_wrk(
    target: Target,
    workdir: Path,
    *,
    connections: int,
    seconds: float,
    seed: int,
    signed_requests: int = 0,
    count_workers: bool = False,
) -> Result:
    """One wrk run of `seconds` against `target`; raises if wrk fails or prints no result."""
    script, data = workdir / f"run-{seed}.lua", workdir / f"run-{seed}.data"
    write_data(target, data, seed=seed, signed_requests=signed_requests)
    write_script(target, script, data, count_workers=count_workers)
    command: Sequence[str] = (
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        target.url,
    )
    cpu_before, backing_before = cpu_seconds(target.port), backing_cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu = cpu_seconds(target.port) - cpu_before
    backing = backing_cpu_seconds() - backing_before
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCHJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    raw = json.loads(line.removeprefix("BENCHJSON "))
    errors = sum(raw[name] for name in ("connect", "read", "write", "status", "timeout"))
    return Result(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors=errors,
        workers=raw["workers"],
        cpu_ms=cpu * 1000 / max(raw["requests"], 1),
        backing_cpu_ms=backing * 1000 / max(raw["requests"], 1),
    )
