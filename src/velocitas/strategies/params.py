"""Parameter schemas: what a strategy accepts, validated once at construction.

The schema is data (``ParamSpec``) so the API can validate requests and the dashboard can build
its forms from the same source the constructor uses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from velocitas.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One parameter of a strategy.

    ``kind`` is ``"int"``, ``"float"`` or ``"bool"``. ``minimum``/``maximum`` are inclusive.
    """

    name: str
    kind: str
    default: int | float | bool
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind,
            "default": self.default,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "description": self.description,
        }

    def coerce(self, strategy: str, value: Any) -> int | float | bool:
        """Check ``value`` against this spec and return it in the spec's type."""
        where = f"{strategy}.{self.name}"
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
                return value.lower() in ("true", "1")
            raise ConfigError(f"{where} must be a bool, was {value!r}")
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, was {value!r}")
        if isinstance(value, str):
            value = _parse_number(where, value)
        if self.kind == "int":
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int):
                raise ConfigError(f"{where} must be an integer, was {value!r}")
            number: int | float = value
        else:
            if not isinstance(value, int | float):
                raise ConfigError(f"{where} must be a number, was {value!r}")
            number = float(value)
            if not math.isfinite(number):
                raise ConfigError(f"{where} must be finite, was {value!r}")
        if self.minimum is not None and number < self.minimum:
            raise ConfigError(f"{where} must be >= {self.minimum:g}, was {number!r}")
        if self.maximum is not None and number > self.maximum:
            raise ConfigError(f"{where} must be <= {self.maximum:g}, was {number!r}")
        return number


def _parse_number(where: str, text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{where} must be a number, was {text!r}") from None


def resolve_params(
    strategy: str, specs: Sequence[ParamSpec], given: Mapping[str, Any]
) -> dict[str, int | float | bool]:
    """Merge ``given`` over the defaults, rejecting unknown names and bad values."""
    known = {s.name for s in specs}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(
            f"{strategy} has no parameter {', '.join(map(repr, unknown))}; "
            f"expected one of {', '.join(sorted(known))}"
        )
    return {s.name: s.coerce(strategy, given.get(s.name, s.default)) for s in specs}
