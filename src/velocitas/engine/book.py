"""The built-in accounts of a group, run by one compiled kernel per batch.

All built-in accounts of a worker live in flat arrays: one row of ``state`` per account (see
``engine/packed.py`` for the columns), parameters in a padded matrix, strategy states end to
end with offsets. One kernel call runs every account over the batch, deciding and marking tick
by tick, so a batch costs one Python-to-compiled transition for the whole group instead of
several per account. Decisions, fills and equity are computed by the same functions as the
per-account path (``builtin_step``, ``execute_order``, ``equity_update``), so the results are
bit for bit those of the per-tick path.
"""

from __future__ import annotations

import numpy as np

from velocitas.analysis.metrics import E_SIZE, equity_init, equity_update, round_trip_init
from velocitas.core.jit import kernel
from velocitas.core.models import FloatArray, IntArray
from velocitas.engine.fills import (
    C_ALLOW_SHORT,
    C_FILL_CLOSE,
    C_LATENCY_MS,
    P_NOT_BEFORE,
    P_QTY,
    execute_order,
)
from velocitas.engine.ledger import CASH, IGNORED, LEDGER_SIZE, POSITION, ledger_init
from velocitas.engine.marking import CURVE_POINTS, curve_add
from velocitas.engine.packed import (
    EQUITY,
    FILL_COLS,
    LAST_PRICE,
    LEDGER,
    PENDING,
    STATE_COLS,
    TRIPS,
    UPDATES,
)
from velocitas.strategies._dispatch import builtin_step
from velocitas.strategies.base import BuiltinStrategy

PARAMS_MAX = 8
_L0, _L1 = LEDGER.start, LEDGER.stop
_T0, _T1 = TRIPS.start, TRIPS.stop
_E0, _E1 = EQUITY.start, EQUITY.stop
_P0, _P1 = PENDING.start, PENDING.stop


def new_state_row(capital: float) -> FloatArray:
    row = np.zeros(STATE_COLS, dtype=np.float64)
    row[LEDGER] = ledger_init(capital)
    row[TRIPS] = round_trip_init()
    row[EQUITY] = equity_init(capital)
    row[LAST_PRICE] = np.nan
    return row


@kernel
def run_book(
    kinds: IntArray,
    params: FloatArray,
    fstate: FloatArray,
    f_off: IntArray,
    istate: IntArray,
    i_off: IntArray,
    acct_coin: IntArray,
    state: FloatArray,
    c_ts: IntArray,
    c_eq: FloatArray,
    c_state: IntArray,
    cfg: FloatArray,
    coin_start: IntArray,
    coin_len: IntArray,
    ts: IntArray,
    price: FloatArray,
    out: FloatArray,
    n_out: int,
    first_acct: int,
    first_tick: int,
) -> tuple[int, int, int]:
    """Run accounts ``first_acct..`` over the batch; returns (account, tick, fills) to resume.

    Stops early (account < number of accounts) when ``out`` is full; the caller grows it and
    calls again from the returned account and tick.
    """
    allow_short = cfg[C_ALLOW_SHORT] != 0.0
    fill_close = cfg[C_FILL_CLOSE] != 0.0
    latency = cfg[C_LATENCY_MS]
    capacity = out.shape[0]
    n_accounts = kinds.shape[0]
    for a in range(first_acct, n_accounts):
        c = acct_coin[a]
        length = coin_len[c]
        if length == 0:
            continue
        start = coin_start[c]
        ledger = state[a, _L0:_L1]
        trips = state[a, _T0:_T1]
        acc = state[a, _E0:_E1]
        pending = state[a, _P0:_P1]
        p = params[a]
        fs = fstate[f_off[a] : f_off[a + 1]]
        ist = istate[i_off[a] : i_off[a + 1]]
        kind = kinds[a]
        base = int(state[a, UPDATES])
        j0 = first_tick if a == first_acct else 0
        for j in range(j0, length):
            if n_out >= capacity:
                return a, j, n_out
            t = ts[start + j]
            px = price[start + j]
            if pending[P_QTY] != 0.0 and t >= pending[P_NOT_BEFORE]:
                qty = pending[P_QTY]
                pending[P_QTY] = 0.0
                n_out = _book(ledger, trips, cfg, qty, px, base + j, t, out, n_out, a)
            order = builtin_step(kind, p, fs, ist, px, ledger[POSITION], allow_short)
            if order != 0.0:
                if fill_close:
                    n_out = _book(ledger, trips, cfg, order, px, base + j, t, out, n_out, a)
                elif pending[P_QTY] != 0.0:
                    ledger[IGNORED] += 1.0
                else:
                    pending[P_QTY] = order
                    pending[P_NOT_BEFORE] = t + latency
            pos = ledger[POSITION]
            cash = ledger[CASH]
            equity = cash + pos * px if pos != 0.0 else cash
            equity_update(acc, t, equity, pos != 0.0, px)
            curve_add(c_ts[a], c_eq[a], c_state[a], t, equity)
        state[a, UPDATES] += length
        state[a, LAST_PRICE] = price[start + length - 1]
    return n_accounts, 0, n_out


