"""Live market data sources: anything that yields time-ordered batches of market data.

A source's ``batches()`` yields ``Dataset`` batches (a few updates each, or one) in time order
per coin; it may be endless (live feeds, synthetic) or finite (replay). The engine's producer
thread pulls from it; ``close()`` asks it to stop. Network sources (Binance, CoinGecko) follow
the same protocol (see the data-providers work).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from velocitas.core.errors import ConfigError
from velocitas.core.models import CoinSeries, Dataset
from velocitas.data.synthetic import iter_synthetic

ENDLESS = 2**62
_GENERATE_TICKS = 4_096


class DataSource(Protocol):
    """A stream of market data batches."""

    name: str

    def batches(self) -> Iterator[Dataset]:
        """Time-ordered batches; returns when the source is exhausted or closed."""
        ...

    def close(self) -> None:
        """Stop producing (thread-safe); ``batches()`` returns soon after."""
        ...

    def status(self) -> dict[str, Any]:
        """Health for the engine's metrics: at least ``connected`` (bool),
        ``last_message_age_s``, ``reconnects``, ``messages_per_s``, ``gaps_filled``."""
        ...


class _Paced:
    """Shared stop flag and pacing (updates per second, None = as fast as possible)."""

    def __init__(self, rate_per_s: float | None) -> None:
        if rate_per_s is not None and rate_per_s <= 0:
            raise ConfigError(f"rate must be > 0 updates/s, was {rate_per_s}")
        self.rate_per_s = rate_per_s
        self._stop = threading.Event()
        self._started = 0.0
        self._sent = 0
        self._last_sent = 0.0

    def close(self) -> None:
        self._stop.set()

    def status(self) -> dict[str, Any]:
        """Local sources are always connected and never reconnect."""
        age = time.monotonic() - self._last_sent if self._last_sent else None
        return {
            "connected": not self.closed,
            "last_message_age_s": age,
            "reconnects": 0,
            "messages_per_s": self.rate_per_s,
            "gaps_filled": 0,
            "updates_sent": self._sent,
        }

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def pace(self, n: int) -> None:
        """Wait until ``n`` more updates are due."""
        self._last_sent = time.monotonic()
        if self.rate_per_s is None:
            self._sent += n
            return
        if self._sent == 0:
            self._started = time.perf_counter()
        self._sent += n
        due = self._started + self._sent / self.rate_per_s
        delay = due - time.perf_counter()
        if delay > 0:
            self._stop.wait(delay)


class SyntheticSource(_Paced):
    """The seeded regime-switching generator as an endless (or ``total``-long) stream."""

    name = "synthetic"

    def __init__(
        self,
        coins: Sequence[str] = ("BTC", "ETH"),
        *,
        seed: int = 0,
        interval_ms: int = 1000,
        batch_size: int = 256,
        rate_per_s: float | None = None,
        total: int | None = None,
    ) -> None:
        super().__init__(rate_per_s)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, was {batch_size}")
        self.coins = [c.upper() for c in coins]
        self.seed = seed
        self.interval_ms = interval_ms
        self.batch_size = batch_size
        self.total = total

    def batches(self) -> Iterator[Dataset]:
        # Generate in large chunks (numpy cost per call is fixed) and hand out small slices.
        chunks = iter_synthetic(
            self.total if self.total is not None else ENDLESS,
            self.coins,
            chunk_ticks=max(self.batch_size, _GENERATE_TICKS),
            seed=self.seed,
            interval_ms=self.interval_ms,
        )
        for chunk in chunks:
            data = chunk.dataset
            steps = len(data.series[0])
            for start in range(0, steps, self.batch_size):
                if self.closed:
                    return
                stop = min(start + self.batch_size, steps)
                batch = Dataset(tuple(s.slice(start, stop) for s in data.series))
                self.pace(len(batch))
                yield batch


class ReplaySource(_Paced):
    """A loaded dataset replayed in merged time order, at a speed or as fast as possible.

    ``speed`` is a multiple of real time (1.0: as recorded; None: no waiting). ``loop`` starts
    over at the end, shifting timestamps so they keep increasing.
    """

    name = "replay"

    def __init__(
        self,
        dataset: Dataset,
        *,
        speed: float | None = None,
        loop: bool = False,
        batch_size: int = 256,
    ) -> None:
        super().__init__(None)
        if speed is not None and speed <= 0:
            raise ConfigError(f"speed must be > 0, was {speed}")
        if len(dataset) == 0:
            raise ConfigError("cannot replay an empty dataset")
        self.dataset = dataset
        self.speed = speed
        self.loop = loop
        self.batch_size = batch_size

    def batches(self) -> Iterator[Dataset]:
        coins = [s.coin for s in self.dataset.series]
        ts = np.concatenate([s.timestamp_ms for s in self.dataset.series])
        price = np.concatenate([s.price for s in self.dataset.series])
        volume = np.concatenate([s.volume for s in self.dataset.series])
        code = np.concatenate(
            [np.full(len(s), i, dtype=np.int64) for i, s in enumerate(self.dataset.series)]
        )
        order = np.argsort(ts, kind="stable")
        ts, price, volume, code = ts[order], price[order], volume[order], code[order]
        span = int(ts[-1] - ts[0]) + 1
        shift = 0
        wall_start = time.perf_counter()
        while not self.closed:
            for start in range(0, len(ts), self.batch_size):
                if self.closed:
                    return
                sl = slice(start, start + self.batch_size)
                if self.speed is not None:
                    due = wall_start + (ts[sl][0] + shift - ts[0]) / 1000.0 / self.speed
                    delay = due - time.perf_counter()
                    if delay > 0:
                        self._stop.wait(delay)
                self.pace(len(ts[sl]))
                yield _split(coins, ts[sl] + shift, price[sl], volume[sl], code[sl])
            if not self.loop:
                return
            shift += span


def _split(
    coins: list[str], ts: np.ndarray, price: np.ndarray, volume: np.ndarray, code: np.ndarray
) -> Dataset:
    series = []
    for i, coin in enumerate(coins):
        mask = code == i
        if mask.any():
            series.append(CoinSeries(coin, ts[mask], price[mask], volume[mask]))
    return Dataset(tuple(series))


def concat_batches(batches: Sequence[Dataset]) -> Dataset:
    """Several consecutive batches as one (per coin, in first-appearance order)."""
    if len(batches) == 1:
        return batches[0]
    parts: dict[str, list[CoinSeries]] = {}
    for batch in batches:
        for s in batch.series:
            parts.setdefault(s.coin, []).append(s)
    series = []
    for coin, pieces in parts.items():
        series.append(
            CoinSeries(
                coin,
                np.concatenate([p.timestamp_ms for p in pieces]),
                np.concatenate([p.price for p in pieces]),
                np.concatenate([p.volume for p in pieces]),
            )
        )
    return Dataset(tuple(series))
