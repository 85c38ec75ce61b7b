"""Performance metrics: every formula in one place, computed incrementally.

Two compiled accumulators are fed while a run progresses (backtest or live), so a live
snapshot and a finished backtest report the same numbers from the same state:

* the **equity accumulator** sees the account's equity after every market update
  (``equity_update``), and
* the **round-trip accumulator** sees the P&L of every closed round trip (``round_trip_update``).

Definitions (``summarize`` turns the two states into :class:`Metrics`):

* Samples: equity ``e_1..e_n`` after each update; ``e_0`` is the initial capital. Returns
  ``r_i = e_i / e_{i-1} - 1`` (0 when ``e_{i-1} <= 0``, possible only when shorting), n of them.
* ``total_pnl = e_n - e_0`` (realised net of all fees + unrealised at the last price);
  ``total_return = e_n / e_0 - 1``.
* Years ``Y = (t_n - t_1) / (365 * 86_400_000 ms)``; ``periods_per_year = (n - 1) / Y`` (the
  data's mean spacing, 365-day year). ``cagr = (e_n / e_0) ** (1 / Y) - 1`` (``inf`` when that
  overflows, as it can for runs of minutes).
* ``sharpe = mean(r) / std(r, ddof=1) * sqrt(periods_per_year)`` with a zero risk-free rate;
  0.0 when ``std(r) == 0`` (a flat equity line).
* ``sortino = mean(r) / sqrt(mean(min(r, 0) ** 2)) * sqrt(periods_per_year)``; 0.0 when there is
  no downside and ``mean(r) <= 0``, ``inf`` when there is no downside and ``mean(r) > 0``.
* ``max_drawdown = max_i (1 - e_i / max_{j<=i} e_j)``, a fraction (0.25 is 25 %), with ``e_0``
  included in the running peak. ``max_drawdown_duration_ms``: the longest time spent below a
  previous peak (to recovery, or to the last sample if never recovered).
* ``calmar = cagr / max_drawdown`` (0.0 when there is no drawdown).
* ``exposure``: fraction of samples with a non-zero position.
* Round trips: a round trip opens when a fill takes the position away from flat and closes when
  a fill brings it back to flat (or through it). Its P&L is the realised P&L of its closing
  fills minus every fee paid while it was open (entry and exit). ``win_rate = wins / trips``;
  ``profit_factor = gross wins / gross losses`` (``inf`` with wins and no losses, 0.0 with no
  wins); ``expectancy`` = mean round-trip P&L; ``avg_win`` / ``avg_loss`` (a loss is negative);
  ``best_trade`` / ``worst_trade``; the longest runs of consecutive wins and losses (a trip with
  P&L exactly 0 breaks both runs).
* ``buy_and_hold_return = last price / first price - 1`` of the same coin over the same updates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from velocitas.core.jit import kernel
from velocitas.core.models import FloatArray

MS_PER_YEAR = 365.0 * 86_400_000.0

# Equity accumulator layout.
E_SAMPLES = 0
E_FIRST_TS = 1
E_LAST_TS = 2
E_INITIAL = 3
E_LAST = 4
E_MEAN = 5
E_M2 = 6
E_DOWN_SQ = 7
E_PEAK = 8
E_PEAK_TS = 9
E_MAX_DD = 10
E_MAX_DD_MS = 11
E_EXPOSED = 12
E_FIRST_PRICE = 13
E_LAST_PRICE = 14
E_SIZE = 15

# Round-trip accumulator layout.
T_COUNT = 0
T_WINS = 1
T_LOSSES = 2
T_GROSS_WIN = 3
T_GROSS_LOSS = 4
T_BEST = 5
T_WORST = 6
T_WIN_RUN = 7
T_LOSS_RUN = 8
T_MAX_WIN_RUN = 9
T_MAX_LOSS_RUN = 10
T_SUM = 11
T_SIZE = 12


def equity_init(initial_equity: float) -> FloatArray:
    """A fresh equity accumulator for an account starting at ``initial_equity``."""
    state = np.zeros(E_SIZE, dtype=np.float64)
    state[E_INITIAL] = initial_equity
    state[E_LAST] = initial_equity
    state[E_PEAK] = initial_equity
    state[E_FIRST_PRICE] = np.nan
    state[E_LAST_PRICE] = np.nan
    return state


def round_trip_init() -> FloatArray:
    """A fresh round-trip accumulator."""
    state = np.zeros(T_SIZE, dtype=np.float64)
    state[T_BEST] = -np.inf
    state[T_WORST] = np.inf
    return state


@kernel
def equity_update(
    state: FloatArray, timestamp_ms: float, equity: float, exposed: bool, price: float
) -> None:
    """Record the equity after one market update (O(1), Welford for mean/variance)."""
    n = state[E_SAMPLES]
    if n == 0.0:
        state[E_FIRST_TS] = timestamp_ms
        state[E_PEAK_TS] = timestamp_ms
        state[E_FIRST_PRICE] = price
    prev = state[E_LAST]
    r = equity / prev - 1.0 if prev > 0.0 else 0.0
    n += 1.0
    state[E_SAMPLES] = n
    delta = r - state[E_MEAN]
    state[E_MEAN] += delta / n
    state[E_M2] += delta * (r - state[E_MEAN])
    if r < 0.0:
        state[E_DOWN_SQ] += r * r
    was_underwater = prev < state[E_PEAK]
    state[E_LAST] = equity
    state[E_LAST_TS] = timestamp_ms
    state[E_LAST_PRICE] = price
    if exposed:
        state[E_EXPOSED] += 1.0
    if equity >= state[E_PEAK]:
        if was_underwater:  # recovered: the drawdown lasted from its peak until now
            underwater = timestamp_ms - state[E_PEAK_TS]
            if underwater > state[E_MAX_DD_MS]:
                state[E_MAX_DD_MS] = underwater
        state[E_PEAK] = equity
        state[E_PEAK_TS] = timestamp_ms
    else:
        if state[E_PEAK] > 0.0:
            dd = 1.0 - equity / state[E_PEAK]
            if dd > state[E_MAX_DD]:
                state[E_MAX_DD] = dd
        underwater = timestamp_ms - state[E_PEAK_TS]
        if underwater > state[E_MAX_DD_MS]:
            state[E_MAX_DD_MS] = underwater


@kernel
def round_trip_update(state: FloatArray, pnl: float) -> None:
    """Record one closed round trip's P&L (net of its fees)."""
    state[T_COUNT] += 1.0
    state[T_SUM] += pnl
    if pnl > state[T_BEST]:
        state[T_BEST] = pnl
    if pnl < state[T_WORST]:
        state[T_WORST] = pnl
    if pnl > 0.0:
        state[T_WINS] += 1.0
        state[T_GROSS_WIN] += pnl
        state[T_WIN_RUN] += 1.0
        state[T_LOSS_RUN] = 0.0
        if state[T_WIN_RUN] > state[T_MAX_WIN_RUN]:
            state[T_MAX_WIN_RUN] = state[T_WIN_RUN]
    elif pnl < 0.0:
        state[T_LOSSES] += 1.0
        state[T_GROSS_LOSS] -= pnl
        state[T_LOSS_RUN] += 1.0
        state[T_WIN_RUN] = 0.0
        if state[T_LOSS_RUN] > state[T_MAX_LOSS_RUN]:
            state[T_MAX_LOSS_RUN] = state[T_LOSS_RUN]
    else:
        state[T_WIN_RUN] = 0.0
        state[T_LOSS_RUN] = 0.0


