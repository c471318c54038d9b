"""bitrobust.stats: summaries, proportion intervals, distribution functions, rank correlation."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitrobust.stats import (
    Summary,
    beta_quantile,
    hierarchical_bootstrap_interval,
    incomplete_beta,
    normal_quantile,
    proportion_interval,
    spearman,
    spearman_test,
    summarize,
    t_quantile,
)

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
samples = st.lists(finite, min_size=2, max_size=30)


# --- distribution functions -------------------------------------------------------------------

# Student t quantiles from standard tables (two-sided 90/95/99 %, one-sided 95 %).
T_TABLE = [
    (0.975, 1, 12.706204736174705),
    (0.975, 2, 4.302652729749464),
    (0.975, 5, 2.570581835636314),
    (0.975, 10, 2.228138851986274),
    (0.975, 30, 2.042272456301238),
    (0.975, 100, 1.983971518523552),
    (0.95, 1, 6.313751514675044),
    (0.95, 4, 2.131846786326649),
    (0.995, 4, 4.604094871349993),
    (0.995, 20, 2.845339709776814),
    (0.9995, 3, 12.923978636688),
]


@pytest.mark.parametrize(("q", "df", "expected"), T_TABLE)
def test_t_quantile_matches_tables(q, df, expected):
    assert t_quantile(q, df) == pytest.approx(expected, abs=1e-9)
    assert t_quantile(1 - q, df) == pytest.approx(-expected, abs=1e-9)


def test_t_quantile_tends_to_the_normal_one():
    assert normal_quantile(0.975) == pytest.approx(1.959963984540054, abs=1e-12)
    assert normal_quantile(0.995) == pytest.approx(2.5758293035489004, abs=1e-12)
    assert normal_quantile(0.5) == pytest.approx(0.0, abs=1e-12)
    assert t_quantile(0.975, 1e6) == pytest.approx(normal_quantile(0.975), abs=1e-5)
    assert t_quantile(0.5, 3) == 0.0


def test_incomplete_beta_closed_forms():
    for x in (0.0, 0.1, 0.37, 0.9, 1.0):
        assert incomplete_beta(x, 1, 1) == pytest.approx(x, abs=1e-14)  # uniform
        assert incomplete_beta(x, 2, 1) == pytest.approx(x * x, abs=1e-14)
        assert incomplete_beta(x, 1, 3) == pytest.approx(1 - (1 - x) ** 3, abs=1e-14)
        # I_x(1/2, 1/2) = (2/π) arcsin √x
        expected = 2 / math.pi * math.asin(math.sqrt(x))
        assert incomplete_beta(x, 0.5, 0.5) == pytest.approx(expected, abs=1e-12)
    # symmetry I_x(a, b) = 1 − I_{1−x}(b, a), on both sides of the switch point
    for x in (0.05, 0.5, 0.95):
        assert incomplete_beta(x, 7.5, 3) == pytest.approx(1 - incomplete_beta(1 - x, 3, 7.5))


@given(st.floats(1e-6, 1 - 1e-6), st.floats(0.2, 200), st.floats(0.2, 200))
@settings(max_examples=60, deadline=None)
def test_beta_quantile_inverts_the_incomplete_beta(q, a, b):
    x = beta_quantile(q, a, b)
    assert 0 <= x <= 1
    # exact up to the float grid: q lies between I at the neighbouring floats (where the density
    # is huge, near 0 or 1, one step of x moves I by more than any fixed tolerance)
    below = incomplete_beta(math.nextafter(x, 0.0), a, b)
    above = incomplete_beta(math.nextafter(x, 1.0), a, b)
    assert below - 1e-12 <= q <= above + 1e-12


def test_distribution_functions_reject_bad_arguments():
    for call in (
        lambda: t_quantile(0, 3),
        lambda: t_quantile(0.9, 0),
        lambda: normal_quantile(1),
        lambda: incomplete_beta(1.5, 1, 1),
        lambda: incomplete_beta(0.5, 0, 1),
        lambda: beta_quantile(-0.1, 1, 1),
    ):
        with pytest.raises(ValueError):
            call()


# --- summaries --------------------------------------------------------------------------------


def test_summary_figures_and_t_interval():
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert (s.mean, s.min, s.max, s.n) == (2.5, 1.0, 4.0, 4)
    assert s.std == pytest.approx(math.sqrt(5 / 3))  # sample std, ddof = 1
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2  # t_{0.975, 3} · s / √n
    assert (s.ci_low, s.ci_high) == pytest.approx((2.5 - half, 2.5 + half))
    assert s.confidence == 0.95
    data = s.to_json()
    assert json.loads(json.dumps(data)) == data
    assert set(data) >= {"mean", "std", "min", "max", "n", "ci_low", "ci_high", "confidence"}
    assert s.to_json(interval=False) == {"mean": 2.5, "std": s.std, "min": 1.0, "max": 4.0}


def test_summary_reproduces_statistics_module_bit_for_bit():
    values = [0.1, 0.2, 0.7, 0.30000000000000004, 0.123456789]
    s = summarize(values)
    assert s.mean == statistics.fmean(values)
    assert s.std == statistics.stdev(values)


def test_summary_of_one_value_has_no_interval():
    s = summarize([0.25])
    assert (s.mean, s.std, s.min, s.max, s.n) == (0.25, 0.0, 0.25, 0.25, 1)
    assert s.ci_low is None and s.ci_high is None
    assert summarize([0.25], method="bootstrap").ci_low is None


def test_summarize_rejects_bad_arguments():
    with pytest.raises(ValueError, match="at least one"):
        summarize([])
    with pytest.raises(ValueError, match="confidence"):
        summarize([1, 2], confidence=1.0)
    with pytest.raises(ValueError, match="method"):
        summarize([1, 2], method="normal")


def test_bootstrap_is_seeded_and_close_to_t_for_normal_data():
    values = np.random.default_rng(1).normal(10, 2, size=40).tolist()
    a = summarize(values, method="bootstrap", seed=3)
    assert a == summarize(values, method="bootstrap", seed=3)
    assert a != summarize(values, method="bootstrap", seed=4)
    t = summarize(values)
    assert a.ci_low == pytest.approx(t.ci_low, abs=0.25)
    assert a.ci_high == pytest.approx(t.ci_high, abs=0.25)


@given(samples, st.sampled_from(["t", "bootstrap"]))
@settings(max_examples=40, deadline=None)
def test_interval_contains_the_mean_and_lies_in_range(values, method):
    s = summarize(values, method=method, resamples=500)
    assert isinstance(s, Summary)
    assert s.ci_low <= s.mean <= s.ci_high
    assert s.min <= s.mean <= s.max
    if method == "bootstrap":  # resampled means never leave the range of the data
        assert s.min <= s.ci_low and s.ci_high <= s.max


@given(samples)
@settings(max_examples=40, deadline=None)
def test_interval_narrows_with_more_data_and_widens_with_confidence(values):
    one = summarize(values)
    four = summarize(values * 4)  # same mean and (nearly) the same spread, 4× the values
    assert four.ci_high - four.ci_low <= one.ci_high - one.ci_low + 1e-9
    wide = summarize(values, confidence=0.99)
    assert wide.ci_high - wide.ci_low >= one.ci_high - one.ci_low


def test_t_interval_covers_the_true_mean_about_as_often_as_promised():
    rng = np.random.default_rng(0)
    trials = 2000
    covered = sum(
        s.ci_low <= 5.0 <= s.ci_high
        for s in (summarize(rng.normal(5.0, 3.0, size=6).tolist()) for _ in range(trials))
    )
    # binomial sd of the coverage at 2000 trials is 0.5 %; allow four of them
    assert abs(covered / trials - 0.95) < 0.02


# --- two-level bootstrap ----------------------------------------------------------------------

groups_strategy = st.lists(st.lists(finite, min_size=1, max_size=6), min_size=1, max_size=5)


def test_hierarchical_bootstrap_is_seeded():
    groups = np.random.default_rng(2).normal(0, 1, size=(4, 6)).tolist()
    a = hierarchical_bootstrap_interval(groups, seed=3, resamples=2000)
    assert a == hierarchical_bootstrap_interval(groups, seed=3, resamples=2000)
    assert a != hierarchical_bootstrap_interval(groups, seed=4, resamples=2000)


@given(groups_strategy)
@settings(max_examples=40, deadline=None)
def test_hierarchical_interval_holds_the_pooled_mean_and_lies_in_range(groups):
    low, high = hierarchical_bootstrap_interval(groups, resamples=300)
    values = [v for g in groups for v in g]
    assert min(values) <= low <= statistics.fmean(values) <= high <= max(values)


def test_hierarchical_interval_of_equal_values_is_a_point():
    assert hierarchical_bootstrap_interval([[0.3] * 4, [0.3] * 2, [0.3]]) == (0.3, 0.3)


def naive_two_level_means(groups, resamples, rng):
    """The two-level bootstrap written out plainly, as a reference."""
    means = []
    for _ in range(resamples):
        drawn = []
        for g in rng.integers(0, len(groups), size=len(groups)):
            drawn += [groups[g][i] for i in rng.integers(0, len(groups[g]), size=len(groups[g]))]
        means.append(statistics.fmean(drawn))
    return np.array(means)


@pytest.mark.parametrize("sizes", [(6, 6, 6, 6), (2, 7, 4, 12, 3)])
def test_hierarchical_interval_matches_a_plain_reference(sizes):
    # equal sizes take the fast path; unequal ones are padded and masked: both agree in
    # distribution with the plain loop (80 % intervals of 20000 resamples: the Monte Carlo
    # error of these quantiles is about 1 % of the spread)
    rng = np.random.default_rng(5)
    groups = [(rng.normal(0, 1) + rng.normal(0, 1, size=n)).tolist() for n in sizes]
    reference = np.quantile(naive_two_level_means(groups, 20_000, rng), [0.1, 0.9])
    low, high = hierarchical_bootstrap_interval(groups, confidence=0.8, resamples=20_000)
    spread = reference[1] - reference[0]
    assert low == pytest.approx(reference[0], abs=0.04 * spread)
    assert high == pytest.approx(reference[1], abs=0.04 * spread)


def test_hierarchical_bootstrap_of_one_group_is_the_plain_bootstrap():
    values = np.random.default_rng(6).normal(10, 2, size=40).tolist()
    low, high = hierarchical_bootstrap_interval([values], resamples=20_000)
    plain = summarize(values, method="bootstrap", resamples=20_000)
    assert low == pytest.approx(plain.ci_low, abs=0.05)
    assert high == pytest.approx(plain.ci_high, abs=0.05)


def test_hierarchical_bootstrap_rejects_bad_arguments():
    with pytest.raises(ValueError, match="non-empty group"):
        hierarchical_bootstrap_interval([])
    with pytest.raises(ValueError, match="non-empty group"):
        hierarchical_bootstrap_interval([[1.0], []])
    with pytest.raises(ValueError, match="confidence"):
        hierarchical_bootstrap_interval([[1.0, 2.0]], confidence=0)
    with pytest.raises(ValueError, match="resamples"):
        hierarchical_bootstrap_interval([[1.0, 2.0]], resamples=0)


# --- proportions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("errors", "n", "expected"),
    [
        (0, 10, (0.0, 0.3084971078187607)),  # 1 − 0.025^(1/10)
        (10, 10, (0.6915028921812393, 1.0)),  # 0.025^(1/10)
        (1, 10, (0.002528578544461, 0.445016117028195)),
        (5, 10, (0.187086028447398, 0.812913971552602)),
        (3, 20, (0.032070937185464, 0.378926826545314)),
        (0, 1, (0.0, 0.975)),
    ],
)
def test_clopper_pearson_matches_tables(errors, n, expected):
    interval = proportion_interval(errors, n, method="clopper-pearson")
    assert interval == pytest.approx(expected, abs=1e-9)


def test_wilson_matches_tables():
    assert proportion_interval(0, 10) == pytest.approx((0.0, 0.2775327998628890), abs=1e-9)
    assert proportion_interval(5, 10) == pytest.approx((0.2365930905125641, 0.7634069094874359))
    assert proportion_interval(10, 10) == pytest.approx((0.722467200137111, 1.0), abs=1e-9)


def test_clopper_pearson_coverage_is_at_least_the_confidence():
    """Exact coverage P(p ∈ CI(K)), K ~ Binomial(n, p), summed over k, for a grid of p."""
    n = 15
    intervals = [proportion_interval(k, n, method="clopper-pearson") for k in range(n + 1)]
    wilson = [proportion_interval(k, n) for k in range(n + 1)]
    wilson_coverages = []
    for p in np.linspace(0.01, 0.99, 99):
        pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
        coverage = sum(w for w, (lo, hi) in zip(pmf, intervals) if lo <= p <= hi)
        assert coverage >= 0.95 - 1e-12
        wilson_coverages.append(sum(w for w, (lo, hi) in zip(pmf, wilson) if lo <= p <= hi))
    # Wilson is not exact but close on average, and narrower than Clopper–Pearson
    assert abs(statistics.fmean(wilson_coverages) - 0.95) < 0.02
    assert all(w[1] - w[0] < c[1] - c[0] for w, c in zip(wilson, intervals))


@given(st.integers(1, 500), st.data())
@settings(max_examples=60, deadline=None)
def test_proportion_intervals_contain_the_observed_rate(n, data):
    errors = data.draw(st.integers(0, n))
    for method in ("wilson", "clopper-pearson"):
        low, high = proportion_interval(errors, n, method=method)
        assert 0 <= low <= errors / n <= high <= 1


def test_proportion_interval_rejects_bad_arguments():
    with pytest.raises(ValueError):
        proportion_interval(11, 10)
    with pytest.raises(ValueError):
        proportion_interval(0, 0)
    with pytest.raises(TypeError):
        proportion_interval(0.5, 10)  # a rate, not a count
    with pytest.raises(ValueError, match="method"):
        proportion_interval(1, 10, method="wald")


# --- rank correlation -------------------------------------------------------------------------


def test_spearman_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)  # 1 − 6·4/120
    # ties take their average rank: x ranks (1.5, 1.5, 3, 4)
    assert spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)


def test_spearman_is_none_on_degenerate_input():
    assert spearman([1, 1, 1], [1, 2, 3]) is None  # constant side
    assert spearman([1, 2, 3], [5, 5, 5]) is None
    assert spearman([1, 2], [2, 1]) is None  # fewer than 3 pairs
    assert spearman([], []) is None
    assert spearman([1, 2, float("nan")], [1, 2, 3]) is None
    assert spearman_test([1, 2], [1, 2]) == (None, None)
    with pytest.raises(ValueError, match="equal length"):
        spearman([1, 2, 3], [1, 2])


pairs = st.integers(3, 25).flatmap(
    lambda n: st.tuples(
        st.lists(finite, min_size=n, max_size=n), st.lists(finite, min_size=n, max_size=n)
    )
)


@given(pairs)
@settings(max_examples=80, deadline=None)
def test_spearman_is_bounded_symmetric_and_rank_invariant(xy):
    x, y = xy
    rho = spearman(x, y)
    if rho is None:
        assert len(set(x)) == 1 or len(set(y)) == 1
        return
    assert -1 <= rho <= 1
    assert spearman(y, x) == pytest.approx(rho, abs=1e-12)

    # strictly increasing transforms keep the ranks; a decreasing one flips the sign
    def cubed_index(values):
        order = sorted(set(values))
        return [order.index(v) ** 3 - 5.5 for v in values]

    assert spearman(cubed_index(x), cubed_index(y)) == pytest.approx(rho, abs=1e-12)
    assert spearman([-v for v in x], y) == pytest.approx(-rho, abs=1e-12)
    assert spearman(x, x) == pytest.approx(1.0)


def test_spearman_test_exact_for_small_n():
    rho, p = spearman_test([1, 2, 3, 4, 5], [2, 4, 6, 8, 10])
    assert rho == pytest.approx(1.0)
    assert p == pytest.approx(2 / 120)  # only the identity and the reversal reach |ρ| = 1
    rho, p = spearman_test([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    assert rho == pytest.approx(0.8)
    # ρ = 1 − Σd²/20, so |ρ| ≥ 0.8 means Σd² ≤ 4 (the identity, 4 adjacent swaps, 3 pairs of
    # disjoint adjacent swaps) or the reverse of one of those 8: 16 of 120 orderings
    assert p == pytest.approx(16 / 120)


def test_spearman_test_sampled_for_larger_n_is_seeded():
    rng = np.random.default_rng(2)
    x = rng.normal(size=30)
    unrelated = rng.normal(size=30)
    related = x + 0.3 * rng.normal(size=30)
    assert spearman_test(x, related)[1] < 0.001
    rho, p = spearman_test(x, unrelated, permutations=2000, seed=5)
    assert rho == spearman(x, unrelated)
    assert (rho, p) == spearman_test(x, unrelated, permutations=2000, seed=5)
    assert 0.05 < p <= 1


def test_stats_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, bitrobust.stats; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_constant_values_whose_mean_rounds_below_them():
    """fmean of three equal floats can round one ulp below them: the summary stays in range."""
    values = [349525.86800837645] * 3
    for method in ("t", "bootstrap"):
        s = summarize(values, method=method, resamples=50)
        assert s.min <= s.mean <= s.max and s.ci_low <= s.mean <= s.ci_high
