"""Tests of velocitas.indicators.volatility: STDDEV, Bollinger Bands, realised volatility."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from velocitas.core.errors import ConfigError
from velocitas.indicators import (
    BollingerBands,
    RealizedVolatility,
    StdDev,
    bbands_init,
    bbands_update,
    bollinger_bands,
    realized_vol_init,
    realized_vol_update,
    realized_volatility,
    sma_init,
    sma_update,
    stddev,
    stddev_init,
    stddev_update,
)

from ._factories import (
    MINUTES_PER_YEAR,
    SYMBOLS,
    assert_matches_talib,
    price_lists,
    random_walk_prices,
    real_closes,
    requires_market_data,
    same_bits,
)


def _talib_realized_vol(prices: np.ndarray, period: int, log_returns: np.ndarray) -> np.ndarray:
    """TA-Lib's STDDEV of the log returns, annualised, aligned on the price index."""
    annualised = talib.STDDEV(log_returns, period) * math.sqrt(MINUTES_PER_YEAR)
    return np.concatenate([[np.nan], annualised])


# --- agreement with TA-Lib -------------------------------------------------------------------


@pytest.mark.slow
@requires_market_data
@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize("period", [20, 5])
def test_stddev_matches_talib_on_real_closes(symbol: str, period: int) -> None:
    closes = real_closes(symbol)

    result = stddev(closes, period)

    assert_matches_talib(result, talib.STDDEV(closes, period), scale=closes.mean())


@pytest.mark.slow
@requires_market_data
@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize(("period", "std_dev"), [(20, 2.0), (10, 1.5)])
def test_bollinger_bands_match_talib_on_real_closes(
    symbol: str, period: int, std_dev: float
) -> None:
    closes = real_closes(symbol)

    result = bollinger_bands(closes, period, std_dev)

    expected = talib.BBANDS(closes, period, std_dev, std_dev)
    for actual, wanted in zip(result, expected, strict=True):
        assert_matches_talib(actual, wanted, scale=closes.mean())


@pytest.mark.slow
@requires_market_data
@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize("period", [20, 60])
def test_realized_volatility_matches_talib_stddev_of_log_returns(symbol: str, period: int) -> None:
    closes = real_closes(symbol)

    result = realized_volatility(closes, period, MINUTES_PER_YEAR)

    expected = _talib_realized_vol(closes, period, np.log(closes[1:] / closes[:-1]))
    assert_matches_talib(result, expected, scale=1.0)


@pytest.mark.slow
@requires_market_data
def test_realized_volatility_is_close_to_talib_on_differenced_log_prices() -> None:
    # np.diff(np.log(p)) subtracts two numbers near 11.5, so each return carries an absolute
    # error of ~1e-15 and a calm 20-minute window ~1e-8 relative: hence 1e-7 here, while the
    # ln(p_t / p_{t-1}) returns above agree to 1e-9.
    closes = real_closes("BTCUSDT")

    result = realized_volatility(closes, 20, MINUTES_PER_YEAR)

    expected = _talib_realized_vol(closes, 20, np.diff(np.log(closes)))
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_allclose(result, expected, rtol=1e-7, atol=1e-12)


# --- numerical behaviour ---------------------------------------------------------------------


def test_stddev_of_identical_values_is_exactly_zero() -> None:
    flat = np.full(40, 43_000.12)

    result = stddev(flat, 20)

    assert (result[19:] == 0.0).all()
    assert same_bits(result, talib.STDDEV(flat, 20))


def test_bollinger_bands_collapse_onto_the_mean_on_flat_prices() -> None:
    upper, middle, lower = bollinger_bands(np.full(25, 100.25), 20, 2.0)

    assert (upper[19:] == middle[19:]).all()
    assert (lower[19:] == middle[19:]).all()


def test_stddev_keeps_its_precision_at_a_high_price_level() -> None:
    # Raw sums of squares would lose ~10 digits here; the shifted sums must not.
    rng = np.random.default_rng(3)
    prices = 3.1e10 + rng.integers(0, 100, 2_000) * 0.01
    windows = np.lib.stride_tricks.sliding_window_view(prices, 20)

    result = stddev(prices, 20)

    np.testing.assert_allclose(result[19:], windows.std(axis=1), rtol=1e-9)


def test_realized_volatility_needs_period_plus_one_prices() -> None:
    prices = np.array([100.0, 101.0, 100.0, 101.0])

    result = realized_volatility(prices, 2, 1.0)

    returns = np.log(prices[1:] / prices[:-1])
    assert np.isnan(result[:2]).all()
    np.testing.assert_allclose(result[2:], [returns[:2].std(), returns[1:].std()], rtol=1e-12)


def test_realized_volatility_is_nan_after_a_non_positive_price() -> None:
    result = realized_volatility(np.array([1.0, 2.0, 0.0, 2.0, 3.0]), 2, 1.0)

    assert np.isnan(result[2:]).all()


# --- the three forms agree -------------------------------------------------------------------


@njit
def _mean_reversion_like_kernel(values: np.ndarray, state: np.ndarray) -> np.ndarray:
    # Three indicator states end to end, as the strategies lay them out.
    split1 = int(state[0])
    split2 = int(state[1])
    out = np.empty((values.shape[0], 5))
    for i in range(values.shape[0]):
        out[i, 0] = sma_update(state[2:split1], values[i])
        out[i, 1] = stddev_update(state[split1:split2], values[i])
        out[i, 2], _middle, out[i, 3] = bbands_update(state[split2:], values[i])
        out[i, 4] = _middle
    return out


