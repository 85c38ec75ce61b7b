"""Live sessions are recorded, and replaying a recording reproduces the live fills exactly."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from typer.testing import CliRunner

from velocitas.cli.main import app
from velocitas.data.sources import ReplaySource
from velocitas.data.synthetic import generate
from velocitas.engine.live import HFTEngine
from velocitas.engine.parity import replay_session
from velocitas.strategies.base import Strategy
from velocitas.strategies.registry import BUILTINS, create_strategy


class Alternating(Strategy):
    """A user strategy: buys on every 25th update, sells on the next 25th."""

    def __init__(self, name: str, coin: str) -> None:
        super().__init__(name, coin)
        self.n = 0

    def reset(self) -> None:
        super().reset()
        self.n = 0

    def execute(self, market_data):
        self.n += 1
        if self.n % 25:
            return None
        return ("SELL", self.position) if self.position > 0 else ("BUY", 0.5)


def _record_session(tmp_path: Path, backend: str = "process", **engine_options) -> Path:
    data = generate(6_000, ("BTC", "ETH"), seed=4).dataset
    engine = HFTEngine(num_workers=2, backend=backend, data_dir=tmp_path, **engine_options)
    for coin in ("BTC", "ETH"):
        for name in BUILTINS:
            engine.register_strategy(create_strategy(name, coin=coin))
    engine.register_strategy(Alternating("Alternating", "BTC"))
    engine.start(ReplaySource(data, batch_size=37))
    assert engine.join(120)
    engine.stop()
    assert engine.session_dir is not None
    return engine.session_dir


def test_a_live_session_is_recorded_and_replays_to_identical_fills(tmp_path):
    session = _record_session(tmp_path)
    meta = json.loads((session / "session.json").read_text())
    assert meta["updates"] == 12_000
    assert len(meta["strategies"]) == 13
    assert sorted(p.name for p in session.glob("feed-*.csv.gz")) == ["feed-00001.csv.gz"]
    report = replay_session(session)
    assert report.updates == 12_000
    assert report.identical
    assert all(s.compared for s in report.strategies)
    assert sum(s.live_fills for s in report.strategies) > 100
    for s in report.strategies:
        assert s.live_fills == s.replay_fills
        assert s.pnl_gap == 0.0


def test_feed_segments_rotate_by_size_and_still_replay(tmp_path):
    session = _record_session(tmp_path, backend="serial", record_segment_bytes=20_000)
    segments = sorted(session.glob("feed-*.csv.gz"))
    assert len(segments) > 3
    # a segment closes at the first flush past the limit: at most one flush (<= 1 batch) over
    assert all(p.stat().st_size < 200_000 for p in segments)
    report = replay_session(session)
    assert report.updates == 12_000
    assert report.identical


def test_a_tampered_recording_is_reported_as_a_mismatch(tmp_path):
    session = _record_session(tmp_path, backend="serial", record_segment_bytes=1 << 30)
    fills = session / "fills.csv.gz"
    lines = gzip.decompress(fills.read_bytes()).decode().splitlines()
    lines.pop(5)  # a live fill the replay will not find
    fills.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    report = replay_session(session)
    assert not report.identical
    result = CliRunner().invoke(app, ["replay", str(session), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["identical"] is False


def test_replay_cli_prints_the_parity_report(tmp_path):
    session = _record_session(tmp_path, backend="serial")
    result = CliRunner().invoke(app, ["replay", str(session), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["identical"] is True
    assert {s["strategy_id"] for s in report["strategies"]} >= {"BTC_RSI", "BTC_Alternating"}
    table = CliRunner().invoke(app, ["replay", str(session)])
    assert table.exit_code == 0
    assert "BTC_Alternating" in table.output


def test_replay_of_something_that_is_not_a_session_exits_2(tmp_path):
    result = CliRunner().invoke(app, ["replay", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a session recording" in result.stderr


def test_recording_can_be_switched_off(tmp_path):
    engine = HFTEngine(backend="serial", record=False, data_dir=tmp_path)
    engine.register_strategy(create_strategy("RSI", coin="BTC"))
    engine.start(ReplaySource(generate(500, ("BTC",), seed=1).dataset))
    assert engine.join(30)
    engine.stop()
    assert engine.session_dir is None
    assert not (tmp_path / "sessions").exists()
