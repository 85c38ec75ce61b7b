"""Worker processes: each owns a shard of accounts; batches go out, updates come back.

Fault tolerance: the executor keeps, per worker, a checkpoint of its whole shard (taken every
``checkpoint_interval_s`` of wall time, asynchronously: the worker sends it right after the
reply to a batch, so no batch waits for it) and a journal of every command sent since. When a
worker dies
(its process sentinel fires, so detection is immediate while waiting and at most
``health_interval_s`` when idle), a new process restores the checkpoint and replays the
journal. The engine is deterministic, so the replay rebuilds exactly the state the dead worker
had; replies to replayed commands that were already received are discarded, so no fill is lost
or duplicated.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import pickle
import tempfile
import time
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import cloudpickle

from velocitas.core.errors import VelocitasError
from velocitas.core.models import Dataset
from velocitas.engine.accounts import AccountUpdate, account_update
from velocitas.engine.fills import ExecutionConfig
from velocitas.engine.packed import PackedUpdate, merge
from velocitas.engine.workers import encode_batch, serve
from velocitas.strategies.base import Strategy

logger = logging.getLogger(__name__)


class WorkerError(VelocitasError):
    """A worker reported a failure in the engine itself (not in a strategy)."""


_CRASH_WINDOW_S = 10.0
_MAX_RESTARTS_IN_WINDOW = 3


class _Worker:
    """The engine-side handle of one worker process."""

    def __init__(self, index: int, ctx: Any, config: ExecutionConfig, checkpoint_dir: Path) -> None:
        self.index = index
        self.ctx = ctx
        self.config = config
        self.checkpoint_dir = checkpoint_dir / f"worker-{index}"
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.ids: list[str] = []
        self.coins: set[str] = set()
        self.checkpoint: Path | None = None
        self.journal: list[tuple[Any, ...]] = []
        self.checkpoint_requested_at = time.monotonic()
        self.checkpoint_pending = False
        self.restarts = 0
        self._restart_times: list[float] = []
        self._spawn()

    def _spawn(self) -> None:
        self.conn, child = self.ctx.Pipe(duplex=True)
        self.process = self.ctx.Process(
            target=serve, args=(child, self.config, str(self.checkpoint_dir)),
            name=f"velocitas-worker-{self.index}", daemon=True,
        )  # fmt: skip
        self.process.start()
        child.close()

    @property
    def alive(self) -> bool:
        return bool(self.process.is_alive())

    def send(
        self, message: tuple[Any, ...], *, journal: bool = True, extra: tuple[Any, ...] = ()
    ) -> None:
        """Send a command; if the process is gone, restart it (the restart resends it).

        ``extra`` trailing fields (a checkpoint request) are sent but not journaled, so a
        replay never asks for checkpoints.
        """
        if journal:
            self.journal.append(message)
        try:
            self.conn.send(message + extra)
        except OSError:
            self.process.join(timeout=1.0)
            if journal:
                self.restart()
            else:
                self.restart()
                self.conn.send(message)

    def restart(self) -> None:
        """Replace a dead process and rebuild its state: checkpoint, then the journal."""
        self.conn.close()
        self.process.join(timeout=1.0)
        logger.warning("worker %d died (exit code %s); restarting", self.index,
                       self.process.exitcode)  # fmt: skip
        now = time.monotonic()
        self._restart_times = [t for t in self._restart_times if now - t < _CRASH_WINDOW_S]
        self._restart_times.append(now)
        if len(self._restart_times) > _MAX_RESTARTS_IN_WINDOW:
            raise WorkerError(
                f"worker {self.index} died {len(self._restart_times)} times within "
                f"{_CRASH_WINDOW_S:.0f} s; giving up (a script that starts an engine needs "
                "`if __name__ == '__main__':` around it, since workers import it)"
            )
        self.restarts += 1
        self.checkpoint_pending = False
        self._spawn()
        if self.checkpoint is not None:
            self.conn.send(("restore", self.checkpoint.read_bytes()))
            _expect(self, self.conn.recv(), "ok")
        for message in self.journal[:-1]:
            self.conn.send(message)
            self.conn.recv()  # already applied by the engine before the crash: discard
        if self.journal:
            self.conn.send(self.journal[-1])  # the command in flight: its reply is awaited

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.alive:
            try:
                self.conn.send(("stop",))
                if self.conn.poll(timeout_s):
                    self.conn.recv()
            except (OSError, EOFError):
                pass
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout_s)
        self.conn.close()


def _expect(worker: _Worker, reply: tuple[Any, ...], kind: str) -> tuple[Any, ...]:
    if reply[0] == "error":
        raise WorkerError(f"worker {worker.index}: {reply[1]}")
    if reply[0] != kind:
        raise WorkerError(f"worker {worker.index}: expected {kind!r}, got {reply[0]!r}")
    return reply


class ProcessExecutor:
    """Accounts sharded over ``num_workers`` processes (least-loaded placement)."""

    def __init__(
        self,
        config: ExecutionConfig,
        num_workers: int,
        *,
        checkpoint_interval_s: float = 2.0,
        start_method: str = "spawn",
    ) -> None:
        self.config = config
        self.checkpoint_interval_s = checkpoint_interval_s
        ctx = mp.get_context(start_method)
        self._checkpoints = tempfile.TemporaryDirectory(prefix="velocitas-checkpoints-")
        root = Path(self._checkpoints.name)
        self.workers = [_Worker(i, ctx, config, root) for i in range(num_workers)]
        self.order: list[str] = []
        self.where: dict[str, _Worker] = {}
        self.coin_of: dict[str, str] = {}
        self._seq = 0
        self._closed = False
        self._layouts: dict[Any, Any] = {}

    def _call(self, worker: _Worker, message: tuple[Any, ...], kind: str) -> tuple[Any, ...]:
        worker.send(message)
        return _expect(worker, self._receive(worker), kind)

    def _receive(self, worker: _Worker) -> tuple[Any, ...]:
        while True:
            ready = wait([worker.conn, worker.process.sentinel])
            if worker.conn in ready:
                try:
                    reply: tuple[Any, ...] = worker.conn.recv()
                except (EOFError, OSError):
                    pass
                else:
                    if not self._side_message(worker, reply):
                        return reply
                    continue
            worker.restart()

    def add(self, strategy_id: str, strategy: Strategy) -> None:
        worker = min(self.workers, key=lambda w: (len(w.ids), w.index))
        blob = cloudpickle.dumps(strategy, protocol=pickle.HIGHEST_PROTOCOL)
        self._call(worker, ("add", strategy_id, blob), "ok")
        worker.ids.append(strategy_id)
        worker.coins.add(strategy.coin)
        self.order.append(strategy_id)
        self.where[strategy_id] = worker
        self.coin_of[strategy_id] = strategy.coin

    def remove(self, strategy_id: str) -> AccountUpdate:
        worker = self.where.pop(strategy_id)
        reply = self._call(worker, ("remove", strategy_id), "removed")
        worker.ids.remove(strategy_id)
        self.order.remove(strategy_id)
        del self.coin_of[strategy_id]
        worker.coins = {self.coin_of[i] for i in worker.ids}
        final: AccountUpdate = reply[1]
        return final

    def process(self, batch: Dataset) -> list[AccountUpdate]:
        packed = self.process_packed(batch)
        coins = {s.coin for s in batch.series if len(s) > 0}
        return [account_update(packed, r) for r, c in enumerate(packed.coins) if c in coins]

    def process_packed(self, batch: Dataset) -> PackedUpdate:
        self._seq += 1
        busy = []
        for worker in self.workers:
            series = tuple(s for s in batch.series if s.coin in worker.coins)
            if series:
                wire = encode_batch(Dataset(series, batch.source))
                worker.send(("batch", self._seq, wire), extra=self._checkpoint_request(worker))
                busy.append(worker)
        parts: dict[int, PackedUpdate] = {}
        waiting = list(busy)
        while waiting:
            ready = wait([w.conn for w in waiting] + [w.process.sentinel for w in waiting])
            for worker in list(waiting):
                if worker.conn in ready:
                    try:
                        reply: tuple[Any, ...] = worker.conn.recv()
                    except (EOFError, OSError):  # the process is gone
                        worker.process.join(timeout=1.0)
                        worker.restart()  # resends this batch
                        continue
                    if self._side_message(worker, reply):
                        continue
                    _expect(worker, reply, "batch")
                    parts[worker.index] = reply[2]
                    waiting.remove(worker)
                elif worker.process.sentinel in ready:
                    worker.restart()  # resends this batch; its reply is awaited next round
        return merge([parts[w.index] for w in busy], self.order, self._layouts)

    def _checkpoint_request(self, worker: _Worker) -> tuple[Any, ...]:
        """Ask for a checkpoint with this batch when the last one is old enough."""
        now = time.monotonic()
        if worker.checkpoint_pending or now - worker.checkpoint_requested_at < (
            self.checkpoint_interval_s
        ):
            return ()
        worker.checkpoint_pending = True
        worker.checkpoint_requested_at = now
        return (True,)

    def _side_message(self, worker: _Worker, reply: tuple[Any, ...]) -> bool:
        """Consume a checkpoint that arrived after a batch reply; True if it was one."""
        if reply[0] != "checkpoint":
            return False
        seq = reply[1]
        previous, worker.checkpoint = worker.checkpoint, Path(reply[2])
        if previous is not None and previous != worker.checkpoint:
            previous.unlink(missing_ok=True)
        worker.checkpoint_pending = False
        for i, message in enumerate(worker.journal):
            if message[0] == "batch" and message[1] == seq:
                del worker.journal[: i + 1]  # the checkpoint includes everything up to here
                break
        return True

    def check_health(self) -> int:
        """Restart any worker that died while idle; returns how many were restarted."""
        restarted = 0
        for worker in self.workers:
            if not worker.alive:
                worker.journal.append(("ping",))
                worker.restart()
                _expect(worker, worker.conn.recv(), "pong")
                worker.journal.pop()
                restarted += 1
        return restarted

    def health(self) -> list[dict[str, Any]]:
        return [
            {
                "worker": w.index,
                "pid": w.process.pid,
                "alive": w.alive,
                "accounts": len(w.ids),
                "restarts": w.restarts,
            }
            for w in self.workers
        ]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for worker in self.workers:
            worker.stop()
        self._checkpoints.cleanup()
