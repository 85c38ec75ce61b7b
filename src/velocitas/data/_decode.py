"""Arrow columns of one file, chunk after chunk, to validated ``Dataset`` chunks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from velocitas.core.errors import DataFormatError
from velocitas.core.models import CoinSeries, Dataset, FloatArray, IntArray
from velocitas.data import _diagnose
from velocitas.data.formats import Layout
from velocitas.data.validation import Chunk, CodeArray, find_violation

_MASK_SPLIT_MAX_COINS = 16


class Decoder:
    """The state one read of one file carries from chunk to chunk.

    Coin labels get integer codes in order of first appearance (which is therefore the order
    of ``Dataset.series``); ``last_ms`` holds each coin's last timestamp so that ordering is
    checked across chunk boundaries; ``rows_done`` counts the data rows already accepted.
    """

    def __init__(self, path: Path, layout: Layout, coin: str | None, file_coin: str | None):
        self.path = path
        self.layout = layout
        self.selected = coin if layout.has_coin else None
        self.file_coin = file_coin
        self.labels: list[str] = []
        self.codes: dict[str, int] = {}
        self.bad_codes: set[int] = set()
        self.last_ms: dict[int, int] = {}
        self.rows_done = 0

    def code_of(self, label: str) -> int:
        """The code of a coin label as written in the file (stripped and upper-cased)."""
        coin = label.strip().upper()
        code = self.codes.get(coin)
        if code is None:
            code = self.codes[coin] = len(self.labels)
            self.labels.append(coin)
            if not coin:
                self.bad_codes.add(code)
        return code

    def decode(self, columns: dict[str, pa.ChunkedArray]) -> Dataset:
        """Validate and convert one chunk; ``columns`` (role -> Arrow column) is consumed.

        Raises:
            DataFormatError: a row breaks a rule; names its physical line and column.
        """
        codes = self._coin_codes(columns.pop("coin")) if "coin" in columns else None
        values = {role: _to_numpy(columns.pop(role)) for role in list(columns)}
        chunk = Chunk(values, codes)
        start = self.rows_done
        ts_ms = self._validate(
            chunk, lambda i: _diagnose.line_of_row(self.path, self.layout, start + i)
        )
        self.rows_done += len(chunk)
        return Dataset(self._series(values, codes, ts_ms), source=str(self.path))

    def check(self, chunk: Chunk, lines: list[int]) -> DataFormatError | None:
        """The slow path's check: the same rules, with the physical lines known."""
        try:
            self._validate(chunk, lines.__getitem__)
        except DataFormatError as e:
            return e
        return None

    def diagnose(self, arrow_error: Exception) -> DataFormatError:
        """The first error from the first row not yet accepted, found line by line."""
        found = _diagnose.find_error(
            self.path, self.layout, self.rows_done, self.check, self.code_of
        )
        if found is not None:
            return found
        return DataFormatError(str(self.path), f"cannot parse the file: {arrow_error}")

    def _validate(self, chunk: Chunk, line_of: Callable[[int], int]) -> IntArray:
        violation, ts_ms = find_violation(
            chunk,
            bars=self.layout.is_bars,
            last_ms=self.last_ms,
            coin_label=self._label,
            bad_codes=frozenset(self.bad_codes),
        )
        if violation is not None:
            raise DataFormatError(
                str(self.path),
                violation.reason,
                line=line_of(violation.row),
                column=self.layout.column(violation.column).name,
            )
        return ts_ms

    def _label(self, code: int) -> str:
        return self.labels[code] if code >= 0 else (self.file_coin or "")

    def _coin_codes(self, column: pa.ChunkedArray) -> CodeArray:
        parts = [np.zeros(0, dtype=np.int32)]
        for piece in column.chunks:
            if isinstance(piece, pa.DictionaryArray):
                lookup = np.array(
                    [self.code_of(s) for s in piece.dictionary.to_pylist()], dtype=np.int32
                )
                parts.append(lookup[piece.indices.to_numpy(zero_copy_only=False)])
            else:
                parts.append(np.array([self.code_of(s) for s in piece.to_pylist()], np.int32))
        return np.concatenate(parts)

    def _series(
        self, v: dict[str, FloatArray], codes: CodeArray | None, ts_ms: IntArray
    ) -> tuple[CoinSeries, ...]:
        price = v["close"] if self.layout.is_bars else v["price"]
        if codes is None:
            return (_series(self.file_coin or "", ts_ms, price, v, None),)
        counts = np.bincount(codes)
        present = np.flatnonzero(counts)  # codes count up in first-appearance order
        if self.selected is not None:
            present = present[present == self.codes.get(self.selected, -1)]
        if present.shape[0] == 1 and counts[present[0]] == codes.shape[0]:
            return (_series(self.labels[int(present[0])], ts_ms, price, v, None),)
        if present.shape[0] <= _MASK_SPLIT_MAX_COINS:
            groups = [(c, np.flatnonzero(codes == c)) for c in present.tolist()]
        else:  # one stable sort instead of a pass per coin
            order = np.argsort(codes, kind="stable")
            ends = np.cumsum(counts)
            starts = ends - counts
            groups = [(c, order[starts[c] : ends[c]]) for c in present.tolist()]
        return tuple(_series(self.labels[c], ts_ms, price, v, rows) for c, rows in groups)


def _series(
    coin: str, ts_ms: IntArray, price: FloatArray, v: dict[str, FloatArray], rows: IntArray | None
) -> CoinSeries:
    def pick(a: FloatArray) -> FloatArray:
        return a if rows is None else a[rows]

    bars = "open" in v
    return CoinSeries(
        coin=coin,
        timestamp_ms=ts_ms if rows is None else ts_ms[rows],
        price=pick(price),
        volume=pick(v["volume"]),
        open=pick(v["open"]) if bars else None,
        high=pick(v["high"]) if bars else None,
        low=pick(v["low"]) if bars else None,
    )


def _chunk_view(chunk: pa.Array) -> FloatArray:
    """A read-only numpy view of a float64 chunk's data buffer.

    Read straight from the Arrow buffer because ``Array.to_numpy`` makes pyarrow import pandas
    (about 0.25 s of start-up that a CLI run would otherwise pay for nothing).
    """
    if chunk.null_count or chunk.type != pa.float64():
        return chunk.to_numpy(zero_copy_only=False)
    data = chunk.buffers()[1]
    return np.frombuffer(data, dtype=np.float64, count=len(chunk), offset=chunk.offset * 8)


def _to_numpy(column: pa.ChunkedArray) -> FloatArray:
    """A writable float64 array of a float64 column (no nulls: the reader makes none)."""
    chunks = [_chunk_view(c) for c in column.chunks]
    if len(chunks) == 1:
        return chunks[0].copy()  # a single chunk converts zero-copy, read-only
    # One copy of the zero-copy chunk views into a fresh contiguous array.
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float64)
