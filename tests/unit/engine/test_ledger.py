"""Accounting invariants of the ledger and the fill rules, over random order sequences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from velocitas.analysis.metrics import T_COUNT, round_trip_init
from velocitas.engine.fills import ExecutionConfig, FillLog, execute_order
from velocitas.engine.ledger import (
    AVG_ENTRY,
    CASH,
    FEES,
    POSITION,
    REALIZED,
    REJECTED,
    LedgerSnapshot,
    apply_fill,
    ledger_init,
)

orders = st.lists(
    st.tuples(
        st.floats(min_value=-5.0, max_value=5.0, allow_nan=False).filter(lambda q: q != 0.0),
        st.floats(min_value=1.0, max_value=1000.0, allow_nan=False),
    ),
    min_size=1,
    max_size=60,
)


def _run(sequence, *, allow_short: bool, fee_bps: float = 10.0, capital: float = 5_000.0):
    cfg = ExecutionConfig(fee_bps=fee_bps, allow_short=allow_short, capital=capital).as_array()
    ledger = ledger_init(capital)
    trips = round_trip_init()
    log = FillLog()
    snapshots = []
    for i, (qty, price) in enumerate(sequence):
        log.reserve(1)
        log.count = execute_order(
            ledger, trips, cfg, qty, price, i, 1000 * i, log.index, log.ts, log.qty,
            log.price, log.fee, log.cash_after, log.position_after, log.count,
        )  # fmt: skip
        snapshots.append((ledger.copy(), price))
    return ledger, trips, log, snapshots


@settings(max_examples=300, deadline=None)
@given(orders, st.booleans())
def test_position_equals_signed_sum_of_fills(sequence, allow_short):
    ledger, _, log, _ = _run(sequence, allow_short=allow_short)
    filled = log.columns()["qty"]
    assert math.isclose(ledger[POSITION], filled.sum(), rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=300, deadline=None)
@given(orders, st.booleans())
def test_cash_plus_position_value_equals_equity_at_every_step(sequence, allow_short):
    _, _, _, snapshots = _run(sequence, allow_short=allow_short)
    for state, price in snapshots:
        snap = LedgerSnapshot.of(state, price)
        equity = state[CASH] + state[POSITION] * price
        assert math.isclose(snap.equity, equity, rel_tol=1e-12, abs_tol=1e-9)
        # equity - initial cash == realised (net of fees) + unrealised
        assert math.isclose(
            equity - 5_000.0, snap.realized_pnl + snap.unrealized_pnl, rel_tol=1e-9, abs_tol=1e-7
        )


@settings(max_examples=300, deadline=None)
@given(orders)
def test_no_fill_leaves_cash_negative_or_position_short_when_shorting_is_off(sequence):
    _, _, _, snapshots = _run(sequence, allow_short=False)
    for state, _price in snapshots:
        assert state[CASH] >= 0.0
        assert state[POSITION] >= 0.0


@settings(max_examples=200, deadline=None)
@given(orders, st.booleans())
def test_fees_are_the_sum_of_fill_fees(sequence, allow_short):
    ledger, _, log, _ = _run(sequence, allow_short=allow_short)
    assert math.isclose(ledger[FEES], log.columns()["fee"].sum(), rel_tol=1e-12, abs_tol=1e-12)


def test_ledger_round_trip_books_realised_pnl_net_of_both_fees():
    ledger, trips, _, _ = _run([(2.0, 100.0), (-2.0, 110.0)], allow_short=False, fee_bps=10.0)
    fees = 2 * 100 * 0.001 + 2 * 110 * 0.001
    assert ledger[POSITION] == 0.0
    assert ledger[AVG_ENTRY] == 0.0
    assert ledger[REALIZED] == pytest.approx(20.0 - fees)
    assert trips[T_COUNT] == 1.0


def test_ledger_sell_more_than_held_is_clipped_to_the_position_when_long_only():
    ledger, _, log, _ = _run([(1.0, 100.0), (-3.0, 100.0)], allow_short=False, fee_bps=0.0)
    assert log.columns()["qty"].tolist() == [1.0, -1.0]
    assert ledger[POSITION] == 0.0


def test_ledger_sell_while_flat_is_rejected_when_long_only():
    ledger, _, log, _ = _run([(-1.0, 100.0)], allow_short=False)
    assert log.count == 0
    assert ledger[REJECTED] == 1.0


def test_ledger_buy_beyond_cash_is_rejected():
    ledger, _, log, _ = _run([(100.0, 100.0)], allow_short=False, capital=5_000.0)
    assert log.count == 0
    assert ledger[REJECTED] == 1.0
    assert ledger[CASH] == 5_000.0


def test_ledger_short_then_cover_realises_the_price_drop():
    ledger, _, _, _ = _run([(-1.0, 100.0), (1.0, 90.0)], allow_short=True, fee_bps=0.0)
    assert ledger[POSITION] == 0.0
    assert ledger[REALIZED] == pytest.approx(10.0)
    assert ledger[CASH] == pytest.approx(5_010.0)


def test_ledger_flip_through_zero_opens_new_position_at_fill_price():
    ledger = ledger_init(10_000.0)
    trips = round_trip_init()
    apply_fill(ledger, trips, 1.0, 100.0, 0.0)
    apply_fill(ledger, trips, -3.0, 120.0, 0.0)
    assert ledger[POSITION] == -2.0
    assert ledger[AVG_ENTRY] == 120.0
    assert ledger[REALIZED] == pytest.approx(20.0)
    assert trips[T_COUNT] == 1.0


def test_execution_config_rejects_bad_values():
    from velocitas.core.errors import ConfigError

    with pytest.raises(ConfigError, match="fee_bps"):
        ExecutionConfig(fee_bps=-1.0)
    with pytest.raises(ConfigError, match="fill"):
        ExecutionConfig(fill="open")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="capital"):
        ExecutionConfig(capital=float("nan"))


def test_fill_log_grows_and_keeps_contents():
    log = FillLog(capacity=2)
    log.count = 2
    log.qty[:2] = [1.0, 2.0]
    log.reserve(10)
    assert log.capacity >= 12
    assert log.columns()["qty"].tolist() == [1.0, 2.0]
    assert np.all(log.qty[2:] == 0.0)
