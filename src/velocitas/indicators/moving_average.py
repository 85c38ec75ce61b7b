"""Moving averages: simple (SMA) and exponential (EMA), bit-exact with TA-Lib 0.8.

Every indicator comes in three forms that give identical bits:
``*_init`` / ``*_update`` (a float64 state array and an O(1) numba step, callable from other
numba kernels), a batch function over an array (an njit loop over ``*_update``) and a
streaming class (holds the state array and calls ``*_update``).

Inputs are expected finite: a NaN or inf enters the running sums and keeps the outputs NaN.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from velocitas.core.jit import kernel
from velocitas.core.models import FloatArray
from velocitas.indicators._fma import fma
from velocitas.indicators._validation import as_series, check_period

# --- SMA -----------------------------------------------------------------------------------
# State layout: [period, seen (capped at period), write position, running sum, ring[period]].
# The ring holds the last `period` inputs; the sum is updated as TA-Lib's TA_SMA does it (add
# the new value, output sum / period, subtract the value leaving), so the bits match TA-Lib.
_SMA_PERIOD, _SMA_SEEN, _SMA_POS, _SMA_SUM, _SMA_RING = 0, 1, 2, 3, 4


def sma_init(period: int) -> FloatArray:
    """State for :func:`sma_update`; raises ConfigError unless ``period >= 1``."""
    period = check_period("period", period, 1)
    state = np.zeros(_SMA_RING + period, dtype=np.float64)
    state[_SMA_PERIOD] = period
    return state


@kernel
def sma_update(state: FloatArray, x: float) -> float:
    """Feed one value; the mean of the last ``period`` values, NaN for the first period-1."""
    period = state[_SMA_PERIOD]
    seen = state[_SMA_SEEN]
    pos = int(state[_SMA_POS])
    if seen == period:
        # The value leaving the window: TA-Lib subtracts it right after the previous output,
        # which is the same sequence of additions as subtracting it here.
        state[_SMA_SUM] -= state[_SMA_RING + pos]
    state[_SMA_SUM] += x
    state[_SMA_RING + pos] = x
    pos += 1
    state[_SMA_POS] = 0.0 if pos == int(period) else pos
    if seen < period:
        seen += 1.0
        state[_SMA_SEEN] = seen
        if seen < period:
            return np.nan
    return state[_SMA_SUM] / period


@njit(cache=True)
def _sma_run(values: FloatArray, state: FloatArray) -> FloatArray:
    out = np.empty(values.shape[0], dtype=np.float64)
    for i in range(values.shape[0]):
        out[i] = sma_update(state, values[i])
    return out


def sma(values: FloatArray, period: int) -> FloatArray:
    """Simple moving average over ``period`` values; NaN at indices < period-1 (TA-Lib SMA)."""
    state = sma_init(period)
    return _sma_run(as_series(values), state)


class SMA:
    """Streaming simple moving average; ``update`` returns NaN until ``period`` values came."""

    __slots__ = ("_state", "_value")

    def __init__(self, period: int) -> None:
        self._state = sma_init(period)
        self._value = math.nan

    def update(self, x: float) -> float:
        """Feed one value and return the current average (NaN during warm-up)."""
        self._value = sma_update(self._state, x)
        return self._value

    @property
    def value(self) -> float:
        """The last output (NaN before warm-up completes)."""
        return self._value

    @property
    def is_ready(self) -> bool:
        """True once ``period`` values have been fed."""
        return bool(self._state[_SMA_SEEN] >= self._state[_SMA_PERIOD])


# --- EMA -----------------------------------------------------------------------------------
# State layout: [period, k = 2 / (period + 1), seen (capped at period), seed sum, last EMA].
# Seeded with the SMA of the first `period` values, then ema = fma(x - ema, k, ema), the
# operation TA-Lib 0.8 performs (one rounding); period 1 is a plain copy, as in TA-Lib.
_EMA_PERIOD, _EMA_K, _EMA_SEEN, _EMA_SUM, _EMA_VALUE = 0, 1, 2, 3, 4
EMA_STATE_SIZE = 5  # for states that embed EMAs (MACD)
EMA_SEEN_SLOT = _EMA_SEEN


def ema_init(period: int) -> FloatArray:
    """State for :func:`ema_update`; raises ConfigError unless ``period >= 1``."""
    period = check_period("period", period, 1)
    state = np.zeros(EMA_STATE_SIZE, dtype=np.float64)
    state[_EMA_PERIOD] = period
    state[_EMA_K] = 2.0 / (period + 1)
    state[_EMA_VALUE] = np.nan
    return state


@kernel
def ema_update(state: FloatArray, x: float) -> float:
    """Feed one value; the EMA, NaN for the first period-1 values (seed: their SMA)."""
    period = state[_EMA_PERIOD]
    seen = state[_EMA_SEEN]
    if seen < period:
        state[_EMA_SUM] += x
        seen += 1.0
        state[_EMA_SEEN] = seen
        if seen < period:
            return np.nan
        value = state[_EMA_SUM] / period
    elif period == 1.0:
        value = x
    else:
        previous = state[_EMA_VALUE]
        value = fma(x - previous, state[_EMA_K], previous)
    state[_EMA_VALUE] = value
    return value


@njit(cache=True)
def _ema_run(values: FloatArray, state: FloatArray) -> FloatArray:
    out = np.empty(values.shape[0], dtype=np.float64)
    for i in range(values.shape[0]):
        out[i] = ema_update(state, values[i])
    return out


def ema(values: FloatArray, period: int) -> FloatArray:
    """Exponential moving average, k = 2/(period+1); NaN at indices < period-1 (TA-Lib EMA)."""
    state = ema_init(period)
    return _ema_run(as_series(values), state)


class EMA:
    """Streaming exponential moving average; NaN until ``period`` values came (SMA seed)."""

    __slots__ = ("_state", "_value")

    def __init__(self, period: int) -> None:
        self._state = ema_init(period)
        self._value = math.nan

    def update(self, x: float) -> float:
        """Feed one value and return the current EMA (NaN during warm-up)."""
        self._value = ema_update(self._state, x)
        return self._value

    @property
    def value(self) -> float:
        """The last output (NaN before warm-up completes)."""
        return self._value

    @property
    def is_ready(self) -> bool:
        """True once ``period`` values have been fed."""
        return bool(self._state[_EMA_SEEN] >= self._state[_EMA_PERIOD])
