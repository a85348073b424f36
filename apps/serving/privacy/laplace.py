"""The Laplace mechanism for numeric model outputs, with Mironov's snapping against the
floating-point attack.

`privatise(values, epsilon=0.5, sensitivity=1.0)` returns the values with noise added so that
the whole call is epsilon-differentially private (see `privatise` for what is assumed).

Where the randomness comes from: `os.urandom`, the operating system's CSPRNG. Never numpy's or
`random`'s generators: their state can be recovered from a few hundred outputs, and then every
future noise sample, and so every true value behind a noisy one, is known.

Why snapping (Mironov 2012, "On significance of the least significant bits for differential
privacy"): the naive `value + scale * log(u)` in floating point can only produce certain
doubles for a given true value, so the low bits of one noisy output can reveal the true value
exactly. The snapping mechanism clamps the true value to [-B, B], adds the noise, rounds to the
nearest multiple of a power of two Λ ≥ scale and clamps again. Every output is then a multiple
of Λ, a grid much coarser than the doubles near the result, and the same grid whatever the true
value: the low bits carry nothing.

What is and is not proven: Mironov's theorem (stated for Δ = 1 and λ < B < 2^46·λ; rescaled
here) bounds the privacy loss of one snapped value by (Δ + 2^-49·B)/λ, and the scale used here,
λ = n·(Δ + 2^-49·B)/ε, makes that bound the epsilon asked for. The theorem assumes a uniform
over every double in (0, 1) and a correctly rounded logarithm; this module uses 53-bit uniforms
(simple, and exactly testable) and the platform's `log` (within 1 ulp, not proven correctly
rounded). So
the noise is bounded (|noise| ≤ 53·ln 2·λ ≈ 36.7·λ) and coarse in its far tail: one grid step
of u carries probability 2^-53, which is no longer small against the mass of an output bucket
once the noise exceeds about 31·λ. Our estimate (not a proof): outside tails of probability
about 2^-45 per value, the discretisation moves the privacy loss by under 1%; inside them it
can be unbounded. Read the guarantee as (ε, δ) with a negligible δ, not as pure ε. Timing is
not constant either (a zero draw is redrawn, probability 2^-53 per value).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

# The default input bound B, in units of the per-value sensitivity: 2^36·Δ (≈ 6.9e10·Δ) only
# clamps absurd outputs, and costs a factor 1 + 2^-13 on the scale (Mironov's 2^-49·B term).
DEFAULT_BOUND_IN_SENSITIVITIES = 2.0**36
# Mironov's condition B < 2^46·λ: with it, every rounding error of `clamp(x) + noise` is far
# below Λ. The exponent limits keep λ, Λ, B and 37·λ normal, finite doubles.
_MAX_BOUND_OVER_SCALE = 2.0**46
_MIN_SCALE = 2.0**-900
_MAX_SCALE = 2.0**900
_UNIFORM_BITS = 53


class InvalidMechanism(ValueError):
    """Epsilon, sensitivity or bound outside what the mechanism can serve: a configuration
    error of the model version, to be rejected when the version is registered."""


class NonFiniteOutput(ValueError):
    """The model returned NaN, ±inf or a number beyond float range: nothing is returned."""


@dataclass(frozen=True)
class Snapping:
    """The mechanism's parameters for one call: noise `scale` λ, the output grid `granularity`
    Λ = 2^ceil(log2 λ), the input clamp `bound` B and the output clamp `output_bound` (B rounded
    down to a multiple of Λ, so the clamped output stays on the grid)."""

    scale: float
    granularity: float
    bound: float
    output_bound: float


def snapping_parameters(
    *, epsilon: float, sensitivity: float, count: int = 1, bound: float | None = None
) -> Snapping:
    """The parameters for `count` values released together at a total of `epsilon`, each value
    changing by at most `sensitivity` between neighbouring training sets.

    Raises InvalidMechanism unless epsilon and sensitivity are positive and finite and the
    resulting scale and bound satisfy Mironov's conditions."""
    _require_positive_finite("epsilon", epsilon)
    _require_positive_finite("sensitivity", sensitivity)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidMechanism(f"count must be a positive integer, got {count!r}")
    if bound is None:
        bound = sensitivity * DEFAULT_BOUND_IN_SENSITIVITIES
    _require_positive_finite("bound", bound)
    # Basic composition over the values of one call: the vector's L1 sensitivity is
    # count·sensitivity, and Mironov's 2^-49·B term is paid once per value.
    scale = count * (sensitivity + bound * 2.0**-49) / epsilon
    if not _MIN_SCALE <= scale <= _MAX_SCALE:
        raise InvalidMechanism(f"noise scale {scale!r} is outside [2^-900, 2^900]")
    granularity = _power_of_two_at_least(scale)
    if not (granularity <= bound and scale < bound < _MAX_BOUND_OVER_SCALE * scale):
        raise InvalidMechanism(
            f"bound {bound!r} must be at least the granularity {granularity!r} and below "
            f"2^46 times the scale {scale!r}"
        )
    output_bound = math.floor(bound / granularity) * granularity
    return Snapping(scale, granularity, float(bound), float(output_bound))


