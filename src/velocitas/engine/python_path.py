"""The decision path of a Python strategy: one ``execute(market_data)`` call per update.

Kept lean because it is the per-tick cost a user pays for writing a strategy in plain Python:
one tuple allocation for the ``MarketData``, one method call, and compiled accounting only when
an order fills. It books fills with the very same ``execute_order`` as the built-in kernel, so
a built-in run through this path produces exactly the fills of the batch path.
"""

from __future__ import annotations

import math

from velocitas.core.errors import StrategyError
from velocitas.core.models import CoinSeries, FloatArray, MarketData
from velocitas.engine.fills import (
    C_FILL_CLOSE,
    C_LATENCY_MS,
    P_NOT_BEFORE,
    P_QTY,
    FillLog,
    execute_order,
)
from velocitas.engine.ledger import CASH, IGNORED, POSITION
from velocitas.strategies.base import Strategy

_new_market_data = tuple.__new__


def _order_quantity(strategy: Strategy, signal: object, timestamp_ms: int) -> float:
    """Validate what ``execute`` returned and turn it into a signed quantity."""
    side: object
    raw_qty: object
    qty: float
    try:
        side, raw_qty = signal  # type: ignore[misc]
        qty = float(raw_qty)  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        raise StrategyError(
            strategy.name,
            strategy.coin,
            timestamp_ms,
            ValueError(f"execute returned {signal!r}; expected ('BUY'|'SELL', qty) or None"),
        ) from e
    if side not in ("BUY", "SELL") or not (qty > 0.0 and math.isfinite(qty)):
        raise StrategyError(
            strategy.name,
            strategy.coin,
            timestamp_ms,
            ValueError(f"execute returned {signal!r}; expected side BUY or SELL and qty > 0"),
        )
    return qty if side == "BUY" else -qty


def run_python(
    strategy: Strategy,
    series: CoinSeries,
    ledger: FloatArray,
    trips: FloatArray,
    pending: FloatArray,
    cfg: FloatArray,
    index_offset: int,
    log: FillLog,
) -> None:
    """Run ``strategy`` over one batch of updates of its coin, appending fills to ``log``.

    Raises:
        StrategyError: ``execute`` raised or returned something that is not a signal.
    """
    fill_close = cfg[C_FILL_CLOSE] != 0.0
    latency = int(cfg[C_LATENCY_MS])
    execute = strategy.execute
    coin = strategy.coin
    ts_list = series.timestamp_ms.tolist()
    price_list = series.price.tolist()
    volume_list = series.volume.tolist()
    if series.open is not None and series.high is not None and series.low is not None:
        bars = zip(series.open.tolist(), series.high.tolist(), series.low.tolist(), strict=True)
    else:
        bars = None
    pending_qty = float(pending[P_QTY])
    not_before = int(pending[P_NOT_BEFORE])
    i = -1
    for t, p, v in zip(ts_list, price_list, volume_list, strict=True):
        i += 1
        if pending_qty != 0.0 and t >= not_before:
            _book(strategy, ledger, trips, cfg, pending_qty, p, index_offset + i, t, log)
            pending_qty = 0.0
        if bars is None:
            md = _new_market_data(MarketData, (coin, p, v, t, None, None, None, None))
        else:
            o, h, lo = next(bars)
            md = _new_market_data(MarketData, (coin, p, v, t, o, h, lo, p))
        try:
            signal = execute(md)
        except Exception as e:
            raise StrategyError(strategy.name, coin, t, e) from e
        if signal is None:
            continue
        qty = _order_quantity(strategy, signal, t)
        if fill_close:
            _book(strategy, ledger, trips, cfg, qty, p, index_offset + i, t, log)
        elif pending_qty != 0.0:
            ledger[IGNORED] += 1.0
        else:
            pending_qty = qty
            not_before = t + latency
    pending[P_QTY] = pending_qty
    pending[P_NOT_BEFORE] = not_before


def _book(
    strategy: Strategy,
    ledger: FloatArray,
    trips: FloatArray,
    cfg: FloatArray,
    qty: float,
    price: float,
    tick_index: int,
    timestamp_ms: int,
    log: FillLog,
) -> None:
    log.reserve(1)
    log.count = execute_order(
        ledger, trips, cfg, qty, price, tick_index, timestamp_ms,
        log.index, log.ts, log.qty, log.price, log.fee, log.cash_after, log.position_after,
        log.count,
    )  # fmt: skip
    strategy.position = float(ledger[POSITION])
    strategy.cash = float(ledger[CASH])
