"""bitrobust.campaign.statistics: per-cell summaries, their coverage, adaptive stopping."""

from __future__ import annotations

import json
import math
import random
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitrobust import stats
from bitrobust.campaign.statistics import (
    METRIC_COUNTS,
    CellStatistics,
    cell_statistics,
    patterns_needed,
)


def trial(model="randbet", x=0.01, pattern=0, training_seed=0, **metrics):
    row = {"model": model, "fault": "bit-errors", "x": x, "pattern": pattern}
    row.update(training_seed=training_seed, seed=pattern, examples=1000)
    row.update(metrics)
    return row


def campaign_rows(seed=0):
    """Two models × three swept values × (1 or 3 training seeds) × 6 patterns."""
    rng = np.random.default_rng(seed)
    rows = []
    for model, seeds in (("randbet", [0, 1, 2]), ("normal", [None])):
        for x in (0.001, 0.01, None):
            for training_seed in seeds:
                for pattern in range(6):
                    errors = int(rng.binomial(1000, 0.05))
                    rows.append(
                        trial(
                            model,
                            x,
                            pattern,
                            training_seed,
                            rerr=errors / 1000,
                            errors_robust=errors,
                            accuracy_loss=float(rng.normal(0.03, 0.01)),
                        )
                    )
    return rows


# --- grouping, ordering, determinism ----------------------------------------------------------


def test_cells_are_grouped_and_sorted_none_first_then_numbers_then_strings():
    rows = campaign_rows()
    cells = cell_statistics(rows, ["model", "x"], "rerr")
    assert [tuple(c.cell.values()) for c in cells] == [
        ("normal", None),
        ("normal", 0.001),
        ("normal", 0.01),
        ("randbet", None),
        ("randbet", 0.001),
        ("randbet", 0.01),
    ]
    assert all(isinstance(c, CellStatistics) and c.metric == "rerr" for c in cells)
    assert [(c.n, c.patterns, c.training_seeds) for c in cells] == [(6, 6, 1)] * 3 + [
        (18, 6, 3)
    ] * 3
    mixed = [trial(model=m, rerr=0.1) for m in ("b", 2, None, "a", 1.5)]
    order = [c.cell["model"] for c in cell_statistics(mixed, ["model"], "rerr")]
    assert order == [None, 1.5, 2, "a", "b"]


def test_no_cell_keys_make_one_cell_and_absent_keys_are_none():
    rows = campaign_rows()
    (everything,) = cell_statistics(rows, [], "rerr")
    assert everything.cell == {} and everything.n == len(rows)
    cells = cell_statistics(rows, ["model", "layer"], "rerr")  # no row has a "layer"
    assert [c.cell for c in cells] == [
        {"model": "normal", "layer": None},
        {"model": "randbet", "layer": None},
    ]


@pytest.mark.parametrize("method", ["bootstrap", "t"])
def test_shuffled_rows_give_identical_output(method):
    rows = campaign_rows()
    expected = [c.to_json() for c in cell_statistics(rows, ["model", "x"], "rerr", method=method)]
    for shuffle_seed in range(3):
        shuffled = rows[:]
        random.Random(shuffle_seed).shuffle(shuffled)
        got = cell_statistics(shuffled, ["model", "x"], "rerr", method=method)
        assert [c.to_json() for c in got] == expected


def test_rows_without_the_metric_are_skipped_and_counted():
    rows = [trial(pattern=p, rerr=0.1 + p / 100) for p in range(4)]
    rows += [trial(pattern=4, rerr=None), trial(pattern=5)]  # None, and no column at all
    rows += [trial(x=0.5, pattern=0, rerr=None)]  # a cell with nothing to summarize
    (cell,) = cell_statistics(rows, ["x"], "rerr")
    assert cell.cell == {"x": 0.01}
    assert (cell.n, cell.patterns, cell.missing) == (4, 4, 2)
    assert cell.mean == statistics.fmean([0.1, 0.11, 0.12, 0.13])
    assert cell_statistics([trial(rerr=None)], ["x"], "rerr") == []


