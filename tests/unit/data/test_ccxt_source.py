"""CcxtSource with a scripted stand-in exchange: setup errors, dedupe, history, faults."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from velocitas.core.errors import ConfigError, DataError
from velocitas.core.models import Dataset
from velocitas.data.ccxt_source import CcxtSource, ccxt_source

MINUTE_MS = 60_000
T0 = 1_723_161_240_000
FAST = {"poll_interval_s": 0.01, "backoff_initial_s": 0.01, "max_backoff_s": 0.05}


@pytest.fixture
def ccxt() -> Any:
    return pytest.importorskip(
        "ccxt", reason='ccxt is an optional extra: pip install "velocitas[ccxt]"'
    )


def trade(ts: int, trade_id: int, price: float = 100.0, amount: float = 0.5) -> dict[str, Any]:
    """A trade in ccxt's unified structure (the fields the source reads, plus a few)."""
    return {"id": str(trade_id), "timestamp": ts, "symbol": "BTC/USDT", "side": "buy",
            "price": price, "amount": amount, "cost": price * amount}  # fmt: skip


class ScriptedExchange:
    """Duck-typed ccxt exchange: markets, and fetch answers in order (the last one repeats)."""

    id = "binance"
    timeout = 10_000

    def __init__(self, trades: list[Any], ohlcv: list[Any] | None = None, markets: Any = None):
        self.markets = markets if markets is not None else {"BTC/USDT": {}, "BTC/EUR": {}}
        self.has: dict[str, Any] = {"fetchTrades": True, "fetchOHLCV": True}
        self.answers = trades
        self.ohlcv = ohlcv or [[]]
        self.calls: list[tuple[str, int | None, int | None]] = []
        self.last_response_headers: dict[str, str] = {}
        self.last_http_response: str | None = None
        self.now_ms = T0 + 10 * MINUTE_MS
        self.closed = False

    def load_markets(self) -> dict[str, Any]:
        if isinstance(self.markets, Exception):
            raise self.markets
        return self.markets

    def fetch_trades(self, symbol: str, since: int | None = None, limit: int | None = None):
        self.calls.append((symbol, since, limit))
        return self._next(self.answers)

    def fetch_ohlcv(self, symbol: str, timeframe: str, limit: int | None = None):
        return self._next(self.ohlcv)

    def _next(self, answers: list[Any]) -> Any:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, tuple):  # (raw body, parsed): what ccxt does with a body
            self.last_http_response, answer = answer
        if isinstance(answer, Exception):
            raise answer
        return answer

    def parse_timeframe(self, timeframe: str) -> int:
        return {"1m": 60, "1h": 3600}[timeframe]  # ccxt raises too on what it cannot read

    def milliseconds(self) -> int:
        return self.now_ms

    def close(self) -> None:
        self.closed = True


def take(src: CcxtSource, until: Callable[[list[Dataset]], bool], timeout_s: float = 5.0):
    timer = threading.Timer(timeout_s, src.close)
    timer.start()
    got: list[Dataset] = []
    stream = src.batches()
    try:
        for batch in stream:
            got.append(batch)
            if until(got):
                break
    finally:
        timer.cancel()
        src.close()
        stream.close()
        assert src.join(5.0)
    return got


def ticks(got: list[Dataset]) -> list[tuple[int, float]]:
    pairs = [zip(s.timestamp_ms, s.price, strict=True) for b in got for s in b.series]
    return [(int(t), float(p)) for pair in pairs for t, p in pair]


def count(n: int) -> Callable[[list[Dataset]], bool]:
    return lambda got: sum(map(len, got)) >= n


# -- setup ----------------------------------------------------------------------------------
def test_missing_ccxt_raises_config_error_saying_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ccxt", None)  # what an absent package looks like
    with pytest.raises(ConfigError, match=r'pip install "velocitas\[ccxt\]"'):
        CcxtSource("kraken", ["BTC"])


def test_unknown_exchange_id_raises_config_error_with_a_suggestion(ccxt):
    with pytest.raises(ConfigError, match=r"unknown ccxt exchange 'krakn'; did you mean kraken"):
        CcxtSource("krakn", ["BTC"])


