"""Loading the real data files and the layouts around them: every format, gzip, zip, coins."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pytest

from velocitas.core.errors import DataFormatError
from velocitas.core.models import Dataset
from velocitas.data.formats import detect_format
from velocitas.data.loaders import load, load_binance_klines, load_ohlcv, load_ticks, load_trades

from ._factories import START_MS, TICKS_HEADER, ohlcv_lines, tick_line, write


def _raw_rows(path: Path) -> list[list[str]]:
    """The file's data rows as split strings (the oracle the loaders are checked against)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return [line.rstrip("\n").split(",") for line in f][1:]


def _assert_same_data(a: Dataset, b: Dataset) -> None:
    assert a.coins == b.coins
    for x, y in zip(a.series, b.series, strict=True):
        for name in ("timestamp_ms", "price", "volume", "open", "high", "low"):
            u, v = getattr(x, name), getattr(y, name)
            assert (u is None) == (v is None), name
            if u is not None:
                np.testing.assert_array_equal(u, v, err_msg=name)


@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("BTCUSDT-1m.csv.gz", 130_708),
        ("ETHUSDT-1m.csv.gz", 130_708),
        ("SOLUSDT-1m.csv.gz", 105_371),
        ("BNBUSDT-1m.csv.gz", 105_719),
        ("XRPUSDT-1m.csv.gz", 106_859),
        ("ADAUSDT-1m.csv.gz", 106_857),
    ],
)
def test_real_klines_load_with_readme_row_counts(shared_file, name, rows):
    path = shared_file(name)
    ds = load(path)
    assert detect_format(path) == "ohlcv"
    assert ds.coins == [name.split("USDT")[0]]
    s = ds.series[0]
    assert len(s) == rows
    assert s.is_bars
    assert s.timestamp_ms.dtype == np.int64
    assert s.price.dtype == np.float64
    assert np.all(np.diff(s.timestamp_ms) > 0)
    assert np.all(s.timestamp_ms % 60_000 == 0)


def test_real_btc_klines_match_the_raw_file(shared_file):
    path = shared_file("BTCUSDT-1m.csv.gz")
    raw = _raw_rows(path)
    s = load(path)["BTC"]
    assert s.timestamp_ms[0] == 1_747_699_200_000  # 2025-05-20 00:00 UTC
    assert np.all(np.diff(s.timestamp_ms) == 60_000)  # the README: no gaps
    for i in (0, 1, 65_432, len(raw) - 1):
        ts, o, h, low, c, v = raw[i]
        assert s.timestamp_ms[i] == int(ts)
        assert (s.open[i], s.high[i], s.low[i]) == (float(o), float(h), float(low))
        assert (s.price[i], s.volume[i]) == (float(c), float(v))


def test_real_trades_load_every_row_including_identical_ones(shared_file):
    path = shared_file("BTCUSDT-trades.csv")
    raw = _raw_rows(path)
    ds = load_trades(path)
    s = ds["BTC"]
    assert detect_format(path) == "trades"
    assert len(s) == 19_904
    assert not s.is_bars
    for i in (0, 9_999, 19_903):
        assert s.timestamp_ms[i] == int(raw[i][0])
        assert (s.price[i], s.volume[i]) == (float(raw[i][1]), float(raw[i][2]))
    same_ms = np.count_nonzero(np.diff(s.timestamp_ms) == 0)
    assert same_ms > 0  # several trades per millisecond are kept, not rejected


def test_real_agg_trades_keep_the_identical_pair(shared_file):
    s = load(shared_file("BTCUSDT-aggTrades.csv"))["BTC"]
    assert len(s) == 11_349
    # Lines 5332 and 5335 are identical real rows (two taker orders, same millisecond).
    a, b = 5332 - 2, 5335 - 2
    assert (s.timestamp_ms[a], s.price[a], s.volume[a]) == (
        s.timestamp_ms[b],
        s.price[b],
        s.volume[b],
    )


