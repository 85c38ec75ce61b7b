"""Market data and trading records: the types every layer speaks.

Time is always ``int`` UTC epoch milliseconds. Prices are in the quote asset (e.g. USDT),
quantities in the base asset (e.g. BTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class MarketData(NamedTuple):
    """One market update for one coin: a trade tick or a closed bar.

    ``price`` is the traded price (for a bar: its close). ``open``/``high``/``low``/``close``
    are set for bars only. ``timestamp`` is UTC epoch milliseconds (for a bar: its open time).

    A NamedTuple rather than a frozen dataclass on purpose: it is immutable, typed and slotted
    (``__slots__ = ()``) like one, but builds about 4x faster, and the custom-strategy path
    builds one per tick (see ``engine/python_path.py``).
    """

    coin: str
    price: float
    volume: float
    timestamp: int
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None


class Side(StrEnum):
    """Order side, spelled as strategies return it."""

    BUY = "BUY"
    SELL = "SELL"


@dataclass(frozen=True, slots=True)
class CoinSeries:
    """One coin's market data in columnar form, time-ordered.

    Arrays share one length. ``timestamp_ms`` is non-decreasing (strictly increasing for bars).
    OHLC arrays are present for bar data only; ``price`` is then the close.
    """

    coin: str
    timestamp_ms: IntArray
    price: FloatArray
    volume: FloatArray
    open: FloatArray | None = None
    high: FloatArray | None = None
    low: FloatArray | None = None

    def __len__(self) -> int:
        return int(self.timestamp_ms.shape[0])

    @property
    def is_bars(self) -> bool:
        return self.open is not None

    def slice(self, start: int, stop: int) -> CoinSeries:
        """Rows ``start:stop`` as views (no copy)."""
        return CoinSeries(
            coin=self.coin,
            timestamp_ms=self.timestamp_ms[start:stop],
            price=self.price[start:stop],
            volume=self.volume[start:stop],
            open=None if self.open is None else self.open[start:stop],
            high=None if self.high is None else self.high[start:stop],
            low=None if self.low is None else self.low[start:stop],
        )

    def to_market_data(self) -> list[MarketData]:
        """Per-row objects, for tests and small data only (never on a hot path)."""
        out: list[MarketData] = []
        for i in range(len(self)):
            if self.open is None:
                out.append(
                    MarketData(
                        self.coin,
                        float(self.price[i]),
                        float(self.volume[i]),
                        int(self.timestamp_ms[i]),
                    )
                )
            else:
                assert self.high is not None
                assert self.low is not None
                out.append(
                    MarketData(
                        self.coin,
                        float(self.price[i]),
                        float(self.volume[i]),
                        int(self.timestamp_ms[i]),
                        float(self.open[i]),
                        float(self.high[i]),
                        float(self.low[i]),
                        float(self.price[i]),
                    )
                )
        return out


@dataclass(frozen=True, slots=True)
class Dataset:
    """Market data for one or more coins, as loaded from one or more files.

    ``series`` keeps the coins in first-appearance order; that order breaks timestamp ties
    when the coins are merged into one stream (see ``merge_order``).
    """

    series: tuple[CoinSeries, ...]
    source: str = ""

    @property
    def coins(self) -> list[str]:
        return [s.coin for s in self.series]

    def __getitem__(self, coin: str) -> CoinSeries:
        for s in self.series:
            if s.coin == coin:
                return s
        raise KeyError(coin)

    def __len__(self) -> int:
        return sum(len(s) for s in self.series)


@dataclass(frozen=True, slots=True)
class Fill:
    """An executed order. ``fee`` is in the quote asset and was paid from cash."""

    timestamp: int
    coin: str
    side: Side
    price: float
    quantity: float
    fee: float

    def to_dict(self) -> dict[str, object]:
        return {
            "timestamp": self.timestamp,
            "side": self.side.value,
            "price": self.price,
            "quantity": self.quantity,
            "fee": self.fee,
        }
