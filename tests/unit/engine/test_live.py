"""HFTEngine: determinism across backends, live consistency, faults, shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from velocitas.core.errors import ConfigError
from velocitas.data.sources import ReplaySource, SyntheticSource
from velocitas.data.synthetic import generate
from velocitas.engine.backtest import run_backtest
from velocitas.engine.live import HFTEngine
from velocitas.strategies.base import Strategy
from velocitas.strategies.registry import BUILTINS, create_strategy

COINS = ("BTC", "ETH")
TICKS = 20_000


def _strategies():
    return [create_strategy(n, coin=c) for c in COINS for n in BUILTINS]


def _source(batch_size: int = 2_000):
    return SyntheticSource(COINS, seed=9, total=TICKS, batch_size=batch_size)


def _reference():
    return run_backtest(_strategies(), generate(TICKS, COINS, seed=9).dataset)


def _assert_same_fills(a, b):
    assert [x.strategy_id for x in a.accounts] == [x.strategy_id for x in b.accounts]
    for x, y in zip(a.accounts, b.accounts, strict=True):
        for key in x.fills:
            np.testing.assert_array_equal(x.fills[key], y.fills[key], err_msg=key)
        assert x.metrics.total_pnl == y.metrics.total_pnl
        assert x.ledger == y.ledger


@pytest.mark.parametrize(("backend", "workers"), [("serial", 1), ("process", 1), ("process", 2),
                                                  ("process", 4)])  # fmt: skip
def test_fills_and_pnl_are_identical_for_every_backend_and_worker_count(backend, workers):
    reference = _reference()
    with HFTEngine(num_workers=workers, backend=backend) as engine:
        for s in _strategies():
            engine.register_strategy(s)
        result = engine.run(_source())
    _assert_same_fills(reference, result)
    assert result.portfolio == reference.portfolio
    assert sum(a.ledger.fills for a in result.accounts) > 100


def test_register_returns_coin_and_name_ids_unique_per_instance():
    engine = HFTEngine(backend="serial")
    first = engine.register_strategy(create_strategy("RSI", coin="BTC"))
    second = engine.register_strategy(create_strategy("RSI", coin="BTC"))
    assert (first, second) == ("BTC_RSI", "BTC_RSI_2")
    engine.unregister_strategy(second)
    assert list(engine.get_metrics()["strategies"]) == ["BTC_RSI"]
    with pytest.raises(ConfigError):
        engine.unregister_strategy("nope")


def _wait_for(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def test_live_snapshots_are_consistent_under_concurrent_reads():
    engine = HFTEngine(num_workers=2)
    for s in _strategies():
        engine.register_strategy(s)
    engine.start(SyntheticSource(COINS, seed=1, batch_size=64))
    bad: list[str] = []
    reads = 0

    def reader():
        nonlocal reads
        while engine.get_metrics()["engine"]["running"] and reads < 2_000:
            m = engine.get_metrics()
            strategies = m["strategies"].values()
            for key in ("total_pnl", "realized_pnl", "fees_paid", "trades"):
                total = sum(s[key] for s in strategies)
                if total != m["global"][key]:
                    bad.append(f"{key}: global {m['global'][key]} != sum {total}")
            reads += 1

    try:
        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        _wait_for(lambda: engine.get_metrics()["global"]["trades"] > 200)
        time.sleep(0.5)
    finally:
        engine.stop()
    for t in threads:
        t.join()
    assert not bad, bad[:3]
    assert reads > 50
    metrics = engine.get_metrics()
    assert metrics["engine"]["ticks_in"] == metrics["engine"]["ticks_processed"]
    assert metrics["engine"]["queue_depth"] == 0
    assert metrics["engine"]["oldest_unprocessed_age_ms"] == 0.0
    trades = engine.get_trades(limit=50)
    assert len(trades) == 50
    assert [t["timestamp"] for t in trades] == sorted((t["timestamp"] for t in trades),
                                                      reverse=True)  # fmt: skip
    assert set(trades[0]) == {"timestamp", "side", "price", "quantity", "fee", "strategy_id",
                              "coin"}  # fmt: skip
    assert engine.get_pnl_history()


@pytest.mark.parametrize(
    "checkpoint_interval_s",
    [60.0, 0.01],  # recovery by replaying the whole journal / from a recent checkpoint
)
def test_killed_worker_is_restarted_and_nothing_is_lost_or_duplicated(checkpoint_interval_s):
    reference = _reference()
    data = generate(TICKS, COINS, seed=9).dataset
    engine = HFTEngine(
        num_workers=2, executor_options={"checkpoint_interval_s": checkpoint_interval_s}
    )
    for s in _strategies():
        engine.register_strategy(s)
    engine.start(ReplaySource(data, speed=None, batch_size=50))
    _wait_for(lambda: engine.get_metrics()["engine"]["ticks_processed"] > 2_000)
    victim = engine.get_metrics()["engine"]["workers"][0]["pid"]
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    _wait_for(lambda: engine.get_metrics()["engine"]["workers"][0]["restarts"] == 1, 5.0)
    detected_s = time.monotonic() - killed_at
    assert engine.join(60)
    engine.stop()
    assert detected_s < 1.0 + 2.0  # detection is immediate; a new process needs ~1-2 s to boot
    m = engine.get_metrics()
    for account in reference.accounts:
        live = m["strategies"][account.strategy_id]
        assert live["trades"] == account.ledger.fills
        assert live["total_pnl"] == pytest.approx(account.metrics.total_pnl, abs=1e-9)
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == "zombie"


class Raising(Strategy):
    def execute(self, market_data):
        if market_data.price > 0 and self.params.get("armed"):
            raise RuntimeError("strategy bug")
        return None


def test_a_raising_strategy_is_marked_errored_and_the_others_go_on():
    engine = HFTEngine(num_workers=2)
    bad = engine.register_strategy(Raising("Raising", "BTC", armed=True))
    good = engine.register_strategy(create_strategy("MACD", coin="BTC"))
    result = engine.run(SyntheticSource(("BTC",), seed=2, total=5_000, batch_size=1_000))
    engine.close()
    m = engine.get_metrics()["strategies"]
    assert m[bad]["status"] == "errored"
    assert "strategy bug" in m[bad]["error"]
    assert m[good]["status"] == "active"
    assert result.account(good).ledger.fills > 0


def test_lag_is_reported_when_workers_fall_behind():
    engine = HFTEngine(num_workers=1, queue_size=4, max_batch=64)
    engine.register_strategy(Slow("Slow", "BTC"))
    engine.start(SyntheticSource(("BTC",), seed=1, batch_size=64, total=2_000))
    _wait_for(lambda: engine.get_metrics()["engine"]["queue_depth"] >= 3)
    lagging = engine.get_metrics()["engine"]
    assert lagging["oldest_unprocessed_age_ms"] > 0.0
    assert lagging["lag_ticks"] > 0
    assert engine.join(120)
    engine.stop()
    done = engine.get_metrics()["engine"]
    assert done["ticks_processed"] == done["ticks_in"] == 2_000  # nothing dropped


class Slow(Strategy):
    def execute(self, market_data):
        time.sleep(0.0005)
        return None


def test_stop_shuts_every_worker_down():
    engine = HFTEngine(num_workers=2)
    engine.register_strategy(create_strategy("RSI", coin="BTC"))
    engine.start("synthetic", coins=["BTC"], rate_per_s=5_000)
    _wait_for(lambda: engine.get_metrics()["engine"]["ticks_processed"] > 100)
    pids = [w["pid"] for w in engine.get_metrics()["engine"]["workers"]]
    engine.stop()
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def test_a_custom_strategy_from_a_users_main_script_runs_on_worker_processes(tmp_path: Path):
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
            with HFTEngine(num_workers=2) as engine:
                sid = engine.register_strategy(EveryTen("EveryTen", "BTC"))
                result = engine.run(SyntheticSource(("BTC",), seed=3, total=1_000))
            print(sid, result.account(sid).ledger.fills)
    """)
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, check=True)  # fmt: skip
    assert out.stdout.split() == ["BTC_EveryTen", "99"]


