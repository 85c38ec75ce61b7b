"""A local stand-in for Binance spot (REST + combined streams) replaying real data, with faults.

``running_binance(data_dir)`` serves, on 127.0.0.1 (a free port), ``/api/v3/exchangeInfo``,
``/time``, ``/klines``, ``/aggTrades``, ``/historicalTrades``, ``/trades`` and the WebSocket
``/stream?streams=btcusdt@aggTrade/...`` in the wire shapes of ``shared/fixtures/binance_*``.

Its "exchange" replays ``shared/data``: the BTCUSDT and ETHUSDT trade tapes (``-trades.csv``
with their real, contiguous trade ids; ``-aggTrades.csv`` with ids we number from
``AGG_FIRST_ID``, as the file has none) and the 1-minute klines, shifted in time so that bar
``history_minutes`` opens at the minute of the first trade (``t0_ms``). The market of a stream
kind starts when the first client subscribes to it and then runs at ``rate_per_s`` events/s
whether anyone listens or not, like a real market: what a client misses while disconnected
is only in REST, which serves what has "happened" so far. Kline streams send each bar once
open (``x: false``) and once closed. Fields the CSVs lack (first/last trade id of an aggTrade,
trade counts, taker volumes) are made up.

Faults: ``inject_ws(kind, after=n)`` hits the next connection that has sent ``n`` messages:
``drop`` (the socket is cut, no close frame), ``stall`` (it goes silent but stays open),
``garbage`` (one message replaced by non-JSON text) or ``close`` (a normal close, as at
Binance's 24-hour mark); ``close_after`` closes every connection after that many messages.
``inject_rest(kind)`` answers the next REST request(s) with ``429``/``418`` (+``Retry-After``),
``500``, ``garbage`` (malformed JSON) or ``stall`` (late).
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.responses import JSONResponse

MINUTE_MS = 60_000
SYMBOLS = ("BTCUSDT", "ETHUSDT")
#: first trade id of the real tapes (shared/data/README.md); aggTrade ids are made up.
TRADE_FIRST_ID = {"BTCUSDT": 3_735_683_259, "ETHUSDT": 1_520_538_925}
AGG_FIRST_ID = {"BTCUSDT": 3_100_000_000, "ETHUSDT": 1_200_000_000}
#: listed without data, like the excerpt of the real exchangeInfo in shared/fixtures.
OTHER_SYMBOLS = (("BNBUSDT", "BNB"), ("SOLUSDT", "SOL"), ("XRPUSDT", "XRP"), ("ADAUSDT", "ADA"))
WS_FAULTS = ("drop", "stall", "garbage", "close")
REST_FAULTS = ("429", "418", "500", "garbage", "stall")
KINDS = ("aggTrade", "trade", "kline_1m")


def _fixed8(text: str) -> str:
    """Binance's fixed 8-decimal strings ("61837.63" -> "61837.63000000")."""
    return f"{Decimal(text):.8f}"


@dataclass
class Tape:
    """One symbol's events of one kind: keys (id or open time), REST rows, stream payloads."""

    keys: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)  # when the event "happens"
    rows: list[Any] = field(default_factory=list)  # the REST row
    payloads: list[list[dict[str, Any]]] = field(default_factory=list)  # stream data, in order


