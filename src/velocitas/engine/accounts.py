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
from typing import Any

import numpy as np

from velocitas.analysis.metrics import equity_init, round_trip_init, summarize
from velocitas.core.errors import ConfigError, StrategyError
from velocitas.core.models import CoinSeries, Dataset, FloatArray
from velocitas.engine.book import BuiltinBook
from velocitas.engine.fills import ExecutionConfig, FillLog
from velocitas.engine.ledger import FEES, POSITION, LedgerSnapshot, ledger_init
from velocitas.engine.marking import EquityCurve, mark_account
from velocitas.engine.packed import (
    EQUITY,
    F_ACCOUNT,
    FILL_COLS,
    FILL_KEYS,
    FILLS_BEFORE,
    FILLS_TOTAL,
    LAST_PRICE,
    LEDGER,
    PENDING,
    POSITION_BEFORE,
    STATE_COLS,
    TRIPS,
    UPDATES,
    UPDATES_BEFORE,
    PackedUpdate,
    empty_fills,
    fill_columns,
)
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
    """One Python strategy's account (built-ins live in ``engine/book.py`` instead)."""

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

    def begin_batch(self) -> None:
        self._updates_before = self.updates
        self._fills_before = self.fills_dropped + self.log.count
        self._position_before = float(self.ledger[POSITION])

    def state_row(self) -> FloatArray:
        """This account's state as a row of a packed update."""
        row = np.zeros(STATE_COLS)
        row[LEDGER] = self.ledger
        row[TRIPS] = self.trips
        row[EQUITY] = self.equity
        row[PENDING] = self.pending
        row[UPDATES] = self.updates
        row[UPDATES_BEFORE] = getattr(self, "_updates_before", self.updates)
        row[FILLS_TOTAL] = self.fills_dropped + self.log.count
        row[FILLS_BEFORE] = getattr(self, "_fills_before", row[FILLS_TOTAL])
        row[POSITION_BEFORE] = getattr(self, "_position_before", self.ledger[POSITION])
        row[LAST_PRICE] = self.last_price
        return row

    def new_fills(self, first: int, row: int) -> FloatArray:
        """Fills logged since ``first`` as packed fill rows for account ``row``."""
        cols = self.log.columns()
        n = self.log.count - first
        out = np.empty((n, FILL_COLS))
        out[:, F_ACCOUNT] = row
        for i, key in enumerate(FILL_KEYS):
            out[:, i + 1] = cols[key][first:]
        return out

    def drop_fill_log(self) -> None:
        """Forget logged fills once reported (keeps a live worker's memory flat)."""
        self.fills_dropped += self.log.count
        self.log.count = 0

    def decide(self, series: CoinSeries, cfg: np.ndarray) -> None:
        """Run the strategy over the batch, booking fills (the decision path)."""
        if self.error is not None:
            return
        s = self.strategy
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


def account_update(packed: PackedUpdate, row: int) -> AccountUpdate:
    """The per-account view of one row of a packed update."""
    st = packed.state[row]
    return AccountUpdate(
        strategy_id=packed.ids[row],
        coin=packed.coins[row],
        first_fill=int(st[FILLS_BEFORE]),
        updates_before=int(st[UPDATES_BEFORE]),
        position_before=float(st[POSITION_BEFORE]),
        updates=int(st[UPDATES]),
        fills=packed.fill_columns(row),
        ledger=st[LEDGER].copy(),
        trips=st[TRIPS].copy(),
        equity=st[EQUITY].copy(),
        last_price=float(st[LAST_PRICE]),
        error=packed.errors.get(packed.ids[row]),
    )


def pack_updates(updates: list[AccountUpdate]) -> PackedUpdate:
    """Per-account updates (e.g. from an executor without a packed path) as one packed update."""
    state = np.zeros((len(updates), STATE_COLS))
    fills = []
    for r, u in enumerate(updates):
        st = state[r]
        st[LEDGER], st[TRIPS], st[EQUITY] = u.ledger, u.trips, u.equity
        st[UPDATES], st[UPDATES_BEFORE] = u.updates, u.updates_before
        n = u.fills["index"].shape[0]
        st[FILLS_BEFORE], st[FILLS_TOTAL] = u.first_fill, u.first_fill + n
        st[POSITION_BEFORE], st[LAST_PRICE] = u.position_before, u.last_price
        if n:
            rows = np.empty((n, FILL_COLS))
            rows[:, F_ACCOUNT] = r
            for i, key in enumerate(FILL_KEYS):
                rows[:, i + 1] = u.fills[key]
            fills.append(rows)
    return PackedUpdate(
        ids=tuple(u.strategy_id for u in updates),
        coins=tuple(u.coin for u in updates),
        state=state,
        fills=np.concatenate(fills) if fills else empty_fills(),
        errors={u.strategy_id: u.error for u in updates if u.error},
    )


