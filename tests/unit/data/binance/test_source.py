"""BinanceSource without a network: symbols, options, history paging, status, the factory."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest

from velocitas.core.errors import ConfigError, DataError
from velocitas.core.models import Dataset
from velocitas.data.binance import BinanceSource, binance_source

MINUTE_MS = 60_000
NOW_MS = 1_723_161_255_342  # inside the minute opening at 1_723_161_240_000
FAST = {"backoff_initial_s": 0.01, "max_backoff_s": 0.02, "timeout_s": 1.0, "seed": 0}


def listing_entry(base: str, quote: str = "USDT", status: str = "TRADING") -> dict[str, Any]:
    """An exchangeInfo symbol in the real layout (shared/fixtures, trimmed)."""
    return {
        "symbol": f"{base}{quote}",
        "status": status,
        "baseAsset": base,
        "quoteAsset": quote,
        "permissions": ["SPOT"],
    }


LISTING = [listing_entry(b) for b in ("BTC", "ETH", "BNB", "SOL", "XRP", "ADA")] + [
    listing_entry("ETH", "BTC"),
    listing_entry("LUNA", status="BREAK"),
]


def kline_row(open_ms: int) -> list[Any]:
    price = f"{100 + (open_ms // MINUTE_MS) % 50:.8f}"
    return [open_ms, price, price, price, price, "1.50000000", open_ms + MINUTE_MS - 1]
    # (the real rows have 12 fields; the source reads the first six)


class FakeExchange:
    """A MockTransport handler for exchangeInfo and klines; counts requests per path."""

    def __init__(self, listing: list[dict[str, Any]] = LISTING) -> None:
        self.listing = listing
        self.paths: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.paths.append(request.url.path)
        params = request.url.params
        if request.url.path == "/api/v3/exchangeInfo":
            if "symbols" in params:
                wanted = params["symbols"].strip("[]").replace('"', "").split(",")
                known = {s["symbol"]: s for s in self.listing}
                if any(w not in known for w in wanted):
                    return httpx.Response(400, json={"code": -1121, "msg": "Invalid symbol."})
                return httpx.Response(200, json={"symbols": [known[w] for w in wanted]})
            return httpx.Response(200, json={"serverTime": NOW_MS, "symbols": self.listing})
        if request.url.path == "/api/v3/klines":
            newest = NOW_MS - NOW_MS % MINUTE_MS  # the open bar
            end = min(int(params.get("endTime", newest)), newest)
            end -= end % MINUTE_MS
            limit = int(params["limit"])
            opens = range(end - (limit - 1) * MINUTE_MS, end + 1, MINUTE_MS)
            return httpx.Response(200, json=[kline_row(t) for t in opens])
        return httpx.Response(404, json={"code": -1, "msg": "not here"})


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return int(port)


def source(coins: list[str], exchange: FakeExchange | None = None, **options: Any) -> BinanceSource:
    return BinanceSource(
        coins,
        rest_url="https://api.test",
        ws_url=f"ws://127.0.0.1:{closed_port()}",  # the stream never connects in these tests
        transport=httpx.MockTransport(exchange or FakeExchange()),
        **{**FAST, **options},
    )


def test_known_coins_map_to_quote_symbols_and_validate_with_one_request():
    exchange = FakeExchange()
    src = source(["btc", "ETH"], exchange)
    assert src.symbols == {"BTCUSDT": 0, "ETHUSDT": 1}
    assert exchange.paths == ["/api/v3/exchangeInfo"]
    src.close()


def test_quote_asset_is_configurable():
    src = source(["ETH"], quote_asset="btc")
    assert list(src.symbols) == ["ETHBTC"]
    src.close()


def test_unknown_coin_raises_config_error_naming_it_and_valid_ones():
    with pytest.raises(ConfigError) as e:
        source(["BTC", "ETHH"])
    message = str(e.value)
    assert "'ETHH' (ETHHUSDT)" in message
    assert "BTC, ETH, BNB, SOL, XRP" in message
    assert "did you mean ETH" in message


def test_coin_not_trading_raises_config_error_with_its_status():
    with pytest.raises(ConfigError, match=r"LUNA \(LUNAUSDT: BREAK\)"):
        source(["LUNA"])


def test_unreachable_exchange_info_raises_data_error_after_the_attempts():
    calls: list[int] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("connection refused")

    with pytest.raises(DataError, match="after 2 attempts"):
        BinanceSource(
            ["BTC"], rest_url="https://api.test", transport=httpx.MockTransport(refuse),
            validate_attempts=2, **FAST,
        )  # fmt: skip
    assert len(calls) == 2


def test_validate_false_makes_no_request_until_validate_is_called():
    exchange = FakeExchange()
    src = source(["BTC"], exchange, validate=False)
    assert exchange.paths == []
    src.validate()
    assert exchange.paths == ["/api/v3/exchangeInfo"]
    src.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"stream": "depth"}, "stream must be one of aggTrade, trade, kline_1m"),
        ({"history_minutes": -1}, "history_minutes"),
        ({"batch_max": 0}, "batch_max"),
        ({"quote_asset": "US-D"}, "quote_asset"),
        ({"stall_timeout_s": 0}, "stall_timeout_s"),
    ],
)
def test_bad_options_raise_config_error_before_any_request(options, message):
    exchange = FakeExchange()
    with pytest.raises(ConfigError, match=message):
        source(["BTC"], exchange, **options)
    assert exchange.paths == []


@pytest.mark.parametrize("coins", [[], ["BTC", "btc"], ["BTC/USDT"]])
def test_empty_or_repeated_coins_raise_config_error(coins):
    with pytest.raises(ConfigError, match="coins"):
        source(coins)


def first_batches(src: BinanceSource, rows: int, timeout_s: float = 5.0) -> list[Dataset]:
    got: list[Dataset] = []
    timer = threading.Timer(timeout_s, src.close)
    timer.start()
    stream = src.batches()
    try:
        for batch in stream:
            got.append(batch)
            if sum(map(len, got)) >= rows:
                break
    finally:
        timer.cancel()
        stream.close()  # returns only once the background thread has ended
    return got


def test_history_pages_back_and_delivers_closed_bars_first_oldest_first():
    exchange = FakeExchange()
    src = source(["BTC", "ETH"], exchange, history_minutes=1_500)
    batches = first_batches(src, 3_000)
    bars = {
        c: np.concatenate([b[c].timestamp_ms for b in batches if c in b.coins]) for c in src.coins
    }
    newest_closed = NOW_MS - NOW_MS % MINUTE_MS - MINUTE_MS
    for coin in ("BTC", "ETH"):
        assert len(bars[coin]) == 1_500
        assert bars[coin][-1] == newest_closed
        assert np.all(np.diff(bars[coin]) == MINUTE_MS)
    first = batches[0].series[0]
    assert first.is_bars
    assert first.open is not None
    assert first.price[0] == 100 + (first.timestamp_ms[0] // MINUTE_MS) % 50
    assert exchange.paths.count("/api/v3/klines") == 4  # 1,000 + 501 per coin
    assert src.status()["history_bars"] == 3_000
    assert src.join(0.0)


def test_batches_respect_batch_max():
    src = source(["BTC"], history_minutes=50, batch_max=20)
    batches = first_batches(src, 50)
    assert [len(b) for b in batches] == [20, 20, 10]


def test_close_from_another_thread_ends_batches_soon_and_cleans_up():
    src = source(["BTC"], history_minutes=0, stall_timeout_s=5.0)
    threading.Timer(0.2, src.close).start()
    started = time.monotonic()
    assert list(src.batches()) == []
    assert time.monotonic() - started < 2.0
    assert src.join(0.0)
    status = src.status()
    assert status["connected"] is False
    assert status["reconnects"] == 0
    assert "ConnectionRefused" in str(status["last_error"]) or "Errno" in str(status["last_error"])


def test_a_source_streams_once():
    src = source(["BTC"], history_minutes=0)
    stream = src.batches()
    threading.Timer(0.05, src.close).start()
    list(stream)
    with pytest.raises(ConfigError, match="streams once"):
        next(src.batches())


def test_status_has_the_engine_fields_before_start():
    src = source(["BTC"])
    status = src.status()
    for key in ("connected", "last_message_age_s", "reconnects", "messages_per_s", "gaps_filled"):
        assert key in status
    assert status["connected"] is False
    assert status["last_message_age_s"] is None
    src.close()


def test_factory_reads_urls_and_quote_from_settings():
    settings = SimpleNamespace(
        binance_rest_url="https://api.test",
        binance_ws_url="wss://stream.test:9443",
        quote_asset="BTC",
    )
    src = binance_source(["ETH"], settings, transport=httpx.MockTransport(FakeExchange()), **FAST)
    assert src.rest_url == "https://api.test"
    assert src.ws_url == "wss://stream.test:9443"
    assert list(src.symbols) == ["ETHBTC"]
    src.close()


def test_factory_rejects_unknown_options_naming_them():
    settings = SimpleNamespace(binance_rest_url="x", binance_ws_url="y", quote_asset="USDT")
    with pytest.raises(ConfigError, match=r"unknown binance option.*speed"):
        binance_source(["BTC"], settings, speed=2.0)
