"""Momentum indicators: RSI (Wilder), MACD, momentum (MOM) and rate of change (ROC).

Bit-exact with TA-Lib 0.8 (default compatibility, no unstable period). Each indicator comes as
``*_init`` / ``*_update`` (numba step over a float64 state array), a batch function (an njit loop
over ``*_update``) and a streaming class; the three give identical bits.

Inputs are expected finite: a NaN or inf enters the recurrences and keeps the outputs NaN.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from velocitas.core.errors import ConfigError
from velocitas.core.jit import kernel
from velocitas.core.models import FloatArray
from velocitas.indicators._validation import as_series, check_period
from velocitas.indicators.moving_average import (
    EMA_SEEN_SLOT,
    EMA_STATE_SIZE,
    ema_init,
    ema_update,
)

_NAN3 = (math.nan, math.nan, math.nan)

# --- RSI -----------------------------------------------------------------------------------
# State layout: [period, 1/period, seen prices (capped at period+1), previous price,
#                average gain, average loss].
# TA-Lib 0.8's TA_RSI: the first averages are the sums of the first `period` gains / losses
# times 1/period; then avg = (avg * (period-1) + today's) * (1/period). A window with neither a
# gain nor a loss (gain + loss == 0 exactly) reads 0, as TA-Lib 0.8 answers it.
_RSI_PERIOD, _RSI_INV, _RSI_SEEN, _RSI_PREV, _RSI_GAIN, _RSI_LOSS = 0, 1, 2, 3, 4, 5


def rsi_init(period: int = 14) -> FloatArray:
    """State for :func:`rsi_update`; raises ConfigError unless ``period >= 2``."""
    period = check_period("period", period, 2)
    state = np.zeros(6, dtype=np.float64)
    state[_RSI_PERIOD] = period
    state[_RSI_INV] = 1.0 / period
    return state


@kernel
def rsi_update(state: FloatArray, x: float) -> float:
    """Feed one price; RSI in [0, 100], NaN for the first ``period`` prices."""
    period = state[_RSI_PERIOD]
    inv_period = state[_RSI_INV]
    seen = state[_RSI_SEEN]
    change = x - state[_RSI_PREV]
    state[_RSI_PREV] = x
    if seen == 0.0:
        state[_RSI_SEEN] = 1.0
        return np.nan
    # Branch-free split as in TA-Lib: gain_delta - change is exactly the loss (or 0).
    gain_delta = change if change > 0.0 else 0.0
    gain = state[_RSI_GAIN]
    loss = state[_RSI_LOSS]
    if seen <= period:
        gain += gain_delta
        loss += gain_delta - change
        seen += 1.0
        state[_RSI_SEEN] = seen
        if seen <= period:
            state[_RSI_GAIN] = gain
            state[_RSI_LOSS] = loss
            return np.nan
        loss *= inv_period
        gain *= inv_period
    else:
        loss *= period - 1.0
        gain *= period - 1.0
        gain += gain_delta
        loss += gain_delta - change
        loss *= inv_period
        gain *= inv_period
    state[_RSI_GAIN] = gain
    state[_RSI_LOSS] = loss
    total = gain + loss
    if total > 0.0:
        return 100.0 * (gain / total)
    return 0.0


@njit(cache=True)
def _rsi_run(values: FloatArray, state: FloatArray) -> FloatArray:
    out = np.empty(values.shape[0], dtype=np.float64)
    for i in range(values.shape[0]):
        out[i] = rsi_update(state, values[i])
    return out


def rsi(values: FloatArray, period: int = 14) -> FloatArray:
    """Wilder's RSI in [0, 100]; NaN at indices < period (TA-Lib RSI)."""
    state = rsi_init(period)
    return _rsi_run(as_series(values), state)


class RSI:
    """Streaming Wilder RSI; NaN until ``period + 1`` prices came."""

    __slots__ = ("_state", "_value")

    def __init__(self, period: int = 14) -> None:
        self._state = rsi_init(period)
        self._value = math.nan

    def update(self, x: float) -> float:
        """Feed one price and return the RSI (NaN during warm-up)."""
        self._value = rsi_update(self._state, x)
        return self._value

    @property
    def value(self) -> float:
        """The last output (NaN before warm-up completes)."""
        return self._value

    @property
    def is_ready(self) -> bool:
        """True once ``period + 1`` prices have been fed."""
        return bool(self._state[_RSI_SEEN] > self._state[_RSI_PERIOD])


