"""Streaming: iter_chunks gives load's data in chunks and checks across chunk boundaries."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from velocitas.core.errors import ConfigError, DataFormatError
from velocitas.core.models import CoinSeries, Dataset
from velocitas.data import loaders
from velocitas.data.loaders import iter_chunks, load

from ._factories import (
    MINUTE_MS,
    START_MS,
    TICKS_HEADER,
    bar_line,
    ohlcv_lines,
    replace_line,
    tick_line,
    write,
)


def _concat(chunks: list[Dataset]) -> dict[str, dict[str, np.ndarray | None]]:
    """Per coin, per column: the chunks' arrays joined (coins in first-appearance order)."""
    out: dict[str, list[CoinSeries]] = {}
    for chunk in chunks:
        for s in chunk.series:
            out.setdefault(s.coin, []).append(s)
    names = ("timestamp_ms", "price", "volume", "open", "high", "low")
    return {
        coin: {
            n: None
            if getattr(parts[0], n) is None
            else np.concatenate([getattr(p, n) for p in parts])
            for n in names
        }
        for coin, parts in out.items()
    }


def _drain(chunks: Iterator[Dataset], into: list[Dataset]) -> None:
    """Consume ``chunks`` as a streaming consumer would, keeping what arrived."""
    for chunk in chunks:
        into.append(chunk)


def _columns(ds: Dataset) -> dict[str, dict[str, np.ndarray | None]]:
    return _concat([ds])


def _assert_equal(a, b) -> None:
    assert list(a) == list(b)
    for coin in a:
        for name, x in a[coin].items():
            y = b[coin][name]
            assert (x is None) == (y is None)
            if x is not None:
                np.testing.assert_array_equal(x, y, err_msg=f"{coin}.{name}")


def test_chunks_concatenated_equal_load_on_real_klines(shared_file):
    path = shared_file("ETHUSDT-1m.csv.gz")
    chunks = list(iter_chunks(path, chunk_rows=7_777))
    assert [len(c) for c in chunks[:-1]] == [7_777] * (len(chunks) - 1)
    assert 0 < len(chunks[-1]) <= 7_777
    _assert_equal(_concat(chunks), _columns(load(path)))


def test_chunks_concatenated_equal_load_on_multi_coin_ticks(tmp_path):
    rng = np.random.default_rng(7)
    coins = rng.choice(["BTC", "ETH", "SOL"], size=500)
    seconds = 1.7e9 + np.cumsum(rng.integers(0, 3, size=500)) / 1000
    lines = [TICKS_HEADER] + [
        tick_line(c, 100 + i, 1 + i % 7, f"{s:.3f}")
        for i, (c, s) in enumerate(zip(coins, seconds, strict=True))
    ]
    path = write(tmp_path, "mixed.csv", lines)
    chunks = list(iter_chunks(path, chunk_rows=64))
    assert sum(len(c) for c in chunks) == 500
    _assert_equal(_concat(chunks), _columns(load(path)))


@pytest.mark.parametrize("piece_bytes", [1, 7, 64, 100_000])
@pytest.mark.parametrize(
    ("eol", "trailing"), [("\n", True), ("\r\n", True), ("\n", False)], ids=["lf", "crlf", "no-eol"]
)
def test_pieces_cut_anywhere_give_the_same_rows(tmp_path, monkeypatch, piece_bytes, eol, trailing):
    # Pieces end after a line break; the header, rows and blank lines may straddle reads.
    monkeypatch.setattr(loaders, "_PIECE_BYTES", piece_bytes)
    lines = ohlcv_lines(40)
    lines[10:10] = ["", ""]
    text = eol.join(lines) + (eol if trailing else "")
    path = tmp_path / "BTCUSDT-1m.csv"
    path.write_bytes(text.encode())
    chunks = list(iter_chunks(path, chunk_rows=9))
    assert [len(c) for c in chunks] == [9, 9, 9, 9, 4]
    _assert_equal(_concat(chunks), _columns(load(path)))


def test_decrease_across_a_chunk_boundary_is_caught(tmp_path):
    # Bar 5 (line 7) opens the second chunk of 5 and goes back before bar 4.
    lines = replace_line(ohlcv_lines(10), 7, bar_line(START_MS + 3 * MINUTE_MS))
    path = write(tmp_path, "BTCUSDT-1m.csv", lines)
    seen = []
    with pytest.raises(DataFormatError) as info:
        _drain(iter_chunks(path, chunk_rows=5), into=seen)
    assert (info.value.line, info.value.column) == (7, "timestamp")
    assert len(seen) == 1  # a streamed consumer has seen the chunk before the bad row


