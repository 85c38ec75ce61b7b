"""Momentum: trade in the direction of the rate of change over ``lookback`` updates.

Signal rule, with ROC_t = (price_t / price_{t-lookback} - 1) * 100 (TA-Lib's ROC, in percent)
and the threshold given as a fraction (0.01 = 1 %):
    BUY ``position_size`` when flat and ROC_t > 100 * momentum_threshold.
    SELL the whole position when long and ROC_t < -100 * momentum_threshold.
    With shorting allowed the same readings reverse the position to +/- ``position_size``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from velocitas.core.jit import kernel
from velocitas.core.models import FloatArray, IntArray
from velocitas.indicators import roc_init, roc_update
from velocitas.strategies._orders import reversal_order
from velocitas.strategies.base import BuiltinStrategy
from velocitas.strategies.params import ParamSpec

KIND = 1


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
    roc = roc_update(fstate, price)
    if np.isnan(roc):
        return 0.0
    threshold = params[1] * 100.0
    return reversal_order(roc > threshold, roc < -threshold, position, params[2], allow_short)


class Momentum(BuiltinStrategy):
    __doc__ = __doc__
    kind = KIND
    registry_name = "Momentum"
    step = staticmethod(step)
    param_specs: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("lookback", "int", 20, 1, 100_000, "updates between the two prices compared"),
        ParamSpec(
            "momentum_threshold", "float", 0.01, 0.0, 10.0, "rate of change to act on, fraction"
        ),
        ParamSpec("position_size", "float", 1.0, 1e-12, None, "order size in the base asset"),
    )

    @classmethod
    def _pack(cls, params: dict[str, Any]) -> FloatArray:
        return np.array(
            [params["lookback"], params["momentum_threshold"], params["position_size"]],
            dtype=np.float64,
        )

    @classmethod
    def _init_state(cls, params: dict[str, Any]) -> tuple[FloatArray, IntArray]:
        return roc_init(int(params["lookback"])), np.zeros(1, dtype=np.int64)
