"""CcxtSource with ccxt's real ``binance`` exchange pointed at a local Binance-like server.

The server speaks Binance's spot REST shapes (``/api/v3/exchangeInfo`` from the shared
fixture, ``/api/v3/aggTrades`` and ``/api/v3/klines`` built from the real aggregate trades in
``shared/data``) and ccxt's own code parses them: only ``exchange.urls["api"]["public"]`` is
changed. Each ``aggTrades`` call lets ``per_poll`` more trades "happen".
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from fakes.coingecko_server import serve_app
from velocitas.core.errors import ConfigError
from velocitas.core.models import Dataset
from velocitas.data.ccxt_source import CcxtSource
from velocitas.engine.live import HFTEngine
from velocitas.strategies.registry import create_strategy

ccxt = pytest.importorskip(
    "ccxt", reason='ccxt is an optional extra: pip install "velocitas[ccxt]"'
)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
EXCHANGE_INFO = FIXTURES / "binance_spot_rest_api_v3_exchangeInfo_excerpt.json"
MINUTE_MS = 60_000
FAST = {"poll_interval_s": 0.01, "backoff_initial_s": 0.05, "max_backoff_s": 0.2}


class FakeBinance:
    """Binance spot's public REST for BTCUSDT and ETHUSDT, replaying real aggregate trades."""

    def __init__(self, data_dir: Path, *, start: int = 2_000, per_poll: int = 40) -> None:
        self.exchange_info = json.loads(EXCHANGE_INFO.read_text())
        self.trades = {
            s: _agg_trades(data_dir / f"{s}-aggTrades.csv") for s in ("BTCUSDT", "ETHUSDT")
        }
        self.cursor = dict.fromkeys(self.trades, start)
        self.per_poll = per_poll
        self.faults: deque[str] = deque()
        self.closing = threading.Event()
        self.app = FastAPI()
        self._routes()

    def _routes(self) -> None:
        app = self.app

        @app.middleware("http")
        async def faults(request: Request, call_next: Any) -> Response:
            if request.url.path == "/api/v3/aggTrades" and self.faults:
                return await self._fault(self.faults.popleft())
            return await call_next(request)

        @app.get("/api/v3/exchangeInfo")
        def exchange_info() -> dict[str, Any]:
            return self.exchange_info

        @app.get("/api/v3/aggTrades")
        def agg_trades(
            symbol: str, startTime: int | None = None, endTime: int | None = None, limit: int = 500
        ) -> list[dict[str, Any]]:
            rows = self.trades[symbol]
            happened = rows[: self.cursor[symbol]]
            self.cursor[symbol] = min(len(rows), self.cursor[symbol] + self.per_poll)
            if startTime is None:
                return happened[-limit:]
            end = endTime if endTime is not None else startTime + 3_600_000
            return [r for r in happened if startTime <= r["T"] <= end][:limit]

        @app.get("/api/v3/klines")
        def klines(symbol: str, interval: str, limit: int = 500) -> list[list[Any]]:
            bars: dict[int, list[float]] = {}
            for r in self.trades[symbol][: self.cursor[symbol]]:
                price, qty, key = float(r["p"]), float(r["q"]), r["T"] // MINUTE_MS * MINUTE_MS
                bar = bars.setdefault(key, [price, price, price, price, 0.0])
                bar[1], bar[2], bar[3] = max(bar[1], price), min(bar[2], price), price
                bar[4] += qty
            return [
                [k, *(f"{x:.8f}" for x in b), k + MINUTE_MS - 1, "0", 1, "0", "0", "0"]
                for k, b in sorted(bars.items())
            ][-limit:]

    async def _fault(self, kind: str) -> Response:
        if kind == "429":
            return JSONResponse(
                {"code": -1003, "msg": "Too many requests."}, 429, headers={"Retry-After": "0.2"}
            )
        if kind == "500":
            return JSONResponse({"code": -1000, "msg": "An unknown error occurred."}, 500)
        if kind == "garbage":
            return Response(b'[{"a": 1, "p": "6', media_type="application/json")
        deadline = time.monotonic() + 2.0  # stall past the client's timeout
        while time.monotonic() < deadline and not self.closing.is_set():
            await asyncio.sleep(0.02)
        return JSONResponse([], 504)


