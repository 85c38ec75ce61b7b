"""Settings from the environment (prefix ``VELOCITAS_``), validated when built.

Built by the entry points (CLI, server) or, for a Python user who starts a live source without
passing settings, by ``HFTEngine.start`` at that moment; never at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every environment-level knob of Velocitas.

    The market data URLs default to the real public endpoints; tests point them at local
    servers that speak the same wire format.
    """

    model_config = SettingsConfigDict(env_prefix="VELOCITAS_", extra="ignore")

    binance_rest_url: str = "https://api.binance.com"
    binance_ws_url: str = "wss://stream.binance.com:9443"
    coingecko_url: str = "https://api.coingecko.com/api/v3"
    quote_asset: str = "USDT"
    data_dir: Path = Field(default_factory=lambda: Path.home() / ".velocitas")
