"""CoinGecko as a live source: ``market_chart`` history first, then ``/simple/price`` polls.

CoinGecko names coins by id, not by ticker: ``COIN_IDS`` below maps the usual tickers, and
``ids={"PEPE": "pepe"}`` overrides or extends it (checked against ``/coins/list``; a ticker in
neither is looked up there by symbol and refused if absent or ambiguous).

Rate limit: CoinGecko's keyless public API limits by IP (it has been ~5-30 calls/min) and its
Demo key plan documents 30 calls/min (100 on some pages). We default to one request every
2 s (``FREE_TIER_MIN_INTERVAL_S``, i.e. <= 30 calls/min) for every call the source makes;
``min_request_interval_s`` lowers it for paid plans. ``/simple/price`` refreshes every 60 s on
the free tiers, hence the 60 s default poll.

Ticks: ``price`` in ``vs_currency``; ``volume`` is CoinGecko's rolling 24-hour volume converted
to the base asset (``total_volumes / price``), as CoinGecko has no per-trade volume.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

import httpx
import numpy as np
import orjson

from velocitas.core.errors import ConfigError
from velocitas.core.models import CoinSeries, Dataset
from velocitas.data._polling import (
    PollingFeed,
    RequestSpacing,
    parse_retry_after,
    reject_unknown_options,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_URL = "https://api.coingecko.com/api/v3"
FREE_TIER_MIN_INTERVAL_S = 2.0  # 30 calls/min: the free tiers' documented ceiling
FREE_TIER_POLL_INTERVAL_S = 60.0  # /simple/price's cache period on the free tiers
ATTEMPTS = 3  # tries of a one-off request (history, /coins/list) before giving up
MAX_CHART_DAYS = 90  # above 90 days market_chart returns daily points only

# fmt: off
#: Ticker -> CoinGecko API id for the coins users ask for most; ``ids=`` overrides or extends.
COIN_IDS: Mapping[str, str] = MappingProxyType({
    "BTC": "bitcoin",             "ETH": "ethereum",            "USDT": "tether",
    "BNB": "binancecoin",         "SOL": "solana",              "XRP": "ripple",
    "USDC": "usd-coin",           "ADA": "cardano",             "DOGE": "dogecoin",
    "TRX": "tron",                "TON": "the-open-network",    "AVAX": "avalanche-2",
    "SHIB": "shiba-inu",          "DOT": "polkadot",            "LINK": "chainlink",
    "BCH": "bitcoin-cash",        "LTC": "litecoin",            "XLM": "stellar",
    "ATOM": "cosmos",             "UNI": "uniswap",             "ETC": "ethereum-classic",
    "NEAR": "near",               "APT": "aptos",               "SUI": "sui",
    "ARB": "arbitrum",            "OP": "optimism",             "FIL": "filecoin",
    "HBAR": "hedera-hashgraph",   "ICP": "internet-computer",   "XMR": "monero",
    "AAVE": "aave",               "ALGO": "algorand",           "MATIC": "matic-network",
    "POL": "polygon-ecosystem-token","PEPE": "pepe",
})
# fmt: on


class CoinGeckoSettings(Protocol):
    """What ``coingecko_source`` reads from ``velocitas.settings.Settings``."""

    coingecko_url: str


class CoinGeckoSource(PollingFeed):
    """Live prices from CoinGecko's REST API, polled in a background thread.

    Args:
        coins: tickers, e.g. ``["BTC", "ETH"]``.
        base_url: API root (tests point it at a local server).
        vs_currency: quote currency of the prices.
        poll_interval_s: time between two ``/simple/price`` polls.
        ids: ticker -> CoinGecko id, overriding or extending ``COIN_IDS``.
        history_days: days of ``market_chart`` history sent first (0: none; 1 day gives
            5-minute points, 2-90 days hourly ones).
        api_key: a Demo (or Pro, with a ``pro-api`` base_url) key, sent as a header.
        min_request_interval_s: client-side rate limit, for every request.
        timeout_s: per-request timeout.
        backoff_initial_s, max_backoff_s: retry delays after a failure (doubling); a longer
            ``Retry-After`` from the server wins.
        gap_fill_after_s: after this long without a successful poll, the missed stretch is
            fetched from ``market_chart`` before the next live tick.
        transport: an httpx transport for every client the source opens (tests).

    Raises:
        ConfigError: bad parameters, or a coin CoinGecko does not know (checked before start).
    """

    name = "coingecko"

    def __init__(
        self,
        coins: Sequence[str],
        *,
        base_url: str = DEFAULT_URL,
        vs_currency: str = "usd",
        poll_interval_s: float = FREE_TIER_POLL_INTERVAL_S,
        ids: Mapping[str, str] | None = None,
        history_days: int = 1,
        api_key: str | None = None,
        min_request_interval_s: float = FREE_TIER_MIN_INTERVAL_S,
        timeout_s: float = 10.0,
        backoff_initial_s: float = 1.0,
        max_backoff_s: float = 60.0,
        gap_fill_after_s: float = 300.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(backoff_initial_s=backoff_initial_s, max_backoff_s=max_backoff_s)
        _check_positive(
            poll_interval_s=poll_interval_s, timeout_s=timeout_s, gap_fill_after_s=gap_fill_after_s
        )
        if not isinstance(history_days, int) or history_days < 0:
            raise ConfigError(f"history_days must be an int >= 0, was {history_days!r}")
        if not vs_currency or not vs_currency.isalnum():
            raise ConfigError(f"vs_currency must be a code like 'usd', was {vs_currency!r}")
        self.base_url = base_url.rstrip("/")
        self.vs_currency = vs_currency.lower()
        self.poll_interval_s = poll_interval_s
        self.history_days = history_days
        self.timeout_s = timeout_s
        self.gap_fill_after_s = gap_fill_after_s
        self._api_key = api_key
        self._transport = transport
        self._spacing = RequestSpacing(min_request_interval_s, self._stop)
        self.coin_ids = self._resolve_ids(coins, ids or {})
        self._last_ts: dict[str, int] = dict.fromkeys(self.coin_ids, -1)
        self._last_quote_at: float | None = None
        self._missing: set[str] = set()
        self._history_done = history_days == 0
        coin_ids = ", ".join(f"{c} ({i})" for c, i in self.coin_ids.items())
        logger.info(
            "%s: %s; polling every %g s, at most one request every %g s",
            *(self.name, coin_ids, poll_interval_s, min_request_interval_s),
        )

    # -- coin ids -------------------------------------------------------------------------
    def _resolve_ids(self, coins: Sequence[str], overrides: Mapping[str, str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(c.upper() for c in coins))
        if not wanted:
            raise ConfigError("the coingecko source needs at least one coin")
        custom = {k.upper(): v for k, v in overrides.items()}
        chosen = {c: custom.get(c) or COIN_IDS.get(c) for c in wanted}
        to_check = [c for c in wanted if c in custom or c not in COIN_IDS]
        if not to_check:
            return {c: i for c, i in chosen.items() if i is not None}
        listing = self._coins_list()
        if listing is None:
            unknown = [c for c in to_check if c not in custom]
            if unknown:
                raise ConfigError(
                    f"cannot look up {', '.join(unknown)}: /coins/list failed "
                    f"({self.last_error}); pass ids={{'{unknown[0]}': '<coingecko id>'}}"
                )
            logger.warning("%s: could not check the ids %s against /coins/list", self.name, custom)
            return {c: i for c, i in chosen.items() if i is not None}
        known_ids = {str(e.get("id")) for e in listing}
        for coin in to_check:
            if coin in custom:
                if custom[coin] not in known_ids:
                    raise ConfigError(
                        f"ids maps {coin} to {custom[coin]!r}, which is not a CoinGecko id "
                        f"(not in /coins/list); find the id on the coin's CoinGecko page"
                    )
            else:
                chosen[coin] = _id_by_symbol(coin, listing)
        return {c: i for c, i in chosen.items() if i is not None}

    def _coins_list(self) -> list[dict[str, Any]] | None:
        with self._client() as client:
            for _ in range(ATTEMPTS):
                listing = self._get(client, "/coins/list", {}, _parse_listing)
                if listing is not None or self.closed:
                    return listing
        return None

    # -- the poller -----------------------------------------------------------------------
    def _run(self) -> None:
        with self._client() as client:
            if not self._history_done:
                self._load_history(client)
                self._history_done = True
            while not self.closed:
                started = time.monotonic()
                self._poll(client)
                self._stop.wait(max(0.0, started + self.poll_interval_s - time.monotonic()))

    def _load_history(self, client: httpx.Client) -> None:
        series = []
        for coin in self.coin_ids:
            chart = None
            for _ in range(ATTEMPTS):
                if self.closed:
                    return
                chart = self._chart(client, coin, self.history_days)
                if chart is not None:
                    break
            if chart is None:
                logger.warning("%s: no history for %s; starting from live prices", self.name, coin)
                continue
            series.append(self._newer(coin, *chart))
        self._last_quote_at = time.monotonic()  # the chart ends "now": a later gap is filled
        self._emit(Dataset(tuple(s for s in series if len(s)), source=self.name))

    def _poll(self, client: httpx.Client) -> None:
        quotes = self._get(client, "/simple/price", self._price_params(), self._parse_prices)
        if quotes is None:
            return
        now = time.monotonic()
        if self._last_quote_at is not None and now - self._last_quote_at >= self.gap_fill_after_s:
            self._fill_gap(client, now - self._last_quote_at, quotes)
        self._last_quote_at = now
        series = [
            self._newer(coin, [ts], [price], [volume])
            for coin, (ts, price, volume) in quotes.items()
        ]
        self._emit(Dataset(tuple(s for s in series if len(s)), source=self.name))

    def _fill_gap(
        self, client: httpx.Client, gap_s: float, quotes: dict[str, tuple[int, float, float]]
    ) -> None:
        days = min(MAX_CHART_DAYS, max(1, math.ceil(gap_s / 86_400)))
        series = []
        for coin in self.coin_ids:
            chart = self._chart(client, coin, days)
            if chart is None:
                continue
            ts, price, volume = chart
            if coin in quotes:  # keep the gap's points older than the fresh quote
                keep = ts < quotes[coin][0]
                ts, price, volume = ts[keep], price[keep], volume[keep]
            filled = self._newer(coin, ts, price, volume)
            if len(filled):
                series.append(filled)
        if series:
            self.gaps_filled += 1
            points = sum(len(s) for s in series)
            logger.info("%s: filled a %.0f s gap with %d chart points", self.name, gap_s, points)
            self._emit(Dataset(tuple(series), source=self.name))

    def _newer(self, coin: str, ts: Any, price: Any, volume: Any) -> CoinSeries:
        """The points after the last one sent for ``coin`` (no duplicates, time order kept)."""
        ts = np.asarray(ts, dtype=np.int64)
        keep = ts > self._last_ts[coin]
        out = CoinSeries(
            coin,
            ts[keep],
            np.asarray(price, dtype=np.float64)[keep],
            np.asarray(volume, dtype=np.float64)[keep],
        )
        if len(out):
            self._last_ts[coin] = int(out.timestamp_ms[-1])
        return out

    # -- HTTP -----------------------------------------------------------------------------
    def _client(self) -> httpx.Client:
        headers = {"accept": "application/json"}
        if self._api_key:
            key = "x-cg-pro-api-key" if "pro-api." in self.base_url else "x-cg-demo-api-key"
            headers[key] = self._api_key
        return httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=self.timeout_s,
            transport=self._transport,
        )

    def _get(
        self, client: httpx.Client, path: str, params: dict[str, str], parse: Callable[[Any], T]
    ) -> T | None:
        """One rate-limited GET, parsed; None after a failure was logged and waited out."""
        if not self._spacing.wait():
            return None
        what = f"GET {path}"
        try:
            response = client.get(path, params=params)
        except httpx.TimeoutException:
            self._failed(what, f"no answer within {self.timeout_s:g} s")
            return None
        except httpx.HTTPError as e:
            self._failed(what, f"{type(e).__name__}: {e}")
            return None
        code = response.status_code
        if code in (418, 429):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            told = f", Retry-After {retry_after:g} s" if retry_after is not None else ""
            self._failed(what, f"HTTP {code} rate limited{told}", retry_after)
            return None
        if code >= 400:
            self._failed(what, f"HTTP {code}: {_excerpt(response.content)}")
            return None
        try:
            return self._parsed(what, parse, orjson.loads(response.content))
        except orjson.JSONDecodeError:
            self._failed(what, f"malformed JSON: {_excerpt(response.content)}")
            return None

    def _parsed(self, what: str, parse: Callable[[Any], T], payload: Any) -> T | None:
        try:
            result = parse(payload)
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as e:
            self._failed(what, f"unexpected JSON ({type(e).__name__}: {e})")
            return None
        self._succeeded(what)
        return result

    def _chart(
        self, client: httpx.Client, coin: str, days: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        params = {"vs_currency": self.vs_currency, "days": str(days)}
        return self._get(client, f"/coins/{self.coin_ids[coin]}/market_chart", params, _parse_chart)

    def _price_params(self) -> dict[str, str]:
        return {
            "ids": ",".join(self.coin_ids.values()),
            "vs_currencies": self.vs_currency,
            "include_24hr_vol": "true",
            "include_last_updated_at": "true",
            "precision": "full",
        }

    def _parse_prices(self, payload: Any) -> dict[str, tuple[int, float, float]]:
        """``/simple/price`` -> coin: (timestamp_ms, price, 24h volume in base units)."""
        if not isinstance(payload, dict):
            raise TypeError(f"expected an object keyed by coin id, got {type(payload).__name__}")
        quotes = {}
        for coin, coin_id in self.coin_ids.items():
            entry: Any = payload.get(coin_id)
            try:
                price = float(entry[self.vs_currency])
                updated_s = int(entry["last_updated_at"])
                volume_quote = float(entry.get(f"{self.vs_currency}_24h_vol") or 0.0)
            except (AttributeError, KeyError, TypeError, ValueError):
                if coin not in self._missing:
                    logger.warning("%s: no usable price for %s in %s", self.name, coin, entry)
                    self._missing.add(coin)
                continue
            if not (math.isfinite(price) and price > 0):
                continue
            self._missing.discard(coin)
            quotes[coin] = (updated_s * 1000, price, volume_quote / price)
        return quotes


def _parse_chart(payload: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``market_chart`` -> (timestamp_ms, price, 24h volume in base units), sorted, deduped."""
    if not isinstance(payload, dict):
        raise TypeError(f"expected an object with 'prices', got {type(payload).__name__}")
    volume_at = {int(t): float(v) for t, v in payload.get("total_volumes") or [] if v is not None}
    points: dict[int, float] = {}
    for t, p in payload["prices"]:
        if p is not None and math.isfinite(float(p)) and float(p) > 0:
            points[int(t)] = float(p)  # a repeated timestamp keeps its last price
    ts = np.array(sorted(points), dtype=np.int64)
    price = np.array([points[t] for t in ts.tolist()], dtype=np.float64)
    volume = np.array([volume_at.get(t, 0.0) for t in ts.tolist()], dtype=np.float64) / price
    return ts, price, volume


