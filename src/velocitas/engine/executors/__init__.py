"""Where accounts run: in this process, in worker processes, or on Ray.

Every executor holds accounts (each (coin, strategy) in exactly one place), runs them over each
batch with the same ``AccountGroup`` code, and returns their updates in registration order, so
the single writer that consumes them sees the same thing whatever the backend.
"""

from __future__ import annotations

from typing import Any, Protocol

from velocitas.core.errors import ConfigError
from velocitas.core.models import Dataset
from velocitas.engine.accounts import AccountUpdate
from velocitas.engine.fills import ExecutionConfig
from velocitas.strategies.base import Strategy

BACKENDS = ("serial", "process", "ray")


class Executor(Protocol):
    """Holds accounts and runs them over batches."""

    def add(self, strategy_id: str, strategy: Strategy) -> None:
        """Start an account for ``strategy`` (its state starts flat)."""

    def remove(self, strategy_id: str) -> AccountUpdate:
        """Stop an account; returns its final state."""

    def process(self, batch: Dataset) -> list[AccountUpdate]:
        """Run every account over ``batch``; updates in registration order."""

    def health(self) -> list[dict[str, Any]]:
        """One entry per worker: id, alive, accounts, restarts."""

    def close(self) -> None:
        """Stop every worker; idempotent."""


def make_executor(
    backend: str, num_workers: int, config: ExecutionConfig, **options: Any
) -> Executor:
    """The executor for ``backend`` ("serial", "process" or "ray")."""
    if backend == "serial":
        from velocitas.engine.executors.local import SerialExecutor

        return SerialExecutor(config)
    if num_workers < 1:
        raise ConfigError(f"num_workers must be >= 1, was {num_workers}")
    if backend == "process":
        from velocitas.engine.executors.process import ProcessExecutor

        return ProcessExecutor(config, num_workers, **options)
    if backend == "ray":
        try:
            from velocitas.engine.executors.ray import RayExecutor
        except ModuleNotFoundError as e:
            raise ConfigError(f'backend="ray" needs Ray: pip install "velocitas[ray]" ({e})') from e

        return RayExecutor(config, num_workers, **options)
    raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, was {backend!r}")
