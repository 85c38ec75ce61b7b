"""CoinGeckoSource against scripted answers (httpx.MockTransport): ids, ticks, faults, status."""

from __future__ import annotations

import logging
import threading
import time
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest

from velocitas.core.errors import ConfigError
from velocitas.core.models import Dataset
from velocitas.data._polling import Backoff, parse_retry_after
from velocitas.data.coingecko import COIN_IDS, CoinGeckoSource, coingecko_source

BASE = "https://api.coingecko.test/api/v3"
T0_MS = 1_779_027_899_041  # the first point of the market_chart fixture
FAST = {
    "poll_interval_s": 0.01,
    "min_request_interval_s": 0.0,
    "backoff_initial_s": 0.01,
    "max_backoff_s": 0.05,
    "timeout_s": 1.0,
}
Answer = httpx.Response | Exception


# -- factories: payloads in the shapes of shared/fixtures/coingecko_api_v3_*.json ---------------
def chart(points: list[tuple[int, float]], volume: float = 18_688_431_751.857) -> dict[str, Any]:
    return {
        "prices": [[t, p] for t, p in points],
        "market_caps": [[t, p * 19_800_000] for t, p in points],
        "total_volumes": [[t, volume] for t, _ in points],
    }


def price(updated_s: int, usd: float, coin_id: str = "bitcoin") -> dict[str, Any]:
    return {
        coin_id: {
            "usd": usd,
            "usd_market_cap": usd * 19_800_000,
            "usd_24h_vol": usd * 1000.0,
            "usd_24h_change": -1.4,
            "last_updated_at": updated_s,
        }
    }


LISTING = [
    {"id": "official-trump", "symbol": "trump", "name": "Official Trump"},
    {"id": "ondo-finance", "symbol": "ondo", "name": "Ondo"},
    {"id": "bitcoin", "symbol": "btc", "name": "Bitcoin"},
    {"id": "pepe", "symbol": "pepe", "name": "Pepe"},
    {"id": "magic-internet-money", "symbol": "mim", "name": "Magic Internet Money"},
    {"id": "mim-swarm", "symbol": "mim", "name": "MIM Swarm"},
]


