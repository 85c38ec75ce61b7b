"""Order sizing shared by the built-ins: turn a bullish/bearish reading into an order quantity.

Quantities are signed: > 0 buys, < 0 sells, 0 means no order. ``position`` is the filled
position; the built-ins trade only from flat or out of a whole position, so exact float
comparison with 0.0 is intended (a position closed by selling all of it is exactly 0.0).
"""

from __future__ import annotations

from velocitas.core.jit import kernel


@kernel
def reversal_order(
    bullish: bool, bearish: bool, position: float, size: float, allow_short: bool
) -> float:
    """Long-only: buy ``size`` from flat on bullish, sell the whole long on bearish.

    With shorting: bullish takes any position to +size, bearish takes it to -size.
    """
    if bullish:
        if position == 0.0:
            return size
        if position < 0.0 and allow_short:
            return size - position
        return 0.0
    if bearish:
        if position > 0.0:
            return -(position + size) if allow_short else -position
        if position == 0.0 and allow_short:
            return -size
    return 0.0


@kernel
def entry_exit_order(
    enter_long: bool,
    exit_long: bool,
    enter_short: bool,
    exit_short: bool,
    position: float,
    size: float,
    allow_short: bool,
) -> float:
    """Enter from flat, exit to flat (no reversal in one order)."""
    if position == 0.0:
        if enter_long:
            return size
        if enter_short and allow_short:
            return -size
        return 0.0
    if position > 0.0 and exit_long:
        return -position
    if position < 0.0 and exit_short:
        return -position
    return 0.0
