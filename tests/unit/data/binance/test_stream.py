"""parse_message on real messages; StreamClient against small local WebSocket servers."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from velocitas.core.errors import ConfigError
from velocitas.data.binance.rest import Kline, Trade
from velocitas.data.binance.stream import (
    SHUTDOWN,
    MalformedMessageError,
    StreamClient,
    parse_message,
)

# Real messages, from shared/fixtures/binance_spot_ws_combined_{aggTrade,trade,kline}.json.
AGG_TRADE = {
    "stream": "nknusdt@aggTrade",
    "data": {"e": "aggTrade", "E": 1633998523963, "s": "NKNUSDT", "a": 15683430,
             "p": "0.35280000", "q": "58.00000000", "f": 19862790, "l": 19862790,
             "T": 1633998523963, "m": False, "M": True},
}  # fmt: skip
TRADE = {
    "stream": "btcusdt@trade",
    "data": {"e": "trade", "E": 1723161601438, "s": "BTCUSDT", "t": 3735693016,
             "p": "61685.99000000", "q": "0.00017000", "T": 1723161601437, "m": True, "M": True},
}  # fmt: skip
KLINE = {
    "stream": "nknusdt@kline_1m",
    "data": {"e": "kline", "E": 1633998523963, "s": "NKNUSDT",
             "k": {"t": 1633998480000, "T": 1633998539999, "s": "NKNUSDT", "i": "1m",
                   "f": 19862761, "L": 19862790, "o": "0.35270000", "c": "0.35280000",
                   "h": "0.35280000", "l": "0.35220000", "v": "25877.00000000", "n": 30,
                   "x": False, "q": "9116.04600000", "V": "58.00000000", "Q": "20.46240000",
                   "B": "0"}},
}  # fmt: skip
STREAMS = ["btcusdt@aggTrade", "ethusdt@aggTrade"]
FAST = {"backoff_initial_s": 0.02, "max_backoff_s": 0.08, "close_timeout_s": 0.5}

Handler = Callable[[ServerConnection], Awaitable[None]]


def agg_trade(trade_id: int, symbol: str = "BTCUSDT") -> bytes:
    data = {**AGG_TRADE["data"], "s": symbol, "a": trade_id, "T": 1_700_000_000_000 + trade_id}
    return orjson.dumps({"stream": f"{symbol.lower()}@aggTrade", "data": data})


def closed_kline() -> dict[str, Any]:
    return {**KLINE, "data": {**KLINE["data"], "k": {**KLINE["data"]["k"], "x": True}}}


# -- parse_message ----------------------------------------------------------------------------
def test_parse_agg_trade_and_trade_give_id_time_price_quantity():
    assert parse_message(orjson.dumps(AGG_TRADE)) == (
        "NKNUSDT",
        Trade(15683430, 1633998523963, 0.3528, 58.0),
    )
    assert parse_message(orjson.dumps(TRADE).decode()) == (
        "BTCUSDT",
        Trade(3735693016, 1723161601437, 61685.99, 0.00017),
    )


def test_parse_kline_gives_closed_bars_only():
    assert parse_message(orjson.dumps(KLINE)) is None
    assert parse_message(orjson.dumps(closed_kline())) == (
        "NKNUSDT",
        Kline(1633998480000, 0.3527, 0.3528, 0.3522, 0.3528, 25877.0),
    )


def test_parse_raw_stream_message_without_the_combined_wrapper():
    assert parse_message(orjson.dumps(TRADE["data"]))[0] == "BTCUSDT"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"result": None, "id": 1}, None),  # a subscription reply
        ({"stream": "btcusdt@bookTicker", "data": {"e": "bookTicker", "u": 1}}, None),
        ({"e": "serverShutdown", "E": 1}, SHUTDOWN),
    ],
)
def test_parse_messages_without_market_data(message, expected):
    assert parse_message(orjson.dumps(message)) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"BTCUSDT","a":1',
        b"[1, 2, 3]",
        b"{}",
        orjson.dumps({**AGG_TRADE, "data": {**AGG_TRADE["data"], "p": None}}),
        orjson.dumps({"stream": "x", "data": {"e": "trade", "s": "BTCUSDT"}}),
    ],
)
def test_parse_malformed_raises_with_an_excerpt(raw):
    with pytest.raises(MalformedMessageError):
        parse_message(raw)


# -- StreamClient -----------------------------------------------------------------------------
@asynccontextmanager
async def ws_server(handler: Handler, **options: Any) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, compression=None, **options) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


class Recorder:
    """Collects what a StreamClient hands on."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.opened: list[int] = []

    def client(self, url: str, **options: Any) -> StreamClient:
        return StreamClient(
            url,
            STREAMS,
            on_event=lambda s, item: self.events.append((s, item)),
            on_connected=self.opened.append,
            seed=3,
            **{**FAST, **options},
        )

    def ids(self) -> list[int]:
        return [item.trade_id for _, item in self.events]


