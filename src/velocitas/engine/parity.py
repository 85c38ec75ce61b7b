"""Replay a recorded live session through the backtest path and compare, fill by fill.

For the same feed, the live engine and the backtest must produce identical fills: both run the
same kernels over the same updates in the same order (batch boundaries do not matter; that is
tested). A strategy registered after the feed began is reported but not compared, since the
backtest would start it from the first update.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np

from velocitas.core.errors import ConfigError
from velocitas.core.models import CoinSeries, Dataset
from velocitas.data.loaders import load
from velocitas.engine.backtest import run_backtest
from velocitas.engine.fills import ExecutionConfig


@dataclass(frozen=True, slots=True)
class StrategyParity:
    strategy_id: str
    compared: bool
    live_fills: int
    replay_fills: int
    identical: bool
    first_difference: int | None
    live_total_pnl: float | None
    replay_total_pnl: float
    pnl_gap: float | None
    note: str = ""


@dataclass(frozen=True, slots=True)
class ParityReport:
    session: str
    updates: int
    strategies: list[StrategyParity] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return all(s.identical for s in self.strategies if s.compared)

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "updates": self.updates,
            "identical": self.identical,
            "strategies": [
                {k: getattr(s, k) for k in StrategyParity.__slots__} for s in self.strategies
            ],
        }


def _read_feed(directory: Path) -> Dataset:
    segments = sorted(directory.glob("feed-*.csv.gz"))
    if not segments:
        raise ConfigError(f"{directory} holds no feed-*.csv.gz: not a session recording")
    parts: dict[str, list[CoinSeries]] = {}
    for segment in segments:
        try:
            loaded = load(segment)
        except ConfigError:
            continue  # a segment with only its header (the session stopped right after it)
        for s in loaded.series:
            parts.setdefault(s.coin, []).append(s)
    series = tuple(
        CoinSeries(
            coin,
            np.concatenate([p.timestamp_ms for p in pieces]),
            np.concatenate([p.price for p in pieces]),
            np.concatenate([p.volume for p in pieces]),
        )
        for coin, pieces in parts.items()
    )
    return Dataset(series, source=str(directory))


def _read_live_fills(directory: Path) -> dict[str, list[tuple[int, float, float, float]]]:
    out: dict[str, list[tuple[int, float, float, float]]] = {}
    with gzip.open(directory / "fills.csv.gz", "rt") as f:
        for row in csv.DictReader(io.StringIO(f.read())):
            out.setdefault(row["strategy_id"], []).append(
                (int(row["timestamp"]), float(row["qty"]), float(row["price"]), float(row["fee"]))
            )
    return out


def replay_session(directory: Path) -> ParityReport:
    """Replay ``directory`` (a session recording) and compare it with what happened live."""
    meta_path = directory / "session.json"
    if not meta_path.is_file():
        raise ConfigError(f"{directory} is not a session recording (no session.json)")
    meta = json.loads(meta_path.read_text())
    with open(directory / "strategies.pkl", "rb") as handle:
        blobs: dict[str, bytes] = pickle.load(handle)
    config = ExecutionConfig(**meta["config"])
    from_start = [s["strategy_id"] for s in meta["strategies"] if s["joined_at_update"] == 0]
    data = _read_feed(directory)
    strategies = [cloudpickle.loads(blobs[sid]) for sid in from_start]
    result = run_backtest(strategies, data, config) if strategies else None
    live = _read_live_fills(directory)
    final = meta.get("final_total_pnl", {})
    report = []
    for entry in meta["strategies"]:
        sid = entry["strategy_id"]
        live_fills = live.get(sid, [])
        if result is None or sid not in from_start:
            report.append(
                StrategyParity(sid, False, len(live_fills), 0, False, None, final.get(sid), 0.0,
                               None, f"joined at update {entry['joined_at_update']}")
            )  # fmt: skip
            continue
        account = result.accounts[from_start.index(sid)]
        cols = account.fills
        replayed = list(
            zip(cols["ts"].tolist(), cols["qty"].tolist(), cols["price"].tolist(),
                cols["fee"].tolist(), strict=True)
        )  # fmt: skip
        first = next(
            (i for i, (a, b) in enumerate(zip(live_fills, replayed, strict=False)) if a != b),
            None,
        )
        if first is None and len(live_fills) != len(replayed):
            first = min(len(live_fills), len(replayed))
        live_pnl = final.get(sid)
        replay_pnl = account.ledger.total_pnl  # the formula the live snapshot reports
        report.append(
            StrategyParity(
                strategy_id=sid,
                compared=True,
                live_fills=len(live_fills),
                replay_fills=len(replayed),
                identical=first is None,
                first_difference=first,
                live_total_pnl=live_pnl,
                replay_total_pnl=replay_pnl,
                pnl_gap=None if live_pnl is None else replay_pnl - live_pnl,
            )
        )
    return ParityReport(str(directory), len(data), report)
