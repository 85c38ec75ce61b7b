"""Synthetic tick data: correlated geometric Brownian motion with labelled market regimes.

All coins share one regime timeline, a Markov chain of segments: each segment lasts a
uniform random number of ticks in ``[ceil(L/2), floor(3L/2)]`` (``L = mean_regime_length``)
and then hands over to one of the other three regimes, picked uniformly. Within a regime,
log prices follow GBM with the drift and volatility below, **per tick** (not per unit of
time), so a regime looks the same whatever ``interval_ms`` is: at 1 s and at 1 min spacing a
mean-length trend segment moves ~8 % against ~2.2 % of noise (about 3.6 sigma), and the
volatile regime is 4x, the sideways one 0.5x, the trend volatility.

=============  =====================  ========================  ================
regime         drift mu (log / tick)  volatility sigma (/ tick)  volume multiple
=============  =====================  ========================  ================
``uptrend``    +4e-5                  5e-4 x noise              1.3
``downtrend``  -4e-5                  5e-4 x noise              1.3
``sideways``   0                      2.5e-4 x noise            0.7
``volatile``   0                      2e-3 x noise              2.0
=============  =====================  ========================  ================

A tick's log return is ``mu - sigma**2 / 2 + sigma * z`` (Itô-corrected GBM), ``z`` standard
normal, correlated across coins through the Cholesky factor of a constant-correlation
matrix. Prices are rounded to ``tick_size`` (at least one tick, so always > 0). Volumes are
lognormal around 1,000 quote units per tick times the regime's multiple.

Three independent PCG64 streams (spawned from ``seed``) drive the regimes, the returns and
the volumes, each drawn in file order, so ``iter_synthetic`` yields exactly the values of
one-shot ``generate`` for the same arguments, with flat memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from velocitas.core.errors import ConfigError
from velocitas.core.models import CoinSeries, Dataset, FloatArray

REGIME_NAMES = ("uptrend", "downtrend", "sideways", "volatile")
_DRIFT = np.array([4e-5, -4e-5, 0.0, 0.0])
_VOLATILITY = np.array([5e-4, 5e-4, 2.5e-4, 2e-3])
_VOLUME_MULTIPLE = np.array([1.3, 1.3, 0.7, 2.0])
_VOLUME_SIGMA = 0.8
_NOTIONAL_PER_TICK = 1_000.0
_DEFAULT_START_PRICES = {
    "BTC": 30_000.0,
    "ETH": 2_000.0,
    "BNB": 300.0,
    "SOL": 100.0,
    "XRP": 0.5,
    "ADA": 0.4,
}
_OTHER_START_PRICE = 100.0
_SEGMENT_BATCH = 1_024


@dataclass(frozen=True, slots=True, eq=False)
class SyntheticData:
    """Generated ticks and the regime each tick was drawn in.

    ``regimes[i]`` is the code (index into ``regime_names``) of tick ``i``, shared by all
    coins. From ``iter_synthetic`` each chunk's indices are relative to that chunk.
    """

    dataset: Dataset
    regimes: npt.NDArray[np.int8]
    regime_names: tuple[str, ...] = REGIME_NAMES

    def segments(self) -> list[tuple[int, int, str]]:
        """``(start_idx, stop_idx, regime_name)`` of each run of one regime, in order."""
        r = self.regimes
        if r.shape[0] == 0:
            return []
        cuts = np.flatnonzero(r[1:] != r[:-1]) + 1
        starts = np.r_[0, cuts].tolist()
        stops = np.r_[cuts, r.shape[0]].tolist()
        return [(a, b, self.regime_names[int(r[a])]) for a, b in zip(starts, stops, strict=True)]


def generate(
    n_ticks: int,
    coins: Sequence[str] = ("BTC",),
    *,
    seed: int = 0,
    interval_ms: int = 1000,
    start_ms: int = 1_700_000_000_000,
    start_prices: Mapping[str, float] | None = None,
    correlation: float = 0.6,
    mean_regime_length: int = 2_000,
    noise: float = 1.0,
    tick_size: float = 0.01,
) -> SyntheticData:
    """``n_ticks`` ticks per coin, one every ``interval_ms`` from ``start_ms``.

    Args:
        coins: coin names (upper-cased); default start prices are BTC 30,000, ETH 2,000,
            BNB 300, SOL 100, XRP 0.5, ADA 0.4 and 100 for any other coin.
        correlation: between the coins' return shocks; must keep the correlation matrix
            positive definite, i.e. ``-1/(len(coins)-1) < correlation < 1``.
        noise: scales every regime's volatility (0 gives pure drift).

    Raises:
        ConfigError: an argument is out of range.
    """
    path = _PricePath(
        n_ticks,
        coins,
        seed=seed,
        interval_ms=interval_ms,
        start_ms=start_ms,
        start_prices=start_prices,
        correlation=correlation,
        mean_regime_length=mean_regime_length,
        noise=noise,
        tick_size=tick_size,
    )
    return path.next_chunk(n_ticks)


def iter_synthetic(
    n_ticks: int,
    coins: Sequence[str] = ("BTC",),
    *,
    chunk_ticks: int = 1_000_000,
    seed: int = 0,
    interval_ms: int = 1000,
    start_ms: int = 1_700_000_000_000,
    start_prices: Mapping[str, float] | None = None,
    correlation: float = 0.6,
    mean_regime_length: int = 2_000,
    noise: float = 1.0,
    tick_size: float = 0.01,
) -> Iterator[SyntheticData]:
    """``generate``'s ticks in chunks of ``chunk_ticks`` (the last shorter), same values."""
    if chunk_ticks < 1:
        raise ConfigError(f"chunk_ticks must be >= 1, was {chunk_ticks}")
    path = _PricePath(
        n_ticks,
        coins,
        seed=seed,
        interval_ms=interval_ms,
        start_ms=start_ms,
        start_prices=start_prices,
        correlation=correlation,
        mean_regime_length=mean_regime_length,
        noise=noise,
        tick_size=tick_size,
    )

    def chunks() -> Iterator[SyntheticData]:
        left = n_ticks
        while left > 0:
            m = min(chunk_ticks, left)
            left -= m
            yield path.next_chunk(m)

    return chunks()