def _parse_listing(payload: Any) -> list[dict[str, Any]]:
    if not isinstance(payload, list) or not all(isinstance(e, dict) for e in payload):
        raise TypeError("expected a list of {id, symbol, name} objects")
    return payload


def _id_by_symbol(coin: str, listing: list[dict[str, Any]]) -> str:
    matches = [str(e["id"]) for e in listing if str(e.get("symbol", "")).upper() == coin]
    if len(matches) == 1:
        logger.info("coingecko: %s is %r (looked up in /coins/list)", coin, matches[0])
        return matches[0]
    hint = f"pass ids={{'{coin}': '<coingecko id>'}}"
    if not matches:
        raise ConfigError(
            f"unknown coin {coin!r}: not in the built-in table (velocitas.data.coingecko."
            f"COIN_IDS) and no CoinGecko coin has that symbol; {hint}"
        )
    shown = ", ".join(matches[:8]) + (", ..." if len(matches) > 8 else "")
    raise ConfigError(f"{coin!r} is ambiguous on CoinGecko ({shown}); {hint}")


def _check_positive(**values: float) -> None:
    for key, value in values.items():
        if not value > 0:
            raise ConfigError(f"{key} must be > 0, was {value}")


def _excerpt(body: bytes, limit: int = 80) -> str:
    text = body[:limit].decode("utf-8", "replace").replace("\n", " ")
    return repr(text + ("..." if len(body) > limit else ""))


def coingecko_source(
    coins: Sequence[str], settings: CoinGeckoSettings, **options: Any
) -> CoinGeckoSource:
    """The CoinGecko source for ``HFTEngine.start("coingecko", ...)``: URL from settings.

    Raises:
        ConfigError: an option ``CoinGeckoSource`` does not take, or what it raises.
    """
    reject_unknown_options(CoinGeckoSource, options, "coingecko", ("coins",))
    options.setdefault("base_url", settings.coingecko_url)
    return CoinGeckoSource(coins, **options)
