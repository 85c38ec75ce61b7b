"""Market data CSV files (ticks, OHLCV, Binance klines, trades; plain, gzip or zip) to ``Dataset``.

``load`` is all-or-nothing: it returns the whole file or raises, never part of it.
``iter_chunks`` streams the same rows in fixed-size chunks with flat memory and the same
checks (ordering per coin holds across chunk boundaries); a bad row raises when its chunk is
reached, so a consumer may already have used the chunks before it.

Speed: Arrow's CSV reader parses and converts (typed columns, no Python objects per row);
the checks are numpy passes. Only when Arrow refuses a block, or a check fails, does a
Python line-by-line scan run, to name the exact line and column (``_diagnose.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from velocitas.core.errors import ConfigError, DataFormatError
from velocitas.core.models import CoinSeries, Dataset
from velocitas.data._decode import Decoder
from velocitas.data._files import open_arrow
from velocitas.data.formats import Layout, coin_from_filename, detect_format, detect_layout

__all__ = [
    "coin_from_filename",
    "detect_format",
    "iter_chunks",
    "load",
    "load_binance_klines",
    "load_ohlcv",
    "load_ticks",
    "load_trades",
]

logger = logging.getLogger(__name__)

# Arrow raises ArrowInvalid for parse and conversion errors and OSError for a bad gzip stream.
_READ_ERRORS = (pa.ArrowException, OSError)
_LOAD_BLOCK_BYTES = 16 << 20
_STREAM_BLOCK_BYTES = 1 << 20
_PIECE_BYTES = 16 << 20
_ALL_ROWS = 1 << 62


def load(path: str | Path, coin: str | None = None) -> Dataset:
    """Load a whole market data file, any of the four formats (detected), gzip or not.

    Args:
        path: the CSV file (``.csv``, ``.csv.gz``, or a zip holding one CSV).
        coin: for files without a coin column, the coin to name the data (default: from the
            file name, ``BTCUSDT-1m.csv`` -> ``BTC``); for files with one, load only that coin.

    Returns:
        One ``CoinSeries`` per coin, in order of first appearance in the file.

    Raises:
        DataFormatError: the file cannot be parsed or a row fails a check; the message names
            the line and column. Nothing is returned in that case.
    """
    return _load(Path(path), coin, None)


def load_ticks(path: str | Path, coin: str | None = None) -> Dataset:
    """``load`` for the tick format only (``coin,price,volume,timestamp``, timestamp in s)."""
    return _load(Path(path), coin, "ticks")


def load_ohlcv(path: str | Path, coin: str | None = None) -> Dataset:
    """``load`` for the OHLCV format only (``timestamp,open,high,low,close,volume``)."""
    return _load(Path(path), coin, "ohlcv")


def load_binance_klines(path: str | Path, coin: str | None = None) -> Dataset:
    """``load`` for Binance's 12-column kline dumps only (no header; open_time in ms or µs)."""
    return _load(Path(path), coin, "binance_klines")


def load_trades(path: str | Path, coin: str | None = None) -> Dataset:
    """``load`` for the trades format only (``timestamp,price,qty[,is_buyer_maker]``)."""
    return _load(Path(path), coin, "trades")


def iter_chunks(
    path: str | Path, coin: str | None = None, chunk_rows: int = 1_000_000
) -> Iterator[Dataset]:
    """The data of ``load(path, coin)`` in chunks of ``chunk_rows`` file rows (the last shorter).

    Memory stays flat however large the file. The format is detected (and a bad header
    raised) at the call; rows are read and checked as the chunks are consumed. Chunks of a
    multi-coin file hold the coins present in them; with ``coin`` selecting one coin of such a
    file, chunks without it are skipped.

    Raises:
        ConfigError: ``chunk_rows`` < 1.
        DataFormatError: as ``load``, when the chunk holding the bad row is reached.
    """
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be >= 1, was {chunk_rows}")
    p = Path(path)
    return _stream(_decoder(p, detect_layout(p), coin), chunk_rows)


def _load(path: Path, coin: str | None, expected: str | None) -> Dataset:
    layout = detect_layout(path, expected)
    decoder = _decoder(path, layout, coin)
    try:
        with open_arrow(path) as source:
            table = pacsv.read_csv(source, **_arrow_options(layout, _LOAD_BLOCK_BYTES))
    except _READ_ERRORS as e:
        logger.debug("fast read of %s failed (%s); streaming to find the first error", path, e)
        # The stream checks rows in file order and raises the first error with its line.
        return _concat(list(_stream(_decoder(path, layout, coin), _ALL_ROWS)), path)
    if table.num_rows == 0:
        raise _no_rows(path)
    columns = _columns(table, layout)
    del table  # decode() frees each Arrow column as soon as it is converted
    return decoder.decode(columns)


