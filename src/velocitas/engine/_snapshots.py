"""The live engine's writer-side state and the immutable snapshots readers see.

Only the dispatcher thread (or ``run``) mutates :class:`EngineState`; after each applied batch
it publishes a new :class:`Snapshot` by swapping one reference, so a reader always sees every
figure from the same batch: the global totals are the sums of exactly the per-strategy figures
in the same snapshot. Trades and P&L curves are append-only under a small lock, and a snapshot
only shows the entries that existed when it was published.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from velocitas.analysis.metrics import E_INITIAL, E_LAST, Metrics, summarize
from velocitas.core.models import Dataset, FloatArray
from velocitas.engine.accounts import AccountUpdate
from velocitas.engine.fills import ExecutionConfig
from velocitas.engine.ledger import FEES, IGNORED, REJECTED, LedgerSnapshot
from velocitas.engine.marking import EquityCurve, curve_add
from velocitas.engine.packed import (
    EQUITY,
    F_ACCOUNT,
    F_FEE,
    F_PRICE,
    F_QTY,
    F_TS,
    LAST_PRICE,
    LEDGER,
    STATE_COLS,
    TRIPS,
    PackedUpdate,
    empty_fills,
    fill_columns,
)
from velocitas.engine.portfolio import Portfolio
from velocitas.engine.results import AccountResult, BacktestResult
from velocitas.strategies.base import Strategy

_LATENCY_SAMPLES = 2_048
_PNL_SAMPLE_S = 0.1
_GLOBAL = "__global__"


@dataclass(frozen=True, slots=True)
class StrategyInfo:
    strategy_id: str
    name: str
    coin: str
    params: dict[str, Any]


@dataclass(slots=True)
class _Trades:
    """Append-only recent fills with a global sequence number (bounded)."""

    capacity: int
    rows: deque[tuple[int, int, str, str, float, float, float]] = field(init=False)
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rows = deque(maxlen=self.capacity)

    def extend(self, ids: tuple[str, ...], coins: tuple[str, ...], fills: FloatArray) -> None:
        """Append one batch's fills in (timestamp, account) order."""
        order = np.lexsort((fills[:, F_ACCOUNT], fills[:, F_TS]))
        rows = fills[order]
        acct = rows[:, F_ACCOUNT].astype(np.int64).tolist()
        ts = rows[:, F_TS].astype(np.int64).tolist()
        qty, price, fee = (rows[:, k].tolist() for k in (F_QTY, F_PRICE, F_FEE))
        with self.lock:
            for a, t, q, p, f in zip(acct, ts, qty, price, fee, strict=True):
                self.count += 1
                self.rows.append((self.count, t, ids[a], coins[a], q, p, f))


def _percentiles_ms(samples: deque[int]) -> dict[str, float | None]:
    if not samples:
        return {"p50": None, "p99": None}
    arr = np.fromiter(samples, dtype=np.float64) / 1e6
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99))}


