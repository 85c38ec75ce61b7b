"""Binance combined-stream WebSocket client: connect, parse, keep alive, reconnect.

``StreamClient.run()`` keeps one connection to ``<ws_url>/stream?streams=a/b/c`` open until
cancelled, and hands every parsed trade or closed kline to ``on_event`` (in the event loop's
thread, in arrival order). Resilience:

* **keep-alive**: Binance pings every 20 s and drops a connection that has not answered
  within a minute; websockets answers pings with a pong carrying the same payload. We also
  ping the server every ``ping_interval_s`` and treat a missing pong (``ping_timeout_s``) as
  a dead connection;
* **stall**: no message for ``stall_timeout_s`` -> the connection is aborted and reopened;
* **dropped or closed connections** (a network error, Binance's close at the 24-hour mark, a
  ``serverShutdown`` event) -> reopened after a back-off that doubles from
  ``backoff_initial_s`` up to ``max_backoff_s``, with jitter (x0.5-1.0) so that many clients
  do not come back in step; it resets once a connection has delivered a message;
* **the 24-hour limit**: a connection older than ``max_connection_age_s`` (23.5 h by default)
  is closed and reopened at once, before Binance cuts it.

``on_connected(opened)`` runs right after each successful open (``opened`` counts them from 1),
before the first message is read: the source uses it to fill the gap by REST. Messages that
are not JSON, or not the expected shape, are counted and logged (one line, at most every
``log_every_s``) and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK, WebSocketException

from velocitas.core.errors import ConfigError
from velocitas.data._polling import Backoff
from velocitas.data.binance.rest import Kline, Trade

logger = logging.getLogger(__name__)

DEFAULT_WS_URL = "wss://stream.binance.com:9443"
STREAM_KINDS = ("aggTrade", "trade", "kline_1m")
MAX_CONNECTION_AGE_S = 23.5 * 3600  # Binance closes every stream connection at 24 h
SHUTDOWN = "serverShutdown"  # parse_message's answer to Binance's shutdown notice
RATE_WINDOW_S = 10.0
_EXCERPT_CHARS = 80

OnEvent = Callable[[str, Trade | Kline], None]


class MalformedMessageError(ValueError):
    """A stream message that is not JSON, or not the shape Binance documents."""


def parse_message(raw: str | bytes) -> tuple[str, Trade | Kline] | str | None:
    """One combined-stream (or raw-stream) message -> ``(SYMBOL, Trade | Kline)``.

    Returns ``SHUTDOWN`` for a ``serverShutdown`` notice and None for what carries no market
    data (a kline still open, a subscription reply, event types we do not use).

    Raises:
        MalformedMessageError: not JSON, or a known event missing a field or with a bad value.
    """
    try:
        message = orjson.loads(raw)
        data = message.get("data", message)
        kind = data.get("e")
        if kind == "aggTrade":
            trade = Trade(int(data["a"]), int(data["T"]), float(data["p"]), float(data["q"]))
            return str(data["s"]), trade
        if kind == "trade":
            trade = Trade(int(data["t"]), int(data["T"]), float(data["p"]), float(data["q"]))
            return str(data["s"]), trade
        if kind == "kline":
            k = data["k"]
            if not k["x"]:
                return None
            bar = Kline(
                int(k["t"]),
                float(k["o"]),
                float(k["h"]),
                float(k["l"]),
                float(k["c"]),
                float(k["v"]),
            )
            return str(data["s"]), bar
        if kind == SHUTDOWN:
            return SHUTDOWN
        if kind is None and not ("result" in message or "id" in message):
            raise KeyError("e")
        return None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise MalformedMessageError(f"{type(e).__name__}: {e}: {_excerpt(raw)!r}") from None


class StreamClient:
    """One combined-stream connection, kept open; see the module docstring.

    Args:
        ws_url: stream root, e.g. ``wss://stream.binance.com:9443`` (tests: a local server).
        streams: stream names, e.g. ``["btcusdt@aggTrade", "ethusdt@aggTrade"]``.
        on_event: called with ``(symbol, Trade | Kline)`` per message carrying market data.
        on_connected: called with the number of opens so far, after each open.
        stall_timeout_s: reconnect when no message came for this long.
        max_connection_age_s: reconnect (at once) a connection this old.
        backoff_initial_s, max_backoff_s: reconnect delays (doubling, jittered).
        open_timeout_s: TCP + TLS + WebSocket handshake timeout.
        ping_interval_s, ping_timeout_s: our own keep-alive pings (None: off).
        close_timeout_s: how long a closing handshake may take before the socket is dropped.
        seed: seeds the jitter (tests).
    """

    def __init__(
        self,
        ws_url: str,
        streams: Sequence[str],
        *,
        on_event: OnEvent,
        on_connected: Callable[[int], None] | None = None,
        stall_timeout_s: float = 30.0,
        max_connection_age_s: float = MAX_CONNECTION_AGE_S,
        backoff_initial_s: float = 0.5,
        max_backoff_s: float = 30.0,
        open_timeout_s: float = 10.0,
        ping_interval_s: float | None = 20.0,
        ping_timeout_s: float | None = 20.0,
        close_timeout_s: float = 2.0,
        log_every_s: float = 10.0,
        seed: int | None = None,
    ) -> None:
        if not streams:
            raise ConfigError("a combined stream needs at least one stream name")
        for name, value in (
            ("stall_timeout_s", stall_timeout_s),
            ("max_connection_age_s", max_connection_age_s),
            ("open_timeout_s", open_timeout_s),
            ("close_timeout_s", close_timeout_s),
        ):
            if value <= 0:
                raise ConfigError(f"{name} must be > 0 seconds, was {value}")
        self.url = f"{ws_url.rstrip('/')}/stream?streams={'/'.join(streams)}"
        self.on_event = on_event
        self.on_connected = on_connected
        self.stall_timeout_s = stall_timeout_s
        self.max_connection_age_s = max_connection_age_s
        self.open_timeout_s = open_timeout_s
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.close_timeout_s = close_timeout_s
        self.log_every_s = log_every_s
        self._backoff = Backoff(backoff_initial_s, max_backoff_s)
        self._random = random.Random(seed)
        self._watch_every_s = min(1.0, stall_timeout_s / 4)
        self._ws: ClientConnection | None = None
        self._close_reason: str | None = None
        self._planned = False
        self._closing: asyncio.Task[None] | None = None  # a graceful close under way
        self._rates: deque[tuple[float, int]] = deque()
        self._last_log_at = -float("inf")
        self._unlogged_errors = 0
        # Health, read by status(); written only in the loop's thread.
        self.connected = False
        self.opened = 0
        self.messages = 0
        self.parse_errors = 0
        self.rotations = 0
        self.last_message_at: float | None = None
        self.last_error: str | None = None

    @property
    def reconnects(self) -> int:
        """Successful opens after the first one."""
        return max(0, self.opened - 1)

    def messages_per_s(self) -> float:
        """Messages per second over the last ~10 s (sampled by the watchdog)."""
        samples = list(self._rates)
        if len(samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = samples[0], samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    async def run(self) -> None:
        """Connect, read and reconnect until cancelled. Never raises anything else."""
        while True:
            delay = await self._connect_once()
            if delay > 0:
                await asyncio.sleep(delay)

    def rotate(self, reason: str) -> None:
        """Close the current connection gracefully; ``run`` reopens it at once."""
        ws = self._ws
        if ws is not None and self._close_reason is None:
            self._close_reason = reason
            self._planned = True
            self.rotations += 1
            self._closing = asyncio.get_running_loop().create_task(ws.close(1000, reason))

    # -- one connection ---------------------------------------------------------------------
    async def _connect_once(self) -> float:
        """Open, read until the connection ends; returns the delay before the next try."""
        self._close_reason = None
        self._planned = False
        delivered = self.messages
        watchdog: asyncio.Task[None] | None = None
        try:
            async with connect(
                self.url,
                open_timeout=self.open_timeout_s,
                ping_interval=self.ping_interval_s,
                ping_timeout=self.ping_timeout_s,
                close_timeout=self.close_timeout_s,
                max_queue=None,  # read eagerly: a slow consumer shows as the outbox's backlog
                compression=None,  # Binance does not compress; saves CPU per message
                max_size=1 << 22,
            ) as ws:
                self._ws = ws
                self.opened += 1
                self.connected = True
                now = time.monotonic()
                self.last_message_at = now
                watchdog = asyncio.get_running_loop().create_task(self._watch(ws, now))
                logger.info("binance stream connected (%d): %s", self.opened, self.url)
                if self.on_connected is not None:
                    self.on_connected(self.opened)
                await self._read(ws)
            reason = self._close_reason or "closed by the server"
        except asyncio.CancelledError:
            raise
        except (OSError, TimeoutError, WebSocketException) as e:
            reason = self._close_reason or f"{type(e).__name__}: {e}"
        except Exception as e:  # a bug of ours in a handler: reconnect and fill, never die
            logger.exception("binance stream: handler failed; reconnecting")
            reason = f"{type(e).__name__}: {e}"
        finally:
            opened, self._ws = self._ws, None
            self.connected = False
            if watchdog is not None:
                watchdog.cancel()
            if opened is not None and not opened.transport.is_closing():
                opened.transport.abort()  # a closing handshake cut short (cancelled): no leak
        if self.messages > delivered:
            self._backoff.reset()
        delay = (
            0.0 if self._planned else self._backoff.next_delay() * self._random.uniform(0.5, 1.0)
        )
        self.last_error = reason
        logger.warning("binance stream disconnected (%s); reconnecting in %.3g s", reason, delay)
        return delay

    async def _read(self, ws: ClientConnection) -> None:
        on_event = self.on_event
        monotonic = time.monotonic
        try:
            async for raw in ws:
                self.last_message_at = monotonic()
                self.messages += 1
                try:
                    parsed = parse_message(raw)
                except MalformedMessageError as e:
                    self._malformed(e)
                    continue
                if type(parsed) is tuple:
                    on_event(parsed[0], parsed[1])
                elif parsed == SHUTDOWN:
                    self.rotate("the server announced its shutdown")
        except ConnectionClosedOK:
            pass

    async def _watch(self, ws: ClientConnection, opened_at: float) -> None:
        """Every ~second: sample the rate, abort a stalled connection, rotate an old one."""
        while True:
            await asyncio.sleep(self._watch_every_s)
            now = time.monotonic()
            self._rates.append((now, self.messages))
            while self._rates and self._rates[0][0] < now - RATE_WINDOW_S:
                self._rates.popleft()
            quiet_s = now - (self.last_message_at or opened_at)
            if quiet_s > self.stall_timeout_s and self._close_reason is None:
                self._close_reason = f"stalled: no message for {quiet_s:.3g} s"
                ws.transport.abort()  # a stalled peer may not answer a closing handshake
            elif now - opened_at > self.max_connection_age_s:
                self.rotate(f"connection older than {self.max_connection_age_s:g} s")

    def _malformed(self, error: MalformedMessageError) -> None:
        self.parse_errors += 1
        self._unlogged_errors += 1
        now = time.monotonic()
        if now - self._last_log_at >= self.log_every_s:
            logger.warning(
                "binance stream: skipped %d malformed message(s); latest: %s",
                self._unlogged_errors,
                error,
            )
            self._last_log_at = now
            self._unlogged_errors = 0


def _excerpt(raw: Any) -> str:
    text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")
    return text[:_EXCERPT_CHARS] + ("..." if len(text) > _EXCERPT_CHARS else "")
