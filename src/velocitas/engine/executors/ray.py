"""Ray: accounts sharded over Ray actors (engine runs), or one Ray task per strategy (sweeps).

The only module of the package that imports ``ray`` (the optional extra ``velocitas[ray]``).

``RayExecutor`` has the interface of ``ProcessExecutor``: each actor owns one ``AccountGroup``
(least-loaded placement), each batch goes into the object store once (``ray.put``) and every
actor holding an account on one of its coins runs it (an actor ignores the coins it does not
hold); updates come back in registration order. Strategies travel as cloudpickle bytes, so a
class defined in the user's ``__main__`` reaches the actors by value.

Fault tolerance mirrors ``executors/process.py``: per actor, the executor keeps a checkpoint of
the shard (cloudpickle bytes, asked for right after every ``checkpoint_every_batches``-th batch
and collected when ready, so no batch waits for it) and a journal of the commands sent since.
When a call raises ``RayActorError``, a new actor restores the checkpoint and replays the
journal; the engine is deterministic, so this rebuilds the dead actor's state exactly, and the
replies to commands already answered are discarded: no fill is lost or duplicated.

``backtest_on_ray`` is the batch path: one task per strategy over the whole dataset, the
portfolio marked locally; its result equals ``run_backtest``'s bit for bit.

(Both live in this one module, over the 400-line aim, because ``ray`` is imported nowhere else.)
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import uuid
from collections.abc import Sequence
from typing import Any

import cloudpickle
import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from velocitas.analysis.metrics import summarize
from velocitas.core.errors import ConfigError
from velocitas.core.models import Dataset
from velocitas.engine.accounts import AccountGroup, AccountUpdate, account_update, pack_updates
from velocitas.engine.backtest import strategy_ids, summarize_run
from velocitas.engine.executors.process import WorkerError
from velocitas.engine.fills import ExecutionConfig
from velocitas.engine.ledger import FEES, LedgerSnapshot
from velocitas.engine.packed import PackedUpdate, merge
from velocitas.engine.portfolio import Portfolio
from velocitas.engine.results import AccountResult, BacktestResult
from velocitas.strategies.base import Strategy

logger = logging.getLogger(__name__)

_CRASH_WINDOW_S = 10.0
_MAX_RESTARTS_IN_WINDOW = 3


def _connect(address: str | None, num_cpus: int | None) -> bool:
    """Make sure this process is connected to Ray; True if this call connected it.

    ``address=None`` starts a local Ray (``"local"``, so a cluster started with ``ray start``
    on this machine is not picked up by accident); any other address joins that cluster.
    """
    if ray.is_initialized():
        return False
    if address is None:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                 log_to_driver=False)  # fmt: skip
    else:
        ray.init(address=address, log_to_driver=False)
    return True


def _failure(where: str, e: RayTaskError) -> WorkerError:
    """A command that raised on Ray, as the engine's error (with a hint for the usual cause)."""
    hint = ""
    if isinstance(e.cause, ModuleNotFoundError):
        hint = (
            " (a strategy's module must be importable on every Ray node; classes defined in "
            "the script you run travel by value)"
        )
    return WorkerError(f"{where} failed: {e.cause!r}{hint}")


class _Shard:
    """Runs inside a Ray actor: one shard of accounts and the commands sent to it."""

    def __init__(self, config: ExecutionConfig) -> None:
        self.group = AccountGroup(config, keep_fill_logs=False)

    def where(self) -> tuple[str, int]:
        """The node id and process id this actor runs on."""
        return ray.get_runtime_context().get_node_id(), os.getpid()

    def apply(self, kind: str, *args: Any) -> Any:
        """One journaled command. A batch's Dataset arrives resolved from the object store."""
        if kind == "batch":
            return self.group.process_packed(args[1])
        if kind == "add":
            self.group.add(args[0], cloudpickle.loads(args[1]))
            return None
        if kind == "remove":
            return self.group.remove(args[0])
        if kind == "restore":
            self.group = cloudpickle.loads(args[0])
            return None
        raise ValueError(f"unknown shard command {kind!r}")

    def checkpoint(self) -> bytes:
        return cloudpickle.dumps(self.group, protocol=pickle.HIGHEST_PROTOCOL)


_RemoteShard = ray.remote(max_restarts=0)(_Shard)


