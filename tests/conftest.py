"""Shared fixture: locate the real market data in ``../shared/data`` (skip when absent)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_file() -> Callable[[str], Path]:
    """``shared_file("BTCUSDT-1m.csv.gz")`` -> its path, or skip the test with the reason."""

    def locate(name: str) -> Path:
        path = SHARED_DATA / name
        if not path.is_file():
            pytest.skip(f"real data file {path} is absent (expected beside the repo in shared/)")
        return path

    return locate


@pytest.fixture(autouse=True)
def _data_dir_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Live sessions record under ``VELOCITAS_DATA_DIR``: keep that inside the test's tmp."""
    monkeypatch.setenv("VELOCITAS_DATA_DIR", str(tmp_path_factory.mktemp("velocitas-data")))
