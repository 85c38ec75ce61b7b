"""The one exception tree of Velocitas.

    VelocitasError
    ├── ConfigError          invalid parameters, settings or arguments (the caller's mistake)
    ├── DataError            market data that cannot be used
    │   └── DataFormatError  a file that cannot be parsed or fails validation (file, line, column)
    ├── StrategyError        user or built-in strategy code raised (strategy, coin, tick)
    └── LedgerError          an accounting rule would be broken (e.g. cash would go negative)

Messages say what was expected and what came, so that the CLI and the API can show them as is.
"""

from __future__ import annotations


class VelocitasError(Exception):
    """Base class of every error Velocitas raises on purpose."""


class ConfigError(VelocitasError):
    """Invalid parameters, settings or command-line arguments."""


class DataError(VelocitasError):
    """Market data that cannot be used."""


class DataFormatError(DataError):
    """A data file failed to parse or validate.

    Attributes:
        path: the file, as given by the caller.
        line: 1-based physical line number in the (decompressed) file, or None when the
            problem is the file as a whole (empty file, unknown format).
        column: the column name involved, or None.
        reason: what was expected and what came.
    """

    def __init__(
        self, path: str, reason: str, *, line: int | None = None, column: str | None = None
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.reason = reason
        where = path
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {reason}")


class StrategyError(VelocitasError):
    """A strategy's code raised; names the strategy, the coin and the tick."""

    def __init__(self, strategy: str, coin: str, timestamp_ms: int | None, cause: BaseException):
        self.strategy = strategy
        self.coin = coin
        self.timestamp_ms = timestamp_ms
        self.cause = cause
        super().__init__(
            f"strategy '{strategy}' on {coin} raised at tick timestamp_ms={timestamp_ms}: "
            f"{type(cause).__name__}: {cause}"
        )


class LedgerError(VelocitasError):
    """An accounting rule would be broken."""