# --- MACD ----------------------------------------------------------------------------------
# State layout: [fast, slow, signal, seen (capped at slow), fast EMA state, slow EMA state,
#                signal EMA state] (each EMA state is moving_average's 5-slot layout).
# As TA-Lib's TA_MACD: the fast EMA is seeded with the SMA of the `fast` prices ending where the
# slow seed ends (index slow-1), not at index fast-1 as a standalone EMA would be; the signal
# is an EMA of the MACD line seeded with the SMA of its first `signal` values. All three outputs
# are NaN until index (slow-1) + (signal-1).
_MACD_FAST, _MACD_SLOW, _MACD_SIGNAL, _MACD_SEEN = 0, 1, 2, 3
_MACD_FAST_EMA = 4
_MACD_SLOW_EMA = _MACD_FAST_EMA + EMA_STATE_SIZE
_MACD_SIGNAL_EMA = _MACD_SLOW_EMA + EMA_STATE_SIZE
_MACD_SIZE = _MACD_SIGNAL_EMA + EMA_STATE_SIZE


def macd_init(fast: int = 12, slow: int = 26, signal: int = 9) -> FloatArray:
    """State for :func:`macd_update`; needs ``2 <= fast < slow`` and ``signal >= 1``."""
    fast = check_period("fast", fast, 2)
    slow = check_period("slow", slow, 3)
    signal = check_period("signal", signal, 1)
    if fast >= slow:
        raise ConfigError(f"fast must be < slow, was fast={fast} slow={slow}")
    state = np.zeros(_MACD_SIZE, dtype=np.float64)
    state[_MACD_FAST] = fast
    state[_MACD_SLOW] = slow
    state[_MACD_SIGNAL] = signal
    state[_MACD_FAST_EMA:_MACD_SLOW_EMA] = ema_init(fast)
    state[_MACD_SLOW_EMA:_MACD_SIGNAL_EMA] = ema_init(slow)
    state[_MACD_SIGNAL_EMA:_MACD_SIZE] = ema_init(signal)
    return state


@kernel
def macd_update(state: FloatArray, x: float) -> tuple[float, float, float]:
    """Feed one price; (macd line, signal, histogram), all NaN until slow+signal-1 prices."""
    seen = state[_MACD_SEEN]
    slow_ema = ema_update(state[_MACD_SLOW_EMA:_MACD_SIGNAL_EMA], x)
    fast_ema = np.nan
    # The fast EMA only starts at price index slow-fast, so that its seed ends at slow-1.
    if seen >= state[_MACD_SLOW] - state[_MACD_FAST]:
        fast_ema = ema_update(state[_MACD_FAST_EMA:_MACD_SLOW_EMA], x)
    if seen < state[_MACD_SLOW]:
        state[_MACD_SEEN] = seen + 1.0
    if np.isnan(slow_ema):
        return np.nan, np.nan, np.nan
    line = fast_ema - slow_ema
    signal = ema_update(state[_MACD_SIGNAL_EMA:_MACD_SIZE], line)
    if np.isnan(signal):
        return np.nan, np.nan, np.nan
    return line, signal, line - signal


