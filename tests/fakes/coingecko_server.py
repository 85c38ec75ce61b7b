"""A local stand-in for CoinGecko's REST API v3, with real prices and fault knobs.

``running_coingecko(data_dir)`` serves ``/api/v3/ping``, ``/simple/price``,
``/coins/{id}/market_chart`` and ``/coins/list`` on 127.0.0.1 (a free port) in the wire
shapes of ``shared/fixtures/coingecko_api_v3_*.json``, replaying the Binance 1-minute klines
in ``shared/data``: the server's "now" is one kline (a cursor) that moves one minute on for
every ``advance_every`` price polls, so a client sees fresh and repeated quotes like the
real, cached API. ``inject()`` queues faults (429/418 with ``Retry-After``, 500, a stall past
the client's timeout, a garbage body) and ``requests`` records every request for rate checks.

``serve_app(app)`` runs any ASGI app the same way (used by the ccxt tests too).
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

MINUTE_MS = 60_000
DAY_MINUTES = 1_440

#: CoinGecko id -> (ticker, kline file in shared/data).
COINS = {
    "bitcoin": ("btc", "BTCUSDT-1m.csv.gz"),
    "ethereum": ("eth", "ETHUSDT-1m.csv.gz"),
    "solana": ("sol", "SOLUSDT-1m.csv.gz"),
    "binancecoin": ("bnb", "BNBUSDT-1m.csv.gz"),
    "ripple": ("xrp", "XRPUSDT-1m.csv.gz"),
    "cardano": ("ada", "ADAUSDT-1m.csv.gz"),
}
NAMES = {
    "bitcoin": "Bitcoin",
    "ethereum": "Ethereum",
    "solana": "Solana",
    "binancecoin": "BNB",
    "ripple": "XRP",
    "cardano": "Cardano",
}
#: Two real /coins/list entries (from the fixture) whose symbols are not in velocitas' table.
FIXTURE_LISTING = [
    {"id": "official-trump", "symbol": "trump", "name": "Official Trump"},
    {"id": "ondo-finance", "symbol": "ondo", "name": "Ondo"},
]
FAULTS = ("429", "418", "500", "stall", "garbage")


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it (``at`` is ``time.monotonic()``)."""

    at: float
    path: str
    status: int


@dataclass
class _Fault:
    kind: str
    path: str | None
    retry_after_s: float


class _Klines:
    """The first ``rows`` one-minute bars of a kline file: time, close, volume (base)."""

    def __init__(self, path: Path, rows: int) -> None:
        ts, close, volume = [], [], []
        with gzip.open(path, "rt") as f:
            next(f)
            for _, line in zip(range(rows), f, strict=False):
                t, _o, _h, _l, c, v = line.split(",")
                ts.append(int(t))
                close.append(float(c))
                volume.append(float(v))
        self.ts = np.array(ts, dtype=np.int64)
        self.close = np.array(close)
        quote_volume = np.concatenate([[0.0], np.cumsum(np.array(volume) * self.close)])
        self._cum_quote = quote_volume

    def volume_24h(self, i: int) -> float:
        return float(self._cum_quote[i + 1] - self._cum_quote[max(0, i + 1 - DAY_MINUTES)])


