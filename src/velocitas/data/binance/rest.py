"""Binance spot REST market data: exchangeInfo, klines, aggTrades and historicalTrades.

A synchronous httpx client (the source calls it from its event loop through
``asyncio.to_thread``, so one implementation serves the constructor's validation and the
live gap fills). Every request is retried on what Binance documents as transient:

* HTTP 429 (rate limit) and 418 (IP ban): wait the ``Retry-After`` seconds (or the back-off
  when absent or shorter), as Binance requires; hammering on turns a 429 into a ban;
* HTTP 5xx, timeouts and connection errors: exponential back-off;
* a body that is not JSON, or JSON of the wrong shape: back-off, as for a 5xx.

Each failure logs one warning line. Other 4xx answers (an invalid symbol, a bad parameter) are
final: ``BinanceRequestError`` carries Binance's ``code`` and ``msg``. Weights (per IP, per
minute): exchangeInfo 20, klines 2, aggTrades 4, historicalTrades 25.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import httpx
import orjson

from velocitas.core.errors import ConfigError, DataError
from velocitas.data._polling import Backoff, parse_retry_after

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_REST_URL = "https://api.binance.com"
MAX_LIMIT = 1000  # most rows Binance returns per klines / aggTrades / historicalTrades call
_EXCERPT_CHARS = 80


class Trade(NamedTuple):
    """One trade (or aggregate trade): id, trade time in UTC epoch ms, price, base quantity."""

    trade_id: int
    timestamp_ms: int
    price: float
    qty: float


class Kline(NamedTuple):
    """One bar: open time in UTC epoch ms, OHLC in the quote asset, volume in the base asset."""

    open_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class BinanceRequestError(DataError):
    """A request Binance refused for good, or one given up on (attempts used, or closed).

    Attributes:
        path: the API path, e.g. ``/api/v3/klines``.
        status: the HTTP status, or None when no answer came.
        code: Binance's error code (e.g. -1121 "Invalid symbol."), or None.
    """

    def __init__(
        self, path: str, reason: str, *, status: int | None = None, code: int | None = None
    ):
        self.path = path
        self.status = status
        self.code = code
        super().__init__(f"Binance {path}: {reason}")


class _RetryableError(Exception):
    """A transient failure: what went wrong and how long the server asked us to wait."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        self.reason = reason
        self.retry_after_s = retry_after_s
        super().__init__(reason)