@pytest.mark.parametrize("bad", [math.nan, math.inf, "0.1"])
def test_non_finite_or_non_numeric_values_are_rejected_naming_the_metric(bad):
    rows = [trial(pattern=0, accuracy_loss=0.1), trial(pattern=1, accuracy_loss=bad)]
    with pytest.raises(ValueError, match="accuracy_loss"):
        cell_statistics(rows, ["model"], "accuracy_loss")


def test_bad_options_are_rejected():
    rows = [trial(rerr=0.1)]
    with pytest.raises(ValueError, match="method"):
        cell_statistics(rows, [], "rerr", method="normal")
    with pytest.raises(ValueError, match="proportion_method"):
        cell_statistics(rows, [], "rerr", proportion_method="wald")
    with pytest.raises(ValueError, match="confidence"):
        cell_statistics(rows, [], "rerr", confidence=1.5)
    with pytest.raises(ValueError, match="resamples"):
        cell_statistics(rows, [], "rerr", resamples=0)
    with pytest.raises(ValueError, match="errors_robust"):
        cell_statistics([trial(rerr=0.1, errors_robust=100.5)], [], "rerr")


# --- figures of a cell ------------------------------------------------------------------------


def test_one_trial_has_no_interval():
    (cell,) = cell_statistics([trial(rerr=0.2, errors_robust=200)], ["model"], "rerr")
    assert (cell.n, cell.mean, cell.std, cell.min, cell.max) == (1, 0.2, 0.0, 0.2, 0.2)
    assert cell.ci_low is None and cell.ci_high is None and cell.halfwidth() is None
    assert cell.pattern_std is None and cell.seed_std is None
    assert (cell.proportion_ci_low, cell.proportion_ci_high) == stats.proportion_interval(200, 1000)


@pytest.mark.parametrize("method", ["bootstrap", "t"])
@pytest.mark.parametrize("seeds", [[0], [0, 1, 2]])
def test_equal_values_give_a_point_interval(method, seeds):
    rows = [trial(pattern=p, training_seed=s, rerr=0.3) for s in seeds for p in range(5)]
    (cell,) = cell_statistics(rows, ["model"], "rerr", method=method)
    assert (cell.ci_low, cell.ci_high, cell.halfwidth()) == (0.3, 0.3, 0.0)
    assert cell.pattern_std == 0.0
    assert cell.seed_std == (None if len(seeds) == 1 else 0.0)


@pytest.mark.parametrize("method", ["bootstrap", "t"])
def test_one_training_seed_is_summarize_of_the_sorted_values(method):
    values = np.random.default_rng(3).beta(2, 20, size=12).tolist()
    rows = [trial(pattern=p, accuracy_loss=v) for p, v in enumerate(values)]
    (cell,) = cell_statistics(rows, ["model"], "accuracy_loss", method=method, seed=7)
    expected = stats.summarize(sorted(values), method=method, seed=7)
    assert (cell.mean, cell.std, cell.min, cell.max) == (
        expected.mean,
        expected.std,
        expected.min,
        expected.max,
    )
    assert (cell.ci_low, cell.ci_high) == (expected.ci_low, expected.ci_high)
    assert cell.pattern_std == expected.std and cell.seed_std is None
    assert cell.halfwidth() == (expected.ci_high - expected.ci_low) / 2
    assert (cell.method, cell.confidence) == (method, 0.95)


