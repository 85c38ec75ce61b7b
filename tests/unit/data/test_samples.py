"""The sample files shipped in the package."""

from __future__ import annotations

from velocitas.data.loaders import load
from velocitas.data.samples import sample_paths


def test_sample_paths_are_the_packaged_btc_and_eth_klines():
    paths = sample_paths()
    assert [p.name for p in paths] == ["BTCUSDT-1m-sample.csv.gz", "ETHUSDT-1m-sample.csv.gz"]
    for path, coin in zip(paths, ["BTC", "ETH"], strict=True):
        ds = load(path)
        assert ds.coins == [coin]
        assert len(ds) == 4_320
        assert ds.series[0].is_bars
