"""Sequencer: exactly once and in order per symbol, gaps filled from a fake REST."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from velocitas.core.errors import DataError
from velocitas.data.binance._sequencer import Sequencer
from velocitas.data.binance.rest import Trade

CODES = {"BTCUSDT": 0, "ETHUSDT": 1}


def trade(trade_id: int) -> Trade:
    return Trade(trade_id, 1_700_000_000_000 + trade_id, 100.0 + trade_id, 1.0)


class FakeRest:
    """Pages of the trades 1..``last`` (minus ``missing``), ``page`` at a time; records calls."""

    def __init__(self, last: int, page: int = 3, missing: frozenset[int] = frozenset()) -> None:
        self.last = last
        self.page = page
        self.missing = missing
        self.calls: list[tuple[str, int, int | None]] = []
        self.fail_with: Exception | None = None

    async def fetch(self, symbol: str, first: int, until: int | None) -> tuple[list[Trade], bool]:
        self.calls.append((symbol, first, until))
        await asyncio.sleep(0)
        if self.fail_with is not None:
            raise self.fail_with
        ids = [i for i in range(first, self.last + 1) if i not in self.missing][: self.page]
        return [trade(i) for i in ids], len(ids) == self.page


def sequenced(
    rest: FakeRest, scenario: Callable[[Sequencer[Trade]], None]
) -> tuple[list[tuple[int, int]], Sequencer[Trade]]:
    """Run ``scenario`` in an event loop, wait for the fills; (code, id) delivered, in order."""
    delivered: list[tuple[int, int]] = []

    async def run() -> Sequencer[Trade]:
        seq: Sequencer[Trade] = Sequencer(
            CODES, step=1, deliver=lambda c, t: delivered.append((c, t.trade_id)), fetch=rest.fetch
        )
        scenario(seq)
        await seq.idle()
        return seq

    return delivered, asyncio.run(run())


def feed(seq: Sequencer[Trade], symbol: str, ids: list[int]) -> None:
    for i in ids:
        seq.on_item(symbol, trade(i))


def test_contiguous_items_pass_through_without_rest():
    rest = FakeRest(last=10)
    out, seq = sequenced(rest, lambda s: feed(s, "BTCUSDT", [1, 2, 3]))
    assert out == [(0, 1), (0, 2), (0, 3)]
    assert rest.calls == []
    assert seq.gaps_filled == 0


def test_repeated_and_older_items_are_dropped_and_counted():
    out, seq = sequenced(FakeRest(last=10), lambda s: feed(s, "BTCUSDT", [1, 2, 2, 1, 3, 3]))
    assert [i for _, i in out] == [1, 2, 3]
    assert seq.duplicates == 3


def test_a_jump_is_filled_by_rest_before_the_held_items_in_order():
    rest = FakeRest(last=20, page=3)
    out, seq = sequenced(rest, lambda s: feed(s, "BTCUSDT", [1, 2, 10, 11, 12]))
    assert [i for _, i in out] == list(range(1, 13))
    assert rest.calls == [("BTCUSDT", 3, 10), ("BTCUSDT", 6, 10), ("BTCUSDT", 9, 10)]
    assert seq.gaps_filled == 1
    assert seq.backfilled == 7


def test_symbols_are_sequenced_independently():
    def scenario(seq: Sequencer[Trade]) -> None:
        feed(seq, "BTCUSDT", [1, 2])
        feed(seq, "ETHUSDT", [7, 8])
        feed(seq, "BTCUSDT", [5])  # BTC jumps: only BTC waits for its fill
        feed(seq, "ETHUSDT", [9])

    out, _ = sequenced(FakeRest(last=10, page=10), scenario)
    assert [i for c, i in out if c == 0] == [1, 2, 3, 4, 5]
    assert [i for c, i in out if c == 1] == [7, 8, 9]
    assert out.index((1, 9)) < out.index((0, 3))  # ETH did not wait for BTC's REST call


def test_after_a_reconnect_everything_since_the_last_item_is_fetched_then_the_held_ones():
    rest = FakeRest(last=9, page=4)

    def scenario(seq: Sequencer[Trade]) -> None:
        feed(seq, "BTCUSDT", [1, 2])
        seq.on_reconnected()  # trades 3..9 happened while we were away
        feed(seq, "BTCUSDT", [8, 9, 10])  # the new connection starts at 8

    out, seq = sequenced(rest, scenario)
    assert [i for _, i in out] == list(range(1, 11))
    assert rest.calls[0] == ("BTCUSDT", 3, None)
    assert seq.duplicates == 2  # 8 and 9 came by REST first
    assert seq.gaps_filled == 1


def test_reconnect_before_any_item_fetches_nothing():
    rest = FakeRest(last=9)
    out, _ = sequenced(rest, lambda s: (s.on_reconnected(), feed(s, "BTCUSDT", [4, 5])))
    assert [i for _, i in out] == [4, 5]
    assert rest.calls == []


def test_keys_rest_cannot_supply_are_skipped_once_with_a_warning(caplog):
    rest = FakeRest(last=20, page=10, missing=frozenset({4, 5}))
    with caplog.at_level(logging.WARNING):
        out, seq = sequenced(rest, lambda s: feed(s, "BTCUSDT", [1, 2, 3, 6, 7]))
    assert [i for _, i in out] == [1, 2, 3, 6, 7]
    assert seq.skipped == 2
    assert "4..5 are not available" in caplog.text


@pytest.mark.parametrize("error", [DataError("HTTP 400"), RuntimeError("a bug")])
def test_a_failed_fill_is_logged_and_the_stream_goes_on(error, caplog):
    rest = FakeRest(last=20)
    rest.fail_with = error
    with caplog.at_level(logging.ERROR):
        out, seq = sequenced(rest, lambda s: feed(s, "BTCUSDT", [1, 5, 6]))
    assert [i for _, i in out] == [1, 5, 6]
    assert seq.fill_failures == 1
    assert seq.skipped == 3
    assert "BTCUSDT" in caplog.text


def test_unknown_symbols_are_counted_not_delivered():
    out, seq = sequenced(FakeRest(last=1), lambda s: feed(s, "DOGEUSDT", [1]))
    assert out == []
    assert seq.unknown_symbols == 1


def test_bars_step_by_one_minute():
    minute = 60_000
    delivered: list[int] = []

    async def fetch(symbol: str, first: int, until: int | None) -> tuple[list[Trade], bool]:
        return [Trade(t, t, 1.0, 1.0) for t in range(first, until or first, minute)], False

    async def run() -> None:
        seq: Sequencer[Trade] = Sequencer(
            CODES, step=minute, deliver=lambda c, b: delivered.append(b[0]), fetch=fetch
        )
        seq.set_last_key("BTCUSDT", 0)
        for t in (minute, 4 * minute):
            seq.on_item("BTCUSDT", Trade(t, t, 1.0, 1.0))
        await seq.idle()

    asyncio.run(run())
    assert delivered == [minute, 2 * minute, 3 * minute, 4 * minute]
