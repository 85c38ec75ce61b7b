"""BinanceSource against a local Binance-like server replaying real trades, through faults."""

from __future__ import annotations

import csv
import gzip
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from fakes.binance_server import FakeBinance, running_binance
from velocitas.core.errors import ConfigError
from velocitas.core.models import CoinSeries
from velocitas.data.binance import BinanceSource, binance_source
from velocitas.engine.live import HFTEngine
from velocitas.strategies.registry import create_strategy

MINUTE_MS = 60_000
COINS = {"BTC": "BTCUSDT", "ETH": "ETHUSDT"}
RATE_PER_S = 20_000.0  # the 18,745 aggTrades replay in about a second
FAST = {
    "stall_timeout_s": 0.5,
    "timeout_s": 1.0,
    "backoff_initial_s": 0.02,
    "max_backoff_s": 0.1,
    "history_minutes": 0,
    "seed": 7,
}
FILES = [
    f"{s}-{kind}" for s in COINS.values() for kind in ("aggTrades.csv", "trades.csv", "1m.csv.gz")
]


@pytest.fixture
def data_dir(shared_file: Callable[[str], Path]) -> Path:
    for name in FILES:  # skip, naming the file, if any is absent
        shared_file(name)
    return shared_file(FILES[0]).parent


def trades_csv(path: Path) -> np.ndarray:
    """(timestamp, price, qty) rows of a trades file, as float64 columns."""
    with path.open() as f:
        rows = [
            (int(r["timestamp"]), float(r["price"]), float(r["qty"])) for r in csv.DictReader(f)
        ]
    return np.array(rows, dtype=np.float64)


def klines_csv(path: Path, rows: int) -> np.ndarray:
    """(open, high, low, close, volume) of the first ``rows`` bars of a kline file."""
    with gzip.open(path, "rt") as f:
        reader = csv.DictReader(f)
        cols = ("open", "high", "low", "close", "volume")
        return np.array(
            [[float(r[c]) for c in cols] for _, r in zip(range(rows), reader, strict=False)]
        )


class Collected:
    """Everything a source delivered, per coin: tick series and bar series, in order."""

    def __init__(self) -> None:
        self.ticks: dict[str, list[CoinSeries]] = {c: [] for c in COINS}
        self.bars: dict[str, list[CoinSeries]] = {c: [] for c in COINS}
        self.first_kinds: list[str] = []

    def add(self, series: CoinSeries) -> None:
        (self.bars if series.is_bars else self.ticks)[series.coin].append(series)
        self.first_kinds.append("bars" if series.is_bars else "ticks")

    def table(self, coin: str, bars: bool = False) -> np.ndarray:
        parts = (self.bars if bars else self.ticks)[coin]
        if not parts:
            return np.empty((0, 6 if bars else 3))
        ts = np.concatenate([s.timestamp_ms for s in parts]).astype(np.float64)
        if bars:
            cols = ("open", "high", "low", "price", "volume")
            return np.column_stack(
                [ts] + [np.concatenate([getattr(s, c) for s in parts]) for c in cols]
            )
        return np.column_stack(
            [ts, *(np.concatenate([getattr(s, c) for s in parts]) for c in ("price", "volume"))]
        )


def collect(
    src: BinanceSource, want: dict[str, int], *, bars: bool = False, timeout_s: float = 20.0
) -> Collected:
    """Read until every coin has ``want`` rows, then 0.3 s more (to catch late duplicates)."""
    got = Collected()
    deadline = threading.Timer(timeout_s, src.close)
    deadline.start()
    grace: threading.Timer | None = None
    try:
        for batch in src.batches():
            for series in batch.series:
                got.add(series)
            counts = {c: len(got.table(c, bars)) for c in want}
            if grace is None and all(counts[c] >= n for c, n in want.items()):
                grace = threading.Timer(0.3, src.close)
                grace.start()
    finally:
        deadline.cancel()
        if grace is not None:
            grace.cancel()
    assert src.join(5.0)
    assert grace is not None, (
        f"timed out: { ({c: len(got.table(c, bars)) for c in want}) }, {src.status()}"
    )
    return got


