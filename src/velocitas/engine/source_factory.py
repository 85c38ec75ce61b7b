"""Data sources by name: what ``HFTEngine.start(data_source="...", coins=[...])`` accepts.

``synthetic`` (options ``rate_per_s``, default 1,000 updates/s, ``seed``), ``replay`` (options
``dataset``: a path or a ``Dataset``, ``speed``: multiple of real time or None for as fast as
possible, ``loop``), and the network sources registered by the data-providers work
(``binance``, ``coingecko``, ``ccxt:<exchange>``), which read their URLs from ``Settings``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from velocitas.core.errors import ConfigError
from velocitas.core.models import Dataset
from velocitas.data.loaders import load
from velocitas.data.sources import DataSource, ReplaySource, SyntheticSource

NAMES = ("synthetic", "replay", "binance", "coingecko", "ccxt:<exchange>")


def make_source(name: str, coins: Sequence[str], **options: Any) -> DataSource:
    """Build the source called ``name`` for ``coins``.

    Raises:
        ConfigError: an unknown name, an unknown option, or a source that refuses the coins.
    """
    try:
        if name == "synthetic":
            options.setdefault("rate_per_s", 1_000.0)
            options.setdefault("batch_size", 1)
            return SyntheticSource(coins, **options)
        if name == "replay":
            return _replay(coins, **options)
    except TypeError as e:
        raise ConfigError(f"{name} source: {e}") from None
    network = _network_source(name, coins, options)
    if network is not None:
        return network
    raise ConfigError(f"unknown data_source {name!r}; expected one of {', '.join(NAMES)}")


def _replay(
    coins: Sequence[str],
    dataset: Dataset | str | Path | None = None,
    speed: float | None = None,
    loop: bool = False,
    batch_size: int = 256,
) -> ReplaySource:
    if dataset is None:
        raise ConfigError("the replay source needs dataset= (a CSV path or a loaded Dataset)")
    data = dataset if isinstance(dataset, Dataset) else load(dataset)
    wanted = {c.upper() for c in coins}
    if wanted:
        missing = sorted(wanted - set(data.coins))
        if missing:
            raise ConfigError(
                f"replay dataset has no {', '.join(missing)}; it has {', '.join(data.coins)}"
            )
        data = Dataset(tuple(s for s in data.series if s.coin in wanted), data.source)
    return ReplaySource(data, speed=speed, loop=loop, batch_size=batch_size)


def _network_source(name: str, coins: Sequence[str], options: dict[str, Any]) -> Any:
    """The network sources; their modules are imported only when asked for."""
    if name == "binance":
        from velocitas.data.binance import binance_source
        from velocitas.settings import Settings

        return binance_source(coins, Settings(), **options)
    if name == "coingecko":
        from velocitas.data.coingecko import coingecko_source
        from velocitas.settings import Settings

        return coingecko_source(coins, Settings(), **options)
    if name.startswith("ccxt:"):
        from velocitas.data.ccxt_source import ccxt_source

        return ccxt_source(name.removeprefix("ccxt:"), coins, **options)
    return None
