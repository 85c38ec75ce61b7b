"""RayExecutor and backtest_on_ray on a real local Ray: determinism, user classes, actor deaths."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'velocitas[ray]')")

from velocitas.core.errors import ConfigError  # noqa: E402
from velocitas.data.sources import ReplaySource, SyntheticSource  # noqa: E402
from velocitas.data.synthetic import generate  # noqa: E402
from velocitas.engine.backtest import run_backtest  # noqa: E402
from velocitas.engine.executors.process import WorkerError  # noqa: E402
from velocitas.engine.executors.ray import RayExecutor, backtest_on_ray  # noqa: E402
from velocitas.engine.fills import ExecutionConfig  # noqa: E402
from velocitas.engine.live import HFTEngine  # noqa: E402
from velocitas.strategies.base import Strategy  # noqa: E402
from velocitas.strategies.registry import BUILTINS, create_strategy  # noqa: E402

COINS = ("BTC", "ETH")
TICKS = 20_000


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One local Ray for the whole module (start-up costs seconds)."""
    # address="local": never attach to a cluster that happens to run on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _strategies():
    return [create_strategy(n, coin=c) for c in COINS for n in BUILTINS]


def _source(batch_size: int = 2_000):
    return SyntheticSource(COINS, seed=9, total=TICKS, batch_size=batch_size)


def _data():
    return generate(TICKS, COINS, seed=9).dataset


def _reference():
    return run_backtest(_strategies(), _data())


def _assert_same_fills(a, b):
    assert [x.strategy_id for x in a.accounts] == [x.strategy_id for x in b.accounts]
    for x, y in zip(a.accounts, b.accounts, strict=True):
        for key in x.fills:
            np.testing.assert_array_equal(x.fills[key], y.fills[key], err_msg=key)
        assert x.metrics == y.metrics
        assert x.ledger == y.ledger