def test_several_training_seeds_use_the_two_level_bootstrap_or_t_over_seed_means():
    rng = np.random.default_rng(4)
    values = {s: (0.1 * s + rng.normal(0, 0.02, size=8)).tolist() for s in (2, 0, 1)}
    rows = [
        trial(pattern=p, training_seed=s, rerr=v)
        for s, vs in values.items()
        for p, v in enumerate(vs)
    ]
    (boot,) = cell_statistics(rows, ["model"], "rerr", method="bootstrap", seed=5, resamples=3000)
    groups = [sorted(values[s]) for s in (0, 1, 2)]  # seeds in order, values sorted within
    assert (boot.ci_low, boot.ci_high) == stats.hierarchical_bootstrap_interval(
        groups, seed=5, resamples=3000
    )
    everything = [v for g in groups for v in g]
    assert boot.mean == statistics.fmean(everything) and boot.n == 24
    assert boot.std == statistics.stdev(everything)
    (t,) = cell_statistics(rows, ["model"], "rerr", method="t")
    half = stats.t_quantile(0.975, 2) * t.seed_std / math.sqrt(3)
    assert (t.ci_low, t.ci_high) == (t.mean - half, t.mean + half)
    assert t.seed_std == pytest.approx(statistics.stdev([statistics.fmean(g) for g in groups]))
    # the default ("auto"): t over the seed means here, the bootstrap with one training seed
    (auto,) = cell_statistics(rows, ["model"], "rerr")
    assert (auto.method, auto.ci_low, auto.ci_high) == ("t", t.ci_low, t.ci_high)
    one = [r for r in rows if r["training_seed"] == 0]
    (single,) = cell_statistics(one, ["model"], "rerr", seed=5, resamples=3000)
    expected = stats.summarize(sorted(values[0]), method="bootstrap", seed=5, resamples=3000)
    assert (single.method, single.ci_low, single.ci_high) == (
        "bootstrap",
        expected.ci_low,
        expected.ci_high,
    )


def test_pattern_spread_and_seed_spread_are_told_apart():
    # every training seed has its own offset; within a seed the patterns deviate by −d, 0, +d,
    # so the within-seed sample standard deviation is exactly d whatever the offsets
    offsets = [0.0, 0.1, 0.25, 0.4]
    for d in (0.0, 0.01, 0.05):
        rows = [
            trial(pattern=p, training_seed=s, accuracy_loss=offset + (p - 1) * d)
            for s, offset in enumerate(offsets)
            for p in range(3)
        ]
        (cell,) = cell_statistics(rows, ["model"], "accuracy_loss", method="t")
        assert cell.pattern_std == pytest.approx(d, abs=1e-12)
        assert cell.seed_std == pytest.approx(statistics.stdev(offsets), abs=1e-12)
        # the total spread is the sum of both: (N−1)·std² = Σ(nₛ−1)·pattern² + m·(S−1)·seed²
        total = 11 * cell.std**2
        assert total == pytest.approx(8 * cell.pattern_std**2 + 3 * 3 * cell.seed_std**2)
    # the same patterns with no seed offsets: all spread is within seeds
    rows = [
        trial(pattern=p, training_seed=s, rerr=0.2 + (p - 1) * 0.03)
        for s in range(4)
        for p in range(3)
    ]
    (cell,) = cell_statistics(rows, ["model"], "rerr")
    assert cell.pattern_std == pytest.approx(0.03) and cell.seed_std == pytest.approx(
        0.0, abs=1e-15
    )
    # seeds with a single pattern each have no within-seed spread to pool
    rows = [trial(pattern=0, training_seed=s, rerr=0.1 * s) for s in range(3)]
    (cell,) = cell_statistics(rows, ["model"], "rerr")
    assert cell.pattern_std is None and cell.seed_std == pytest.approx(0.1)


def test_pattern_std_pools_unequal_seeds_by_their_degrees_of_freedom():
    groups = {0: [0.1, 0.2, 0.4, 0.3], 1: [0.5, 0.9], 2: [0.7]}
    rows = [
        trial(pattern=p, training_seed=s, rerr=v)
        for s, g in groups.items()
        for p, v in enumerate(g)
    ]
    (cell,) = cell_statistics(rows, ["model"], "rerr")
    pooled = (3 * statistics.variance(groups[0]) + 1 * statistics.variance(groups[1])) / 4
    assert cell.pattern_std == pytest.approx(math.sqrt(pooled))
    assert cell.seed_std == pytest.approx(statistics.stdev([0.25, 0.7, 0.7]))
    assert cell.patterns == 4 and cell.training_seeds == 3