@pytest.mark.parametrize(
    ("name", "coin", "rows"),
    [
        ("ETHUSDT-trades.csv", "ETH", 14_515),
        ("ETHUSDT-aggTrades.csv", "ETH", 7_396),
        ("XRPETH-aggTrades.csv", "XRPETH", 12_477),
    ],
)
def test_real_trade_files_row_counts_and_coin_from_name(shared_file, name, coin, rows):
    ds = load(shared_file(name))
    assert ds.coins == [coin]
    assert len(ds) == rows


def test_real_seed_tick_file_converts_seconds_to_ms(shared_file):
    path = shared_file("BTC-ticks-seed-format.csv")
    ds = load_ticks(path)
    assert detect_format(path) == "ticks"
    assert ds.coins == ["BTC"]
    s = ds["BTC"]
    assert len(s) == 5_000
    assert s.timestamp_ms[0] == 1_723_161_255_342
    # The README: the first 5,000 rows of the aggTrades file, timestamps in seconds.
    agg = load(shared_file("BTCUSDT-aggTrades.csv"))["BTC"]
    np.testing.assert_array_equal(s.timestamp_ms, agg.timestamp_ms[:5_000])
    np.testing.assert_array_equal(s.price, agg.price[:5_000])
    np.testing.assert_array_equal(s.volume, agg.volume[:5_000])


def _binance_dump(src: Path, dst: Path, *, micros: bool, header: bool = False) -> Path:
    """Binance's 12-column kline CSV built from the freqtrade-style OHLCV file."""
    unit = 1000 if micros else 1
    out = []
    if header:
        out.append(
            "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
            "taker_buy_volume,taker_buy_quote_volume,ignore"
        )
    for ts, o, h, low, c, v in _raw_rows(src):
        open_time = int(ts) * unit
        close_time = open_time + 60_000 * unit - 1
        quote = float(c) * float(v)
        out.append(f"{open_time},{o},{h},{low},{c},{v},{close_time},{quote:.8f},7,{v},0,0")
    dst.write_text("\n".join(out) + "\n")
    return dst


@pytest.mark.parametrize("micros", [False, True], ids=["ms", "us"])
def test_binance_dump_loads_identically_to_the_ohlcv_file(shared_file, tmp_path, micros):
    src = shared_file("BTCUSDT-1m.csv.gz")
    dump = _binance_dump(src, tmp_path / "BTCUSDT-1m-2025-05.csv", micros=micros)
    assert detect_format(dump) == "binance_klines"
    _assert_same_data(load_binance_klines(dump), load_ohlcv(src))


def test_binance_dump_with_futures_header_and_gzip(shared_file, tmp_path):
    src = shared_file("BTCUSDT-1m.csv.gz")
    plain = _binance_dump(src, tmp_path / "BTCUSDT-1m.csv", micros=False, header=True)
    gz = tmp_path / "BTCUSDT-1m-h.csv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=1))
    assert detect_format(gz) == "binance_klines"
    _assert_same_data(load(gz), load(src))


def test_multi_coin_ticks_split_per_coin_in_first_appearance_order(tmp_path):
    lines = [
        TICKS_HEADER,
        tick_line("eth", 2000.5, 1.0, 1700000000.001),
        tick_line("BTC", 30000.0, 0.5, 1699999999.0),  # earlier than ETH's: other coin, fine
        tick_line("ETH", 2001.0, 2.0, 1700000000.001),  # equal timestamp: allowed for ticks
        tick_line(" sol ", 100.0, 3.0, 1700000001.25),
        tick_line("BTC", 30001.0, 0.25, 1700000002.0),
    ]
    ds = load(write(tmp_path, "mixed.csv", lines))
    assert ds.coins == ["ETH", "BTC", "SOL"]
    assert ds["ETH"].timestamp_ms.tolist() == [1_700_000_000_001, 1_700_000_000_001]
    assert ds["BTC"].price.tolist() == [30000.0, 30001.0]
    assert ds["BTC"].timestamp_ms.tolist() == [1_699_999_999_000, 1_700_000_002_000]
    assert ds["SOL"].volume.tolist() == [3.0]


