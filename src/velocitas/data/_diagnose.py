"""The slow path: read lines in Python to name the exact line and column of a bad row.

Runs only after Arrow has refused a block (wrong field count, a value that is not a number)
or a vectorised rule has failed, so its speed does not matter; its rules must match Arrow's
so that it finds what Arrow found. Blank lines are skipped, as Arrow skips them.
"""

from __future__ import annotations

import csv
import itertools
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from velocitas.core.errors import DataFormatError
from velocitas.data._files import open_binary
from velocitas.data.formats import Layout
from velocitas.data.validation import Chunk

_BATCH_ROWS = 65_536
_UTF8_BOM = b"\xef\xbb\xbf"  # Arrow skips it too
_READ_ERRORS = (OSError, EOFError, zlib.error)

# check(chunk, lines) -> the error for the chunk's first bad row, or None.
Check = Callable[[Chunk, list[int]], DataFormatError | None]


def line_of_row(path: Path, layout: Layout, row: int) -> int:
    """The 1-based physical line of the 0-based data row ``row``."""
    for line_no, _ in itertools.islice(_data_lines(path, layout), row, None):
        return line_no
    raise DataFormatError(str(path), f"data row {row} is past the end of the file")


def find_error(
    path: Path, layout: Layout, start_row: int, check: Check, coin_code: Callable[[str], int]
) -> DataFormatError | None:
    """The first error from data row ``start_row`` on, or None if every line parses.

    Rows that parse are checked by ``check`` in batches before a later parse error is
    reported, so the error returned is the first in the file whatever its kind.
    """
    values: dict[str, list[float]] = {c.role: [] for c in layout.columns if c.role != "coin"}
    codes: list[int] = []
    lines: list[int] = []
    try:
        for line_no, raw in itertools.islice(_data_lines(path, layout), start_row, None):
            bad = _parse_line(path, layout, line_no, raw, values, codes, coin_code)
            if bad is not None:
                return _check_batch(check, values, codes, lines, layout) or bad
            lines.append(line_no)
            if len(lines) >= _BATCH_ROWS:
                error = _check_batch(check, values, codes, lines, layout)
                if error is not None:
                    return error
    except _READ_ERRORS as e:
        return DataFormatError(str(path), f"cannot read the file: {e}")
    return _check_batch(check, values, codes, lines, layout)


def _data_lines(path: Path, layout: Layout) -> Iterator[tuple[int, bytes]]:
    """(physical line number, raw line) of every non-blank data line."""
    with open_binary(path) as f:
        for line_no, raw in enumerate(f, start=1):
            if line_no < layout.first_data_line or not raw.rstrip(b"\r\n"):
                continue
            yield line_no, raw.removeprefix(_UTF8_BOM) if line_no == 1 else raw


def _parse_line(
    path: Path,
    layout: Layout,
    line_no: int,
    raw: bytes,
    values: dict[str, list[float]],
    codes: list[int],
    coin_code: Callable[[str], int],
) -> DataFormatError | None:
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    fields = next(csv.reader([text])) if '"' in text else text.split(",")
    if len(fields) != layout.n_fields:
        column = layout.names[len(fields)] if len(fields) < layout.n_fields else None
        return DataFormatError(
            str(path),
            f"wrong number of fields: expected {layout.n_fields} "
            f"({','.join(layout.names)}), found {len(fields)}",
            line=line_no,
            column=column,
        )
    parsed: dict[str, float] = {}
    for col in layout.columns:
        field = fields[col.index]
        if col.role == "coin":
            continue
        x = _parse_float(field)
        if x is None:
            reason = (
                "empty value; expected a number"
                if not field.strip()
                else f"not a number: {field.strip()!r}"
            )
            return DataFormatError(str(path), reason, line=line_no, column=col.name)
        parsed[col.role] = x
    for role, x in parsed.items():
        values[role].append(x)
    if layout.has_coin:
        codes.append(coin_code(fields[layout.column("coin").index]))
    return None


def _parse_float(text: str) -> float | None:
    """Python's float() minus what Arrow refuses (digit separators)."""
    if "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _check_batch(
    check: Check,
    values: dict[str, list[float]],
    codes: list[int],
    lines: list[int],
    layout: Layout,
) -> DataFormatError | None:
    if not lines:
        return None
    n = len(lines)
    chunk = Chunk(
        {role: np.asarray(v[:n], dtype=np.float64) for role, v in values.items()},
        np.asarray(codes[:n], dtype=np.int32) if layout.has_coin else None,
    )
    error = check(chunk, list(lines))
    for v in values.values():
        del v[:n]
    del codes[:n]
    lines.clear()
    return error
