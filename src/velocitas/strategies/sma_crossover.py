"""SMA_Crossover: trend following on two simple moving averages, compared exactly.

Signal rule (evaluated on every update once ``slow_period`` prices have been seen):
    cmp_t = sign(SMA_fast_t - SMA_slow_t), computed exactly (see below).
    BUY ``position_size`` when cmp_{t-1} <= 0 and cmp_t > 0 (fast crosses above slow) and the
    position is flat. SELL the whole position when cmp_{t-1} >= 0 and cmp_t < 0.
    With shorting allowed the crosses reverse the position to +/- ``position_size``.

Exactness: exchange prices sit on a decimal tick grid, so two SMAs are often exactly equal and
float rounding in running sums would decide the crossover at random. Prices are quantised to
1e-8 (the finest Binance tick), window sums are kept in int64 (exact), and the sign of
``fast_sum * slow - slow_sum * fast`` is computed in integers; equal averages are a tie (cmp 0),
never noise.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from velocitas.core.errors import ConfigError
from velocitas.core.jit import kernel
from velocitas.core.models import FloatArray, IntArray
from velocitas.strategies._orders import reversal_order
from velocitas.strategies.base import BuiltinStrategy
from velocitas.strategies.params import ParamSpec

KIND = 0
PRICE_SCALE = 1e8
_NOT_WARM = 2
# int state: [fast, slow, count, head, fast_sum, slow_sum, prev_cmp, ring buffer (slow) ...]
_HEADER = 7
# Above this |difference| the float estimate decides; below it the int64 product is exact.
_EXACT_LIMIT = 1e18


@kernel
def quantize(price: float) -> np.int64:
    """Price on the 1e-8 grid as an integer (exact for prices with <= 8 decimals)."""
    return np.int64(np.round(price * PRICE_SCALE))


@kernel
def compare_means(fast_sum: np.int64, fast: np.int64, slow_sum: np.int64, slow: np.int64) -> int:
    """Exact sign of fast_sum/fast - slow_sum/slow for int64 sums."""
    approx = fast_sum / fast - slow_sum / slow
    if abs(approx) * fast * slow > _EXACT_LIMIT:
        return 1 if approx > 0 else -1
    # |true difference| < ~1e18 here, so the int64 result is exact even if the two products
    # wrap around: two's complement arithmetic is exact modulo 2**64.
    diff = fast_sum * slow - slow_sum * fast
    if diff > 0:
        return 1
    if diff < 0:
        return -1
    return 0


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
    fast = istate[0]
    slow = istate[1]
    count = istate[2]
    head = istate[3]
    q = quantize(price)
    if count >= slow:
        istate[5] -= istate[_HEADER + head]
    if count >= fast:
        istate[4] -= istate[_HEADER + (head - fast) % slow]
    istate[_HEADER + head] = q
    istate[4] += q
    istate[5] += q
    istate[3] = (head + 1) % slow
    if count < slow:
        count += 1
        istate[2] = count
    if count < slow:
        return 0.0
    cmp = compare_means(istate[4], fast, istate[5], slow)
    prev = istate[6]
    istate[6] = cmp
    if prev == _NOT_WARM:
        return 0.0
    bullish = prev <= 0 and cmp > 0
    bearish = prev >= 0 and cmp < 0
    return reversal_order(bullish, bearish, position, params[2], allow_short)


class SMA_Crossover(BuiltinStrategy):
    __doc__ = __doc__
    kind = KIND
    registry_name = "SMA_Crossover"
    step = staticmethod(step)
    param_specs: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("fast_period", "int", 10, 1, 100_000, "bars in the fast SMA"),
        ParamSpec("slow_period", "int", 30, 2, 100_000, "bars in the slow SMA (> fast_period)"),
        ParamSpec("position_size", "float", 1.0, 1e-12, None, "order size in the base asset"),
    )

    @classmethod
    def _validate(cls, params: dict[str, Any]) -> None:
        if params["fast_period"] >= params["slow_period"]:
            raise ConfigError(
                "SMA_Crossover: fast_period must be < slow_period, was "
                f"fast_period={params['fast_period']} slow_period={params['slow_period']}"
            )

    @classmethod
    def _pack(cls, params: dict[str, Any]) -> FloatArray:
        return np.array(
            [params["fast_period"], params["slow_period"], params["position_size"]],
            dtype=np.float64,
        )

    @classmethod
    def _init_state(cls, params: dict[str, Any]) -> tuple[FloatArray, IntArray]:
        istate = np.zeros(_HEADER + int(params["slow_period"]), dtype=np.int64)
        istate[0] = params["fast_period"]
        istate[1] = params["slow_period"]
        istate[6] = _NOT_WARM
        return np.zeros(1, dtype=np.float64), istate