class _RegimeChain:
    """The regime label of each tick, drawn segment batch by segment batch.

    Segments are drawn in fixed batches, so the random stream is consumed identically
    however the ticks are requested.
    """

    def __init__(self, rng: np.random.Generator, mean_length: int) -> None:
        self._rng = rng
        self._lo = max(1, math.ceil(mean_length / 2))
        self._hi = max(self._lo, (3 * mean_length) // 2)
        self._last_code = int(rng.integers(len(REGIME_NAMES)))
        self._first = True
        self._codes = np.zeros(0, dtype=np.int8)
        self._lengths = np.zeros(0, dtype=np.int64)
        self._i = 0  # current segment in the batch
        self._used = 0  # ticks of it already handed out

    def labels(self, m: int) -> npt.NDArray[np.int8]:
        parts = [np.zeros(0, dtype=np.int8)]
        while m > 0:
            if self._i == self._lengths.shape[0]:
                self._refill()
            rest = self._lengths[self._i :].copy()
            rest[0] -= self._used
            cum = np.cumsum(rest)
            j = int(np.searchsorted(cum, m)) if cum[-1] >= m else rest.shape[0] - 1
            take = rest[: j + 1].copy()
            take[j] -= max(0, int(cum[j]) - m)
            parts.append(np.repeat(self._codes[self._i : self._i + j + 1], take))
            m -= int(take.sum())
            if take[j] == rest[j]:
                self._i, self._used = self._i + j + 1, 0
            else:
                self._used = (self._used if j == 0 else 0) + int(take[j])
                self._i += j
        return np.concatenate(parts)

    def _refill(self) -> None:
        n_regimes = len(REGIME_NAMES)
        self._lengths = self._rng.integers(self._lo, self._hi + 1, size=_SEGMENT_BATCH)
        steps = self._rng.integers(1, n_regimes, size=_SEGMENT_BATCH)  # never the same regime
        if self._first:
            steps[0], self._first = 0, False
        codes = (self._last_code + np.cumsum(steps)) % n_regimes
        self._codes = codes.astype(np.int8)
        self._last_code = int(codes[-1])
        self._i, self._used = 0, 0


class _PricePath:
    """The generator's whole state between chunks."""

    def __init__(
        self,
        n_ticks: int,
        coins: Sequence[str],
        *,
        seed: int,
        interval_ms: int,
        start_ms: int,
        start_prices: Mapping[str, float] | None,
        correlation: float,
        mean_regime_length: int,
        noise: float,
        tick_size: float,
    ) -> None:
        self.coins = [c.strip().upper() for c in coins]
        _check_args(n_ticks, self.coins, interval_ms, mean_regime_length, noise, tick_size)
        prices = {k.strip().upper(): float(v) for k, v in (start_prices or {}).items()}
        start = np.array(
            [prices.get(c, _DEFAULT_START_PRICES.get(c, _OTHER_START_PRICE)) for c in self.coins]
        )
        if not np.all((start > 0) & np.isfinite(start)):
            given = dict(zip(self.coins, start.tolist(), strict=True))
            raise ConfigError(f"start_prices must be finite and > 0, were {given}")
        self.cholesky = _cholesky(len(self.coins), correlation)
        self.log_price = np.log(start)
        self.volume_scale = _NOTIONAL_PER_TICK / start
        self.interval_ms, self.start_ms, self.noise = interval_ms, start_ms, noise
        self.tick_size = tick_size
        self.decimals = max(0, -int(Decimal(str(tick_size)).normalize().as_tuple().exponent))
        self.seed = seed
        regime_seed, return_seed, volume_seed = np.random.SeedSequence(seed).spawn(3)
        self.regimes = _RegimeChain(
            np.random.Generator(np.random.PCG64(regime_seed)), mean_regime_length
        )
        self.return_rng = np.random.Generator(np.random.PCG64(return_seed))
        self.volume_rng = np.random.Generator(np.random.PCG64(volume_seed))
        self.tick = 0

    def next_chunk(self, m: int) -> SyntheticData:
        k = len(self.coins)
        regimes = self.regimes.labels(m)
        shocks = self._correlated(self.return_rng.standard_normal((m, k)))
        sigma = _VOLATILITY[regimes] * self.noise
        steps = (_DRIFT[regimes] - 0.5 * sigma**2)[:, None] + sigma[:, None] * shocks
        if self.tick == 0 and m > 0:
            steps[0] = 0.0  # the first tick is the start price
        if m > 0:
            steps[0] += self.log_price  # the running sum continues bit for bit across chunks
            log_price = np.cumsum(steps, axis=0)
            self.log_price = log_price[-1].copy()
        else:
            log_price = steps
        volume_z = self.volume_rng.standard_normal((m, k))
        volume = (
            self.volume_scale
            * _VOLUME_MULTIPLE[regimes][:, None]
            * np.exp(_VOLUME_SIGMA * volume_z - 0.5 * _VOLUME_SIGMA**2)
        )
        timestamps = self.start_ms + (self.tick + np.arange(m, dtype=np.int64)) * self.interval_ms
        self.tick += m
        series = tuple(
            CoinSeries(
                coin=coin,
                timestamp_ms=timestamps.copy() if j else timestamps,
                price=self._on_grid(np.exp(log_price[:, j])),
                volume=np.ascontiguousarray(volume[:, j]),
            )
            for j, coin in enumerate(self.coins)
        )
        return SyntheticData(Dataset(series, source=f"synthetic(seed={self.seed})"), regimes)

    def _correlated(self, eps: FloatArray) -> FloatArray:
        """``eps @ L.T`` column by column: elementwise, so no BLAS blocking can make the
        result depend on the chunk length."""
        k = eps.shape[1]
        if k == 1:
            return eps
        out = np.empty_like(eps)
        for i in range(k):
            acc = self.cholesky[i, 0] * eps[:, 0]
            for j in range(1, i + 1):
                acc = acc + self.cholesky[i, j] * eps[:, j]
            out[:, i] = acc
        return out

    def _on_grid(self, price: FloatArray) -> FloatArray:
        ticks = np.maximum(np.rint(price / self.tick_size), 1.0)
        return np.round(ticks * self.tick_size, self.decimals)


def _check_args(
    n_ticks: int,
    coins: list[str],
    interval_ms: int,
    mean_regime_length: int,
    noise: float,
    tick_size: float,
) -> None:
    if n_ticks < 0:
        raise ConfigError(f"n_ticks must be >= 0, was {n_ticks}")
    if not coins or len(set(coins)) != len(coins) or not all(coins):
        raise ConfigError(f"coins must be distinct non-empty names, were {coins}")
    if interval_ms < 1:
        raise ConfigError(f"interval_ms must be >= 1, was {interval_ms}")
    if mean_regime_length < 1:
        raise ConfigError(f"mean_regime_length must be >= 1, was {mean_regime_length}")
    if not (noise >= 0 and math.isfinite(noise)):
        raise ConfigError(f"noise must be >= 0, was {noise}")
    if not (tick_size > 0 and math.isfinite(tick_size)):
        raise ConfigError(f"tick_size must be > 0, was {tick_size}")


def _cholesky(k: int, correlation: float) -> FloatArray:
    if k == 1:
        return np.ones((1, 1))
    lower = -1.0 / (k - 1)
    if not (lower < correlation < 1.0):
        raise ConfigError(f"correlation must be in ({lower:g}, 1) for {k} coins, was {correlation}")
    matrix = np.full((k, k), correlation)
    np.fill_diagonal(matrix, 1.0)
    return np.linalg.cholesky(matrix)
