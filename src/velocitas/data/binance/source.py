"""Binance as a live source: history bars by REST, then live trades or bars by WebSocket.

``BinanceSource(["BTC", "ETH"])`` checks the symbols (``BTCUSDT``, ``ETHUSDT``) with
``/api/v3/exchangeInfo`` when built, so that an unknown coin fails before the engine starts.
``batches()`` then starts a background thread running an asyncio loop that

1. fetches the last ``history_minutes`` closed 1-minute bars per coin (``/api/v3/klines``)
   and delivers them first, as bars (``CoinSeries`` with OHLC), so indicators are warm;
2. opens the combined stream (``btcusdt@aggTrade/ethusdt@aggTrade`` by default; ``trade`` or
   ``kline_1m`` on request) and delivers every trade (or closed bar) exactly once, in order
   per coin: duplicates are dropped by trade id (bar open time), and every gap -- after a
   reconnect, or a message lost -- is filled by REST (``/api/v3/aggTrades?fromId=``,
   ``/api/v3/historicalTrades?fromId=``, ``/api/v3/klines``) before the stream goes on.

The loop hands data to ``batches()`` through a thread-safe outbox: each batch holds what
arrived since the previous one (up to ``batch_max`` rows). Nothing the network or the server
does ends the source (see ``stream.py`` and ``rest.py`` for the reconnect and retry rules);
only ``close()`` does.

Ticks: ``price`` in the quote asset, ``volume`` the trade's base quantity, ``timestamp`` the
trade time (UTC ms). Bars: OHLC and base volume, ``timestamp`` the bar's open time. For trade
streams the history ends with the last closed minute and the ticks start when the stream
opens: trades of the minute in between are not sent (there is no trade id to fill from yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from difflib import get_close_matches
from typing import Any, Protocol, TypeVar

import httpx

from velocitas.core.errors import ConfigError
from velocitas.core.models import Dataset
from velocitas.data._polling import reject_unknown_options
from velocitas.data.binance._outbox import Outbox
from velocitas.data.binance._sequencer import Sequencer
from velocitas.data.binance.rest import (
    DEFAULT_REST_URL,
    MAX_LIMIT,
    BinanceRequestError,
    BinanceRest,
    Kline,
    Trade,
)
from velocitas.data.binance.stream import (
    DEFAULT_WS_URL,
    MAX_CONNECTION_AGE_S,
    STREAM_KINDS,
    StreamClient,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

MINUTE_MS = 60_000
INVALID_SYMBOL = -1121  # Binance's error code for a symbol it does not list
SUGGESTIONS = 5


class BinanceSettings(Protocol):
    """What ``binance_source`` reads from ``velocitas.settings.Settings``."""

    binance_rest_url: str
    binance_ws_url: str
    quote_asset: str


class BinanceSource:
    """Live Binance spot market data; see the module docstring.

    Args:
        coins: base assets, e.g. ``["BTC", "ETH"]``; each trades as ``COIN + quote_asset``.
        rest_url, ws_url: API roots (tests point them at a local server).
        quote_asset: the quote of every symbol, e.g. ``"USDT"``.
        stream: ``"aggTrade"`` (default: every taker order, backfillable by id), ``"trade"``
            (every fill) or ``"kline_1m"`` (closed 1-minute bars only).
        history_minutes: closed 1-minute bars per coin delivered first (0: none); one klines
            request (weight 2) per 1,000 bars and coin.
        batch_max: most rows in one yielded batch.
        stall_timeout_s: reconnect when the stream is silent this long.
        timeout_s: per-request REST timeout and WebSocket open timeout.
        backoff_initial_s, max_backoff_s: retry and reconnect delays (doubling, jittered).
        max_connection_age_s: reconnect before Binance's 24-hour cut.
        ping_interval_s: our keep-alive pings (Binance's own pings are answered regardless).
        validate: check the symbols now (else call ``validate()`` before streaming).
        validate_attempts: tries of the exchangeInfo request before giving up.
        api_key: sent as ``X-MBX-APIKEY`` (not needed for market data).
        transport: an httpx transport for the REST client (tests).
        seed: seeds the jitter (tests).

    Raises:
        ConfigError: bad options, or a coin Binance does not list (or does not trade).
        DataError: exchangeInfo could not be fetched (network, Binance down).
    """

    name = "binance"

    def __init__(
        self,
        coins: Sequence[str],
        *,
        rest_url: str = DEFAULT_REST_URL,
        ws_url: str = DEFAULT_WS_URL,
        quote_asset: str = "USDT",
        stream: str = "aggTrade",
        history_minutes: int = 500,
        batch_max: int = 4_096,
        stall_timeout_s: float = 30.0,
        timeout_s: float = 10.0,
        backoff_initial_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_connection_age_s: float = MAX_CONNECTION_AGE_S,
        ping_interval_s: float | None = 20.0,
        validate: bool = True,
        validate_attempts: int = 3,
        api_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
        seed: int | None = None,
    ) -> None:
        if stream not in STREAM_KINDS:
            raise ConfigError(f"stream must be one of {', '.join(STREAM_KINDS)}, was {stream!r}")
        if not isinstance(history_minutes, int) or history_minutes < 0:
            raise ConfigError(f"history_minutes must be an int >= 0, was {history_minutes!r}")
        if batch_max < 1:
            raise ConfigError(f"batch_max must be >= 1, was {batch_max}")
        if not quote_asset or not quote_asset.isalnum():
            raise ConfigError(f"quote_asset must be an asset code like 'USDT', was {quote_asset!r}")
        self.coins = [c.strip().upper() for c in coins]
        if not self.coins or len(set(self.coins)) != len(self.coins):
            raise ConfigError(f"coins must be a non-empty list without repeats, was {coins!r}")
        odd = [c for c in self.coins if not c.isalnum()]
        if odd:
            raise ConfigError(f"coins must be asset codes like 'BTC' (no quote asset), was {odd}")
        self.quote_asset = quote_asset.upper()
        self.symbols = {f"{coin}{self.quote_asset}": i for i, coin in enumerate(self.coins)}
        self.rest_url = rest_url
        self.ws_url = ws_url
        self.stream = stream
        self.history_minutes = history_minutes
        self.batch_max = batch_max
        self._rest_options: dict[str, Any] = {
            "timeout_s": timeout_s,
            "backoff_initial_s": backoff_initial_s,
            "max_backoff_s": max_backoff_s,
            "api_key": api_key,
            "transport": transport,
            "seed": seed,
        }
        self._stop = threading.Event()
        self._rest = BinanceRest(rest_url, max_attempts=None, stop=self._stop, **self._rest_options)
        self._outbox = Outbox(self.coins)
        self._step = MINUTE_MS if stream == "kline_1m" else 1
        self._sequencer: Sequencer[Any] = Sequencer(
            self.symbols, step=self._step, deliver=self._deliver(), fetch=self._fetch_page
        )
        self._stream = StreamClient(
            ws_url,
            [f"{symbol.lower()}@{stream}" for symbol in self.symbols],
            on_event=self._sequencer.on_item,
            on_connected=self._on_connected,
            stall_timeout_s=stall_timeout_s,
            max_connection_age_s=max_connection_age_s,
            backoff_initial_s=backoff_initial_s,
            max_backoff_s=max_backoff_s,
            open_timeout_s=timeout_s,
            ping_interval_s=ping_interval_s,
            ping_timeout_s=ping_interval_s,
            seed=seed,
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._rest_lock: asyncio.Lock | None = None
        self.history_bars = 0
        if validate:
            try:
                self.validate(attempts=validate_attempts)
            except BaseException:
                self._rest.close()
                raise

    # -- symbols --------------------------------------------------------------------------
    def validate(self, attempts: int = 3) -> None:
        """Check with exchangeInfo that Binance lists and trades every symbol.

        Raises:
            ConfigError: naming the unknown coin(s) and a few valid ones.
            DataError: exchangeInfo could not be fetched in ``attempts`` tries.
        """
        options = {**self._rest_options, "max_attempts": attempts}
        with BinanceRest(self.rest_url, stop=self._stop, **options) as rest:
            try:
                listed = rest.exchange_info(list(self.symbols))["symbols"]
            except BinanceRequestError as e:
                if e.code != INVALID_SYMBOL:
                    raise
                listed = rest.exchange_info()["symbols"]
        by_symbol = {s.get("symbol"): s for s in listed if isinstance(s, dict)}
        unknown = [c for c, s in zip(self.coins, self.symbols, strict=True) if s not in by_symbol]
        if unknown:
            raise ConfigError(self._unknown_message(unknown, listed))
        halted = {
            f"{coin} ({symbol}: {by_symbol[symbol].get('status')})"
            for coin, symbol in zip(self.coins, self.symbols, strict=True)
            if by_symbol[symbol].get("status", "TRADING") != "TRADING"
        }
        if halted:
            raise ConfigError(f"Binance does not trade {', '.join(sorted(halted))} at the moment")

    def _unknown_message(self, unknown: list[str], listed: list[Any]) -> str:
        bases = [
            str(s.get("baseAsset"))
            for s in listed
            if isinstance(s, dict)
            and s.get("quoteAsset") == self.quote_asset
            and s.get("status", "TRADING") == "TRADING"
        ]
        names = ", ".join(f"{c!r} ({c}{self.quote_asset})" for c in unknown)
        close = sorted({m for c in unknown for m in get_close_matches(c, bases, n=3, cutoff=0.5)})
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return (
            f"unknown coin {names} on Binance: no such {self.quote_asset} symbol. "
            f"Expected a listed base asset, e.g. {', '.join(bases[:SUGGESTIONS]) or 'none'}"
            f" ({len(bases)} trade against {self.quote_asset}){hint}"
        )

    # -- the DataSource protocol ----------------------------------------------------------
    def batches(self) -> Iterator[Dataset]:
        """History bars first, then live data, until ``close()``; see the module docstring."""
        with self._lock:
            if self._thread is not None or self.closed:
                raise ConfigError("a binance source streams once; build a new one")
            self._thread = threading.Thread(target=self._run, name="velocitas-binance", daemon=True)
            self._thread.start()
        try:
            while not self.closed:
                batch = self._outbox.take(self.batch_max, timeout_s=0.05)
                if batch is not None and not self.closed:
                    yield batch
        finally:
            self.close()
            self.join(self._join_timeout_s)

    def close(self) -> None:
        """Stop (thread-safe): ``batches()`` returns within ~50 ms, the thread soon after."""
        if self._stop.is_set():
            return  # once: a second cancel could cut the first one's clean-up short
        self._stop.set()
        if self._thread is None:
            self._rest.close()  # never started: nothing else holds it
        loop, main = self._loop, self._main
        if loop is not None and main is not None:
            with contextlib.suppress(RuntimeError):  # the loop has finished already
                loop.call_soon_threadsafe(main.cancel)

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the background thread to end (after ``close()``); True if it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def status(self) -> dict[str, Any]:
        """Health: connection, message age and rate, reconnects, gaps filled, counters."""
        s, q = self._stream, self._sequencer
        last = s.last_message_at
        return {
            "connected": s.connected and not self.closed,
            "last_message_age_s": None if last is None else time.monotonic() - last,
            "reconnects": s.reconnects,
            "messages_per_s": s.messages_per_s(),
            "gaps_filled": q.gaps_filled,
            "backfilled": q.backfilled,
            "duplicates_dropped": q.duplicates,
            "skipped": q.skipped,
            "messages": s.messages,
            "parse_errors": s.parse_errors,
            "rotations": s.rotations,
            "rest_failures": self._rest.failures,
            "history_bars": self.history_bars,
            "delivered": self._outbox.delivered,
            "waiting": len(self._outbox),
            "stream": self.stream,
            "last_error": s.last_error or self._rest.last_error,
        }

    @property
    def _join_timeout_s(self) -> float:
        return float(self._rest_options["timeout_s"]) + 5.0

    # -- the background thread ------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._live())
        except Exception:  # never raises in practice; a daemon thread must not die silently
            logger.exception("binance source: the event loop failed")
        finally:
            self._rest.close()  # after asyncio.run: no REST call is in flight any more

    async def _live(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        self._rest_lock = asyncio.Lock()
        if self.closed:  # close() ran before the loop was visible to it
            return
        try:
            await self._load_history()
            await self._stream.run()
        except asyncio.CancelledError:
            pass
        finally:
            await self._sequencer.cancel()

    async def _load_history(self) -> None:
        if self.history_minutes == 0:
            return
        for symbol, code in self.symbols.items():
            try:
                bars = await self._rest_call(self._history, symbol)
            except BinanceRequestError as e:
                if not self.closed:
                    logger.error("binance %s: no history (%s); going live without it", symbol, e)
                continue
            for bar in bars:
                self._outbox.add_bar(code, bar)
            self.history_bars += len(bars)
            if bars and self.stream == "kline_1m":
                self._sequencer.set_last_key(symbol, bars[-1].open_ms)
            logger.info("binance %s: %d history bars", symbol, len(bars))

    def _history(self, symbol: str) -> list[Kline]:
        """The last ``history_minutes`` closed bars (pages of 1,000, newest page first)."""
        rows: list[Kline] = []
        need = self.history_minutes + 1  # the newest bar is the open one: dropped below
        end_ms: int | None = None
        while need > 0:
            limit = min(MAX_LIMIT, need)
            page = self._rest.klines(symbol, end_ms=end_ms, limit=limit)
            rows[:0] = page
            need -= len(page)
            if len(page) < limit:
                break
            end_ms = page[0].open_ms - 1
        return rows[:-1]

    def _on_connected(self, opened: int) -> None:
        if opened > 1:
            self._sequencer.on_reconnected()

    def _deliver(self) -> Callable[[int, Any], None]:
        return self._outbox.add_bar if self.stream == "kline_1m" else self._outbox.add_trade

    async def _fetch_page(
        self, symbol: str, first: int, until: int | None
    ) -> tuple[list[Any], bool]:
        """One REST page of the items from key ``first`` on (see ``Sequencer``)."""
        if self.stream == "kline_1m":
            end = None if until is None else until - 1
            bars = await self._rest_call(self._rest.klines, symbol, start_ms=first, end_ms=end)
            more = len(bars) == MAX_LIMIT
            if until is None and not more:
                bars = bars[:-1]  # the newest bar is still open: the stream delivers it closed
            return bars, more
        fetch = self._rest.agg_trades if self.stream == "aggTrade" else self._rest.historical_trades
        trades: list[Trade] = await self._rest_call(fetch, symbol, from_id=first)
        return trades, len(trades) == MAX_LIMIT

    async def _rest_call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn`` in a worker thread, one REST call at a time (kinder to the rate limit)."""
        lock = self._rest_lock
        if lock is None:
            raise RuntimeError("REST calls run in the source's event loop")
        async with lock:
            return await asyncio.to_thread(fn, *args, **kwargs)


def binance_source(
    coins: Sequence[str], settings: BinanceSettings, **options: Any
) -> BinanceSource:
    """The Binance source for ``HFTEngine.start("binance", ...)``: URLs and quote from settings.

    Raises:
        ConfigError: an option ``BinanceSource`` does not take, or an unknown coin.
    """
    reject_unknown_options(BinanceSource, options, "binance", ["coins"])
    options.setdefault("rest_url", settings.binance_rest_url)
    options.setdefault("ws_url", settings.binance_ws_url)
    options.setdefault("quote_asset", settings.quote_asset)
    return BinanceSource(coins, **options)
