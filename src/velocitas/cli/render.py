"""Terminal and JSON rendering of backtest results."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from rich.console import Console
from rich.table import Table

from velocitas.analysis.metrics import Metrics
from velocitas.engine.results import AccountResult, BacktestResult

JSON_METRICS = (
    "total_pnl",
    "total_return",
    "sharpe",
    "sortino",
    "max_drawdown",
    "win_rate",
    "profit_factor",
    "round_trips",
    "exposure",
)

# (field, label, format) rows of the human table.
_ROWS: tuple[tuple[str, str, str], ...] = (
    ("total_pnl", "Total P&L", "money"),
    ("total_return", "Total return", "pct"),
    ("cagr", "CAGR", "pct"),
    ("sharpe", "Sharpe", "num"),
    ("sortino", "Sortino", "num"),
    ("calmar", "Calmar", "num"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("max_drawdown_duration_ms", "Max DD duration", "duration"),
    ("round_trips", "Round trips", "int"),
    ("win_rate", "Win rate", "pct"),
    ("profit_factor", "Profit factor", "num"),
    ("expectancy", "Expectancy", "money"),
    ("avg_win", "Avg win", "money"),
    ("avg_loss", "Avg loss", "money"),
    ("best_trade", "Best trade", "money"),
    ("worst_trade", "Worst trade", "money"),
    ("max_consecutive_wins", "Max consec. wins", "int"),
    ("max_consecutive_losses", "Max consec. losses", "int"),
    ("exposure", "Exposure", "pct"),
    ("fees_paid", "Fees paid", "money"),
    ("buy_and_hold_return", "Buy & hold", "pct"),
)


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: report them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fills_digest(trades: list[dict[str, Any]]) -> str:
    """SHA-256 of the canonical JSON of the fills (sorted keys, no spaces, shortest floats)."""
    canonical = json.dumps(trades, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def account_json(account: AccountResult) -> dict[str, Any]:
    """The documented JSON object of one (strategy, coin) account."""
    m = account.metrics.to_dict()
    trades = account.trades()
    return {
        "strategy": account.strategy,
        "coin": account.coin,
        "params": account.params,
        "metrics": {k: finite_or_none(m[k]) for k in JSON_METRICS},
        "trades": trades,
        "fills_digest": fills_digest(trades),
        **({"error": account.error} if account.error else {}),
    }


def _fmt(value: float | int, kind: str) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "pct":
        return f"{100.0 * value:.2f}%"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "duration":
        hours = value / 3_600_000
        return f"{hours / 24:.1f} d" if hours >= 48 else f"{hours:.1f} h"
    return f"{value:.3f}"


def results_table(result: BacktestResult) -> Table:
    """Metrics as rows, one column per account (plus the portfolio when several)."""
    columns: list[tuple[str, Metrics]] = [(a.strategy_id, a.metrics) for a in result.accounts]
    if len(result.accounts) > 1:
        columns.append(("Portfolio", result.portfolio))
    table = Table(title=f"Backtest: {result.updates:,} updates in {result.elapsed_s:.2f} s")
    table.add_column("Metric")
    for name, _ in columns:
        table.add_column(name, justify="right")
    for field, label, kind in _ROWS:
        table.add_row(label, *(_fmt(getattr(m, field), kind) for _, m in columns))
    return table


def print_result(console: Console, result: BacktestResult) -> None:
    console.print(results_table(result))
    for a in result.accounts:
        led = a.ledger
        note = (
            f"{a.strategy_id}: {led.fills} fills, position {led.position:g} {a.coin}, "
            f"realised {led.realized_pnl:,.2f}, unrealised {led.unrealized_pnl:,.2f}"
        )
        if led.rejected_orders:
            note += f", {led.rejected_orders} orders rejected (cash or position)"
        if led.ignored_signals:
            note += f", {led.ignored_signals} signals ignored (order pending)"
        console.print(note)
        if a.error:
            console.print(f"[red]{a.strategy_id} stopped: {a.error}[/red]")
