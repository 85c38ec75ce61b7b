"""Every built-in follows its documented signal rule, computed independently with TA-Lib."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from velocitas.core.models import CoinSeries, Dataset, MarketData
from velocitas.engine.backtest import run_backtest
from velocitas.engine.fills import ExecutionConfig
from velocitas.strategies.registry import BUILTINS, create_strategy

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import talib


def _prices(n: int = 4_000, seed: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.004, n))), 2)


def _documented_conditions(name: str, params: dict, p: np.ndarray):
    """(enter_long, exit_long) per update, straight from each docstring's rule and TA-Lib."""
    prev = lambda a: np.concatenate([[np.nan], a[:-1]])  # noqa: E731
    if name == "Momentum":
        roc = talib.ROC(p, params["lookback"])
        thr = 100.0 * params["momentum_threshold"]
        return roc > thr, roc < -thr
    if name == "MeanReversion":
        mean, std = talib.SMA(p, params["period"]), talib.STDDEV(p, params["period"], 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(std > 0, (p - mean) / std, np.nan)
        return z < -params["deviation_threshold"], z >= 0.0
    if name == "RSI":
        rsi = talib.RSI(p, params["period"])
        return rsi < params["lower_bound"], rsi > params["upper_bound"]
    if name == "BollingerBands":
        k = params["std_dev"]
        upper, _mid, lower = talib.BBANDS(p, params["period"], k, k, 0)
        return p < lower, p > upper
    if name == "MACD":
        _m, _s, hist = talib.MACD(p, params["fast"], params["slow"], params["signal"])
        h0 = prev(hist)
        return (h0 <= 0) & (hist > 0), (h0 >= 0) & (hist < 0)
    raise AssertionError(name)


RULE_PARAMS = {
    "Momentum": {"lookback": 7, "momentum_threshold": 0.004},
    "MeanReversion": {"period": 12, "deviation_threshold": 1.5},
    "RSI": {"period": 9, "lower_bound": 35.0, "upper_bound": 65.0},
    "BollingerBands": {"period": 15, "std_dev": 1.5},
    "MACD": {"fast": 5, "slow": 13, "signal": 4},
}


@pytest.mark.parametrize("name", list(RULE_PARAMS))
def test_builtin_signals_follow_the_documented_rule(name):
    p = _prices()
    params = RULE_PARAMS[name]
    enter, leave = _documented_conditions(name, params, p)
    strategy = create_strategy(name, coin="BTC", **params)
    position = 0.0
    expected, got = [], []
    for i, price in enumerate(p.tolist()):
        want = None
        if position == 0.0 and enter[i]:
            want = ("BUY", 1.0)
        elif position > 0.0 and leave[i]:
            want = ("SELL", position)
        expected.append(want)
        strategy.position = position
        signal = strategy.execute(MarketData("BTC", price, 1.0, i))
        got.append(signal)
        if want is not None:
            position += 1.0 if want[0] == "BUY" else -position
    assert got == expected
    assert sum(s is not None for s in got) > 10


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(list(BUILTINS)),
    st.lists(st.integers(min_value=9_000, max_value=11_000), min_size=60, max_size=300),
    st.data(),
)
def test_no_builtin_signal_depends_on_later_prices(name, cents, data):
    """Fills up to update t are the same whether or not the series goes on after t."""
    prices = np.array(cents, dtype=np.float64) / 100.0
    t = data.draw(st.integers(min_value=1, max_value=len(prices) - 1))
    params = {
        "SMA_Crossover": {"fast_period": 3, "slow_period": 7},
        "Momentum": {"lookback": 3, "momentum_threshold": 0.001},
        "MeanReversion": {"period": 5, "deviation_threshold": 0.5},
        "RSI": {"period": 4, "lower_bound": 45.0, "upper_bound": 55.0},
        "BollingerBands": {"period": 5, "std_dev": 0.5},
        "MACD": {"fast": 2, "slow": 5, "signal": 2},
    }[name]

    def fills(n: int):
        series = CoinSeries(
            "BTC", np.arange(n, dtype=np.int64), prices[:n], np.ones(n, dtype=np.float64)
        )
        config = ExecutionConfig(fill="close", fee_bps=0.0, capital=1e9)
        account = run_backtest([create_strategy(name, **params)], Dataset((series,)), config)
        return account.accounts[0].fills

    full, truncated = fills(len(prices)), fills(t + 1)
    keep = full["index"] <= t
    for key in truncated:
        np.testing.assert_array_equal(full[key][keep], truncated[key], err_msg=key)
