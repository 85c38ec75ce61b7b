"""Any exchange ccxt supports as a live source (``data_source="ccxt:kraken"``), by REST polling.

ccxt is an optional extra (``pip install "velocitas[ccxt]"``) and is imported only when a
``CcxtSource`` is built. The source polls ccxt's unified ``fetch_trades(symbol, since)`` for
each coin's ``COIN/quote`` market, keeps trades in time order and drops the ones already sent
(same timestamp and trade id), optionally after ``history_bars`` closed bars from
``fetch_ohlcv`` sent as ticks at the bar's open time with its close price.

ccxt's own throttle (``enableRateLimit``, on by default) spaces the requests by the exchange's
documented limit; errors (rate limits with ``Retry-After``, 5xx, timeouts, bodies ccxt cannot
read, bodies that are not JSON) are logged on one line and retried after a back-off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from difflib import get_close_matches
from typing import Any

import numpy as np
import orjson

from velocitas.core.errors import ConfigError, DataError
from velocitas.core.models import CoinSeries, Dataset
from velocitas.data._polling import PollingFeed, parse_retry_after, reject_unknown_options

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "velocitas[ccxt]"'
HISTORY_ATTEMPTS = 3
_REASON_CHARS = 160


def import_ccxt() -> Any:
    """The ccxt module, or a ConfigError telling how to install it."""
    try:
        import ccxt
    except ImportError as e:
        raise ConfigError(f"the ccxt data source needs the ccxt package: {INSTALL_HINT}") from e
    return ccxt


class CcxtSource(PollingFeed):
    """Trades from one exchange through ccxt, polled in a background thread.

    Args:
        exchange_id: a ccxt exchange id, e.g. ``"kraken"`` (see ``ccxt.exchanges``).
        coins: base assets, e.g. ``["BTC", "ETH"]``; each trades as ``COIN/quote``.
        quote: the quote asset of the markets.
        poll_interval_s: time between two rounds of ``fetch_trades`` (one per coin).
        exchange: a ready ccxt exchange object to use instead of building one (its owner
            closes it); its ``id`` must be ``exchange_id``.
        history_bars: closed ``timeframe`` bars per coin sent before the live trades (0: none).
        timeframe: bar size for the history, in ccxt's notation (``"1m"``, ``"1h"``...).
        trades_limit: ``limit`` passed to ``fetch_trades``; when a page comes back full the
            next one is fetched at once instead of after ``poll_interval_s``.
        timeout_s: per-request timeout of an exchange built here (exchange= keeps its own).
        exchange_options: extra ccxt constructor options for an exchange built here.
        backoff_initial_s, max_backoff_s: retry delays after a failure (doubling).

    Raises:
        ConfigError: ccxt missing, an unknown exchange id, or a coin without a market.
        DataError: the exchange's markets could not be loaded (network, exchange down).
    """

    def __init__(
        self,
        exchange_id: str,
        coins: Sequence[str],
        *,
        quote: str = "USDT",
        poll_interval_s: float = 2.0,
        exchange: Any = None,
        history_bars: int = 0,
        timeframe: str = "1m",
        trades_limit: int | None = None,
        timeout_s: float = 10.0,
        exchange_options: Mapping[str, Any] | None = None,
        backoff_initial_s: float = 1.0,
        max_backoff_s: float = 60.0,
    ) -> None:
        super().__init__(backoff_initial_s=backoff_initial_s, max_backoff_s=max_backoff_s)
        if not poll_interval_s > 0 or not timeout_s > 0:
            raise ConfigError(
                f"poll_interval_s and timeout_s must be > 0, "
                f"were poll_interval_s={poll_interval_s} timeout_s={timeout_s}"
            )
        if history_bars < 0 or (trades_limit is not None and trades_limit < 1):
            raise ConfigError(
                f"history_bars must be >= 0 and trades_limit >= 1, "
                f"were history_bars={history_bars} trades_limit={trades_limit}"
            )
        if exchange is not None and exchange_options:
            raise ConfigError("exchange_options is for an exchange built here, not for exchange=")
        self.ccxt = import_ccxt()
        self.name = f"ccxt:{exchange_id}"
        self.poll_interval_s = poll_interval_s
        self.history_bars = history_bars
        self.timeframe = timeframe
        self.trades_limit = trades_limit
        self.timeout_s = timeout_s
        self._owns_exchange = exchange is None
        if exchange is None:
            exchange = self._build(exchange_id, timeout_s, exchange_options or {})
        self.exchange = exchange
        if exchange.id != exchange_id:
            raise ConfigError(f"exchange= is a {exchange.id!r} exchange, not {exchange_id!r}")
        self._check_capabilities()
        self.symbols = self._resolve_symbols(coins, quote.upper())
        self._last_ts: dict[str, int] = dict.fromkeys(self.symbols, -1)
        # Ids of the trades sent at the last timestamp (None: every trade then counts as sent).
        self._ids_at_last_ts: dict[str, set[str] | None] = {coin: set() for coin in self.symbols}
        self._since: dict[str, int | None] = dict.fromkeys(self.symbols)
        self._missed: set[str] = set()  # coins whose last fetch failed
        self._history_done = history_bars == 0

    # -- setup ----------------------------------------------------------------------------
    def _build(self, exchange_id: str, timeout_s: float, options: Mapping[str, Any]) -> Any:
        if exchange_id not in self.ccxt.exchanges:
            near = get_close_matches(exchange_id, self.ccxt.exchanges, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else "; see ccxt.exchanges"
            raise ConfigError(f"unknown ccxt exchange {exchange_id!r}{hint}")
        config = {"enableRateLimit": True, "timeout": int(timeout_s * 1000), **options}
        return getattr(self.ccxt, exchange_id)(config)

    def _check_capabilities(self) -> None:
        has = getattr(self.exchange, "has", {})
        needs = ["fetchTrades"] + (["fetchOHLCV"] if self.history_bars else [])
        missing = [n for n in needs if not has.get(n)]
        if missing:
            self._finish()
            raise ConfigError(f"{self.exchange.id} does not support {', '.join(missing)} in ccxt")
        if self.history_bars:
            try:
                self.exchange.parse_timeframe(self.timeframe)
            except Exception as e:
                self._finish()
                raise ConfigError(
                    f"timeframe must be like '1m' or '1h', was {self.timeframe!r}"
                ) from e

    def _resolve_symbols(self, coins: Sequence[str], quote: str) -> dict[str, str]:
        wanted = list(dict.fromkeys(c.upper() for c in coins))
        if not wanted:
            raise ConfigError(f"the {self.name} source needs at least one coin")
        try:
            markets = self.exchange.load_markets()
        except Exception as e:
            self._finish()
            raise DataError(
                f"{self.name}: could not load the exchange's markets "
                f"({_reason(e)}); check the network and try again"
            ) from e
        symbols = {}
        for coin in wanted:
            symbol = f"{coin}/{quote}"
            if symbol not in markets:
                self._finish()
                others = sorted(s for s in markets if s.split("/")[0] == coin)[:8]
                listed = f"it lists {', '.join(others)}" if others else f"it has no {coin} market"
                raise ConfigError(f"{self.exchange.id} has no {symbol} market; {listed}")
            symbols[coin] = symbol
        return symbols

    # -- the poller -----------------------------------------------------------------------
    def _run(self) -> None:
        if not self._history_done:
            self._load_history()
            self._history_done = True
        while not self.closed:
            started = time.monotonic()
            page_full = False
            for coin in self.symbols:
                if self.closed:
                    return
                page_full |= self._poll(coin)
            if not page_full:
                self._stop.wait(max(0.0, started + self.poll_interval_s - time.monotonic()))

    def _finish(self) -> None:
        if self._owns_exchange and getattr(self, "exchange", None) is not None:
            self.exchange.close()

    def _load_history(self) -> None:
        step_ms = int(self.exchange.parse_timeframe(self.timeframe) * 1000)
        series = []
        for coin, symbol in self.symbols.items():
            bars = None
            for _ in range(HISTORY_ATTEMPTS):
                if self.closed:
                    return
                bars = self._call(
                    f"fetch_ohlcv {symbol}",
                    lambda s=symbol: self.exchange.fetch_ohlcv(
                        s, self.timeframe, limit=self.history_bars + 1
                    ),
                )
                if bars is not None:
                    break
            if not bars:
                logger.warning("%s: no history for %s; starting from live trades", self.name, coin)
                continue
            now_ms = self.exchange.milliseconds()
            closed_bars = [b for b in bars if b[0] + step_ms <= now_ms][-self.history_bars :]
            ts = np.array([int(b[0]) for b in closed_bars], dtype=np.int64)
            close = np.array([float(b[4]) for b in closed_bars], dtype=np.float64)
            volume = np.array([float(b[5] or 0.0) for b in closed_bars], dtype=np.float64)
            if len(ts):
                series.append(CoinSeries(coin, ts, close, volume))
                # Live trades start where the last bar ends: none of them is inside a bar sent.
                self._since[coin] = int(ts[-1]) + step_ms
                self._last_ts[coin] = int(ts[-1]) + step_ms - 1
                self._ids_at_last_ts[coin] = None
        self._emit(Dataset(tuple(series), source=self.name))

    def _poll(self, coin: str) -> bool:
        """Fetch and send ``coin``'s new trades; True when the page came back full."""
        symbol = self.symbols[coin]
        since = self._since[coin]
        trades = self._call(
            f"fetch_trades {symbol}",
            lambda: self.exchange.fetch_trades(symbol, since=since, limit=self.trades_limit),
        )
        if trades is None:
            self._missed.add(coin)
            return False
        try:
            fresh = self._fresh(coin, trades)
        except (KeyError, TypeError, ValueError) as e:
            self._failed(f"fetch_trades {symbol}", f"unreadable trades ({_reason(e)})")
            self._missed.add(coin)
            return False
        if len(fresh):
            if coin in self._missed and since is not None:
                self.gaps_filled += 1  # fetched from the last trade seen: the outage is covered
            self._missed.discard(coin)
            self._since[coin] = int(fresh.timestamp_ms[-1])
            self._emit(Dataset((fresh,), source=self.name))
        return self.trades_limit is not None and len(trades) >= self.trades_limit

    def _fresh(self, coin: str, trades: list[dict[str, Any]]) -> CoinSeries:
        """The trades not sent yet (by timestamp, and trade id within a millisecond), in order."""
        rows = sorted(  # by time only: ties keep the exchange's (trade id) order
            (
                (int(t["timestamp"]), str(t.get("id")), float(t["price"]), float(t["amount"] or 0))
                for t in trades
                if t.get("timestamp") is not None and t.get("price") is not None
            ),
            key=lambda row: row[0],
        )
        last, seen = self._last_ts[coin], self._ids_at_last_ts[coin]
        kept = []
        for ts, trade_id, price, amount in rows:
            if ts < last or (ts == last and (seen is None or trade_id in seen)):
                continue
            if ts > last or seen is None:
                last, seen = ts, set()
            seen.add(trade_id)
            kept.append((ts, price, amount))
        self._last_ts[coin], self._ids_at_last_ts[coin] = last, seen
        return CoinSeries(
            coin,
            np.array([k[0] for k in kept], dtype=np.int64),
            np.array([k[1] for k in kept], dtype=np.float64),
            np.array([k[2] for k in kept], dtype=np.float64),
        )

    def _call(self, what: str, request: Any) -> Any:
        """Run one ccxt request; its result, or None after a failure was logged and waited out."""
        errors = self.ccxt
        try:
            result = request()
        except (errors.DDoSProtection, errors.RateLimitExceeded) as e:
            headers = getattr(self.exchange, "last_response_headers", None) or {}
            retry_after = parse_retry_after(headers.get("Retry-After"))
            told = f", Retry-After {retry_after:g} s" if retry_after is not None else ""
            self._failed(what, f"rate limited{told}: {_reason(e)}", retry_after)
            return None
        except errors.RequestTimeout:
            self._failed(what, f"no answer within {self.exchange.timeout / 1000:g} s")
            return None
        except Exception as e:  # ccxt raises many kinds; none may stop the feed
            self._failed(what, _reason(e))
            return None
        body = getattr(self.exchange, "last_http_response", None)
        if isinstance(body, str) and body and not _is_json(body):
            # ccxt reads a body that is not JSON as "no data": say so and back off instead.
            self._failed(what, f"malformed JSON: {body[:80]!r}")
            return None
        self._succeeded(what)
        return result


def _is_json(body: str) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


def _reason(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".replace("\n", " ")
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS] + "..."


def ccxt_source(exchange_id: str, coins: Sequence[str], **options: Any) -> CcxtSource:
    """The source for ``HFTEngine.start("ccxt:<exchange>", ...)``.

    Raises:
        ConfigError: an option ``CcxtSource`` does not take, or what it raises.
    """
    reject_unknown_options(CcxtSource, options, f"ccxt:{exchange_id}", ("exchange_id", "coins"))
    return CcxtSource(exchange_id, coins, **options)