def test_state_and_step_called_from_a_numba_kernel_equal_the_batch() -> None:
    prices = random_walk_prices()
    parts = [sma_init(20), stddev_init(20), bbands_init(20, 2.0)]
    split1 = 2 + len(parts[0])
    split2 = split1 + len(parts[1])
    state = np.concatenate([np.array([split1, split2], dtype=np.float64), *parts])

    out = _mean_reversion_like_kernel(prices, state)

    upper, middle, lower = bollinger_bands(prices, 20, 2.0)
    assert same_bits(out[:, 1], stddev(prices, 20))
    assert same_bits(out[:, 2], upper)
    assert same_bits(out[:, 3], lower)
    assert same_bits(out[:, 4], middle)
    assert same_bits(out[:, 0], middle)  # the middle band is the SMA, bit for bit


@njit
def _realized_vol_kernel(values: np.ndarray, state: np.ndarray) -> np.ndarray:
    out = np.empty(values.shape[0])
    for i in range(values.shape[0]):
        out[i] = realized_vol_update(state, values[i])
    return out


def test_realized_vol_step_from_a_numba_kernel_equals_the_batch() -> None:
    prices = random_walk_prices()

    out = _realized_vol_kernel(prices, realized_vol_init(30, 365.0))

    assert same_bits(out, realized_volatility(prices, 30, 365.0))


SCALAR_FORMS: list[tuple[Callable[[], object], Callable[[np.ndarray], np.ndarray]]] = [
    (lambda: StdDev(20), lambda p: stddev(p, 20)),
    (
        lambda: RealizedVolatility(20, MINUTES_PER_YEAR),
        lambda p: realized_volatility(p, 20, MINUTES_PER_YEAR),
    ),
]


def _assert_streams_equal_batches(prices: np.ndarray) -> None:
    for make_stream, batch in SCALAR_FORMS:
        stream = make_stream()
        streamed = np.array([stream.update(x) for x in prices])  # type: ignore[attr-defined]
        assert same_bits(streamed, batch(prices))
    bands = BollingerBands(20, 2.0)
    streamed_bands = np.array([bands.update(x) for x in prices])
    for column, batch_output in zip(
        streamed_bands.T, bollinger_bands(prices, 20, 2.0), strict=True
    ):
        assert same_bits(column, batch_output)


def test_streaming_classes_equal_batches_on_random_prices() -> None:
    _assert_streams_equal_batches(random_walk_prices())


@pytest.mark.slow
@requires_market_data
def test_streaming_classes_equal_batches_on_real_btc_closes() -> None:
    _assert_streams_equal_batches(real_closes("BTCUSDT"))


def test_streaming_classes_report_readiness_and_last_value() -> None:
    std, bands, vol = StdDev(2), BollingerBands(2, 1.0), RealizedVolatility(2, 1.0)
    assert np.isnan(bands.value).all()
    for x in (1.0, 2.0):
        std.update(x)
        bands.update(x)
        vol.update(x)
    assert std.is_ready
    assert bands.is_ready
    assert not vol.is_ready

    assert vol.update(1.0) == vol.value
    assert vol.is_ready
    assert std.value == 0.5
    assert bands.value == (2.0, 1.5, 1.0)


# --- no look-ahead ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    prices=price_lists,
    period=st.integers(2, 30),
    std_dev=st.floats(0.0, 4.0),
    data=st.data(),
)
def test_volatility_indicators_have_no_look_ahead(
    prices: list[float], period: int, std_dev: float, data: st.DataObject
) -> None:
    series = np.array(prices)
    t = data.draw(st.integers(0, len(series) - 1), label="t")

    def outputs(values: np.ndarray) -> list[np.ndarray]:
        return [
            stddev(values, period),
            realized_volatility(values, period, 252.0),
            *bollinger_bands(values, period, std_dev),
        ]

    for part, whole in zip(outputs(series[: t + 1]), outputs(series), strict=True):
        assert same_bits(part, whole[: t + 1])


# --- argument validation ---------------------------------------------------------------------


@pytest.mark.parametrize("init", [stddev_init, lambda p: bbands_init(p, 2.0)])
def test_window_period_below_two_raises_config_error(init: Callable[[int], object]) -> None:
    with pytest.raises(ConfigError, match="period must be >= 2, was 1"):
        init(1)


@pytest.mark.parametrize(
    ("std_dev", "message"),
    [
        (math.nan, "std_dev must be a finite number, was nan"),
        (math.inf, "std_dev must be a finite number, was inf"),
        (-1.0, r"std_dev must be >= 0.0, was -1.0"),
        ("2", "std_dev must be a finite number, was '2'"),
    ],
)
def test_invalid_std_dev_raises_config_error(std_dev: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BollingerBands(20, std_dev)  # type: ignore[arg-type]


@pytest.mark.parametrize("periods_per_year", [0.0, -365.0, math.nan, math.inf])
def test_invalid_periods_per_year_raises_config_error(periods_per_year: float) -> None:
    with pytest.raises(ConfigError, match="periods_per_year must be"):
        realized_volatility(np.ones(5), 2, periods_per_year)


def test_realized_volatility_period_below_two_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="period must be >= 2, was 1"):
        RealizedVolatility(1, 365.0)
