"""One batch's results for a whole group of accounts, in a few flat arrays.

Workers send a :class:`PackedUpdate` per batch instead of one object per account: pickling a
handful of arrays costs microseconds where a few hundred small ones cost a millisecond, and
the single writer applies it with vectorised numpy.

``state`` has one row per account (in the group's order) with these columns: the ledger, the
round-trip and equity accumulators (layouts in ``engine/ledger.py`` and
``analysis/metrics.py``), the pending order, then the bookkeeping columns below. ``fills`` has
one row per new fill, an account's fills contiguous and in time order, columns ``F_*``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from velocitas.analysis.metrics import E_SIZE, T_SIZE
from velocitas.core.models import FloatArray
from velocitas.engine.ledger import LEDGER_SIZE, POSITION

LEDGER = slice(0, LEDGER_SIZE)
TRIPS = slice(LEDGER.stop, LEDGER.stop + T_SIZE)
EQUITY = slice(TRIPS.stop, TRIPS.stop + E_SIZE)
PENDING = slice(EQUITY.stop, EQUITY.stop + 2)
UPDATES = PENDING.stop  # updates of the account's coin seen so far
UPDATES_BEFORE = UPDATES + 1  # ... before this batch
FILLS_TOTAL = UPDATES + 2  # fills booked so far
FILLS_BEFORE = UPDATES + 3  # ... before this batch
POSITION_BEFORE = UPDATES + 4  # position before this batch
LAST_PRICE = UPDATES + 5
STATE_COLS = UPDATES + 6

F_ACCOUNT = 0  # row of the account in ``state``
F_INDEX = 1  # update number of the account's coin (since the run began)
F_TS = 2
F_QTY = 3  # signed
F_PRICE = 4
F_FEE = 5
F_CASH_AFTER = 6
F_POSITION_AFTER = 7
FILL_COLS = 8

FILL_KEYS = ("index", "ts", "qty", "price", "fee", "cash_after", "position_after")


def fill_columns(rows: FloatArray) -> dict[str, np.ndarray]:
    """Fill rows (one account's) as named columns, ``index`` and ``ts`` as int64."""
    cols = {key: rows[:, i + 1].copy() for i, key in enumerate(FILL_KEYS)}
    cols["index"] = cols["index"].astype(np.int64)
    cols["ts"] = cols["ts"].astype(np.int64)
    return cols


def empty_fills() -> FloatArray:
    return np.zeros((0, FILL_COLS), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class PackedUpdate:
    """What one batch changed in a group of accounts."""

    ids: tuple[str, ...]
    coins: tuple[str, ...]
    state: FloatArray
    fills: FloatArray
    errors: dict[str, str] = field(default_factory=dict)

    def position_before_each_fill(self) -> FloatArray:
        """Each fill's account position just before it."""
        f = self.fills
        if f.shape[0] == 0:
            return np.zeros(0)
        acct = f[:, F_ACCOUNT].astype(np.int64)
        before = self.state[acct, POSITION_BEFORE].copy()
        same = np.zeros(f.shape[0], dtype=bool)
        same[1:] = acct[1:] == acct[:-1]
        before[same] = f[:-1, F_POSITION_AFTER][same[1:]]
        return before

    def fill_columns(self, row: int) -> dict[str, np.ndarray]:
        """One account's new fills as the fill-log columns (index and ts as int64)."""
        return fill_columns(self.fills[self.fills[:, F_ACCOUNT] == row])

    def position(self, row: int) -> float:
        return float(self.state[row, LEDGER][POSITION])


_Layout = tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]


def _layout(parts: list[PackedUpdate], order: list[str]) -> _Layout:
    ids: list[str] = []
    coins: list[str] = []
    for p in parts:
        ids.extend(p.ids)
        coins.extend(p.coins)
    position = {sid: i for i, sid in enumerate(ids)}
    perm = np.array([position[sid] for sid in order if sid in position], dtype=np.int64)
    new_row = np.empty(len(ids), dtype=np.int64)
    new_row[perm] = np.arange(len(perm))
    return perm, new_row, tuple(ids[i] for i in perm), tuple(coins[i] for i in perm)


def merge(
    parts: list[PackedUpdate], order: list[str], cache: dict[Any, _Layout] | None = None
) -> PackedUpdate:
    """Several groups' updates as one, accounts in ``order`` (ids absent from parts skipped).

    ``cache`` remembers the row permutation per combination of parts (the same every batch
    until a strategy is added or removed).
    """
    if len(parts) == 1 and list(parts[0].ids) == order:
        return parts[0]
    key = (tuple(p.ids for p in parts), tuple(order))
    layout = cache.get(key) if cache is not None else None
    if layout is None:
        layout = _layout(parts, order)
        if cache is not None:
            if len(cache) > 64:
                cache.clear()
            cache[key] = layout
    perm, new_row, merged_ids, merged_coins = layout
    state = np.concatenate([p.state for p in parts]) if parts else np.zeros((0, STATE_COLS))
    offset = 0
    fills = []
    for p in parts:
        if p.fills.shape[0]:
            f = p.fills.copy()
            f[:, F_ACCOUNT] = new_row[offset + f[:, F_ACCOUNT].astype(np.int64)]
            fills.append(f)
        offset += len(p.ids)
    all_fills = np.concatenate(fills) if fills else empty_fills()
    if all_fills.shape[0]:
        all_fills = all_fills[np.argsort(all_fills[:, F_ACCOUNT], kind="stable")]
    errors: dict[str, str] = {}
    for p in parts:
        errors.update(p.errors)
    return PackedUpdate(
        ids=merged_ids,
        coins=merged_coins,
        state=state[perm],
        fills=all_fills,
        errors=errors,
    )