def _metrics_dict(m: Metrics) -> dict[str, Any]:
    out: dict[str, Any] = m.to_dict()
    for k, v in out.items():
        if isinstance(v, float) and not np.isfinite(v):
            out[k] = None
    return out


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything readers see, as of one applied batch."""

    infos: dict[str, StrategyInfo]
    latest: dict[str, FloatArray]
    status: dict[str, str]
    errors: dict[str, str]
    active: tuple[str, ...]
    portfolio_equity: np.ndarray
    engine: dict[str, Any]
    trades_seen: int
    state: EngineState

    def strategy_metrics(self, sid: str) -> dict[str, Any]:
        info = self.infos[sid]
        u = self.latest.get(sid)
        out: dict[str, Any] = {
            "strategy_id": sid,
            "strategy": info.name,
            "coin": info.coin,
            "params": info.params,
            "status": self.status[sid],
            "error": self.errors.get(sid),
            # A batch's results reach the writer together: a strategy's latency is that of
            # the batches carrying its coin.
            "latency_ms": self.state.latency_ms(info.coin),
        }
        if u is None:
            capital = self.state.config.capital
            out.update(position=0.0, cash=capital, avg_entry=0.0, realized_pnl=0.0,
                       unrealized_pnl=0.0, total_pnl=0.0, fees_paid=0.0, equity=capital,
                       last_price=None, trades=0, rejected_orders=0, ignored_signals=0)  # fmt: skip
            return out
        ledger, last_price = u[LEDGER], float(u[LAST_PRICE])
        led = LedgerSnapshot.of(ledger, last_price)
        out.update(
            position=led.position,
            cash=led.cash,
            avg_entry=led.avg_entry,
            realized_pnl=led.realized_pnl,
            unrealized_pnl=led.unrealized_pnl,
            total_pnl=led.total_pnl,
            fees_paid=led.fees_paid,
            equity=led.equity,
            last_price=last_price if np.isfinite(last_price) else None,
            trades=led.fills,
            rejected_orders=int(ledger[REJECTED]),
            ignored_signals=int(ledger[IGNORED]),
        )
        m = _metrics_dict(summarize(u[EQUITY], u[TRIPS], float(ledger[FEES])))
        for key in ("total_pnl",):
            m.pop(key)
        out.update(m)
        return out

    def as_metrics(self, engine_extra: dict[str, Any]) -> dict[str, Any]:
        strategies = {sid: self.strategy_metrics(sid) for sid in self.active}
        totals = {
            key: sum(s[key] for s in strategies.values())
            for key in (
                "realized_pnl", "unrealized_pnl", "total_pnl", "fees_paid", "equity", "trades",
            )
        }  # fmt: skip
        portfolio = summarize(self.portfolio_equity, np.zeros(12), totals["fees_paid"])
        global_ = {
            **totals,
            "strategies": len(strategies),
            "errored": sum(1 for s in strategies.values() if s["status"] == "errored"),
            "total_return": portfolio.total_return,
            "sharpe": portfolio.sharpe,
            "sortino": portfolio.sortino,
            "max_drawdown": portfolio.max_drawdown,
            "exposure": portfolio.exposure,
            "round_trips": sum(s.get("round_trips", 0) for s in strategies.values()),
        }
        global_ = {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                   for k, v in global_.items()}  # fmt: skip
        return {
            "global": global_,
            "strategies": strategies,
            "engine": {**self.engine, **engine_extra, "latency_ms": self.state.latency_ms(_GLOBAL)},
        }

    def trades(self, limit: int, strategy_id: str | None, coin: str | None) -> list[dict[str, Any]]:
        trades = self.state.trades
        with trades.lock:
            rows = list(trades.rows)
        out = []
        for seq, t, sid, c, q, p, f in reversed(rows):
            if seq > self.trades_seen:
                continue
            if (strategy_id and sid != strategy_id) or (coin and c != coin):
                continue
            out.append({"timestamp": t, "side": "BUY" if q > 0 else "SELL", "price": p,
                        "quantity": abs(q), "fee": f, "strategy_id": sid, "coin": c})  # fmt: skip
            if len(out) >= limit:
                break
        return out

    def pnl_history(self, strategy_id: str | None) -> list[dict[str, Any]]:
        key = strategy_id or _GLOBAL
        curve = self.state.pnl_curves.get(key)
        if curve is None:
            return []
        with self.state.curve_lock:
            points = curve.points()
        return [{"timestamp": t, "pnl": v} for t, v in points]


class EngineState:
    """Writer-side state of the live engine (mutated by one thread only)."""

    def __init__(self, config: ExecutionConfig, trade_history: int) -> None:
        self.config = config
        self.trades = _Trades(trade_history)
        self.curve_lock = threading.Lock()
        self.infos: dict[str, StrategyInfo] = {}
        self.status: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.latest: dict[str, FloatArray] = {}
        self.active: list[str] = []
        self.portfolio = Portfolio([], 0.0)
        self.pnl_curves: dict[str, EquityCurve] = {_GLOBAL: EquityCurve()}
        self.latency: dict[str, deque[int]] = {_GLOBAL: deque(maxlen=_LATENCY_SAMPLES)}
        self.all_fills: list[tuple[tuple[str, ...], FloatArray]] | None = None
        self._last_pnl_sample = 0.0
        self._last_ts = 0
        self.ticks_in = 0
        self.ticks_processed = 0
        self.batches = 0
        self.queue_depth = 0
        self.source = ""
        self.source_error: str | None = None
        self.run_status = "idle"
        self.started_at: float | None = None
        self._rate_window: deque[tuple[float, int]] = deque(maxlen=256)
        self.snapshot = self._publish()

    def coins(self) -> set[str]:
        return {self.infos[s].coin for s in self.active}

    def active_ids(self) -> list[str]:
        return list(self.active)

    def added(self, sid: str, strategy: Strategy) -> None:
        self.infos[sid] = StrategyInfo(sid, strategy.name, strategy.coin, dict(strategy.params))
        self.status[sid] = "active"
        self.active.append(sid)
        self.portfolio.add_coin(strategy.coin)
        self.portfolio.add_cash(self.config.capital)
        self.pnl_curves[sid] = EquityCurve()
        self.latency.setdefault(strategy.coin, deque(maxlen=_LATENCY_SAMPLES))
        self.snapshot = self._publish()

    def removed(self, sid: str, final: AccountUpdate) -> None:
        led = LedgerSnapshot.of(final.ledger, final.last_price)
        self.portfolio.remove_account(self.infos[sid].coin, led.cash, led.position,
                                      self.config.capital)  # fmt: skip
        self.active.remove(sid)
        self.status[sid] = "removed"
        self.latest[sid] = _row_of(final)
        self.snapshot = self._publish()

    def started(self, source: str, *, keep_all_fills: bool = False) -> None:
        for samples in self.latency.values():
            samples.clear()  # a new session's latency is its own
        self.source = source
        self.source_error = None
        self.run_status = "running"
        self.started_at = time.time()
        if keep_all_fills:
            self.all_fills = []
        self.snapshot = self._publish()

    def stopped(self) -> None:
        if self.batches:
            self._sample_pnl()
        self.run_status = "stopped"
        self.snapshot = self._publish()

    def executor_closed(self) -> None:
        self.snapshot = self._publish()

    def applied(self, batch: Dataset, packed: PackedUpdate, oldest_arrival_ns: int) -> None:
        self.portfolio.mark(batch, packed)
        latency = time.perf_counter_ns() - oldest_arrival_ns
        self.latency[_GLOBAL].append(latency)
        for s in batch.series:
            samples = self.latency.get(s.coin)
            if samples is not None and s.timestamp_ms.shape[0]:
                samples.append(latency)
        latest = self.latest
        for r, sid in enumerate(packed.ids):
            latest[sid] = packed.state[r]
        for sid, error in packed.errors.items():
            if self.status.get(sid) == "active":
                self.status[sid] = "errored"
                self.errors[sid] = error
        if packed.fills.shape[0]:
            self.trades.extend(packed.ids, packed.coins, packed.fills)
            if self.all_fills is not None:
                self.all_fills.append((packed.ids, packed.fills))
        self.ticks_processed += len(batch)
        self.batches += 1
        self._last_ts = max(
            (int(s.timestamp_ms[-1]) for s in batch.series if len(s)), default=self._last_ts
        )
        now = time.monotonic()
        if now - self._last_pnl_sample >= _PNL_SAMPLE_S:
            self._sample_pnl()
            self._last_pnl_sample = now
        self.snapshot = self._publish()

    def _sample_pnl(self) -> None:
        """One point of every P&L curve (at most every ``_PNL_SAMPLE_S`` of wall time)."""
        last_ts = self._last_ts
        with self.curve_lock:
            for sid in self.active:
                row = self.latest.get(sid)
                if row is None:
                    continue
                c = self.pnl_curves[sid]
                acc = row[EQUITY]
                curve_add(c.ts, c.equity, c.state, last_ts, float(acc[E_LAST] - acc[E_INITIAL]))
            g = self.pnl_curves[_GLOBAL]
            eq = self.portfolio.equity
            curve_add(g.ts, g.equity, g.state, last_ts, float(eq[E_LAST] - eq[E_INITIAL]))

    def latency_ms(self, key: str) -> dict[str, float | None]:
        """p50/p99 of the recent batch latencies (computed by the reader, off the hot path)."""
        samples = self.latency.get(key)
        return _percentiles_ms(deque(samples) if samples is not None else deque())

    def _publish(self) -> Snapshot:
        now = time.monotonic()
        window = self._rate_window
        window.append((now, self.ticks_processed))
        while len(window) > 2 and now - window[0][0] > 2.0:
            window.popleft()
        span = now - window[0][0]
        rate = (self.ticks_processed - window[0][1]) / span if span > 0 else 0.0
        engine = {
            "status": self.run_status,
            "source": self.source,
            "source_error": self.source_error,
            "ticks_in": self.ticks_in,
            "ticks_processed": self.ticks_processed,
            "ticks_per_s": rate,
            "lag_ticks": self.ticks_in - self.ticks_processed,
            "batches": self.batches,
            "uptime_s": (time.time() - self.started_at) if self.started_at else 0.0,
        }
        return Snapshot(
            infos=dict(self.infos),
            latest=dict(self.latest),
            status=dict(self.status),
            errors=dict(self.errors),
            active=tuple(self.active),
            portfolio_equity=self.portfolio.equity.copy(),
            engine=engine,
            trades_seen=self.trades.count,
            state=self,
        )

    def result(self, elapsed_s: float) -> BacktestResult:
        """A BacktestResult of a ``run()`` (every fill kept)."""
        from velocitas.engine.backtest import summarize_run

        parts: dict[str, list[FloatArray]] = {sid: [] for sid in self.active}
        for ids, fills in self.all_fills or []:
            acct = fills[:, F_ACCOUNT].astype(np.int64)
            for r, sid in enumerate(ids):
                mine = fills[acct == r]
                if mine.shape[0] and sid in parts:
                    parts[sid].append(mine)
        accounts = []
        for sid in self.active:
            info, row = self.infos[sid], self.latest.get(sid)
            if row is None:
                continue
            rows = np.concatenate(parts[sid]) if parts[sid] else empty_fills()
            accounts.append(
                AccountResult(
                    strategy_id=sid,
                    strategy=info.name,
                    coin=info.coin,
                    params=info.params,
                    metrics=summarize(row[EQUITY], row[TRIPS], float(row[LEDGER][FEES])),
                    ledger=LedgerSnapshot.of(row[LEDGER], float(row[LAST_PRICE])),
                    fills=fill_columns(rows),
                    equity_curve=[],
                    error=self.errors.get(sid),
                )
            )
        self.all_fills = None
        return summarize_run(accounts, self.portfolio, self.ticks_processed, elapsed_s)


def _row_of(update: AccountUpdate) -> FloatArray:
    row = np.zeros(STATE_COLS)
    row[LEDGER] = update.ledger
    row[TRIPS] = update.trips
    row[EQUITY] = update.equity
    row[LAST_PRICE] = update.last_price
    return row
