"""Opening data files, plain, gzip or single-member zip, for pyarrow and for Python."""

from __future__ import annotations

import gzip
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, cast

import pyarrow as pa

from velocitas.core.errors import DataFormatError

_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_FIRST_LINE_MAX_BYTES = 1 << 20


def compression_of(path: Path) -> str | None:
    """``"gzip"``, ``"zip"`` or None, from the magic bytes (the name is only cross-checked)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] == _GZIP_MAGIC:
        return "gzip"
    if head == _ZIP_MAGIC:
        return "zip"
    if path.name.lower().endswith(".gz"):
        raise DataFormatError(str(path), "the name ends in .gz but the file is not gzip data")
    return None


@contextmanager
def open_binary(path: Path) -> Iterator[IO[bytes]]:
    """The decompressed bytes of ``path`` as a Python binary file."""
    kind = compression_of(path)
    if kind == "gzip":
        with gzip.open(path, "rb") as g:
            yield cast(IO[bytes], g)
    elif kind == "zip":
        with zipfile.ZipFile(path) as archive, archive.open(_zip_member(path, archive)) as f:
            yield f
    else:
        with open(path, "rb") as f:
            yield f


@contextmanager
def open_arrow(path: Path) -> Iterator[Any]:
    """The decompressed bytes of ``path`` as something ``pyarrow.csv`` reads.

    gzip is inflated by Arrow itself (no Python in the loop); zip goes through ``zipfile``.
    """
    kind = compression_of(path)
    if kind == "gzip":
        with pa.input_stream(str(path), compression="gzip") as stream:
            yield stream
    elif kind == "zip":
        with open_binary(path) as f:
            yield f
    else:
        with pa.OSFile(str(path), "rb") as stream:
            yield stream


def first_line(path: Path) -> str | None:
    """Line 1 of the decompressed file without its line break (BOM dropped); None if empty."""
    try:
        with open_binary(path) as f:
            raw = f.readline(_FIRST_LINE_MAX_BYTES)
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataFormatError(str(path), f"cannot read the file: {e}") from e
    if not raw:
        return None
    return raw.decode("utf-8", errors="replace").removeprefix("\ufeff").rstrip("\r\n")


def _zip_member(path: Path, archive: zipfile.ZipFile) -> str:
    members = [m for m in archive.namelist() if not m.endswith("/")]
    if len(members) != 1:
        raise DataFormatError(
            str(path), f"a zip archive must hold exactly one CSV file, found {members}"
        )
    return members[0]
