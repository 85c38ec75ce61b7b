"""Decision logic: the Strategy contract, the six built-ins and their registry."""

from velocitas.strategies.base import BuiltinStrategy, Signal, Strategy
from velocitas.strategies.registry import (
    BUILTINS,
    available_strategies,
    create_strategy,
    strategy_class,
)

__all__ = [
    "BUILTINS",
    "BuiltinStrategy",
    "Signal",
    "Strategy",
    "available_strategies",
    "create_strategy",
    "strategy_class",
]
