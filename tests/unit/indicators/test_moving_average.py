"""Tests of velocitas.indicators.moving_average: SMA and EMA."""

from __future__ import annotations

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from velocitas.core.errors import ConfigError
from velocitas.indicators import EMA, SMA, ema, ema_init, ema_update, sma, sma_init, sma_update

from ._factories import (
    SYMBOLS,
    assert_matches_talib,
    price_lists,
    random_walk_prices,
    real_closes,
    requires_market_data,
    same_bits,
)

# --- agreement with TA-Lib -------------------------------------------------------------------


@pytest.mark.slow
@requires_market_data
@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize("period", [10, 30, 200])
def test_sma_matches_talib_on_real_closes(symbol: str, period: int) -> None:
    closes = real_closes(symbol)

    result = sma(closes, period)

    assert_matches_talib(result, talib.SMA(closes, period), scale=closes.mean())


@pytest.mark.slow
@requires_market_data
@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize("period", [12, 26])
def test_ema_matches_talib_on_real_closes(symbol: str, period: int) -> None:
    closes = real_closes(symbol)

    result = ema(closes, period)

    assert_matches_talib(result, talib.EMA(closes, period), scale=closes.mean())


def test_ema_matches_talib_on_a_random_walk_for_an_awkward_period() -> None:
    # k = 2/36 is where a two-rounding EMA step drifts from TA-Lib's fused one.
    prices = random_walk_prices()

    assert_matches_talib(ema(prices, 35), talib.EMA(prices, 35), scale=100.0)


def test_ema_with_period_one_copies_the_input() -> None:
    prices = np.array([1.0, 3.0000000001, 0.1, 1e-17, 7.0])

    assert same_bits(ema(prices, 1), prices)


# --- small worked examples -------------------------------------------------------------------


def test_sma_is_nan_during_warm_up_then_the_window_mean() -> None:
    result = sma(np.array([1.0, 2.0, 3.0, 4.0]), 2)

    assert same_bits(result, np.array([np.nan, 1.5, 2.5, 3.5]))


def test_ema_is_seeded_with_the_sma_of_the_first_period_values() -> None:
    result = ema(np.array([1.0, 2.0, 3.0, 4.0]), 3)

    # seed (1+2+3)/3 = 2, then 2 + (4-2) * 2/4 = 3
    assert same_bits(result, np.array([np.nan, np.nan, 2.0, 3.0]))


def test_batch_of_an_empty_series_is_empty() -> None:
    assert sma(np.array([]), 3).shape == (0,)
    assert ema(np.array([]), 3).shape == (0,)


# --- the three forms agree -------------------------------------------------------------------


@njit
def _sma_then_ema_kernel(values: np.ndarray, state: np.ndarray, split: int) -> np.ndarray:
    # As a strategy does it: two indicator states laid end to end in one array.
    out = np.empty((values.shape[0], 2))
    for i in range(values.shape[0]):
        out[i, 0] = sma_update(state[:split], values[i])
        out[i, 1] = ema_update(state[split:], values[i])
    return out


def test_state_and_step_called_from_a_numba_kernel_equal_the_batch() -> None:
    prices = random_walk_prices()
    sma_state, ema_state = sma_init(20), ema_init(20)
    state = np.concatenate([sma_state, ema_state])

    out = _sma_then_ema_kernel(prices, state, len(sma_state))

    assert same_bits(out[:, 0], sma(prices, 20))
    assert same_bits(out[:, 1], ema(prices, 20))


@pytest.mark.parametrize(("indicator", "batch"), [(SMA, sma), (EMA, ema)])
def test_streaming_class_equals_batch_on_random_prices(indicator: type, batch: object) -> None:
    prices = random_walk_prices()
    stream = indicator(50)

    streamed = np.array([stream.update(x) for x in prices])

    assert same_bits(streamed, batch(prices, 50))  # type: ignore[operator]


@pytest.mark.slow
@requires_market_data
@pytest.mark.parametrize(("indicator", "batch"), [(SMA, sma), (EMA, ema)])
def test_streaming_class_equals_batch_on_real_btc_closes(indicator: type, batch: object) -> None:
    closes = real_closes("BTCUSDT")
    stream = indicator(30)

    streamed = np.array([stream.update(x) for x in closes])

    assert same_bits(streamed, batch(closes, 30))  # type: ignore[operator]


@pytest.mark.parametrize("indicator", [SMA, EMA])
def test_streaming_class_reports_readiness_and_last_value(indicator: type) -> None:
    stream = indicator(3)
    assert not stream.is_ready
    assert np.isnan(stream.value)

    stream.update(1.0)
    stream.update(2.0)
    assert not stream.is_ready
    last = stream.update(3.0)

    assert stream.is_ready
    assert stream.value == last == 2.0


# --- no look-ahead ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(prices=price_lists, period=st.integers(1, 30), data=st.data())
def test_sma_and_ema_have_no_look_ahead(
    prices: list[float], period: int, data: st.DataObject
) -> None:
    series = np.array(prices)
    t = data.draw(st.integers(0, len(series) - 1), label="t")

    for batch in (sma, ema):
        full = batch(series, period)
        truncated = batch(series[: t + 1], period)
        assert same_bits(truncated, full[: t + 1])


# --- argument validation ---------------------------------------------------------------------


@pytest.mark.parametrize("init", [sma_init, ema_init])
@pytest.mark.parametrize("period", [0, -3])
def test_period_below_one_raises_config_error(init: object, period: int) -> None:
    with pytest.raises(ConfigError, match=f"period must be >= 1, was {period}"):
        init(period)  # type: ignore[operator]


@pytest.mark.parametrize("period", [2.5, "10", True, None])
def test_non_integer_period_raises_config_error(period: object) -> None:
    with pytest.raises(ConfigError, match="period must be an integer"):
        sma(np.ones(5), period)  # type: ignore[arg-type]


def test_two_dimensional_values_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="values must be a 1-D array, was 2-D"):
        ema(np.ones((3, 3)), 2)


def test_non_numeric_values_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="values must be a 1-D sequence of numbers"):
        sma(["a", "b"], 2)  # type: ignore[arg-type]
