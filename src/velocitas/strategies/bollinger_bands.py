"""BollingerBands: buy below the lower band, sell above the upper band.

Signal rule, with SMA_t +/- std_dev * STD_t over ``period`` updates (population standard
deviation, as TA-Lib's BBANDS with an SMA middle band):
    BUY ``position_size`` when flat and price_t < lower_t.
    SELL the whole position when long and price_t > upper_t.
    With shorting allowed the same readings reverse the position to +/- ``position_size``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from velocitas.core.jit import kernel
from velocitas.core.models import FloatArray, IntArray
from velocitas.indicators import bbands_init, bbands_update
from velocitas.strategies._orders import reversal_order
from velocitas.strategies.base import BuiltinStrategy
from velocitas.strategies.params import ParamSpec

KIND = 4


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
    upper, middle, lower = bbands_update(fstate, price)
    if np.isnan(middle):
        return 0.0
    return reversal_order(price < lower, price > upper, position, params[2], allow_short)


class BollingerBands(BuiltinStrategy):
    __doc__ = __doc__
    kind = KIND
    registry_name = "BollingerBands"
    step = staticmethod(step)
    param_specs: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("period", "int", 20, 2, 100_000, "updates in the band window"),
        ParamSpec("std_dev", "float", 2.0, 0.0, 100.0, "band width in standard deviations"),
        ParamSpec("position_size", "float", 1.0, 1e-12, None, "order size in the base asset"),
    )

    @classmethod
    def _pack(cls, params: dict[str, Any]) -> FloatArray:
        return np.array(
            [params["period"], params["std_dev"], params["position_size"]], dtype=np.float64
        )

    @classmethod
    def _init_state(cls, params: dict[str, Any]) -> tuple[FloatArray, IntArray]:
        state = bbands_init(int(params["period"]), float(params["std_dev"]))
        return state, np.zeros(1, dtype=np.int64)
