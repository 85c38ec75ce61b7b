"""Velocitas: a crypto trading simulation engine.

Public API (imported lazily, so ``import velocitas`` stays cheap)::

    from velocitas import Strategy, MarketData, create_strategy, run_backtest, ExecutionConfig
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "MarketData": "velocitas.core.models",
    "CoinSeries": "velocitas.core.models",
    "Dataset": "velocitas.core.models",
    "Fill": "velocitas.core.models",
    "VelocitasError": "velocitas.core.errors",
    "ConfigError": "velocitas.core.errors",
    "DataError": "velocitas.core.errors",
    "DataFormatError": "velocitas.core.errors",
    "StrategyError": "velocitas.core.errors",
    "Strategy": "velocitas.strategies.base",
    "create_strategy": "velocitas.strategies.registry",
    "available_strategies": "velocitas.strategies.registry",
    "ExecutionConfig": "velocitas.engine.fills",
    "run_backtest": "velocitas.engine.backtest",
    "BacktestResult": "velocitas.engine.results",
    "load": "velocitas.data.loaders",
}

__all__ = [
    "BacktestResult",
    "CoinSeries",
    "ConfigError",
    "DataError",
    "DataFormatError",
    "Dataset",
    "ExecutionConfig",
    "Fill",
    "MarketData",
    "Strategy",
    "StrategyError",
    "VelocitasError",
    "available_strategies",
    "create_strategy",
    "load",
    "run_backtest",
]

if TYPE_CHECKING:
    from velocitas.core.errors import (
        ConfigError,
        DataError,
        DataFormatError,
        StrategyError,
        VelocitasError,
    )
    from velocitas.core.models import CoinSeries, Dataset, Fill, MarketData
    from velocitas.data.loaders import load
    from velocitas.engine.backtest import run_backtest
    from velocitas.engine.fills import ExecutionConfig
    from velocitas.engine.results import BacktestResult
    from velocitas.strategies.base import Strategy
    from velocitas.strategies.registry import available_strategies, create_strategy


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'velocitas' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