@dataclass(frozen=True, slots=True)
class _GroupLayout:
    ids: tuple[str, ...]
    coins: tuple[str, ...]
    row: dict[str, int]
    book_rows: np.ndarray  # the group row of each book row


class AccountGroup:
    """A set of accounts processed together over the same batches (one worker's shard).

    Built-in accounts run in one compiled kernel call per batch (``engine/book.py``); Python
    strategies run through ``execute`` per update. ``process_packed`` reports a batch as one
    :class:`PackedUpdate`, accounts in registration order. With ``keep_fill_logs`` the group
    also keeps every fill for ``results()`` (a backtest); workers don't (the single writer
    keeps what it receives).
    """

    def __init__(self, config: ExecutionConfig, *, keep_fill_logs: bool = True) -> None:
        self.config = config
        self.cfg = config.as_array()
        self.order: list[str] = []
        self.book = BuiltinBook() if keep_fill_logs else BuiltinBook(curve_points=2)
        self.python: dict[str, Account] = {}
        self.coin_of: dict[str, str] = {}
        self.names: dict[str, tuple[str, dict[str, Any]]] = {}
        self.errors: dict[str, str] = {}
        self._fills: dict[str, list[np.ndarray]] | None = {} if keep_fill_logs else None
        self._last: PackedUpdate | None = None
        self._layout_cache: _GroupLayout | None = None

    @property
    def accounts(self) -> list[str]:
        return list(self.order)

    def add(self, strategy_id: str, strategy: Strategy) -> None:
        if strategy_id in self.coin_of:
            raise ConfigError(f"strategy id {strategy_id!r} is already registered")
        if isinstance(strategy, BuiltinStrategy):
            strategy.reset()
            strategy.allow_short = self.config.allow_short
            strategy.cash = self.config.capital
            self.book.add(strategy_id, strategy, self.config.capital)
        else:
            self.python[strategy_id] = Account(strategy_id, strategy, self.config)
        self.order.append(strategy_id)
        self.coin_of[strategy_id] = strategy.coin
        self.names[strategy_id] = (strategy.name, dict(strategy.params))
        if self._fills is not None:
            self._fills[strategy_id] = []
        self._last = None
        self._layout_cache = None

    def remove(self, strategy_id: str) -> AccountUpdate:
        """Stop an account; returns its final state."""
        final = self.snapshot(strategy_id)
        if strategy_id in self.python:
            del self.python[strategy_id]
        else:
            self.book.remove(strategy_id)
        self.order.remove(strategy_id)
        del self.coin_of[strategy_id]
        self._last = None
        self._layout_cache = None
        return final

    def _layout(self) -> _GroupLayout:
        """Row bookkeeping, rebuilt only when accounts come or go."""
        if self._layout_cache is None:
            row = {sid: i for i, sid in enumerate(self.order)}
            self._layout_cache = _GroupLayout(
                ids=tuple(self.order),
                coins=tuple(self.coin_of[s] for s in self.order),
                row=row,
                book_rows=np.array([row[s] for s in self.book.ids], dtype=np.int64),
            )
        return self._layout_cache

    def _state_rows(self) -> FloatArray:
        layout = self._layout()
        if not self.python and len(self.book.ids) == len(self.order):
            return self.book.state[layout.book_rows.argsort()] if len(self.order) else (
                np.zeros((0, STATE_COLS)))  # fmt: skip
        state = np.zeros((len(self.order), STATE_COLS))
        if self.book.ids:
            state[layout.book_rows] = self.book.state
        for sid, account in self.python.items():
            state[layout.row[sid]] = account.state_row()
        return state

    def process_packed(self, batch: Dataset) -> PackedUpdate:
        """Run every account over ``batch`` (accounts whose coin is absent just carry over)."""
        present = [s for s in batch.series if len(s) > 0]
        coin_index = {s.coin: i for i, s in enumerate(present)}
        lengths = np.array([len(s) for s in present], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        if len(present) == 1:
            ts, price = present[0].timestamp_ms, present[0].price
        elif present:
            ts = np.concatenate([s.timestamp_ms for s in present])
            price = np.concatenate([s.price for s in present])
        else:
            ts, price = np.zeros(0, dtype=np.int64), np.zeros(0)
        book = self.book
        book.state[:, UPDATES_BEFORE] = book.state[:, UPDATES]
        book.state[:, FILLS_BEFORE] = book.state[:, FILLS_TOTAL]
        book.state[:, POSITION_BEFORE] = book.state[:, LEDGER.start + POSITION]
        layout = self._layout()
        row = layout.row
        fills = [book.run(self.cfg, coin_index, starts, lengths, ts, price)]
        if fills[0].shape[0]:
            book_rows = layout.book_rows
            counts = np.bincount(fills[0][:, F_ACCOUNT].astype(np.int64), minlength=len(book.ids))
            book.state[:, FILLS_TOTAL] += counts
            fills[0][:, F_ACCOUNT] = book_rows[fills[0][:, F_ACCOUNT].astype(np.int64)]
        by_coin = {s.coin: s for s in present}
        for sid, account in self.python.items():
            series = by_coin.get(account.strategy.coin)
            account.begin_batch()
            if series is None:
                continue
            first = account.log.count
            account.decide(series, self.cfg)
            account.mark(series, first)
            new = account.new_fills(first, row[sid])
            if new.shape[0]:
                fills.append(new)
            account.drop_fill_log()
            if account.error:
                self.errors[sid] = account.error
        all_fills = np.concatenate(fills) if len(fills) > 1 else fills[0]
        if len(fills) > 1:
            all_fills = all_fills[np.argsort(all_fills[:, F_ACCOUNT], kind="stable")]
        packed = PackedUpdate(
            ids=layout.ids,
            coins=layout.coins,
            state=self._state_rows(),
            fills=all_fills,
            errors=dict(self.errors),
        )
        if self._fills is not None and all_fills.shape[0]:
            for r, sid in enumerate(self.order):
                mine = all_fills[all_fills[:, F_ACCOUNT] == r]
                if mine.shape[0]:
                    self._fills[sid].append(mine)
        self._last = packed
        return packed

    def process(self, batch: Dataset) -> list[AccountUpdate]:
        """Per-account view of ``process_packed`` (accounts whose coin is in the batch)."""
        packed = self.process_packed(batch)
        coins = {s.coin for s in batch.series if len(s) > 0}
        return [account_update(packed, r) for r, c in enumerate(packed.coins) if c in coins]

    def snapshot(self, strategy_id: str) -> AccountUpdate:
        """The account's current state as an update with no new fills."""
        r = self.order.index(strategy_id)
        state = self._state_rows()
        state[:, UPDATES_BEFORE] = state[:, UPDATES]
        state[:, FILLS_BEFORE] = state[:, FILLS_TOTAL]
        state[:, POSITION_BEFORE] = state[:, LEDGER.start + POSITION]
        packed = PackedUpdate(
            ids=tuple(self.order),
            coins=tuple(self.coin_of[s] for s in self.order),
            state=state,
            fills=empty_fills(),
            errors=dict(self.errors),
        )
        return account_update(packed, r)

    def curve(self, strategy_id: str) -> list[tuple[int, float]]:
        if strategy_id in self.python:
            return self.python[strategy_id].curve.points()
        return self.book.curve(strategy_id)

    def results(self, order: Iterable[str] | None = None) -> list[AccountResult]:
        """Final per-account results (needs ``keep_fill_logs``)."""
        if self._fills is None:
            raise ConfigError("results() needs an AccountGroup made with keep_fill_logs=True")
        state = self._state_rows()
        out = []
        for sid in list(order) if order is not None else self.order:
            st = state[self.order.index(sid)]
            parts = self._fills[sid]
            fills = fill_columns(np.concatenate(parts) if parts else empty_fills())
            name, params = self.names[sid]
            out.append(
                AccountResult(
                    strategy_id=sid,
                    strategy=name,
                    coin=self.coin_of[sid],
                    params=params,
                    metrics=summarize(st[EQUITY], st[TRIPS], float(st[LEDGER][FEES])),
                    ledger=LedgerSnapshot.of(st[LEDGER], float(st[LAST_PRICE])),
                    fills=fills,
                    equity_curve=self.curve(sid),
                    error=self.errors.get(sid),
                )
            )
        return out
