"""Market data: CSV loaders (four formats), a synthetic generator and the packaged samples."""

from velocitas.data.loaders import (
    coin_from_filename,
    detect_format,
    iter_chunks,
    load,
    load_binance_klines,
    load_ohlcv,
    load_ticks,
    load_trades,
)
from velocitas.data.samples import sample_paths
from velocitas.data.synthetic import SyntheticData, generate, iter_synthetic

__all__ = [
    "SyntheticData",
    "coin_from_filename",
    "detect_format",
    "generate",
    "iter_chunks",
    "iter_synthetic",
    "load",
    "load_binance_klines",
    "load_ohlcv",
    "load_ticks",
    "load_trades",
    "sample_paths",
]
