"""A fused multiply-add usable inside numba kernels: ``fma(a, b, c) == a * b + c`` rounded once.

TA-Lib (0.8) computes its EMA step as ``fma(x - prev, k, prev)``; the two-rounding form
``(x - prev) * k + prev`` drifts from it by an ulp now and then, which the MACD line (a small
difference of two large EMAs) turns into relative errors of ~1e-8. numba has no ``math.fma`` on
Python 3.11, so this emits LLVM's ``llvm.fma.f64``: one FMA instruction where the CPU has one,
otherwise a call to the C library's correctly rounded ``fma``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from numba import types
from numba.extending import intrinsic


@intrinsic
def _fma_intrinsic(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    """Return ``a * b + c`` with a single rounding (float64)."""
    if not all(isinstance(t, types.Float | types.Integer) for t in (a, b, c)):
        return None
    sig = types.float64(a, b, c)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        x, y, z = (
            context.cast(builder, value, from_type, types.float64)
            for value, from_type in zip(args, signature.args, strict=True)
        )
        return builder.fma(x, y, z)

    return sig, codegen


# What numba code sees: fma(a, b, c) -> float (the intrinsic object itself, typed for mypy).
fma = cast(Callable[[float, float, float], float], _fma_intrinsic)
