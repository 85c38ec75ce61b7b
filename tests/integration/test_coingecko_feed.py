"""CoinGeckoSource against a local CoinGecko-like server replaying real Binance klines."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fakes.coingecko_server import COINS, FakeCoinGecko, running_coingecko
from velocitas.core.errors import ConfigError
from velocitas.core.models import Dataset
from velocitas.data.coingecko import CoinGeckoSource
from velocitas.engine.live import HFTEngine
from velocitas.strategies.registry import create_strategy

MINUTE_MS = 60_000
HISTORY_POINTS = 288 + 1  # one day of 5-minute points, plus "now"
FAST = {
    "poll_interval_s": 0.01,
    "min_request_interval_s": 0.02,
    "timeout_s": 0.3,
    "backoff_initial_s": 0.05,
    "max_backoff_s": 0.2,
}


@pytest.fixture
def coingecko(shared_file: Callable[[str], Path]) -> Iterator[tuple[str, FakeCoinGecko]]:
    data_dir = shared_file("BTCUSDT-1m.csv.gz").parent
    for _, kline_file in COINS.values():  # skip, naming the file, if any is absent
        shared_file(kline_file)
    with running_coingecko(data_dir, live_minutes=200, advance_every=2, stall_s=1.0) as served:
        yield served


def take(src: CoinGeckoSource, until: Callable[[list[Dataset]], bool], timeout_s: float = 10.0):
    """Batches until ``until(batches)`` holds; fails the test on the timeout."""
    timer = threading.Timer(timeout_s, src.close)
    timer.start()
    got: list[Dataset] = []
    stream = src.batches()
    try:
        for batch in stream:
            got.append(batch)
            if until(got):
                break
        else:
            pytest.fail(f"the source stopped after {sum(map(len, got))} ticks")
    finally:
        timer.cancel()
        src.close()
        stream.close()
        assert src.join(5.0)
    return got


def per_coin(batches: list[Dataset]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    parts: dict[str, list[Any]] = {}
    for batch in batches:
        for s in batch.series:
            parts.setdefault(s.coin, []).append((s.timestamp_ms, s.price))
    return {
        coin: (np.concatenate([t for t, _ in p]), np.concatenate([x for _, x in p]))
        for coin, p in parts.items()
    }


def live_ticks(n: int) -> Callable[[list[Dataset]], bool]:
    return lambda got: (
        all(len(ts) >= HISTORY_POINTS + n for ts, _ in per_coin(got).values())
        and len(per_coin(got)) == 2
    )


def test_history_then_every_minute_once_in_order_across_429_418_500_stall_and_garbage(coingecko):
    url, fake = coingecko
    fake.inject("429", path="/coins/ethereum/market_chart", retry_after_s=0.2)
    for fault in ("500", "stall", "garbage", "418", "429"):
        fake.inject(fault, path="/simple/price", retry_after_s=0.1)
    src = CoinGeckoSource(["BTC", "ETH"], base_url=url, **FAST)

    got = take(src, live_ticks(12))

    for coin, coin_id in (("BTC", "bitcoin"), ("ETH", "ethereum")):
        ts, price = per_coin(got)[coin]
        history, live = ts[:HISTORY_POINTS], ts[HISTORY_POINTS:]
        assert np.all(np.diff(ts) > 0), f"{coin}: out of order or duplicated"
        assert np.all(np.diff(history) == 5 * MINUTE_MS)
        # Each poll advances the server one minute every second call: every minute, once.
        assert np.all(np.diff(live) == MINUTE_MS)
        assert live[0] == history[-1] + MINUTE_MS
        klines = fake.klines[coin_id]
        rows = np.searchsorted(klines.ts, ts)
        np.testing.assert_array_equal(klines.ts[rows], ts)
        np.testing.assert_array_equal(klines.close[rows], price)  # the real closes, unchanged
    status = src.status()
    assert status["failures"] == 6
    assert status["reconnects"] == 2  # one recovery in the history, one in the polls
    assert status["last_error"] == "GET /simple/price: HTTP 429 rate limited, Retry-After 0.1 s"
    # (the garbage came with a 200; the stall answered 504 after the client had given up)
    assert [r.status for r in fake.served("/simple/price")][:6] == [500, 504, 200, 418, 429, 200]


def test_requests_never_exceed_the_client_side_rate_limit(coingecko):
    url, fake = coingecko
    src = CoinGeckoSource(
        ["BTC", "ETH", "SOL", "BNB"], base_url=url, **{**FAST, "min_request_interval_s": 0.1}
    )
    started = time.monotonic()
    take(src, lambda got: time.monotonic() - started > 1.5)

    arrivals = np.array([r.at for r in fake.requests])
    assert len(arrivals) >= 12  # 4 histories and some polls were made
    assert np.diff(arrivals).min() >= 0.09
    # At most 10 requests a second (a 0.99 s window leaves room for arrival jitter).
    per_window = [np.sum((arrivals >= t) & (arrivals < t + 0.99)) for t in arrivals]
    assert max(per_window) <= 10


def test_an_outage_is_filled_from_market_chart_when_polls_come_back(coingecko):
    url, fake = coingecko
    src = CoinGeckoSource(["BTC"], base_url=url, gap_fill_after_s=0.15, **FAST)
    stream_started = threading.Event()

    def outage() -> None:
        stream_started.wait(5.0)
        fake.inject("500", times=3, path="/simple/price")
        fake.skip_minutes(30)  # time passes on the server while the client cannot poll

    threading.Thread(target=outage, daemon=True).start()

    def enough(got: list[Dataset]) -> bool:
        stream_started.set()
        return src.status()["gaps_filled"] == 1 and len(got) > 3

    got = take(src, enough)
    ts, _ = per_coin(got)["BTC"]
    assert np.all(np.diff(ts) > 0)
    steps = np.diff(ts[HISTORY_POINTS:])
    assert np.any(steps == 5 * MINUTE_MS), "the gap's 5-minute points were sent"
    assert steps.max() <= 5 * MINUTE_MS, "nothing longer than the chart's step was missed"


def test_unknown_coin_is_refused_before_start_and_a_listed_symbol_is_found(coingecko):
    url, _ = coingecko
    with pytest.raises(ConfigError, match="unknown coin 'NOPE'"):
        CoinGeckoSource(["BTC", "NOPE"], base_url=url, **FAST)
    assert CoinGeckoSource(["TRUMP"], base_url=url, **FAST).coin_ids == {"TRUMP": "official-trump"}


def test_engine_runs_strategies_on_the_coingecko_feed(coingecko):
    url, _ = coingecko
    src = CoinGeckoSource(["BTC", "ETH"], base_url=url, **FAST)
    engine = HFTEngine(backend="serial")
    engine.register_strategy(create_strategy("SMA_Crossover", coin="BTC"))
    engine.start(src)
    try:
        deadline = time.monotonic() + 10.0
        while engine.get_metrics()["engine"]["ticks_in"] < 2 * HISTORY_POINTS + 10:
            assert time.monotonic() < deadline, engine.get_metrics()["engine"]
            time.sleep(0.02)
        status = engine.get_metrics()["engine"]["source_status"]
        assert status["connected"] is True
        assert status["last_message_age_s"] < 1.0
    finally:
        engine.stop()
        assert src.join(5.0)
    assert engine.get_metrics()["engine"]["ticks_processed"] >= 2 * HISTORY_POINTS + 10
