"""Execution: fills, ledgers, the backtest runner (and, later, live and distributed engines)."""
