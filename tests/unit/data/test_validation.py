"""Bad files: each rule names the physical line, the column and the reason; nothing partial."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from velocitas.core.errors import DataFormatError
from velocitas.data import validation
from velocitas.data.loaders import iter_chunks, load
from velocitas.data.validation import to_epoch_ms

from ._factories import (
    MINUTE_MS,
    START_MS,
    TICKS_HEADER,
    TRADES_HEADER,
    bar_line,
    ohlcv_lines,
    replace_line,
    tick_line,
    write,
)

T5 = START_MS + 3 * MINUTE_MS  # the timestamp line 5 holds in ohlcv_lines()

# (case id, physical line 5 replaced by, column, key phrase of the reason)
BAD_BAR_LINES = [
    ("non-numeric", f"{T5},100,abc,99,100,1", "high", "not a number: 'abc'"),
    ("digit separator", f"{T5},100,1_01,99,100,1", "high", "not a number"),
    ("empty value", f"{T5},100,,99,100,1", "high", "empty value"),
    ("nan", bar_line(T5, close="nan"), "close", "NaN"),
    ("inf", bar_line(T5, volume="inf"), "volume", "inf"),
    ("overflow to inf", bar_line(T5, open_="1e400"), "open", "inf"),
    ("zero price", bar_line(T5, open_=0), "open", "must be > 0"),
    ("negative price", bar_line(T5, low=-99), "low", "must be > 0"),
    ("negative volume", bar_line(T5, volume=-1), "volume", "negative volume"),
    ("duplicate bar", bar_line(T5 - MINUTE_MS), "timestamp", "duplicate bar"),
    ("decreasing", bar_line(T5 - 2 * MINUTE_MS), "timestamp", "goes back in time"),
    ("high below body", bar_line(T5, high=100.25), "high", "below max(open, close)"),
    ("low above body", bar_line(T5, low=100.25), "low", "above min(open, close)"),
    ("too few fields", f"{T5},100,101,99,100.5", "volume", "wrong number of fields"),
    ("too many fields", bar_line(T5) + ",7", None, "wrong number of fields"),
    ("negative time", bar_line(-5), "timestamp", "negative timestamp"),
    ("nanoseconds", bar_line(T5 * 1_000_000), "timestamp", "nanoseconds"),
    ("whitespace line", "   ", "open", "wrong number of fields"),
]


@pytest.mark.parametrize(
    ("text", "column", "phrase"),
    [case[1:] for case in BAD_BAR_LINES],
    ids=[case[0] for case in BAD_BAR_LINES],
)
@pytest.mark.parametrize("compress", [False, True], ids=["csv", "gz"])
def test_bad_bar_row_names_line_column_and_reason(tmp_path, text, column, phrase, compress):
    lines = replace_line(ohlcv_lines(12), 5, text)
    path = write(tmp_path, "BTCUSDT-1m.csv", lines, compress=compress)
    with pytest.raises(DataFormatError) as info:
        load(path)  # raises: nothing partial is returned
    e = info.value
    assert (e.line, e.column) == (5, column)
    assert phrase in e.reason
    assert str(path) in str(e)
    assert "line 5" in str(e)


@pytest.mark.parametrize("chunk_rows", [1, 3, 1_000])
def test_streamed_chunks_report_the_same_line(tmp_path, chunk_rows):
    for _, text, column, phrase in BAD_BAR_LINES:
        path = write(tmp_path, "BTCUSDT-1m.csv", replace_line(ohlcv_lines(12), 5, text))
        with pytest.raises(DataFormatError) as info:
            list(iter_chunks(path, chunk_rows=chunk_rows))
        assert (info.value.line, info.value.column) == (5, column)
        assert phrase in info.value.reason


@pytest.mark.parametrize("block_rows", [1, 2, 3])
def test_rules_and_order_hold_across_validation_blocks(tmp_path, monkeypatch, block_rows):
    monkeypatch.setattr(validation, "_BLOCK_ROWS", block_rows)
    for _, text, column, phrase in BAD_BAR_LINES:
        path = write(tmp_path, "BTCUSDT-1m.csv", replace_line(ohlcv_lines(12), 5, text))
        with pytest.raises(DataFormatError) as info:
            load(path)
        assert (info.value.line, info.value.column) == (5, column)
        assert phrase in info.value.reason
    # Line 4 (row 2) opens a block when blocks hold 1 or 2 rows: the order check carries.
    lines = replace_line(ohlcv_lines(12), 4, bar_line(START_MS + MINUTE_MS))
    with pytest.raises(DataFormatError, match="duplicate bar") as info:
        load(write(tmp_path, "ETHUSDT-1m.csv", lines))
    assert info.value.line == 4
    assert len(load(write(tmp_path, "SOLUSDT-1m.csv", ohlcv_lines(12)))) == 12


def test_empty_file_and_header_only_are_refused(tmp_path):
    empty = write(tmp_path, "BTCUSDT-1m.csv", [])
    with pytest.raises(DataFormatError, match="empty") as info:
        load(empty)
    assert info.value.line is None
    header_only = write(tmp_path, "ETHUSDT-1m.csv", [*ohlcv_lines(0), ""])
    with pytest.raises(DataFormatError, match="no data rows"):
        load(header_only)
    with pytest.raises(DataFormatError, match="no data rows"):
        list(iter_chunks(header_only))


def test_blank_lines_are_skipped_and_lines_stay_physical(tmp_path):
    lines = ohlcv_lines(8)
    lines[3:3] = ["", ""]  # lines 4 and 5 are blank; bar 2 moves to line 6
    lines = replace_line(lines, 9, bar_line(START_MS + 5 * MINUTE_MS, volume=-2))
    path = write(tmp_path, "BTCUSDT-1m.csv", lines)
    with pytest.raises(DataFormatError) as info:
        load(path)
    assert (info.value.line, info.value.column) == (9, "volume")
    good = write(tmp_path, "ETHUSDT-1m.csv", [*ohlcv_lines(3), "", "", bar_line(START_MS * 2)])
    assert len(load(good)) == 4


def test_first_error_in_the_file_wins_whatever_its_kind(tmp_path):
    value_first = replace_line(ohlcv_lines(12), 4, bar_line(START_MS + 2 * MINUTE_MS, volume=-1))
    value_first = replace_line(value_first, 9, "x,1,2,3,4,5")
    with pytest.raises(DataFormatError) as info:
        load(write(tmp_path, "BTCUSDT-1m.csv", value_first))
    assert (info.value.line, info.value.column) == (4, "volume")

    parse_first = replace_line(ohlcv_lines(12), 4, "x,1,2,3,4,5")
    parse_first = replace_line(parse_first, 9, bar_line(START_MS, volume=-1))
    with pytest.raises(DataFormatError) as info:
        load(write(tmp_path, "ETHUSDT-1m.csv", parse_first))
    assert (info.value.line, info.value.column) == (4, "timestamp")


def test_tick_order_is_per_coin_and_equal_timestamps_pass(tmp_path):
    lines = [
        TICKS_HEADER,
        tick_line("BTC", 1, 1, 100.0),
        tick_line("ETH", 1, 1, 50.0),  # earlier, but another coin
        tick_line("BTC", 1, 1, 100.0),  # same ms, same values: a real identical trade
        tick_line("ETH", 1, 1, 49.999),  # ETH goes back 1 ms: line 5
    ]
    with pytest.raises(DataFormatError) as info:
        load(write(tmp_path, "ticks.csv", lines))
    assert (info.value.line, info.value.column) == (5, "timestamp")
    assert "ETH" in info.value.reason
    assert "goes back in time" in info.value.reason


def test_tick_with_empty_coin_label_is_refused(tmp_path):
    lines = [TICKS_HEADER, tick_line("BTC", 1, 1, 100.0), tick_line(" ", 1, 1, 101.0)]
    with pytest.raises(DataFormatError) as info:
        load(write(tmp_path, "ticks.csv", lines))
    assert (info.value.line, info.value.column) == (3, "coin")


def test_trades_reject_non_positive_price_with_the_file_column_name(tmp_path):
    lines = [TRADES_HEADER, f"{START_MS},10,1,true", f"{START_MS},-10,1,false"]
    with pytest.raises(DataFormatError) as info:
        load(write(tmp_path, "BTCUSDT-trades.csv", lines))
    assert (info.value.line, info.value.column) == (3, "price")
    lines[2] = f"{START_MS},10,-1,false"
    with pytest.raises(DataFormatError) as info:
        load(write(tmp_path, "BTCUSDT-trades.csv", lines))
    assert (info.value.line, info.value.column) == (3, "qty")


def test_binance_dump_reports_its_own_column_names(tmp_path):
    row = "{t},1,2,0.5,1.5,10,{c},15,3,5,7.5,0"
    lines = [row.format(t=START_MS, c=START_MS + 59_999), row.format(t=START_MS, c=0)]
    with pytest.raises(DataFormatError) as info:
        load(write(tmp_path, "BTCUSDT-1m.csv", lines))
    assert (info.value.line, info.value.column) == (2, "open_time")
    assert "duplicate bar" in info.value.reason


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=100_000_000_001, max_value=99_999_999_999_999))
def test_epoch_units_convert_to_the_same_millisecond(ms):
    # From March 1973 to the year 5138 each instant has one reading in each unit (1e11 ms
    # itself would be 1e14 us, the top of the millisecond band).
    seconds = float(f"{ms // 1000}.{ms % 1000:03d}")  # as written in a tick file
    raw = np.array([seconds, float(ms), float(ms) * 1000.0])
    assert to_epoch_ms(raw).tolist() == [ms, ms, ms]


def test_epoch_seconds_round_rather_than_truncate():
    assert to_epoch_ms(np.array([1723161255.342, 1723161255.3429])).tolist() == [
        1_723_161_255_342,
        1_723_161_255_343,
    ]


def test_bom_before_a_headerless_dump_keeps_line_numbers(tmp_path):
    row = "{t},1,2,0.5,{c},10,{t2},15,3,5,7.5,0"
    lines = [
        "\ufeff" + row.format(t=START_MS, c=1.5, t2=START_MS + 59_999),
        row.format(t=START_MS + MINUTE_MS, c="x", t2=START_MS + 119_999),
    ]
    path = write(tmp_path, "BTCUSDT-1m.csv", lines)
    with pytest.raises(DataFormatError) as info:
        load(path)
    assert (info.value.line, info.value.column) == (2, "close")
    lines[1] = row.format(t=START_MS + MINUTE_MS, c=1.5, t2=START_MS + 119_999)
    assert load(write(tmp_path, "ETHUSDT-1m.csv", lines))["ETH"].timestamp_ms[0] == START_MS