def test_coin_argument_selects_one_coin_of_a_multi_coin_file(tmp_path):
    lines = [TICKS_HEADER, tick_line("ETH", 1, 1, 1.7e9), tick_line("BTC", 2, 2, 1.7e9 + 1)]
    path = write(tmp_path, "mixed.csv", lines)
    assert load(path, coin="btc").coins == ["BTC"]
    assert len(load(path, coin="DOGE")) == 0


def test_coin_argument_wins_over_the_file_name(tmp_path):
    path = write(tmp_path, "BTCUSDT-1m.csv", ohlcv_lines(3))
    assert load(path).coins == ["BTC"]
    assert load(path, coin="eth").coins == ["ETH"]


def test_file_without_coin_in_name_or_column_needs_coin_argument(tmp_path):
    path = write(tmp_path, "_bars.csv", ohlcv_lines(3))
    with pytest.raises(DataFormatError, match="pass coin="):
        load(path)
    assert load(path, coin="SOL").coins == ["SOL"]


def test_optional_coin_column_in_ohlcv_splits_bars_per_coin(tmp_path):
    lines = [
        "coin,timestamp,open,high,low,close,volume",
        f"BTC,{START_MS},1,2,0.5,1.5,1",
        f"ETH,{START_MS},1,2,0.5,1.5,1",
        f"BTC,{START_MS + 60_000},1,2,0.5,1.5,1",
    ]
    ds = load(write(tmp_path, "bars.csv", lines))
    assert ds.coins == ["BTC", "ETH"]
    assert len(ds["BTC"]) == 2
    assert ds["BTC"].is_bars


@pytest.mark.parametrize(
    "timestamps",
    [
        ["1700000000", "1700000060.0"],  # seconds
        ["1700000000000", "1700000060000"],  # milliseconds
        ["1700000000000000", "1700000060000000"],  # microseconds
    ],
    ids=["s", "ms", "us"],
)
def test_ohlcv_timestamp_units_are_detected(tmp_path, timestamps):
    lines = ["timestamp,open,high,low,close,volume"] + [f"{t},1,2,0.5,1.5,1" for t in timestamps]
    s = load(write(tmp_path, "BTCUSDT-1m.csv", lines))["BTC"]
    assert s.timestamp_ms.tolist() == [1_700_000_000_000, 1_700_000_060_000]


def test_gzip_detected_by_magic_bytes_and_crlf_and_quotes_accepted(tmp_path):
    lines = ohlcv_lines(4)
    lines[2] = '"1700000060000","100.0","101.0","99.0","100.5","1.0"'
    plain = load(write(tmp_path, "BTCUSDT-1m.csv", lines))
    disguised = write(tmp_path, "BTCUSDT-1m.dat", lines, compress=True, eol="\r\n")
    _assert_same_data(load(disguised), plain)


def test_file_named_gz_that_is_not_gzip_is_refused(tmp_path):
    path = write(tmp_path, "BTCUSDT-1m.csv.gz", ohlcv_lines(2))
    with pytest.raises(DataFormatError, match="not gzip"):
        load(path)


def test_zip_archive_with_one_csv_loads(tmp_path):
    plain = write(tmp_path, "BTCUSDT-1m.csv", ohlcv_lines(5))
    archive = tmp_path / "BTCUSDT-1m-2024-01.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(plain, "BTCUSDT-1m-2024-01.csv")
    _assert_same_data(load(archive), load(plain))
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("second.csv", "x")
    with pytest.raises(DataFormatError, match="exactly one CSV"):
        load(archive)


def test_dataset_arrays_are_writable_and_owned(tmp_path):
    s = load(write(tmp_path, "BTCUSDT-1m.csv", ohlcv_lines(3)))["BTC"]
    for a in (s.timestamp_ms, s.price, s.volume, s.open, s.high, s.low):
        assert a.flags.writeable
        assert a.flags.c_contiguous


def test_public_api_is_importable_from_the_package():
    import velocitas
    from velocitas import data

    expected = {
        "load",
        "iter_chunks",
        "detect_format",
        "coin_from_filename",
        "load_ticks",
        "load_ohlcv",
        "load_binance_klines",
        "load_trades",
        "generate",
        "iter_synthetic",
        "SyntheticData",
        "sample_paths",
    }
    assert expected <= set(data.__all__)
    assert velocitas.load is load