class FakeCoinGecko:
    """The app and its state; see the module docstring."""

    def __init__(
        self,
        data_dir: Path,
        *,
        history_minutes: int = DAY_MINUTES,
        live_minutes: int = 600,
        advance_every: int = 1,
        stall_s: float = 2.0,
    ) -> None:
        self.klines = {
            coin_id: _Klines(data_dir / file, history_minutes + live_minutes)
            for coin_id, (_, file) in COINS.items()
        }
        self.cursor = history_minutes  # index of "now" in every coin's klines
        self.advance_every = advance_every
        self.stall_s = stall_s
        self.requests: list[Seen] = []
        self.price_polls = 0
        self._faults: deque[_Fault] = deque()
        self._lock = threading.Lock()
        self.closing = threading.Event()
        self.app = self._build()

    # -- knobs ----------------------------------------------------------------------------
    def inject(
        self, kind: str, *, times: int = 1, path: str | None = None, retry_after_s: float = 1.0
    ) -> None:
        """Answer the next ``times`` requests (to ``path``, if given) with a fault."""
        if kind not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, was {kind!r}")
        with self._lock:
            self._faults.extend(_Fault(kind, path, retry_after_s) for _ in range(times))

    def skip_minutes(self, minutes: int) -> None:
        """Let time pass with no polls (an outage the client has to fill from market_chart)."""
        with self._lock:
            self.cursor += minutes

    def now_ms(self, coin_id: str) -> int:
        return int(self.klines[coin_id].ts[min(self.cursor, len(self.klines[coin_id].ts) - 1)])

    def served(self, path_prefix: str) -> list[Seen]:
        """The requests to paths starting with ``path_prefix``, in order of arrival."""
        return sorted(
            (r for r in self.requests if r.path.startswith(path_prefix)), key=lambda r: r.at
        )

    # -- the app --------------------------------------------------------------------------
    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def faults(request: Request, call_next: Any) -> Response:
            arrived = time.monotonic()
            path = request.url.path.removeprefix("/api/v3")
            response = await self._fault_for(path)
            if response is None:
                response = await call_next(request)
            self.requests.append(Seen(arrived, path, response.status_code))
            return response

        @app.get("/api/v3/ping")
        def ping() -> dict[str, str]:
            return {"gecko_says": "(V3) To the Moon!"}

        @app.get("/api/v3/coins/list")
        def coins_list() -> list[dict[str, str]]:
            ours = [{"id": i, "symbol": s, "name": NAMES[i]} for i, (s, _) in COINS.items()]
            return FIXTURE_LISTING + ours

        @app.get("/api/v3/simple/price")
        def simple_price(
            ids: str,
            vs_currencies: str,
            include_24hr_vol: bool = False,
            include_last_updated_at: bool = False,
        ) -> dict[str, Any]:
            with self._lock:
                self.price_polls += 1
                if self.price_polls % self.advance_every == 0:
                    self.cursor += 1
                cursor = self.cursor
            out: dict[str, Any] = {}
            for coin_id in ids.split(","):
                if coin_id not in self.klines or vs_currencies != "usd":
                    continue  # the real API leaves out ids it does not know
                k = self.klines[coin_id]
                i = min(cursor, len(k.ts) - 1)
                entry: dict[str, Any] = {"usd": float(k.close[i])}
                if include_24hr_vol:
                    entry["usd_24h_vol"] = k.volume_24h(i)
                if include_last_updated_at:
                    entry["last_updated_at"] = int(k.ts[i]) // 1000
                out[coin_id] = entry
            return out

        @app.get("/api/v3/coins/{coin_id}/market_chart")
        def market_chart(coin_id: str, vs_currency: str, days: str) -> Response:
            if coin_id not in self.klines:
                return JSONResponse({"error": "coin not found"}, status_code=404)
            return JSONResponse(self._chart(coin_id, int(days)))

        return app

    def _chart(self, coin_id: str, days: int) -> dict[str, list[list[float]]]:
        # Like the real endpoint: 5-minutely points for 1 day, hourly for 2-90, plus "now".
        k = self.klines[coin_id]
        now = min(self.cursor, len(k.ts) - 1)
        step = 5 if days <= 1 else 60
        first = max(0, now - days * DAY_MINUTES)
        rows = [i for i in range(first, now) if (k.ts[i] // MINUTE_MS) % step == 0] + [now]
        return {
            "prices": [[int(k.ts[i]), float(k.close[i])] for i in rows],
            "market_caps": [[int(k.ts[i]), float(k.close[i]) * 19.8e6] for i in rows],
            "total_volumes": [[int(k.ts[i]), k.volume_24h(i)] for i in rows],
        }

    async def _fault_for(self, path: str) -> Response | None:
        with self._lock:
            fault = next((f for f in self._faults if f.path in (None, path)), None)
            if fault is not None:
                self._faults.remove(fault)
        if fault is None:
            return None
        retry = {"Retry-After": f"{fault.retry_after_s:g}"}
        if fault.kind in ("429", "418"):
            body = {
                "status": {"error_code": 429, "error_message": "You've exceeded the Rate Limit"}
            }
            return JSONResponse(body, status_code=int(fault.kind), headers=retry)
        if fault.kind == "500":
            return JSONResponse({"error": "Internal Server Error"}, status_code=500)
        if fault.kind == "garbage":
            return Response(b'{"bitcoin": {"usd": 6', media_type="application/json")
        deadline = time.monotonic() + self.stall_s  # stall: answer too late (or at shutdown)
        while time.monotonic() < deadline and not self.closing.is_set():
            await asyncio.sleep(0.02)
        return JSONResponse({"error": "stalled"}, status_code=504)


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yields its root URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", loop="asyncio", http="h11", ws="none", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10.0
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the local test server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10.0)
        sock.close()


@contextmanager
def running_coingecko(data_dir: Path, **options: Any) -> Iterator[tuple[str, FakeCoinGecko]]:
    """A ``FakeCoinGecko`` being served; yields (base URL ending in /api/v3, the fake)."""
    fake = FakeCoinGecko(data_dir, **options)
    with serve_app(fake.app) as root:
        try:
            yield f"{root}/api/v3", fake
        finally:
            fake.closing.set()  # end any stall now, so that shutdown does not wait for it