def test_exchange_object_of_another_id_is_refused(ccxt):
    with pytest.raises(ConfigError, match="is a 'binance' exchange, not 'kraken'"):
        CcxtSource("kraken", ["BTC"], exchange=ScriptedExchange([[]]))


def test_coin_without_a_market_raises_config_error_listing_the_coins_markets(ccxt):
    exchange = ScriptedExchange([[]], markets={"BTC/EUR": {}, "BTC/USD": {}, "ETH/USDT": {}})
    with pytest.raises(
        ConfigError, match=r"binance has no BTC/USDT market; it lists BTC/EUR, BTC/USD"
    ):
        CcxtSource("binance", ["BTC"], exchange=exchange)


def test_history_needs_fetch_ohlcv_and_a_readable_timeframe(ccxt):
    exchange = ScriptedExchange([[]])
    with pytest.raises(ConfigError, match="timeframe must be like '1m' or '1h', was '1 minute'"):
        CcxtSource("binance", ["BTC"], exchange=exchange, history_bars=5, timeframe="1 minute")
    exchange.has = {"fetchTrades": True, "fetchOHLCV": False}
    with pytest.raises(ConfigError, match="binance does not support fetchOHLCV"):
        CcxtSource("binance", ["BTC"], exchange=exchange, history_bars=5)


def test_markets_that_cannot_be_loaded_raise_data_error(ccxt):
    exchange = ScriptedExchange([[]], markets=ccxt.NetworkError("binance GET exchangeInfo"))
    with pytest.raises(DataError, match=r"could not load the exchange's markets.*NetworkError"):
        CcxtSource("binance", ["BTC"], exchange=exchange)


def test_factory_names_the_source_and_refuses_unknown_options(ccxt):
    src = ccxt_source("binance", ["btc"], exchange=ScriptedExchange([[]]), poll_interval_s=1.0)
    assert (src.name, src.symbols) == ("ccxt:binance", {"BTC": "BTC/USDT"})
    with pytest.raises(ConfigError, match="unknown ccxt:binance option"):
        ccxt_source("binance", ["BTC"], exchange=ScriptedExchange([[]]), speed=2)


# -- trades ---------------------------------------------------------------------------------
def test_overlapping_pages_send_every_trade_once_in_time_order(ccxt):
    exchange = ScriptedExchange(
        [
            [trade(T0, 1, 10.0), trade(T0 + 5, 2, 11.0), trade(T0 + 5, 3, 12.0)],
            [trade(T0 + 5, 2, 11.0), trade(T0 + 5, 3, 12.0), trade(T0 + 5, 4, 13.0)],
            [trade(T0 + 9, 6, 15.0), trade(T0 + 5, 4, 13.0), trade(T0 + 7, 5, 14.0)],  # unsorted
            [],
        ]
    )
    got = take(CcxtSource("binance", ["BTC"], exchange=exchange, **FAST), count(6))
    assert ticks(got) == [(T0, 10.0), (T0 + 5, 11.0), (T0 + 5, 12.0), (T0 + 5, 13.0),
                          (T0 + 7, 14.0), (T0 + 9, 15.0)]  # fmt: skip
    sinces = [since for _, since, _ in exchange.calls]
    assert sinces[:3] == [None, T0 + 5, T0 + 5]  # each fetch starts at the last trade seen


def test_history_sends_closed_bars_then_trades_after_the_last_bar(ccxt):
    bars = [[T0 + i * MINUTE_MS, 1.0, 2.0, 0.5, 100.0 + i, 3.0] for i in range(10)]
    exchange = ScriptedExchange(
        [[trade(T0 + 9 * MINUTE_MS - 1, 1), trade(T0 + 9 * MINUTE_MS, 2, 200.0)]], ohlcv=[bars]
    )
    exchange.now_ms = T0 + 9 * MINUTE_MS + 30_000  # the tenth bar is still open
    src = CcxtSource("binance", ["BTC"], exchange=exchange, history_bars=3, **FAST)
    got = take(src, count(4))
    assert ticks(got) == [(T0 + 6 * MINUTE_MS, 106.0), (T0 + 7 * MINUTE_MS, 107.0),
                          (T0 + 8 * MINUTE_MS, 108.0), (T0 + 9 * MINUTE_MS, 200.0)]  # fmt: skip
    assert exchange.calls[0][1] == T0 + 9 * MINUTE_MS