class Script:
    """Answers per path prefix, in order (the last one repeats); records every request."""

    def __init__(self, routes: dict[str, list[Answer]]) -> None:
        self.routes = {k: list(v) for k, v in routes.items()}
        self.requests: list[tuple[float, httpx.Request]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((time.monotonic(), request))
        path = request.url.path.removeprefix("/api/v3")
        for prefix, answers in self.routes.items():
            if path.startswith(prefix):
                answer = answers.pop(0) if len(answers) > 1 else answers[0]
                if isinstance(answer, Exception):
                    raise answer
                return answer
        return httpx.Response(404, json={"error": "Not Found"})

    def paths(self) -> list[str]:
        return [r.url.path.removeprefix("/api/v3") for _, r in self.requests]


def ok(payload: Any, **headers: str) -> httpx.Response:
    return httpx.Response(200, json=payload, headers=headers)


def source(script: Script, coins: tuple[str, ...] = ("BTC",), **options: Any) -> CoinGeckoSource:
    settings = {**FAST, "history_days": 1, **options}
    return CoinGeckoSource(coins, base_url=BASE, transport=httpx.MockTransport(script), **settings)


def take(src: CoinGeckoSource, ticks: int, timeout_s: float = 5.0) -> list[Dataset]:
    """Batches until ``ticks`` ticks came (or the timeout closed the source)."""
    timer = threading.Timer(timeout_s, src.close)
    timer.start()
    got: list[Dataset] = []
    stream = src.batches()
    try:
        for batch in stream:
            got.append(batch)
            if sum(len(b) for b in got) >= ticks:
                break
    finally:
        timer.cancel()
        src.close()
        stream.close()
        assert src.join(5.0)
    return got


def ticks(batches: list[Dataset], coin: str = "BTC") -> tuple[list[int], list[float]]:
    ts, px = [], []
    for b in batches:
        for s in b.series:
            if s.coin == coin:
                ts += s.timestamp_ms.tolist()
                px += s.price.tolist()
    return ts, px


# -- coin ids -----------------------------------------------------------------------------------
def test_known_tickers_map_to_coingecko_ids_without_any_request():
    script = Script({})
    src = source(script, ("btc", "ETH", "SOL", "BNB", "XRP", "ADA", "DOGE"))
    assert src.coin_ids == {
        "BTC": "bitcoin",
        "ETH": "ethereum",
        "SOL": "solana",
        "BNB": "binancecoin",
        "XRP": "ripple",
        "ADA": "cardano",
        "DOGE": "dogecoin",
    }
    assert script.requests == []
    assert COIN_IDS["AVAX"] == "avalanche-2"


def test_unknown_ticker_is_looked_up_by_symbol_in_coins_list():
    script = Script({"/coins/list": [ok(LISTING)]})
    assert source(script, ("TRUMP", "BTC")).coin_ids == {
        "TRUMP": "official-trump",
        "BTC": "bitcoin",
    }
    assert script.paths() == ["/coins/list"]


def test_unknown_ticker_absent_from_coins_list_raises_config_error_before_start():
    script = Script({"/coins/list": [ok(LISTING)]})
    with pytest.raises(ConfigError, match=r"unknown coin 'NOPE'.*ids=\{'NOPE'"):
        source(script, ("BTC", "NOPE"))


def test_ambiguous_ticker_raises_config_error_naming_the_candidates():
    script = Script({"/coins/list": [ok(LISTING)]})
    with pytest.raises(ConfigError, match=r"ambiguous.*magic-internet-money, mim-swarm"):
        source(script, ("MIM",))


def test_override_is_checked_against_coins_list():
    script = Script({"/coins/list": [ok(LISTING)]})
    assert source(script, ("MIM",), ids={"mim": "mim-swarm"}).coin_ids == {"MIM": "mim-swarm"}
    with pytest.raises(ConfigError, match="'not-a-coin', which is not a CoinGecko id"):
        source(Script({"/coins/list": [ok(LISTING)]}), ("BTC",), ids={"BTC": "not-a-coin"})


def test_unknown_ticker_when_coins_list_keeps_failing_raises_config_error():
    script = Script({"/coins/list": [httpx.Response(500, text="oops")]})
    with pytest.raises(ConfigError, match=r"cannot look up NOPE: /coins/list failed.*HTTP 500"):
        source(script, ("NOPE",))
    assert script.paths() == ["/coins/list"] * 3


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("poll_interval_s", 0),
        ("history_days", -1),
        ("min_request_interval_s", -1.0),
        ("vs_currency", ""),
        ("backoff_initial_s", 0),
    ],
)
def test_bad_parameters_raise_config_error(option, value):
    with pytest.raises(ConfigError, match=option):
        source(Script({}), **{option: value})