@pytest.fixture
def binance(data_dir: Path) -> Iterator[Callable[..., tuple[BinanceSource, FakeBinance]]]:
    """Start a fake (with options) and build a source on it (with options); cleans both up."""
    servers: list[Any] = []
    sources: list[BinanceSource] = []

    def start(
        fake_options: dict[str, Any] | None = None, **options: Any
    ) -> tuple[BinanceSource, FakeBinance]:
        fake_options = {"rate_per_s": RATE_PER_S, **(fake_options or {})}
        server = running_binance(data_dir, **fake_options)
        rest_url, ws_url, fake = server.__enter__()
        servers.append(server)
        src = BinanceSource(list(COINS), rest_url=rest_url, ws_url=ws_url, **{**FAST, **options})
        sources.append(src)
        return src, fake

    yield start
    for src in sources:
        src.close()
        src.join(5.0)
    for server in servers:
        server.__exit__(None, None, None)


def assert_every_trade_once_in_order(got: Collected, data_dir: Path, kind: str) -> None:
    for coin, symbol in COINS.items():
        expected = trades_csv(data_dir / f"{symbol}-{kind}.csv")
        delivered = got.table(coin)
        assert delivered.shape == expected.shape, f"{coin}: {len(delivered)} of {len(expected)}"
        np.testing.assert_array_equal(delivered, expected)  # times, prices, quantities