def test_a_full_page_is_followed_at_once_by_the_next(ccxt):
    exchange = ScriptedExchange([[trade(T0, 1), trade(T0 + 1, 2)], [trade(T0 + 2, 3)], []])
    src = CcxtSource("binance", ["BTC"], exchange=exchange, trades_limit=2, poll_interval_s=30.0)
    got = take(src, count(3), timeout_s=2.0)
    assert [t for t, _ in ticks(got)] == [T0, T0 + 1, T0 + 2]
    assert [limit for *_, limit in exchange.calls[:2]] == [2, 2]


@pytest.mark.parametrize(
    ("failure", "logged"),
    [
        ("rate", "rate limited, Retry-After 0 s"),
        ("ddos", "rate limited"),
        ("timeout", "no answer within 10 s"),
        ("down", "ExchangeNotAvailable: binance 503"),
        ("garbage", 'malformed JSON: \'[{"id": 1, "pri\''),
        ("bug", "unreadable trades"),
    ],
)
def test_each_failure_logs_one_line_and_polling_goes_on(ccxt, caplog, failure, logged):
    answers = {
        "rate": ccxt.RateLimitExceeded("binance 429"),
        "ddos": ccxt.DDoSProtection("binance 418"),
        "timeout": ccxt.RequestTimeout("binance GET aggTrades"),
        "down": ccxt.ExchangeNotAvailable("binance 503 Service Unavailable"),
        "garbage": ('[{"id": 1, "pri', []),
        "bug": [{"id": "1", "timestamp": "soon", "price": 1.0, "amount": 1.0}],
    }
    exchange = ScriptedExchange([answers[failure], ('[{"id": "2"}]', [trade(T0, 2)])])
    exchange.last_response_headers = {"Retry-After": "0"}
    src = CcxtSource("binance", ["BTC"], exchange=exchange, **FAST)
    with caplog.at_level(logging.WARNING, logger="velocitas.data"):
        got = take(src, count(1))
    assert ticks(got) == [(T0, 100.0)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert logged in warnings[0]
    status = src.status()
    assert (status["failures"], status["reconnects"]) == (1, 1)


def test_a_fetch_after_a_failed_one_counts_as_a_filled_gap(ccxt):
    exchange = ScriptedExchange(
        [[trade(T0, 1)], ccxt.NetworkError("reset"), [trade(T0 + 9, 2)], []]
    )
    src = CcxtSource("binance", ["BTC"], exchange=exchange, **FAST)
    take(src, count(2))
    assert exchange.calls[2][1] == T0  # fetched from the last trade seen
    assert src.status()["gaps_filled"] == 1


def test_an_exchange_passed_in_is_left_open(ccxt):
    exchange = ScriptedExchange([[trade(T0, 1)]])
    take(CcxtSource("binance", ["BTC"], exchange=exchange, **FAST), count(1))
    assert exchange.closed is False


def test_an_exchange_built_here_is_rate_limited_timed_out_and_closed_at_the_end(ccxt, monkeypatch):
    built: list[tuple[dict[str, Any], ScriptedExchange]] = []

    def binance(config: dict[str, Any]) -> ScriptedExchange:
        built.append((config, ScriptedExchange([[trade(T0, 1)]])))
        return built[-1][1]

    monkeypatch.setattr(ccxt, "binance", binance)
    src = CcxtSource("binance", ["BTC"], timeout_s=2.5, exchange_options={"verbose": False}, **FAST)
    take(src, count(1))
    config, exchange = built[0]
    assert config == {"enableRateLimit": True, "timeout": 2500, "verbose": False}
    assert exchange.closed is True