class BinanceRest:
    """Binance's public market-data endpoints, with retries (see the module docstring).

    Args:
        base_url: REST root, e.g. ``https://api.binance.com`` (tests: a local server).
        timeout_s: per-request timeout (connect, read, write, pool), in seconds.
        max_attempts: tries per request before ``BinanceRequestError``; None retries until
            ``stop`` is set (the live source's gap fills must not give up).
        backoff_initial_s, max_backoff_s: retry delays, doubling, with jitter (x0.5-1.0); a
            longer ``Retry-After`` wins.
        api_key: sent as ``X-MBX-APIKEY`` when given (not needed for market data).
        stop: an event that ends retry waits at once (the request then raises).
        transport: an httpx transport (tests: ``httpx.MockTransport``).
        seed: seeds the jitter (tests).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_REST_URL,
        *,
        timeout_s: float = 10.0,
        max_attempts: int | None = 5,
        backoff_initial_s: float = 0.5,
        max_backoff_s: float = 30.0,
        api_key: str | None = None,
        stop: threading.Event | None = None,
        transport: httpx.BaseTransport | None = None,
        seed: int | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0 seconds, was {timeout_s}")
        if max_attempts is not None and max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1 or None, was {max_attempts}")
        self.base_url = base_url.rstrip("/")
        self.max_attempts = max_attempts
        self._backoff_initial_s = backoff_initial_s
        self._max_backoff_s = max_backoff_s
        Backoff(backoff_initial_s, max_backoff_s)  # validates the pair now (ConfigError)
        self._stop = stop or threading.Event()
        self._random = random.Random(seed)
        headers = {"X-MBX-APIKEY": api_key} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url, timeout=timeout_s, headers=headers, transport=transport
        )
        self.requests = 0
        self.failures = 0
        self.last_error: str | None = None

    # -- endpoints ------------------------------------------------------------------------
    def exchange_info(self, symbols: Sequence[str] | None = None) -> dict[str, Any]:
        """``/api/v3/exchangeInfo`` (for ``symbols`` only when given; -1121 if one is unknown)."""
        params = {"symbols": orjson.dumps(list(symbols)).decode()} if symbols else None
        return self.get("/api/v3/exchangeInfo", params, _parse_exchange_info)

    def server_time_ms(self) -> int:
        """``/api/v3/time``: the exchange's clock, UTC epoch ms."""
        return self.get("/api/v3/time", None, lambda body: int(body["serverTime"]))

    def klines(
        self,
        symbol: str,
        interval: str = "1m",
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = MAX_LIMIT,
    ) -> list[Kline]:
        """``/api/v3/klines``: bars opening in [start_ms, end_ms], oldest first.

        Without ``start_ms``/``end_ms`` Binance returns the latest ``limit`` bars, the last of
        which is the current, still open one.
        """
        params: dict[str, Any] = {"symbol": symbol, "interval": interval, "limit": limit}
        if start_ms is not None:
            params["startTime"] = start_ms
        if end_ms is not None:
            params["endTime"] = end_ms
        return self.get("/api/v3/klines", params, _parse_klines)

    def agg_trades(self, symbol: str, *, from_id: int, limit: int = MAX_LIMIT) -> list[Trade]:
        """``/api/v3/aggTrades?fromId=``: aggregate trades with id >= ``from_id``, by id."""
        params = {"symbol": symbol, "fromId": from_id, "limit": limit}
        return self.get("/api/v3/aggTrades", params, _parse_agg_trades)

    def historical_trades(
        self, symbol: str, *, from_id: int, limit: int = MAX_LIMIT
    ) -> list[Trade]:
        """``/api/v3/historicalTrades?fromId=``: trades with id >= ``from_id``, by id."""
        params = {"symbol": symbol, "fromId": from_id, "limit": limit}
        return self.get("/api/v3/historicalTrades", params, _parse_trades)

    # -- the retry loop -------------------------------------------------------------------
    def get(self, path: str, params: dict[str, Any] | None, parse: Callable[[Any], T]) -> T:
        """GET ``path`` and ``parse`` its JSON body, retrying transient failures.

        Raises:
            BinanceRequestError: a final 4xx, attempts used up, or ``stop`` set while waiting.
        """
        backoff = Backoff(self._backoff_initial_s, self._max_backoff_s)
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._attempt(path, params, parse)
            except _RetryableError as e:
                self.failures += 1
                self.last_error = f"{path}: {e.reason}"
                if self.max_attempts is not None and attempt >= self.max_attempts:
                    logger.warning("binance REST %s failed (%s); giving up", path, e.reason)
                    raise BinanceRequestError(
                        path, f"{e.reason} (after {attempt} attempts)"
                    ) from None
                delay = backoff.next_delay() * self._random.uniform(0.5, 1.0)
                if e.retry_after_s is not None:
                    delay = max(delay, e.retry_after_s)
                logger.warning(
                    "binance REST %s failed (%s); retrying in %.3g s (attempt %d)",
                    path,
                    e.reason,
                    delay,
                    attempt,
                )
                if self._stop.wait(delay):
                    raise BinanceRequestError(path, f"closed while retrying ({e.reason})") from None

    def _attempt(self, path: str, params: dict[str, Any] | None, parse: Callable[[Any], T]) -> T:
        if self._stop.is_set():
            raise BinanceRequestError(path, "closed")
        self.requests += 1
        try:
            response = self._client.get(path, params=params)
        except httpx.TimeoutException as e:
            raise _RetryableError(f"timed out ({type(e).__name__})") from None
        except httpx.TransportError as e:
            raise _RetryableError(f"{type(e).__name__}: {e}") from None
        status = response.status_code
        if status in (418, 429):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            what = "IP banned" if status == 418 else "rate limited"
            raise _RetryableError(f"HTTP {status} {what}, Retry-After={retry_after}", retry_after)
        if status >= 500:
            raise _RetryableError(f"HTTP {status}")
        if status >= 400:
            code, msg = _error_body(response.content)
            raise BinanceRequestError(path, f"HTTP {status}: {msg}", status=status, code=code)
        try:
            return parse(orjson.loads(response.content))
        except orjson.JSONDecodeError:
            raise _RetryableError(f"malformed JSON: {_excerpt(response.content)!r}") from None
        except (KeyError, IndexError, TypeError, ValueError) as e:
            shape = f"{type(e).__name__}: {e}"
            raise _RetryableError(
                f"unexpected JSON ({shape}): {_excerpt(response.content)!r}"
            ) from None

    def close(self) -> None:
        """Release the connection pool (idempotent)."""
        self._client.close()

    def __enter__(self) -> BinanceRest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- parsing (a shape error becomes a retry in the caller) -----------------------------
def _parse_exchange_info(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body["symbols"], list):
        raise TypeError("expected an object with a 'symbols' list")
    return body


def _parse_klines(body: list[list[Any]]) -> list[Kline]:
    return [
        Kline(int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]))
        for r in body
    ]


def _parse_agg_trades(body: list[dict[str, Any]]) -> list[Trade]:
    return [Trade(int(t["a"]), int(t["T"]), float(t["p"]), float(t["q"])) for t in body]


def _parse_trades(body: list[dict[str, Any]]) -> list[Trade]:
    return [Trade(int(t["id"]), int(t["time"]), float(t["price"]), float(t["qty"])) for t in body]


def _error_body(content: bytes) -> tuple[int | None, str]:
    """Binance's ``{"code": -1121, "msg": "Invalid symbol."}``, or the raw excerpt."""
    try:
        body = orjson.loads(content)
        return int(body["code"]), f"{body['msg']} (code {body['code']})"
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None, repr(_excerpt(content))


def _excerpt(content: bytes) -> str:
    text = content[:_EXCERPT_CHARS].decode("utf-8", "replace")
    return text + ("..." if len(content) > _EXCERPT_CHARS else "")
