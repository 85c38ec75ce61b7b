"""Rolling population variance over a ring buffer, as TA-Lib 0.8 computes it (private helper).

Shared by STDDEV, Bollinger Bands and realised volatility in ``volatility.py``.

TA-Lib 0.8 (issues #118 and #243) no longer computes ``mean(x^2) - mean(x)^2`` on raw running
sums, which for prices near 1e5 loses ~8 digits to cancellation. It keeps the sums of
``x - shift`` and ``(x - shift)^2`` for a shift near the window, and re-anchors the shift with
an exact two-pass over the window (the ring buffer here) when the variance has become small
against the sums it is extracted from, when a removed value dwarfs the remaining sum, or every
32 * period updates (so an update is amortised O(1)). After a re-anchor, a variance below
1e-12 of the mean squared deviation is rounding noise and becomes exactly 0, so a window of
identical values has variance 0. Every operation below follows TA-Lib's order so that the bits
match.

Window layout (a float64 array, embedded in the callers' states):
    [period, 1/period, seen (capped at period), write position, shift, sum(x - shift),
     sum((x - shift)^2), updates left before a forced re-anchor, sum(x), ring[period]]
"""

from __future__ import annotations

import numpy as np

from velocitas.core.jit import kernel
from velocitas.core.models import FloatArray

_PERIOD, _INV, _SEEN, _POS, _SHIFT, _TOTAL1, _TOTAL2, _BARS, _SUM, _RING = range(10)
_REANCHOR_EVERY = 32  # windows between forced re-anchors (TA-Lib's constant)
_STALE_RATIO = 0.000001  # re-anchor when variance < this * mean squared deviation
_OUTLIER_RATIO = 1000000.0  # ... or when a removed squared deviation exceeds this * the sum
_NOISE_RATIO = 0.000000000001  # after re-anchoring, variance below this * msd is exactly 0


def window_size(period: int) -> int:
    """Number of float64 slots a window over ``period`` values takes."""
    return _RING + period


def window_init(period: int) -> FloatArray:
    """A fresh window over ``period`` (>= 2, validated by the caller) values."""
    window = np.zeros(window_size(period), dtype=np.float64)
    window[_PERIOD] = period
    window[_INV] = 1.0 / period
    window[_BARS] = _REANCHOR_EVERY * period
    return window


def window_seen(window: FloatArray) -> float:
    """How many values the window holds (capped at its period)."""
    return float(window[_SEEN])


@kernel
def window_push(window: FloatArray, x: float) -> tuple[float, float]:
    """Add x; return (mean, population variance) of the last ``period`` values, NaN until full.

    The mean is TA-Lib's SMA (plain running sum / period); the variance is TA-Lib's VAR.
    """
    period = window[_PERIOD]
    n = int(period)
    inv_period = window[_INV]
    seen = window[_SEEN]
    pos = int(window[_POS])
    if seen == 0.0:
        window[_SHIFT] = x  # TA-Lib anchors the first shift on the first window value
    shift = window[_SHIFT]
    window[_RING + pos] = x
    pos += 1
    if pos == n:
        pos = 0
    window[_POS] = pos
    window[_SUM] += x
    deviation = x - shift
    window[_TOTAL1] += deviation
    deviation *= deviation
    window[_TOTAL2] += deviation
    if seen < period:
        seen += 1.0
        window[_SEEN] = seen
        if seen < period:
            return np.nan, np.nan

    mean1 = window[_TOTAL1] * inv_period
    variance = window[_TOTAL2] * inv_period - mean1 * mean1
    mean = window[_SUM] / period

    # Remove the oldest value (now at `pos`), preparing the next window.
    oldest = window[_RING + pos]
    window[_SUM] -= oldest
    deviation = oldest - shift
    window[_TOTAL1] -= deviation
    deviation *= deviation
    window[_TOTAL2] -= deviation
    bars = window[_BARS] - 1.0
    total2 = window[_TOTAL2]
    if (
        variance < _STALE_RATIO * (total2 * inv_period)
        or deviation > _OUTLIER_RATIO * total2
        or bars <= 0.0
    ):
        bars = _REANCHOR_EVERY * period
        variance = _reanchor(window, pos, n, inv_period)
    window[_BARS] = bars
    return mean, variance


@kernel
def _reanchor(window: FloatArray, oldest_pos: int, n: int, inv_period: float) -> float:
    """Re-anchor the shift on the window mean (exact two-pass); return the fresh variance."""
    total = 0.0
    for j in range(n):
        total += window[_RING + (oldest_pos + j) % n]
    shift = total * inv_period
    total1 = 0.0
    total2 = 0.0
    for j in range(n):
        deviation = window[_RING + (oldest_pos + j) % n] - shift
        total1 += deviation
        deviation *= deviation
        total2 += deviation
    mean1 = total1 * inv_period
    variance = total2 * inv_period - mean1 * mean1
    if variance < _NOISE_RATIO * (total2 * inv_period):
        variance = 0.0
    # The oldest value leaves under the new shift, as on the ordinary path.
    deviation = window[_RING + oldest_pos] - shift
    total1 -= deviation
    deviation *= deviation
    total2 -= deviation
    window[_SHIFT] = shift
    window[_TOTAL1] = total1
    window[_TOTAL2] = total2
    return variance