def _agg_trades(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open() as f:
        next(f)
        for i, line in enumerate(f):
            t, p, q, maker = line.strip().split(",")
            rows.append(
                {"a": 26_129 + i, "p": p, "q": q, "f": 40_000 + i, "l": 40_000 + i, "T": int(t),
                 "m": maker == "true", "M": True}
            )  # fmt: skip
    return rows


@pytest.fixture
def binance(shared_file: Callable[[str], Path]) -> Iterator[tuple[Any, FakeBinance]]:
    """(a ccxt binance exchange aimed at the local server, the server's state)."""
    if not EXCHANGE_INFO.is_file():
        pytest.skip(f"fixture {EXCHANGE_INFO} is absent (expected beside the repo in shared/)")
    fake = FakeBinance(shared_file("BTCUSDT-aggTrades.csv").parent)
    shared_file("ETHUSDT-aggTrades.csv")
    with serve_app(fake.app) as root:
        exchange = ccxt.binance({"timeout": 300, "options": {"fetchMarkets": {"types": ["spot"]}}})
        exchange.urls["api"]["public"] = f"{root}/api/v3"
        try:
            yield exchange, fake
        finally:
            fake.closing.set()
            exchange.close()


def take(src: CcxtSource, until: Callable[[list[Dataset]], bool], timeout_s: float = 10.0):
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


def series(got: list[Dataset], coin: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = [s for b in got for s in b.series if s.coin == coin]
    return (
        np.concatenate([s.timestamp_ms for s in parts]),
        np.concatenate([s.price for s in parts]),
        np.concatenate([s.volume for s in parts]),
    )


def test_closed_bars_then_every_trade_once_in_order_across_429_500_garbage_and_stall(
    binance, caplog
):
    exchange, fake = binance
    fake.faults.extend(["429", "500", "garbage", "stall"])
    src = CcxtSource("binance", ["BTC", "ETH"], exchange=exchange, history_bars=5, **FAST)

    with caplog.at_level(logging.WARNING, logger="velocitas.data"):
        got = take(src, lambda got: sum(map(len, got)) >= 600)

    for coin in ("BTC", "ETH"):
        ts, price, volume = series(got, coin)
        bars = got[0][coin]
        assert len(bars) >= 2
        assert np.all(np.diff(bars.timestamp_ms) == MINUTE_MS)
        live = slice(len(bars), None)
        assert np.all(np.diff(ts) >= 0), f"{coin}: out of order"
        # Every trade after the last bar, once each: the live ticks are a run of the file's rows.
        rows = fake.trades[f"{coin}USDT"]
        first = next(i for i, r in enumerate(rows) if r["T"] >= bars.timestamp_ms[-1] + MINUTE_MS)
        expected = rows[first : first + len(ts[live])]
        np.testing.assert_array_equal(ts[live], [r["T"] for r in expected])
        np.testing.assert_array_equal(price[live], [float(r["p"]) for r in expected])
        np.testing.assert_array_equal(volume[live], [float(r["q"]) for r in expected])
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(logged) == 4  # one line per failure
    for reason in ("rate limited, Retry-After 0.2 s", "An unknown error occurred", "malformed JSON",
                   "no answer within 0.3 s"):  # fmt: skip
        assert sum(reason in line for line in logged) == 1, (reason, logged)
    status = src.status()
    assert (status["failures"], status["connected"]) == (4, False)  # (closed by now)
    assert status["reconnects"] >= 1
    assert status["gaps_filled"] >= 1


def test_unknown_symbol_on_the_exchange_is_refused_with_what_it_lists(binance):
    exchange, _ = binance
    with pytest.raises(ConfigError, match="binance has no DOGE/USDT market; it has no DOGE market"):
        CcxtSource("binance", ["BTC", "DOGE"], exchange=exchange)
    with pytest.raises(ConfigError, match="binance has no BTC/EUR market; it lists BTC/USDT"):
        CcxtSource("binance", ["BTC"], quote="EUR", exchange=exchange)


def test_engine_runs_a_strategy_on_the_ccxt_feed(binance):
    exchange, _ = binance
    src = CcxtSource("binance", ["BTC", "ETH"], exchange=exchange, **FAST)
    engine = HFTEngine(backend="serial")
    engine.register_strategy(create_strategy("SMA_Crossover", coin="BTC"))
    engine.start(src)
    try:
        deadline = time.monotonic() + 10.0
        while engine.get_metrics()["engine"]["ticks_in"] < 500:
            assert time.monotonic() < deadline, engine.get_metrics()["engine"]
            time.sleep(0.02)
        assert engine.get_metrics()["engine"]["source_status"]["connected"] is True
    finally:
        engine.stop()
        assert src.join(5.0)
