"""Metrics formulas, checked against quantstats (an independent implementation)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from velocitas.analysis.metrics import (
    equity_init,
    equity_update,
    round_trip_init,
    round_trip_update,
    summarize,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import quantstats as qs

MINUTE_MS = 60_000


def _feed(equity: np.ndarray, capital: float, spacing_ms: int = MINUTE_MS):
    acc = equity_init(capital)
    for i, e in enumerate(equity):
        equity_update(acc, float(i * spacing_ms), float(e), True, 100.0)
    return summarize(acc, round_trip_init(), 0.0)


def _random_equity(seed: int, n: int = 2_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 10_000.0 * np.cumprod(1.0 + rng.normal(0.0002, 0.01, n))


def _quantstats_figures(equity: np.ndarray, capital: float, periods: float):
    index = pd.date_range("2024-01-01", periods=len(equity) + 1, freq="min")
    prices = pd.Series(np.concatenate([[capital], equity]), index=index)
    returns = prices.pct_change().dropna()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantstats warns on a zero-variance series
        return (
            qs.stats.sharpe(returns, periods=periods),
            qs.stats.sortino(returns, periods=periods),
            -qs.stats.max_drawdown(prices),
        )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sharpe_sortino_and_drawdown_match_quantstats(seed):
    equity = _random_equity(seed)
    ours = _feed(equity, 10_000.0)
    sharpe, sortino, max_dd = _quantstats_figures(equity, 10_000.0, ours.periods_per_year)
    assert ours.sharpe == pytest.approx(sharpe, rel=1e-9)
    assert ours.sortino == pytest.approx(sortino, rel=1e-9)
    assert ours.max_drawdown == pytest.approx(max_dd, rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(min_value=-0.2, max_value=0.2, allow_nan=False), min_size=3, max_size=200)
)
def test_sharpe_and_drawdown_match_quantstats_on_random_return_paths(rets):
    # Sharpe of (nearly) constant returns is 0/0: ill-conditioned, so not compared.
    assume(np.std(rets) > 1e-6)
    equity = 1_000.0 * np.cumprod(1.0 + np.array(rets))
    ours = _feed(equity, 1_000.0)
    sharpe, _sortino, max_dd = _quantstats_figures(equity, 1_000.0, ours.periods_per_year)
    if math.isfinite(sharpe):
        assert ours.sharpe == pytest.approx(sharpe, rel=1e-7, abs=1e-9)
    assert ours.max_drawdown == pytest.approx(max_dd, rel=1e-9, abs=1e-12)


def test_periods_per_year_comes_from_the_data_spacing():
    ours = _feed(_random_equity(0, 100), 10_000.0, spacing_ms=MINUTE_MS)
    assert ours.periods_per_year == pytest.approx(365 * 24 * 60)


def test_flat_equity_has_zero_sharpe_and_no_drawdown():
    ours = _feed(np.full(50, 1_000.0), 1_000.0)
    assert ours.sharpe == 0.0
    assert ours.sortino == 0.0
    assert ours.max_drawdown == 0.0
    assert ours.total_pnl == 0.0


def test_drawdown_duration_runs_from_peak_to_recovery():
    equity = np.array([100.0, 110.0, 90.0, 95.0, 111.0, 105.0])
    ours = _feed(equity, 100.0)
    # peak 110 at t=1 min, recovered at t=4 min; then underwater from 4 to 5 min
    assert ours.max_drawdown_duration_ms == 3 * MINUTE_MS
    assert ours.max_drawdown == pytest.approx(1 - 90 / 110)


def test_cagr_and_calmar_use_a_365_day_year():
    acc = equity_init(100.0)
    day = 86_400_000
    equity_update(acc, 0.0, 100.0, False, 1.0)
    equity_update(acc, 182.0 * day, 80.0, False, 1.0)
    equity_update(acc, 365.0 * day, 121.0, False, 1.0)
    m = summarize(acc, round_trip_init(), 0.0)
    assert m.cagr == pytest.approx(0.21)
    assert m.max_drawdown == pytest.approx(0.2)
    assert m.calmar == pytest.approx(0.21 / 0.2)


def test_round_trip_statistics():
    trips = round_trip_init()
    for pnl in [10.0, 5.0, -3.0, -4.0, -1.0, 8.0]:
        round_trip_update(trips, pnl)
    m = summarize(equity_init(1.0), trips, 0.0)
    assert m.round_trips == 6
    assert m.win_rate == pytest.approx(0.5)
    assert m.profit_factor == pytest.approx(23.0 / 8.0)
    assert m.expectancy == pytest.approx(15.0 / 6.0)
    assert m.avg_win == pytest.approx(23.0 / 3.0)
    assert m.avg_loss == pytest.approx(-8.0 / 3.0)
    assert (m.best_trade, m.worst_trade) == (10.0, -4.0)
    assert (m.max_consecutive_wins, m.max_consecutive_losses) == (2, 3)


def test_profit_factor_is_infinite_with_wins_and_no_losses():
    trips = round_trip_init()
    round_trip_update(trips, 1.0)
    assert summarize(equity_init(1.0), trips, 0.0).profit_factor == math.inf
