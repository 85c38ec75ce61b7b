"""Binance spot market data: REST client, combined-stream client and the live source."""

from velocitas.data.binance.rest import BinanceRequestError, BinanceRest, Kline, Trade
from velocitas.data.binance.source import BinanceSettings, BinanceSource, binance_source
from velocitas.data.binance.stream import STREAM_KINDS, StreamClient, parse_message

__all__ = [
    "STREAM_KINDS",
    "BinanceRequestError",
    "BinanceRest",
    "BinanceSettings",
    "BinanceSource",
    "Kline",
    "StreamClient",
    "Trade",
    "binance_source",
    "parse_message",
]
