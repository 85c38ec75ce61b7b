"""BinanceRest against httpx.MockTransport: parsing of real bodies, retries, final errors."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import orjson
import pytest

from velocitas.core.errors import ConfigError, DataError
from velocitas.data.binance.rest import BinanceRequestError, BinanceRest, Kline, Trade

# Real bodies, from shared/fixtures/binance_spot_rest_api_v3_*.json (first rows).
KLINES = [
    [1634943780000, "60685.22000000", "60729.84000000", "60670.90000000", "60719.27000000",
     "21.63272000", 1634943839999, "1313200.01340410", 617, "12.28492000", "745719.41022840", "0"],
    [1634943840000, "60719.28000000", "60780.41000000", "60707.00000000", "60771.81000000",
     "21.91797000", 1634943899999, "1331667.75064580", 769, "11.54481000", "701336.15460230", "0"],
]  # fmt: skip
AGG_TRADES = [
    {"a": 966492862, "p": "60759.60000000", "q": "0.00841000", "f": 1111480471,
     "l": 1111480471, "T": 1634944096633, "m": False, "M": True},
    {"a": 966492863, "p": "60759.60000000", "q": "0.00189000", "f": 1111480472,
     "l": 1111480472, "T": 1634944096848, "m": False, "M": True},
]  # fmt: skip
TRADES = [
    {"id": 1111468873, "price": "60650.00000000", "qty": "0.02924000",
     "quoteQty": "1773.40600000", "time": 1634942949263, "isBuyerMaker": True, "isBestMatch": True},
]  # fmt: skip
INVALID_SYMBOL = {"code": -1121, "msg": "Invalid symbol."}

Handler = Callable[[httpx.Request], httpx.Response]


class RecordedWaits(threading.Event):
    """A stop event whose ``wait`` records the delay and returns at once (no real sleeping)."""

    def __init__(self) -> None:
        super().__init__()
        self.delays: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.delays.append(timeout or 0.0)
        return self.is_set()


def answers(*responses: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler giving ``responses`` in turn (exceptions are raised), and the requests seen."""
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handle, seen


@contextmanager
def client(handler: Handler, **options: object) -> Iterator[BinanceRest]:
    options.setdefault("backoff_initial_s", 0.5)
    options.setdefault("max_backoff_s", 8.0)
    with BinanceRest(
        "https://api.test", transport=httpx.MockTransport(handler), seed=1, **options
    ) as rest:
        yield rest


def test_klines_parses_real_rows_and_sends_the_window():
    handle, seen = answers(httpx.Response(200, json=KLINES))
    with client(handle) as rest:
        bars = rest.klines("BTCUSDT", start_ms=1634943780000, end_ms=1634943899999, limit=2)
    assert bars[0] == Kline(1634943780000, 60685.22, 60729.84, 60670.90, 60719.27, 21.63272)
    assert bars[1].open_ms == 1634943840000
    assert seen[0].url.path == "/api/v3/klines"
    assert dict(seen[0].url.params) == {
        "symbol": "BTCUSDT",
        "interval": "1m",
        "limit": "2",
        "startTime": "1634943780000",
        "endTime": "1634943899999",
    }


def test_agg_trades_and_historical_trades_parse_ids_times_prices_quantities():
    handle, seen = answers(httpx.Response(200, json=AGG_TRADES), httpx.Response(200, json=TRADES))
    with client(handle) as rest:
        agg = rest.agg_trades("BTCUSDT", from_id=966492862)
        trades = rest.historical_trades("BTCUSDT", from_id=1111468873, limit=1)
    assert agg == [
        Trade(966492862, 1634944096633, 60759.6, 0.00841),
        Trade(966492863, 1634944096848, 60759.6, 0.00189),
    ]
    assert trades == [Trade(1111468873, 1634942949263, 60650.0, 0.02924)]
    assert seen[0].url.params["fromId"] == "966492862"
    assert seen[1].url.path == "/api/v3/historicalTrades"


def test_exchange_info_asks_for_the_symbols_as_a_json_array():
    handle, seen = answers(httpx.Response(200, json={"symbols": [{"symbol": "BTCUSDT"}]}))
    with client(handle) as rest:
        info = rest.exchange_info(["BTCUSDT", "ETHUSDT"])
    assert info["symbols"] == [{"symbol": "BTCUSDT"}]
    assert orjson.loads(seen[0].url.params["symbols"]) == ["BTCUSDT", "ETHUSDT"]