@pytest.mark.parametrize("method", ["wilson", "clopper-pearson"])
@pytest.mark.parametrize("metric", sorted(METRIC_COUNTS))
def test_proportion_interval_is_that_of_the_pooled_count(method, metric):
    counts = [12, 30, 7, 19]
    rows = [
        trial(pattern=p, **{metric: k / 500, METRIC_COUNTS[metric]: k, "examples": 500})
        for p, k in enumerate(counts)
    ]
    rows[0][METRIC_COUNTS[metric]] = 12.0  # an integral float, as read back from a table
    (cell,) = cell_statistics(rows, ["model"], metric, proportion_method=method, confidence=0.9)
    expected = stats.proportion_interval(sum(counts), 2000, confidence=0.9, method=method)
    assert (cell.proportion_ci_low, cell.proportion_ci_high) == expected


def test_no_proportion_interval_without_counts():
    rows = [trial(pattern=p, rerr=0.1, errors_robust=100, accuracy_loss=0.01) for p in range(3)]
    (cell,) = cell_statistics(rows, ["model"], "accuracy_loss")  # not an error rate
    assert cell.proportion_ci_low is None and cell.proportion_ci_high is None
    rows[1]["errors_robust"] = None  # one row without its count: no pooled count
    (cell,) = cell_statistics(rows, ["model"], "rerr")
    assert cell.proportion_ci_low is None and cell.ci_low is not None


def test_to_json_is_plain_and_serializable():
    (cell,) = cell_statistics(campaign_rows(), ["model"], "rerr", method="t")[:1]
    record = cell.to_json()
    assert json.loads(json.dumps(record)) == record
    assert record["cell"] == {"model": "normal"}
    assert set(record) >= {"mean", "ci_low", "pattern_std", "seed_std", "proportion_ci_low"}


# --- coverage of the intervals, by simulation with a known truth ------------------------------


@pytest.mark.parametrize("p", [0.02, 0.1, 0.3])
def test_proportion_intervals_cover_the_true_rate(p):
    # 2000 simulated test sets of n = 1000 examples at true error rate p; an interval depends
    # only on the count, so each distinct count is evaluated once. Measured with this seed, for
    # p = 0.02 / 0.1 / 0.3: Wilson 95.0 / 95.55 / 95.5 %, Clopper–Pearson 96.25 / 95.85 / 96.0 %
    # (exact coverages, summing the binomial pmf: Wilson 94.67 / 94.91 / 95.09 %, Clopper–Pearson
    # 95.89 / 95.49 / 95.46 %). The binomial sd of a coverage from 2000 draws is 0.5 point.
    n, draws = 1000, 2000
    errors = np.random.default_rng(11).binomial(n, p, size=draws)
    distinct, times = np.unique(errors, return_counts=True)
    coverage = {}
    for method in stats.PROPORTION_METHODS:
        bounds = np.array([stats.proportion_interval(int(k), n, method=method) for k in distinct])
        covered = (bounds[:, 0] <= p) & (p <= bounds[:, 1])
        coverage[method] = float(times[covered].sum()) / draws
    assert abs(coverage["wilson"] - 0.95) <= 0.025
    assert coverage["clopper-pearson"] >= 0.95 - 0.01  # exact: at least nominal, less MC noise
    assert coverage["clopper-pearson"] >= coverage["wilson"] - 0.005  # and never narrower


def simulated_cells(values: np.ndarray, metric: str) -> list[dict]:
    """Rows of cells × training seeds × patterns from an array of that shape."""
    cells, seeds, patterns = values.shape
    return [
        {"cell": c, "training_seed": s, "pattern": p, metric: float(values[c, s, p])}
        for c in range(cells)
        for s in range(seeds)
        for p in range(patterns)
    ]


def coverage(cells: list[CellStatistics], truth: float) -> float:
    return sum(c.ci_low <= truth <= c.ci_high for c in cells) / len(cells)


