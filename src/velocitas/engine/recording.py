"""Session recordings: the normalised feed a live session consumed, and the fills it made.

A session directory holds:

* ``session.json``: when, which source, the execution config, and every strategy registered
  before the feed started (id, name, coin, params); strategies added later are listed with the
  update count at which they joined;
* ``strategies.pkl``: the strategy objects themselves (cloudpickle), so a replay runs the very
  same code, user strategies included;
* ``feed-00001.csv.gz``, ``feed-00002.csv.gz``...: the market data in the order the engine
  consumed it, in the loaders' trades format (``timestamp,coin,price,qty``, ms), appended as
  gzip members (a crash loses at most the last ``flush_interval_s`` or 1 MB of text), rotated
  to a new file once one passes ``max_segment_bytes`` (compressed);
* ``fills.csv.gz``: every live fill (``strategy_id,timestamp,qty,price,fee``).

``velocitas replay SESSION`` feeds the recording through the backtest path and compares.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import pickle
import queue
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from velocitas.core.models import Dataset
from velocitas.engine.fills import ExecutionConfig
from velocitas.engine.packed import F_ACCOUNT, F_FEE, F_PRICE, F_QTY, F_TS, PackedUpdate
from velocitas.strategies.base import Strategy

logger = logging.getLogger(__name__)

FEED_HEADER = "timestamp,coin,price,qty\n"
FILLS_HEADER = "strategy_id,timestamp,qty,price,fee\n"
# Arrow writes doubles in their shortest round-trip form, so the replay reads back the very bits.
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="none")


class SessionRecorder:
    """Writes one session's recording; owned by the engine's single writer thread."""

    def __init__(
        self,
        directory: Path,
        *,
        source: str,
        config: ExecutionConfig,
        strategies: dict[str, Strategy],
        max_segment_bytes: int = 64 << 20,
        flush_interval_s: float = 0.5,
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=False)
        self.max_segment_bytes = max_segment_bytes
        self.flush_interval_s = flush_interval_s
        self.meta: dict[str, Any] = {
            "started_at": time.time(),
            "source": source,
            "config": asdict(config),
            "strategies": [_entry(sid, s, 0) for sid, s in strategies.items()],
        }
        # Pickled now, before any market data: the replay starts from the same fresh objects.
        self._blobs = {sid: _freeze(s) for sid, s in strategies.items()}
        self._write_meta()
        self._segment = 0
        self._segment_bytes = 0
        self._feed = io.BytesIO()
        self._fills = io.BytesIO()
        self._updates = 0
        self._last_flush = time.monotonic()
        self.failed = False
        self._new_segment()
        with gzip.open(self._fills_path, "wt") as f:
            f.write(FILLS_HEADER)
        # Formatting and compressing run on a writer thread (Arrow and zlib release the GIL),
        # so the engine's single writer only hands batches over.
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1024)
        self._writer = threading.Thread(target=self._write_loop, name="velocitas-recorder")
        self._writer.daemon = True
        self._writer.start()

    @property
    def _fills_path(self) -> Path:
        return self.directory / "fills.csv.gz"

    def _write_meta(self) -> None:
        (self.directory / "session.json").write_text(json.dumps(self.meta, indent=1))
        with open(self.directory / "strategies.pkl", "wb") as f:
            pickle.dump(self._blobs, f, protocol=pickle.HIGHEST_PROTOCOL)

    def _new_segment(self) -> None:
        self._segment += 1
        self._segment_path = self.directory / f"feed-{self._segment:05d}.csv.gz"
        self._segment_path.write_bytes(gzip.compress(FEED_HEADER.encode()))
        self._segment_bytes = self._segment_path.stat().st_size

    def strategy_added(self, strategy_id: str, strategy: Strategy) -> None:
        self.meta["strategies"].append(_entry(strategy_id, strategy, self._updates))
        self._blobs[strategy_id] = _freeze(strategy)
        self._write_meta()

    def record(self, batch: Dataset, packed: PackedUpdate) -> None:
        """Queue one processed batch and its fills for the writer thread (blocks if it lags)."""
        fills = None
        if packed.fills.shape[0]:
            fills = (packed.ids, packed.fills[:, [F_ACCOUNT, F_TS, F_QTY, F_PRICE, F_FEE]])
        self._updates += len(batch)
        self._queue.put((batch, fills))

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._write(*item)
            except Exception:  # a full disk must not take the engine down: log and go on
                logger.exception("session recording failed; the recording is incomplete")
                self.failed = True

    def _write(self, batch: Dataset, fills: tuple[tuple[str, ...], np.ndarray] | None) -> None:
        for s in batch.series:
            if len(s) == 0:
                continue
            n = len(s)
            table = pa.table(
                {
                    "timestamp": pa.array(s.timestamp_ms, type=pa.int64()),
                    "coin": pa.DictionaryArray.from_arrays(
                        pa.array(np.zeros(n, dtype=np.int32)), pa.array([s.coin])
                    ),
                    "price": pa.array(s.price, type=pa.float64()),
                    "qty": pa.array(s.volume, type=pa.float64()),
                }
            )
            pacsv.write_csv(table, self._feed, _CSV_OPTIONS)
        if fills is not None:
            ids, rows = fills
            for a, t, q, p, fee in rows.tolist():
                self._fills.write(f"{ids[int(a)]},{int(t)},{q!r},{p!r},{fee!r}\n".encode())
        if time.monotonic() - self._last_flush >= self.flush_interval_s or self._feed.tell() >= min(
            1 << 20, self.max_segment_bytes // 2
        ):
            self._flush_buffers()

    def _flush_buffers(self) -> None:
        """Write what is buffered as complete gzip members (readable even after a crash)."""
        self._last_flush = time.monotonic()
        feed = self._feed.getvalue()
        if feed:
            member = gzip.compress(feed, compresslevel=1)
            with open(self._segment_path, "ab") as out:
                out.write(member)
            self._segment_bytes += len(member)
            self._feed = io.BytesIO()
            if self._segment_bytes >= self.max_segment_bytes:
                self._new_segment()
        fills = self._fills.getvalue()
        if fills:
            with open(self._fills_path, "ab") as out:
                out.write(gzip.compress(fills, compresslevel=1))
            self._fills = io.BytesIO()

    def close(self, final_pnl: dict[str, float] | None = None) -> None:
        """Write everything queued, then note the end and each strategy's final total P&L."""
        self._queue.put(None)
        self._writer.join()
        self._flush_buffers()
        self.meta["stopped_at"] = time.time()
        self.meta["updates"] = self._updates
        self.meta["final_total_pnl"] = final_pnl or {}
        self.meta["complete"] = not self.failed
        self._write_meta()


def _entry(strategy_id: str, strategy: Strategy, joined_at_update: int) -> dict[str, Any]:
    return {
        "strategy_id": strategy_id,
        "name": strategy.name,
        "coin": strategy.coin,
        "params": strategy.params,
        "joined_at_update": joined_at_update,
    }


def _freeze(strategy: Strategy) -> bytes:
    blob: bytes = cloudpickle.dumps(strategy, protocol=pickle.HIGHEST_PROTOCOL)
    return blob


def new_session_dir(data_dir: Path) -> Path:
    """``DATA_DIR/sessions/<UTC timestamp>`` (unique)."""
    base = data_dir / "sessions"
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = base / stamp
    n = 1
    while path.exists():
        n += 1
        path = base / f"{stamp}-{n}"
    return path
