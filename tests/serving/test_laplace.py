"""The Laplace mechanism: the right distribution, from the OS's CSPRNG, never a non-finite
number, and snapped to a grid that hides the low bits of the true value."""

from __future__ import annotations

import math
import os
import random
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.linear_model import LinearRegression, LogisticRegression

from apps.serving.privacy.laplace import (
    InvalidMechanism,
    NonFiniteOutput,
    is_numeric_output,
    laplace_noise,
    privatise,
    snap,
    snapping_parameters,
)

SAMPLES = 400_000
# sqrt(n)·D exceeds 2.5 with probability about 7.5e-6 under the right distribution
# (Kolmogorov), and a wrong scale by 5% or a shift by 0.05·scale is far beyond it.
KS_LIMIT = 2.5 / math.sqrt(SAMPLES)


def words_of(*pairs: tuple[int, int]) -> bytes:
    """urandom bytes that laplace_noise reads as these (53-bit k, sign bit) pairs."""
    return b"".join(struct.pack("<Q", (k << 11) | sign) for k, sign in pairs)


@pytest.fixture
def fake_urandom(monkeypatch):  # type: ignore[no-untyped-def]
    """Replace the OS random source with queued bytes, recording every request."""
    queue: list[bytes] = []
    requests: list[int] = []

    def urandom(count: int) -> bytes:
        requests.append(count)
        chunk = queue.pop(0)
        assert len(chunk) == count
        return chunk

    monkeypatch.setattr(os, "urandom", urandom)
    return queue, requests


def test_noise_has_the_laplace_distribution():
    scale = 2.5
    noise = laplace_noise(scale, SAMPLES)
    assert noise.shape == (SAMPLES,) and noise.dtype == np.float64
    statistic = stats.kstest(noise, stats.laplace(scale=scale).cdf).statistic
    assert statistic < KS_LIMIT
    # The same test rejects a scale 5% off: the check has teeth.
    assert stats.kstest(noise, stats.laplace(scale=scale * 1.05).cdf).statistic > KS_LIMIT
    # Mean 0 (sd of the mean: sqrt(2)·scale/sqrt(n) ≈ 0.0056), variance 2·scale².
    assert abs(noise.mean()) < 0.04
    assert noise.var() == pytest.approx(2 * scale**2, rel=0.03)
    assert np.median(np.abs(noise)) == pytest.approx(scale * math.log(2), rel=0.02)


def test_snapped_outputs_have_the_rounded_laplace_distribution():
    parameters = snapping_parameters(epsilon=0.5, sensitivity=1.0)
    scale, step = parameters.scale, parameters.granularity
    true = 10.0  # halfway between two grid points (Λ = 4), the least convenient place
    out = snap(np.full(SAMPLES, true), parameters)
    # The exact law: P(out = jΛ) = F(jΛ + Λ/2 - x) - F(jΛ - Λ/2 - x), F the Laplace CDF.
    grid = np.arange(-60, 61) * step + round(true / step) * step
    law = stats.laplace(loc=true, scale=scale)
    probability = law.cdf(grid + step / 2) - law.cdf(grid - step / 2)
    frequency = np.array([(out == point).mean() for point in grid])
    assert frequency.sum() == pytest.approx(1.0)  # nothing off the grid
    # Each frequency's sd is at most 0.0008 here: 0.005 is over six of them.
    assert np.abs(frequency - probability).max() < 0.005
    mean = (grid * probability).sum()
    assert abs(out.mean() - mean) < 0.05 and mean == pytest.approx(true, abs=1e-9)
    assert out.var() == pytest.approx(((grid - mean) ** 2 * probability).sum(), rel=0.03)


def test_noise_comes_from_os_urandom_only(fake_urandom, monkeypatch):
    def forbidden(*_args, **_kwargs):
        raise AssertionError("a non-cryptographic generator was used")

    for module, name in [
        (random, "random"),
        (random, "getrandbits"),
        (np.random, "random"),
        (np.random, "laplace"),
        (np.random, "default_rng"),
    ]:
        monkeypatch.setattr(module, name, forbidden)
    queue, requests = fake_urandom
    pairs = [(1, 0), (2**52, 1), (2**53 - 1, 0), (123_456_789, 1)]
    queue.append(words_of(*pairs))
    noise = laplace_noise(3.0, len(pairs))
    assert requests == [8 * len(pairs)]
    expected = [(-1 if sign else 1) * -3.0 * math.log(k / 2**53) for k, sign in pairs]
    assert noise.tolist() == pytest.approx(expected, rel=1e-15)
    # The extremes of the open interval: u = 2^-53 and u = 1 - 2^-53.
    assert noise[0] == pytest.approx(3.0 * 53 * math.log(2))
    assert noise[2] > 0 and noise[2] == pytest.approx(3.0 * 2**-53)
    assert noise[1] == pytest.approx(-3.0 * math.log(2))


