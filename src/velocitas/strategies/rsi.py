"""RSI: buy oversold, sell overbought, on Wilder's Relative Strength Index.

Signal rule, with RSI_t over ``period`` updates (Wilder smoothing, as TA-Lib's RSI):
    BUY ``position_size`` when flat and RSI_t < lower_bound.
    SELL the whole position when long and RSI_t > upper_bound.
    With shorting allowed the same readings reverse the position to +/- ``position_size``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from velocitas.core.errors import ConfigError
from velocitas.core.jit import kernel
from velocitas.core.models import FloatArray, IntArray
from velocitas.indicators import rsi_init, rsi_update
from velocitas.strategies._orders import reversal_order
from velocitas.strategies.base import BuiltinStrategy
from velocitas.strategies.params import ParamSpec

KIND = 3


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
    value = rsi_update(fstate, price)
    if np.isnan(value):
        return 0.0
    return reversal_order(value < params[1], value > params[2], position, params[3], allow_short)


class RSI(BuiltinStrategy):
    __doc__ = __doc__
    kind = KIND
    registry_name = "RSI"
    step = staticmethod(step)
    param_specs: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("period", "int", 14, 2, 100_000, "updates in Wilder's smoothing"),
        ParamSpec("lower_bound", "float", 30.0, 0.0, 100.0, "oversold level: buy below it"),
        ParamSpec("upper_bound", "float", 70.0, 0.0, 100.0, "overbought level: sell above it"),
        ParamSpec("position_size", "float", 1.0, 1e-12, None, "order size in the base asset"),
    )

    @classmethod
    def _validate(cls, params: dict[str, Any]) -> None:
        if params["lower_bound"] >= params["upper_bound"]:
            raise ConfigError(
                "RSI: lower_bound must be < upper_bound, was "
                f"lower_bound={params['lower_bound']} upper_bound={params['upper_bound']}"
            )

    @classmethod
    def _pack(cls, params: dict[str, Any]) -> FloatArray:
        return np.array(
            [
                params["period"],
                params["lower_bound"],
                params["upper_bound"],
                params["position_size"],
            ],
            dtype=np.float64,
        )

    @classmethod
    def _init_state(cls, params: dict[str, Any]) -> tuple[FloatArray, IntArray]:
        return rsi_init(int(params["period"])), np.zeros(1, dtype=np.int64)
