"""Mark-to-market: equity after every update, fed to the metrics accumulators.

Runs after the decision path over the same batch: it replays the batch's fills (their
post-fill cash and position) in tick order, so the equity figures depend only on the fills and
the prices, whichever path produced the fills. Also keeps a bounded equity curve for plotting.
"""

from __future__ import annotations

import numpy as np

from velocitas.analysis.metrics import equity_update
from velocitas.core.jit import kernel
from velocitas.core.models import FloatArray, IntArray

# Equity-curve state: number of points kept, keep-every-k stride, updates since the last kept.
CURVE_POINTS = 2048


class EquityCurve:
    """At most ``capacity`` (timestamp, equity) points, evenly thinned as the run grows.

    When full, every other point is dropped and the stride doubles, so memory stays flat and
    the kept points stay evenly spaced in update count.
    """

    __slots__ = ("equity", "state", "ts")

    def __init__(self, capacity: int = CURVE_POINTS) -> None:
        self.ts: IntArray = np.zeros(capacity, dtype=np.int64)
        self.equity: FloatArray = np.zeros(capacity, dtype=np.float64)
        self.state: IntArray = np.array([0, 1, 0], dtype=np.int64)  # count, stride, since

    def points(self) -> list[tuple[int, float]]:
        n = int(self.state[0])
        return list(zip(self.ts[:n].tolist(), self.equity[:n].tolist(), strict=True))


@kernel
def curve_add(c_ts: IntArray, c_eq: FloatArray, c_state: IntArray, t: int, e: float) -> None:
    """Offer one point to the curve."""
    c_state[2] += 1
    if c_state[2] < c_state[1]:
        return
    c_state[2] = 0
    n = c_state[0]
    if n == c_ts.shape[0]:
        half = n // 2
        for j in range(half):
            c_ts[j] = c_ts[2 * j]
            c_eq[j] = c_eq[2 * j]
        n = half
        c_state[1] *= 2
    c_ts[n] = t
    c_eq[n] = e
    c_state[0] = n + 1


@kernel
def mark_account(
    ts: IntArray,
    price: FloatArray,
    index_offset: int,
    fill_index: IntArray,
    fill_cash: FloatArray,
    fill_pos: FloatArray,
    carry: FloatArray,
    acc: FloatArray,
    c_ts: IntArray,
    c_eq: FloatArray,
    c_state: IntArray,
) -> None:
    """Equity of one account after each update of its coin.

    ``carry`` = [cash, position] before the batch, updated in place. ``fill_*`` are this batch's
    fills in order; ``fill_index`` counts updates of the coin since the run began.
    """
    cash = carry[0]
    pos = carry[1]
    j = 0
    n_fills = fill_index.shape[0]
    for i in range(ts.shape[0]):
        gi = index_offset + i
        while j < n_fills and fill_index[j] == gi:
            cash = fill_cash[j]
            pos = fill_pos[j]
            j += 1
        equity = cash + pos * price[i] if pos != 0.0 else cash
        equity_update(acc, ts[i], equity, pos != 0.0, price[i])
        curve_add(c_ts, c_eq, c_state, ts[i], equity)
    carry[0] = cash
    carry[1] = pos


@kernel
def mark_portfolio(
    order: IntArray,
    row_coin: IntArray,
    ts: IntArray,
    price: FloatArray,
    fill_rank: IntArray,
    fill_coin: IntArray,
    fill_qty: FloatArray,
    fill_cash_delta: FloatArray,
    cash: FloatArray,
    positions: FloatArray,
    last_price: FloatArray,
    acc: FloatArray,
    c_ts: IntArray,
    c_eq: FloatArray,
    c_state: IntArray,
) -> None:
    """Equity of the sum of all accounts after each update of any coin, in merged time order.

    ``ts``/``price``/``row_coin`` hold every coin's batch end to end; ``order`` is the merged
    (timestamp, coin order, arrival) permutation of those rows. Fills carry their position in
    that merged order (``fill_rank``, ascending). ``cash`` is a 1-element array; ``positions``
    and ``last_price`` are per coin; all are updated in place.
    """
    n_fills = fill_rank.shape[0]
    total_cash = cash[0]
    j = 0
    for r in range(order.shape[0]):
        k = order[r]
        while j < n_fills and fill_rank[j] == r:
            total_cash += fill_cash_delta[j]
            positions[fill_coin[j]] += fill_qty[j]
            j += 1
        last_price[row_coin[k]] = price[k]
        equity = total_cash
        exposed = False
        for c in range(positions.shape[0]):
            if positions[c] != 0.0:
                equity += positions[c] * last_price[c]
                exposed = True
        equity_update(acc, ts[k], equity, exposed, np.nan)
        curve_add(c_ts, c_eq, c_state, ts[k], equity)
    cash[0] = total_cash
