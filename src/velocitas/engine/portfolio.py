"""The portfolio: all accounts together, marked in one merged time order.

Owned by a single writer (the backtest runner, or the live engine's main process). It takes each
batch's market data plus every account's :class:`AccountUpdate` and computes the equity of the
sum of the accounts after each update of any traded coin. Fills of one update are applied in
account registration order, so the result does not depend on which worker ran which account.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from velocitas.analysis.metrics import (
    E_INITIAL,
    E_LAST,
    E_PEAK,
    Metrics,
    equity_init,
    round_trip_init,
    summarize,
)
from velocitas.core.models import CoinSeries, Dataset
from velocitas.engine.marking import EquityCurve, mark_portfolio
from velocitas.engine.packed import (
    F_ACCOUNT,
    F_FEE,
    F_INDEX,
    F_POSITION_AFTER,
    F_PRICE,
    F_QTY,
    UPDATES_BEFORE,
    PackedUpdate,
)


class Portfolio:
    """Global equity and metrics over ``coins``; starts with ``capital`` in cash."""

    def __init__(self, coins: Sequence[str], capital: float) -> None:
        self.coins = list(coins)
        self._index = {c: i for i, c in enumerate(self.coins)}
        n = len(self.coins)
        self.cash = np.array([capital], dtype=np.float64)
        self.positions = np.zeros(n, dtype=np.float64)
        self.last_price = np.full(n, np.nan)
        self.first_price = np.full(n, np.nan)
        self.equity = equity_init(capital)
        self.curve = EquityCurve()
        self._all_priced = False

    def add_coin(self, coin: str) -> None:
        if coin in self._index:
            return
        self._index[coin] = len(self.coins)
        self.coins.append(coin)
        self._all_priced = False
        self.positions = np.append(self.positions, 0.0)
        self.last_price = np.append(self.last_price, np.nan)
        self.first_price = np.append(self.first_price, np.nan)

    def add_cash(self, amount: float) -> None:
        """A new account joined (or, negative, left) with this much equity."""
        self.cash[0] += amount
        self.equity[E_INITIAL] += amount  # returns are measured on the capital at work
        self.equity[E_LAST] += amount
        self.equity[E_PEAK] += amount

    def remove_account(self, coin: str, cash: float, position: float, capital: float) -> None:
        """An account left: its cash and position leave the portfolio (P&L measured without
        it from now on)."""
        self.cash[0] -= cash
        self.positions[self._index[coin]] -= position
        price = self.last_price[self._index[coin]]
        equity = cash + (position * price if position != 0.0 else 0.0)
        self.equity[E_INITIAL] -= capital
        self.equity[E_LAST] -= equity
        self.equity[E_PEAK] -= equity

    def mark(self, batch: Dataset, packed: PackedUpdate) -> None:
        """Apply one batch and every account's fills in it."""
        present = [s for s in batch.series if s.coin in self._index and len(s) > 0]
        if not present:
            return
        offsets = self._offsets(present)
        ts, price, row_coin, order, rank = self._merge(present)
        f = packed.fills
        if f.shape[0]:
            acct = f[:, F_ACCOUNT].astype(np.int64)
            coin_of_row = np.array([self._index[c] for c in packed.coins], dtype=np.int64)
            coin_offset = np.full(len(self.coins), -1, dtype=np.int64)
            for coin, off in offsets.items():
                coin_offset[self._index[coin]] = off
            local = (f[:, F_INDEX] - packed.state[acct, UPDATES_BEFORE]).astype(np.int64)
            fill_rank = rank[coin_offset[coin_of_row[acct]] + local]
            qty = f[:, F_POSITION_AFTER] - packed.position_before_each_fill()
            cash_delta = -(f[:, F_QTY] * f[:, F_PRICE] + f[:, F_FEE])
            by_rank = np.lexsort((acct, fill_rank))
            args = (
                fill_rank[by_rank],
                coin_of_row[acct][by_rank],
                qty[by_rank],
                cash_delta[by_rank],
            )
        else:
            args = (
                np.zeros(0, dtype=np.int64),
                np.zeros(0, dtype=np.int64),
                np.zeros(0),
                np.zeros(0),
            )
        mark_portfolio(
            order, row_coin, ts, price, *args, self.cash, self.positions, self.last_price,
            self.equity, self.curve.ts, self.curve.equity, self.curve.state,
        )  # fmt: skip

    def _merge(self, present: list[CoinSeries]) -> tuple[np.ndarray, ...]:
        if not self._all_priced:
            for s in present:
                ci = self._index[s.coin]
                if np.isnan(self.first_price[ci]):
                    self.first_price[ci] = s.price[0]
            self._all_priced = not np.isnan(self.first_price).any()
        if len(present) == 1:
            only = present[0]
            order = np.arange(len(only), dtype=np.int64)
            row_coin = np.full(len(only), self._index[only.coin], dtype=np.int64)
            return only.timestamp_ms, only.price, row_coin, order, order
        ts = np.concatenate([s.timestamp_ms for s in present])
        price = np.concatenate([s.price for s in present])
        lengths = [s.timestamp_ms.shape[0] for s in present]
        row_coin = np.repeat(np.array([self._index[s.coin] for s in present]), lengths)
        order = np.argsort(ts, kind="stable").astype(np.int64)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order), dtype=np.int64)
        return ts, price, row_coin, order, rank

    @staticmethod
    def _offsets(present: list[CoinSeries]) -> dict[str, int]:
        offsets: dict[str, int] = {}
        row = 0
        for s in present:
            offsets[s.coin] = row
            row += len(s)
        return offsets

    def metrics(self, accounts: Sequence[Metrics], fees_paid: float) -> Metrics:
        """Portfolio figures; round-trip figures are pooled from the accounts' own."""
        from dataclasses import replace

        portfolio = summarize(self.equity, round_trip_init(), fees_paid)
        trips = sum(m.round_trips for m in accounts)
        wins = sum(m.win_rate * m.round_trips for m in accounts)
        with np.errstate(invalid="ignore"):
            bh = self.last_price / self.first_price - 1.0
        finite = bh[np.isfinite(bh)]
        return replace(
            portfolio,
            round_trips=trips,
            win_rate=wins / trips if trips else 0.0,
            buy_and_hold_return=float(finite.mean()) if finite.size else 0.0,
        )
