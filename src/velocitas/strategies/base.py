"""The strategy contract: ``execute(market_data) -> ("BUY"|"SELL", qty) | None``.

A user strategy subclasses :class:`Strategy` and implements ``execute``. The engine calls it once
per market update of the strategy's coin, in time order, and keeps ``position`` and ``cash``
up to date after every fill, so ``execute`` can read them. Orders fill at the next update's
price by default (see ``engine/fills.py``); a signal returned while an earlier order is still
pending is ignored and counted.

Built-in strategies subclass :class:`BuiltinStrategy`: their decision rule is a compiled
``step`` function over a small state array, so the same rule runs per tick (``execute``) and over
whole arrays (the engine's batch path) with identical results.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from velocitas.core.models import FloatArray, IntArray, MarketData
from velocitas.strategies.params import ParamSpec, resolve_params

Signal = tuple[str, float] | None


class Strategy(ABC):
    """Base class of every strategy.

    Args:
        name: the strategy's name (the built-ins use their registry name).
        coin: the coin it trades, e.g. ``"BTC"`` (upper-cased).
        **params: strategy parameters, kept in ``self.params``.

    Attributes maintained by the engine (read them, don't write them):
        position: filled position in the base asset (negative when short).
        cash: cash of this strategy's account in the quote asset.
        allow_short: whether the engine lets this strategy sell more than it holds.
    """

    def __init__(self, name: str, coin: str, **params: Any) -> None:
        self.name = name
        self.coin = coin.upper()
        self.params: dict[str, Any] = dict(params)
        self.position = 0.0
        self.cash = 0.0
        self.allow_short = False

    @abstractmethod
    def execute(self, market_data: MarketData) -> Signal:
        """Decide on one market update: ``("BUY", qty)``, ``("SELL", qty)`` or ``None``."""

    def reset(self) -> None:
        """Forget all market history (called before a new run). Override if you keep state."""
        self.position = 0.0
        self.cash = 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(coin={self.coin!r}, params={self.params!r})"


class BuiltinStrategy(Strategy):
    """A strategy whose rule is a compiled step function.

    Subclasses set ``kind`` (their code in ``strategies/_dispatch.py``), ``step`` (the compiled
    ``step(params, float_state, int_state, price, position, allow_short) -> signed qty``),
    ``param_specs`` and implement
    ``_validate`` (cross-parameter checks), ``_pack`` (parameters -> float64 array) and
    ``_init_state`` (fresh float and integer state arrays).
    """

    kind: ClassVar[int]
    step: ClassVar[Callable[..., float]]
    param_specs: ClassVar[tuple[ParamSpec, ...]]
    registry_name: ClassVar[str]

    def __init__(self, name: str | None = None, coin: str = "BTC", **params: Any) -> None:
        resolved = resolve_params(self.registry_name, self.param_specs, params)
        self._validate(resolved)
        super().__init__(name or self.registry_name, coin, **resolved)
        self.packed_params: FloatArray = self._pack(resolved)
        self.float_state, self.int_state = self._init_state(resolved)

    @classmethod
    def _validate(cls, params: dict[str, Any]) -> None:
        """Cross-parameter checks; raise ConfigError. Single values are checked by the specs."""

    @classmethod
    @abstractmethod
    def _pack(cls, params: dict[str, Any]) -> FloatArray:
        """Parameters as the float64 array the step function reads."""

    @classmethod
    @abstractmethod
    def _init_state(cls, params: dict[str, Any]) -> tuple[FloatArray, IntArray]:
        """Fresh (float64, int64) state arrays: no market history seen."""

    def reset(self) -> None:
        super().reset()
        self.float_state, self.int_state = self._init_state(self.params)

    def execute(self, market_data: MarketData) -> Signal:
        qty = self.step(
            self.packed_params,
            self.float_state,
            self.int_state,
            market_data.price,
            self.position,
            self.allow_short,
        )
        if qty > 0.0:
            return ("BUY", qty)
        if qty < 0.0:
            return ("SELL", -qty)
        return None

    @classmethod
    def schema(cls) -> list[dict[str, Any]]:
        return [s.to_dict() for s in cls.param_specs]


def concat_states(parts: Sequence[np.ndarray]) -> FloatArray:
    """Lay several indicator states end to end in one float64 array."""
    return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])