@kernel
def _book(
    ledger: FloatArray,
    trips: FloatArray,
    cfg: FloatArray,
    qty: float,
    price: float,
    index: int,
    t: int,
    out: FloatArray,
    n_out: int,
    account: int,
) -> int:
    """Execute one order and append its fill (if any) as a row of ``out``."""
    n = execute_order(
        ledger, trips, cfg, qty, price, index, t,
        out[:, 1], out[:, 2], out[:, 3], out[:, 4], out[:, 5], out[:, 6], out[:, 7], n_out,
    )  # fmt: skip
    if n > n_out:
        out[n_out, 0] = account
    return n


class BuiltinBook:
    """Flat state of a group's built-in accounts (rows in registration order)."""

    def __init__(self, curve_points: int = CURVE_POINTS) -> None:
        # Workers of the live engine keep no equity curves (the writer keeps P&L history):
        # they use 2-point curves, which also keeps checkpoints small.
        self.curve_points = max(2, curve_points)
        self.ids: list[str] = []
        self.strategies: list[BuiltinStrategy] = []
        self.coins: list[str] = []
        self.state = np.zeros((0, STATE_COLS))
        self.c_ts = np.zeros((0, self.curve_points), dtype=np.int64)
        self.c_eq = np.zeros((0, self.curve_points))
        self.c_state = np.zeros((0, 3), dtype=np.int64)
        self._pack()

    def add(self, sid: str, strategy: BuiltinStrategy, capital: float) -> None:
        self.ids.append(sid)
        self.strategies.append(strategy)
        self.coins.append(strategy.coin)
        self.state = np.vstack([self.state, new_state_row(capital)])
        self.c_ts = np.vstack([self.c_ts, np.zeros((1, self.curve_points), dtype=np.int64)])
        self.c_eq = np.vstack([self.c_eq, np.zeros((1, self.curve_points))])
        self.c_state = np.vstack([self.c_state, np.array([[0, 1, 0]], dtype=np.int64)])
        self._pack()

    def remove(self, sid: str) -> None:
        i = self.ids.index(sid)
        self._unpack()
        for name in ("ids", "strategies", "coins"):
            getattr(self, name).pop(i)
        for name in ("state", "c_ts", "c_eq", "c_state"):
            setattr(self, name, np.delete(getattr(self, name), i, axis=0))
        self._pack()

    def _pack(self) -> None:
        """Lay the strategies' parameters and states out flat for the kernel."""
        n = len(self.strategies)
        self.kinds = np.array([s.kind for s in self.strategies], dtype=np.int64)
        self.params = np.zeros((n, PARAMS_MAX))
        for i, s in enumerate(self.strategies):
            self.params[i, : s.packed_params.shape[0]] = s.packed_params
        f_parts = [s.float_state for s in self.strategies]
        i_parts = [s.int_state for s in self.strategies]
        self.f_off = np.concatenate([[0], np.cumsum([len(x) for x in f_parts])]).astype(np.int64)
        self.i_off = np.concatenate([[0], np.cumsum([len(x) for x in i_parts])]).astype(np.int64)
        self.fstate = np.concatenate(f_parts) if f_parts else np.zeros(0)
        self.istate = np.concatenate(i_parts) if i_parts else np.zeros(0, dtype=np.int64)

    def _unpack(self) -> None:
        """Copy the flat strategy states back into the strategy objects."""
        for i, s in enumerate(self.strategies):
            s.float_state = self.fstate[self.f_off[i] : self.f_off[i + 1]].copy()
            s.int_state = self.istate[self.i_off[i] : self.i_off[i + 1]].copy()
            s.position = float(self.state[i, LEDGER][POSITION])

    def run(
        self,
        cfg: FloatArray,
        coin_index: dict[str, int],
        coin_start: IntArray,
        coin_len: IntArray,
        ts: IntArray,
        price: FloatArray,
    ) -> FloatArray:
        """Run every account over the batch; returns the new fills (rows, ``engine/packed``)."""
        if not self.ids:
            return np.zeros((0, FILL_COLS))
        acct_coin = np.array([coin_index.get(c, -1) for c in self.coins], dtype=np.int64)
        lengths = np.append(coin_len, 0)  # accounts whose coin is absent read index -1: length 0
        starts = np.append(coin_start, 0)
        out = np.zeros((max(16, int(coin_len.sum()) // 64), FILL_COLS))
        a, j, n = 0, 0, 0
        while True:
            a, j, n = run_book(
                self.kinds, self.params, self.fstate, self.f_off, self.istate, self.i_off,
                acct_coin, self.state, self.c_ts, self.c_eq, self.c_state, cfg, starts, lengths,
                ts, price, out, n, a, j,
            )  # fmt: skip
            if a >= len(self.ids):
                return out[:n]
            out = np.vstack([out, np.zeros_like(out)])

    def curve(self, sid: str) -> list[tuple[int, float]]:
        i = self.ids.index(sid)
        n = int(self.c_state[i, 0])
        return list(zip(self.c_ts[i, :n].tolist(), self.c_eq[i, :n].tolist(), strict=True))


__all__ = ["E_SIZE", "LEDGER_SIZE", "BuiltinBook", "run_book"]
