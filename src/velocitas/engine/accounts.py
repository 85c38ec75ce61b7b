"""Accounts: one (coin, strategy) pair's complete state, and groups of them (a shard).

An :class:`AccountGroup` is the unit a worker owns: it runs every account it holds over a batch
of market data (decide, then mark) and reports what changed as :class:`AccountUpdate` records.
The serial backtest, a worker process and a Ray actor all run this same class, which is why
their fills agree bit for bit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from velocitas.analysis.metrics import equity_init, round_trip_init, summarize
from velocitas.core.errors import ConfigError, StrategyError
from velocitas.core.models import CoinSeries, Dataset, FloatArray
from velocitas.engine.builtin_path import run_builtin
from velocitas.engine.fills import ExecutionConfig, FillLog
from velocitas.engine.ledger import CASH, FEES, POSITION, LedgerSnapshot, ledger_init
from velocitas.engine.marking import EquityCurve, mark_account
from velocitas.engine.python_path import run_python
from velocitas.engine.results import AccountResult
from velocitas.strategies.base import BuiltinStrategy, Strategy

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    """What one batch changed in one account (small; crosses process boundaries).

    ``fills`` are the batch's new fills (columns of the fill log), the first of which is fill
    number ``first_fill`` of the account; ``updates_before`` is how many updates of its coin the
    account had seen before the batch, ``position_before`` its position then. The state arrays
    are copies taken after the batch.
    """

    strategy_id: str
    coin: str
    first_fill: int
    updates_before: int
    position_before: float
    updates: int
    fills: dict[str, np.ndarray]
    ledger: FloatArray
    trips: FloatArray
    equity: FloatArray
    last_price: float
    error: str | None


class Account:
    """One (coin, strategy) account's whole mutable state."""

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
        self.fills_dropped = 0
        self.last_price = float("nan")
        self.error: str | None = None

    def drop_fill_log(self) -> None:
        """Forget logged fills once reported (keeps a live worker's memory flat)."""
        self.fills_dropped += self.log.count
        self.log.count = 0

    def decide(self, series: CoinSeries, cfg: np.ndarray) -> None:
        """Run the strategy over the batch, booking fills (the decision path)."""
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
        """Equity after each update of the batch (after ``decide`` on the same batch)."""
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

    def process(self, series: CoinSeries, cfg: np.ndarray) -> AccountUpdate:
        first, before = self.log.count, self.updates
        position = float(self.ledger[POSITION])
        self.decide(series, cfg)
        self.mark(series, first)
        return self.update_since(first, before, position)

    def update_since(
        self, first_fill: int, updates_before: int, position_before: float
    ) -> AccountUpdate:
        n = self.log.count
        return AccountUpdate(
            strategy_id=self.strategy_id,
            coin=self.strategy.coin,
            first_fill=self.fills_dropped + first_fill,
            updates_before=updates_before,
            position_before=position_before,
            updates=self.updates,
            fills={k: v[first_fill:n].copy() for k, v in self.log.columns().items()},
            ledger=self.ledger.copy(),
            trips=self.trips.copy(),
            equity=self.equity.copy(),
            last_price=self.last_price,
            error=self.error,
        )

    def result(self) -> AccountResult:
        s = self.strategy
        return AccountResult(
            strategy_id=self.strategy_id,
            strategy=s.name,
            coin=s.coin,
            params=dict(s.params),
            metrics=summarize(self.equity, self.trips, float(self.ledger[FEES])),
            ledger=LedgerSnapshot.of(self.ledger, self.last_price),
            fills={k: v.copy() for k, v in self.log.columns().items()},
            equity_curve=self.curve.points(),
            error=self.error,
        )


class AccountGroup:
    """A set of accounts processed together over the same batches (one worker's shard).

    With ``keep_fill_logs=False`` (workers) fills are reported once in the batch's updates and
    then forgotten; the single writer that receives the updates keeps them.
    """

    def __init__(self, config: ExecutionConfig, *, keep_fill_logs: bool = True) -> None:
        self.config = config
        self.cfg = config.as_array()
        self.keep_fill_logs = keep_fill_logs
        self.accounts: dict[str, Account] = {}

    def add(self, strategy_id: str, strategy: Strategy) -> None:
        if strategy_id in self.accounts:
            raise ConfigError(f"strategy id {strategy_id!r} is already registered")
        self.accounts[strategy_id] = Account(strategy_id, strategy, self.config)

    def remove(self, strategy_id: str) -> Account:
        return self.accounts.pop(strategy_id)

    def process(self, batch: Dataset) -> list[AccountUpdate]:
        """Run every account whose coin is in ``batch``; one update per account that ran."""
        by_coin = {s.coin: s for s in batch.series if len(s) > 0}
        updates = []
        for account in self.accounts.values():
            series = by_coin.get(account.strategy.coin)
            if series is not None:
                updates.append(account.process(series, self.cfg))
                if not self.keep_fill_logs:
                    account.drop_fill_log()
        return updates

    def snapshot(self, strategy_id: str) -> AccountUpdate:
        """The account's current state as an update with no new fills."""
        a = self.accounts[strategy_id]
        return a.update_since(a.log.count, a.updates, float(a.ledger[POSITION]))

    def results(self, order: Iterable[str] | None = None) -> list[AccountResult]:
        ids = list(order) if order is not None else list(self.accounts)
        return [self.accounts[i].result() for i in ids]
