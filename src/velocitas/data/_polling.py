"""Shared by the REST-polling sources (CoinGecko, ccxt): a poller thread, back-off and health.

A ``PollingFeed`` runs the subclass's ``_run()`` in a daemon thread that puts batches on a
queue; ``batches()`` hands them on. Fetch failures go through ``_failed()``, which logs one line,
counts the failure and waits (exponential back-off, or the server's ``Retry-After`` when longer)
before the caller tries again; nothing a server sends can stop the feed.
"""

from __future__ import annotations

import email.utils
import inspect
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from velocitas.core.errors import ConfigError
from velocitas.core.models import Dataset

logger = logging.getLogger(__name__)

RATE_WINDOW_S = 60.0
MAX_RETRY_AFTER_S = 3_600.0  # a server asking for more than an hour is treated as asking for one


class Backoff:
    """Delays that double from ``initial_s`` up to ``max_s``; ``reset()`` after a success."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ConfigError(
                f"back-off needs 0 < backoff_initial_s <= max_backoff_s, "
                f"was backoff_initial_s={initial_s} max_backoff_s={max_s}"
            )
        self.initial_s = initial_s
        self.max_s = max_s
        self._next_s = initial_s

    def next_delay(self, retry_after_s: float | None = None) -> float:
        """The wait before the next attempt; a server's ``Retry-After`` wins when longer."""
        delay = self._next_s
        self._next_s = min(self._next_s * 2.0, self.max_s)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
        return delay

    def reset(self) -> None:
        self._next_s = self.initial_s


class RequestSpacing:
    """Client-side rate limit: request starts at least ``min_interval_s`` apart (thread-safe)."""

    def __init__(self, min_interval_s: float, stop: threading.Event) -> None:
        if min_interval_s < 0:
            raise ConfigError(f"min_request_interval_s must be >= 0, was {min_interval_s}")
        self.min_interval_s = min_interval_s
        self._stop = stop
        self._lock = threading.Lock()
        self._next_at = 0.0

    def wait(self) -> bool:
        """Block until the next request may start; False if the feed was closed meanwhile."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_at)
            self._next_at = start + self.min_interval_s
        delay = start - now
        return not self._stop.wait(delay) if delay > 0 else not self._stop.is_set()


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def reject_unknown_options(
    source: type, options: Mapping[str, Any], label: str, positional: Sequence[str]
) -> None:
    """ConfigError naming the options ``source``'s constructor does not take, if any."""
    accepted = set(inspect.signature(source).parameters) - set(positional)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(
            f"unknown {label} option(s) {', '.join(unknown)}; "
            f"expected some of {', '.join(sorted(accepted))}"
        )


class PollingFeed:
    """Base of the polling sources: thread, queue, back-off and ``status()``.

    Subclasses implement ``_run()`` (loop until ``self.closed``), and call ``_emit()`` with each
    batch, ``_succeeded()`` after each good response and ``_failed()`` after each bad one.
    """

    name = "polling"

    def __init__(self, *, backoff_initial_s: float, max_backoff_s: float) -> None:
        self._stop = threading.Event()
        self._backoff = Backoff(backoff_initial_s, max_backoff_s)
        self._queue: queue.Queue[Dataset] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._emitted: deque[tuple[float, int]] = deque()
        self._started_at: float | None = None
        self._connected = False
        self._last_message_at: float | None = None
        self._failing_since: float | None = None
        self._failures_in_a_row = 0
        self.reconnects = 0
        self.gaps_filled = 0
        self.failures = 0
        self.ticks_emitted = 0
        self.last_error: str | None = None

    # -- the DataSource protocol ----------------------------------------------------------
    def batches(self) -> Iterator[Dataset]:
        """Start the poller thread and yield what it fetches until ``close()``."""
        with self._lock:
            if self._thread is not None:
                raise ConfigError(f"a {self.name} source streams once; build a new one")
            self._started_at = time.monotonic()
            self._thread = threading.Thread(
                target=self._guarded_run, name=f"velocitas-{self.name}", daemon=True
            )
            self._thread.start()
        while not self.closed:
            try:
                batch = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            if self.closed:
                return
            yield batch

    def close(self) -> None:
        """Stop: ``batches()`` returns within ~50 ms; a request in flight ends on its timeout."""
        self._stop.set()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the poller thread to finish (after ``close()``); True if it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def status(self) -> dict[str, Any]:
        """Health: connected, last message age, reconnects, ticks/s (last minute), gaps."""
        now = time.monotonic()
        with self._lock:
            while self._emitted and self._emitted[0][0] < now - RATE_WINDOW_S:
                self._emitted.popleft()
            recent = sum(n for _, n in self._emitted)
        elapsed = min(RATE_WINDOW_S, now - self._started_at) if self._started_at else 0.0
        return {
            "connected": self._connected and not self.closed,
            "last_message_age_s": (
                None if self._last_message_at is None else now - self._last_message_at
            ),
            "reconnects": self.reconnects,
            "messages_per_s": recent / elapsed if elapsed > 0 else 0.0,
            "gaps_filled": self.gaps_filled,
            "failures": self.failures,
            "last_error": self.last_error,
            "ticks_emitted": self.ticks_emitted,
        }

    # -- for subclasses -------------------------------------------------------------------
    def _run(self) -> None:
        raise NotImplementedError

    def _emit(self, batch: Dataset) -> None:
        n = len(batch)
        if n == 0:
            return
        with self._lock:
            self._emitted.append((time.monotonic(), n))
            self.ticks_emitted += n
        self._queue.put(batch)

    def _succeeded(self, what: str) -> None:
        now = time.monotonic()
        if self._failing_since is not None:
            logger.info(
                "%s: %s answers again after %d failure(s) in %.1f s",
                self.name,
                what,
                self._failures_in_a_row,
                now - self._failing_since,
            )
            self.reconnects += 1
        self._failing_since = None
        self._failures_in_a_row = 0
        self._connected = True
        self._last_message_at = now
        self._backoff.reset()

    def _failed(self, what: str, reason: str, retry_after_s: float | None = None) -> None:
        """Log one line, count the failure, then wait before the caller retries."""
        self._connected = False
        self.failures += 1
        self._failures_in_a_row += 1
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        self.last_error = f"{what}: {reason}"
        delay = self._backoff.next_delay(retry_after_s)
        logger.warning(
            "%s: %s failed (%s); retrying in %.3g s (failure %d in a row)",
            self.name,
            what,
            reason,
            delay,
            self._failures_in_a_row,
        )
        self._stop.wait(delay)

    def _finish(self) -> None:
        """Release what the poller holds; runs once, in the poller thread, when it ends."""

    def _guarded_run(self) -> None:
        # A bug of ours must not end the feed silently: log it, wait, and run again.
        try:
            while not self.closed:
                try:
                    self._run()
                    return
                except Exception as e:
                    logger.exception("%s: the poller raised; restarting it", self.name)
                    self._failed("the poller", f"{type(e).__name__}: {e}")
        finally:
            self._finish()