class _Actor:
    """The executor-side handle of one actor: its accounts, checkpoint and journal."""

    def __init__(
        self, index: int, prefix: str, config: ExecutionConfig, cpus: float, start_timeout_s: float
    ) -> None:
        self.index = index
        self.prefix = prefix
        self.config = config
        self.cpus = cpus
        self.start_timeout_s = start_timeout_s
        self.ids: list[str] = []
        self.coins: set[str] = set()
        self.checkpoint: bytes | None = None
        self.journal: list[tuple[Any, ...]] = []
        self.pending: tuple[int, Any] | None = None  # (batch seq, ref) of a checkpoint asked for
        self.batches_since_checkpoint = 0
        self.restarts = 0
        self._restart_times: list[float] = []
        self.alive = False
        self.node_id = ""
        self.pid = 0
        self.handle = self._spawn()

    def _spawn(self) -> Any:
        # A fresh name per incarnation: the dead actor's name may not be released yet.
        self.name = f"{self.prefix}-{self.index}" + (f".{self.restarts}" if self.restarts else "")
        return _RemoteShard.options(
            name=self.name, num_cpus=self.cpus, scheduling_strategy="SPREAD"
        ).remote(self.config)

    def started(self, where: tuple[str, int]) -> None:
        self.node_id, self.pid = where
        self.alive = True

    def submit(self, message: tuple[Any, ...]) -> Any:
        """Journal a command and send it; returns the reference to its reply."""
        self.journal.append(message)
        return self.handle.apply.remote(*message)

    def result(self, ref: Any) -> Any:
        """The reply to the last command sent; if the actor died, recover it and wait again."""
        while True:
            try:
                return ray.get(ref)
            except RayActorError:
                ref = self.recover(in_flight=True)
            except RayTaskError as e:
                self.journal.pop()  # the command failed without changing the shard
                raise _failure(f"ray worker {self.index}", e) from e

    def call(self, message: tuple[Any, ...]) -> Any:
        return self.result(self.submit(message))

    def recover(self, *, in_flight: bool) -> Any:
        """Replace a dead actor and rebuild its shard: checkpoint, then the journal.

        With ``in_flight`` the last journal entry was not answered yet: it is resent last and
        the reference to its reply returned. Replies to the others are discarded.
        """
        self.alive = False
        self.pending = None
        while True:
            self._count_restart()
            logger.warning("ray worker %d (%s) died; restarting", self.index, self.name)
            try:
                ray.kill(self.handle, no_restart=True)
            except Exception:  # already gone, which is the usual case
                logger.debug("ray worker %d: kill of the dead actor failed", self.index)
            self.handle = self._spawn()
            replay = self.journal[:-1] if in_flight else self.journal
            try:
                where = ray.get(self.handle.where.remote(), timeout=self.start_timeout_s)
                refs = []
                if self.checkpoint is not None:
                    refs.append(self.handle.apply.remote("restore", self.checkpoint))
                refs += [self.handle.apply.remote(*m) for m in replay]
                for ref in refs:
                    try:
                        ray.get(ref)  # already applied by the engine before the death
                    except RayTaskError:
                        logger.debug("ray worker %d: a replayed command failed again", self.index)
            except RayActorError:
                continue
            except GetTimeoutError as e:
                raise WorkerError(
                    f"ray worker {self.index} could not be restarted within "
                    f"{self.start_timeout_s:.0f} s (no free CPU in the cluster?)"
                ) from e
            self.started(where)
            return self.handle.apply.remote(*self.journal[-1]) if in_flight else None

    def _count_restart(self) -> None:
        now = time.monotonic()
        self._restart_times = [t for t in self._restart_times if now - t < _CRASH_WINDOW_S]
        self._restart_times.append(now)
        if len(self._restart_times) > _MAX_RESTARTS_IN_WINDOW:
            raise WorkerError(
                f"ray worker {self.index} died {len(self._restart_times)} times within "
                f"{_CRASH_WINDOW_S:.0f} s; giving up (is velocitas installed, at the same "
                "version, on every node of the cluster?)"
            )
        self.restarts += 1

    def request_checkpoint(self, seq: int, every: int) -> None:
        """After sending batch ``seq``: ask for a checkpoint if ``every`` batches went by."""
        self.batches_since_checkpoint += 1
        if self.pending is None and self.batches_since_checkpoint >= every:
            self.pending = (seq, self.handle.checkpoint.remote())
            self.batches_since_checkpoint = 0

    def collect_checkpoint(self) -> None:
        """Take a requested checkpoint if it is ready (never waits); trim the journal."""
        if self.pending is None:
            return
        seq, ref = self.pending
        ready, _ = ray.wait([ref], timeout=0)
        if not ready:
            return
        self.pending = None
        try:
            blob: bytes = ray.get(ref)
        except (RayActorError, RayTaskError):
            return  # the next command finds the actor dead and recovers from the journal
        self.checkpoint = blob
        for i, message in enumerate(self.journal):
            if message[0] == "batch" and message[1] == seq:
                del self.journal[: i + 1]  # the checkpoint includes everything up to here
                break