@njit(cache=True)
def _macd_run(values: FloatArray, state: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    n = values.shape[0]
    line = np.empty(n, dtype=np.float64)
    signal = np.empty(n, dtype=np.float64)
    hist = np.empty(n, dtype=np.float64)
    for i in range(n):
        line[i], signal[i], hist[i] = macd_update(state, values[i])
    return line, signal, hist


def macd(
    values: FloatArray, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """MACD line, signal line and histogram (TA-Lib MACD); NaN before index slow+signal-2."""
    state = macd_init(fast, slow, signal)
    return _macd_run(as_series(values), state)


class MACD:
    """Streaming MACD; ``update`` returns (macd, signal, hist), NaNs during warm-up."""

    __slots__ = ("_state", "_value")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        self._state = macd_init(fast, slow, signal)
        self._value: tuple[float, float, float] = _NAN3

    def update(self, x: float) -> tuple[float, float, float]:
        """Feed one price and return (macd, signal, hist)."""
        self._value = macd_update(self._state, x)
        return self._value

    @property
    def value(self) -> tuple[float, float, float]:
        """The last output (NaNs before warm-up completes)."""
        return self._value

    @property
    def is_ready(self) -> bool:
        """True once slow + signal - 1 prices have been fed."""
        signal_seen = self._state[_MACD_SIGNAL_EMA + EMA_SEEN_SLOT]
        return bool(signal_seen >= self._state[_MACD_SIGNAL])


# --- MOM and ROC ---------------------------------------------------------------------------
# State layout (shared): [period, seen (capped at period + 1), write position, ring[period]].
# The ring holds the last `period` prices, so ring[pos] is price[t - period] before it is
# overwritten by price[t].
_LAG_PERIOD, _LAG_SEEN, _LAG_POS, _LAG_RING = 0, 1, 2, 3


def _lag_init(period: int) -> FloatArray:
    period = check_period("period", period, 1)
    state = np.zeros(_LAG_RING + period, dtype=np.float64)
    state[_LAG_PERIOD] = period
    return state


@kernel
def _lag_push(state: FloatArray, x: float) -> float:
    """Store x; return the price `period` updates ago, NaN while there is none."""
    period = state[_LAG_PERIOD]
    seen = state[_LAG_SEEN]
    pos = int(state[_LAG_POS])
    previous = state[_LAG_RING + pos] if seen >= period else np.nan
    state[_LAG_RING + pos] = x
    pos += 1
    state[_LAG_POS] = 0.0 if pos == int(period) else pos
    if seen <= period:
        state[_LAG_SEEN] = seen + 1.0
    return previous


def mom_init(period: int) -> FloatArray:
    """State for :func:`mom_update`; raises ConfigError unless ``period >= 1``."""
    return _lag_init(period)


@kernel
def mom_update(state: FloatArray, x: float) -> float:
    """Feed one price; price - price[t-period], NaN for the first ``period`` prices."""
    return x - _lag_push(state, x)


def roc_init(period: int) -> FloatArray:
    """State for :func:`roc_update`; raises ConfigError unless ``period >= 1``."""
    return _lag_init(period)


@kernel
def roc_update(state: FloatArray, x: float) -> float:
    """Feed one price; (price / price[t-period] - 1) * 100, 0 where that old price is 0."""
    previous = _lag_push(state, x)
    if np.isnan(previous):
        return np.nan
    if previous == 0.0:
        return 0.0  # TA-Lib's ROC answers 0 rather than dividing by zero
    return ((x / previous) - 1.0) * 100.0


@njit(cache=True)
def _mom_run(values: FloatArray, state: FloatArray) -> FloatArray:
    out = np.empty(values.shape[0], dtype=np.float64)
    for i in range(values.shape[0]):
        out[i] = mom_update(state, values[i])
    return out


@njit(cache=True)
def _roc_run(values: FloatArray, state: FloatArray) -> FloatArray:
    out = np.empty(values.shape[0], dtype=np.float64)
    for i in range(values.shape[0]):
        out[i] = roc_update(state, values[i])
    return out


def momentum(values: FloatArray, period: int) -> FloatArray:
    """price[t] - price[t-period]; NaN at indices < period (TA-Lib MOM)."""
    state = mom_init(period)
    return _mom_run(as_series(values), state)


def roc(values: FloatArray, period: int) -> FloatArray:
    """Rate of change in percent, (price[t]/price[t-period] - 1)*100 (TA-Lib ROC)."""
    state = roc_init(period)
    return _roc_run(as_series(values), state)


class Momentum:
    """Streaming momentum (TA-Lib MOM): price - price ``period`` updates ago."""

    __slots__ = ("_state", "_value")

    def __init__(self, period: int) -> None:
        self._state = mom_init(period)
        self._value = math.nan

    def update(self, x: float) -> float:
        """Feed one price and return the momentum (NaN during warm-up)."""
        self._value = mom_update(self._state, x)
        return self._value

    @property
    def value(self) -> float:
        """The last output (NaN before warm-up completes)."""
        return self._value

    @property
    def is_ready(self) -> bool:
        """True once ``period + 1`` prices have been fed."""
        return bool(self._state[_LAG_SEEN] > self._state[_LAG_PERIOD])


class ROC:
    """Streaming rate of change in percent (TA-Lib ROC)."""

    __slots__ = ("_state", "_value")

    def __init__(self, period: int) -> None:
        self._state = roc_init(period)
        self._value = math.nan

    def update(self, x: float) -> float:
        """Feed one price and return the rate of change (NaN during warm-up)."""
        self._value = roc_update(self._state, x)
        return self._value

    @property
    def value(self) -> float:
        """The last output (NaN before warm-up completes)."""
        return self._value

    @property
    def is_ready(self) -> bool:
        """True once ``period + 1`` prices have been fed."""
        return bool(self._state[_LAG_SEEN] > self._state[_LAG_PERIOD])
