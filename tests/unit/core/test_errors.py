"""The exception tree and its messages."""

from __future__ import annotations

from velocitas.core.errors import (
    ConfigError,
    DataError,
    DataFormatError,
    StrategyError,
    VelocitasError,
)


def test_data_format_error_names_file_line_and_column():
    e = DataFormatError("prices.csv", "not a number: 'abc'", line=7, column="close")
    assert str(e) == "prices.csv, line 7, column 'close': not a number: 'abc'"
    assert (e.path, e.line, e.column) == ("prices.csv", 7, "close")
    assert isinstance(e, DataError)
    assert isinstance(e, VelocitasError)


def test_data_format_error_for_the_whole_file():
    assert str(DataFormatError("x.csv", "empty file")) == "x.csv: empty file"


def test_strategy_error_names_strategy_coin_and_tick():
    e = StrategyError("Mine", "ETH", 1_700_000_000_000, ZeroDivisionError("division by zero"))
    assert "strategy 'Mine' on ETH" in str(e)
    assert "timestamp_ms=1700000000000" in str(e)
    assert "ZeroDivisionError" in str(e)


def test_config_error_is_a_velocitas_error():
    assert issubclass(ConfigError, VelocitasError)
