"""The backtest runner: any set of (strategy, coin) accounts over a merged multi-coin stream.

Data arrives in batches (a whole ``Dataset`` or chunks of one, e.g. from
``data.iter_chunks``), so memory stays flat however long the input. Each batch goes through
the same two steps the live engine uses:

1. **decide**: per account, the strategy's decision path (compiled kernel for built-ins,
   ``execute`` per update for Python strategies) produces fills and updates the ledger;
2. **mark**: per account, equity after every update of its coin; then for the portfolio,
   equity after every update of any traded coin in merged (timestamp, coin order, arrival)
   order. Both feed the incremental metrics of ``analysis/metrics.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

import numpy as np

from velocitas.analysis.metrics import equity_init, round_trip_init, summarize
from velocitas.core.errors import ConfigError, StrategyError
from velocitas.core.models import CoinSeries, Dataset
from velocitas.engine.builtin_path import run_builtin
from velocitas.engine.fills import ExecutionConfig, FillLog
from velocitas.engine.ledger import (
    CASH,
    FEES,
    INITIAL_CASH,
    POSITION,
    LedgerSnapshot,
    ledger_init,
)
from velocitas.engine.marking import EquityCurve, mark_account, mark_portfolio
from velocitas.engine.python_path import run_python
from velocitas.engine.results import AccountResult, BacktestResult
from velocitas.strategies.base import BuiltinStrategy, Strategy

logger = logging.getLogger(__name__)


def strategy_ids(strategies: Sequence[Strategy]) -> list[str]:
    """``"{coin}_{name}"`` per strategy; repeats get ``_2``, ``_3``... in order."""
    seen: dict[str, int] = {}
    ids = []
    for s in strategies:
        base = f"{s.coin}_{s.name}"
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return ids


class Account:
    """One (coin, strategy) account's whole mutable state during a run."""

    def __init__(self, strategy_id: str, strategy: Strategy, config: ExecutionConfig) -> None:
        self.strategy_id = strategy_id
        self.strategy = strategy
        strategy.reset()
        strategy.allow_short = config.allow_short
        strategy.cash = config.capital
        self.ledger = ledger_init(config.capital)
        self.trips = round_trip_init()
        self.pending = np.zeros(2, dtype=np.float64)
        self.log = FillLog()
        self.equity = equity_init(config.capital)
        self.carry = np.array([config.capital, 0.0], dtype=np.float64)
        self.curve = EquityCurve()
        self.updates = 0
        self.last_price = float("nan")
        self.error: str | None = None

    def decide(self, series: CoinSeries, cfg: np.ndarray) -> None:
        if self.error is not None:
            return
        s = self.strategy
        if isinstance(s, BuiltinStrategy):
            run_builtin(
                s.kind, s.packed_params, s.float_state, s.int_state, self.ledger, self.trips,
                self.pending, cfg, series.timestamp_ms, series.price, self.updates, self.log,
            )  # fmt: skip
            s.position = float(self.ledger[POSITION])
            s.cash = float(self.ledger[CASH])
            return
        try:
            run_python(
                s, series, self.ledger, self.trips, self.pending, cfg, self.updates, self.log
            )
        except StrategyError as e:
            logger.warning("%s stopped trading: %s", self.strategy_id, e)
            self.error = str(e)
            self.pending[:] = 0.0

    def mark(self, series: CoinSeries, first_new_fill: int) -> None:
        log = self.log
        n = log.count
        mark_account(
            series.timestamp_ms, series.price, self.updates,
            log.index[first_new_fill:n], log.cash_after[first_new_fill:n],
            log.position_after[first_new_fill:n], self.carry, self.equity,
            self.curve.ts, self.curve.equity, self.curve.state,
        )  # fmt: skip
        self.updates += len(series)
        self.last_price = float(series.price[-1])

    def result(self) -> AccountResult:
        s = self.strategy
        metrics = summarize(self.equity, self.trips, float(self.ledger[FEES]))
        return AccountResult(
            strategy_id=self.strategy_id,
            strategy=s.name,
            coin=s.coin,
            params=dict(s.params),
            metrics=metrics,
            ledger=LedgerSnapshot.of(self.ledger, self.last_price),
            fills={k: v.copy() for k, v in self.log.columns().items()},
            equity_curve=self.curve.points(),
            error=self.error,
        )