def _stream(decoder: Decoder, chunk_rows: int) -> Iterator[Dataset]:
    layout = decoder.layout
    with open_arrow(decoder.path) as source:
        batches = _batches(source, layout)
        pending: list[pa.RecordBatch] = []
        n_pending = 0
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except _READ_ERRORS as e:
                if pending:  # rows before the refused piece may hold an earlier error
                    decoder.decode(_columns(pa.Table.from_batches(pending), layout))
                raise decoder.diagnose(e) from e
            pending.append(batch)
            n_pending += batch.num_rows
            while n_pending >= chunk_rows:
                table = pa.Table.from_batches(pending)
                pending = table.slice(chunk_rows).to_batches()
                n_pending -= chunk_rows
                chunk = decoder.decode(_columns(table.slice(0, chunk_rows), layout))
                del table
                if len(chunk):
                    yield chunk
        if n_pending:
            chunk = decoder.decode(_columns(pa.Table.from_batches(pending), layout))
            if len(chunk):
                yield chunk
    if decoder.rows_done == 0:
        raise _no_rows(decoder.path)


def _batches(source: Any, layout: Layout) -> Iterator[pa.RecordBatch]:
    """The file's rows as Arrow batches, parsed piece by piece.

    Each piece (whole lines, about ``_PIECE_BYTES``) goes through ``read_csv``, which parses
    its blocks on all cores; Arrow's streaming ``open_csv`` parses one block at a time and
    buffers dozens of blocks ahead. Memory is a piece or two, however long the file.
    """
    options = _arrow_options(layout, _STREAM_BLOCK_BYTES, skip_header=False)
    for piece in _pieces(source, skip_header=layout.has_header):
        yield from pacsv.read_csv(pa.BufferReader(piece), **options).to_batches()


def _pieces(source: Any, *, skip_header: bool) -> Iterator[pa.Buffer]:
    """The decompressed bytes cut after a line break every ``_PIECE_BYTES`` or so.

    Arrow never lets a row span a line break (``newlines_in_values=False``), so cutting
    there splits no row.
    """
    tail = b""
    header_pending = skip_header
    while True:
        block = source.read(_PIECE_BYTES)
        if not block:
            break
        data = tail + block
        start = 0
        if header_pending:
            start = data.find(b"\n") + 1
            if start == 0:
                tail = data
                continue
            header_pending = False
        cut = data.rfind(b"\n") + 1
        if cut <= start:
            tail = data[start:]
            continue
        tail = data[cut:]
        yield pa.py_buffer(data).slice(start, cut - start)
    if tail and not header_pending:
        yield pa.py_buffer(tail)


def _decoder(path: Path, layout: Layout, coin: str | None) -> Decoder:
    selected = coin.strip().upper() if coin else None
    file_coin = None
    if not layout.has_coin:
        file_coin = selected or coin_from_filename(path)
        if not file_coin:
            raise DataFormatError(
                str(path),
                "the file has no coin column and its name does not start with a symbol "
                "(e.g. BTCUSDT-1m.csv); pass coin=",
            )
    return Decoder(path, layout, selected, file_coin)


def _arrow_options(layout: Layout, block_bytes: int, *, skip_header: bool = True) -> dict[str, Any]:
    """Typed columns, no null spellings (an empty field is an error, not a NaN)."""
    types = {
        f"f{c.index}": pa.dictionary(pa.int32(), pa.string()) if c.role == "coin" else pa.float64()
        for c in layout.columns
    }
    return {
        "read_options": pacsv.ReadOptions(
            column_names=[f"f{i}" for i in range(layout.n_fields)],
            skip_rows=1 if layout.has_header and skip_header else 0,
            block_size=block_bytes,
        ),
        "parse_options": pacsv.ParseOptions(newlines_in_values=False, ignore_empty_lines=True),
        "convert_options": pacsv.ConvertOptions(
            column_types=types,
            include_columns=list(types),
            null_values=[],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    }


def _columns(table: pa.Table, layout: Layout) -> dict[str, pa.ChunkedArray]:
    return {c.role: table.column(f"f{c.index}") for c in layout.columns}


def _no_rows(path: Path) -> DataFormatError:
    return DataFormatError(str(path), "no data rows: the file holds a header only")


def _concat(chunks: list[Dataset], path: Path) -> Dataset:
    """One Dataset from consecutive chunks of one file (coins in first-appearance order)."""
    if len(chunks) == 1:
        return chunks[0]
    parts: dict[str, list[CoinSeries]] = {}
    for chunk in chunks:
        for s in chunk.series:
            parts.setdefault(s.coin, []).append(s)
    return Dataset(tuple(_concat_series(p) for p in parts.values()), source=str(path))


def _concat_series(parts: list[CoinSeries]) -> CoinSeries:
    def cat(name: str) -> Any:
        arrays = [getattr(p, name) for p in parts]
        return None if arrays[0] is None else np.concatenate(arrays)

    return CoinSeries(
        coin=parts[0].coin,
        timestamp_ms=cat("timestamp_ms"),
        price=cat("price"),
        volume=cat("volume"),
        open=cat("open"),
        high=cat("high"),
        low=cat("low"),
    )