@lru_cache(maxsize=16)  # the tapes are read-only: share them between servers (tests)
def _trade_tape(symbol: str, path: Path, kind: str) -> Tape:
    tape = Tape()
    first = (AGG_FIRST_ID if kind == "aggTrade" else TRADE_FIRST_ID)[symbol]
    with path.open() as f:
        for i, row in enumerate(csv.DictReader(f)):
            key, ts, price, qty = first + i, int(row["timestamp"]), row["price"], row["qty"]
            p, q, m = _fixed8(price), _fixed8(qty), row["is_buyer_maker"] == "true"
            if kind == "aggTrade":
                rest = {"a": key, "p": p, "q": q, "f": key, "l": key, "T": ts, "m": m, "M": True}
                data = {"e": "aggTrade", "E": ts, "s": symbol, **rest}
            else:
                quote = f"{Decimal(price) * Decimal(qty):.8f}"
                rest = {"id": key, "price": p, "qty": q, "quoteQty": quote, "time": ts}
                rest |= {"isBuyerMaker": m, "isBestMatch": True}
                data = {"e": "trade", "E": ts, "s": symbol, "t": key, "p": p, "q": q}
                data |= {"T": ts, "m": m, "M": True}
            tape.keys.append(key)
            tape.times.append(ts)
            tape.rows.append(rest)
            tape.payloads.append([data])
    return tape


@lru_cache(maxsize=16)
def _kline_tape(symbol: str, path: Path, rows: int, first_open_ms: int) -> Tape:
    tape = Tape()
    with gzip.open(path, "rt") as f:
        reader = csv.DictReader(f)
        for i, row in zip(range(rows), reader, strict=False):
            t = first_open_ms + i * MINUTE_MS
            o, h, lo, c, v = (_fixed8(row[k]) for k in ("open", "high", "low", "close", "volume"))
            quote = f"{Decimal(row['volume']) * Decimal(row['close']):.8f}"
            tape.keys.append(t)
            tape.times.append(t + MINUTE_MS - 1)
            tape.rows.append([t, o, h, lo, c, v, t + MINUTE_MS - 1, quote, 0, "0", "0", "0"])
            k = {"t": t, "T": t + MINUTE_MS - 1, "s": symbol, "i": "1m", "f": -1, "L": -1}
            k |= {"o": o, "c": c, "h": h, "l": lo, "v": v, "n": 0, "q": quote}
            k |= {"V": "0", "Q": "0", "B": "0"}
            tape.payloads.append(
                [
                    {"e": "kline", "E": t, "s": symbol, "k": {**k, "x": False}},
                    {"e": "kline", "E": t + MINUTE_MS - 1, "s": symbol, "k": {**k, "x": True}},
                ]
            )
    return tape


class _Market:
    """One stream kind's replay: a merged timeline, a cursor, the subscribed connections."""

    def __init__(self, kind: str, tapes: dict[str, Tape], start_index: int) -> None:
        self.kind = kind
        self.tapes = tapes
        self.published = dict.fromkeys(tapes, start_index)  # events that "happened"
        events = [
            (tape.times[i], s, i)
            for s, tape in tapes.items()
            for i in range(start_index, len(tape.keys))
        ]
        self.timeline = sorted(events)
        self.cursor = 0
        self.subscribers: set[_Connection] = set()
        self.task: asyncio.Task[None] | None = None
        self.done = threading.Event()


@dataclass(eq=False)
class _Connection:
    streams: set[str]
    queue: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    sent: int = 0


@dataclass
class _Fault:
    kind: str
    after: int = 0
    path: str | None = None
    retry_after_s: float = 1.0


