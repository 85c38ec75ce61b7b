"""One compiled entry point for every built-in's step, selected by its ``kind`` code.

The engine's batch kernel calls ``builtin_step`` per tick; the branch on a constant ``kind`` is
perfectly predicted, and one kernel (cached on disk) serves all six built-ins.
"""

from __future__ import annotations

from velocitas.core.jit import kernel
from velocitas.core.models import FloatArray, IntArray
from velocitas.strategies import bollinger_bands, macd, mean_reversion, momentum, rsi, sma_crossover


@kernel
def builtin_step(
    kind: int,
    params: FloatArray,
    fstate: FloatArray,
    istate: IntArray,
    price: float,
    position: float,
    allow_short: bool,
) -> float:
    """Signed order quantity of built-in ``kind`` for one update (0.0: no order)."""
    if kind == sma_crossover.KIND:
        return sma_crossover.step(params, fstate, istate, price, position, allow_short)
    if kind == momentum.KIND:
        return momentum.step(params, fstate, istate, price, position, allow_short)
    if kind == mean_reversion.KIND:
        return mean_reversion.step(params, fstate, istate, price, position, allow_short)
    if kind == rsi.KIND:
        return rsi.step(params, fstate, istate, price, position, allow_short)
    if kind == bollinger_bands.KIND:
        return bollinger_bands.step(params, fstate, istate, price, position, allow_short)
    if kind == macd.KIND:
        return macd.step(params, fstate, istate, price, position, allow_short)
    return 0.0
