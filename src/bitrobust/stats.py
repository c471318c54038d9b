"""Statistics of repeated measurements: summaries with confidence intervals, intervals for a
proportion, and rank correlation. One definition of each, used by every study and command.

- :func:`summarize` → :class:`Summary`: mean, sample standard deviation, min, max and a
  confidence interval for the mean over fault patterns (Student t, or a seeded percentile
  bootstrap). Mean and standard deviation come from :mod:`statistics` (``fmean``, ``stdev``), so
  figures recorded before this module existed are reproduced bit for bit.
- :func:`hierarchical_bootstrap_interval`: two-level bootstrap interval of a mean over values
  nested in groups (fault patterns within training seeds).
- :func:`proportion_interval`: Wilson or exact Clopper–Pearson interval for an error rate
  measured as k wrong out of n examples.
- :func:`spearman`, :func:`spearman_test`, :func:`spearman_bootstrap_interval`: rank correlation
  (ties take their average rank), its permutation p-value and its percentile bootstrap
  interval. Degenerate input — fewer than 3 pairs, NaN, or a constant side — has no
  correlation: all three return None for it.

The distribution functions (regularized incomplete beta by the continued fraction of Numerical
Recipes §6.4, its inverse by bisection, the normal and Student-t quantiles) are written here so
that the package needs no scipy. Torch-free; numpy only.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SUMMARY_METHODS = ("t", "bootstrap")
PROPORTION_METHODS = ("wilson", "clopper-pearson")
BOOTSTRAP_RESAMPLES = 10_000
PERMUTATIONS = 10_000
EXACT_PERMUTATION_MAX_N = 8  # 8! = 40320 orderings: enumerate them instead of sampling

_EPS = 1e-15  # relative precision of the continued fraction
_TINY = 1e-300  # keeps the Lentz recurrence away from division by zero


@dataclass(frozen=True)
class Summary:
    """Descriptive figures of n measurements and a confidence interval for their mean.

    ``std`` is the sample standard deviation (ddof = 1; 0 for one value). ``ci_low``/``ci_high``
    are None for a single value (one measurement says nothing about its spread).
    """

    mean: float
    std: float
    min: float
    max: float
    n: int
    ci_low: float | None
    ci_high: float | None
    confidence: float
    method: str = "t"

    def to_json(self, interval: bool = True) -> dict[str, Any]:
        """A plain dict; ``interval=False`` keeps only mean, std, min and max (the four figures
        the studies record per row)."""
        if not interval:
            return {"mean": self.mean, "std": self.std, "min": self.min, "max": self.max}
        return asdict(self)


def summarize(
    values: Sequence[float],
    confidence: float = 0.95,
    method: str = "t",
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> Summary:
    """Summarize ``values`` (e.g. RErr over fault patterns).

    ``method="t"``: mean ± t_{n−1} · std / √n. ``method="bootstrap"``: percentile interval of
    the means of ``resamples`` resamples with replacement, drawn from a numpy generator seeded
    by ``seed`` (the same values and seed give the same interval).
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarize needs at least one value")
    _check_confidence(confidence)
    if method not in SUMMARY_METHODS:
        raise ValueError(f"method must be one of {SUMMARY_METHODS}, got {method!r}")
    n = len(values)
    smallest, largest = min(values), max(values)
    mean = min(max(statistics.fmean(values), smallest), largest)  # rounding stays in range
    std = statistics.stdev(values) if n > 1 else 0.0
    low = high = None
    if n > 1 and method == "t":
        half = t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
        low, high = mean - half, mean + half
    elif n > 1:
        if resamples < 1:
            raise ValueError(f"resamples must be >= 1, got {resamples}")
        low, high = _bootstrap_interval(np.asarray(values), confidence, seed, resamples)
    if low is not None and high is not None:  # the interval holds the mean, to the last bit
        low, high = min(low, mean), max(high, mean)
    return Summary(mean, std, smallest, largest, n, low, high, confidence, method)


