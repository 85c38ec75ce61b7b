"""The hand-over from the source's event-loop thread to ``batches()``: a thread-safe outbox.

The loop thread appends each delivered trade or bar (a lock and a few list appends: cheap on
the hot path); the consumer takes everything that arrived since its last take, up to a
maximum, and builds the numpy-backed ``Dataset`` in its own thread.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from velocitas.core.models import CoinSeries, Dataset
from velocitas.data.binance.rest import Kline, Trade


class Outbox:
    """Trades (ticks) and bars waiting for ``batches()``, in arrival order.

    Bars are handed out before ticks: they come from the history fetched before the live
    stream starts (or, for kline streams, are the only kind there is).
    """

    def __init__(self, coins: Sequence[str]) -> None:
        self.coins = list(coins)
        self.ready = threading.Event()
        self._lock = threading.Lock()
        self._codes: list[int] = []
        self._ts: list[int] = []
        self._price: list[float] = []
        self._qty: list[float] = []
        self._bars: list[tuple[int, Kline]] = []
        self.delivered = 0

    def __len__(self) -> int:
        return len(self._codes) + len(self._bars)

    def add_trade(self, code: int, trade: Trade) -> None:
        """Queue one tick of coin number ``code`` (thread-safe)."""
        with self._lock:
            self._codes.append(code)
            self._ts.append(trade.timestamp_ms)
            self._price.append(trade.price)
            self._qty.append(trade.qty)
            if not self.ready.is_set():
                self.ready.set()

    def add_bar(self, code: int, bar: Kline) -> None:
        """Queue one closed bar of coin number ``code`` (thread-safe)."""
        with self._lock:
            self._bars.append((code, bar))
            if not self.ready.is_set():
                self.ready.set()

    def take(self, max_rows: int, timeout_s: float) -> Dataset | None:
        """Up to ``max_rows`` rows, waiting up to ``timeout_s`` for the first; None if none."""
        if not self.ready.wait(timeout_s):
            return None
        with self._lock:
            if self._bars:
                bars = self._bars[:max_rows]
                del self._bars[:max_rows]
                ticks = None
            else:
                n = min(max_rows, len(self._codes))
                ticks = (self._codes[:n], self._ts[:n], self._price[:n], self._qty[:n])
                del self._codes[:n], self._ts[:n], self._price[:n], self._qty[:n]
                bars = []
            if not (self._bars or self._codes):
                self.ready.clear()
        batch = self._ticks(*ticks) if ticks is not None else self._bar_series(bars)
        self.delivered += len(batch)
        return batch if len(batch) else None

    def _ticks(
        self, codes: list[int], ts: list[int], price: list[float], qty: list[float]
    ) -> Dataset:
        code = np.array(codes, dtype=np.int64)
        columns = (
            np.array(ts, dtype=np.int64),
            np.array(price, dtype=np.float64),
            np.array(qty, dtype=np.float64),
        )
        present = np.unique(code)
        if len(present) == 1:
            return Dataset((CoinSeries(self.coins[int(present[0])], *columns),), "binance")
        series = []
        for c in present:
            mask = code == c
            series.append(CoinSeries(self.coins[int(c)], *(col[mask] for col in columns)))
        return Dataset(tuple(series), "binance")

    def _bar_series(self, bars: list[tuple[int, Kline]]) -> Dataset:
        by_coin: dict[int, list[Kline]] = {}
        for code, bar in bars:
            by_coin.setdefault(code, []).append(bar)
        series = []
        for code, rows in by_coin.items():
            table = np.array([r[1:] for r in rows], dtype=np.float64).reshape(-1, 5)
            series.append(
                CoinSeries(
                    self.coins[code],
                    timestamp_ms=np.array([r.open_ms for r in rows], dtype=np.int64),
                    price=table[:, 3].copy(),
                    volume=table[:, 4].copy(),
                    open=table[:, 0].copy(),
                    high=table[:, 1].copy(),
                    low=table[:, 2].copy(),
                )
            )
        return Dataset(tuple(series), "binance")
