"""The ``velocitas`` command."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from velocitas.core.errors import ConfigError, VelocitasError
from velocitas.core.models import CoinSeries, Dataset

app = typer.Typer(
    help="Velocitas: crypto trading simulation (backtests on compiled kernels).",
    no_args_is_help=True,
    add_completion=False,
)

BAD_ARGUMENTS = 2


def _fail(message: str) -> NoReturn:
    typer.echo(f"velocitas: error: {message}", err=True)
    raise typer.Exit(BAD_ARGUMENTS)


@app.callback()
def main() -> None:
    """Velocitas: crypto trading simulation engine."""


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param takes key=value, was {pair!r}")
        params[key.strip()] = value.strip()
    return params


def _custom_class(spec: str) -> type:
    """``path/to/file.py:ClassName`` -> the Strategy subclass defined there."""
    from velocitas.strategies.base import Strategy

    path_text, _, class_name = spec.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise ConfigError(f"--strategy {spec!r}: no such file {path_text!r}")
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"--strategy {spec!r}: cannot import {path_text!r}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[path.stem] = module
    module_spec.loader.exec_module(module)
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError(f"--strategy {spec!r}: {class_name!r} is not a Strategy subclass")
    return cls


def _build_strategies(names: list[str], coins: list[str], params: dict[str, Any]) -> list[Any]:
    """One strategy per (name, coin); ``all`` expands to the six built-ins (default params)."""
    from velocitas.strategies.registry import BUILTINS, create_strategy

    expanded: list[str] = []
    for name in names:
        expanded.extend(BUILTINS if name == "all" else [name])
    if len(expanded) > 1 and params:
        raise ConfigError("--param applies to a single --strategy; drop it or name one strategy")
    out: list[Any] = []
    for name in expanded:
        if name.endswith(".py") or ".py:" in name:
            cls = _custom_class(name)
            out.extend(cls(cls.__name__, coin, **params) for coin in coins)
        else:
            out.extend(create_strategy(name, coin=coin, **params) for coin in coins)
    return out


def _select(batch: Dataset, coin: str | None) -> Dataset:
    if coin is None:
        return batch
    return Dataset(tuple(s for s in batch.series if s.coin == coin), batch.source)


def _open_data(files: list[Path], coin: str | None, chunk_rows: int) -> Iterator[Dataset]:
    """The data as batches: one file streams in chunks; several files load and merge."""
    from velocitas.data.loaders import iter_chunks, load

    for f in files:
        if not f.is_file():
            raise ConfigError(f"no such data file: {f}")
    if len(files) == 1:
        for batch in iter_chunks(files[0], coin=coin, chunk_rows=chunk_rows):
            yield _select(batch, coin)
        return
    # With several files, --coin selects among them (each coinless file is named by its file
    # name); with one file it also names that file's coin.
    series: list[CoinSeries] = []
    for f in files:
        series.extend(load(f).series)
    merged = Dataset(tuple(series), source=",".join(str(f) for f in files))
    if len(set(merged.coins)) != len(merged.coins):
        raise ConfigError(f"the same coin appears in several files: {merged.coins}")
    yield _select(merged, coin)


def _run_with_progress(
    strategies: list[Any], batches: Iterator[Dataset], config: Any, *, show: bool
) -> Any:
    """Run the backtest; on a terminal, show a live count of updates processed."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from velocitas.engine.backtest import run_backtest

    err = Console(stderr=True)
    if not (show and err.is_terminal):
        return run_backtest(strategies, batches, config)
    columns = (
        TextColumn("[bold]Backtesting[/bold]"),
        BarColumn(),
        TextColumn("{task.completed:,} updates"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("backtest", total=None)
        return run_backtest(
            strategies, batches, config, progress=lambda n: progress.advance(task, n)
        )


def _run_on_engine(
    strategies: list[Any], batches: Iterator[Dataset], config: Any, backend: str, workers: int
) -> Any:
    from velocitas.engine.live import HFTEngine

    with HFTEngine(num_workers=workers, backend=backend, config=config) as engine:
        for s in strategies:
            engine.register_strategy(s)
        return engine.run(batches)


@app.command()
def backtest(
    data_files: Annotated[
        list[Path] | None,
        typer.Argument(help="CSV files (.csv or .csv.gz); default: the packaged sample"),
    ] = None,
    strategy: Annotated[
        list[str] | None,
        typer.Option(help="Registered name, 'all', or path/to/file.py:ClassName; repeatable"),
    ] = None,
    coin: Annotated[str | None, typer.Option(help="Only this coin (names coinless files)")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Strategy parameter key=value")
    ] = None,
    fee_bps: Annotated[float, typer.Option(help="Fee per fill, basis points")] = 10.0,
    slippage_bps: Annotated[float, typer.Option(help="Slippage against the order, bps")] = 0.0,
    latency_ms: Annotated[int, typer.Option(help="Order latency, ms")] = 0,
    fill: Annotated[str, typer.Option(help="next: next update's price; close: this one")] = "next",
    capital: Annotated[float, typer.Option(help="Starting cash per (coin, strategy)")] = 1e6,
    allow_short: Annotated[bool, typer.Option(help="Let strategies sell short")] = False,
    chunk_rows: Annotated[int, typer.Option(help="Rows per streamed batch")] = 1_000_000,
    workers: Annotated[int, typer.Option(help="Worker processes (process/ray backends)")] = 1,
    backend: Annotated[str, typer.Option(help="serial, process or ray")] = "serial",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Backtest a strategy on every coin of the data (or one --coin)."""
    from velocitas.cli.render import account_json, print_result
    from velocitas.data.samples import sample_paths
    from velocitas.engine.fills import ExecutionConfig

    coin = coin.upper() if coin else None
    files = data_files or sample_paths()
    try:
        if chunk_rows < 1:
            raise ConfigError(f"--chunk-rows must be >= 1, was {chunk_rows}")
        if fill not in ("next", "close"):
            raise ConfigError(f"--fill must be 'next' or 'close', was {fill!r}")
        config = ExecutionConfig(
            fill=fill,  # type: ignore[arg-type]
            latency_ms=latency_ms,
            slippage_bps=slippage_bps,
            fee_bps=fee_bps,
            capital=capital,
            allow_short=allow_short,
        )
        params = _parse_params(param or [])
        batches = _open_data(files, coin, chunk_rows)
        first = next(batches, None)
        if first is None or len(first) == 0:
            raise ConfigError(
                f"no market data for coin {coin}" if coin else "the data files hold no rows"
            )
        if backend not in ("serial", "process", "ray"):
            raise ConfigError(f"--backend must be serial, process or ray, was {backend!r}")
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, was {workers}")
        strategies = _build_strategies(strategy or ["SMA_Crossover"], first.coins, params)

        def all_batches() -> Iterator[Dataset]:
            yield first
            yield from batches

        if backend == "serial":
            result = _run_with_progress(strategies, all_batches(), config, show=not as_json)
        else:
            result = _run_on_engine(strategies, all_batches(), config, backend, workers)
    except VelocitasError as e:
        _fail(str(e))
    if as_json:
        objects = [account_json(a) for a in result.accounts]
        single = coin is not None and len(objects) == 1
        typer.echo(json.dumps(objects[0] if single else objects, allow_nan=False))
    else:
        print_result(Console(), result)


@app.command()
def replay(
    session: Annotated[Path, typer.Argument(help="A session directory (DATA_DIR/sessions/...)")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Replay a recorded live session through the backtest path; report parity fill by fill.

    Exits 1 when any compared strategy's fills differ between live and replay.
    """
    from rich.table import Table

    from velocitas.engine.parity import replay_session

    try:
        report = replay_session(session)
    except VelocitasError as e:
        _fail(str(e))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), allow_nan=False))
    else:
        table = Table(title=f"Parity: {report.session} ({report.updates:,} updates)")
        for col in ("strategy", "live fills", "replay fills", "identical", "P&L gap"):
            table.add_column(col)
        for s in report.strategies:
            gap = "-" if s.pnl_gap is None else f"{s.pnl_gap:.6g}"
            same = ("yes" if s.identical else f"NO (first at {s.first_difference})") if (
                s.compared) else f"not compared: {s.note}"  # fmt: skip
            table.add_row(s.strategy_id, str(s.live_fills), str(s.replay_fills), same, gap)
        Console().print(table)
    if not report.identical:
        raise typer.Exit(1)


@app.command()
def strategies() -> None:
    """List the built-in strategies with their parameters and signal rules."""
    from rich.table import Table

    from velocitas.strategies.registry import available_strategies

    console = Console()
    for entry in available_strategies():
        table = Table(title=entry["name"], title_justify="left")
        for col in ("parameter", "type", "default", "min", "max", "meaning"):
            table.add_column(col)
        for p in entry["parameters"]:
            table.add_row(
                p["name"], p["type"], str(p["default"]), str(p["minimum"]),
                str(p["maximum"]), p["description"],
            )  # fmt: skip
        console.print(table)
        console.print(entry["description"].splitlines()[0] if entry["description"] else "")