class RayExecutor:
    """Accounts sharded over ``num_workers`` Ray actors (least-loaded placement).

    Args:
        config: fill model and starting capital per account.
        num_workers: actors to start.
        address: a Ray cluster (``"ray://head:10001"``, ``"auto"``); None starts a local Ray
            with ``num_workers`` CPUs. If this process is already connected, that Ray is used.
        checkpoint_every_batches: batches between two checkpoints of an actor's shard.
        actor_cpus: CPUs each actor reserves (1 so actors spread over a cluster's nodes).
        start_timeout_s: how long the actors may take to start before giving up.
        ping_timeout_s: how long ``check_health`` waits for an actor's answer.

    Raises:
        WorkerError: the actors could not be placed within ``start_timeout_s``.
    """

    def __init__(
        self,
        config: ExecutionConfig,
        num_workers: int,
        *,
        address: str | None = None,
        checkpoint_every_batches: int = 32,
        actor_cpus: float = 1.0,
        start_timeout_s: float = 120.0,
        ping_timeout_s: float = 5.0,
    ) -> None:
        if checkpoint_every_batches < 1:
            raise ConfigError(
                f"checkpoint_every_batches must be >= 1, was {checkpoint_every_batches}"
            )
        self.config = config
        self.checkpoint_every_batches = checkpoint_every_batches
        self.ping_timeout_s = ping_timeout_s
        self._started_ray = _connect(address, num_workers)
        self._closed = False
        prefix = f"velocitas-{uuid.uuid4().hex[:8]}"
        self.workers = [
            _Actor(i, prefix, config, actor_cpus, start_timeout_s) for i in range(num_workers)
        ]
        self.order: list[str] = []
        self.where: dict[str, _Actor] = {}
        self.coin_of: dict[str, str] = {}
        self._seq = 0
        self._layouts: dict[Any, Any] = {}
        try:
            places = ray.get([w.handle.where.remote() for w in self.workers],
                             timeout=start_timeout_s)  # fmt: skip
        except GetTimeoutError as e:
            cpus = ray.cluster_resources().get("CPU", 0.0)
            self.close()
            raise WorkerError(
                f"{num_workers} Ray actors of {actor_cpus} CPU each did not start within "
                f"{start_timeout_s:.0f} s; the cluster has {cpus:g} CPUs"
            ) from e
        for worker, place in zip(self.workers, places, strict=True):
            worker.started(place)

    def add(self, strategy_id: str, strategy: Strategy) -> None:
        """Start an account for ``strategy`` on the actor holding the fewest accounts."""
        if strategy_id in self.where:
            raise ConfigError(f"strategy id {strategy_id!r} is already registered")
        worker = min(self.workers, key=lambda w: (len(w.ids), w.index))
        worker.collect_checkpoint()
        blob = cloudpickle.dumps(strategy, protocol=pickle.HIGHEST_PROTOCOL)
        worker.call(("add", strategy_id, blob))
        worker.ids.append(strategy_id)
        worker.coins.add(strategy.coin)
        self.order.append(strategy_id)
        self.where[strategy_id] = worker
        self.coin_of[strategy_id] = strategy.coin

    def remove(self, strategy_id: str) -> AccountUpdate:
        """Stop an account; returns its final state."""
        worker = self.where[strategy_id]
        worker.collect_checkpoint()
        final: AccountUpdate = worker.call(("remove", strategy_id))
        del self.where[strategy_id]
        worker.ids.remove(strategy_id)
        self.order.remove(strategy_id)
        del self.coin_of[strategy_id]
        worker.coins = {self.coin_of[i] for i in worker.ids}
        return final

    def process(self, batch: Dataset) -> list[AccountUpdate]:
        """Run every account over ``batch``; updates of its coins' accounts, registration order."""
        packed = self.process_packed(batch)
        coins = {s.coin for s in batch.series if len(s) > 0}
        return [account_update(packed, r) for r, c in enumerate(packed.coins) if c in coins]

    def process_packed(self, batch: Dataset) -> PackedUpdate:
        """One packed update for the accounts of every actor holding one of the batch's coins."""
        self._seq += 1
        coins = {s.coin for s in batch.series if len(s) > 0}
        busy = [w for w in self.workers if w.coins & coins]
        if not busy:
            return merge([], self.order, self._layouts)
        for worker in busy:
            worker.collect_checkpoint()
        ref = ray.put(batch)  # once, whatever the number of actors
        sent = []
        for worker in busy:
            sent.append(worker.submit(("batch", self._seq, ref)))
            worker.request_checkpoint(self._seq, self.checkpoint_every_batches)
        parts = [w.result(r) for w, r in zip(busy, sent, strict=True)]
        return merge(parts, self.order, self._layouts)

    def check_health(self) -> int:
        """Ping every actor; replace any that died while idle. Returns how many were."""
        pings = [(w, w.handle.where.remote()) for w in self.workers]
        restarted = 0
        for worker, ref in pings:
            try:
                ray.get(ref, timeout=self.ping_timeout_s)
            except GetTimeoutError:
                continue  # slow, not known dead: the next call finds out
            except RayActorError:
                worker.recover(in_flight=False)
                restarted += 1
        return restarted

    def health(self) -> list[dict[str, Any]]:
        """One entry per actor; ``alive`` as of the last command or ``check_health``."""
        return [
            {
                "worker": w.index,
                "actor": w.name,
                "node": w.node_id,
                "pid": w.pid,
                "alive": w.alive,
                "accounts": len(w.ids),
                "restarts": w.restarts,
            }
            for w in self.workers
        ]

    def close(self) -> None:
        """Kill the actors, and shut Ray down if this executor started it; idempotent."""
        if self._closed:
            return
        self._closed = True
        if ray.is_initialized():
            for worker in getattr(self, "workers", []):
                try:
                    ray.kill(worker.handle, no_restart=True)
                except Exception:  # already gone
                    logger.debug("ray worker %d was already gone", worker.index)
                worker.alive = False
        if self._started_ray:
            ray.shutdown()