class FakeBinance:
    """The app and its exchange; see the module docstring."""

    def __init__(
        self,
        data_dir: Path,
        *,
        history_minutes: int = 120,
        live_minutes: int = 60,
        rate_per_s: float = 5_000.0,
        close_after: int | None = None,
        stall_s: float = 2.0,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.close_after = close_after
        self.stall_s = stall_s
        self.history_minutes = history_minutes
        self.tapes: dict[str, dict[str, Tape]] = {"aggTrade": {}, "trade": {}, "kline_1m": {}}
        for symbol in SYMBOLS:
            self.tapes["aggTrade"][symbol] = _trade_tape(
                symbol, data_dir / f"{symbol}-aggTrades.csv", "aggTrade"
            )
            self.tapes["trade"][symbol] = _trade_tape(
                symbol, data_dir / f"{symbol}-trades.csv", "trade"
            )
        first_trade = min(t.times[0] for t in self.tapes["aggTrade"].values())
        self.t0_ms = first_trade - first_trade % MINUTE_MS
        first_open = self.t0_ms - history_minutes * MINUTE_MS
        for symbol in SYMBOLS:
            self.tapes["kline_1m"][symbol] = _kline_tape(
                symbol, data_dir / f"{symbol}-1m.csv.gz", history_minutes + live_minutes, first_open
            )
        self.now_ms = self.t0_ms
        self.markets: dict[str, _Market] = {}
        self.ws_faults: deque[_Fault] = deque()
        self.rest_faults: deque[_Fault] = deque()
        self.connections = 0
        self.requests: list[tuple[str, int]] = []
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self.app = self._build()

    # -- knobs and views -------------------------------------------------------------------
    def inject_ws(self, kind: str, *, after: int = 0, times: int = 1) -> None:
        if kind not in WS_FAULTS:
            raise ValueError(f"WebSocket fault must be one of {WS_FAULTS}, was {kind!r}")
        with self._lock:
            self.ws_faults.extend(_Fault(kind, after) for _ in range(times))

    def inject_rest(
        self, kind: str, *, times: int = 1, path: str | None = None, retry_after_s: float = 1.0
    ) -> None:
        if kind not in REST_FAULTS:
            raise ValueError(f"REST fault must be one of {REST_FAULTS}, was {kind!r}")
        with self._lock:
            self.rest_faults.extend(_Fault(kind, 0, path, retry_after_s) for _ in range(times))

    def live(self, kind: str, symbol: str) -> Tape:
        """What the stream of ``kind`` replays for ``symbol`` (klines: after the history)."""
        tape = self.tapes[kind][symbol]
        start = self.history_minutes if kind == "kline_1m" else 0
        return Tape(tape.keys[start:], tape.times[start:], tape.rows[start:], tape.payloads[start:])

    def served(self, path: str) -> list[int]:
        """HTTP statuses of the requests to ``path`` so far, in order."""
        return [status for p, status in self.requests if p == path]

    def wait_market_done(self, kind: str, timeout_s: float) -> bool:
        market = self.markets.get(kind)
        return market is not None and market.done.wait(timeout_s)

    # -- the market ------------------------------------------------------------------------
    def _market(self, kind: str) -> _Market:
        if kind not in self.markets:
            start = self.history_minutes if kind == "kline_1m" else 0
            self.markets[kind] = _Market(kind, self.tapes[kind], start)
        return self.markets[kind]

    async def _run_market(self, market: _Market) -> None:
        loop = asyncio.get_running_loop()
        started, sent = loop.time(), 0
        chunk = max(1, int(self.rate_per_s * 0.005))
        while market.cursor < len(market.timeline) and not self.closing.is_set():
            for ts, symbol, i in market.timeline[market.cursor : market.cursor + chunk]:
                self._publish(market, symbol, i, ts)
            market.cursor += chunk
            sent += chunk
            await asyncio.sleep(max(0.0, started + sent / self.rate_per_s - loop.time()))
        market.done.set()

    def _publish(self, market: _Market, symbol: str, i: int, ts: int) -> None:
        market.published[symbol] = i + 1
        self.now_ms = max(self.now_ms, ts + 1 if market.kind == "kline_1m" else ts)
        name = f"{symbol.lower()}@{market.kind}"
        for data in market.tapes[symbol].payloads[i]:
            message = orjson.dumps({"stream": name, "data": data})
            for conn in market.subscribers:
                if name in conn.streams:
                    conn.queue.put_nowait(message)

    # -- the app ---------------------------------------------------------------------------
    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def faults(request: Request, call_next: Any) -> Response:
            path = request.url.path
            response = await self._rest_fault(path)
            if response is None:
                response = await call_next(request)
            self.requests.append((path, response.status_code))
            return response

        @app.get("/api/v3/ping")
        def ping() -> dict[str, Any]:
            return {}

        @app.get("/api/v3/time")
        def server_time() -> dict[str, int]:
            return {"serverTime": self.now_ms}

        @app.get("/api/v3/exchangeInfo")
        def exchange_info(symbols: str | None = None, symbol: str | None = None) -> Response:
            listing = [_symbol_info(s, s.removesuffix("USDT")) for s in SYMBOLS]
            listing += [_symbol_info(s, base) for s, base in OTHER_SYMBOLS]
            wanted = orjson.loads(symbols) if symbols else [symbol] if symbol else None
            if wanted is not None:
                if any(w not in {s["symbol"] for s in listing} for w in wanted):
                    return _invalid_symbol()
                listing = [s for s in listing if s["symbol"] in wanted]
            info = {
                "timezone": "UTC",
                "serverTime": self.now_ms,
                "rateLimits": [],
                "exchangeFilters": [],
            }
            return JSONResponse({**info, "symbols": listing})

        @app.get("/api/v3/klines")
        def klines(
            symbol: str,
            interval: str,
            startTime: int | None = None,
            endTime: int | None = None,
            limit: int = 500,
        ) -> Response:
            if symbol not in SYMBOLS:
                return _invalid_symbol()
            if interval != "1m":
                return JSONResponse({"code": -1120, "msg": "Invalid interval."}, status_code=400)
            tape = self.tapes["kline_1m"][symbol]
            rows = [r for r in tape.rows if r[0] <= self.now_ms]
            if startTime is not None:
                rows = [r for r in rows if r[0] >= startTime]
            if endTime is not None:
                rows = [r for r in rows if r[0] <= endTime]
            limit = min(limit, 1000)
            return JSONResponse(rows[:limit] if startTime is not None else rows[-limit:])

        @app.get("/api/v3/aggTrades")
        def agg_trades(symbol: str, fromId: int | None = None, limit: int = 500) -> Response:
            return self._trades("aggTrade", symbol, fromId, limit)

        @app.get("/api/v3/historicalTrades")
        def historical_trades(symbol: str, fromId: int | None = None, limit: int = 500) -> Response:
            return self._trades("trade", symbol, fromId, limit)

        @app.get("/api/v3/trades")
        def trades(symbol: str, limit: int = 500) -> Response:
            return self._trades("trade", symbol, None, limit)

        @app.websocket("/stream")
        async def stream(websocket: WebSocket, streams: str) -> None:
            await self._serve_stream(websocket, streams)

        return app

    def _trades(self, kind: str, symbol: str, from_id: int | None, limit: int) -> Response:
        if symbol not in SYMBOLS:
            return _invalid_symbol()
        tape = self.tapes[kind][symbol]
        market = self.markets.get(kind)
        happened = market.published[symbol] if market is not None else 0
        limit = min(limit, 1000)
        first = max(0, happened - limit if from_id is None else from_id - tape.keys[0])
        return JSONResponse(tape.rows[first : min(happened, first + limit)])

    async def _rest_fault(self, path: str) -> Response | None:
        with self._lock:
            fault = next((f for f in self.rest_faults if f.path in (None, path)), None)
            if fault is not None:
                self.rest_faults.remove(fault)
        if fault is None:
            return None
        if fault.kind in ("429", "418"):
            body = {"code": -1003, "msg": "Too much request weight used; current limit is 6000."}
            headers = {"Retry-After": f"{fault.retry_after_s:g}"}
            return JSONResponse(body, status_code=int(fault.kind), headers=headers)
        if fault.kind == "500":
            return JSONResponse(
                {"code": -1000, "msg": "An unknown error occurred."}, status_code=500
            )
        if fault.kind == "garbage":
            return Response(b'[[1723161240000,"61837.6', media_type="application/json")
        deadline = time.monotonic() + self.stall_s
        while time.monotonic() < deadline and not self.closing.is_set():
            await asyncio.sleep(0.02)
        return JSONResponse(
            {"code": -1007, "msg": "Timeout waiting for response."}, status_code=504
        )

    async def _serve_stream(self, websocket: WebSocket, streams: str) -> None:
        names = set(streams.split("/"))
        kinds = {n.partition("@")[2] for n in names}
        symbols = {n.partition("@")[0].upper() for n in names}
        if len(kinds) != 1 or not kinds <= set(KINDS) or not symbols <= set(SYMBOLS):
            await websocket.close(1008)  # before accept: the handshake is refused (HTTP 403)
            return
        transport = websocket.scope.get("fake.transport")
        await websocket.accept()
        self.connections += 1
        market = self._market(kinds.pop())
        conn = _Connection(names)
        market.subscribers.add(conn)
        if market.task is None:
            market.task = asyncio.get_running_loop().create_task(self._run_market(market))
        sender = asyncio.get_running_loop().create_task(self._send(websocket, conn, transport))
        try:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        finally:
            market.subscribers.discard(conn)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _send(self, websocket: WebSocket, conn: _Connection, transport: Any) -> None:
        while True:
            message = await conn.queue.get()
            fault = self._ws_fault(conn)
            if fault == "drop" and transport is not None:
                transport.abort()
                return
            if fault == "stall":
                await asyncio.Event().wait()  # silent until the client gives up
            if fault == "close" or (self.close_after is not None and conn.sent >= self.close_after):
                await websocket.close(1000)
                return
            await websocket.send_text(
                (b"{not json: " + message[:40]).decode() if fault == "garbage" else message.decode()
            )
            conn.sent += 1

    def _ws_fault(self, conn: _Connection) -> str | None:
        with self._lock:
            if self.ws_faults and conn.sent >= self.ws_faults[0].after:
                return self.ws_faults.popleft().kind
        return None


def _symbol_info(symbol: str, base: str) -> dict[str, Any]:
    """An exchangeInfo entry, in the layout of the real one (fewer filters)."""
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": "USDT",
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "isSpotTradingAllowed": True,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "tickSize": "0.01000000"}
        ],
        "permissions": ["SPOT"],
    }


