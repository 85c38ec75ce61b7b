"""The per-(coin, strategy) account: position, cash, average entry, realised P&L, fees.

The state is a small float64 array so compiled kernels update it in place and it can be shipped
between processes. Every path (built-in batch kernel, custom Python strategy, live engine) calls
the same ``apply_fill``, so their accounting cannot disagree.

Conventions: ``realized`` is net of every fee paid so far (entry fees of an open position
included), so ``cash + position * last_price - initial_cash == realized + unrealized``.
A fill that reduces a position realises ``closed_qty * (price - avg_entry)`` (sign-adjusted for
shorts); a fill that crosses through zero closes the round trip and opens a new position at the
fill price; the crossing fill's whole fee is charged to the closing round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from velocitas.analysis.metrics import round_trip_update
from velocitas.core.jit import kernel
from velocitas.core.models import FloatArray

POSITION = 0
CASH = 1
AVG_ENTRY = 2
REALIZED = 3
FEES = 4
FILLS = 5
TRIP_PNL = 6
REJECTED = 7
IGNORED = 8
INITIAL_CASH = 9
GROSS_REALIZED = 10
LEDGER_SIZE = 11

# A position this small relative to the quantities involved is float residue of closing it.
_FLAT_EPS = 1e-12


def ledger_init(initial_cash: float) -> FloatArray:
    """A fresh, flat account holding ``initial_cash`` of the quote asset."""
    state = np.zeros(LEDGER_SIZE, dtype=np.float64)
    state[CASH] = initial_cash
    state[INITIAL_CASH] = initial_cash
    return state


@kernel
def apply_fill(ledger: FloatArray, trips: FloatArray, qty: float, price: float, fee: float) -> None:
    """Book one fill of signed ``qty`` at ``price`` paying ``fee`` (quote asset) from cash."""
    pos = ledger[POSITION]
    ledger[CASH] -= qty * price + fee
    ledger[FEES] += fee
    ledger[REALIZED] -= fee
    ledger[TRIP_PNL] -= fee
    ledger[FILLS] += 1.0
    if pos == 0.0 or (pos > 0.0) == (qty > 0.0):
        new = pos + qty
        ledger[AVG_ENTRY] = (ledger[AVG_ENTRY] * abs(pos) + price * abs(qty)) / abs(new)
        ledger[POSITION] = new
        return
    closed = min(abs(qty), abs(pos))
    direction = 1.0 if pos > 0.0 else -1.0
    pnl = closed * (price - ledger[AVG_ENTRY]) * direction
    ledger[REALIZED] += pnl
    ledger[GROSS_REALIZED] += pnl
    ledger[TRIP_PNL] += pnl
    new = pos + qty
    if abs(new) <= _FLAT_EPS * max(abs(pos), abs(qty)):
        new = 0.0
    if new != 0.0 and (new > 0.0) == (pos > 0.0):
        ledger[POSITION] = new  # partial reduction: average entry unchanged
        return
    round_trip_update(trips, ledger[TRIP_PNL])
    ledger[TRIP_PNL] = 0.0
    ledger[POSITION] = new
    ledger[AVG_ENTRY] = price if new != 0.0 else 0.0


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    """A read-only copy of an account at one instant, valued at ``last_price``."""

    position: float
    cash: float
    avg_entry: float
    realized_pnl: float
    unrealized_pnl: float
    fees_paid: float
    fills: int
    rejected_orders: int
    ignored_signals: int
    equity: float
    last_price: float

    @property
    def total_pnl(self) -> float:
        return self.realized_pnl + self.unrealized_pnl

    @classmethod
    def of(cls, ledger: FloatArray, last_price: float) -> LedgerSnapshot:
        pos = float(ledger[POSITION])
        valued = pos * last_price if pos != 0.0 else 0.0
        return cls(
            position=pos,
            cash=float(ledger[CASH]),
            avg_entry=float(ledger[AVG_ENTRY]),
            realized_pnl=float(ledger[REALIZED]),
            unrealized_pnl=(last_price - float(ledger[AVG_ENTRY])) * pos if pos != 0.0 else 0.0,
            fees_paid=float(ledger[FEES]),
            fills=int(ledger[FILLS]),
            rejected_orders=int(ledger[REJECTED]),
            ignored_signals=int(ledger[IGNORED]),
            equity=float(ledger[CASH]) + valued,
            last_price=last_price,
        )
