"""Benchmark: the Binance live feed's throughput and delay, against a local server.

Three measurements, on the real BTCUSDT aggTrades of ``shared/data`` turned into Binance
combined-stream messages (``{"stream": "btcusdt@aggTrade", "data": {...}}``, ids numbered
contiguously, the tape repeated with shifted times to reach the message count):

1. **parse**: ``parse_message`` (orjson) over the messages in memory, against the same field
   extraction with the standard library's ``json`` (the reference, same run): messages/s and
   the ratio.
2. **delivery**: a WebSocket server in a *separate process* (so that it does not share our
   GIL) sends ``FLOOD_MESSAGES`` as fast as it can; ``BinanceSource.batches()`` reads, parses,
   sequences (dedupe by id) and hands them out. Messages/s from the first to the last message
   delivered; the server's own send rate is reported to show it was not the bottleneck. The
   server is a plain ``websockets`` server rather than the FastAPI fake of the tests, whose
   per-message ASGI overhead would cap what we measure at the server's speed.
3. **delay** at ``PACED_RATE`` messages/s: the server records ``time.monotonic_ns()`` just
   before each send; a custom ``Strategy`` run by ``HFTEngine(backend="serial")`` records it
   in ``execute``; the message's sequence number rides in its quantity field so the two can
   be matched. CLOCK_MONOTONIC is one clock for every process on the machine (Linux), so the
   difference is the wall delay from the server's send to the strategy's ``execute``
   (socket, parse, sequencing, the outbox, the engine's producer queue and dispatcher).
   The same is measured at ``batches()`` (without the engine) to show where the time goes.

Run:  PYTHONPATH=src python benchmarks/feeds.py        (prints one JSON object)
"""

from __future__ import annotations

import asyncio
import csv
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from velocitas.core.models import MarketData
from velocitas.data.binance import BinanceSource, parse_message
from velocitas.engine.live import HFTEngine
from velocitas.strategies.base import Signal, Strategy

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "BTCUSDT-aggTrades.csv"
PARSE_MESSAGES = 18_745  # one pass over the 11,349-trade tape and most of a second
FLOOD_MESSAGES = 300_000
PACED_RATE = 1_000.0
PACED_MESSAGES = 5_000
WARMUP_MESSAGES = 500  # the first half second at 1,000/s: connection and caches settle
TARGET_PARSED_PER_S = 100_000.0
TARGET_P99_MS = 2.0


def build_messages(n: int, *, seq_in_qty: bool = False) -> list[bytes]:
    """``n`` combined-stream aggTrade messages from the real tape (repeated, times shifted)."""
    with DATA.open() as f:
        rows = [
            (int(r["timestamp"]), r["price"], r["qty"], r["is_buyer_maker"])
            for r in csv.DictReader(f)
        ]
    span = rows[-1][0] - rows[0][0] + 1
    out = []
    for i in range(n):
        ts, price, qty, maker = rows[i % len(rows)]
        ts += (i // len(rows)) * span
        data = {
            "e": "aggTrade", "E": ts, "s": "BTCUSDT", "a": i + 1, "p": price,
            "q": f"{i + 1}" if seq_in_qty else qty, "f": i + 1, "l": i + 1, "T": ts,
            "m": maker == "true", "M": True,
        }  # fmt: skip
        out.append(orjson.dumps({"stream": "btcusdt@aggTrade", "data": data}))
    return out


def stdlib_parse(raw: bytes) -> tuple[str, tuple[int, int, float, float]]:
    """The reference: the same extraction as ``parse_message`` with ``json``."""
    data = json.loads(raw)["data"]
    return data["s"], (int(data["a"]), int(data["T"]), float(data["p"]), float(data["q"]))


def bench_parse(messages: list[bytes], repeats: int = 5) -> dict[str, Any]:
    def best(parse: Any) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            for m in messages:
                parse(m)
            times.append(time.perf_counter() - started)
        return len(messages) / min(times)

    ours, reference = best(parse_message), best(stdlib_parse)
    return {
        "messages": len(messages),
        "orjson_messages_per_s": round(ours),
        "stdlib_json_messages_per_s": round(reference),
        "speedup_vs_stdlib_json": round(ours / reference, 2),
    }


# -- the server process -------------------------------------------------------------------------
def serve(mode: str, n: int, rate: float, ready: Any, report: Any) -> None:
    """Child process: one WebSocket server; the first client gets ``n`` messages."""
    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve as ws_serve

    messages = [m.decode() for m in build_messages(n, seq_in_qty=mode == "paced")]

    async def handler(ws: ServerConnection) -> None:
        sent_ns = np.zeros(n, dtype=np.int64)
        started = time.perf_counter()
        if mode == "flood":
            for m in messages:
                await ws.send(m)
        else:
            t0 = time.monotonic()
            for i, m in enumerate(messages):
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent_ns[i] = time.monotonic_ns()
                await ws.send(m)
        report.send((time.perf_counter() - started, sent_ns.tolist() if mode == "paced" else []))
        await ws.wait_closed()

    async def main() -> None:
        async with ws_serve(handler, "127.0.0.1", 0, compression=None) as server:
            ready.send(next(iter(server.sockets)).getsockname()[1])
            await asyncio.Future()

    asyncio.run(main())


class Server:
    """The server process, started and stopped around one measurement."""

    def __init__(self, mode: str, n: int, rate: float = 0.0) -> None:
        ctx = mp.get_context("spawn")
        ready_recv, ready_send = ctx.Pipe(duplex=False)
        self.report, report_send = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=serve, args=(mode, n, rate, ready_send, report_send))
        self.process.start()
        self.port = ready_recv.recv()
        ready_recv.close()

    def source(self) -> BinanceSource:
        return BinanceSource(
            ["BTC"],
            rest_url="http://127.0.0.1:9",  # never called: the ids have no gap
            ws_url=f"ws://127.0.0.1:{self.port}",
            validate=False,
            history_minutes=0,
            batch_max=16_384,
        )

    def stop(self) -> tuple[float, list[int]]:
        result: tuple[float, list[int]] = self.report.recv() if self.report.poll(30) else (0.0, [])
        self.process.terminate()
        self.process.join(10)
        self.report.close()
        return result


