"""Cost of the snapped Laplace mechanism (os.urandom, 53-bit uniforms, clamp, round) against
numpy's PRNG Laplace (insecure, shown only as the floor) on the same batch sizes. Prints a
table; run with:

    .venv/bin/python -m bench.dp_noise
"""

from __future__ import annotations

import statistics
import timeit

import numpy as np

from apps.serving.privacy.laplace import privatise

SIZES = (1, 100, 10_000)


def per_call(function) -> float:  # type: ignore[no-untyped-def]
    """Median seconds per call over 7 repeats, each long enough to be measurable."""
    number = max(1, int(0.2 / max(timeit.timeit(function, number=1), 1e-7)))
    return statistics.median(timeit.repeat(function, number=number, repeat=7)) / number


def main() -> None:
    generator = np.random.default_rng()
    print(f"{'values':>8} {'numpy laplace':>14} {'privatise':>11} {'ratio':>7}")
    for size in SIZES:
        values = [float(index) for index in range(size)]
        naive = per_call(lambda v=values: np.asarray(v) + generator.laplace(0, 1, len(v)))
        snapped = per_call(lambda v=values: privatise(v, epsilon=1.0, sensitivity=1.0))
        print(f"{size:>8} {naive * 1e6:>12.1f}µs {snapped * 1e6:>9.1f}µs {snapped / naive:>6.1f}x")


if __name__ == "__main__":
    main()
