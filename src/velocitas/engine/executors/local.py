"""The serial executor: every account in this process (the reference for determinism tests)."""

from __future__ import annotations

from typing import Any

from velocitas.core.models import Dataset
from velocitas.engine.accounts import AccountGroup, AccountUpdate
from velocitas.engine.fills import ExecutionConfig
from velocitas.engine.packed import PackedUpdate
from velocitas.strategies.base import Strategy


class SerialExecutor:
    """Runs all accounts in the calling thread."""

    def __init__(self, config: ExecutionConfig) -> None:
        self.group = AccountGroup(config, keep_fill_logs=False)

    def add(self, strategy_id: str, strategy: Strategy) -> None:
        self.group.add(strategy_id, strategy)

    def remove(self, strategy_id: str) -> AccountUpdate:
        return self.group.remove(strategy_id)

    def process(self, batch: Dataset) -> list[AccountUpdate]:
        return self.group.process(batch)

    def process_packed(self, batch: Dataset) -> PackedUpdate:
        return self.group.process_packed(batch)

    def health(self) -> list[dict[str, Any]]:
        return [{"worker": 0, "alive": True, "accounts": len(self.group.order), "restarts": 0}]

    def close(self) -> None:
        """Nothing to stop."""