FAULTS: dict[str, Callable[[FakeBinance], None]] = {
    "no fault": lambda fake: None,
    "dropped socket": lambda fake: fake.inject_ws("drop", after=3_000),
    "stalled stream": lambda fake: fake.inject_ws("stall", after=5_000),
    "garbage messages": lambda fake: fake.inject_ws("garbage", after=100, times=3),
    "server close": lambda fake: fake.inject_ws("close", after=4_000),
    "429 while filling": lambda fake: (
        fake.inject_ws("drop", after=3_000),
        fake.inject_rest("429", times=2, path="/api/v3/aggTrades", retry_after_s=0.2),
    ),
    "418 while filling": lambda fake: (
        fake.inject_ws("drop", after=3_000),
        fake.inject_rest("418", path="/api/v3/aggTrades", retry_after_s=0.2),
    ),
    "500 while filling": lambda fake: (
        fake.inject_ws("drop", after=3_000),
        fake.inject_rest("500", times=3, path="/api/v3/aggTrades"),
    ),
    "bad JSON while filling": lambda fake: (
        fake.inject_ws("drop", after=3_000),
        fake.inject_rest("garbage", path="/api/v3/aggTrades"),
    ),
    "REST timeout while filling": lambda fake: (
        fake.inject_ws("drop", after=3_000),
        fake.inject_rest("stall", path="/api/v3/aggTrades"),
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_every_agg_trade_arrives_once_in_order_across(fault, binance, data_dir):
    src, fake = binance({"stall_s": 2.0})
    FAULTS[fault](fake)
    want = {c: len(fake.live("aggTrade", s).keys) for c, s in COINS.items()}
    got = collect(src, want)
    assert_every_trade_once_in_order(got, data_dir, "aggTrades")
    status = src.status()
    if fault != "no fault" and not fault.startswith("garbage"):
        assert status["reconnects"] >= 1
    if fault != "no fault":
        assert status["gaps_filled"] >= 1
    rest_fault = fault.split()[0]
    if rest_fault in ("429", "418", "500"):
        assert int(rest_fault) in fake.served("/api/v3/aggTrades")
        assert status["rest_failures"] >= 1


def test_every_trade_of_the_trade_stream_arrives_once_through_drops_and_garbage(binance, data_dir):
    src, fake = binance(stream="trade")
    fake.inject_ws("garbage", after=1_000)
    fake.inject_ws("drop", after=5_000)
    fake.inject_ws("drop", after=8_000)
    want = {c: len(fake.live("trade", s).keys) for c, s in COINS.items()}
    got = collect(src, want)
    assert_every_trade_once_in_order(got, data_dir, "trades")
    assert src.status()["reconnects"] >= 2
    assert "/api/v3/historicalTrades" in {p for p, _ in fake.requests}


def test_every_minute_of_the_kline_stream_arrives_once_after_warm_history(binance, data_dir):
    history, live = 30, 60
    src, fake = binance(
        {"history_minutes": history, "live_minutes": live, "rate_per_s": 150.0},
        stream="kline_1m",
        history_minutes=history,
    )
    fake.inject_ws("drop", after=40)
    fake.inject_ws("garbage", after=20)
    got = collect(src, dict.fromkeys(COINS, history + live), bars=True)
    for coin, symbol in COINS.items():
        bars = got.table(coin, bars=True)
        opens = fake.t0_ms + MINUTE_MS * np.arange(-history, live)
        np.testing.assert_array_equal(bars[:, 0], opens)  # every minute once, in order
        np.testing.assert_array_equal(
            bars[:, 1:], klines_csv(data_dir / f"{symbol}-1m.csv.gz", history + live)
        )
    assert src.status()["reconnects"] >= 1
    assert src.status()["gaps_filled"] >= 1


def test_history_bars_come_first_then_live_ticks(binance, data_dir):
    src, fake = binance(history_minutes=45)
    got = collect(src, {c: len(fake.live("aggTrade", s).keys) for c, s in COINS.items()})
    assert got.first_kinds[:2] == ["bars", "bars"]
    assert got.first_kinds.index("ticks") == 2
    for coin, symbol in COINS.items():
        bars = got.table(coin, bars=True)
        assert len(bars) == 45
        assert bars[-1, 0] == fake.t0_ms - MINUTE_MS  # the last closed minute before the ticks
        assert bars[-1, 0] < got.table(coin)[0, 0]
        history = klines_csv(data_dir / f"{symbol}-1m.csv.gz", fake.history_minutes)[-45:]
        np.testing.assert_array_equal(bars[:, 1:], history)
    assert_every_trade_once_in_order(got, data_dir, "aggTrades")
    assert src.status()["history_bars"] == 90


def test_connections_are_renewed_before_the_24_hour_limit_without_loss(binance, data_dir):
    src, fake = binance({"rate_per_s": 10_000.0}, max_connection_age_s=0.5)
    got = collect(src, {c: len(fake.live("aggTrade", s).keys) for c, s in COINS.items()})
    assert_every_trade_once_in_order(got, data_dir, "aggTrades")
    assert src.status()["rotations"] >= 1
    assert fake.connections >= 2


def test_server_pings_are_answered_so_no_reconnect_is_needed(binance, data_dir):
    # The server pings every 50 ms and closes a connection that has not answered in 0.5 s.
    pings = {"ws_ping_interval_s": 0.05, "ws_ping_timeout_s": 0.5}
    src, fake = binance({"rate_per_s": 10_000.0, **pings})
    got = collect(src, {c: len(fake.live("aggTrade", s).keys) for c, s in COINS.items()})
    assert_every_trade_once_in_order(got, data_dir, "aggTrades")
    assert src.status()["reconnects"] == 0


def test_status_reports_a_live_connection_and_moving_counters(binance):
    src, fake = binance({"rate_per_s": 2_000.0})
    fake.inject_ws("drop", after=500)
    seen: list[dict[str, Any]] = []
    stream = src.batches()
    deadline = threading.Timer(10.0, src.close)
    deadline.start()
    try:
        for _ in stream:
            status = src.status()
            if (
                status["reconnects"] >= 1
                and status["gaps_filled"] >= 1
                and status["messages_per_s"] > 0
            ):
                seen.append(status)
                break
    finally:
        deadline.cancel()
        stream.close()
    assert seen, src.status()
    assert seen[0]["connected"] is True
    assert seen[0]["last_message_age_s"] < 1.0
    assert seen[0]["messages_per_s"] > 100


def test_unknown_coin_is_refused_before_the_engine_starts(data_dir):
    with running_binance(data_dir) as (rest_url, ws_url, fake):
        settings = SimpleNamespace(
            binance_rest_url=rest_url, binance_ws_url=ws_url, quote_asset="USDT"
        )
        with pytest.raises(ConfigError, match=r"unknown coin 'DOGE' \(DOGEUSDT\).*BTC, ETH"):
            binance_source(["BTC", "DOGE"], settings, **FAST)
        assert fake.connections == 0


def test_engine_runs_a_builtin_strategy_on_the_live_feed(binance):
    src, _ = binance({"rate_per_s": 5_000.0}, history_minutes=60)
    engine = HFTEngine(backend="serial", record=False)
    engine.register_strategy(create_strategy("SMA_Crossover", coin="BTC"))
    engine.start(src)
    try:
        deadline = time.monotonic() + 15.0
        while engine.get_metrics()["engine"]["ticks_processed"] < 2 * 60 + 2_000:
            assert time.monotonic() < deadline, engine.get_metrics()["engine"]
            time.sleep(0.02)
        status = engine.get_metrics()["engine"]["source_status"]
        assert status["connected"] is True
        assert status["history_bars"] == 120
    finally:
        engine.stop()
    assert engine.get_metrics()["engine"]["ticks_processed"] >= 2 * 60 + 2_000
