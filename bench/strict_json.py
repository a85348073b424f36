"""Cost of the strict JSON parser (duplicate keys, finite numbers, NUL, depth) against plain
`json.loads` on the same bytes, in the same run. Prints a table; run with:

    .venv/bin/python -m bench.strict_json
"""

from __future__ import annotations

import json
import statistics
import timeit

from apps.core.strict_json import loads_strict


def body(rows: int) -> bytes:
    row = {"price": 12.5, "demand": 340, "inventory": 71, "region": "emea", "flags": [1, 0, 1]}
    return json.dumps({"inputs": [row] * rows}).encode()


def predict_body(rows: int) -> bytes:
    """The benchmark's predict body (bench.predict.model): three numbers a row."""
    inputs = [
        {"price": 10.0 + n * 1.5, "demand": 300 + n, "inventory": 40.25 + n} for n in range(rows)
    ]
    return json.dumps({"inputs": inputs}).encode()


CASES = {
    "1 row (110 B)": body(1),
    "100 rows (9 KB)": body(100),
    "predict, 100 rows (5 KB)": predict_body(100),
    "~1 MiB (9,000 rows)": body(9_000),
}


def per_call(function, raw: bytes) -> float:
    """Median seconds per call over 7 repeats, each long enough to be measurable."""
    number = max(1, int(0.2 / max(timeit.timeit(lambda: function(raw), number=1), 1e-7)))
    runs = timeit.repeat(lambda: function(raw), number=number, repeat=7)
    return statistics.median(runs) / number


def main() -> None:
    print(f"{'body':<22} {'json.loads':>12} {'loads_strict':>13} {'ratio':>7}")
    for name, raw in CASES.items():
        assert loads_strict(raw) == json.loads(raw)
        plain = per_call(json.loads, raw)
        strict = per_call(loads_strict, raw)
        print(f"{name:<22} {plain * 1e6:>10.1f}µs {strict * 1e6:>11.1f}µs {strict / plain:>6.2f}x")


if __name__ == "__main__":
    main()
