"""probes.trend: least-squares growth and days until full."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.trend import DEFAULT_MIN_SPAN_S, days_until_full, growth_per_day

DAY = 86400.0
GIB = float(1 << 30)

epochs = st.floats(min_value=1.0e9, max_value=2.0e9)
gaps = st.lists(st.floats(min_value=60.0, max_value=DAY), min_size=1, max_size=60)
intercepts = st.floats(min_value=0.0, max_value=1.0e13)
slopes = st.floats(min_value=-1.0e12, max_value=1.0e12)


def _times(t0: float, steps: list[float]) -> list[float]:
    times = [t0]
    for g in steps:
        times.append(times[-1] + g)
    return times


def _linear(t0: float, steps: list[float], intercept: float, per_day: float) -> list[tuple[float, float]]:
    return [(t, intercept + per_day * (t - t0) / DAY) for t in _times(t0, steps)]


def _close(a: float, b: float, scale: float) -> bool:
    # Values reach 1e13 while slopes may be tiny: the error floor follows the value scale.
    return math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-9 * scale + 1e-6)


@settings(max_examples=300)
@given(epochs, gaps, intercepts, slopes)
def test_exact_linear_data_gives_exact_slope(t0: float, steps: list[float], b: float, m: float) -> None:
    samples = _linear(t0, steps, b, m)
    g = growth_per_day(samples, min_span=0)
    assert g is not None
    assert _close(g, m, b + abs(m))


@settings(max_examples=200)
@given(epochs, gaps, intercepts, slopes, st.floats(min_value=-1.0e12, max_value=1.0e12))
def test_constant_offset_does_not_change_slope(
    t0: float, steps: list[float], b: float, m: float, offset: float
) -> None:
    samples = _linear(t0, steps, b, m)
    # Add noise so the property is not only checked on perfectly straight lines.
    rng = random.Random(int(t0))
    noisy = [(t, v + rng.uniform(-1e6, 1e6)) for t, v in samples]
    shifted = [(t, v + offset) for t, v in noisy]
    g1 = growth_per_day(noisy, min_span=0)
    g2 = growth_per_day(shifted, min_span=0)
    assert g1 is not None and g2 is not None
    assert _close(g1, g2, b + abs(m) + abs(offset) + 1e6)


@given(epochs, gaps, intercepts, slopes, st.randoms())
def test_order_of_samples_does_not_matter(
    t0: float, steps: list[float], b: float, m: float, rnd: random.Random
) -> None:
    samples = _linear(t0, steps, b, m)
    shuffled = samples[:]
    rnd.shuffle(shuffled)
    g1 = growth_per_day(samples, min_span=0)
    g2 = growth_per_day(shuffled, min_span=0)
    assert g1 is not None and g2 is not None
    assert _close(g1, g2, b + abs(m))


@given(
    epochs,
    gaps,
    st.lists(st.floats(min_value=0.0, max_value=1.0e13), min_size=61, max_size=61),
    st.floats(min_value=1.0e13, max_value=2.0e13),
)
def test_shrinking_or_flat_usage_never_gives_days(
    t0: float, steps: list[float], values: list[float], total: float
) -> None:
    times = _times(t0, steps)
    # Non-increasing in time: the fitted slope cannot be positive.
    shrinking = sorted(values[: len(times)], reverse=True)
    samples = list(zip(times, shrinking, strict=True))
    assert days_until_full(samples, shrinking[-1], total, min_span=0) is None
    g = growth_per_day(samples, min_span=0)
    assert g is None or g <= 1e-9 * max(values)


@settings(max_examples=200)
@given(
    epochs,
    gaps,
    st.floats(min_value=1.0e-6, max_value=1.0),
    st.floats(min_value=0.0, max_value=0.99),
    st.floats(min_value=1.0e9, max_value=1.0e14),
)
def test_days_until_full_is_headroom_over_growth(
    t0: float, steps: list[float], growth_share: float, fill: float, total: float
) -> None:
    # Growth as a share of the size per day: below ~1e-6 the daily change of a value this large
    # would vanish in float rounding, and nobody plans capacity a million days ahead.
    per_day = total * growth_share
    current = total * fill
    times = _times(t0, steps)
    samples = [(t, current - per_day * (times[-1] - t) / DAY) for t in times]
    days = days_until_full(samples, current, total, min_span=0)
    assert days is not None
    assert math.isclose(days, (total - current) / per_day, rel_tol=1e-6)


def test_one_gib_per_day_on_100_gib() -> None:
    samples = [(1.7e9 + h * 3600.0, 40 * GIB - (48 - h) / 24 * GIB) for h in range(49)]
    assert growth_per_day(samples) == pytest.approx(GIB, rel=1e-12)
    assert days_until_full(samples, 40 * GIB, 100 * GIB) == pytest.approx(60.0, rel=1e-12)


def test_too_few_points() -> None:
    assert growth_per_day([]) is None
    assert growth_per_day([(1.7e9, 5.0)]) is None
    assert days_until_full([(1.7e9, 5.0)], 5.0, 10.0) is None


def test_span_below_minimum_is_not_a_trend() -> None:
    short = [(1.7e9, 0.0), (1.7e9 + DEFAULT_MIN_SPAN_S - 1, 1e9)]
    assert growth_per_day(short) is None
    assert growth_per_day(short, min_span=60) is not None
    long = [(1.7e9, 0.0), (1.7e9 + DEFAULT_MIN_SPAN_S, 1e9)]
    assert growth_per_day(long) == pytest.approx(1e9 * 24)
    assert growth_per_day(long, min_span=2 * DEFAULT_MIN_SPAN_S) is None


def test_identical_timestamps_are_not_a_trend() -> None:
    assert growth_per_day([(1.7e9, 0.0), (1.7e9, 1e9), (1.7e9, 2e9)], min_span=0) is None


def test_non_finite_points_are_ignored() -> None:
    clean = [(1.7e9 + h * 3600.0, h * 100.0) for h in range(5)]
    dirty = [*clean, (1.7e9 + 9 * 3600.0, math.nan), (math.inf, 1.0), (1.7e9, math.inf)]
    assert growth_per_day(dirty) == pytest.approx(growth_per_day(clean))
    assert growth_per_day(clean) == pytest.approx(2400.0)


def test_already_full_is_zero_even_without_trend() -> None:
    assert days_until_full([], 100.0, 100.0) == 0.0
    assert days_until_full([(1.7e9, 200.0), (1.7e9 + DAY, 101.0)], 101.0, 100.0) == 0.0


def test_growth_that_is_zero_gives_none() -> None:
    flat = [(1.7e9 + h * 3600.0, 5e9) for h in range(10)]
    assert growth_per_day(flat) == 0.0
    assert days_until_full(flat, 5e9, 1e10) is None