def _invalid_symbol() -> Response:
    return JSONResponse({"code": -1121, "msg": "Invalid symbol."}, status_code=400)


def _with_transport(app: Any) -> Any:
    """ASGI wrapper putting the connection's transport in the scope (for the ``drop`` fault)."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            scope["fake.transport"] = getattr(getattr(send, "__self__", None), "transport", None)
        await app(scope, receive, send)

    return wrapped


@contextmanager
def serve(
    app: Any, *, ws_ping_interval_s: float | None = 20.0, ws_ping_timeout_s: float | None = 20.0
) -> Iterator[str]:
    """Run ``app`` with uvicorn (HTTP + WebSocket) on 127.0.0.1 in a thread; yields host:port.

    The server pings every WebSocket client each ``ws_ping_interval_s`` and drops one that has
    not answered within ``ws_ping_timeout_s`` (Binance: 20 s and one minute).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        _with_transport(app),
        log_level="warning",
        loop="asyncio",
        http="h11",
        ws="websockets-sansio",
        ws_ping_interval=ws_ping_interval_s,
        ws_ping_timeout=ws_ping_timeout_s,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10.0
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the local Binance server did not start")
            time.sleep(0.01)
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10.0)
        sock.close()


@contextmanager
def running_binance(
    data_dir: Path,
    *,
    ws_ping_interval_s: float | None = 20.0,
    ws_ping_timeout_s: float | None = 20.0,
    **options: Any,
) -> Iterator[tuple[str, str, FakeBinance]]:
    """A ``FakeBinance`` being served; yields (REST root URL, WebSocket root URL, the fake)."""
    fake = FakeBinance(data_dir, **options)
    pings = {"ws_ping_interval_s": ws_ping_interval_s, "ws_ping_timeout_s": ws_ping_timeout_s}
    with serve(fake.app, **pings) as host:
        try:
            yield f"http://{host}", f"ws://{host}", fake
        finally:
            fake.closing.set()
