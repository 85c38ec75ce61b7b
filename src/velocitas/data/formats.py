"""The four CSV layouts the loaders read, and how a file's first line picks one.

=================  =====================================================  ==================
format             header (case-insensitive, any order, extra columns ok)  timestamp unit
=================  =====================================================  ==================
``ticks``          ``coin,price,volume,timestamp``                        seconds (float)
``ohlcv``          ``timestamp,open,high,low,close,volume``               ms (s, µs accepted)
``binance_klines`` none: 12 fields per line, Binance's own kline dumps    ms or µs
                   (or Binance's futures header ``open_time,open,...``)
``trades``         ``timestamp,price,qty[,is_buyer_maker]``               ms
=================  =====================================================  ==================

Every timestamp is converted by magnitude, value by value (see ``validation.to_epoch_ms``),
so the unit column above is what the sources write, not a requirement. An optional ``coin``
column is honoured in the header formats too (one file, several coins).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from velocitas.core.errors import DataFormatError
from velocitas.data._files import first_line

FORMATS = ("ticks", "ohlcv", "binance_klines", "trades")
BAR_FORMATS = frozenset({"ohlcv", "binance_klines"})

BINANCE_KLINE_FIELDS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)

# Column roles (what the loader needs) -> the header name each format gives them. Bars carry
# "close" (it becomes CoinSeries.price); ticks and trades carry "price".
_HEADER_SPECS: dict[str, dict[str, str]] = {
    "ohlcv": {
        "timestamp": "timestamp",
        "open": "open",
        "high": "high",
        "low": "low",
        "close": "close",
        "volume": "volume",
    },
    "binance_klines": {
        "timestamp": "open_time",
        "open": "open",
        "high": "high",
        "low": "low",
        "close": "close",
        "volume": "volume",
    },
    "ticks": {"coin": "coin", "price": "price", "volume": "volume", "timestamp": "timestamp"},
    "trades": {"timestamp": "timestamp", "price": "price", "volume": "qty"},
}

ACCEPTED = (
    "ticks (coin,price,volume,timestamp), "
    "ohlcv (timestamp,open,high,low,close,volume), "
    "binance_klines (12 columns without a header: open_time,open,high,low,close,volume,"
    "close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore), "
    "trades (timestamp,price,qty[,is_buyer_maker])"
)

_QUOTE_ASSETS = ("USDT", "BUSD", "USDC", "USD")
_SYMBOL = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True, slots=True)
class Column:
    """One column the loader reads: its role, 0-based field index and name in messages."""

    role: str
    index: int
    name: str


@dataclass(frozen=True, slots=True)
class Layout:
    """How one file's lines map onto the loader's column roles."""

    format: str
    has_header: bool
    names: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def n_fields(self) -> int:
        return len(self.names)

    @property
    def is_bars(self) -> bool:
        return self.format in BAR_FORMATS

    @property
    def has_coin(self) -> bool:
        return any(c.role == "coin" for c in self.columns)

    @property
    def first_data_line(self) -> int:
        return 2 if self.has_header else 1

    def column(self, role: str) -> Column:
        for c in self.columns:
            if c.role == role:
                return c
        raise KeyError(role)


def detect_format(path: str | Path) -> str:
    """The format of a CSV file (``.gz`` too): one of ``FORMATS``, read from its first line.

    Raises:
        DataFormatError: the file is empty, or its first line fits none of the formats.
    """
    return detect_layout(Path(path)).format


def detect_layout(path: Path, expected: str | None = None) -> Layout:
    """The file's layout; with ``expected``, insist on that format."""
    line = first_line(path)
    if line is None:
        raise DataFormatError(str(path), "the file is empty; expected a CSV header and rows")
    if not line.strip():
        raise DataFormatError(
            str(path), f"line 1 is empty; expected a header. Accepted formats: {ACCEPTED}", line=1
        )
    fields = next(csv.reader([line]))
    if _is_number(fields[0]):
        return _headerless_layout(path, fields, expected)
    names = [f.strip().lower() for f in fields]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataFormatError(
            str(path), f"the header repeats column(s) {duplicates}", line=1, column=duplicates[0]
        )
    candidates = [expected] if expected is not None else list(_HEADER_SPECS)
    for fmt in candidates:
        if fmt in _HEADER_SPECS and set(_HEADER_SPECS[fmt].values()) <= set(names):
            return _header_layout(fmt, names)
    raise _header_mismatch(path, names, candidates)


def coin_from_filename(path: str | Path) -> str | None:
    """The coin a file name starts with: ``BTCUSDT-1m.csv.gz`` -> ``"BTC"``.

    The leading symbol token (letters and digits, so ``BTC_USDT-1m`` gives ``BTC``) is
    upper-cased and one quote asset is stripped from its end, checking USDT, BUSD, USDC, then
    USD. A token that ends in none of them comes back whole (``XRPETH`` -> ``"XRPETH"``): a
    pair against another coin cannot be split without a list of symbols. None when the name
    does not start with a letter or digit.
    """
    match = _SYMBOL.match(Path(path).name)
    if match is None:
        return None
    token = match.group(0).upper()
    for quote in _QUOTE_ASSETS:
        if token.endswith(quote) and len(token) > len(quote):
            return token[: -len(quote)]
    return token


def _headerless_layout(path: Path, fields: list[str], expected: str | None) -> Layout:
    if expected not in (None, "binance_klines"):
        raise DataFormatError(
            str(path),
            f"line 1 is data, not the {expected} header "
            f"'{','.join(_HEADER_SPECS[expected].values())}'",
            line=1,
        )
    if len(fields) != len(BINANCE_KLINE_FIELDS):
        raise DataFormatError(
            str(path),
            f"line 1 is data, not a header, and has {len(fields)} fields; a file without a "
            f"header must be a 12-column Binance kline dump. Accepted formats: {ACCEPTED}",
            line=1,
        )
    columns = tuple(
        Column(role, BINANCE_KLINE_FIELDS.index(name), name)
        for role, name in _HEADER_SPECS["binance_klines"].items()
    )
    return Layout("binance_klines", False, BINANCE_KLINE_FIELDS, columns)


def _header_layout(fmt: str, names: list[str]) -> Layout:
    roles = dict(_HEADER_SPECS[fmt])
    if "coin" in names:
        roles.setdefault("coin", "coin")
    columns = tuple(Column(role, names.index(name), name) for role, name in roles.items())
    return Layout(fmt, True, tuple(names), columns)


def _header_mismatch(path: Path, names: list[str], candidates: list[str]) -> DataFormatError:
    """Name the missing column of the closest format, or say that none fits."""
    found = ",".join(names)
    best, best_score = None, 0.0
    for fmt in candidates:
        wanted = set(_HEADER_SPECS[fmt].values())
        overlap = len(wanted & set(names))
        score = overlap / len(wanted)
        if overlap >= 2 and score > best_score:
            best, best_score = fmt, score
    if best is None and len(candidates) == 1:
        best = candidates[0]
    if best is not None:
        missing = [n for n in _HEADER_SPECS[best].values() if n not in names]
        return DataFormatError(
            str(path),
            f"missing column(s) {missing} for the {best} format "
            f"({','.join(_HEADER_SPECS[best].values())}); columns found: {found}",
            line=1,
            column=missing[0],
        )
    return DataFormatError(
        str(path),
        f"the header fits none of the formats; columns found: {found}. "
        f"Accepted formats: {ACCEPTED}",
        line=1,
    )


def _is_number(text: str) -> bool:
    text = text.strip()
    if not text or "_" in text:
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True
