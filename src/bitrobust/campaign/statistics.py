"""Per-cell statistics of a fault-injection campaign, and adaptive stopping.

A campaign's finished trials are flat rows (model × training seed × fault model × swept value ×
fault pattern). :func:`cell_statistics` groups them into cells by chosen keys and summarizes one
metric per cell: mean, spread, and a confidence interval of the mean over fault patterns (and
training seeds). :func:`patterns_needed` says how many more fault patterns a cell needs before
that interval is narrow enough.

Every figure comes from :mod:`bitrobust.stats`:

- one training seed: :func:`~bitrobust.stats.summarize` (seeded percentile bootstrap, or t);
- several training seeds: :func:`~bitrobust.stats.hierarchical_bootstrap_interval` (resample
  seeds, then patterns within each), or with ``method="t"`` the pooled mean ±
  t_{S−1} · seed_std / √S over the S per-seed means;
- error-rate metrics (:data:`METRIC_COUNTS`) also get :func:`~bitrobust.stats.proportion_interval`
  of the pooled count sum(count) / sum(examples).

Coverage, measured in tests/test_campaign_statistics.py (nominal 95 %): the percentile bootstrap
over 30 patterns of a skewed metric ≈ 92–93 %; the two-level bootstrap over 5 training seeds ×
20 patterns ≈ 93 % when pattern noise dominates but ≈ 85 % when seed-to-seed spread dominates
(5 seed means are too few for a bootstrap), where ``method="t"`` holds 95 %.

Output does not depend on the order of the rows: cells are sorted by their key values (None
before numbers before strings), and inside a cell the values are sorted by (training seed,
value) before resampling, so an interval depends only on the values of each training seed.
"""

from __future__ import annotations

import math
import numbers
import operator
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bitrobust import stats

METRIC_COUNTS = {"rerr": "errors_robust", "err_faulty": "errors_faulty"}
"""Error-rate metrics and the column holding their count of wrong examples (out of
``examples``)."""


