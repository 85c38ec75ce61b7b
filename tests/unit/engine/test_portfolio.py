"""Portfolio invariants over random multi-coin, multi-account order flows (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from velocitas.core.models import CoinSeries, Dataset
from velocitas.engine.backtest import run_backtest
from velocitas.engine.fills import ExecutionConfig
from velocitas.strategies.base import Strategy

N = 40


class Scripted(Strategy):
    """Returns a pre-drawn order (or None) on each update of its coin."""

    def __init__(self, name: str, coin: str, orders: list[float]) -> None:
        super().__init__(name, coin)
        self.orders = orders
        self.i = 0

    def reset(self) -> None:
        super().reset()
        self.i = 0

    def execute(self, market_data):
        q = self.orders[self.i]
        self.i += 1
        if q == 0.0:
            return None
        return ("BUY", q) if q > 0 else ("SELL", -q)


order_lists = st.lists(
    st.sampled_from([0.0, 0.0, 0.0, 0.5, 1.0, 2.0, -0.5, -1.0, -3.0]), min_size=N, max_size=N
)
prices = st.lists(st.integers(min_value=50, max_value=150), min_size=N, max_size=N)


def _dataset(btc, eth) -> Dataset:
    ts = np.arange(N, dtype=np.int64) * 1_000
    return Dataset(
        (
            CoinSeries("BTC", ts, np.array(btc, dtype=np.float64), np.ones(N)),
            CoinSeries("ETH", ts + 500, np.array(eth, dtype=np.float64), np.ones(N)),
        )
    )


@settings(max_examples=120, deadline=None)
@given(st.lists(order_lists, min_size=3, max_size=3), prices, prices, st.booleans(), st.booleans())
def test_portfolio_equals_the_sum_of_its_accounts(orders, btc, eth, allow_short, close_fill):
    strategies = [
        Scripted("A", "BTC", orders[0]),
        Scripted("B", "BTC", orders[1]),
        Scripted("C", "ETH", orders[2]),
    ]
    config = ExecutionConfig(
        capital=500.0, fee_bps=25.0, allow_short=allow_short, fill="close" if close_fill else "next"
    )
    result = run_backtest(strategies, _dataset(btc, eth), config)
    accounts = result.accounts
    # realised P&L sums over keys to the global figure
    assert result.totals["realized_pnl"] == sum(a.ledger.realized_pnl for a in accounts)
    # the portfolio, marked on its own merged stream, ends where the accounts do
    expected = sum(a.metrics.total_pnl for a in accounts)
    assert math.isclose(result.portfolio.total_pnl, expected, rel_tol=1e-9, abs_tol=1e-7)
    for a in accounts:
        fills = a.fills
        # position equals the signed sum of fills
        assert math.isclose(a.ledger.position, fills["qty"].sum(), abs_tol=1e-9)
        # cash + position value = equity; total P&L = realised + unrealised
        assert math.isclose(
            a.ledger.cash + a.ledger.position * a.ledger.last_price, a.ledger.equity, abs_tol=1e-9
        )
        assert math.isclose(a.metrics.total_pnl, a.ledger.total_pnl, rel_tol=1e-9, abs_tol=1e-7)
        # no fill leaves cash negative (and no short position) when shorting is off
        assert (fills["cash_after"] >= 0).all()
        if not allow_short:
            assert (fills["position_after"] >= 0).all()