def test_a_zero_draw_is_redrawn_so_log_zero_never_happens(fake_urandom):
    queue, requests = fake_urandom
    queue += [words_of((5, 0), (0, 1), (7, 0)), words_of((0, 0)), words_of((9, 1))]
    noise = laplace_noise(1.0, 3)
    assert requests == [24, 8, 8]
    assert noise.tolist() == pytest.approx(
        [-math.log(5 / 2**53), math.log(9 / 2**53), -math.log(7 / 2**53)]
    )


def test_privatise_is_exact_for_known_random_bytes(fake_urandom):
    queue, _requests = fake_urandom
    # One value, epsilon 1, sensitivity 1: λ = 1 + 2^-13, Λ = 2.
    queue.append(words_of((2**52, 0)))  # u = 1/2: noise +λ·ln 2 ≈ 0.693
    assert privatise([10.4], epsilon=1.0, sensitivity=1.0) == [12.0]  # 11.09… → 12
    queue.append(words_of((2**52, 1)))  # noise -0.693
    assert privatise([10.4], epsilon=1.0, sensitivity=1.0) == [10.0]  # 9.71… → 10


def test_parameters_follow_scale_sensitivity_over_epsilon():
    one = snapping_parameters(epsilon=0.5, sensitivity=2.0)
    assert one.scale == pytest.approx(4.0, rel=2e-4)
    assert one.granularity == 8.0  # the smallest power of two ≥ 4.0005
    assert one.bound == 2.0 * 2**36 and one.output_bound == one.bound
    # A batch of n values shares the call's epsilon: n times the scale.
    assert snapping_parameters(epsilon=0.5, sensitivity=2.0, count=10).scale == pytest.approx(
        10 * one.scale
    )
    small = snapping_parameters(epsilon=4.0, sensitivity=1.0, bound=1000.0)
    assert small.granularity == 0.5 and small.output_bound == 1000.0
    odd = snapping_parameters(epsilon=1.0, sensitivity=1.0, bound=1001.0)
    assert odd.granularity == 2.0 and odd.output_bound == 1000.0


@pytest.mark.parametrize(
    "arguments",
    [
        {"epsilon": 0.0, "sensitivity": 1.0},
        {"epsilon": -1.0, "sensitivity": 1.0},
        {"epsilon": math.nan, "sensitivity": 1.0},
        {"epsilon": math.inf, "sensitivity": 1.0},
        {"epsilon": 1.0, "sensitivity": 0.0},
        {"epsilon": 1.0, "sensitivity": -2.0},
        {"epsilon": 1.0, "sensitivity": math.nan},
        {"epsilon": 1.0, "sensitivity": math.inf},
        {"epsilon": True, "sensitivity": 1.0},
        {"epsilon": 1.0, "sensitivity": 1.0, "bound": 0.5},  # below Λ = 2
        {"epsilon": 1.0, "sensitivity": 1.0, "bound": 2.0**60},  # beyond 2^46·λ
        {"epsilon": 1.0, "sensitivity": 1.0, "bound": math.inf},
        {"epsilon": 1e-300, "sensitivity": 1e300},  # scale overflows
    ],
)
def test_bad_parameters_are_refused(arguments):
    with pytest.raises(InvalidMechanism):
        privatise([1.0, 2.0], **arguments)


@pytest.mark.parametrize(
    "values", [[1.0, math.nan], [math.inf], [-math.inf, 2.0], [10**400], np.array([np.nan])]
)
def test_non_finite_model_outputs_are_refused_not_returned(values):
    with pytest.raises(NonFiniteOutput):
        privatise(values, epsilon=1.0, sensitivity=1.0)


