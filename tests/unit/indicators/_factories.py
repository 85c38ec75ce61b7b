"""Small factories shared by the indicator tests: real closes, random prices, bit comparison."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import strategies as st

# /work/main/tests/unit/indicators/_factories.py -> parents[3] is the repository root; the
# market data lives in the sibling folder `shared` of the repository.
DATA_DIR = (Path(__file__).resolve().parents[3] / ".." / "shared" / "data").resolve()

requires_market_data = pytest.mark.skipif(
    not (DATA_DIR / "BTCUSDT-1m.csv.gz").is_file(),
    reason=f"real market data not found under {DATA_DIR} (the sibling folder shared/data)",
)

SYMBOLS = ("BTCUSDT", "ETHUSDT")
MINUTES_PER_YEAR = 365.0 * 24.0 * 60.0


@functools.lru_cache(maxsize=len(SYMBOLS))
def real_closes(symbol: str) -> np.ndarray:
    """1-minute closes of ``symbol`` from shared/data (read once per test session)."""
    frame = pd.read_csv(DATA_DIR / f"{symbol}-1m.csv.gz", usecols=["close"])
    closes = frame["close"].to_numpy(dtype=np.float64)
    closes.setflags(write=False)
    return closes


def random_walk_prices(n: int = 5_000, seed: int = 7) -> np.ndarray:
    """A positive geometric random walk around 100 with 1 % steps."""
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))


def same_bits(actual: np.ndarray, expected: np.ndarray) -> bool:
    """Exact equality, NaN equal to NaN."""
    return bool(np.array_equal(actual, expected, equal_nan=True))


def assert_matches_talib(actual: np.ndarray, expected: np.ndarray, *, scale: float) -> None:
    """Same NaN (warm-up) positions, then equal within 1e-9 relative.

    ``scale`` is the typical magnitude of the output; values that can be 0 get an absolute
    tolerance of 1e-12 * scale.
    """
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-12 * scale)


# Positive price series for the no-look-ahead properties.
price_lists = st.lists(
    st.floats(min_value=1.0, max_value=1e6, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=200,
)
