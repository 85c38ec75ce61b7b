"""The naive engine design, built faithfully and minimally as the reference for ``engine.py``.

What it is, on purpose: every strategy's state, position, cash and P&L live in one
``multiprocessing.Manager().dict()``; one global lock is held around every update; and every
tick submits one ``ProcessPoolExecutor`` task per strategy on that coin. A task fetches the
strategy's record from the manager (a pickled round trip to the manager process), runs the same
rule the engine runs (a built-in's per-tick ``execute(MarketData)``), books a fill at the tick's
price (fee, long-only, cash check) and writes the record back, all under the lock.

The driver waits for every task of one time step before submitting the next, so a strategy's
ticks are applied in order (the least a correct version of the design must do). It is kept only
as a yardstick: nothing in ``velocitas`` uses it.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Any

from velocitas.core.models import Dataset, MarketData
from velocitas.strategies.base import Strategy

# Set in each pool process by ``_init_worker`` (a pool task cannot take a lock as an argument).
_SHARED: Any = None
_LOCK: Any = None
_FEE: float = 0.0


def _init_worker(shared: Any, lock: Any, fee_bps: float) -> None:
    global _SHARED, _LOCK, _FEE
    _SHARED, _LOCK, _FEE = shared, lock, fee_bps / 1e4


def _on_tick(strategy_id: str, tick: MarketData) -> None:
    """One strategy, one tick: read its record, decide, fill, write it back; all locked."""
    with _LOCK:
        rec = _SHARED[strategy_id]
        strategy: Strategy = rec["strategy"]
        strategy.position, strategy.cash = rec["position"], rec["cash"]
        signal = strategy.execute(tick)
        if signal is not None:
            side, qty = signal
            price = tick.price
            if side == "SELL":
                qty = -min(qty, rec["position"])
            fee = abs(qty) * price * _FEE
            if qty != 0.0 and (qty < 0.0 or qty * price + fee <= rec["cash"]):
                rec["cash"] -= qty * price + fee
                rec["position"] += qty
                rec["fees"] += fee
                rec["trades"] += 1
        rec["last_price"] = tick.price
        rec["pnl"] = rec["cash"] + rec["position"] * tick.price - rec["capital"]
        _SHARED[strategy_id] = rec


class NaiveEngine:
    """Manager dict + one global lock + one pool task per strategy per tick.

    Args:
        num_workers: processes in the pool.
        lock: ``"manager"`` (a ``Manager().Lock()`` proxy) or ``"process"`` (a
            ``multiprocessing.Lock``, cheaper: no round trip to the manager to take it).
    """

    def __init__(
        self,
        num_workers: int = 2,
        *,
        lock: str = "manager",
        fee_bps: float = 10.0,
        capital: float = 1_000_000.0,
    ) -> None:
        ctx = mp.get_context("spawn")
        self.manager = ctx.Manager()
        self.shared = self.manager.dict()
        self.lock = self.manager.Lock() if lock == "manager" else ctx.Lock()
        self.capital = capital
        self.by_coin: dict[str, list[str]] = {}
        self.pool = ProcessPoolExecutor(
            num_workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(self.shared, self.lock, fee_bps),
        )

    def register_strategy(self, strategy: Strategy) -> str:
        sid = f"{strategy.coin}_{strategy.name}_{sum(map(len, self.by_coin.values()))}"
        strategy.reset()
        self.shared[sid] = {
            "strategy": strategy,
            "position": 0.0,
            "cash": self.capital,
            "capital": self.capital,
            "fees": 0.0,
            "trades": 0,
            "last_price": float("nan"),
            "pnl": 0.0,
        }
        self.by_coin.setdefault(strategy.coin, []).append(sid)
        return sid

    def run(self, batches: Iterable[Dataset]) -> int:
        """Process every tick of ``batches``; returns the number of ticks."""
        ticks = 0
        for batch in batches:
            n = max(len(s) for s in batch.series)
            for i in range(n):
                futures = []
                for s in batch.series:
                    if i >= len(s):
                        continue
                    tick = MarketData(
                        s.coin, float(s.price[i]), float(s.volume[i]), int(s.timestamp_ms[i])
                    )
                    ticks += 1
                    for sid in self.by_coin.get(s.coin, ()):
                        futures.append(self.pool.submit(_on_tick, sid, tick))
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                for f in done:
                    f.result()  # re-raise a task's error here
        return ticks

    def records(self) -> dict[str, dict[str, Any]]:
        return {sid: dict(rec) for sid, rec in self.shared.items()}

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.manager.shutdown()