@pytest.mark.parametrize("values", [["cat"], [True, False], [1.0, "x"], [1, True], [[1.0], [2, 3]]])
def test_labels_and_ragged_outputs_are_not_privatised(values):
    with pytest.raises(TypeError):
        privatise(values, epsilon=1.0, sensitivity=1.0)


def test_shape_is_kept_and_huge_values_are_clamped():
    out = privatise(
        [[0.2, 0.8], [1e300, -1e300], [2**70, -5]], epsilon=1.0, sensitivity=1.0, bound=1e6
    )
    parameters = snapping_parameters(epsilon=1.0, sensitivity=1.0, count=6, bound=1e6)
    assert [len(row) for row in out] == [2, 2, 2]
    # 1e300 is clamped to B = 1e6 before the noise (|noise| ≤ 36.7·λ) and after it.
    reach = 37 * parameters.scale
    assert parameters.output_bound - reach <= out[1][0] <= parameters.output_bound
    assert -parameters.output_bound <= out[1][1] <= -parameters.output_bound + reach
    assert parameters.output_bound - reach <= out[2][0] <= parameters.output_bound
    assert privatise([], epsilon=1.0, sensitivity=1.0) == []


def test_outputs_lie_on_the_grid_within_the_bound_and_never_negative_zero():
    parameters = snapping_parameters(epsilon=2.0, sensitivity=0.3, bound=40.0)
    true = np.array([0.0, 0.1, 1 / 3, -39.9, 39.99, 5e-324] * 20_000)
    out = snap(true, parameters)
    steps = out / parameters.granularity
    assert np.array_equal(steps, np.rint(steps))
    assert np.abs(out).max() <= parameters.output_bound <= parameters.bound
    assert not np.signbit(out[out == 0]).any()
    # The same grid whatever the true value: 0.0 and 0.1 share every possible output, so the
    # low bits of an output say nothing about which of them it came from.
    near_zero = set(out[0::6].tolist()) | set(out[1::6].tolist())
    assert all((value / parameters.granularity).is_integer() for value in near_zero)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=8),
    epsilon=st.floats(min_value=1e-4, max_value=1e3),
    sensitivity=st.floats(min_value=1e-200, max_value=1e200),
)
def test_outputs_are_always_finite_on_the_grid(values, epsilon, sensitivity):
    out = privatise(values, epsilon=epsilon, sensitivity=sensitivity)
    parameters = snapping_parameters(epsilon=epsilon, sensitivity=sensitivity, count=len(values))
    assert all(math.isfinite(value) for value in out)
    assert all(abs(value) <= parameters.output_bound for value in out)
    assert all((value / parameters.granularity).is_integer() for value in out)
    assert not any(value == 0 and math.copysign(1, value) < 0 for value in out)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=4),
    epsilon=st.floats(min_value=0, allow_nan=False, exclude_min=True),
    sensitivity=st.floats(min_value=0, allow_nan=False, exclude_min=True),
    bound=st.none() | st.floats(min_value=0, allow_nan=False, exclude_min=True),
)
def test_extreme_parameters_are_refused_or_give_finite_outputs(values, epsilon, sensitivity, bound):
    try:
        out = privatise(values, epsilon=epsilon, sensitivity=sensitivity, bound=bound)
    except InvalidMechanism:
        return
    assert all(math.isfinite(value) for value in out)


def test_which_outputs_are_numbers_to_noise():
    for values in ([1.5, 2], np.array([3, 4]), [[0.1, 0.9]], np.array([[0.2, 0.8]]), [np.int64(1)]):
        assert is_numeric_output(values), values
    for values in (
        [],
        ["cat", "dog"],
        [True, False],
        np.array([True]),
        np.array(["a"]),
        [1.0, "x"],
        [1, True],
        [None],
        [1 + 2j],
        "12",
        3.0,
    ):
        assert not is_numeric_output(values), values


def test_a_classifiers_integer_labels_are_labels():
    features, labels = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    classifier = LogisticRegression().fit(features, labels)
    predicted = classifier.predict(features)
    assert predicted.dtype.kind == "i" and is_numeric_output(predicted)
    assert not is_numeric_output(predicted, model=classifier)
    # Its probabilities are scores; the caller asks without the model for those.
    assert is_numeric_output(classifier.predict_proba(features))
    regressor = LinearRegression().fit(features, labels)
    assert is_numeric_output(regressor.predict(features), model=regressor)
    assert is_numeric_output([1.0], model=object())
