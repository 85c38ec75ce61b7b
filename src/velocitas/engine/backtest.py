"""The backtest runner: any set of (strategy, coin) accounts over a merged multi-coin stream.

Data arrives in batches (a whole ``Dataset`` or chunks of one, e.g. from
``data.iter_chunks``), so memory stays flat however long the input. Each batch goes through
the same steps the live engine uses:

1. **decide**: per account, the strategy's decision path (compiled kernel for built-ins,
   ``execute`` per update for Python strategies) produces fills and updates the ledger;
2. **mark**: per account, equity after every update of its coin (``engine/accounts.py``); then
   for the portfolio, equity after every update of any traded coin in merged (timestamp, coin
   order, arrival) order (``engine/portfolio.py``). Both feed ``analysis/metrics.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from velocitas.core.errors import ConfigError
from velocitas.core.models import Dataset
from velocitas.engine.accounts import AccountGroup
from velocitas.engine.fills import ExecutionConfig
from velocitas.engine.portfolio import Portfolio
from velocitas.engine.results import AccountResult, BacktestResult
from velocitas.strategies.base import Strategy


def strategy_ids(strategies: Sequence[Strategy]) -> list[str]:
    """``"{coin}_{name}"`` per strategy; repeats get ``_2``, ``_3``... in order."""
    seen: dict[str, int] = {}
    ids = []
    for s in strategies:
        base = f"{s.coin}_{s.name}"
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return ids


def summarize_run(
    accounts: list[AccountResult], portfolio: Portfolio, updates: int, elapsed_s: float
) -> BacktestResult:
    """The result of a run: accounts in registration order, the portfolio, exact totals."""
    fees = sum(a.ledger.fees_paid for a in accounts)
    totals = {
        "initial_cash": float(sum(a.ledger.equity - a.metrics.total_pnl for a in accounts)),
        "realized_pnl": sum(a.ledger.realized_pnl for a in accounts),
        "unrealized_pnl": sum(a.ledger.unrealized_pnl for a in accounts),
        "fees_paid": fees,
        "equity": sum(a.ledger.equity for a in accounts),
        "fills": float(sum(a.ledger.fills for a in accounts)),
    }
    totals["total_pnl"] = totals["realized_pnl"] + totals["unrealized_pnl"]
    return BacktestResult(
        accounts=accounts,
        portfolio=portfolio.metrics([a.metrics for a in accounts], fees),
        totals=totals,
        portfolio_curve=portfolio.curve.points(),
        updates=updates,
        elapsed_s=elapsed_s,
        coins=list(portfolio.coins),
    )


class Backtester:
    """Feeds batches through every account in this process; ``result()`` any time after."""

    def __init__(self, strategies: Sequence[Strategy], config: ExecutionConfig) -> None:
        if not strategies:
            raise ConfigError("a backtest needs at least one strategy")
        self.config = config
        self.ids = strategy_ids(strategies)
        self.group = AccountGroup(config)
        for sid, strategy in zip(self.ids, strategies, strict=True):
            self.group.add(sid, strategy)
        coins = list(dict.fromkeys(s.coin for s in strategies))
        self.portfolio = Portfolio(coins, config.capital * len(strategies))
        self.updates = 0

    @property
    def coins(self) -> list[str]:
        return self.portfolio.coins

    def feed(self, batch: Dataset) -> None:
        """Run every account over one batch (time-ordered per coin, after earlier batches)."""
        self.portfolio.mark(batch, self.group.process_packed(batch))
        self.updates += sum(len(s) for s in batch.series if s.coin in self.coins)

    def result(self, elapsed_s: float = 0.0) -> BacktestResult:
        return summarize_run(self.group.results(self.ids), self.portfolio, self.updates, elapsed_s)


def run_backtest(
    strategies: Sequence[Strategy],
    data: Dataset | Iterable[Dataset],
    config: ExecutionConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> BacktestResult:
    """Backtest ``strategies`` (each on its own coin) over ``data``, a dataset or its batches.

    Raises:
        ConfigError: no strategy, or a strategy's coin is absent from the data.
    """
    config = config or ExecutionConfig()
    started = time.perf_counter()
    runner = Backtester(strategies, config)
    batches = [data] if isinstance(data, Dataset) else data
    seen: set[str] = set()
    for batch in batches:
        seen.update(s.coin for s in batch.series if len(s) > 0)
        runner.feed(batch)
        if progress is not None:
            progress(len(batch))
    missing = [c for c in runner.coins if c not in seen]
    if missing:
        raise ConfigError(
            f"no market data for coin(s) {', '.join(missing)}; the data has "
            f"{', '.join(sorted(seen)) or 'no rows'}"
        )
    return runner.result(elapsed_s=time.perf_counter() - started)
