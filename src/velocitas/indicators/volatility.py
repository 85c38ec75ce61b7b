"""Volatility indicators: rolling standard deviation, Bollinger Bands, realised volatility.

All three use the population variance of TA-Lib 0.8 (``_variance.py``), so STDDEV and BBANDS
(SMA middle band) are bit-exact with TA-Lib and a window of identical values gives exactly 0.
Each comes as ``*_init`` / ``*_update`` (numba step over a float64 state array), a batch
function (an njit loop over ``*_update``) and a streaming class, all giving identical bits.

Inputs are expected finite (and positive for realised volatility): a NaN or inf enters the
running sums and keeps the outputs NaN.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from velocitas.core.jit import kernel
from velocitas.core.models import FloatArray
from velocitas.indicators._validation import as_series, check_finite, check_period
from velocitas.indicators._variance import window_init, window_push, window_seen

_NAN3 = (math.nan, math.nan, math.nan)

# --- STDDEV --------------------------------------------------------------------------------
# State layout: the variance window of _variance.py over `period` values.


def stddev_init(period: int) -> FloatArray:
    """State for :func:`stddev_update`; raises ConfigError unless ``period >= 2``."""
    return window_init(check_period("period", period, 2))


@kernel
def stddev_update(state: FloatArray, x: float) -> float:
    """Feed one value; population std of the last ``period`` values, NaN for period-1 values."""
    _mean, variance = window_push(state, x)
    return np.sqrt(variance)


@njit(cache=True)
def _stddev_run(values: FloatArray, state: FloatArray) -> FloatArray:
    out = np.empty(values.shape[0], dtype=np.float64)
    for i in range(values.shape[0]):
        out[i] = stddev_update(state, values[i])
    return out


def stddev(values: FloatArray, period: int) -> FloatArray:
    """Rolling population standard deviation (TA-Lib STDDEV, nbdev=1); NaN before period-1."""
    state = stddev_init(period)
    return _stddev_run(as_series(values), state)


class StdDev:
    """Streaming population standard deviation over ``period`` values."""

    __slots__ = ("_state", "_value")

    def __init__(self, period: int) -> None:
        self._state = stddev_init(period)
        self._value = math.nan

    def update(self, x: float) -> float:
        """Feed one value and return the standard deviation (NaN during warm-up)."""
        self._value = stddev_update(self._state, x)
        return self._value

    @property
    def value(self) -> float:
        """The last output (NaN before warm-up completes)."""
        return self._value

    @property
    def is_ready(self) -> bool:
        """True once ``period`` values have been fed."""
        return bool(window_seen(self._state) >= self._state[0])


# --- Bollinger Bands -----------------------------------------------------------------------
# State layout: [std_dev multiplier, variance window over `period` values].
# middle = SMA, upper/lower = middle +/- std_dev * population std (TA-Lib BBANDS, matype SMA).
_BB_MULTIPLIER, _BB_WINDOW = 0, 1


def bbands_init(period: int = 20, std_dev: float = 2.0) -> FloatArray:
    """State for :func:`bbands_update`; needs ``period >= 2`` and a finite ``std_dev >= 0``."""
    period = check_period("period", period, 2)
    multiplier = check_finite("std_dev", std_dev, minimum=0.0)
    return np.concatenate((np.array([multiplier]), window_init(period)))


@kernel
def bbands_update(state: FloatArray, x: float) -> tuple[float, float, float]:
    """Feed one price; (upper, middle, lower), NaNs for the first period-1 prices."""
    middle, variance = window_push(state[_BB_WINDOW:], x)
    if np.isnan(middle):
        return np.nan, np.nan, np.nan
    deviation = np.sqrt(variance) if variance != 0.0 else 0.0
    width = deviation * state[_BB_MULTIPLIER]
    return middle + width, middle, middle - width


@njit(cache=True)
def _bbands_run(values: FloatArray, state: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    n = values.shape[0]
    upper = np.empty(n, dtype=np.float64)
    middle = np.empty(n, dtype=np.float64)
    lower = np.empty(n, dtype=np.float64)
    for i in range(n):
        upper[i], middle[i], lower[i] = bbands_update(state, values[i])
    return upper, middle, lower


def bollinger_bands(
    values: FloatArray, period: int = 20, std_dev: float = 2.0
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(upper, middle, lower) Bollinger Bands (TA-Lib BBANDS, SMA); NaN before period-1."""
    state = bbands_init(period, std_dev)
    return _bbands_run(as_series(values), state)