def _bootstrap_interval(
    values: np.ndarray, confidence: float, seed: int, resamples: int
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 1_000_000 // len(values))  # bound the index array's memory
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        picks = rng.integers(0, len(values), size=(stop - start, len(values)))
        means[start:stop] = values[picks].mean(axis=1)
    return _percentile_interval(means, values, confidence)


def _percentile_interval(
    means: np.ndarray, values: np.ndarray, confidence: float
) -> tuple[float, float]:
    """The central ``confidence`` interval of resampled ``means`` of ``values``."""
    tail = (1 - confidence) / 2
    low, high = (float(v) for v in np.quantile(means, [tail, 1 - tail]))
    # a resampled mean lies in [min, max] and the interval around the sample mean; summing in
    # floating point can step a last bit outside, so put it back
    mean = statistics.fmean(values.tolist())
    return max(min(low, mean), float(values.min())), min(max(high, mean), float(values.max()))


def hierarchical_bootstrap_interval(
    groups: Sequence[Sequence[float]],
    confidence: float = 0.95,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> tuple[float, float]:
    """Two-level percentile bootstrap interval for the mean of all values of ``groups``.

    For measurements nested in groups (fault patterns within training seeds): each resample
    draws as many groups as there are, with replacement, then within each drawn group as many
    values as it holds, with replacement, and takes the mean of all values drawn (the pooled
    mean: groups weigh by their size, as in the point estimate). The numpy generator is seeded
    by ``seed``; the same groups in the same order give the same interval. The interval holds
    the pooled mean and lies within [min, max].

    Resampling both levels counts the within-group spread twice (it is already part of the
    spread of the group means), so with many values per group the interval leans wide; with few
    groups the percentile interval leans narrow. See tests/test_campaign_statistics.py for
    measured coverage.
    """
    arrays = [np.asarray(g, dtype=float).ravel() for g in groups]
    if not arrays or any(len(a) == 0 for a in arrays):
        raise ValueError("hierarchical_bootstrap_interval needs at least one non-empty group")
    _check_confidence(confidence)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    sizes = np.array([len(a) for a in arrays])
    width = int(sizes.max())
    padded = np.zeros((len(arrays), width))
    for row, a in zip(padded, arrays):
        row[: len(a)] = a
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    flat = padded.ravel()
    equal = bool((sizes == width).all())
    shape = (len(arrays), width)
    chunk = max(1, 1_000_000 // (len(arrays) * width))  # bound the index array's memory
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        picked = rng.integers(0, len(arrays), size=(rows, len(arrays)))[..., None]
        if equal:  # the common case: as many patterns for every training seed
            within = rng.integers(0, width, size=(rows, *shape))
            means[start : start + rows] = flat[picked * width + within].mean(axis=(1, 2))
            continue
        counts = sizes[picked]  # values to draw within each drawn group
        within = (rng.random((rows, *shape)) * counts).astype(np.intp)
        within = np.minimum(within, counts - 1)  # a product that rounds up to the count
        drawn = flat[picked * width + within] * (np.arange(width) < counts)
        means[start : start + rows] = drawn.sum(axis=(1, 2)) / counts.sum(axis=(1, 2))
    return _percentile_interval(means, np.concatenate(arrays), confidence)


def proportion_interval(
    errors: int, n: int, confidence: float = 0.95, method: str = "wilson"
) -> tuple[float, float]:
    """Confidence interval for a rate measured as ``errors`` out of ``n`` examples.

    ``"wilson"``: the score interval (good coverage, cheap). ``"clopper-pearson"``: the exact
    interval from beta quantiles; coverage is at least ``confidence`` for every true rate.
    """
    if isinstance(errors, bool) or not isinstance(errors, (int, np.integer)):
        raise TypeError(f"errors must be an integer count, got {errors!r}")
    if n < 1 or not 0 <= errors <= n:
        raise ValueError(f"need 0 <= errors <= n and n >= 1, got errors={errors}, n={n}")
    _check_confidence(confidence)
    alpha = 1 - confidence
    if method == "wilson":
        z = normal_quantile(1 - alpha / 2)
        rate, z2 = errors / n, z * z
        center = (rate + z2 / (2 * n)) / (1 + z2 / n)
        half = z / (1 + z2 / n) * math.sqrt(rate * (1 - rate) / n + z2 / (4 * n * n))
        # at k = 0 (k = n) the bound is 0 (1) exactly; rounding would leave it a hair off
        low = 0.0 if errors == 0 else max(0.0, center - half)
        return low, 1.0 if errors == n else min(1.0, center + half)
    if method == "clopper-pearson":
        low = 0.0 if errors == 0 else beta_quantile(alpha / 2, errors, n - errors + 1)
        high = 1.0 if errors == n else beta_quantile(1 - alpha / 2, errors + 1, n - errors)
        return low, high
    raise ValueError(f"method must be one of {PROPORTION_METHODS}, got {method!r}")


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation of paired values, in [−1, 1]; ties take their average rank.

    None when it is undefined or meaningless: fewer than 3 pairs, a NaN, or a constant side.
    Raises ValueError for sequences of different lengths.
    """
    centered = _centered_ranks(x, y)
    if centered is None:
        return None
    rx, ry = centered
    return _correlation(rx, ry)


def spearman_test(
    x: Sequence[float], y: Sequence[float], permutations: int = PERMUTATIONS, seed: int = 0
) -> tuple[float | None, float | None]:
    """(ρ, two-sided p-value) of the hypothesis that x and y are unrelated.

    The p-value is the fraction of orderings of y whose |ρ| reaches the observed one: all n!
    orderings for n ≤ 8, else ``permutations`` orderings drawn from a generator seeded by
    ``seed`` (counting the observed one, so p > 0). (None, None) for degenerate input.
    """
    centered = _centered_ranks(x, y)
    if centered is None:
        return None, None
    rx, ry = centered
    rho = _correlation(rx, ry)
    denominator = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    threshold = abs(rho) * denominator - 1e-9 * denominator
    n = len(rx)
    if n <= EXACT_PERMUTATION_MAX_N:
        from itertools import permutations as orderings

        shuffled = ry[np.array(list(orderings(range(n))))]
        hits = int((np.abs(shuffled @ rx) >= threshold).sum())
        return rho, hits / len(shuffled)
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations}")
    rng = np.random.default_rng(seed)
    hits = 0
    chunk = max(1, 1_000_000 // n)
    for start in range(0, permutations, chunk):
        rows = min(chunk, permutations - start)
        shuffled = rng.permuted(np.broadcast_to(ry, (rows, n)), axis=1)
        hits += int((np.abs(shuffled @ rx) >= threshold).sum())
    return rho, (hits + 1) / (permutations + 1)


def spearman_bootstrap_interval(
    x: Sequence[float],
    y: Sequence[float],
    confidence: float = 0.95,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of Spearman's ρ of paired values.

    Each resample draws n pairs with replacement (numpy generator seeded by ``seed``: the same
    pairs in the same order give the same interval) and takes their ρ (ties: average ranks).
    Resamples with a constant side have no ρ and are dropped; None when the observed ρ is
    undefined (:func:`spearman`) or when more than half of the resamples are. The pairs are
    taken as independent: for pairs that share a cluster (training seeds of one recipe) the
    interval leans narrow.
    """
    _check_confidence(confidence)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if spearman(x, y) is None:
        return None
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(a)
    rng = np.random.default_rng(seed)
    rhos = np.empty(resamples)
    chunk = max(1, 4_000_000 // (n * n))  # bound the (rows, n, n) comparison arrays
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        picks = rng.integers(0, n, size=(rows, n))
        rhos[start : start + rows] = _row_spearman(a[picks], b[picks])
    valid = rhos[~np.isnan(rhos)]
    if 2 * len(valid) < resamples:
        return None
    tail = (1 - confidence) / 2
    low, high = (float(v) for v in np.quantile(valid, [tail, 1 - tail]))
    return max(-1.0, low), min(1.0, high)


def _row_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's ρ of each row pair of two (rows, n) arrays; NaN where a side is constant."""
    ra, rb = _row_ranks(a), _row_ranks(b)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    scale = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(axis=1) / scale
    return np.where(scale > 0, np.clip(rho, -1.0, 1.0), np.nan)


def _row_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n−1 within each row, ties replaced by the mean of their ranks."""
    below = (values[:, None, :] < values[:, :, None]).sum(axis=2)
    equal = (values[:, None, :] == values[:, :, None]).sum(axis=2)
    return below + (equal - 1) / 2


def _centered_ranks(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray] | None:
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"spearman needs two 1-d sequences of equal length, got {a.shape}, {b.shape}"
        )
    if len(a) < 3 or np.isnan(a).any() or np.isnan(b).any():
        return None
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    if not ra.any() or not rb.any():  # a constant side has all ranks equal
        return None
    return ra, rb


def _correlation(ra: np.ndarray, rb: np.ndarray) -> float:
    rho = float((ra * rb).sum() / math.sqrt(float((ra * ra).sum() * (rb * rb).sum())))
    return max(-1.0, min(1.0, rho))


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n−1, ties replaced by the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts
    return (starts + (counts - 1) / 2)[inverse]


# --- distribution functions -------------------------------------------------------------------


def incomplete_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (a, b > 0, 0 ≤ x ≤ 1)."""
    if a <= 0 or b <= 0:
        raise ValueError(f"incomplete_beta needs a, b > 0, got a={a}, b={b}")
    if not 0 <= x <= 1:
        raise ValueError(f"incomplete_beta needs 0 <= x <= 1, got {x}")
    if x == 0 or x == 1:
        return float(x)
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # the continued fraction converges fast for x < (a + 1) / (a + b + 2); use symmetry above
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(1 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    """Continued fraction of I_x(a, b) by the modified Lentz method (Numerical Recipes 6.4)."""
    qab, qap, qam = a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > _TINY else _TINY)
            c = 1 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            delta = d * c
            h *= delta
        if abs(delta - 1) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for x={x}, a={a}, b={b}")


def beta_quantile(q: float, a: float, b: float) -> float:
    """The x with I_x(a, b) = q, by bisection (to about 1e-15; I_x is increasing in x)."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile level must be in [0, 1], got {q}")
    low, high = 0.0, 1.0
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if incomplete_beta(middle, a, b) < q:
            low = middle
        else:
            high = middle
    return (low + high) / 2


@functools.lru_cache(maxsize=256)  # studies ask for the same few (q, df) over and over
def t_quantile(q: float, df: float) -> float:
    """The q-quantile of Student's t distribution with ``df`` degrees of freedom.

    For t > 0, P(T > t) = I_{df/(df+t²)}(df/2, 1/2) / 2: invert that beta.
    """
    if not 0 < q < 1:
        raise ValueError(f"quantile level must be in (0, 1), got {q}")
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if q == 0.5:
        return 0.0
    tail = min(q, 1 - q)
    x = beta_quantile(2 * tail, df / 2, 0.5)
    t = math.sqrt(df * (1 - x) / x) if x > 0 else math.inf
    return t if q > 0.5 else -t


def normal_quantile(q: float) -> float:
    """The q-quantile of the standard normal distribution (bisection on ``math.erfc``)."""
    if not 0 < q < 1:
        raise ValueError(f"quantile level must be in (0, 1), got {q}")
    low, high = -40.0, 40.0
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if 0.5 * math.erfc(-middle / math.sqrt(2)) < q:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


__all__ = [
    "PROPORTION_METHODS",
    "SUMMARY_METHODS",
    "Summary",
    "beta_quantile",
    "hierarchical_bootstrap_interval",
    "incomplete_beta",
    "normal_quantile",
    "proportion_interval",
    "spearman",
    "spearman_bootstrap_interval",
    "spearman_test",
    "summarize",
    "t_quantile",
]
