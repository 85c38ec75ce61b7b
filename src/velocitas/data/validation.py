"""Vectorised checks of loaded market data, and the timestamp unit conversion.

Each rule is one numpy pass producing an ``ok`` mask; the first offending row is the
smallest row any rule rejects (ties go to the rule listed first in ``find_violation``), so
the error a user sees is the first one in the file, whatever rule it breaks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from velocitas.core.models import FloatArray, IntArray

CodeArray = npt.NDArray[np.int32]

# Epoch magnitudes: below 1e11 a value is seconds (1e11 ms would be 1973), above 1e14 it is
# microseconds (1e14 ms would be the year 5138). Nanoseconds (>= 1e17) are refused.
_SECONDS_BELOW = 1e11
_MICROS_ABOVE = 1e14
_TIMESTAMP_LIMIT = 1e17
_BAR_PRICES = ("open", "high", "low", "close")
_NO_COIN = -1
_BLOCK_ROWS = 1 << 16
_POSITIVE = "{role} must be > 0, was {x!r}"
_NEGATIVE = "negative {role} {x!r}; {role} must be >= 0"


@dataclass(frozen=True, slots=True)
class Violation:
    """The first bad row of a chunk: its 0-based index, the column role and the reason."""

    row: int
    column: str
    reason: str


@dataclass(slots=True)
class Chunk:
    """Rows to check: float64 columns by role (``timestamp`` raw, as in the file)."""

    values: dict[str, FloatArray]
    codes: CodeArray | None = None

    def __len__(self) -> int:
        return int(self.values["timestamp"].shape[0])


def to_epoch_ms(raw: FloatArray, out: IntArray | None = None) -> IntArray:
    """Epoch seconds, milliseconds or microseconds (each value by magnitude) to int64 ms.

    Rounds to the nearest millisecond: ``1723161255.342`` s -> ``1723161255342``.
    """
    if raw.shape[0] and raw.min() >= _SECONDS_BELOW and raw.max() <= _MICROS_ABOVE:
        ms = np.rint(raw)  # the common case, all milliseconds: no per-value unit choice
    else:
        ms = np.where(
            raw < _SECONDS_BELOW,
            raw * 1000.0,
            np.where(raw > _MICROS_ABOVE, raw / 1000.0, raw),
        )
        np.rint(ms, out=ms)
    if out is None:
        return ms.astype(np.int64)
    out[:] = ms
    return out


def find_violation(
    chunk: Chunk,
    *,
    bars: bool,
    last_ms: dict[int, int],
    coin_label: Callable[[int], str],
    bad_codes: frozenset[int] = frozenset(),
) -> tuple[Violation | None, IntArray]:
    """The first row breaking a rule (or None) and the timestamps in epoch ms.

    Rules, in tie-break order: timestamp finite and in range; prices finite and > 0; volume
    finite and >= 0; coin label not empty; for bars ``high >= max(open, close)`` and
    ``low <= min(open, close)``; timestamps per coin strictly increasing (bars) or
    non-decreasing (ticks, trades), continuing from ``last_ms`` (coin code -> last timestamp
    of the previous chunk). ``last_ms`` is updated only when the chunk passes.
    """
    n = len(chunk)
    ts_ms = np.empty(n, dtype=np.int64)
    carry = dict(last_ms)
    # Blocks of _BLOCK_ROWS keep every temporary small and cache-resident: one pass per rule
    # over the whole chunk would allocate (and page-fault) a fresh mask per rule instead.
    for start in range(0, n, _BLOCK_ROWS):
        stop = min(n, start + _BLOCK_ROWS)
        block = Chunk(
            {role: a[start:stop] for role, a in chunk.values.items()},
            None if chunk.codes is None else chunk.codes[start:stop],
        )
        found = _block_violation(block, ts_ms[start:stop], bars, carry, coin_label, bad_codes)
        if found is not None:
            return Violation(start + found.row, found.column, found.reason), ts_ms
    last_ms.update(carry)
    return None, ts_ms


def _block_violation(
    chunk: Chunk,
    ts_ms: IntArray,
    bars: bool,
    carry: dict[int, int],
    coin_label: Callable[[int], str],
    bad_codes: frozenset[int],
) -> Violation | None:
    """``find_violation`` on one block; fills ``ts_ms`` and, if the block passes, ``carry``."""
    v = chunk.values
    raw = v["timestamp"]
    ts_ok = (raw >= 0) & (raw < _TIMESTAMP_LIMIT)
    found: list[Violation] = []
    _first_bad(found, ts_ok, "timestamp", lambda i: _timestamp_reason(float(raw[i])))
    for role in (*_BAR_PRICES, "price"):
        if role in v:
            a = v[role]
            _first_bad(found, (a > 0) & (a < np.inf), role, _reason(a, role, _POSITIVE))
    vol = v["volume"]
    _first_bad(found, (vol >= 0) & (vol < np.inf), "volume", _reason(vol, "volume", _NEGATIVE))
    if chunk.codes is not None and bad_codes:
        ok = ~np.isin(chunk.codes, list(bad_codes))
        _first_bad(found, ok, "coin", lambda i: "empty coin label")
    if bars:
        _check_bar_shape(found, v)
    with np.errstate(invalid="ignore"):
        to_epoch_ms(raw if not found else np.where(ts_ok, raw, 0.0), out=ts_ms)
    order, block_last = _first_out_of_order(ts_ms, chunk.codes, carry, strict=bars)
    if order is not None:
        row, prev = order
        code = _NO_COIN if chunk.codes is None else int(chunk.codes[row])
        reason = _order_reason(int(ts_ms[row]), prev, coin_label(code), bars)
        found.append(Violation(row, "timestamp", reason))
    if found:
        return min(found, key=lambda f: f.row)
    carry.update(block_last)
    return None


def _first_bad(
    found: list[Violation], ok: npt.NDArray[np.bool_], role: str, why: Callable[[int], str]
) -> None:
    """Append the first row where ``ok`` is False (argmin of a bool mask is its first False)."""
    if ok.shape[0] == 0:
        return
    i = int(np.argmin(ok))
    if not ok[i]:
        found.append(Violation(i, role, why(i)))


def _reason(a: FloatArray, role: str, rule: str) -> Callable[[int], str]:
    """The reason for row ``i``: not finite, or else ``rule`` (formatted with role and x)."""

    def why(i: int) -> str:
        x = float(a[i])
        if np.isnan(x):
            return f"{role} is NaN; expected a finite number"
        if np.isinf(x):
            return f"{role} is {x}; expected a finite number"
        return rule.format(role=role, x=x)

    return why


def _timestamp_reason(x: float) -> str:
    if np.isnan(x) or np.isinf(x):
        return f"timestamp is {x}; expected a finite epoch time"
    if x < 0:
        return f"negative timestamp {x!r}; expected epoch seconds, milliseconds or microseconds"
    return (
        f"timestamp {x!r} is too large for epoch seconds, milliseconds or microseconds "
        "(nanoseconds are not accepted)"
    )


def _check_bar_shape(found: list[Violation], v: Mapping[str, FloatArray]) -> None:
    o, h, low, c = v["open"], v["high"], v["low"], v["close"]

    def high_reason(i: int) -> str:
        top = max(float(o[i]), float(c[i]))
        return f"high {float(h[i])!r} is below max(open, close) = {top!r}"

    def low_reason(i: int) -> str:
        bottom = min(float(o[i]), float(c[i]))
        return f"low {float(low[i])!r} is above min(open, close) = {bottom!r}"

    # Boolean temporaries only (a float max/min array per rule costs 8x the memory).
    # NaN rows compare False here too, but the finiteness rules above rank first on that row.
    _first_bad(found, (h >= o) & (h >= c), "high", high_reason)
    _first_bad(found, (low <= o) & (low <= c), "low", low_reason)


def _first_out_of_order(
    ts: IntArray, codes: CodeArray | None, last_ms: Mapping[int, int], *, strict: bool
) -> tuple[tuple[int, int] | None, dict[int, int]]:
    """(row, previous timestamp of its coin) of the first row out of order, or None; and
    each coin's last timestamp in the chunk."""
    n = ts.shape[0]
    if n == 0:
        return None, {}
    if codes is None or int(codes.min()) == int(codes.max()):
        code = _NO_COIN if codes is None else int(codes[0])
        return _first_out_of_order_one_coin(ts, last_ms.get(code), strict), {code: int(ts[-1])}
    order = np.argsort(codes, kind="stable")
    sorted_ts, sorted_codes = ts[order], codes[order]
    prev = np.empty(n, dtype=np.int64)
    prev[1:] = sorted_ts[:-1]
    has_prev = np.ones(n, dtype=bool)
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    ends = np.r_[starts[1:] - 1, n - 1]
    for s in starts.tolist():
        carried = last_ms.get(int(sorted_codes[s]))
        has_prev[s] = carried is not None
        prev[s] = 0 if carried is None else carried
    new_last = {int(sorted_codes[e]): int(sorted_ts[e]) for e in ends.tolist()}
    bad = has_prev & ((sorted_ts <= prev) if strict else (sorted_ts < prev))
    if not bad.any():
        return None, new_last
    rows = order[bad]
    k = int(np.argmin(rows))
    return (int(rows[k]), int(prev[bad][k])), new_last


def _first_out_of_order_one_coin(
    ts: IntArray, carried: int | None, strict: bool
) -> tuple[int, int] | None:
    first = ts[0]
    if carried is not None and (first <= carried if strict else first < carried):
        return 0, carried
    bad = (ts[1:] <= ts[:-1]) if strict else (ts[1:] < ts[:-1])
    if bad.shape[0] == 0:
        return None
    i = int(np.argmax(bad))
    return (i + 1, int(ts[i])) if bad[i] else None


def _order_reason(t: int, prev: int, coin: str, bars: bool) -> str:
    if bars and t == prev:
        return (
            f"duplicate bar: timestamp {t} ({_iso(t)}) repeats the previous {coin} bar's; "
            "bar timestamps must be strictly increasing"
        )
    rule = "bar timestamps must be strictly increasing" if bars else "must not decrease"
    return (
        f"timestamp goes back in time: {t} ({_iso(t)}) after {prev} ({_iso(prev)}) "
        f"for {coin}; {rule}"
    )


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    except (OverflowError, OSError, ValueError):
        return "out of range"