def test_ctrl_c_in_a_user_script_leaves_no_worker_behind(tmp_path: Path):
    script = tmp_path / "interrupted.py"
    script.write_text(
        textwrap.dedent("""
        import time
        from velocitas.engine.live import HFTEngine
        from velocitas.strategies.registry import create_strategy

        if __name__ == "__main__":
            engine = HFTEngine(num_workers=2)
            engine.register_strategy(create_strategy("RSI", coin="BTC"))
            engine.start("synthetic", coins=["BTC"])
            print(" ".join(str(w["pid"]) for w in engine.get_metrics()["engine"]["workers"]),
                  flush=True)
            try:
                time.sleep(60)
            except KeyboardInterrupt:
                engine.stop()
                print("stopped", flush=True)
    """)
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=60)[0]
    assert "stopped" in rest
    time.sleep(0.2)
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


class DiesInWorker(Strategy):
    """Kills any process that unpickles it (a stand-in for a worker that cannot start)."""

    def __setstate__(self, state):
        if os.getpid() != state["_owner_pid"]:
            os._exit(3)
        self.__dict__.update(state)

    def __getstate__(self):
        return {**self.__dict__, "_owner_pid": self.__dict__.get("_owner_pid", os.getpid())}

    def execute(self, market_data):
        return None


def test_a_worker_that_keeps_dying_is_given_up_with_a_clear_error():
    from velocitas.engine.executors.process import WorkerError

    engine = HFTEngine(num_workers=1)
    try:
        with pytest.raises(WorkerError, match="died 4 times"):
            engine.register_strategy(DiesInWorker("Dies", "BTC"))
    finally:
        engine.close()