@pytest.mark.parametrize(
    ("a", "b", "low", "high"),
    [
        # Beta(2, 5), skewness 0.6: measured here 92.2 %; 6000 further cells: 93.4 %.
        (2.0, 5.0, 0.91, 0.965),
        # Beta(1, 5), skewness 1.2: measured here 91.6 %; 6000 further cells: 92.2 %.
        (1.0, 5.0, 0.895, 0.95),
        # The percentile bootstrap undercovers a little at 30 patterns of a skewed metric
        # (it is a z-like interval and the sampling distribution of the mean is still skewed).
        # The bands are the long-run figure ± 3 sd; a 90 % interval (measured 86.1 % and 85.7 %
        # on these cells) or one without the 1/√n (100 %) fails them.
    ],
)
def test_bootstrap_interval_over_patterns_covers_the_true_mean(a, b, low, high):
    # 1000 simulated cells of one training seed × 30 fault patterns whose metric is drawn from
    # a beta distribution of known mean a / (a + b); 2000 resamples per interval. The binomial
    # sd of a coverage from 1000 cells is 0.7 point.
    values = np.random.default_rng(1).beta(a, b, size=(1000, 1, 30))
    cells = cell_statistics(
        simulated_cells(values, "accuracy_loss"), ["cell"], "accuracy_loss", resamples=2000
    )
    assert len(cells) == 1000 and all(c.training_seeds == 1 and c.n == 30 for c in cells)
    assert low <= coverage(cells, a / (a + b)) <= high


@pytest.mark.parametrize(
    ("seed_sd", "pattern_sd", "bootstrap_band"),
    [
        # pattern noise dominates (seed sd 0.01; pattern sd 0.03, i.e. 0.0067 on a seed's mean
        # of 20): measured here 92.25 %; 4000 further cells: 93.0 %.
        (0.01, 0.03, (0.89, 0.97)),
        # training seeds dominate (seed sd 0.03, pattern sd 0.01): with only 5 seeds the
        # percentile bootstrap undercovers: it cannot know that 5 seed means leave 4 degrees
        # of freedom (t₄ = 2.78 against z = 1.96), and resampling 5 seeds shrinks their
        # variance by 4/5. Measured here 86.5 %; 4000 further cells: 85.0 %. The band pins
        # this known shortfall; the t interval over the seed means stays at 95 %.
        (0.03, 0.01, (0.80, 0.90)),
    ],
)
def test_two_level_interval_over_seeds_and_patterns(seed_sd, pattern_sd, bootstrap_band):
    # 400 simulated cells of 5 training seeds × 20 patterns: each seed's mean is the true grand
    # mean 0.1 plus a normal offset (seed_sd), each pattern adds normal noise (pattern_sd).
    # 2000 resamples per interval; the binomial sd of a coverage from 400 cells is 1.1 points.
    rng = np.random.default_rng(1)
    values = (
        0.1
        + rng.normal(0, seed_sd, size=(400, 5, 1))
        + rng.normal(0, pattern_sd, size=(400, 5, 20))
    )
    rows = simulated_cells(values, "rerr")
    boot = cell_statistics(rows, ["cell"], "rerr", method="bootstrap", resamples=2000)
    assert all(c.training_seeds == 5 and c.patterns == 20 for c in boot)
    assert bootstrap_band[0] <= coverage(boot, 0.1) <= bootstrap_band[1]
    # t over the 5 seed means (exact for normal offsets and balanced seeds): measured here
    # 94.25 % and 95.75 %; 4000 further cells: 95.2 % and 95.5 %
    t = cell_statistics(rows, ["cell"], "rerr", method="t")
    assert 0.92 <= coverage(t, 0.1) <= 0.98
    # the default picks t for cells of several training seeds
    auto = cell_statistics(rows, ["cell"], "rerr")
    assert [(c.ci_low, c.ci_high) for c in auto] == [(c.ci_low, c.ci_high) for c in t]


# --- adaptive stopping ------------------------------------------------------------------------

wide = np.random.default_rng(8).normal(0.2, 0.05, size=40).tolist()  # sd 0.05


def test_no_more_patterns_at_the_maximum():
    assert patterns_needed(wide[:20], target_halfwidth=1e-6, max_patterns=20) == 0
    assert patterns_needed(wide[:30], target_halfwidth=1e-6, max_patterns=20) == 0