def bench_delivery(n: int) -> dict[str, Any]:
    server = Server("flood", n)
    src = server.source()
    delivered, first_at, last_at = 0, 0.0, 0.0
    for batch in src.batches():
        now = time.perf_counter()
        if delivered == 0:
            first_at = now
        delivered += len(batch)
        last_at = now
        if delivered >= n:
            break
    status = src.status()
    send_s, _ = server.stop()
    per_s = (delivered - 1) / (last_at - first_at)
    return {
        "messages": delivered,
        "delivered_per_s": round(per_s),
        "server_sent_per_s": round(n / send_s) if send_s else None,
        "duplicates_dropped": status["duplicates_dropped"],
        "gaps_filled": status["gaps_filled"],
        "target_per_s": TARGET_PARSED_PER_S,
        "met": per_s >= TARGET_PARSED_PER_S,
    }


class ArrivalRecorder(Strategy):
    """Records ``time.monotonic_ns()`` per message (its sequence number is the volume)."""

    def __init__(self, capacity: int) -> None:
        super().__init__("ArrivalRecorder", "BTC")
        self.arrived_ns = np.zeros(capacity + 1, dtype=np.int64)

    def execute(self, market_data: MarketData) -> Signal:
        self.arrived_ns[int(market_data.volume)] = time.monotonic_ns()
        return None


def percentiles_ms(delays_ns: np.ndarray) -> dict[str, float]:
    delays_ms = delays_ns / 1e6
    return {
        "p50_ms": round(float(np.percentile(delays_ms, 50)), 3),
        "p99_ms": round(float(np.percentile(delays_ms, 99)), 3),
        "max_ms": round(float(delays_ms.max()), 3),
    }


def bench_delay_engine(n: int, rate: float) -> dict[str, Any]:
    server = Server("paced", n, rate)
    recorder = ArrivalRecorder(n)
    engine = HFTEngine(backend="serial", record=False)
    engine.register_strategy(recorder)
    engine.start(server.source())
    deadline = time.monotonic() + n / rate + 30
    while engine.get_metrics()["engine"]["ticks_processed"] < n and time.monotonic() < deadline:
        time.sleep(0.05)
    engine.stop()
    _, sent_ns = server.stop()
    arrived = recorder.arrived_ns[1:]
    delays = (arrived - np.array(sent_ns, dtype=np.int64))[WARMUP_MESSAGES:]
    got = int((arrived > 0).sum())
    return {
        "path": "server send -> HFTEngine(backend='serial') -> Strategy.execute",
        "rate_per_s": rate,
        "messages": got,
        **percentiles_ms(delays[arrived[WARMUP_MESSAGES:] > 0]),
        "target_p99_ms": TARGET_P99_MS,
    }


def bench_delay_batches(n: int, rate: float) -> dict[str, Any]:
    server = Server("paced", n, rate)
    src = server.source()
    arrived = np.zeros(n + 1, dtype=np.int64)
    count = 0
    for batch in src.batches():
        now = time.monotonic_ns()
        seq = batch.series[0].volume.astype(np.int64)
        arrived[seq] = now
        count += len(seq)
        if count >= n:
            break
    _, sent_ns = server.stop()
    delays = (arrived[1:] - np.array(sent_ns, dtype=np.int64))[WARMUP_MESSAGES:]
    return {"path": "server send -> BinanceSource.batches()", **percentiles_ms(delays)}


def main() -> dict[str, Any]:
    if not DATA.is_file():
        sys.exit(f"real data {DATA} is absent (expected beside the repo in shared/)")
    parse = bench_parse(build_messages(PARSE_MESSAGES))
    delivery = bench_delivery(FLOOD_MESSAGES)
    delay = bench_delay_engine(PACED_MESSAGES, PACED_RATE)
    delay["met"] = delay["p99_ms"] <= TARGET_P99_MS
    at_batches = bench_delay_batches(PACED_MESSAGES, PACED_RATE)
    parse["target_per_s"] = TARGET_PARSED_PER_S
    parse["met"] = parse["orjson_messages_per_s"] >= TARGET_PARSED_PER_S
    return {
        "benchmark": "binance feed",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "parse": parse,
        "delivery_from_local_server": delivery,
        "delay_to_execute": delay,
        "delay_to_batches": at_batches,
        "met": bool(parse["met"] and delivery["met"] and delay["met"]),
    }


if __name__ == "__main__":
    report = main()
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
