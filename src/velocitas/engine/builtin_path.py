"""The compiled decision path of the built-ins: signals and fills over an array of updates.

One kernel serves all six built-ins (``builtin_step`` dispatches on the strategy's kind), and
it is resumable: every piece of state (strategy, ledger, pending order) lives in arrays owned by
the caller, so a backtest over 10M ticks in one call, or a live engine feeding batches of one
tick, runs the same code and produces the same fills.
"""

from __future__ import annotations

from velocitas.core.jit import kernel
from velocitas.core.models import FloatArray, IntArray
from velocitas.engine.fills import (
    C_ALLOW_SHORT,
    C_FILL_CLOSE,
    C_LATENCY_MS,
    P_NOT_BEFORE,
    P_QTY,
    FillLog,
    execute_order,
)
from velocitas.engine.ledger import IGNORED, POSITION
from velocitas.strategies._dispatch import builtin_step


@kernel
def _decide(
    kind: int,
    params: FloatArray,
    fstate: FloatArray,
    istate: IntArray,
    ledger: FloatArray,
    trips: FloatArray,
    pending: FloatArray,
    cfg: FloatArray,
    ts: IntArray,
    price: FloatArray,
    start: int,
    index_offset: int,
    log_index: IntArray,
    log_ts: IntArray,
    log_qty: FloatArray,
    log_price: FloatArray,
    log_fee: FloatArray,
    log_cash: FloatArray,
    log_pos: FloatArray,
    n_log: int,
) -> tuple[int, int]:
    """Process updates ``start..`` until the end or the log is full; returns (next, log size)."""
    allow_short = cfg[C_ALLOW_SHORT] != 0.0
    fill_close = cfg[C_FILL_CLOSE] != 0.0
    latency = cfg[C_LATENCY_MS]
    capacity = log_index.shape[0]
    n = ts.shape[0]
    for i in range(start, n):
        if n_log >= capacity:
            return i, n_log
        t = ts[i]
        p = price[i]
        if pending[P_QTY] != 0.0 and t >= pending[P_NOT_BEFORE]:
            qty = pending[P_QTY]
            pending[P_QTY] = 0.0
            n_log = execute_order(
                ledger, trips, cfg, qty, p, index_offset + i, t,
                log_index, log_ts, log_qty, log_price, log_fee, log_cash, log_pos, n_log,
            )  # fmt: skip
        order = builtin_step(kind, params, fstate, istate, p, ledger[POSITION], allow_short)
        if order == 0.0:
            continue
        if fill_close:
            n_log = execute_order(
                ledger, trips, cfg, order, p, index_offset + i, t,
                log_index, log_ts, log_qty, log_price, log_fee, log_cash, log_pos, n_log,
            )  # fmt: skip
        elif pending[P_QTY] != 0.0:
            ledger[IGNORED] += 1.0
        else:
            pending[P_QTY] = order
            pending[P_NOT_BEFORE] = t + latency
    return n, n_log


def run_builtin(
    kind: int,
    params: FloatArray,
    fstate: FloatArray,
    istate: IntArray,
    ledger: FloatArray,
    trips: FloatArray,
    pending: FloatArray,
    cfg: FloatArray,
    ts: IntArray,
    price: FloatArray,
    index_offset: int,
    log: FillLog,
) -> None:
    """Run a built-in over one batch of updates, appending its fills to ``log``."""
    start = 0
    n = int(ts.shape[0])
    log.reserve(max(16, n // 64))
    while start < n:
        start, log.count = _decide(
            kind, params, fstate, istate, ledger, trips, pending, cfg, ts, price, start,
            index_offset, log.index, log.ts, log.qty, log.price, log.fee, log.cash_after,
            log.position_after, log.count,
        )  # fmt: skip
        if start < n:
            log.reserve(log.capacity)
