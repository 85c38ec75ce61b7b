"""Argument checks shared by the indicator modules (plain Python, run once per call)."""

from __future__ import annotations

import math

import numpy as np

from velocitas.core.errors import ConfigError
from velocitas.core.models import FloatArray


def check_period(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an int, or raise ConfigError unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name} must be an integer >= {minimum}, was {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, was {value}")
    return int(value)


def check_finite(name: str, value: object, *, minimum: float, inclusive: bool = True) -> float:
    """Return ``value`` as a float, or raise ConfigError.

    It must be a finite number >= ``minimum`` (> ``minimum`` when not ``inclusive``).
    """
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"{name} must be a finite number, was {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number, was {number}")
    if number < minimum or (not inclusive and number == minimum):
        relation = ">=" if inclusive else ">"
        raise ConfigError(f"{name} must be {relation} {minimum}, was {number}")
    return number


def as_series(values: object) -> FloatArray:
    """Return ``values`` as a contiguous 1-D float64 array, or raise ConfigError."""
    try:
        series = np.ascontiguousarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"values must be a 1-D sequence of numbers, was {type(values).__name__}"
        ) from e
    if series.ndim != 1:
        raise ConfigError(f"values must be a 1-D array, was {series.ndim}-D shape {series.shape}")
    return series
