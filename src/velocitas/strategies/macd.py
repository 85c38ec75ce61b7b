"""MACD: trade the MACD line crossing its signal line.

Signal rule, with hist_t = MACD_t - signal_t (TA-Lib's MACD: EMA(fast) - EMA(slow), signal an
EMA(signal) of it, seeded as TA-Lib seeds them):
    BUY ``position_size`` when flat and hist_{t-1} <= 0 < hist_t (MACD crosses above signal).
    SELL the whole position when long and hist_{t-1} >= 0 > hist_t.
    The first update with a histogram only records it. With shorting allowed the crosses
    reverse the position to +/- ``position_size``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from velocitas.core.errors import ConfigError
from velocitas.core.jit import kernel
from velocitas.core.models import FloatArray, IntArray
from velocitas.indicators import macd_init, macd_update
from velocitas.strategies._orders import reversal_order
from velocitas.strategies.base import BuiltinStrategy, concat_states
from velocitas.strategies.params import ParamSpec

KIND = 5


@kernel
def step(
    params: FloatArray,
    fstate: FloatArray,
    istate: IntArray,
    price: float,
    position: float,
    allow_short: bool,
) -> float:
    """One update; returns the signed order quantity (0.0: no order)."""
    last = fstate.shape[0] - 1  # the last slot holds the previous histogram (NaN at first)
    _line, _signal, hist = macd_update(fstate[:last], price)
    if np.isnan(hist):
        return 0.0
    prev = fstate[last]
    fstate[last] = hist
    if np.isnan(prev):
        return 0.0
    bullish = prev <= 0.0 and hist > 0.0
    bearish = prev >= 0.0 and hist < 0.0
    return reversal_order(bullish, bearish, position, params[3], allow_short)


class MACD(BuiltinStrategy):
    __doc__ = __doc__
    kind = KIND
    registry_name = "MACD"
    step = staticmethod(step)
    param_specs: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("fast", "int", 12, 2, 100_000, "updates in the fast EMA"),
        ParamSpec("slow", "int", 26, 2, 100_000, "updates in the slow EMA (> fast)"),
        ParamSpec("signal", "int", 9, 1, 100_000, "updates in the signal EMA"),
        ParamSpec("position_size", "float", 1.0, 1e-12, None, "order size in the base asset"),
    )

    @classmethod
    def _validate(cls, params: dict[str, Any]) -> None:
        if params["fast"] >= params["slow"]:
            raise ConfigError(
                f"MACD: fast must be < slow, was fast={params['fast']} slow={params['slow']}"
            )

    @classmethod
    def _pack(cls, params: dict[str, Any]) -> FloatArray:
        return np.array(
            [params["fast"], params["slow"], params["signal"], params["position_size"]],
            dtype=np.float64,
        )

    @classmethod
    def _init_state(cls, params: dict[str, Any]) -> tuple[FloatArray, IntArray]:
        macd_state = macd_init(int(params["fast"]), int(params["slow"]), int(params["signal"]))
        fstate = concat_states([macd_state, np.array([np.nan])])
        return fstate, np.zeros(1, dtype=np.int64)
