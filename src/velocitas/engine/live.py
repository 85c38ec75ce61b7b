"""HFTEngine: many strategies on many coins, run in parallel, with exact consolidated P&L.

Threads and processes (``backend="process"``):

* the **producer** thread pulls batches from the data source into a bounded queue (a full
  queue blocks the producer: backpressure, never a dropped update);
* the **dispatcher** thread (the single writer) drains the queue into one batch of up to
  ``max_batch`` updates, hands it to the executor (workers run their shards in parallel), then
  applies the returned account updates to the portfolio, the trade log and the P&L history,
  and publishes an immutable snapshot that readers (``get_metrics``...) pick up without locks;
* register/unregister calls made while running are queued to the dispatcher and applied
  between two batches.

``run(source)`` is the blocking batch path (a backtest through the same executor), and its
fills equal the serial backtest's bit for bit, whatever the backend or worker count.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from velocitas.core.errors import ConfigError
from velocitas.core.models import Dataset
from velocitas.data.sources import DataSource, concat_batches
from velocitas.engine._snapshots import EngineState, Snapshot
from velocitas.engine.accounts import pack_updates
from velocitas.engine.executors import Executor, make_executor
from velocitas.engine.fills import ExecutionConfig
from velocitas.engine.packed import PackedUpdate
from velocitas.engine.recording import SessionRecorder, new_session_dir
from velocitas.engine.results import BacktestResult
from velocitas.engine.source_factory import make_source
from velocitas.strategies.base import Strategy

logger = logging.getLogger(__name__)

_STOP = object()


class HFTEngine:
    """Paper-trading engine; see the module docstring for how the parts fit.

    Args:
        num_workers: worker processes (or Ray actors) holding the strategies.
        backend: ``"process"`` (default), ``"serial"`` (in-process) or ``"ray"``.
        config: fill model and starting capital per strategy.
        max_batch: most updates handed to the workers at once.
        queue_size: batches the producer may run ahead before it blocks.
        address: Ray cluster address (``backend="ray"`` only; None starts a local Ray).
        record: record every live session (``start``) under ``data_dir/sessions/`` for
            ``velocitas replay`` (``run`` is not recorded).
        data_dir: where recordings go (default: ``Settings().data_dir``, i.e.
            ``VELOCITAS_DATA_DIR`` or ``~/.velocitas``).
        record_segment_bytes: a recording's feed rotates to a new file past this size.
        executor_options: passed to the executor, e.g. ``{"checkpoint_interval_s": 2.0}`` for
            the process backend (how often a worker's shard is checkpointed for recovery).
    """

    def __init__(
        self,
        num_workers: int = 2,
        backend: str = "process",
        config: ExecutionConfig | None = None,
        *,
        max_batch: int = 16_384,
        queue_size: int = 64,
        address: str | None = None,
        trade_history: int = 100_000,
        record: bool = True,
        data_dir: Path | None = None,
        record_segment_bytes: int = 64 << 20,
        executor_options: dict[str, Any] | None = None,
    ) -> None:
        if max_batch < 1 or queue_size < 1:
            raise ConfigError("max_batch and queue_size must be >= 1")
        self.num_workers = num_workers
        self.backend = backend
        self.config = config or ExecutionConfig()
        self.max_batch = max_batch
        self._options: dict[str, Any] = {"address": address} if backend == "ray" else {}
        self._options.update(executor_options or {})
        self._executor: Executor | None = None
        self._state = EngineState(self.config, trade_history)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._commands: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._ids_lock = threading.Lock()
        self._names: dict[str, int] = {}
        self._source: DataSource | None = None
        self._producer: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        self._running = threading.Event()
        self._failure: BaseException | None = None
        self.record = record
        self.data_dir = data_dir
        self.record_segment_bytes = record_segment_bytes
        self._recorder: SessionRecorder | None = None
        self._strategies: dict[str, Strategy] = {}
        self.session_dir: Path | None = None

    # -- registration ---------------------------------------------------------------------
    def _executor_ready(self) -> Executor:
        if self._executor is None:
            self._executor = make_executor(
                self.backend, self.num_workers, self.config, **self._options
            )
        return self._executor

    def _new_id(self, strategy: Strategy) -> str:
        with self._ids_lock:
            base = f"{strategy.coin}_{strategy.name}"
            n = self._names.get(base, 0) + 1
            self._names[base] = n
            return base if n == 1 else f"{base}_{n}"

    def register_strategy(self, strategy: Strategy) -> str:
        """Add a strategy (also while running); returns its id, e.g. ``"BTC_SMA_Crossover"``."""
        if not isinstance(strategy, Strategy):
            raise ConfigError(f"expected a Strategy instance, got {type(strategy).__name__}")
        sid = self._new_id(strategy)
        self._command(("add", sid, strategy))
        return sid

    def unregister_strategy(self, strategy_id: str) -> None:
        """Remove a strategy (also while running); its fills and final P&L stay reported."""
        if strategy_id not in self._state.active_ids():
            raise ConfigError(f"no registered strategy {strategy_id!r}")
        self._command(("remove", strategy_id))

    def _command(self, command: tuple[Any, ...]) -> None:
        if self._running.is_set():
            done: Future[None] = Future()
            self._commands.put((*command, done))
            done.result(timeout=60)
        else:
            self._apply(command)

    def _apply(self, command: tuple[Any, ...]) -> None:
        executor = self._executor_ready()
        if command[0] == "add":
            _, sid, strategy = command[:3]
            executor.add(sid, strategy)
            self._state.added(sid, strategy)
            self._strategies[sid] = strategy
            if self._recorder is not None:
                self._recorder.strategy_added(sid, strategy)
        else:
            final = executor.remove(command[1])
            self._state.removed(command[1], final)
            self._strategies.pop(command[1], None)

    # -- running --------------------------------------------------------------------------
    def start(
        self,
        data_source: str | DataSource = "synthetic",
        coins: Iterable[str] | None = None,
        **source_options: Any,
    ) -> None:
        """Start streaming from ``data_source`` in the background; returns at once.

        ``data_source`` is a ``DataSource`` or a name with its options (see
        ``engine/source_factory.py``): ``start("replay", coins=["BTC"], dataset="x.csv",
        speed=10)``, ``start("synthetic", coins=["BTC", "ETH"], rate_per_s=5_000)``...
        """
        if self._running.is_set():
            raise ConfigError("the engine is already running; stop() it first")
        source = self._make_source(data_source, coins, source_options)
        self._executor_ready()
        self._source = source
        self._failure = None
        self._start_recording(source.name)
        self._state.started(source.name)
        self._running.set()
        self._producer = threading.Thread(
            target=self._produce, args=(source,), name="velocitas-producer", daemon=True
        )
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="velocitas-dispatcher", daemon=True
        )
        self._dispatcher.start()
        self._producer.start()

    def _start_recording(self, source: str) -> None:
        if not self.record:
            return
        if self.data_dir is None:
            from velocitas.settings import Settings

            self.data_dir = Settings().data_dir
        self.session_dir = new_session_dir(self.data_dir)
        active = {sid: self._strategies[sid] for sid in self._state.active_ids()}
        self._recorder = SessionRecorder(
            self.session_dir,
            source=source,
            config=self.config,
            strategies=active,
            max_segment_bytes=self.record_segment_bytes,
        )
        logger.info("recording this session in %s", self.session_dir)

    def _make_source(
        self, data_source: str | DataSource, coins: Iterable[str] | None, options: dict[str, Any]
    ) -> Any:
        if not isinstance(data_source, str):
            return data_source
        wanted = [c.upper() for c in coins] if coins else sorted(self._state.coins()) or ["BTC"]
        return make_source(data_source, wanted, **options)

    def _produce(self, source: DataSource) -> None:
        try:
            for batch in source.batches():
                if not self._running.is_set():
                    break
                self._state.ticks_in += len(batch)
                self._queue.put((time.perf_counter_ns(), batch))
        except Exception as e:
            logger.exception("data source %s failed", source.name)
            self._state.source_error = f"{type(e).__name__}: {e}"
        finally:
            self._queue.put(_STOP)

    def _dispatch(self) -> None:
        executor = self._executor_ready()
        last_health = time.monotonic()
        try:
            while True:
                self._drain_commands()
                try:
                    item = self._queue.get(timeout=0.05)
                except queue.Empty:
                    if time.monotonic() - last_health > 0.25:
                        self._check_health(executor)
                        last_health = time.monotonic()
                    continue
                if item is _STOP:
                    break
                items, stop = [item], False
                size = len(item[1])
                while size < self.max_batch:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        stop = True
                        break
                    items.append(more)
                    size += len(more[1])
                self._process(executor, items)
                if stop:
                    break
        except BaseException as e:  # the writer must never die silently
            logger.exception("engine dispatcher failed")
            self._failure = e
        finally:
            self._drain_commands()
            self._state.stopped()
            self._stop_recording()
            self._running.clear()

    def _stop_recording(self) -> None:
        if self._recorder is None:
            return
        strategies = self._state.snapshot.as_metrics({})["strategies"]
        self._recorder.close({sid: m["total_pnl"] for sid, m in strategies.items()})
        self._recorder = None

    def _check_health(self, executor: Executor) -> None:
        check = getattr(executor, "check_health", None)
        if check is not None:
            check()

    def _drain_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            done = command[-1]
            try:
                self._apply(command[:-1])
                done.set_result(None)
            except BaseException as e:
                done.set_exception(e)

    def _process(self, executor: Executor, items: list[tuple[int, Dataset]]) -> None:
        batch = concat_batches([b for _, b in items])
        self._state.queue_depth = self._queue.qsize()
        packed = _process(executor, batch)
        self._state.applied(batch, packed, oldest_arrival_ns=items[0][0])
        if self._recorder is not None:
            self._recorder.record(batch, packed)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the source, process everything already received, then stop the workers."""
        if self._source is not None:
            self._source.close()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout_s)
        if self._producer is not None:
            self._producer.join(timeout_s)
        self._running.clear()
        self.close()
        if self._failure is not None:
            raise self._failure

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait until a finite source has been fully processed; True if it was."""
        if self._dispatcher is None:
            return True
        self._dispatcher.join(timeout_s)
        return not self._dispatcher.is_alive()

    def close(self) -> None:
        """Stop the worker processes (the engine can be restarted: workers respawn)."""
        if self._executor is not None and not self._running.is_set():
            self._executor.close()
            self._executor = None
            self._state.executor_closed()

    def __enter__(self) -> HFTEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._running.is_set():
            self.stop()
        self.close()

    def run(self, source: DataSource | Dataset | Iterable[Dataset]) -> BacktestResult:
        """Process a finite source as fast as possible, blocking; the backtest path."""
        if self._running.is_set():
            raise ConfigError("run() needs a stopped engine")
        executor = self._executor_ready()
        self._state.started(getattr(source, "name", "batches"), keep_all_fills=True)
        if isinstance(source, Dataset):
            batches: Iterable[Dataset] = [source]
        elif hasattr(source, "batches"):
            batches = source.batches()
        else:
            batches = source
        started = time.perf_counter()
        for batch in batches:
            arrival = time.perf_counter_ns()
            self._state.ticks_in += len(batch)
            self._state.applied(batch, _process(executor, batch), oldest_arrival_ns=arrival)
        self._state.stopped()
        return self._state.result(time.perf_counter() - started)

    # -- reading ---------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The latest consistent view (every figure from the same applied batch)."""
        return self._state.snapshot

    def get_metrics(self) -> dict[str, Any]:
        """``{"global": {...}, "strategies": {id: {...}}, "engine": {...}}``."""
        engine = {
            "backend": self.backend,
            "num_workers": self.num_workers,
            "running": self._running.is_set(),
            "queue_depth": self._queue.qsize(),
            "oldest_unprocessed_age_ms": self._oldest_age_ms(),
            "source_status": self._source.status() if self._source is not None else None,
            "ticks_in": self._state.ticks_in,
            "lag_ticks": self._state.ticks_in - self._state.snapshot.engine["ticks_processed"],
            "workers": self._executor.health() if self._executor is not None else [],
        }
        return self._state.snapshot.as_metrics(engine)

    def _oldest_age_ms(self) -> float:
        """Age of the oldest update received but not yet processed (0.0 when none waits)."""
        with self._queue.mutex:
            head = self._queue.queue[0] if self._queue.queue else None
        if head is None or head is _STOP:
            return 0.0
        return (time.perf_counter_ns() - head[0]) / 1e6

    def get_trades(
        self, limit: int = 50, strategy_id: str | None = None, coin: str | None = None
    ) -> list[dict[str, Any]]:
        """Most recent fills first, with ``strategy_id`` and ``coin``."""
        return self._state.snapshot.trades(limit, strategy_id, coin)

    def get_pnl_history(self, strategy_id: str | None = None) -> list[dict[str, Any]]:
        """Total P&L over time (global, or one strategy's): ``[{"timestamp", "pnl"}...]``."""
        return self._state.snapshot.pnl_history(strategy_id)


def _process(executor: Executor, batch: Dataset) -> PackedUpdate:
    """The executor's packed update (executors without ``process_packed`` get theirs packed)."""
    packed = getattr(executor, "process_packed", None)
    if packed is not None:
        result: PackedUpdate = packed(batch)
        return result
    return pack_updates(executor.process(batch))


__all__ = ["HFTEngine"]