async def run_until(client: StreamClient, done: Callable[[], bool], timeout_s: float = 5.0):
    task = asyncio.get_running_loop().create_task(client.run())
    try:
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.005)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def serving(*connections: Callable[[ServerConnection], Awaitable[None]]) -> Handler:
    """A handler running the n-th behaviour for the n-th connection (the last one repeats)."""
    count = 0

    async def handle(ws: ServerConnection) -> None:
        nonlocal count
        behaviour = connections[min(count, len(connections) - 1)]
        count += 1
        await behaviour(ws)

    return handle


def send_ids(ids: range, then: str = "wait") -> Callable[[ServerConnection], Awaitable[None]]:
    async def behaviour(ws: ServerConnection) -> None:
        for i in ids:
            await ws.send(agg_trade(i).decode())
        if then == "drop":
            ws.transport.abort()
        elif then == "close":
            await ws.close(1000, "24 hours")
        else:
            await ws.wait_closed()

    return behaviour


def test_reads_the_combined_stream_path_and_delivers_in_order():
    paths: list[str] = []

    async def behaviour(ws: ServerConnection) -> None:
        paths.append(ws.request.path)
        await send_ids(range(1, 51))(ws)

    async def scenario() -> Recorder:
        rec = Recorder()
        async with ws_server(serving(behaviour)) as url:
            client = rec.client(url)
            await run_until(client, lambda: len(rec.events) == 50 and client.connected)
            assert client.messages == 50
        return rec

    rec = asyncio.run(scenario())
    assert paths == ["/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"]
    assert rec.ids() == list(range(1, 51))
    assert rec.opened == [1]


@pytest.mark.parametrize("how", ["drop", "close"])
def test_dropped_or_closed_connection_is_reopened_and_reported(how):
    async def scenario() -> tuple[Recorder, StreamClient]:
        rec = Recorder()
        handler = serving(send_ids(range(1, 6), then=how), send_ids(range(6, 11)))
        async with ws_server(handler) as url:
            client = rec.client(url)
            await run_until(client, lambda: len(rec.events) == 10)
        return rec, client

    rec, client = asyncio.run(scenario())
    assert rec.ids() == list(range(1, 11))
    assert rec.opened == [1, 2]
    assert client.reconnects == 1
    expected = "no close frame" if how == "drop" else "closed by the server"
    assert expected in (client.last_error or "")


def test_stalled_stream_is_aborted_after_the_stall_timeout_and_reopened():
    async def scenario() -> tuple[Recorder, StreamClient, float]:
        rec = Recorder()
        async with ws_server(serving(send_ids(range(1, 3)), send_ids(range(3, 5)))) as url:
            client = rec.client(url, stall_timeout_s=0.2)
            started = time.monotonic()
            await run_until(client, lambda: len(rec.events) == 4)
        return rec, client, time.monotonic() - started

    rec, client, elapsed_s = asyncio.run(scenario())
    assert rec.opened == [1, 2]
    assert "stalled" in (client.last_error or "")
    assert elapsed_s >= 0.2


def test_reconnect_delays_double_with_jitter_up_to_the_maximum(caplog):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there: every attempt is refused

    async def scenario() -> None:
        client = Recorder().client(f"ws://127.0.0.1:{port}")
        lines = lambda: [r for r in caplog.records if "reconnecting in" in r.getMessage()]  # noqa: E731
        await run_until(client, lambda: len(lines()) >= 5)

    with caplog.at_level(logging.WARNING, logger="velocitas.data.binance.stream"):
        asyncio.run(scenario())
    delays = [
        float(re.search(r"reconnecting in ([\d.e-]+) s", r.getMessage()).group(1))
        for r in caplog.records
        if "reconnecting in" in r.getMessage()
    ][:5]
    for delay, base in zip(delays, [0.02, 0.04, 0.08, 0.08, 0.08], strict=True):
        assert base * 0.5 <= delay <= base
    assert len(set(delays[2:])) > 1  # jitter: not the same delay every time