class BollingerBands:
    """Streaming Bollinger Bands; ``update`` returns (upper, middle, lower)."""

    __slots__ = ("_state", "_value")

    def __init__(self, period: int = 20, std_dev: float = 2.0) -> None:
        self._state = bbands_init(period, std_dev)
        self._value: tuple[float, float, float] = _NAN3

    def update(self, x: float) -> tuple[float, float, float]:
        """Feed one price and return (upper, middle, lower) (NaNs during warm-up)."""
        self._value = bbands_update(self._state, x)
        return self._value

    @property
    def value(self) -> tuple[float, float, float]:
        """The last output (NaNs before warm-up completes)."""
        return self._value

    @property
    def is_ready(self) -> bool:
        """True once ``period`` prices have been fed."""
        window = self._state[_BB_WINDOW:]
        return bool(window_seen(window) >= window[0])


# --- Realised volatility -------------------------------------------------------------------
# State layout: [sqrt(periods_per_year), has previous price (0/1), previous price,
#                variance window over `period` log returns].
# Output: population std of the last `period` log returns ln(p_t / p_{t-1}), times
# sqrt(periods_per_year); the first value needs period + 1 prices.
_RV_SQRT_PPY, _RV_HAS_PREV, _RV_PREV, _RV_WINDOW = 0, 1, 2, 3


def realized_vol_init(period: int, periods_per_year: float) -> FloatArray:
    """State for :func:`realized_vol_update`; needs ``period >= 2``, ``periods_per_year > 0``."""
    period = check_period("period", period, 2)
    per_year = check_finite("periods_per_year", periods_per_year, minimum=0.0, inclusive=False)
    header = np.array([math.sqrt(per_year), 0.0, 0.0])
    return np.concatenate((header, window_init(period)))


@kernel
def realized_vol_update(state: FloatArray, x: float) -> float:
    """Feed one price; annualised std of the last ``period`` log returns, NaN for ``period``."""
    if state[_RV_HAS_PREV] == 0.0:
        state[_RV_HAS_PREV] = 1.0
        state[_RV_PREV] = x
        return np.nan
    previous = state[_RV_PREV]
    state[_RV_PREV] = x
    log_return = np.log(x / previous) if x > 0.0 and previous > 0.0 else np.nan
    _mean, variance = window_push(state[_RV_WINDOW:], log_return)
    return np.sqrt(variance) * state[_RV_SQRT_PPY]


@njit(cache=True)
def _realized_vol_run(values: FloatArray, state: FloatArray) -> FloatArray:
    out = np.empty(values.shape[0], dtype=np.float64)
    for i in range(values.shape[0]):
        out[i] = realized_vol_update(state, values[i])
    return out


def realized_volatility(values: FloatArray, period: int, periods_per_year: float) -> FloatArray:
    """Annualised realised volatility of prices; NaN at indices < period.

    Equals TA-Lib ``STDDEV(log returns, period) * sqrt(periods_per_year)``, shifted by one
    index so that output t uses the returns ending at price t. A non-positive price gives a NaN
    return, which keeps the output NaN from then on.
    """
    state = realized_vol_init(period, periods_per_year)
    return _realized_vol_run(as_series(values), state)


class RealizedVolatility:
    """Streaming annualised realised volatility over ``period`` log returns."""

    __slots__ = ("_state", "_value")

    def __init__(self, period: int, periods_per_year: float) -> None:
        self._state = realized_vol_init(period, periods_per_year)
        self._value = math.nan

    def update(self, x: float) -> float:
        """Feed one price and return the realised volatility (NaN during warm-up)."""
        self._value = realized_vol_update(self._state, x)
        return self._value

    @property
    def value(self) -> float:
        """The last output (NaN before warm-up completes)."""
        return self._value

    @property
    def is_ready(self) -> bool:
        """True once ``period + 1`` prices have been fed."""
        window = self._state[_RV_WINDOW:]
        return bool(window_seen(window) >= window[0])
