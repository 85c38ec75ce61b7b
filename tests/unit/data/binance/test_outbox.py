"""Outbox: arrival order per coin, bars before ticks, at most max_rows per take."""

from __future__ import annotations

import threading

import numpy as np

from velocitas.data.binance._outbox import Outbox
from velocitas.data.binance.rest import Kline, Trade


def test_take_splits_ticks_per_coin_keeping_arrival_order():
    box = Outbox(["BTC", "ETH"])
    box.add_trade(0, Trade(1, 1_000, 100.0, 0.5))
    box.add_trade(1, Trade(7, 1_001, 10.0, 2.0))
    box.add_trade(0, Trade(2, 1_002, 101.0, 0.25))
    batch = box.take(100, timeout_s=0.0)
    assert batch is not None
    assert batch.coins == ["BTC", "ETH"]
    assert batch["BTC"].timestamp_ms.tolist() == [1_000, 1_002]
    assert batch["BTC"].price.tolist() == [100.0, 101.0]
    assert batch["BTC"].volume.tolist() == [0.5, 0.25]
    assert batch["ETH"].timestamp_ms.dtype == np.int64
    assert not batch["ETH"].is_bars


def test_bars_come_before_ticks_with_ohlc():
    box = Outbox(["BTC"])
    box.add_trade(0, Trade(1, 120_000, 100.0, 0.5))
    box.add_bar(0, Kline(0, 1.0, 3.0, 0.5, 2.0, 10.0))
    box.add_bar(0, Kline(60_000, 2.0, 4.0, 1.5, 3.0, 11.0))
    bars = box.take(100, timeout_s=0.0)
    ticks = box.take(100, timeout_s=0.0)
    assert bars is not None
    assert ticks is not None
    series = bars["BTC"]
    assert series.is_bars
    assert series.timestamp_ms.tolist() == [0, 60_000]
    assert series.open.tolist() == [1.0, 2.0]
    assert series.high.tolist() == [3.0, 4.0]
    assert series.low.tolist() == [0.5, 1.5]
    assert series.price.tolist() == [2.0, 3.0]  # the close
    assert series.volume.tolist() == [10.0, 11.0]
    assert not ticks["BTC"].is_bars


def test_take_returns_at_most_max_rows_and_keeps_the_rest():
    box = Outbox(["BTC"])
    for i in range(5):
        box.add_trade(0, Trade(i, i, 1.0, 1.0))
    first = box.take(3, timeout_s=0.0)
    second = box.take(3, timeout_s=0.0)
    assert first is not None
    assert second is not None
    assert first["BTC"].timestamp_ms.tolist() == [0, 1, 2]
    assert second["BTC"].timestamp_ms.tolist() == [3, 4]
    assert box.take(3, timeout_s=0.0) is None
    assert box.delivered == 5


def test_take_wakes_up_when_another_thread_adds():
    box = Outbox(["BTC"])
    threading.Timer(0.05, box.add_trade, args=(0, Trade(1, 1, 1.0, 1.0))).start()
    assert box.take(10, timeout_s=2.0) is not None