class Backtester:
    """Feeds batches of market data through every account; ``result()`` any time after."""

    def __init__(self, strategies: Sequence[Strategy], config: ExecutionConfig) -> None:
        if not strategies:
            raise ConfigError("a backtest needs at least one strategy")
        self.config = config
        self._cfg = config.as_array()
        ids = strategy_ids(strategies)
        self.accounts = [Account(i, s, config) for i, s in zip(ids, strategies, strict=True)]
        self.coins: list[str] = list(dict.fromkeys(s.coin for s in strategies))
        n_coins = len(self.coins)
        capital = config.capital * len(self.accounts)
        self._cash = np.array([capital], dtype=np.float64)
        self._positions = np.zeros(n_coins, dtype=np.float64)
        self._last_price = np.full(n_coins, np.nan)
        self._first_price = np.full(n_coins, np.nan)
        self._portfolio = equity_init(capital)
        self._curve = EquityCurve()
        self.updates = 0

    def feed(self, batch: Dataset) -> None:
        """Run every account over one batch (time-ordered per coin, after earlier batches)."""
        present = [s for s in batch.series if s.coin in self.coins and len(s) > 0]
        by_coin = {s.coin: s for s in present}
        fills_before = [a.log.count for a in self.accounts]
        updates_before = [a.updates for a in self.accounts]
        for account in self.accounts:
            series = by_coin.get(account.strategy.coin)
            if series is not None:
                account.decide(series, self._cfg)
        for account, first in zip(self.accounts, fills_before, strict=True):
            series = by_coin.get(account.strategy.coin)
            if series is not None:
                account.mark(series, first)
        self._mark_portfolio(present, fills_before, updates_before)
        self.updates += sum(len(s) for s in present)

    def _mark_portfolio(
        self, present: list[CoinSeries], fills_before: list[int], updates_before: list[int]
    ) -> None:
        if not present:
            return
        coin_index = {c: i for i, c in enumerate(self.coins)}
        offsets = {}
        row = 0
        for s in present:
            offsets[s.coin] = row
            row += len(s)
            ci = coin_index[s.coin]
            if np.isnan(self._first_price[ci]):
                self._first_price[ci] = s.price[0]
        if len(present) == 1:
            only = present[0]
            ts, price = only.timestamp_ms, only.price
            row_coin = np.full(len(only), coin_index[only.coin], dtype=np.int64)
            order = np.arange(len(only), dtype=np.int64)
            rank = order
        else:
            ts = np.concatenate([s.timestamp_ms for s in present])
            price = np.concatenate([s.price for s in present])
            row_coin = np.concatenate(
                [np.full(len(s), coin_index[s.coin], dtype=np.int64) for s in present]
            )
            order = np.argsort(ts, kind="stable").astype(np.int64)
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order), dtype=np.int64)
        ranks, coins, qty, cash_delta = [], [], [], []
        for account, first, before in zip(self.accounts, fills_before, updates_before, strict=True):
            log = account.log
            if log.count == first:
                continue
            coin = account.strategy.coin
            sl = slice(first, log.count)
            pos_after = log.position_after[sl]
            prev_pos = np.concatenate(
                [[log.position_after[first - 1] if first > 0 else 0.0], pos_after[:-1]]
            )
            ranks.append(rank[offsets[coin] + (log.index[sl] - before)])
            coins.append(np.full(log.count - first, coin_index[coin], dtype=np.int64))
            qty.append(pos_after - prev_pos)
            cash_delta.append(-(log.qty[sl] * log.price[sl] + log.fee[sl]))
        if ranks:
            fill_rank = np.concatenate(ranks)
            by_rank = np.argsort(fill_rank, kind="stable")
            fill_rank = fill_rank[by_rank]
            fill_coin = np.concatenate(coins)[by_rank]
            fill_qty = np.concatenate(qty)[by_rank]
            fill_cash = np.concatenate(cash_delta)[by_rank]
        else:
            fill_rank = np.zeros(0, dtype=np.int64)
            fill_coin = np.zeros(0, dtype=np.int64)
            fill_qty = np.zeros(0, dtype=np.float64)
            fill_cash = np.zeros(0, dtype=np.float64)
        mark_portfolio(
            order, row_coin, ts, price, fill_rank, fill_coin, fill_qty, fill_cash, self._cash,
            self._positions, self._last_price, self._portfolio, self._curve.ts,
            self._curve.equity, self._curve.state,
        )  # fmt: skip

    def result(self, elapsed_s: float = 0.0) -> BacktestResult:
        accounts = [a.result() for a in self.accounts]
        fees = sum(a.ledger.fees_paid for a in accounts)
        portfolio = summarize(self._portfolio, round_trip_init(), fees)
        trips = [a.metrics for a in accounts]
        n_trips = sum(m.round_trips for m in trips)
        wins = sum(m.win_rate * m.round_trips for m in trips)
        with np.errstate(invalid="ignore"):
            bh = self._last_price / self._first_price - 1.0
        portfolio = replace(
            portfolio,
            round_trips=n_trips,
            win_rate=wins / n_trips if n_trips else 0.0,
            buy_and_hold_return=float(np.nanmean(bh)) if np.isfinite(bh).any() else 0.0,
        )
        totals = {
            "initial_cash": float(sum(a.ledger[INITIAL_CASH] for a in self.accounts)),
            "realized_pnl": sum(a.ledger.realized_pnl for a in accounts),
            "unrealized_pnl": sum(a.ledger.unrealized_pnl for a in accounts),
            "fees_paid": fees,
            "equity": sum(a.ledger.equity for a in accounts),
            "fills": float(sum(a.ledger.fills for a in accounts)),
        }
        totals["total_pnl"] = totals["realized_pnl"] + totals["unrealized_pnl"]
        return BacktestResult(
            accounts=accounts,
            portfolio=portfolio,
            totals=totals,
            portfolio_curve=self._curve.points(),
            updates=self.updates,
            elapsed_s=elapsed_s,
            coins=list(self.coins),
        )


def run_backtest(
    strategies: Sequence[Strategy],
    data: Dataset | Iterable[Dataset],
    config: ExecutionConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> BacktestResult:
    """Backtest ``strategies`` (each on its own coin) over ``data``, a dataset or its batches.

    Raises:
        ConfigError: no strategy, or a strategy's coin is absent from the data.
    """
    config = config or ExecutionConfig()
    started = time.perf_counter()
    runner = Backtester(strategies, config)
    batches = [data] if isinstance(data, Dataset) else data
    seen: set[str] = set()
    for batch in batches:
        seen.update(s.coin for s in batch.series if len(s) > 0)
        runner.feed(batch)
        if progress is not None:
            progress(len(batch))
    missing = [c for c in runner.coins if c not in seen]
    if missing:
        raise ConfigError(
            f"no market data for coin(s) {', '.join(missing)}; the data has "
            f"{', '.join(sorted(seen)) or 'no rows'}"
        )
    return runner.result(elapsed_s=time.perf_counter() - started)