def _run_account(
    data: Dataset, strategy_id: str, blob: bytes, config: ExecutionConfig
) -> tuple[AccountUpdate, dict[str, Any], list[tuple[int, float]]]:
    """One account over the whole dataset: its update, its params as added, its equity curve."""
    group = AccountGroup(config)
    group.add(strategy_id, cloudpickle.loads(blob))
    update = account_update(group.process_packed(data), 0)
    return update, group.names[strategy_id][1], group.curve(strategy_id)


_remote_run_account = ray.remote(_run_account)


def backtest_on_ray(
    strategies: Sequence[Strategy],
    data: Dataset,
    config: ExecutionConfig | None = None,
    address: str | None = None,
) -> BacktestResult:
    """``run_backtest(strategies, data, config)`` with one Ray task per strategy.

    The dataset goes into the object store once; the tasks run in parallel; the portfolio is
    marked here from their updates in registration order. The result equals ``run_backtest``'s
    bit for bit (fills, ledgers, metrics, portfolio). ``address`` as for ``RayExecutor`` (None
    starts a local Ray on every core, shut down again on return).

    Raises:
        ConfigError: no strategy, or a strategy's coin is absent from the data.
        WorkerError: a task failed in the engine itself.
    """
    if not strategies:
        raise ConfigError("a backtest needs at least one strategy")
    config = config or ExecutionConfig()
    started = time.perf_counter()
    ids = strategy_ids(strategies)
    coins = list(dict.fromkeys(s.coin for s in strategies))
    seen = {s.coin for s in data.series if len(s) > 0}
    missing = [c for c in coins if c not in seen]
    if missing:
        raise ConfigError(
            f"no market data for coin(s) {', '.join(missing)}; the data has "
            f"{', '.join(sorted(seen)) or 'no rows'}"
        )
    started_ray = _connect(address, None)
    try:
        ref = ray.put(data)
        runs = ray.get([
            _remote_run_account.remote(
                ref, sid, cloudpickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL), config
            )
            for sid, s in zip(ids, strategies, strict=True)
        ])  # fmt: skip
    except RayTaskError as e:
        raise _failure("a backtest task", e) from e
    finally:
        if started_ray:
            ray.shutdown()
    updates = [u for u, _, _ in runs]
    portfolio = Portfolio(coins, config.capital * len(strategies))
    portfolio.mark(data, pack_updates(updates))
    accounts = [
        AccountResult(
            strategy_id=u.strategy_id,
            strategy=s.name,
            coin=u.coin,
            params=params,
            metrics=summarize(u.equity, u.trips, float(u.ledger[FEES])),
            ledger=LedgerSnapshot.of(u.ledger, u.last_price),
            fills=u.fills,
            equity_curve=curve,
            error=u.error,
        )
        for s, (u, params, curve) in zip(strategies, runs, strict=True)
    ]
    updates_n = sum(len(s) for s in data.series if s.coin in coins)
    return summarize_run(accounts, portfolio, updates_n, time.perf_counter() - started)
