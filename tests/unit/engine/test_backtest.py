"""The backtest runner: paths agree, batches don't matter, the fill model does what it says."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from velocitas.core.errors import ConfigError
from velocitas.core.models import CoinSeries, Dataset, MarketData
from velocitas.data.synthetic import generate
from velocitas.engine.backtest import run_backtest, strategy_ids
from velocitas.engine.fills import ExecutionConfig
from velocitas.strategies.base import Strategy
from velocitas.strategies.registry import BUILTINS, create_strategy

# Small windows so that every built-in trades often on a few thousand ticks.
FAST_PARAMS = {
    "SMA_Crossover": {"fast_period": 3, "slow_period": 8},
    "Momentum": {"lookback": 5, "momentum_threshold": 0.0005},
    "MeanReversion": {"period": 10, "deviation_threshold": 1.0},
    "RSI": {"period": 5, "lower_bound": 40.0, "upper_bound": 60.0},
    "BollingerBands": {"period": 10, "std_dev": 1.0},
    "MACD": {"fast": 3, "slow": 8, "signal": 3},
}


def _series(n: int = 3_000, seed: int = 7, coins=("BTC",)) -> Dataset:
    return generate(n, coins, seed=seed, interval_ms=1_000).dataset


def _builtin(name: str, coin: str = "BTC", **extra):
    return create_strategy(name, coin=coin, **FAST_PARAMS[name], **extra)


class PerTick(Strategy):
    """Runs a built-in through the Python per-tick path (``execute`` per update)."""

    def __init__(self, inner: Strategy) -> None:
        super().__init__(inner.name, inner.coin)
        self.inner = inner

    def reset(self) -> None:
        super().reset()
        self.inner.reset()

    def execute(self, market_data: MarketData):
        self.inner.position = self.position
        self.inner.allow_short = self.allow_short
        return self.inner.execute(market_data)


def _same_fills(a, b) -> None:
    assert a.fills.keys() == b.fills.keys()
    for key in a.fills:
        np.testing.assert_array_equal(a.fills[key], b.fills[key], err_msg=key)


@pytest.mark.parametrize("name", list(BUILTINS))
@pytest.mark.parametrize("fill", ["next", "close"])
@pytest.mark.parametrize("allow_short", [False, True])
def test_builtin_batch_path_equals_per_tick_path(name, fill, allow_short):
    data = _series()
    config = ExecutionConfig(fill=fill, allow_short=allow_short, capital=1e7)
    batch = run_backtest([_builtin(name)], data, config).accounts[0]
    per_tick = run_backtest([PerTick(_builtin(name))], data, config).accounts[0]
    assert batch.ledger.fills > 5, "the scenario should trade"
    _same_fills(batch, per_tick)
    assert batch.metrics == per_tick.metrics


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=900), min_size=1, max_size=8))
def test_results_do_not_depend_on_how_the_data_is_batched(cuts):
    data = _series(2_000, coins=("BTC", "ETH"))
    config = ExecutionConfig(latency_ms=1_500)
    make = lambda: [_builtin("SMA_Crossover"), _builtin("RSI", "ETH"), _builtin("MACD")]  # noqa: E731
    whole = run_backtest(make(), data, config)
    bounds = sorted({0, *np.cumsum(cuts).clip(max=2_000).tolist(), 2_000})
    batches = [
        Dataset(tuple(s.slice(a, b) for s in data.series)) for a, b in itertools.pairwise(bounds)
    ]
    chunked = run_backtest(make(), batches, config)
    for a, b in zip(whole.accounts, chunked.accounts, strict=True):
        _same_fills(a, b)
        assert a.metrics == b.metrics
    assert whole.portfolio == chunked.portfolio


@pytest.mark.parametrize("name", list(BUILTINS))
def test_no_look_ahead_fills_up_to_t_ignore_later_prices(name):
    data = _series(1_500, seed=3)
    cut = 900
    truncated = Dataset((data.series[0].slice(0, cut),))
    config = ExecutionConfig(fill="close", capital=1e7)
    full = run_backtest([_builtin(name)], data, config).accounts[0]
    part = run_backtest([_builtin(name)], truncated, config).accounts[0]
    keep = full.fills["index"] < cut
    for key in part.fills:
        np.testing.assert_array_equal(full.fills[key][keep], part.fills[key], err_msg=key)


def _flat_series(prices, start_ms=0, step_ms=1_000) -> Dataset:
    n = len(prices)
    return Dataset(
        (
            CoinSeries(
                "BTC",
                np.arange(n, dtype=np.int64) * step_ms + start_ms,
                np.asarray(prices, dtype=np.float64),
                np.ones(n),
            ),
        )
    )


class BuyAt(Strategy):
    """Buys 1 on the given update numbers, sells 1 on others (test double)."""

    def __init__(self, buys=(), sells=()) -> None:
        super().__init__("BuyAt", "BTC")
        self.buys, self.sells = set(buys), set(sells)
        self.seen = 0

    def reset(self) -> None:
        super().reset()
        self.seen = 0

    def execute(self, market_data):
        i = self.seen
        self.seen += 1
        if i in self.buys:
            return ("BUY", 1.0)
        if i in self.sells:
            return ("SELL", 1.0)
        return None


def test_next_fill_uses_the_following_update_price_with_slippage_and_fee():
    data = _flat_series([100.0, 101.0, 102.0, 103.0])
    config = ExecutionConfig(slippage_bps=10.0, fee_bps=20.0, capital=1_000.0)
    result = run_backtest([BuyAt(buys=[0], sells=[2])], data, config).accounts[0]
    trades = result.trades()
    assert [t["side"] for t in trades] == ["BUY", "SELL"]
    assert trades[0]["price"] == pytest.approx(101.0 * 1.001)
    assert trades[1]["price"] == pytest.approx(103.0 * 0.999)
    assert trades[0]["fee"] == pytest.approx(101.0 * 1.001 * 0.002)
    assert [t["timestamp"] for t in trades] == [1_000, 3_000]


def test_close_fill_uses_the_signal_update_price():
    data = _flat_series([100.0, 101.0, 102.0])
    config = ExecutionConfig(fill="close", fee_bps=0.0, capital=1_000.0)
    result = run_backtest([BuyAt(buys=[0])], data, config).accounts[0]
    assert result.trades()[0]["price"] == 100.0
    assert result.metrics.total_pnl == pytest.approx(2.0)


def test_latency_delays_the_fill_to_the_first_update_after_it():
    data = _flat_series([100.0, 101.0, 102.0, 103.0, 104.0], step_ms=400)
    config = ExecutionConfig(latency_ms=1_000, fee_bps=0.0, capital=1_000.0)
    result = run_backtest([BuyAt(buys=[0])], data, config).accounts[0]
    # signal at t=0 ms; updates at 400, 800, 1200: the first at or after 1000 ms is 1200
    assert result.trades()[0]["timestamp"] == 1_200
    assert result.trades()[0]["price"] == 103.0


def test_signal_while_an_order_is_pending_is_ignored_and_counted():
    data = _flat_series([100.0, 101.0, 102.0, 103.0], step_ms=100)
    config = ExecutionConfig(latency_ms=250, fee_bps=0.0, capital=1_000.0)
    result = run_backtest([BuyAt(buys=[0, 1])], data, config).accounts[0]
    assert result.ledger.fills == 1
    assert result.ledger.ignored_signals == 1


def test_total_pnl_is_realised_plus_unrealised_at_the_last_price():
    data = _flat_series([100.0, 110.0, 120.0, 90.0])
    config = ExecutionConfig(fill="close", fee_bps=10.0, capital=1_000.0)
    result = run_backtest([BuyAt(buys=[0, 1], sells=[2])], data, config).accounts[0]
    led = result.ledger
    assert led.position == 1.0
    assert led.unrealized_pnl == pytest.approx((90.0 - 105.0) * 1.0)
    assert result.metrics.total_pnl == pytest.approx(led.realized_pnl + led.unrealized_pnl)
    assert result.metrics.total_pnl == pytest.approx(led.equity - 1_000.0)


def test_portfolio_totals_are_the_sum_of_the_accounts():
    data = _series(3_000, coins=("BTC", "ETH"))
    strategies = [_builtin(n, coin) for n in BUILTINS for coin in ("BTC", "ETH")]
    result = run_backtest(strategies, data, ExecutionConfig(capital=1e7))
    assert result.totals["realized_pnl"] == sum(a.ledger.realized_pnl for a in result.accounts)
    assert result.totals["fees_paid"] == sum(a.ledger.fees_paid for a in result.accounts)
    expected = sum(a.metrics.total_pnl for a in result.accounts)
    assert result.portfolio.total_pnl == pytest.approx(expected, abs=1e-6)
    assert result.totals["total_pnl"] == pytest.approx(expected, abs=1e-6)


def test_single_account_portfolio_equals_the_account():
    data = _series(2_000)
    result = run_backtest([_builtin("MACD")], data, ExecutionConfig())
    account = result.accounts[0].metrics
    assert result.portfolio.total_pnl == account.total_pnl
    assert result.portfolio.sharpe == account.sharpe
    assert result.portfolio.max_drawdown == account.max_drawdown


def test_strategy_ids_are_coin_and_name_and_unique():
    strategies = [_builtin("RSI"), _builtin("RSI"), _builtin("RSI", "ETH")]
    assert strategy_ids(strategies) == ["BTC_RSI", "BTC_RSI_2", "ETH_RSI"]


def test_missing_coin_is_a_config_error():
    with pytest.raises(ConfigError, match="no market data for coin"):
        run_backtest([_builtin("RSI", "DOGE")], _series(100), ExecutionConfig())


class Exploding(Strategy):
    def execute(self, market_data):
        if market_data.timestamp >= 5_000:
            raise ZeroDivisionError("boom")
        return None


class Garbage(Strategy):
    def execute(self, market_data):
        return ("HOLD", 1.0)


@pytest.mark.parametrize("cls", [Exploding, Garbage])
def test_a_failing_custom_strategy_stops_alone_and_names_itself(cls):
    data = _flat_series([100.0 + i for i in range(20)])
    result = run_backtest(
        [cls("Bad", "BTC"), BuyAt(buys=[0])], data, ExecutionConfig(capital=1_000.0)
    )
    bad, good = result.accounts
    assert bad.error is not None
    assert "'Bad' on BTC" in bad.error
    assert good.error is None
    assert good.ledger.fills == 1