def dp_pair_refusal(epsilon: float, sensitivity: float, max_batch: int) -> str | None:
    """Why a version's (epsilon, sensitivity) cannot be served, or None: checked when the
    version is registered (apps.registry.version_checks) rather than failing a prediction.
    The mechanism's limits only tighten as the batch grows, so one row and a full batch bound
    every call in between."""
    try:
        for count in (1, max_batch):
            snapping_parameters(epsilon=epsilon, sensitivity=sensitivity, count=count)
    except InvalidMechanism as exc:
        return str(exc)
    return None


def laplace_noise(scale: float, size: int) -> NDArray[np.float64]:
    """`size` independent Laplace(0, scale) samples from the operating system's CSPRNG.

    Inverse CDF, split in two: one random bit is the sign, and 53 random bits give an integer
    k in [1, 2^53 - 1], so u = k / 2^53 lies in the open interval (0, 1), exactly (k fits a
    double's significand), and the magnitude is -scale·ln(u). ln(0) cannot happen, and
    neither can a zero magnitude; a zero k is redrawn (probability 2^-53)."""
    if not (math.isfinite(scale) and scale > 0):
        raise InvalidMechanism(f"scale must be positive and finite, got {scale!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidMechanism(f"size must be a non-negative integer, got {size!r}")
    words = _random_words(size)
    magnitudes = words >> np.uint64(64 - _UNIFORM_BITS)
    while (zeros := np.flatnonzero(magnitudes == 0)).size:
        words[zeros] = _random_words(zeros.size)
        magnitudes[zeros] = words[zeros] >> np.uint64(64 - _UNIFORM_BITS)
    # The sign is the lowest bit, which the magnitude (the top 53 bits) does not use.
    negative = (words & np.uint64(1)).astype(bool)
    uniform = magnitudes.astype(np.float64) * 2.0**-_UNIFORM_BITS
    noise = -scale * np.log(uniform)
    return np.where(negative, -noise, noise)


def privatise(
    values: Any, *, epsilon: float, sensitivity: float, bound: float | None = None
) -> list[Any]:
    """`values` (a list of numbers, or nested lists such as per-class probabilities, or a
    numpy array) with snapped Laplace noise, as nested lists of floats of the same shape.

    Privacy accounting: `epsilon` is the privacy loss of the whole call, and `sensitivity` the
    most one value can change when one training record changes. n values released together
    have an L1 sensitivity of n·sensitivity, so each gets noise of scale
    n·(sensitivity + 2^-49·B)/epsilon, which for one value and the default bound is
    sensitivity/epsilon·(1 + 2^-13). Charging epsilon per call is then correct whatever the
    batch size; noise per value grows with the batch.

    Every returned value is a finite multiple of the granularity Λ within ±B, and never -0.0
    (its sign would tell which side of zero the unrounded value was). A finite value beyond
    ±B is clamped to B: that is part of the mechanism and is what makes it private.

    Raises NonFiniteOutput if any value is NaN, ±inf or beyond float range. Refused rather
    than clamped: such an output means a broken model, and a number made from it would look
    like an answer. The refusal itself is not noised, so it reveals that the model produced a
    non-finite value for this input; answering with garbage instead would hide a fault, and
    a model's NaN almost always comes from the input or the code, not from training data.
    Raises InvalidMechanism for bad parameters, TypeError for labels (bools, strings)."""
    if not is_numeric_output(values):
        if isinstance(values, np.ndarray | list | tuple) and len(values) == 0:
            return []
        raise TypeError("privatise takes numbers; class labels are returned unchanged")
    try:
        # An int beyond int64 makes an object array, and one beyond float range overflows here.
        array = np.asarray(values).astype(np.float64)
    except OverflowError as exc:
        raise NonFiniteOutput("the model returned a number beyond float range") from exc
    except ValueError as exc:
        raise TypeError("privatise takes numbers in a regular shape") from exc
    if not np.isfinite(array).all():
        raise NonFiniteOutput("the model returned NaN or an infinite value")
    parameters = snapping_parameters(
        epsilon=epsilon, sensitivity=sensitivity, count=int(array.size), bound=bound
    )
    noisy = snap(array, parameters)
    result: list[Any] = noisy.tolist()
    return result


def snap(array: NDArray[np.float64], parameters: Snapping) -> NDArray[np.float64]:
    """Mironov's snapping: clamp to ±B, add Laplace(λ) noise, round to the nearest multiple of
    Λ, clamp to the largest multiple of Λ within B. Both clamps and the rounding are exact in
    floating point (Λ is a power of two and |result/Λ| < 2^47)."""
    lam = parameters.granularity
    clamped = np.clip(array, -parameters.bound, parameters.bound)
    noisy = clamped + laplace_noise(parameters.scale, int(array.size)).reshape(array.shape)
    snapped = np.rint(noisy / lam) * lam
    # + 0.0 turns -0.0 into 0.0.
    result = np.clip(snapped, -parameters.output_bound, parameters.output_bound) + 0.0
    if not np.isfinite(result).all():  # cannot happen with validated parameters; fail closed
        raise NonFiniteOutput("the mechanism produced a non-finite value")
    return result


def is_numeric_output(values: Any, *, model: Any = None) -> bool:
    """Whether a model's output is numbers to noise (regression values, scores,
    probabilities) rather than class labels to return unchanged.

    True when `values` is non-empty and every leaf (through nested lists, tuples and numpy
    arrays) is an int or float, numpy's included. Bools, strings and other objects are
    labels, and so is any mix. Integer class labels look like numbers: pass the `model`,
    and the `predict` output of a scikit-learn classifier is always treated as labels."""
    if model is not None and _is_classifier(model):
        return False
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "iuf":
            return values.size > 0
        if values.dtype.kind != "O":
            return False
        values = values.tolist()
    if not isinstance(values, list | tuple):
        return False
    seen = False
    pending: list[Iterable[Any]] = [values]
    while pending:
        for item in pending.pop():
            kind = type(item)
            if kind is float or kind is int:  # the common case first: ~10x cheaper
                seen = True
            elif isinstance(item, list | tuple):
                pending.append(item)
            elif isinstance(item, np.ndarray):
                if item.dtype.kind not in "iufO":
                    return False
                pending.append(item.tolist())
            elif isinstance(item, bool | np.bool_) or not isinstance(
                item, int | float | np.integer | np.floating
            ):
                return False
            else:
                seen = True
    return seen


def _is_classifier(model: Any) -> bool:
    from sklearn.base import is_classifier

    try:
        return bool(is_classifier(model))
    except AttributeError:  # not a scikit-learn estimator: a fitted classifier has classes_
        return hasattr(model, "classes_")


def _random_words(count: int) -> NDArray[np.uint64]:
    # A writable copy: frombuffer over bytes is read-only, and redraws write into it.
    return np.frombuffer(os.urandom(8 * count), dtype="<u8").astype(np.uint64)


def _power_of_two_at_least(value: float) -> float:
    mantissa, exponent = math.frexp(value)  # value = mantissa·2^exponent, mantissa in [0.5, 1)
    return math.ldexp(1.0, exponent - 1 if mantissa == 0.5 else exponent)


def _require_positive_finite(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidMechanism(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise InvalidMechanism(f"{name} must be positive and finite, got {value!r}")
