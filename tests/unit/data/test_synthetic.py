"""The synthetic generator: deterministic, labelled regimes, correlated coins, chunkable."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from velocitas.core.errors import ConfigError
from velocitas.data.synthetic import REGIME_NAMES, SyntheticData, generate, iter_synthetic


def _arrays(data: SyntheticData) -> dict[str, np.ndarray]:
    out = {"regimes": data.regimes}
    for s in data.dataset.series:
        out |= {f"{s.coin}.ts": s.timestamp_ms, f"{s.coin}.p": s.price, f"{s.coin}.v": s.volume}
    return out


def _log_returns(data: SyntheticData, coin: str) -> np.ndarray:
    return np.diff(np.log(data.dataset[coin].price))


def test_same_seed_same_data_other_seed_other_data():
    a = _arrays(generate(5_000, ["BTC", "ETH"], seed=11))
    b = _arrays(generate(5_000, ["BTC", "ETH"], seed=11))
    c = _arrays(generate(5_000, ["BTC", "ETH"], seed=12))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["BTC.p"], c["BTC.p"])


def test_shapes_timestamps_and_labels():
    data = generate(3_000, ["btc", "Eth"], interval_ms=60_000, start_ms=1_000)
    assert data.dataset.coins == ["BTC", "ETH"]
    assert data.regimes.dtype == np.int8
    assert data.regimes.shape == (3_000,)
    assert set(np.unique(data.regimes).tolist()) <= {0, 1, 2, 3}
    assert data.regime_names == REGIME_NAMES
    for s in data.dataset.series:
        assert len(s) == 3_000
        assert not s.is_bars
        assert s.timestamp_ms.dtype == np.int64
        np.testing.assert_array_equal(s.timestamp_ms, 1_000 + 60_000 * np.arange(3_000))
        assert np.all(s.volume > 0)
    assert data.dataset["BTC"].price[0] == 30_000.0  # the first tick is the start price


def test_segments_tile_the_ticks_with_lengths_around_the_mean():
    data = generate(100_000, seed=3, mean_regime_length=1_000)
    segments = data.segments()
    assert segments[0][0] == 0
    assert segments[-1][1] == 100_000
    for (_, stop, name), (start, _, next_name) in itertools.pairwise(segments):
        assert stop == start
        assert name != next_name
    inner = [stop - start for start, stop, _ in segments[:-1]]
    assert min(inner) >= 500
    assert max(inner) <= 1_500
    assert {name for *_, name in segments} == set(REGIME_NAMES)


def test_prices_sit_on_the_tick_grid_and_stay_positive():
    data = generate(
        50_000, ["BTC", "XRP"], seed=5, tick_size=0.05, noise=20.0, start_prices={"XRP": 0.2}
    )
    for s in data.dataset.series:
        ticks = s.price / 0.05
        np.testing.assert_allclose(ticks, np.round(ticks), atol=1e-6)
        assert np.all(s.price > 0)
    assert data.dataset["XRP"].price.min() == 0.05  # clamped at one tick, not zero


@pytest.mark.parametrize("rho", [0.6, 0.0, -0.4])
def test_log_returns_are_correlated_as_requested(rho):
    data = generate(200_000, ["BTC", "ETH"], seed=1, correlation=rho)
    r = np.corrcoef(_log_returns(data, "BTC"), _log_returns(data, "ETH"))[0, 1]
    assert r == pytest.approx(rho, abs=0.02)


def test_regimes_are_distinguishable_by_drift_and_volatility():
    data = generate(400_000, seed=2)
    r = _log_returns(data, "BTC")
    label = data.regimes[1:]
    mean = {name: r[label == code].mean() for code, name in enumerate(REGIME_NAMES)}
    std = {name: r[label == code].std() for code, name in enumerate(REGIME_NAMES)}
    assert mean["uptrend"] > 2e-5 > -2e-5 > mean["downtrend"]
    assert std["volatile"] > 2 * std["uptrend"] > 2 * 1.5 * std["sideways"]


@pytest.mark.parametrize("chunk_ticks", [1, 999, 4_096, 10_000])
def test_chunked_generation_equals_one_shot(chunk_ticks):
    n = 10_000 if chunk_ticks > 1 else 1_500
    kwargs = {"coins": ["BTC", "ETH", "SOL"], "seed": 9, "mean_regime_length": 300}
    whole = _arrays(generate(n, **kwargs))
    chunks = [_arrays(c) for c in iter_synthetic(n, chunk_ticks=chunk_ticks, **kwargs)]
    assert sum(len(c["regimes"]) for c in chunks) == n
    for key, expected in whole.items():
        np.testing.assert_array_equal(np.concatenate([c[key] for c in chunks]), expected)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=3_000),
    chunk_ticks=st.integers(min_value=1, max_value=700),
    mean_regime_length=st.integers(min_value=1, max_value=200),
)
def test_any_chunking_reproduces_one_shot_generation(n, chunk_ticks, mean_regime_length):
    kwargs = {"coins": ["BTC", "ETH"], "seed": 4, "mean_regime_length": mean_regime_length}
    whole = _arrays(generate(n, **kwargs))
    chunks = [_arrays(c) for c in iter_synthetic(n, chunk_ticks=chunk_ticks, **kwargs)]
    for key, expected in whole.items():
        np.testing.assert_array_equal(np.concatenate([c[key] for c in chunks]), expected)


def test_zero_ticks_gives_empty_series():
    data = generate(0, ["BTC"])
    assert len(data.dataset) == 0
    assert data.segments() == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_ticks": -1},
        {"coins": []},
        {"coins": ["BTC", "btc"]},
        {"coins": ["BTC", "ETH"], "correlation": 1.0},
        {"coins": ["BTC", "ETH", "SOL"], "correlation": -0.5},
        {"mean_regime_length": 0},
        {"noise": -1.0},
        {"tick_size": 0.0},
        {"interval_ms": 0},
        {"start_prices": {"BTC": -5.0}},
    ],
)
def test_bad_arguments_raise_config_error(kwargs):
    args = {"n_ticks": 10} | kwargs
    with pytest.raises(ConfigError):
        generate(**args)


@pytest.mark.slow
def test_ten_million_ticks_stream_in_chunks():
    total = 0
    last_price = None
    for chunk in iter_synthetic(10_000_000, chunk_ticks=2_500_000, seed=1):
        total += len(chunk.dataset)
        last_price = chunk.dataset["BTC"].price[-1]
    assert total == 10_000_000
    assert last_price > 0
