"""The sample data files shipped inside the package (a few days of 1-minute klines)."""

from __future__ import annotations

from pathlib import Path

_SAMPLES_DIR = Path(__file__).parent / "samples"


def sample_paths() -> list[Path]:
    """The packaged sample files, sorted by name (BTCUSDT and ETHUSDT 1-minute bars)."""
    return sorted(p for p in _SAMPLES_DIR.glob("*.csv*") if p.is_file())