def test_no_more_patterns_once_narrow_enough():
    half = cell_statistics(
        [trial(pattern=p, rerr=v) for p, v in enumerate(wide[:10])], ["model"], "rerr"
    )[0].halfwidth()
    assert patterns_needed(wide[:10], target_halfwidth=half, max_patterns=100) == 0
    assert patterns_needed(wide[:10], target_halfwidth=half * 0.99, max_patterns=100) > 0
    # narrow, but fewer than min_patterns: reach min_patterns first
    assert patterns_needed([0.3, 0.3], target_halfwidth=0.1, max_patterns=100) == 3
    assert patterns_needed([0.3] * 5, target_halfwidth=0.1, max_patterns=100) == 0


def test_more_patterns_when_wide_at_most_doubling():
    # z · sd / target = 1.96 · 0.05 / 0.005 ≈ 20 → about 400 patterns wanted
    assert patterns_needed(wide[:10], target_halfwidth=0.005, max_patterns=1000) == 10
    assert patterns_needed(wide[:40], target_halfwidth=0.005, max_patterns=1000) == 40
    # a moderate target asks for its estimate (n ≈ (z · sd / target)²) without doubling
    z, sd = stats.normal_quantile(0.975), statistics.stdev(wide[:40])
    target = z * sd / math.sqrt(60)
    estimate = math.ceil((z * sd / target) ** 2)
    assert 40 < estimate < 80
    assert patterns_needed(wide[:40], target_halfwidth=target, max_patterns=1000) == estimate - 40
    assert patterns_needed(wide[:40], target_halfwidth=target, max_patterns=50) == 10  # capped
    # a tighter target never asks for fewer
    asks = [
        patterns_needed(wide[:20], target_halfwidth=h, max_patterns=1000)
        for h in (0.03, 0.02, 0.01)
    ]
    assert asks == sorted(asks) and asks[-1] > 0


def test_small_counts_and_fixed_steps():
    assert patterns_needed([], target_halfwidth=0.01, max_patterns=100) == 5
    assert patterns_needed([], target_halfwidth=0.01, max_patterns=3) == 3
    assert patterns_needed([0.2], target_halfwidth=0.01, max_patterns=100) == 4
    assert patterns_needed([0.2], target_halfwidth=0.01, max_patterns=100, min_patterns=1) == 1
    assert patterns_needed(wide[:10], target_halfwidth=0.005, max_patterns=100, step=3) == 3
    assert patterns_needed(wide[:2], target_halfwidth=0.005, max_patterns=100, step=1) == 3
    assert patterns_needed(wide[:10], target_halfwidth=0.005, max_patterns=12, step=5) == 2


@given(
    st.lists(st.floats(0, 1), max_size=40),
    st.floats(1e-4, 0.5),
    st.integers(1, 60),
    st.integers(0, 10),
    st.one_of(st.none(), st.integers(1, 20)),
)
@settings(max_examples=60, deadline=None)
def test_never_past_the_maximum_and_deterministic(values, target, max_patterns, minimum, step):
    kwargs = dict(
        target_halfwidth=target,
        max_patterns=max_patterns,
        min_patterns=minimum,
        step=step,
        resamples=500,
    )
    more = patterns_needed(values, **kwargs)
    assert more >= 0 and len(values) + more <= max(max_patterns, len(values))
    assert (more == 0) == (
        len(values) >= max_patterns
        or (len(values) >= minimum and len(values) >= 2 and _narrow(values, target))
    )
    assert patterns_needed(values[::-1], **kwargs) == more  # order does not matter
    if len(values) < max_patterns:
        assert len(values) + more <= max(2 * len(values), minimum, 1) or step is not None


def _narrow(values, target):
    s = stats.summarize(sorted(values), method="bootstrap", resamples=500)
    return (s.ci_high - s.ci_low) / 2 <= target


def test_patterns_needed_rejects_bad_arguments():
    with pytest.raises(ValueError, match="target_halfwidth"):
        patterns_needed(wide, target_halfwidth=0, max_patterns=10)
    with pytest.raises(ValueError, match="max_patterns"):
        patterns_needed(wide, target_halfwidth=0.1, max_patterns=0)
    with pytest.raises(ValueError, match="step"):
        patterns_needed(wide, target_halfwidth=0.1, max_patterns=100, step=0)
    with pytest.raises(ValueError, match="values"):
        patterns_needed([0.1, math.nan], target_halfwidth=0.1, max_patterns=100)
