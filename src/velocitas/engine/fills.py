"""The fill model: when and at what price an order executes, and the fill log it leaves.

* ``fill="next"`` (default): a signal produced on update *t* fills at the price of the first
  later update of the same coin whose timestamp is >= t's timestamp + ``latency_ms`` (no
  look-ahead). ``fill="close"``: it fills at update *t*'s own price at once (for comparison with
  libraries that trade on the close).
* Slippage moves the price against the order: buys at ``p * (1 + slippage_bps / 1e4)``, sells
  at ``p * (1 - slippage_bps / 1e4)``. The fee is ``|qty| * fill_price * fee_bps / 1e4`` in the
  quote asset (default 10 bps, Binance spot taker).
* Long-only (default): a sell is clipped to the position held; a sell while flat is rejected.
  Any buy whose cost plus fee exceeds the cash is rejected (cash never goes negative).
  Rejections are counted in the ledger.
* At most one order is pending per (coin, strategy): a signal produced while one is pending is
  ignored and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from velocitas.core.errors import ConfigError
from velocitas.core.jit import kernel
from velocitas.core.models import FloatArray, IntArray
from velocitas.engine.ledger import CASH, POSITION, REJECTED, apply_fill

# Execution config as the kernels read it.
C_SLIPPAGE = 0
C_FEE = 1
C_ALLOW_SHORT = 2
C_FILL_CLOSE = 3
C_LATENCY_MS = 4
C_SIZE = 5

# Pending order: signed quantity (0.0 = none) and the earliest timestamp it may fill at.
P_QTY = 0
P_NOT_BEFORE = 1


@dataclass(frozen=True, slots=True)
class ExecutionConfig:
    """How orders execute and how much each account starts with.

    ``capital`` is the starting cash of every (coin, strategy) account, in the quote asset.
    """

    fill: Literal["next", "close"] = "next"
    latency_ms: int = 0
    slippage_bps: float = 0.0
    fee_bps: float = 10.0
    capital: float = 1_000_000.0
    allow_short: bool = False

    def __post_init__(self) -> None:
        if self.fill not in ("next", "close"):
            raise ConfigError(f"fill must be 'next' or 'close', was {self.fill!r}")
        if self.latency_ms < 0:
            raise ConfigError(f"latency_ms must be >= 0, was {self.latency_ms}")
        for name in ("slippage_bps", "fee_bps"):
            value = getattr(self, name)
            if not (0.0 <= value < 10_000.0):
                raise ConfigError(f"{name} must be in [0, 10000), was {value}")
        if not (self.capital > 0.0 and np.isfinite(self.capital)):
            raise ConfigError(f"capital must be a positive number, was {self.capital}")

    def as_array(self) -> FloatArray:
        cfg = np.zeros(C_SIZE, dtype=np.float64)
        cfg[C_SLIPPAGE] = self.slippage_bps / 1e4
        cfg[C_FEE] = self.fee_bps / 1e4
        cfg[C_ALLOW_SHORT] = 1.0 if self.allow_short else 0.0
        cfg[C_FILL_CLOSE] = 1.0 if self.fill == "close" else 0.0
        cfg[C_LATENCY_MS] = float(self.latency_ms)
        return cfg


class FillLog:
    """Growable columnar log of fills for one account (amortised O(1) append)."""

    __slots__ = ("cash_after", "count", "fee", "index", "position_after", "price", "qty", "ts")

    def __init__(self, capacity: int = 64) -> None:
        self.count = 0
        self.index: IntArray = np.zeros(capacity, dtype=np.int64)
        self.ts: IntArray = np.zeros(capacity, dtype=np.int64)
        self.qty: FloatArray = np.zeros(capacity, dtype=np.float64)
        self.price: FloatArray = np.zeros(capacity, dtype=np.float64)
        self.fee: FloatArray = np.zeros(capacity, dtype=np.float64)
        self.cash_after: FloatArray = np.zeros(capacity, dtype=np.float64)
        self.position_after: FloatArray = np.zeros(capacity, dtype=np.float64)

    @property
    def capacity(self) -> int:
        return int(self.index.shape[0])

    def reserve(self, extra: int) -> None:
        """Make room for at least ``extra`` more fills."""
        need = self.count + extra
        if need <= self.capacity:
            return
        new_cap = max(need, 2 * self.capacity)
        for name in self.__slots__:
            if name == "count":
                continue
            old = getattr(self, name)
            grown = np.zeros(new_cap, dtype=old.dtype)
            grown[: self.count] = old[: self.count]
            setattr(self, name, grown)

    def columns(self) -> dict[str, np.ndarray]:
        """The filled part of every column (views)."""
        n = self.count
        return {name: getattr(self, name)[:n] for name in self.__slots__ if name != "count"}


@kernel
def execute_order(
    ledger: FloatArray,
    trips: FloatArray,
    cfg: FloatArray,
    qty: float,
    market_price: float,
    tick_index: int,
    timestamp_ms: int,
    log_index: np.ndarray,
    log_ts: np.ndarray,
    log_qty: FloatArray,
    log_price: FloatArray,
    log_fee: FloatArray,
    log_cash: FloatArray,
    log_pos: FloatArray,
    n: int,
) -> int:
    """Fill signed ``qty`` at ``market_price`` under the rules above; returns the new log size.

    The caller guarantees room for one more entry in the log arrays.
    """
    if qty > 0.0:
        price = market_price * (1.0 + cfg[C_SLIPPAGE])
    else:
        price = market_price * (1.0 - cfg[C_SLIPPAGE])
    if qty < 0.0 and cfg[C_ALLOW_SHORT] == 0.0:
        held = ledger[POSITION]
        if held <= 0.0:
            ledger[REJECTED] += 1.0
            return n
        qty = max(qty, -held)
    fee = abs(qty) * price * cfg[C_FEE]
    if qty > 0.0 and qty * price + fee > ledger[CASH]:
        ledger[REJECTED] += 1.0
        return n
    apply_fill(ledger, trips, qty, price, fee)
    log_index[n] = tick_index
    log_ts[n] = timestamp_ms
    log_qty[n] = qty
    log_price[n] = price
    log_fee[n] = fee
    log_cash[n] = ledger[CASH]
    log_pos[n] = ledger[POSITION]
    return n + 1
