"""The one way Velocitas compiles its hot kernels.

``kernel`` is ``numba.njit`` with the on-disk cache on (so a new process loads compiled code
instead of compiling it) and numba's reference counting off. The kernels never allocate; they
work on arrays their callers own. With reference counting on, every call that passes an array
to another compiled function pays atomic increments and decrements, measured at ~20 ns per
call in the per-tick loop, which is 4x the cost of an RSI update itself.
Use plain ``numba.njit(cache=True)`` for a function that allocates (np.empty, np.searchsorted).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from numba import njit

F = TypeVar("F", bound=Callable[..., Any])


def kernel(func: F) -> F:
    """Compile ``func`` in nopython mode, cached, without reference counting."""
    options: dict[str, Any] = {"cache": True, "_nrt": False}  # _nrt: see the module docstring
    compiled: F = njit(**options)(func)
    return compiled