@dataclass(frozen=True, slots=True)
class Metrics:
    """A run's performance figures; see the module docstring for every formula."""

    total_pnl: float
    total_return: float
    cagr: float
    sharpe: float
    sortino: float
    calmar: float
    max_drawdown: float
    max_drawdown_duration_ms: int
    win_rate: float
    profit_factor: float
    expectancy: float
    avg_win: float
    avg_loss: float
    best_trade: float
    worst_trade: float
    max_consecutive_wins: int
    max_consecutive_losses: int
    round_trips: int
    exposure: float
    fees_paid: float
    buy_and_hold_return: float
    periods_per_year: float
    samples: int
    final_equity: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _ratio(num: float, den: float, when_zero: float = 0.0) -> float:
    return num / den if den != 0.0 else when_zero


def _cagr(growth: float, years: float) -> float:
    if years <= 0.0 or growth <= 0.0:
        return 0.0
    try:
        return float(growth ** (1.0 / years) - 1.0)
    except OverflowError:  # a short run's growth compounded to a year: not a finite number
        return math.inf


def summarize(equity: FloatArray, trips: FloatArray, fees_paid: float) -> Metrics:
    """Turn the two accumulators into the reported figures."""
    n = int(equity[E_SAMPLES])
    initial = float(equity[E_INITIAL])
    final = float(equity[E_LAST])
    span_ms = float(equity[E_LAST_TS] - equity[E_FIRST_TS])
    years = span_ms / MS_PER_YEAR
    ppy = (n - 1) / years if years > 0.0 and n > 1 else 0.0
    mean = float(equity[E_MEAN])
    std = math.sqrt(equity[E_M2] / (n - 1)) if n > 1 else 0.0
    down = math.sqrt(equity[E_DOWN_SQ] / n) if n > 0 else 0.0
    root_ppy = math.sqrt(ppy)
    sharpe = mean / std * root_ppy if std > 0.0 else 0.0
    no_downside = math.inf if mean > 0.0 else 0.0
    sortino = mean / down * root_ppy if down > 0.0 else no_downside
    growth = final / initial if initial > 0.0 else 0.0
    cagr = _cagr(growth, years)
    max_dd = float(equity[E_MAX_DD])
    count = float(trips[T_COUNT])
    wins, losses = float(trips[T_WINS]), float(trips[T_LOSSES])
    gross_win, gross_loss = float(trips[T_GROSS_WIN]), float(trips[T_GROSS_LOSS])
    first_price, last_price = float(equity[E_FIRST_PRICE]), float(equity[E_LAST_PRICE])
    return Metrics(
        total_pnl=final - initial,
        total_return=growth - 1.0 if initial > 0.0 else 0.0,
        cagr=cagr,
        sharpe=sharpe,
        sortino=sortino,
        calmar=_ratio(cagr, max_dd),
        max_drawdown=max_dd,
        max_drawdown_duration_ms=int(equity[E_MAX_DD_MS]),
        win_rate=_ratio(wins, count),
        profit_factor=_ratio(gross_win, gross_loss, math.inf if wins > 0 else 0.0),
        expectancy=_ratio(float(trips[T_SUM]), count),
        avg_win=_ratio(gross_win, wins),
        avg_loss=-_ratio(gross_loss, losses),
        best_trade=float(trips[T_BEST]) if count > 0 else 0.0,
        worst_trade=float(trips[T_WORST]) if count > 0 else 0.0,
        max_consecutive_wins=int(trips[T_MAX_WIN_RUN]),
        max_consecutive_losses=int(trips[T_MAX_LOSS_RUN]),
        round_trips=int(count),
        exposure=_ratio(float(equity[E_EXPOSED]), float(n)),
        fees_paid=fees_paid,
        buy_and_hold_return=(last_price / first_price - 1.0) if first_price > 0.0 else 0.0,
        periods_per_year=ppy,
        samples=n,
        final_equity=final,
    )
