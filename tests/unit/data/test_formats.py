"""Format detection from a file's first line, and coin names from file names."""

from __future__ import annotations

import pytest

from velocitas.core.errors import DataFormatError
from velocitas.data.formats import coin_from_filename, detect_format
from velocitas.data.loaders import load, load_binance_klines, load_ohlcv, load_ticks, load_trades

from ._factories import OHLCV_HEADER, START_MS, TICKS_HEADER, TRADES_HEADER, bar_line, write


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("BTCUSDT-1m.csv.gz", "BTC"),
        ("ETHUSDT-aggTrades.csv", "ETH"),
        ("XRPETH-aggTrades.csv", "XRPETH"),
        ("BTCBUSD-1m.csv", "BTC"),
        ("SOLUSDC-trades.csv", "SOL"),
        ("BTCUSD_PERP-1m.csv", "BTC"),
        ("btcusdt-1m-2024-01.csv", "BTC"),
        ("BTC_USDT-1m.feather", "BTC"),
        ("USDCUSDT-1m.csv", "USDC"),
        ("BUSDUSDT-1m.csv", "BUSD"),
        ("USDT-1m.csv", "USDT"),
        ("1INCHUSDT-1m.csv", "1INCH"),
        ("ETH.csv", "ETH"),
        ("-1m.csv", None),
        ("_ticks.csv", None),
    ],
)
def test_coin_from_filename(name, expected):
    assert coin_from_filename(f"/some/dir/{name}") == expected


def test_detect_format_each_layout(tmp_path):
    files = {
        "ohlcv": [OHLCV_HEADER, bar_line(START_MS)],
        "ticks": [TICKS_HEADER, "BTC,1.0,1.0,1700000000.5"],
        "trades": [TRADES_HEADER, f"{START_MS},1.0,2.0,true"],
        "binance_klines": [f"{START_MS},1,2,0.5,1.5,10,{START_MS + 59_999},15,3,5,7.5,0"],
    }
    for fmt, lines in files.items():
        assert detect_format(write(tmp_path, f"BTCUSDT-{fmt}.csv", lines)) == fmt
    gz = write(tmp_path, "BTCUSDT-g.csv.gz", files["trades"], compress=True)
    assert detect_format(gz) == "trades"


def test_header_is_case_and_whitespace_tolerant_and_any_order(tmp_path):
    path = write(
        tmp_path,
        "BTCUSDT-1m.csv",
        [" Volume , CLOSE,Low ,high,Open, TimeStamp ", f"2.5,100.5,99,101,100,{START_MS}"],
    )
    series = load(path)["BTC"]
    assert series.volume.tolist() == [2.5]
    assert series.price.tolist() == [100.5]
    assert (series.open.tolist(), series.high.tolist(), series.low.tolist()) == (
        [100.0],
        [101.0],
        [99.0],
    )


def test_unknown_header_names_columns_found_and_formats_accepted(tmp_path):
    path = write(tmp_path, "BTCUSDT-x.csv", ["date,bid,ask", "2024-01-01,1,2"])
    with pytest.raises(DataFormatError) as info:
        detect_format(path)
    e = info.value
    assert e.line == 1
    assert "date,bid,ask" in e.reason
    assert "Accepted formats" in e.reason
    assert "binance_klines" in e.reason


def test_header_missing_a_column_names_it(tmp_path):
    path = write(
        tmp_path, "BTCUSDT-1m.csv", ["timestamp,open,high,low,volume", f"{START_MS},1,2,0.5,3"]
    )
    with pytest.raises(DataFormatError) as info:
        load(path)
    assert (info.value.line, info.value.column) == (1, "close")
    assert "missing column" in info.value.reason
    assert "ohlcv" in info.value.reason


def test_repeated_header_column_is_refused(tmp_path):
    path = write(tmp_path, "BTCUSDT-1m.csv", [OHLCV_HEADER + ",close", bar_line(START_MS) + ",1"])
    with pytest.raises(DataFormatError) as info:
        load(path)
    assert (info.value.line, info.value.column) == (1, "close")
    assert "repeats" in info.value.reason


def test_headerless_file_must_have_twelve_fields(tmp_path):
    path = write(tmp_path, "BTCUSDT-1m.csv", [bar_line(START_MS)])
    with pytest.raises(DataFormatError) as info:
        load(path)
    assert info.value.line == 1
    assert "12-column Binance kline dump" in info.value.reason


def test_empty_first_line_is_refused(tmp_path):
    path = write(tmp_path, "BTCUSDT-1m.csv", ["", OHLCV_HEADER, bar_line(START_MS)])
    with pytest.raises(DataFormatError) as info:
        load(path)
    assert info.value.line == 1
    assert "empty" in info.value.reason


@pytest.mark.parametrize(
    ("loader", "lines", "column"),
    [
        (load_ohlcv, [TRADES_HEADER, f"{START_MS},1,2,true"], "open"),
        (load_trades, [OHLCV_HEADER, bar_line(START_MS)], "price"),
        (load_ticks, [TRADES_HEADER, f"{START_MS},1,2,true"], "coin"),
        (load_binance_klines, [OHLCV_HEADER, bar_line(START_MS)], "open_time"),
    ],
)
def test_per_format_loader_refuses_another_format(tmp_path, loader, lines, column):
    path = write(tmp_path, "BTCUSDT-1m.csv", lines)
    with pytest.raises(DataFormatError) as info:
        loader(path)
    assert (info.value.line, info.value.column) == (1, column)
    assert "missing column" in info.value.reason


def test_per_format_loader_on_headerless_dump_names_the_expected_header(tmp_path):
    line = f"{START_MS},1,2,0.5,1.5,10,{START_MS + 59_999},15,3,5,7.5,0"
    path = write(tmp_path, "BTCUSDT-1m.csv", [line])
    with pytest.raises(DataFormatError) as info:
        load_ohlcv(path)
    assert info.value.line == 1
    assert "not the ohlcv header" in info.value.reason
    assert len(load_binance_klines(path)) == 1
