"""Data sources by name, as HFTEngine.start and the API take them."""

from __future__ import annotations

import pytest

from velocitas.core.errors import ConfigError
from velocitas.data.sources import ReplaySource, SyntheticSource
from velocitas.engine.live import HFTEngine
from velocitas.engine.source_factory import make_source
from velocitas.strategies.registry import create_strategy


def test_synthetic_by_name_defaults_to_a_paced_stream():
    source = make_source("synthetic", ["BTC", "ETH"])
    assert isinstance(source, SyntheticSource)
    assert source.rate_per_s == 1_000.0
    assert source.coins == ["BTC", "ETH"]


def test_replay_by_name_loads_a_file_and_keeps_the_asked_coins(shared_file):
    path = shared_file("BTC-ticks-seed-format.csv")
    source = make_source("replay", ["BTC"], dataset=str(path), speed=None)
    assert isinstance(source, ReplaySource)
    assert sum(len(b) for b in source.batches()) == 5_000


@pytest.mark.parametrize(
    ("name", "coins", "options", "message"),
    [
        ("nope", ["BTC"], {}, "unknown data_source 'nope'"),
        ("replay", ["BTC"], {}, "needs dataset="),
        ("synthetic", ["BTC"], {"speed": 3}, "synthetic source"),
    ],
)
def test_bad_sources_are_config_errors(name, coins, options, message):
    with pytest.raises(ConfigError, match=message):
        make_source(name, coins, **options)


def test_replay_of_a_coin_the_file_lacks_is_refused(shared_file):
    path = shared_file("BTC-ticks-seed-format.csv")
    with pytest.raises(ConfigError, match="replay dataset has no ETH"):
        make_source("replay", ["ETH"], dataset=str(path))


def test_engine_starts_a_named_replay_and_processes_it_all(shared_file):
    path = shared_file("BTC-ticks-seed-format.csv")
    engine = HFTEngine(backend="serial", record=False)
    engine.register_strategy(create_strategy("RSI", coin="BTC", period=5))
    engine.start("replay", coins=["BTC"], dataset=str(path))
    assert engine.join(30)
    engine.stop()
    assert engine.get_metrics()["engine"]["ticks_processed"] == 5_000
