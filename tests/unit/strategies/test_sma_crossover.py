"""SMA_Crossover's exact comparison on the tick grid."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from velocitas.core.models import MarketData
from velocitas.strategies.registry import create_strategy
from velocitas.strategies.sma_crossover import compare_means, quantize


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=10**15),
    st.integers(min_value=1, max_value=1000),
    st.integers(min_value=0, max_value=10**15),
    st.integers(min_value=2, max_value=1000),
)
def test_compare_means_is_the_exact_sign_of_the_difference_of_averages(a, p, b, q):
    expected = (a * q > b * p) - (a * q < b * p)  # Python ints: exact
    assert compare_means(np.int64(a), np.int64(p), np.int64(b), np.int64(q)) == expected


def test_quantize_is_exact_for_prices_with_up_to_eight_decimals():
    assert quantize(116400.01) == 11640001000000
    assert quantize(0.00000123) == 123
    assert quantize(64123.45678901) == 6412345678901


def _feed(strategy, prices):
    out = []
    for i, p in enumerate(prices):
        signal = strategy.execute(MarketData("BTC", p, 1.0, i))
        if signal is not None:
            side, qty = signal
            strategy.position += qty if side == "BUY" else -qty
        out.append(signal)
    return out


def test_equal_averages_are_a_tie_not_a_cross():
    # fast(2) and slow(4): prices chosen so that the averages are exactly equal at step 3,
    # where float running sums could come out either way; only the later rise is a cross.
    s = create_strategy("SMA_Crossover", fast_period=2, slow_period=4, position_size=1.0)
    signals = _feed(s, [0.3, 0.1, 0.2, 0.2, 0.1, 0.1, 0.7])
    assert signals[:3] == [None, None, None]
    assert signals[3] is None  # fast (0.2) == slow (0.2): a tie, cmp 0
    assert signals[4] is None  # fast 0.15 < slow 0.15? (0.1+0.2+0.2+0.1)/4 = 0.15: tie again
    assert signals[5] is None  # fast 0.1 < slow 0.15: from a tie to below, flat: nothing to sell
    assert signals[6] == ("BUY", 1.0)  # fast 0.4 > slow 0.275: cross above from below


def test_buy_on_cross_above_when_flat_then_sell_whole_position_on_cross_below():
    s = create_strategy("SMA_Crossover", fast_period=2, slow_period=3, position_size=2.0)
    signals = _feed(s, [10.0, 10.0, 10.0, 11.0, 12.0, 9.0, 8.0])
    assert ("BUY", 2.0) in signals
    buy_at = signals.index(("BUY", 2.0))
    assert buy_at == 3
    assert signals[5] == ("SELL", 2.0)
