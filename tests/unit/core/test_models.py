"""Core market data types."""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pytest

from velocitas.core.models import CoinSeries, Dataset, Fill, MarketData, Side


def test_market_data_is_immutable_typed_and_slotted():
    md = MarketData("BTC", 100.5, 2.0, 1_700_000_000_000)
    assert (md.coin, md.price, md.volume, md.timestamp) == ("BTC", 100.5, 2.0, 1_700_000_000_000)
    assert md.open is None
    assert md.close is None
    with pytest.raises(AttributeError):
        md.price = 1.0  # type: ignore[misc]
    assert MarketData.__slots__ == ()
    assert typing.get_type_hints(MarketData)["timestamp"] is int


def test_bar_market_data_carries_ohlc():
    md = MarketData("ETH", 10.0, 1.0, 0, open=9.0, high=11.0, low=8.5, close=10.0)
    assert (md.open, md.high, md.low, md.close) == (9.0, 11.0, 8.5, 10.0)


def _series(n: int = 5, bars: bool = False) -> CoinSeries:
    p = np.arange(1, n + 1, dtype=np.float64)
    return CoinSeries(
        "BTC", np.arange(n, dtype=np.int64) * 1000, p, np.ones(n),
        open=p - 0.5 if bars else None, high=p + 1 if bars else None,
        low=p - 1 if bars else None,
    )  # fmt: skip


def test_coin_series_slices_are_views_and_keep_bars():
    s = _series(10, bars=True)
    part = s.slice(2, 5)
    assert len(part) == 3
    assert part.is_bars
    assert np.shares_memory(part.price, s.price)
    assert part.to_market_data()[0] == MarketData("BTC", 3.0, 1.0, 2000, 2.5, 4.0, 2.0, 3.0)


def test_dataset_finds_coins_and_counts_rows():
    d = Dataset((_series(3), dataclasses.replace(_series(4), coin="ETH")))
    assert d.coins == ["BTC", "ETH"]
    assert len(d) == 7
    assert len(d["ETH"]) == 4
    with pytest.raises(KeyError):
        d["DOGE"]


def test_fill_dict_has_the_cli_trade_fields():
    f = Fill(1, "BTC", Side.BUY, 100.0, 0.5, 0.05)
    assert f.to_dict() == {"timestamp": 1, "side": "BUY", "price": 100.0, "quantity": 0.5,
                           "fee": 0.05}  # fmt: skip