@dataclass(frozen=True)
class CellStatistics:
    """One metric summarized over the trials of one cell.

    ``mean``, ``std`` (sample, ddof = 1; 0 for one trial), ``min`` and ``max`` are over all
    trials of the cell. ``ci_low``/``ci_high``: confidence interval of the mean over fault
    patterns and training seeds (None for a single trial). ``method`` is the method asked for
    ("bootstrap" or "t"); with ``training_seeds > 1`` it is the two-level version of it.
    ``pattern_std``: pooled within-seed sample standard deviation (None when no seed has two
    trials). ``seed_std``: sample standard deviation of the per-seed means (None for one seed).
    ``proportion_ci_low``/``proportion_ci_high``: interval of the pooled error count, for the
    metrics of :data:`METRIC_COUNTS` whose rows all carry the count and ``examples`` (else
    None). It measures only the sampling noise of the examples, not the spread over fault
    patterns. ``missing``: rows of the cell skipped because the metric is None or absent.
    """

    cell: dict[str, Any]
    metric: str
    n: int
    patterns: int
    training_seeds: int
    mean: float
    std: float
    min: float
    max: float
    ci_low: float | None
    ci_high: float | None
    confidence: float
    method: str
    pattern_std: float | None
    seed_std: float | None
    proportion_ci_low: float | None
    proportion_ci_high: float | None
    missing: int = 0

    def halfwidth(self) -> float | None:
        """Half the width of the confidence interval of the mean; None without one."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return (self.ci_high - self.ci_low) / 2

    def to_json(self) -> dict[str, Any]:
        """A plain dict of every field (``cell`` as a nested dict)."""
        return asdict(self)


def cell_statistics(
    rows: Sequence[Mapping[str, Any]],
    cell_keys: Sequence[str],
    metric: str,
    *,
    confidence: float = 0.95,
    method: str = "auto",
    proportion_method: str = "wilson",
    seed: int = 0,
    resamples: int = stats.BOOTSTRAP_RESAMPLES,
) -> list[CellStatistics]:
    """Group ``rows`` by the values of ``cell_keys`` and summarize ``metric`` in each group.

    A key absent from a row counts as None, and None is a value like any other. Cells come out
    sorted by their tuple of key values (None < numbers < strings < anything else, by repr).
    Rows whose metric is None or absent are skipped and counted in ``missing``; a cell with no
    value at all is left out. A NaN or infinite value raises ValueError naming the metric.

    ``method``: ``"bootstrap"``, ``"t"``, or ``"auto"`` (the default): the bootstrap for a cell
    with one training seed and t over the seed means for a cell with several, the choice that
    holds its nominal coverage in both cases (module docstring); a cell's ``method`` says which
    it got.

    Training seeds are the ``training_seed`` column (None is one seed), patterns the
    ``pattern`` column. The bootstrap generators are seeded by ``seed`` in every cell; the same
    rows in any order give the same list. ``resamples`` is passed to the bootstrap.
    """
    _check_options(confidence, method, proportion_method, resamples)
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(key) for key in cell_keys), []).append(row)
    result = []
    for key in sorted(groups, key=lambda values: tuple(_order(v) for v in values)):
        cell_rows = groups[key]
        valued = [row for row in cell_rows if row.get(metric) is not None]
        if not valued:
            continue
        result.append(
            _summarize_cell(
                dict(zip(cell_keys, key)),
                valued,
                metric,
                missing=len(cell_rows) - len(valued),
                confidence=confidence,
                method=method,
                proportion_method=proportion_method,
                seed=seed,
                resamples=resamples,
            )
        )
    return result


def patterns_needed(
    values: Sequence[float],
    *,
    target_halfwidth: float,
    max_patterns: int,
    min_patterns: int = 5,
    confidence: float = 0.95,
    step: int | None = None,
    seed: int = 0,
    resamples: int = stats.BOOTSTRAP_RESAMPLES,
) -> int:
    """How many more fault patterns a cell with these ``values`` (one training seed) should get.

    0 when ``len(values) >= max_patterns``, or when there are at least ``min_patterns`` values
    and the half-width of their interval (the one :func:`cell_statistics` gives a cell of one
    training seed: the percentile bootstrap seeded by ``seed``) is at most
    ``target_halfwidth``. Otherwise a batch of at least 1 that never takes the total past
    ``max_patterns``: ``step`` when given (but at least enough to reach ``min_patterns``), else
    enough to reach ``min_patterns`` and the estimate n ≈ (z · std / target)², growing the count
    at most twofold per batch. Deterministic: the answer depends only on the values.
    """
    if not (target_halfwidth > 0 and math.isfinite(target_halfwidth)):
        raise ValueError(f"target_halfwidth must be finite and > 0, got {target_halfwidth}")
    if max_patterns < 1 or min_patterns < 0:
        raise ValueError(
            f"need max_patterns >= 1 and min_patterns >= 0, got {max_patterns}, {min_patterns}"
        )
    if step is not None and step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    _check_options(confidence, "bootstrap", "wilson", resamples)
    ordered = sorted(_finite(v, "values") for v in values)
    n = len(ordered)
    if n >= max_patterns:
        return 0
    summary = None
    if n:
        summary = stats.summarize(
            ordered, confidence, method="bootstrap", seed=seed, resamples=resamples
        )
        low, high = summary.ci_low, summary.ci_high
        narrow = low is not None and high is not None and (high - low) / 2 <= target_halfwidth
        if narrow and n >= min_patterns:
            return 0
    if step is not None:
        total = max(n + step, min_patterns)
    elif summary is None or n < 2:  # no spread to extrapolate from
        total = max(min_patterns, n + 1)
    else:
        z = stats.normal_quantile(0.5 + confidence / 2)
        estimate = math.ceil((z * summary.std / target_halfwidth) ** 2)
        total = max(min_patterns, min(max(estimate, n + 1), 2 * n))
    return min(total, max_patterns) - n


# --- helpers ----------------------------------------------------------------------------------


def _summarize_cell(
    cell: dict[str, Any],
    rows: list[Mapping[str, Any]],
    metric: str,
    *,
    missing: int,
    confidence: float,
    method: str,
    proportion_method: str,
    seed: int,
    resamples: int,
) -> CellStatistics:
    by_seed: dict[Any, list[float]] = {}
    for row in rows:
        by_seed.setdefault(row.get("training_seed"), []).append(_finite(row[metric], metric))
    seeds = sorted(by_seed, key=_order)
    groups = [sorted(by_seed[s]) for s in seeds]
    if method == "auto":
        method = "t" if len(groups) > 1 else "bootstrap"
    values = [v for group in groups for v in group]
    one = "t" if len(groups) > 1 else method  # several seeds: the interval comes below
    summary = stats.summarize(values, confidence, method=one, seed=seed, resamples=resamples)
    low, high = summary.ci_low, summary.ci_high
    seed_std = None
    if len(groups) == 1:
        pattern_std = summary.std if summary.n > 1 else None
    else:
        freedom = sum(len(g) - 1 for g in groups)
        pattern_std = None
        if freedom:
            within = math.fsum(_squares(g) for g in groups)
            pattern_std = math.sqrt(within / freedom)
        seed_std = statistics.stdev([statistics.fmean(g) for g in groups])
        if method == "t":
            half = stats.t_quantile(0.5 + confidence / 2, len(groups) - 1) * seed_std
            half /= math.sqrt(len(groups))
            low, high = summary.mean - half, summary.mean + half
        else:
            low, high = stats.hierarchical_bootstrap_interval(groups, confidence, seed, resamples)
    proportion = _pooled_proportion(rows, metric, confidence, proportion_method)
    return CellStatistics(
        cell=cell,
        metric=metric,
        n=summary.n,
        patterns=len({row.get("pattern") for row in rows}),
        training_seeds=len(groups),
        mean=summary.mean,
        std=summary.std,
        min=summary.min,
        max=summary.max,
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        method=method,
        pattern_std=pattern_std,
        seed_std=seed_std,
        proportion_ci_low=proportion[0],
        proportion_ci_high=proportion[1],
        missing=missing,
    )


def _squares(values: list[float]) -> float:
    """The sum of squared deviations from the mean."""
    mean = statistics.fmean(values)
    return math.fsum((v - mean) ** 2 for v in values)


def _pooled_proportion(
    rows: list[Mapping[str, Any]], metric: str, confidence: float, method: str
) -> tuple[float | None, float | None]:
    column = METRIC_COUNTS.get(metric)
    if column is None:
        return None, None
    errors = examples = 0
    for row in rows:
        if row.get(column) is None or row.get("examples") is None:
            return None, None
        errors += _count(row[column], column)
        examples += _count(row["examples"], "examples")
    if examples < 1:
        return None, None
    return stats.proportion_interval(errors, examples, confidence, method)


def _count(value: Any, column: str) -> int:
    """An integer count; an integral float (e.g. read back from a table) is accepted."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{column} must be an integer count, got {value!r}") from None


def _finite(value: Any, metric: str) -> float:
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"metric {metric!r} has a non-numeric value {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"metric {metric!r} has a non-finite value {value!r}")
    return number


def _order(value: Any) -> tuple[Any, ...]:
    """Sort key of one cell value: None < numbers < strings < anything else (by repr)."""
    if value is None:
        return (0,)
    if isinstance(value, numbers.Real):
        return (1, 1, 0) if math.isnan(value) else (1, 0, value)
    if isinstance(value, str):
        return (2, value)
    return (3, type(value).__name__, repr(value))


def _check_options(confidence: float, method: str, proportion_method: str, resamples: int) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if method not in (*stats.SUMMARY_METHODS, "auto"):
        raise ValueError(
            f"method must be one of {(*stats.SUMMARY_METHODS, 'auto')}, got {method!r}"
        )
    if proportion_method not in stats.PROPORTION_METHODS:
        raise ValueError(
            f"proportion_method must be one of {stats.PROPORTION_METHODS}, got "
            f"{proportion_method!r}"
        )
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")


__all__ = ["METRIC_COUNTS", "CellStatistics", "cell_statistics", "patterns_needed"]
