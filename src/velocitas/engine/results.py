"""What a run leaves behind: per-account and portfolio figures, fills and equity curves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from velocitas.analysis.metrics import Metrics
from velocitas.engine.ledger import LedgerSnapshot


@dataclass(frozen=True, slots=True)
class AccountResult:
    """One (coin, strategy) account at the end of a run.

    ``fills`` holds the fill log columns: ``index`` (update number of the coin), ``ts``
    (timestamp ms), ``qty`` (signed), ``price``, ``fee``, ``cash_after``, ``position_after``.
    """

    strategy_id: str
    strategy: str
    coin: str
    params: dict[str, Any]
    metrics: Metrics
    ledger: LedgerSnapshot
    fills: dict[str, np.ndarray]
    equity_curve: list[tuple[int, float]]
    error: str | None = None

    def trades(self) -> list[dict[str, Any]]:
        """Fills oldest first, as the CLI and the API print them."""
        f = self.fills
        return [
            {
                "timestamp": ts,
                "side": "BUY" if qty > 0 else "SELL",
                "price": price,
                "quantity": abs(qty),
                "fee": fee,
            }
            for ts, qty, price, fee in zip(
                f["ts"].tolist(),
                f["qty"].tolist(),
                f["price"].tolist(),
                f["fee"].tolist(),
                strict=True,
            )
        ]


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """Every account plus the portfolio (the sum of all accounts, marked in merged time order).

    ``totals`` are sums over the accounts in registration order (so they equal the per-account
    figures added up exactly); ``portfolio`` metrics come from the merged equity curve.
    """

    accounts: list[AccountResult]
    portfolio: Metrics
    totals: dict[str, float]
    portfolio_curve: list[tuple[int, float]]
    updates: int
    elapsed_s: float = 0.0
    coins: list[str] = field(default_factory=list)

    def account(self, strategy_id: str) -> AccountResult:
        for a in self.accounts:
            if a.strategy_id == strategy_id:
                return a
        raise KeyError(strategy_id)
