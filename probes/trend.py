"""Growth trends from metric history: pure functions, no I/O.

Used by the host probe for "days until the disk is full"; usable for anything that
grows towards a fixed limit (table spaces, queue sizes, log partitions).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

SECONDS_PER_DAY = 86400.0
DEFAULT_MIN_SPAN_S = 3600.0
"""Less than an hour of history is dominated by noise (a log rotation, a temp file)."""


def growth_per_day(
    samples: Iterable[tuple[float, float]], min_span: float = DEFAULT_MIN_SPAN_S
) -> float | None:
    """Least-squares slope of (epoch seconds, value) samples, in value units per day.

    None with fewer than two usable points or when the samples span less than `min_span`
    seconds. Non-finite points are ignored (a store may hold NaN for a failed reading).
    Order does not matter.
    """
    points = [(float(t), float(v)) for t, v in samples if math.isfinite(t) and math.isfinite(v)]
    if len(points) < 2:
        return None
    times = [t for t, _ in points]
    span = max(times) - min(times)
    if span <= 0 or span < min_span:
        return None
    n = len(points)
    # Centring first: epoch seconds (~1.7e9) squared would lose the slope in rounding.
    t_mean = math.fsum(times) / n
    v_mean = math.fsum(v for _, v in points) / n
    sxx = math.fsum((t - t_mean) ** 2 for t in times)
    if sxx <= 0:
        return None
    sxy = math.fsum((t - t_mean) * (v - v_mean) for t, v in points)
    return sxy / sxx * SECONDS_PER_DAY


def days_until_full(
    samples: Iterable[tuple[float, float]],
    current_used: float,
    total: float,
    min_span: float = DEFAULT_MIN_SPAN_S,
) -> float | None:
    """Days until `current_used` reaches `total` at the samples' growth rate.

    `samples` should already include the current reading. 0 when already full; None when
    the usage is not growing or the growth is not computable.
    """
    if current_used >= total:
        return 0.0
    growth = growth_per_day(samples, min_span)
    if growth is None or growth <= 0:
        return None
    return (total - current_used) / growth