def _wait_for(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def test_engine_on_ray_actors_gives_fills_identical_to_the_serial_backtest():
    reference = _reference()
    with HFTEngine(num_workers=2, backend="ray") as engine:
        for s in _strategies():
            engine.register_strategy(s)
        result = engine.run(_source())
    _assert_same_fills(reference, result)
    assert result.portfolio == reference.portfolio
    assert sum(a.ledger.fills for a in result.accounts) > 100


def test_backtest_on_ray_tasks_equals_run_backtest_bit_for_bit():
    reference = _reference()
    result = backtest_on_ray(_strategies(), _data())
    _assert_same_fills(reference, result)
    for x, y in zip(reference.accounts, result.accounts, strict=True):
        assert (x.strategy, x.coin, x.params, x.error) == (y.strategy, y.coin, y.params, y.error)
        assert x.equity_curve == y.equity_curve
    assert result.portfolio == reference.portfolio
    assert result.totals == reference.totals
    assert result.portfolio_curve == reference.portfolio_curve
    assert (result.updates, result.coins) == (reference.updates, reference.coins)


def test_backtest_on_ray_without_data_for_a_coin_raises_before_starting_tasks():
    with pytest.raises(ConfigError, match="no market data for coin"):
        backtest_on_ray([create_strategy("RSI", coin="DOGE")], _data())


def test_a_custom_strategy_from_a_users_main_script_runs_on_ray_actors(tmp_path: Path):
    script = tmp_path / "user_script.py"
    script.write_text(
        textwrap.dedent("""
        from velocitas import Strategy
        from velocitas.data.sources import SyntheticSource
        from velocitas.engine.live import HFTEngine

        class EveryTen(Strategy):
            def execute(self, market_data):
                self.params["n"] = self.params.get("n", 0) + 1
                if self.params["n"] % 10 == 0:
                    return ("SELL", 1.0) if self.position > 0 else ("BUY", 1.0)
                return None

        if __name__ == "__main__":
            with HFTEngine(num_workers=2, backend="ray") as engine:
                sid = engine.register_strategy(EveryTen("EveryTen", "BTC"))
                result = engine.run(SyntheticSource(("BTC",), seed=3, total=1_000))
            print(sid, result.account(sid).ledger.fills)
    """)
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2_000:]
    assert out.stdout.split() == ["BTC_EveryTen", "99"]


@pytest.mark.parametrize(
    "checkpoint_every_batches",
    [10_000, 3],  # recovery by replaying the whole journal / from a recent checkpoint
)
def test_actors_killed_mid_run_are_replaced_and_no_fill_is_lost_or_duplicated(
    checkpoint_every_batches,
):
    reference = _reference()
    engine = HFTEngine(
        num_workers=2,
        backend="ray",
        executor_options={"checkpoint_every_batches": checkpoint_every_batches},
    )

    def batches_killing_actors():
        for i, batch in enumerate(ReplaySource(_data(), batch_size=500).batches()):
            if i in (10, 25):  # actor 0, then actor 1, each between or during batches
                actor = engine.get_metrics()["engine"]["workers"][i // 20]["actor"]
                ray.kill(ray.get_actor(actor))
            yield batch

    with engine:
        for s in _strategies():
            engine.register_strategy(s)
        result = engine.run(batches_killing_actors())
        workers = engine.get_metrics()["engine"]["workers"]
    assert [w["restarts"] for w in workers] == [1, 1]
    assert all(w["alive"] for w in workers)
    _assert_same_fills(reference, result)
    assert result.portfolio == reference.portfolio


class _PausingReplay(ReplaySource):
    """Replays the data, pausing after ``pause_at`` batches until ``resume`` is set."""

    def __init__(self, data, pause_at: int) -> None:
        super().__init__(data, batch_size=500)
        self.pause_at = pause_at
        self.paused = threading.Event()
        self.resume = threading.Event()

    def batches(self):
        for i, batch in enumerate(super().batches()):
            if i == self.pause_at:
                self.paused.set()
                self.resume.wait(30)
            yield batch


def test_a_live_engine_replaces_an_actor_killed_while_idle_and_loses_nothing():
    reference = _reference()
    source = _PausingReplay(_data(), pause_at=15)
    engine = HFTEngine(
        num_workers=2, backend="ray", executor_options={"checkpoint_every_batches": 4}
    )
    for s in _strategies():
        engine.register_strategy(s)
    engine.start(source)
    try:
        assert source.paused.wait(30)
        _wait_for(lambda: engine.get_metrics()["engine"]["lag_ticks"] == 0)
        ray.kill(ray.get_actor(engine.get_metrics()["engine"]["workers"][0]["actor"]))
        _wait_for(lambda: engine.get_metrics()["engine"]["workers"][0]["restarts"] == 1)
        source.resume.set()
        assert engine.join(60)
    finally:
        source.resume.set()
        engine.stop()
    strategies = engine.get_metrics()["strategies"]
    for account in reference.accounts:
        live = strategies[account.strategy_id]
        assert live["trades"] == account.ledger.fills
        assert live["total_pnl"] == pytest.approx(account.metrics.total_pnl, abs=1e-9)


def _restarted_by_health_checks(executor: RayExecutor, timeout_s: float = 20.0) -> int:
    """Run health checks until one replaces an actor (``ray.kill`` takes effect later)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        restarted = executor.check_health()
        if restarted:
            return restarted
        time.sleep(0.02)
    raise AssertionError("no health check found the killed actor")


def test_an_actor_killed_while_idle_is_replaced_by_the_health_check():
    data = _data()
    batches = list(ReplaySource(data, batch_size=2_000).batches())
    executor = RayExecutor(ExecutionConfig(), 2, checkpoint_every_batches=2)
    try:
        ids = [f"s{i}" for i in range(len(_strategies()))]
        for sid, s in zip(ids, _strategies(), strict=True):
            executor.add(sid, s)
        fills: dict[str, list[np.ndarray]] = {sid: [] for sid in ids}
        for i, batch in enumerate(batches):
            if i == len(batches) // 2:
                ray.kill(ray.get_actor(executor.health()[1]["actor"]))
                restarted = _restarted_by_health_checks(executor)
            for update in executor.process(batch):
                fills[update.strategy_id].append(update.fills["index"])
        health = executor.health()
    finally:
        executor.close()
    executor.close()  # idempotent
    reference = _reference()
    for sid, account in zip(ids, reference.accounts, strict=True):
        np.testing.assert_array_equal(np.concatenate(fills[sid]), account.fills["index"])
    assert [h["restarts"] for h in health] == [0, 1]
    assert restarted == 1


def test_health_reports_each_actor_with_its_accounts_and_close_kills_them():
    with HFTEngine(num_workers=2, backend="ray") as engine:
        for name in ("RSI", "MACD", "RSI"):
            engine.register_strategy(create_strategy(name, coin="BTC"))
        workers = engine.get_metrics()["engine"]["workers"]
    assert [(w["worker"], w["accounts"], w["alive"], w["restarts"]) for w in workers] == [
        (0, 2, True, 0),
        (1, 1, True, 0),
    ]
    assert len({w["actor"] for w in workers}) == 2
    assert all(w["node"] for w in workers)
    for w in workers:
        with pytest.raises(ValueError, match=w["actor"]):  # no such actor any more
            ray.get_actor(w["actor"])


class DiesInWorker(Strategy):
    """Kills any process that unpickles it (a stand-in for an actor that cannot start)."""

    def __setstate__(self, state):
        if os.getpid() != state["_owner_pid"]:
            os._exit(3)
        self.__dict__.update(state)

    def __getstate__(self):
        return {**self.__dict__, "_owner_pid": self.__dict__.get("_owner_pid", os.getpid())}

    def execute(self, market_data):
        return None


def test_an_actor_that_keeps_dying_is_given_up_with_a_clear_error():
    # By value, as if defined in a user's script: the actors cannot import this test module.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    executor = RayExecutor(ExecutionConfig(), 1)
    try:
        with pytest.raises(WorkerError, match="died 4 times"):
            executor.add("dies", DiesInWorker("Dies", "BTC"))
    finally:
        executor.close()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
