"""Technical indicators: streaming classes, batch functions and numba state/step pairs.

Every indicator has three forms that give bit-identical results, all equal to TA-Lib 0.8:

* ``x_init(params) -> state`` and ``x_update(state, value)``, an O(1) numba step over a float64
  state array (parameters included), callable from other numba kernels;
* a batch function over a float64 array (NaN during warm-up, same length as the input);
* a streaming class with ``update(value)``, ``value`` and ``is_ready``.
"""

from velocitas.indicators.momentum import (
    MACD,
    ROC,
    RSI,
    Momentum,
    macd,
    macd_init,
    macd_update,
    mom_init,
    mom_update,
    momentum,
    roc,
    roc_init,
    roc_update,
    rsi,
    rsi_init,
    rsi_update,
)
from velocitas.indicators.moving_average import (
    EMA,
    SMA,
    ema,
    ema_init,
    ema_update,
    sma,
    sma_init,
    sma_update,
)
from velocitas.indicators.volatility import (
    BollingerBands,
    RealizedVolatility,
    StdDev,
    bbands_init,
    bbands_update,
    bollinger_bands,
    realized_vol_init,
    realized_vol_update,
    realized_volatility,
    stddev,
    stddev_init,
    stddev_update,
)

__all__ = [
    "EMA",
    "MACD",
    "ROC",
    "RSI",
    "SMA",
    "BollingerBands",
    "Momentum",
    "RealizedVolatility",
    "StdDev",
    "bbands_init",
    "bbands_update",
    "bollinger_bands",
    "ema",
    "ema_init",
    "ema_update",
    "macd",
    "macd_init",
    "macd_update",
    "mom_init",
    "mom_update",
    "momentum",
    "realized_vol_init",
    "realized_vol_update",
    "realized_volatility",
    "roc",
    "roc_init",
    "roc_update",
    "rsi",
    "rsi_init",
    "rsi_update",
    "sma",
    "sma_init",
    "sma_update",
    "stddev",
    "stddev_init",
    "stddev_update",
]
