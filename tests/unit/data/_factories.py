"""Small builders of CSV files for the data-layer tests (written into pytest's tmp_path)."""

from __future__ import annotations

import gzip
from pathlib import Path

OHLCV_HEADER = "timestamp,open,high,low,close,volume"
TICKS_HEADER = "coin,price,volume,timestamp"
TRADES_HEADER = "timestamp,price,qty,is_buyer_maker"
START_MS = 1_700_000_000_000
MINUTE_MS = 60_000


def bar_line(
    timestamp: object,
    open_: object = 100.0,
    high: object = 101.0,
    low: object = 99.0,
    close: object = 100.5,
    volume: object = 1.0,
) -> str:
    return f"{timestamp},{open_},{high},{low},{close},{volume}"


def ohlcv_lines(n: int, start_ms: int = START_MS, step_ms: int = MINUTE_MS) -> list[str]:
    """Header plus ``n`` valid one-minute bars (line k+2 holds bar k)."""
    return [OHLCV_HEADER] + [bar_line(start_ms + i * step_ms) for i in range(n)]


def tick_line(coin: str, price: object, volume: object, timestamp_s: object) -> str:
    return f"{coin},{price},{volume},{timestamp_s}"


def write(
    directory: Path, name: str, lines: list[str], *, compress: bool = False, eol: str = "\n"
) -> Path:
    """Write ``lines`` (each without its line break) as ``directory/name``."""
    text = "".join(line + eol for line in lines).encode()
    path = directory / name
    path.write_bytes(gzip.compress(text) if compress else text)
    return path


def replace_line(lines: list[str], line_no: int, text: str) -> list[str]:
    """A copy of ``lines`` with 1-based physical line ``line_no`` replaced."""
    out = list(lines)
    out[line_no - 1] = text
    return out
