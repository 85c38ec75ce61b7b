"""The registry: names, schemas, and clear errors for bad parameters."""

from __future__ import annotations

import pytest

from velocitas.core.errors import ConfigError
from velocitas.strategies.registry import (
    BUILTINS,
    available_strategies,
    create_strategy,
    strategy_class,
)

EXPECTED_PARAMS = {
    "SMA_Crossover": ["fast_period", "slow_period", "position_size"],
    "Momentum": ["lookback", "momentum_threshold", "position_size"],
    "MeanReversion": ["period", "deviation_threshold", "position_size"],
    "RSI": ["period", "lower_bound", "upper_bound", "position_size"],
    "BollingerBands": ["period", "std_dev", "position_size"],
    "MACD": ["fast", "slow", "signal", "position_size"],
}


def test_registry_holds_the_six_builtins_by_their_exact_names_and_parameters():
    assert list(BUILTINS) == list(EXPECTED_PARAMS)
    for entry in available_strategies():
        assert [p["name"] for p in entry["parameters"]] == EXPECTED_PARAMS[entry["name"]]
        assert "Signal rule" in entry["description"] or "rule" in entry["description"]


def test_create_strategy_builds_by_name_with_defaults_filled_in():
    s = create_strategy("SMA_Crossover", coin="btc", fast_period=5)
    assert s.name == "SMA_Crossover"
    assert s.coin == "BTC"
    assert s.params == {"fast_period": 5, "slow_period": 30, "position_size": 1.0}


def test_string_parameters_are_coerced_like_the_cli_passes_them():
    s = create_strategy("RSI", period="10", lower_bound="25.5")
    assert s.params["period"] == 10
    assert s.params["lower_bound"] == 25.5


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("Nope", {}, "unknown strategy 'Nope'"),
        ("SMA_Crossover", {"fast": 3}, "has no parameter 'fast'"),
        ("SMA_Crossover", {"fast_period": 30, "slow_period": 10}, "fast_period must be < slow"),
        ("SMA_Crossover", {"fast_period": 2.5}, "must be an integer"),
        ("SMA_Crossover", {"fast_period": "abc"}, "must be a number"),
        ("RSI", {"period": 1}, "RSI.period must be >= 2"),
        ("RSI", {"lower_bound": 80, "upper_bound": 20}, "lower_bound must be < upper_bound"),
        ("MACD", {"fast": 26, "slow": 12}, "fast must be < slow"),
        ("MeanReversion", {"deviation_threshold": float("inf")}, "must be finite"),
        ("BollingerBands", {"position_size": 0}, "position_size must be >="),
        ("Momentum", {"lookback": True}, "must be a number"),
    ],
)
def test_invalid_parameters_raise_config_error_naming_the_problem(name, params, message):
    with pytest.raises(ConfigError, match=message):
        create_strategy(name, coin="BTC", **params)


def test_strategy_class_lookup_is_exact():
    assert strategy_class("MACD").registry_name == "MACD"
    with pytest.raises(ConfigError):
        strategy_class("macd")
