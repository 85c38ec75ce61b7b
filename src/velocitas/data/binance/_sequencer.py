"""Exactly once and in order, per symbol: duplicates dropped, gaps filled by REST.

Every item has an integer key that grows by ``step`` from one item to the next: the trade id
(step 1) for trade and aggTrade streams, the bar's open time (step 60,000 ms) for 1-minute
klines. Per symbol the ``Sequencer`` keeps the last key delivered and

* delivers an item whose key is the next one;
* drops one whose key was delivered already (a REST page overlapping the stream, a message
  repeated after a reconnect);
* on a jump (a message lost: garbage in its place, a dropped connection) holds the item and
  the ones after it, fetches the missing keys by REST, delivers them, then the held items;
* after a reconnect (``on_reconnected``), fetches everything since the last key by REST
  while the new connection's messages are held, so the outage leaves no hole.

Keys REST cannot supply (an exchange outage: no bars for those minutes) are skipped with
one warning once the fetch has come back, so that the stream goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from velocitas.core.errors import DataError

logger = logging.getLogger(__name__)


#: An item is a tuple whose first field is its key (``Trade``, ``Kline``).
ItemT = TypeVar("ItemT", bound=tuple[Any, ...])

#: ``fetch(symbol, first_key, until_key)`` -> (items from ``first_key`` on, oldest first,
#: stopping before ``until_key`` when given; ``more`` when another page may follow).
Fetch = Callable[[str, int, int | None], Awaitable[tuple[list[ItemT], bool]]]


@dataclass(slots=True)
class _Tape(Generic[ItemT]):
    symbol: str
    code: int
    last: int | None = None
    filling: bool = False
    held: list[ItemT] = field(default_factory=list)


class Sequencer(Generic[ItemT]):
    """See the module docstring. Runs in the event loop's thread only.

    Args:
        codes: symbol -> coin number (what ``deliver`` receives).
        step: the key increment between consecutive items.
        deliver: called with ``(code, item)`` for each item, in order, exactly once.
        fetch: the REST page fetcher (see ``Fetch``); raises ``DataError`` when it gives up.
    """

    def __init__(
        self,
        codes: Mapping[str, int],
        *,
        step: int,
        deliver: Callable[[int, ItemT], None],
        fetch: Fetch[ItemT],
    ) -> None:
        self.step = step
        self._tapes = {symbol: _Tape[ItemT](symbol, code) for symbol, code in codes.items()}
        self._deliver = deliver
        self._fetch = fetch
        self._fills: set[asyncio.Task[None]] = set()
        self.duplicates = 0
        self.gaps_filled = 0
        self.backfilled = 0
        self.skipped = 0
        self.unknown_symbols = 0
        self.fill_failures = 0

    def last_key(self, symbol: str) -> int | None:
        return self._tapes[symbol].last

    def set_last_key(self, symbol: str, key: int) -> None:
        """Start ``symbol`` after ``key`` (e.g. the last history bar)."""
        self._tapes[symbol].last = key

    @property
    def filling(self) -> bool:
        return bool(self._fills)

    async def idle(self) -> None:
        """Wait until no fill is running (tests)."""
        while self._fills:
            await asyncio.gather(*self._fills, return_exceptions=True)

    async def cancel(self) -> None:
        """Cancel the running fills and wait for them to end (shutdown)."""
        tasks = list(self._fills)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def on_item(self, symbol: str, item: ItemT) -> None:
        """One item from the live stream (the hot path)."""
        tape = self._tapes.get(symbol)
        if tape is None:
            self.unknown_symbols += 1
            return
        self._sequence(tape, item)

    def on_reconnected(self) -> None:
        """Fetch every symbol's items since its last key; hold live items meanwhile."""
        for tape in self._tapes.values():
            if tape.last is not None and not tape.filling:
                self._start_fill(tape, None)

    def _sequence(self, tape: _Tape[ItemT], item: ItemT) -> None:
        if tape.filling:
            tape.held.append(item)
            return
        key: int = item[0]
        last = tape.last
        if last is None or key == last + self.step:
            tape.last = key
            self._deliver(tape.code, item)
        elif key <= last:
            self.duplicates += 1
        else:
            tape.held.append(item)
            self._start_fill(tape, key)

    def _start_fill(self, tape: _Tape[ItemT], until: int | None) -> None:
        if tape.last is None:  # nothing delivered yet: nothing to fill from
            return
        tape.filling = True
        task = asyncio.get_running_loop().create_task(self._fill(tape, tape.last, until))
        self._fills.add(task)
        task.add_done_callback(self._fills.discard)

    async def _fill(self, tape: _Tape[ItemT], last: int, until: int | None) -> None:
        first = last + self.step
        recovered = 0
        try:
            recovered = await self._fetch_all(tape, last, until)
        except DataError as e:
            self.fill_failures += 1
            logger.error(
                "binance %s: could not fill the gap from key %d: %s", tape.symbol, first, e
            )
        except Exception:  # a bug of ours: log it, and let the stream go on
            self.fill_failures += 1
            logger.exception("binance %s: the gap fill from key %d failed", tape.symbol, first)
        if recovered:
            self.gaps_filled += 1
            self.backfilled += recovered
            logger.info("binance %s: filled a gap of %d item(s) by REST", tape.symbol, recovered)
        last = tape.last if tape.last is not None else last
        if until is not None and last < until - self.step:
            missing = (until - last) // self.step - 1
            self.skipped += missing
            logger.warning(
                "binance %s: keys %d..%d are not available from REST; %d skipped",
                tape.symbol,
                last + self.step,
                until - self.step,
                missing,
            )
            tape.last = until - self.step
        held, tape.held = tape.held, []
        tape.filling = False
        for item in held:  # may start another fill, which holds the rest again
            self._sequence(tape, item)

    async def _fetch_all(self, tape: _Tape[ItemT], last: int, until: int | None) -> int:
        recovered = 0
        while True:
            before = last
            items, more = await self._fetch(tape.symbol, last + self.step, until)
            for item in items:
                key: int = item[0]
                if key > last and (until is None or key < until):
                    last = tape.last = key
                    self._deliver(tape.code, item)
                    recovered += 1
            done = until is not None and last >= until - self.step
            if not more or done or last == before:
                return recovered
