"""Benchmark: ``velocitas.data.load`` and ``iter_chunks`` against ``pandas.read_csv``.

Writes a 1,000,000-row and a 10,000,000-row OHLCV CSV (and the 1M one gzipped) into a
temporary directory, then times each reader in a fresh subprocess, so that every peak RSS
belongs to one operation alone. pandas' default C engine on the same file is the reference;
``speedup_vs_pandas`` > 1 means Velocitas is faster (while also validating every row).

Run:  PYTHONPATH=src python benchmarks/loaders.py        (prints one JSON object)
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv

ROWS_SMALL = 1_000_000
ROWS_LARGE = 10_000_000
CHUNK_ROWS = 1_000_000  # the default of iter_chunks and of the CLI
SMALL_CHUNK_ROWS = 100_000  # several chunks at both sizes: shows memory is flat in file size


def write_ohlcv(path: Path, rows: int, *, compress: bool = False, seed: int = 0) -> None:
    """A valid 1-minute OHLCV file: a random walk on a 0.01 grid, like real klines."""
    rng = np.random.default_rng(seed)
    close = np.round(30_000 * np.exp(np.cumsum(rng.normal(0, 5e-4, rows))), 2)
    open_ = np.round(np.r_[close[0], close[:-1]], 2)
    wick = np.round(np.abs(rng.normal(0, 5.0, (2, rows))), 2)
    table = pa.table(
        {
            "timestamp": 1_700_000_000_000 + np.arange(rows, dtype=np.int64) * 60_000,
            "open": open_,
            "high": np.round(np.maximum(open_, close) + wick[0], 2),
            "low": np.round(np.minimum(open_, close) - wick[1], 2),
            "close": close,
            "volume": np.round(rng.lognormal(0, 1, rows), 5),
        }
    )
    options = pacsv.WriteOptions(quoting_style="none", quoting_header="none")
    if compress:
        with pa.CompressedOutputStream(str(path), "gzip") as out:
            pacsv.write_csv(table, out, options)
    else:
        pacsv.write_csv(table, str(path), options)


def _measure(op: str, path: str, repeats: int) -> dict[str, float]:
    """Child process: run ``op`` on ``path`` ``repeats`` times; first and best time, peak RSS.

    The first run pays the page faults of fresh memory (expensive in some sandboxes), the
    later ones reuse freed memory; both are reported.
    """
    import pandas as pd

    from velocitas.data.loaders import iter_chunks, load

    def run() -> int:
        if op == "load":
            return len(load(path, coin="BTC"))
        if op == "iter_chunks":
            return sum(len(c) for c in iter_chunks(path, coin="BTC", chunk_rows=CHUNK_ROWS))
        if op == "iter_chunks_small":
            return sum(len(c) for c in iter_chunks(path, coin="BTC", chunk_rows=SMALL_CHUNK_ROWS))
        if op == "pandas":
            return len(pd.read_csv(path))
        raise ValueError(op)

    baseline = psutil.Process().memory_info().rss
    times = []
    rows = 0
    for _ in range(repeats):
        start = time.perf_counter()
        rows = run()
        times.append(time.perf_counter() - start)
    peak = _peak_rss_bytes()
    best = min(times)
    return {
        "first_seconds": round(times[0], 3),
        "best_seconds": round(best, 3),
        "rows": rows,
        "rows_per_s": round(rows / best),
        "peak_rss_mb": round(peak / 2**20, 1),
        "peak_over_baseline_mb": round((peak - baseline) / 2**20, 1),
    }


def _peak_rss_bytes() -> int:
    """This process's peak RSS: Linux's VmHWM, which (unlike ru_maxrss) is not inherited
    from the parent across exec; ru_maxrss elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _in_child(op: str, path: Path, repeats: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", op, str(path), str(repeats)],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    return json.loads(out.stdout)


def main() -> dict[str, object]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="velocitas-bench-") as tmp:
        d = Path(tmp)
        small, small_gz = d / "BTCUSDT-1M.csv", d / "BTCUSDT-1M.csv.gz"
        large = d / "BTCUSDT-10M.csv"
        write_ohlcv(small, ROWS_SMALL)
        write_ohlcv(small_gz, ROWS_SMALL, compress=True)
        write_ohlcv(large, ROWS_LARGE, seed=1)
        sizes = {p.name: round(p.stat().st_size / 2**20, 1) for p in (small, small_gz, large)}
        plan = {
            "1M_csv": (small, 3),
            "1M_csv_gz": (small_gz, 3),
            "10M_csv": (large, 3),
        }
        results: dict[str, dict[str, dict[str, float]]] = {}
        for label, (path, repeats) in plan.items():
            ops = ("load", "iter_chunks", "iter_chunks_small", "pandas")
            results[label] = {op: _in_child(op, path, repeats) for op in ops}
    ratios = {
        label: {
            f"{op}_speedup_vs_pandas_{kind}": round(
                r["pandas"][f"{kind}_seconds"] / r[op][f"{kind}_seconds"], 2
            )
            for op in ("load", "iter_chunks")
            for kind in ("best", "first")
        }
        for label, r in results.items()
    }
    flat = results["10M_csv"]["iter_chunks_small"]["peak_over_baseline_mb"] / max(
        results["1M_csv"]["iter_chunks_small"]["peak_over_baseline_mb"], 1.0
    )
    return {
        "benchmark": "data.loaders",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "pyarrow": pa.__version__,
        },
        "file_mb": sizes,
        "chunk_rows": CHUNK_ROWS,
        "results": results,
        "ratios": ratios,
        "chunk_rows_small": SMALL_CHUNK_ROWS,
        "iter_chunks_small_peak_growth_10M_over_1M": round(flat, 2),
        "total_seconds": round(time.perf_counter() - started, 1),
    }


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--measure":
        report = _measure(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        report = main()
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
