"""Strategies by name: build one from a name and parameters, list their schemas."""

from __future__ import annotations

from typing import Any

from velocitas.core.errors import ConfigError
from velocitas.strategies.base import BuiltinStrategy
from velocitas.strategies.bollinger_bands import BollingerBands
from velocitas.strategies.macd import MACD
from velocitas.strategies.mean_reversion import MeanReversion
from velocitas.strategies.momentum import Momentum
from velocitas.strategies.rsi import RSI
from velocitas.strategies.sma_crossover import SMA_Crossover

BUILTINS: dict[str, type[BuiltinStrategy]] = {
    cls.registry_name: cls
    for cls in (SMA_Crossover, Momentum, MeanReversion, RSI, BollingerBands, MACD)
}


def strategy_class(name: str) -> type[BuiltinStrategy]:
    """The built-in registered as ``name`` (exact, case-sensitive)."""
    try:
        return BUILTINS[name]
    except KeyError:
        raise ConfigError(
            f"unknown strategy {name!r}; expected one of {', '.join(BUILTINS)}"
        ) from None


def create_strategy(name: str, coin: str = "BTC", **params: Any) -> BuiltinStrategy:
    """Build a registered strategy, e.g. ``create_strategy("SMA_Crossover", coin="BTC",
    fast_period=5)``. Raises ConfigError on an unknown name or invalid parameters."""
    return strategy_class(name)(coin=coin, **params)


def available_strategies() -> list[dict[str, Any]]:
    """Every registered strategy with its parameter schema and signal rule."""
    return [
        {
            "name": name,
            "description": (cls.__doc__ or "").strip(),
            "parameters": cls.schema(),
        }
        for name, cls in BUILTINS.items()
    ]