@pytest.mark.parametrize("status", [429, 418])
def test_rate_limit_and_ban_wait_the_retry_after_then_succeed(status, caplog):
    stop = RecordedWaits()
    limited = httpx.Response(status, json={"code": -1003}, headers={"Retry-After": "7"})
    handle, seen = answers(limited, httpx.Response(200, json=AGG_TRADES))
    with caplog.at_level(logging.WARNING), client(handle, stop=stop) as rest:
        trades = rest.agg_trades("BTCUSDT", from_id=1)
    assert len(trades) == 2
    assert len(seen) == 2
    assert stop.delays == [7.0]  # the server's wait wins over the 0.5 s back-off
    lines = [r.getMessage() for r in caplog.records if r.name.endswith("rest")]
    assert len(lines) == 1
    assert f"HTTP {status}" in lines[0]
    assert "Retry-After=7" in lines[0]


def test_5xx_timeouts_connection_errors_and_bad_json_back_off_doubling_with_jitter(caplog):
    stop = RecordedWaits()
    handle, seen = answers(
        httpx.Response(500),
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectError("connection refused"),
        httpx.Response(200, content=b'[[1634943780000, "60685.2'),  # cut off: malformed JSON
        httpx.Response(200, json={"unexpected": "object"}),  # JSON, but not klines
        httpx.Response(200, json=KLINES),
    )
    with caplog.at_level(logging.WARNING), client(handle, stop=stop, max_attempts=6) as rest:
        bars = rest.klines("BTCUSDT")
    assert len(bars) == 2
    assert len(seen) == 6
    assert rest.failures == 5
    for delay, base in zip(stop.delays, [0.5, 1.0, 2.0, 4.0, 8.0], strict=True):
        assert base * 0.5 <= delay <= base  # doubling back-off, jittered down by up to half
    reasons = [r.getMessage() for r in caplog.records if r.name.endswith("rest")]
    assert len(reasons) == 5
    for line, cause in zip(
        reasons,
        ["HTTP 500", "timed out", "ConnectError", "malformed JSON", "unexpected JSON"],
        strict=True,
    ):
        assert cause in line
        assert "retrying in" in line


def test_invalid_symbol_is_final_with_binance_code_and_no_retry():
    handle, seen = answers(httpx.Response(400, json=INVALID_SYMBOL))
    with client(handle) as rest, pytest.raises(BinanceRequestError, match="Invalid symbol") as e:
        rest.klines("NOPEUSDT")
    assert e.value.code == -1121
    assert e.value.status == 400
    assert isinstance(e.value, DataError)
    assert len(seen) == 1


def test_gives_up_after_max_attempts_naming_the_last_reason():
    stop = RecordedWaits()
    handle, seen = answers(*[httpx.Response(503)] * 3)
    with (
        client(handle, stop=stop, max_attempts=3) as rest,
        pytest.raises(BinanceRequestError, match=r"HTTP 503 \(after 3 attempts\)"),
    ):
        rest.server_time_ms()
    assert len(seen) == 3
    assert len(stop.delays) == 2


def test_a_set_stop_event_ends_the_retries_at_once():
    stop = RecordedWaits()
    stop.set()
    handle, seen = answers(httpx.Response(500))
    with (
        client(handle, stop=stop, max_attempts=None) as rest,
        pytest.raises(BinanceRequestError, match="closed"),
    ):
        rest.agg_trades("BTCUSDT", from_id=1)
    assert seen == []


def test_retries_forever_when_max_attempts_is_none_until_an_answer():
    stop = RecordedWaits()
    handle, seen = answers(*[httpx.Response(502)] * 12, httpx.Response(200, json=AGG_TRADES))
    with client(handle, stop=stop, max_attempts=None, max_backoff_s=1.0) as rest:
        assert len(rest.agg_trades("BTCUSDT", from_id=1)) == 2
    assert len(seen) == 13
    assert max(stop.delays) <= 1.0


@pytest.mark.parametrize(
    "options",
    [{"timeout_s": 0}, {"max_attempts": 0}, {"backoff_initial_s": 2.0, "max_backoff_s": 1.0}],
)
def test_bad_options_raise_config_error(options):
    with pytest.raises(ConfigError):
        BinanceRest("https://api.test", **options)