def test_connection_older_than_the_maximum_age_is_replaced_at_once():
    async def steady(ws: ServerConnection) -> None:
        for i in range(1, 10_000):
            await ws.send(agg_trade(i).decode())
            await asyncio.sleep(0.005)

    async def scenario() -> tuple[Recorder, StreamClient]:
        rec = Recorder()
        async with ws_server(serving(steady)) as url:
            client = rec.client(url, max_connection_age_s=0.3, stall_timeout_s=0.5)
            await run_until(client, lambda: len(rec.opened) >= 2)
        return rec, client

    _, client = asyncio.run(scenario())
    assert client.rotations >= 1
    assert "older than" in (client.last_error or "")


def test_server_shutdown_notice_makes_the_client_reconnect():
    async def announce(ws: ServerConnection) -> None:
        await ws.send(agg_trade(1).decode())
        await ws.send(orjson.dumps({"e": "serverShutdown", "E": 1}).decode())
        await ws.wait_closed()

    async def scenario() -> tuple[Recorder, StreamClient]:
        rec = Recorder()
        async with ws_server(serving(announce, send_ids(range(2, 3)))) as url:
            client = rec.client(url)
            await run_until(client, lambda: len(rec.events) == 2)
        return rec, client

    rec, client = asyncio.run(scenario())
    assert rec.opened == [1, 2]
    assert client.rotations == 1


def test_server_pings_are_answered_so_the_connection_lives_on():
    async def slow(ws: ServerConnection) -> None:
        for i in range(1, 31):
            await ws.send(agg_trade(i).decode())
            await asyncio.sleep(0.02)
        await ws.wait_closed()

    async def scenario() -> tuple[Recorder, StreamClient]:
        rec = Recorder()
        # The server pings every 50 ms and closes the connection without a pong in 0.3 s.
        async with ws_server(serving(slow), ping_interval=0.05, ping_timeout=0.3) as url:
            client = rec.client(url, ping_interval_s=None)
            await run_until(client, lambda: len(rec.events) == 30)
        return rec, client

    rec, client = asyncio.run(scenario())
    assert rec.opened == [1]
    assert client.reconnects == 0


def test_garbage_is_skipped_counted_and_logged_on_one_line(caplog):
    async def noisy(ws: ServerConnection) -> None:
        await ws.send(agg_trade(1).decode())
        for _ in range(3):
            await ws.send("<html>502 Bad Gateway</html>")
        await ws.send(agg_trade(2).decode())
        await ws.wait_closed()

    async def scenario() -> StreamClient:
        rec = Recorder()
        async with ws_server(serving(noisy)) as url:
            client = rec.client(url)
            await run_until(client, lambda: len(rec.events) == 2)
        assert rec.ids() == [1, 2]
        return client

    with caplog.at_level(logging.WARNING, logger="velocitas.data.binance.stream"):
        client = asyncio.run(scenario())
    assert client.parse_errors == 3
    lines = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(lines) == 1
    assert "502 Bad Gateway" in lines[0]


def test_a_failing_handler_reconnects_instead_of_ending_the_stream(caplog):
    calls: list[int] = []

    def explode_once(symbol: str, item: Any) -> None:
        calls.append(item.trade_id)
        if len(calls) == 1:
            raise RuntimeError("bug in a handler")

    async def scenario() -> StreamClient:
        async with ws_server(serving(send_ids(range(1, 2)), send_ids(range(2, 3)))) as url:
            client = StreamClient(url, STREAMS, on_event=explode_once, **FAST)
            await run_until(client, lambda: len(calls) == 2)
        return client

    with caplog.at_level(logging.ERROR):
        client = asyncio.run(scenario())
    assert client.opened == 2
    assert "bug in a handler" in caplog.text


@pytest.mark.parametrize(
    "options", [{"stall_timeout_s": 0}, {"max_connection_age_s": -1}, {"max_backoff_s": 0.001}]
)
def test_bad_options_raise_config_error(options):
    with pytest.raises(ConfigError):
        StreamClient("ws://x", STREAMS, on_event=lambda s, i: None, **{**FAST, **options})


def test_no_streams_raises_config_error():
    with pytest.raises(ConfigError, match="at least one"):
        StreamClient("ws://x", [], on_event=lambda s, i: None)
