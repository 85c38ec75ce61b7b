"""MeanReversion: fade large deviations from the moving average, exit at the mean.

Signal rule, with z_t = (price_t - SMA_t) / STD_t over ``period`` updates (population standard
deviation, as TA-Lib's STDDEV; no signal while STD_t == 0):
    BUY ``position_size`` when flat and z_t < -deviation_threshold.
    SELL the whole position when long and z_t >= 0 (price back at or above the mean).
    With shorting allowed: SELL ``position_size`` when flat and z_t > deviation_threshold,
    BUY it back when short and z_t <= 0.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from velocitas.core.jit import kernel
from velocitas.core.models import FloatArray, IntArray
from velocitas.indicators import sma_init, sma_update, stddev_init, stddev_update
from velocitas.strategies._orders import entry_exit_order
from velocitas.strategies.base import BuiltinStrategy, concat_states
from velocitas.strategies.params import ParamSpec

KIND = 2


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
    split = int(params[3])
    mean = sma_update(fstate[:split], price)
    std = stddev_update(fstate[split:], price)
    if np.isnan(mean) or np.isnan(std) or std == 0.0:
        return 0.0
    z = (price - mean) / std
    threshold = params[1]
    return entry_exit_order(
        z < -threshold, z >= 0.0, z > threshold, z <= 0.0, position, params[2], allow_short
    )


class MeanReversion(BuiltinStrategy):
    __doc__ = __doc__
    kind = KIND
    registry_name = "MeanReversion"
    step = staticmethod(step)
    param_specs: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("period", "int", 20, 2, 100_000, "updates in the mean and deviation window"),
        ParamSpec(
            "deviation_threshold", "float", 2.0, 0.0, 100.0, "entry distance in standard deviations"
        ),
        ParamSpec("position_size", "float", 1.0, 1e-12, None, "order size in the base asset"),
    )

    @classmethod
    def _pack(cls, params: dict[str, Any]) -> FloatArray:
        split = len(sma_init(int(params["period"])))
        return np.array(
            [params["period"], params["deviation_threshold"], params["position_size"], split],
            dtype=np.float64,
        )

    @classmethod
    def _init_state(cls, params: dict[str, Any]) -> tuple[FloatArray, IntArray]:
        period = int(params["period"])
        fstate = concat_states([sma_init(period), stddev_init(period)])
        return fstate, np.zeros(1, dtype=np.int64)