def test_duplicate_bar_across_a_chunk_boundary_is_caught(tmp_path):
    lines = replace_line(ohlcv_lines(10), 7, bar_line(START_MS + 4 * MINUTE_MS))
    with pytest.raises(DataFormatError, match="duplicate bar") as info:
        list(iter_chunks(write(tmp_path, "BTCUSDT-1m.csv", lines), chunk_rows=5))
    assert info.value.line == 7


def test_per_coin_order_carries_across_chunks_of_a_tick_file(tmp_path):
    lines = [
        TICKS_HEADER,
        tick_line("BTC", 1, 1, 10.0),
        tick_line("ETH", 1, 1, 20.0),
        tick_line("BTC", 1, 1, 11.0),  # chunk 2 starts here (chunk_rows=2)
        tick_line("BTC", 1, 1, 12.0),
        tick_line("ETH", 1, 1, 19.0),  # chunk 3: ETH went back from 20 s, line 6
    ]
    path = write(tmp_path, "ticks.csv", lines)
    with pytest.raises(DataFormatError) as info:
        list(iter_chunks(path, chunk_rows=2))
    assert (info.value.line, info.value.column) == (6, "timestamp")


def test_errors_deep_in_a_many_block_file_keep_their_line(tmp_path, monkeypatch):
    # Tiny pieces and Arrow blocks: the refused one starts far from the file's start.
    monkeypatch.setattr(loaders, "_PIECE_BYTES", 1_000)
    monkeypatch.setattr(loaders, "_STREAM_BLOCK_BYTES", 512)
    monkeypatch.setattr(loaders, "_LOAD_BLOCK_BYTES", 512)
    lines = replace_line(ohlcv_lines(3_000), 2_345, f"{START_MS},1,2,oops,1,1")
    path = write(tmp_path, "BTCUSDT-1m.csv", lines, compress=True)
    seen = []
    with pytest.raises(DataFormatError) as info:
        _drain(iter_chunks(path, chunk_rows=1_000), into=seen)
    assert (info.value.line, info.value.column) == (2_345, "low")
    assert len(seen) == 2
    with pytest.raises(DataFormatError) as info:
        load(path)
    assert (info.value.line, info.value.column) == (2_345, "low")
    lines = replace_line(ohlcv_lines(3_000), 2_999, bar_line(START_MS, low=-1))
    with pytest.raises(DataFormatError) as info:
        load(write(tmp_path, "ETHUSDT-1m.csv", lines))
    assert (info.value.line, info.value.column) == (2_999, "low")


def test_coin_order_survives_many_arrow_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "_PIECE_BYTES", 300)
    monkeypatch.setattr(loaders, "_STREAM_BLOCK_BYTES", 128)
    lines = [TICKS_HEADER] + [tick_line("SOL", 1, 1, 1.7e9 + i) for i in range(50)]
    lines += [tick_line(c, 1, 1, 1.8e9 + i) for i, c in enumerate(["ADA", "SOL", "BTC"] * 20)]
    ds_chunks = list(iter_chunks(write(tmp_path, "t.csv", lines), chunk_rows=25))
    assert list(_concat(ds_chunks)) == ["SOL", "ADA", "BTC"]


def test_coin_selection_skips_chunks_without_that_coin(tmp_path):
    lines = [TICKS_HEADER] + [tick_line("ETH", 1, 1, 1.7e9 + i) for i in range(6)]
    lines += [tick_line("BTC", 2, 1, 1.7e9 + i) for i in range(6, 9)]
    chunks = list(iter_chunks(write(tmp_path, "t.csv", lines), coin="BTC", chunk_rows=3))
    assert [c.coins for c in chunks] == [["BTC"]]


def test_bad_header_raises_at_the_call_not_at_first_iteration(tmp_path):
    path = write(tmp_path, "BTCUSDT-1m.csv", ["a,b,c", "1,2,3"])
    with pytest.raises(DataFormatError):
        iter_chunks(path)


def test_chunk_rows_must_be_positive(tmp_path):
    path = write(tmp_path, "BTCUSDT-1m.csv", ohlcv_lines(2))
    with pytest.raises(ConfigError, match="chunk_rows"):
        iter_chunks(path, chunk_rows=0)
