"""Tests of velocitas.indicators.momentum: RSI, MACD, MOM and ROC."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from velocitas.core.errors import ConfigError
from velocitas.indicators import (
    MACD,
    ROC,
    RSI,
    Momentum,
    ema,
    macd,
    macd_init,
    macd_update,
    mom_init,
    momentum,
    roc,
    roc_init,
    rsi,
    rsi_init,
    rsi_update,
)

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
@pytest.mark.parametrize("period", [14, 6])
def test_rsi_matches_talib_on_real_closes(symbol: str, period: int) -> None:
    closes = real_closes(symbol)

    result = rsi(closes, period)

    assert_matches_talib(result, talib.RSI(closes, period), scale=100.0)


@pytest.mark.slow
@requires_market_data
@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5)])
def test_macd_matches_talib_on_real_closes(symbol: str, fast: int, slow: int, signal: int) -> None:
    closes = real_closes(symbol)

    result = macd(closes, fast, slow, signal)

    expected = talib.MACD(closes, fast, slow, signal)
    for actual, wanted in zip(result, expected, strict=True):
        assert_matches_talib(actual, wanted, scale=closes.mean())


@pytest.mark.slow
@requires_market_data
@pytest.mark.parametrize("symbol", SYMBOLS)
def test_momentum_matches_talib_mom_on_real_closes(symbol: str) -> None:
    closes = real_closes(symbol)

    assert_matches_talib(momentum(closes, 10), talib.MOM(closes, 10), scale=closes.mean())


@pytest.mark.slow
@requires_market_data
@pytest.mark.parametrize("symbol", SYMBOLS)
def test_roc_matches_talib_on_real_closes(symbol: str) -> None:
    closes = real_closes(symbol)

    assert_matches_talib(roc(closes, 10), talib.ROC(closes, 10), scale=100.0)


def test_macd_with_signal_period_one_matches_talib() -> None:
    prices = random_walk_prices()

    for actual, wanted in zip(macd(prices, 3, 10, 1), talib.MACD(prices, 3, 10, 1), strict=True):
        assert_matches_talib(actual, wanted, scale=100.0)


# --- TA-Lib's conventions, pinned ------------------------------------------------------------


def test_macd_seeds_the_fast_ema_on_the_window_ending_with_the_slow_seed() -> None:
    prices = random_walk_prices(300)
    fast, slow = 5, 35

    line, _signal, _hist = macd(prices, fast, slow, 1)

    # Not ema(prices, fast): the fast EMA starts at index slow - fast, as in TA-Lib.
    late_fast = np.concatenate([np.full(slow - fast, np.nan), ema(prices[slow - fast :], fast)])
    assert same_bits(line[slow - 1 :], (late_fast - ema(prices, slow))[slow - 1 :])
    assert not same_bits(line[slow - 1 :], (ema(prices, fast) - ema(prices, slow))[slow - 1 :])


def test_macd_first_output_is_at_slow_plus_signal_minus_two() -> None:
    line, signal, hist = macd(random_walk_prices(100), 12, 26, 9)

    for output in (line, signal, hist):
        assert np.isnan(output[:33]).all()
        assert not np.isnan(output[33:]).any()


def test_rsi_of_flat_prices_is_zero_as_in_talib() -> None:
    flat = np.full(30, 42_000.5)

    result = rsi(flat, 14)

    assert same_bits(result, talib.RSI(flat, 14))
    assert (result[14:] == 0.0).all()


def test_rsi_is_100_when_prices_only_rise_and_0_when_they_only_fall() -> None:
    rising = np.arange(1.0, 31.0)

    assert (rsi(rising, 14)[14:] == 100.0).all()
    assert (rsi(rising[::-1].copy(), 14)[14:] == 0.0).all()


def test_roc_answers_zero_after_a_zero_price_as_talib_does() -> None:
    prices = np.array([0.0, 1.0, 2.0, 3.0])

    result = roc(prices, 1)

    assert same_bits(result, np.array([np.nan, 0.0, 100.0, 50.0]))
    assert same_bits(result, talib.ROC(prices, 1))


def test_momentum_is_the_price_difference_over_the_period() -> None:
    result = momentum(np.array([1.0, 2.0, 4.0, 8.0]), 2)

    assert same_bits(result, np.array([np.nan, np.nan, 3.0, 6.0]))


# --- the three forms agree -------------------------------------------------------------------


@njit
def _rsi_and_macd_kernel(values: np.ndarray, state: np.ndarray, split: int) -> np.ndarray:
    out = np.empty((values.shape[0], 4))
    for i in range(values.shape[0]):
        out[i, 0] = rsi_update(state[:split], values[i])
        out[i, 1], out[i, 2], out[i, 3] = macd_update(state[split:], values[i])
    return out


def test_state_and_step_called_from_a_numba_kernel_equal_the_batch() -> None:
    prices = random_walk_prices()
    rsi_state, macd_state = rsi_init(14), macd_init(12, 26, 9)
    state = np.concatenate([rsi_state, macd_state])

    out = _rsi_and_macd_kernel(prices, state, len(rsi_state))

    assert same_bits(out[:, 0], rsi(prices, 14))
    for column, batch_output in zip(out[:, 1:].T, macd(prices, 12, 26, 9), strict=True):
        assert same_bits(column, batch_output)


def _stream_scalar(indicator: object, prices: np.ndarray) -> np.ndarray:
    return np.array([indicator.update(x) for x in prices])  # type: ignore[attr-defined]


SCALAR_FORMS: list[tuple[Callable[[], object], Callable[[np.ndarray], np.ndarray]]] = [
    (lambda: RSI(14), lambda p: rsi(p, 14)),
    (lambda: Momentum(10), lambda p: momentum(p, 10)),
    (lambda: ROC(10), lambda p: roc(p, 10)),
]


@pytest.mark.parametrize(("make_stream", "batch"), SCALAR_FORMS, ids=["rsi", "mom", "roc"])
def test_streaming_class_equals_batch_on_random_prices(
    make_stream: Callable[[], object], batch: Callable[[np.ndarray], np.ndarray]
) -> None:
    prices = random_walk_prices()

    assert same_bits(_stream_scalar(make_stream(), prices), batch(prices))


@pytest.mark.slow
@requires_market_data
@pytest.mark.parametrize(("make_stream", "batch"), SCALAR_FORMS, ids=["rsi", "mom", "roc"])
def test_streaming_class_equals_batch_on_real_btc_closes(
    make_stream: Callable[[], object], batch: Callable[[np.ndarray], np.ndarray]
) -> None:
    closes = real_closes("BTCUSDT")

    assert same_bits(_stream_scalar(make_stream(), closes), batch(closes))


def _assert_streaming_macd_equals_batch(prices: np.ndarray) -> None:
    stream = MACD(12, 26, 9)

    streamed = np.array([stream.update(x) for x in prices])

    for column, batch_output in zip(streamed.T, macd(prices, 12, 26, 9), strict=True):
        assert same_bits(column, batch_output)


def test_streaming_macd_equals_batch_on_random_prices() -> None:
    _assert_streaming_macd_equals_batch(random_walk_prices())


@pytest.mark.slow
@requires_market_data
def test_streaming_macd_equals_batch_on_real_btc_closes() -> None:
    _assert_streaming_macd_equals_batch(real_closes("BTCUSDT"))


def test_streaming_classes_report_readiness_and_last_value() -> None:
    rsi_stream, mom_stream, macd_stream = RSI(2), Momentum(2), MACD(2, 3, 2)
    assert np.isnan(macd_stream.value).all()
    for x in (1.0, 2.0):
        rsi_stream.update(x)
        mom_stream.update(x)
        macd_stream.update(x)
        macd_stream.update(x)
    assert not rsi_stream.is_ready
    assert not mom_stream.is_ready
    assert macd_stream.is_ready  # 4 prices >= slow + signal - 1

    assert rsi_stream.update(4.0) == rsi_stream.value == 100.0
    assert mom_stream.update(4.0) == mom_stream.value == 3.0
    assert rsi_stream.is_ready
    assert mom_stream.is_ready


# --- no look-ahead ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(prices=price_lists, period=st.integers(2, 30), data=st.data())
def test_rsi_momentum_and_roc_have_no_look_ahead(
    prices: list[float], period: int, data: st.DataObject
) -> None:
    series = np.array(prices)
    t = data.draw(st.integers(0, len(series) - 1), label="t")

    for batch in (rsi, momentum, roc):
        full = batch(series, period)
        truncated = batch(series[: t + 1], period)
        assert same_bits(truncated, full[: t + 1])


@settings(max_examples=60, deadline=None)
@given(
    prices=price_lists,
    fast=st.integers(2, 10),
    extra=st.integers(1, 20),
    signal=st.integers(1, 10),
    data=st.data(),
)
def test_macd_has_no_look_ahead(
    prices: list[float], fast: int, extra: int, signal: int, data: st.DataObject
) -> None:
    series = np.array(prices)
    t = data.draw(st.integers(0, len(series) - 1), label="t")

    full = macd(series, fast, fast + extra, signal)
    truncated = macd(series[: t + 1], fast, fast + extra, signal)

    for part, whole in zip(truncated, full, strict=True):
        assert same_bits(part, whole[: t + 1])


# --- argument validation ---------------------------------------------------------------------


def test_rsi_period_below_two_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="period must be >= 2, was 1"):
        rsi(np.ones(5), 1)


@pytest.mark.parametrize(("fast", "slow"), [(26, 12), (12, 12)])
def test_macd_fast_not_below_slow_raises_config_error(fast: int, slow: int) -> None:
    with pytest.raises(ConfigError, match=f"fast must be < slow, was fast={fast} slow={slow}"):
        macd_init(fast, slow, 9)


@pytest.mark.parametrize(
    ("fast", "slow", "signal", "message"),
    [
        (1, 26, 9, "fast must be >= 2, was 1"),
        (12, 26, 0, "signal must be >= 1, was 0"),
        (12, 26.0, 9, "slow must be an integer"),
    ],
)
def test_macd_invalid_periods_raise_config_error(
    fast: int, slow: int, signal: int, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        MACD(fast, slow, signal)


@pytest.mark.parametrize("init", [mom_init, roc_init])
def test_mom_and_roc_period_below_one_raises_config_error(init: Callable[[int], object]) -> None:
    with pytest.raises(ConfigError, match="period must be >= 1, was 0"):
        init(0)