# -- ticks --------------------------------------------------------------------------------------
def test_history_arrives_sorted_and_deduplicated_then_live_ticks_only_when_updated():
    history = chart([(T0_MS + 300_000, 2.0), (T0_MS, 1.0), (T0_MS + 300_000, 2.5)])
    later_s = (T0_MS + 600_000) // 1000
    script = Script(
        {
            "/coins/bitcoin/market_chart": [ok(history)],
            "/simple/price": [
                ok(price((T0_MS + 100_000) // 1000, 9.0)),  # older than the history: dropped
                ok(price(later_s, 3.0)),
                ok(price(later_s, 3.0)),  # the API's cache answers the same quote again
                ok(price(later_s + 60, 4.0)),
            ],
        }
    )
    got = take(source(script), ticks=4)
    ts, px = ticks(got)
    assert ts == [T0_MS, T0_MS + 300_000, later_s * 1000, (later_s + 60) * 1000]
    assert px == [1.0, 2.5, 3.0, 4.0]
    assert got[0].series[0].volume[0] == pytest.approx(18_688_431_751.857 / 1.0)
    assert got[-1].series[0].volume[0] == pytest.approx(1000.0)  # 24h quote volume / price


def test_requests_carry_the_documented_parameters_and_the_demo_key_header():
    script = Script({"/coins/": [ok(chart([(T0_MS, 1.0)]))], "/simple/price": [ok(price(1, 1))]})
    take(source(script, api_key="CG-test", history_days=2), ticks=1)
    history, poll = script.requests[0][1], script.requests[1][1]
    assert history.url.path == "/api/v3/coins/bitcoin/market_chart"
    assert dict(history.url.params) == {"vs_currency": "usd", "days": "2"}
    assert poll.url.params["ids"] == "bitcoin"
    assert poll.url.params["vs_currencies"] == "usd"
    assert poll.url.params["include_last_updated_at"] == "true"
    assert poll.url.params["include_24hr_vol"] == "true"
    assert history.headers["x-cg-demo-api-key"] == "CG-test"


def test_without_history_the_first_poll_is_the_first_tick():
    script = Script({"/simple/price": [ok(price(1_700_000_000, 5.0))]})
    got = take(source(script, history_days=0), ticks=1)
    assert ticks(got) == ([1_700_000_000_000], [5.0])
    assert "/coins/bitcoin/market_chart" not in script.paths()


# -- faults -------------------------------------------------------------------------------------
def test_retry_after_on_429_is_waited_before_the_next_request():
    script = Script(
        {
            "/simple/price": [
                httpx.Response(
                    429, json={"status": {"error_code": 429}}, headers={"Retry-After": "0.3"}
                ),
                ok(price(1_700_000_000, 5.0)),
            ]
        }
    )
    take(source(script, history_days=0), ticks=1)
    (t429, _), (t_next, _) = script.requests[:2]
    assert t_next - t429 >= 0.29


@pytest.mark.parametrize(
    ("answer", "logged"),
    [
        (
            httpx.Response(418, headers={"Retry-After": "0"}),
            "HTTP 418 rate limited, Retry-After 0 s",
        ),
        (httpx.Response(503, text="<html>down</html>"), "HTTP 503: '<html>down</html>'"),
        (httpx.ReadTimeout("timed out"), "no answer within 1 s"),
        (httpx.ConnectError("refused"), "ConnectError: refused"),
        (httpx.Response(200, content=b'{"bitcoin": {"usd": 6'), "malformed JSON"),
        (httpx.Response(200, json=["not", "an", "object"]), "unexpected JSON"),
    ],
)
def test_each_failure_logs_one_line_and_polling_goes_on(caplog, answer, logged):
    script = Script({"/simple/price": [answer, ok(price(1_700_000_000, 5.0))]})
    with caplog.at_level(logging.WARNING, logger="velocitas.data"):
        got = take(source(script, history_days=0), ticks=1)
    assert ticks(got) == ([1_700_000_000_000], [5.0])
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert logged in warnings[0]
    assert "GET /simple/price failed" in warnings[0]


def test_history_failing_three_times_is_skipped_and_live_ticks_still_come(caplog):
    script = Script(
        {
            "/coins/bitcoin/market_chart": [httpx.Response(500)],
            "/simple/price": [ok(price(1_700_000_000, 5.0))],
        }
    )
    got = take(source(script), ticks=1)
    assert ticks(got) == ([1_700_000_000_000], [5.0])
    assert script.paths()[:3] == ["/coins/bitcoin/market_chart"] * 3
    assert "no history for BTC" in caplog.text


def test_requests_are_spaced_by_min_request_interval():
    script = Script({"/simple/price": [ok(price(1_700_000_000 + i, 5.0)) for i in range(6)]})
    take(source(script, history_days=0, min_request_interval_s=0.1), ticks=5)
    starts = np.array([t for t, _ in script.requests])
    assert np.diff(starts).min() >= 0.095


def test_outage_longer_than_gap_fill_after_s_is_filled_from_market_chart():
    first_s = T0_MS // 1000
    # The chart's first point is before the last tick and its last one after the fresh quote.
    gap = chart([(T0_MS - 300_000, 0.5), (T0_MS + 300_000, 2.0), (T0_MS + 600_000, 3.0),
                 (T0_MS + 900_000, 9.9)])  # fmt: skip
    script = Script(
        {
            "/coins/bitcoin/market_chart": [ok(gap)],
            "/simple/price": [
                ok(price(first_s, 1.0)),
                httpx.Response(500),
                httpx.Response(500),
                ok(price(first_s + 900, 4.0)),
            ],
        }
    )
    src = source(script, history_days=0, gap_fill_after_s=0.02, backoff_initial_s=0.02)
    got = take(src, ticks=4)
    ts, px = ticks(got)
    assert ts == [first_s * 1000, T0_MS + 300_000, T0_MS + 600_000, (first_s + 900) * 1000]
    assert px == [1.0, 2.0, 3.0, 4.0]
    status = src.status()
    assert status["gaps_filled"] == 1
    assert status["reconnects"] == 1
    assert status["failures"] == 2


def test_status_reports_health_and_close_stops_promptly():
    script = Script({"/simple/price": [ok(price(1_700_000_000, 5.0))]})
    src = source(script, history_days=0, poll_interval_s=30.0)
    stream = src.batches()
    assert len(next(stream)) == 1
    status = src.status()
    assert status["connected"] is True
    assert status["last_message_age_s"] < 1.0
    assert status["reconnects"] == 0
    assert status["gaps_filled"] == 0
    assert status["messages_per_s"] > 0
    started = time.monotonic()
    threading.Timer(0.05, src.close).start()
    assert list(stream) == []
    assert time.monotonic() - started < 0.5
    assert src.join(1.0)
    assert src.status()["connected"] is False


def test_a_source_streams_once():
    src = source(Script({"/simple/price": [ok(price(1_700_000_000, 5.0))]}), history_days=0)
    take(src, ticks=1)
    with pytest.raises(ConfigError, match="streams once"):
        next(src.batches())


# -- helpers and factory ------------------------------------------------------------------------
def test_retry_after_reads_seconds_and_http_dates():
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    in_a_minute = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 55 < parse_retry_after(in_a_minute) <= 60  # type: ignore[operator]


def test_backoff_doubles_to_its_cap_and_a_longer_retry_after_wins():
    backoff = Backoff(1.0, 4.0)
    assert [backoff.next_delay() for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    assert backoff.next_delay(retry_after_s=30.0) == 30.0
    backoff.reset()
    assert backoff.next_delay() == 1.0


def test_factory_reads_the_url_from_settings_and_refuses_unknown_options():
    settings = SimpleNamespace(coingecko_url="http://127.0.0.1:9/api/v3")
    src = coingecko_source(["BTC"], settings, poll_interval_s=5.0)
    assert (src.base_url, src.poll_interval_s) == ("http://127.0.0.1:9/api/v3", 5.0)
    with pytest.raises(ConfigError, match=r"unknown coingecko option.*speed"):
        coingecko_source(["BTC"], settings, speed=2)


def test_pro_base_url_sends_the_pro_key_header():
    script = Script({"/simple/price": [ok(price(1_700_000_000, 5.0))]})
    src = CoinGeckoSource(
        ["BTC"],
        base_url="https://pro-api.coingecko.com/api/v3",
        api_key="CG-pro",
        history_days=0,
        transport=httpx.MockTransport(script),
        **FAST,
    )
    take(src, ticks=1)
    assert script.requests[0][1].headers["x-cg-pro-api-key"] == "CG-pro"
