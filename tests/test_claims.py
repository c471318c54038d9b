"""The claims table: statistics, verdict rules, and the committed CLAIMS.md / claims.json."""

from __future__ import annotations

import csv
import gzip
import json
import math
from pathlib import Path

import pytest

from bitrobust.cli import main
from bitrobust.energy import energy_saving
from bitrobust.experiments.claims import (
    PAPERS,
    VERDICTS,
    Estimate,
    Results,
    combine,
    correlation_verdict,
    difference,
    directional,
    evaluate_claims,
    load_trials,
    mean_estimate,
    stutz_claims,
)

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def _rows(model: str, seeds_means: dict[int, float], rate: float = 0.01, patterns: int = 4):
    """Random bit error rows whose per-seed RErr means are ``seeds_means``."""
    rows = []
    for seed, mean in seeds_means.items():
        for k in range(patterns):
            rows.append(
                {
                    "model": model,
                    "fault": "bit-errors",
                    "x": rate,
                    "training_seed": seed,
                    "pattern": k,
                    "rerr": mean + 0.001 * (k - (patterns - 1) / 2),
                    "err_clean": mean / 2,
                }
            )
    return rows


def test_difference_of_unpaired_seeds_is_welch_over_seed_means():
    a = _rows("a", {0: 0.30, 1: 0.32, 2: 0.34})
    b = _rows("b", {3: 0.10, 4: 0.11, 5: 0.12})
    estimate = difference(a, b, "rerr")
    assert estimate.seeds == 3 and estimate.patterns == 4
    assert estimate.mean == pytest.approx(0.21)
    # Welch with variances 0.0004/3 and 0.0001/3, df = (5/3e-4)^2 / ((4/3e-4)^2/2 + (1/3e-4)^2/2)
    se = math.sqrt(0.0004 / 3 + 0.0001 / 3)
    df = (0.0005 / 3) ** 2 / ((0.0004 / 3) ** 2 / 2 + (0.0001 / 3) ** 2 / 2)
    from bitrobust.stats import t_quantile

    half = t_quantile(0.975, df) * se
    assert estimate.low == pytest.approx(0.21 - half)
    assert estimate.high == pytest.approx(0.21 + half)


def test_difference_of_the_same_seeds_is_paired():
    """Seed k of every recipe starts from the same weights and data order: pair them."""
    a = _rows("a", {0: 0.30, 1: 0.40, 2: 0.50})
    b = _rows("b", {0: 0.29, 1: 0.38, 2: 0.50})  # seeds move both; the gap is 0.01 ± 0.01
    estimate = difference(a, b, "rerr")
    from bitrobust.stats import t_quantile

    half = t_quantile(0.975, 2) * 0.01 / math.sqrt(3)
    assert estimate.mean == pytest.approx(0.01)
    assert (estimate.low, estimate.high) == pytest.approx((0.01 - half, 0.01 + half))
    assert directional(estimate) == "partly"  # Welch would be far wider still


def test_one_training_seed_falls_back_to_patterns():
    estimate = difference(_rows("a", {0: 0.3}), _rows("b", {0: 0.1}), "rerr")
    assert estimate.seeds == 1 and estimate.patterns == 4
    assert estimate.low > 0  # patterns alone make it significant ...
    assert directional(estimate) == "partly"  # ... but one seed is not a finding


@pytest.mark.parametrize(
    ("estimate", "expect_positive", "verdict"),
    [
        (None, True, "not attempted"),
        (Estimate(0.1, 0.05, 0.15, 3, 25), True, "reproduced"),
        (Estimate(0.1, 0.05, 0.15, 2, 25), True, "partly"),
        (Estimate(0.1, -0.05, 0.25, 3, 25), True, "partly"),
        (Estimate(-0.1, -0.15, -0.05, 3, 25), True, "not reproduced"),
        (Estimate(-0.1, -0.15, -0.05, 3, 25), False, "reproduced"),
        (Estimate(0.0, -0.1, 0.1, 3, 25), True, "not reproduced"),
    ],
)
def test_directional_verdicts(estimate, expect_positive, verdict):
    assert directional(estimate, expect_positive) == verdict


@pytest.mark.parametrize(
    ("verdicts", "combined"),
    [
        ([], "not attempted"),
        (["not attempted"], "not attempted"),
        (["reproduced", "reproduced"], "reproduced"),
        (["reproduced", "partly"], "partly"),
        (["reproduced", "not reproduced"], "partly"),
        (["not reproduced", "not attempted"], "not reproduced"),
    ],
)
def test_combined_verdicts(verdicts, combined):
    assert combine(verdicts) == combined


@pytest.mark.parametrize(
    ("rho", "p_value", "sign", "seeds", "verdict"),
    [
        (0.8, 0.01, 1, 3, "reproduced"),
        (0.8, 0.01, 1, 1, "partly"),
        (0.8, 0.2, 1, 3, "partly"),
        (0.3, 0.01, 1, 3, "not reproduced"),  # significant but not strong
        (-0.8, 0.01, 1, 3, "not reproduced"),
        (-0.8, 0.01, -1, 3, "reproduced"),
    ],
)
def test_correlation_verdicts(rho, p_value, sign, seeds, verdict):
    assert correlation_verdict(rho, p_value, sign, seeds) == verdict


def test_mean_estimate_uses_seed_means():
    estimate = mean_estimate(_rows("a", {0: 0.2, 1: 0.4}), "rerr")
    assert estimate.mean == pytest.approx(0.3) and estimate.seeds == 2


def _stutz(rows_by_variant: dict[str, dict[int, float]], rate: float) -> Results:
    rows = []
    for variant, means in rows_by_variant.items():
        rows += _rows(f"cifar10-8bit-{variant}", means, rate)
    return Results({"stutz2021-cifar10": rows}, {})


def test_stutz_quantization_claim_from_rows():
    three = {"perlayer-normal": {0: 0.30, 1: 0.32, 2: 0.31}, "rquant": {0: 0.1, 1: 0.12, 2: 0.11}}
    claim = stutz_claims(_stutz(three, 0.005))[0]
    assert claim.verdict == "reproduced"
    assert "cifar10, 8 bit, p = 0.5 %" in claim.ours and "+20.00 points" in claim.ours
    reversed_ = {"perlayer-normal": three["rquant"], "rquant": three["perlayer-normal"]}
    assert stutz_claims(_stutz(reversed_, 0.005))[0].verdict == "not reproduced"
    assert stutz_claims(_stutz({"rquant": three["rquant"]}, 0.005))[0].verdict == "not attempted"


def test_energy_saving_claim_reads_the_lowest_voltage_within_budget():
    rows = _rows("cifar10-8bit-perlayer-normal", {0: 0.2, 1: 0.2, 2: 0.2})  # Err 10 %
    for seed in range(3):
        for voltage, rerr in ((1.0, 0.10), (0.9, 0.105), (0.86, 0.108), (0.8, 0.3)):
            rows.append(
                {
                    "model": "cifar10-8bit-randbet-005",
                    "fault": "sram-chip0",
                    "x": voltage,
                    "training_seed": seed,
                    "pattern": 0,
                    "rerr": rerr,
                }
            )
    claims = stutz_claims(Results({"stutz2021-cifar10": rows}, {}))
    energy = next(c for c in claims if "energy saving at 8 bit" in c.claim)
    saving = 100 * energy_saving(0.86)
    assert f"saving {saving:.1f} %" in energy.ours
    assert energy.verdict == "reproduced"  # 26 % ≥ 20 % on every seed


def _write_trials(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_trials_load_typed(tmp_path):
    rows = _rows("cifar10-8bit-rquant", {0: 0.1})
    rows[0]["fault"] = "bit-errors"
    rows[0]["layer"] = None
    rows[0]["trial_id"], rows[1]["trial_id"] = "7550823479156768", "1e10aaaabbbbcccc"
    _write_trials(tmp_path / "s" / "trials.csv.gz", rows)
    loaded = load_trials(tmp_path / "s" / "trials.csv.gz")
    assert loaded[0]["x"] == 0.01 and loaded[0]["pattern"] == 0 and loaded[0]["layer"] is None
    assert loaded[0]["rerr"] == rows[0]["rerr"]
    assert [row["trial_id"] for row in loaded[:2]] == ["7550823479156768", "1e10aaaabbbbcccc"]


def test_cli_writes_the_claims_files(tmp_path, capsys):
    rows = _rows("cifar10-8bit-rquant", {0: 0.1, 1: 0.1, 2: 0.1}, 0.005)
    rows += _rows("cifar10-8bit-perlayer-normal", {0: 0.3, 1: 0.31, 2: 0.32}, 0.005)
    _write_trials(tmp_path / "stutz2021-cifar10" / "trials.csv.gz", rows)
    assert main(["claims", "--results", str(tmp_path), "--out", str(tmp_path / "o"), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["verdicts"]["stutz2021"]["reproduced"] == 1
    claims = json.loads((tmp_path / "o" / "claims.json").read_text())
    assert all(
        set(c) == {"paper", "claim", "verdict", "ours", "paper_value", "evidence"} for c in claims
    )
    assert {c["paper"] for c in claims} == set(PAPERS)
    assert all(c["verdict"] in VERDICTS for c in claims)
    assert "| stutz2021 | 1 |" in (tmp_path / "o" / "CLAIMS.md").read_text()


def test_cli_refuses_a_missing_results_folder(tmp_path, capsys):
    assert main(["claims", "--results", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_committed_claims_are_what_the_code_computes():
    """docs/results/claims.json is the output of the claims code on the committed results."""
    committed = json.loads((RESULTS / "claims.json").read_text())
    computed = [c.__dict__ for c in evaluate_claims(Results.load(RESULTS))]
    assert committed == computed


def test_fixed_pattern_claim_compares_its_two_fault_entries():
    rows = []
    for fault, means in (("training-pattern", 0.05), ("random-patterns", 0.4)):
        for row in _rows(
            "mnist-8bit-randbet-fixed-01", {0: means, 1: means + 0.01, 2: means - 0.01}, 0.025, 1
        ):
            rows.append({**row, "fault": fault})
    claims = stutz_claims(Results({"stutz2021": rows}, {}))
    fixed = next(c for c in claims if "fixed bit error pattern" in c.claim)
    assert fixed.verdict == "reproduced"
    assert "randbet-fixed-01, random-patterns" in fixed.ours and "+35.00 points" in fixed.ours


def test_quantization_ladder_claims_use_the_ablation_rate():
    means = {
        "perlayer-normal": 0.2,
        "perlayer-asym": 0.4,
        "perlayer-asym-unsigned": 0.15,
        "rquant": 0.1,
    }
    rows = []
    for variant, mean in means.items():
        rows += _rows(f"mnist-8bit-{variant}", {0: mean, 1: mean + 0.01, 2: mean + 0.02}, 0.05)
    ladder = [c for c in stutz_claims(Results({"stutz2021": rows}, {})) if "ablation" in c.claim]
    assert [c.verdict for c in ladder] == ["reproduced"] * 3
    assert all("mnist, 8 bit, p = 5 %" in c.ours for c in ladder)


def _ax_row(multiplier, array, seed, pattern, loss, **extra):
    return {
        "model": "mnist-mlp",
        "accelerator": f"{multiplier} on {array}",
        "fault": f"bits-{multiplier}-{array.rstrip('0123456789')}-sa1",
        "bit": 14,
        "x": 0.5,
        "training_seed": seed,
        "pattern": pattern,
        "mitigation": None,
        "accuracy_loss": loss,
        **extra,
    }


def test_axdnn_gap_pairs_rows_of_the_same_family_array_seed_and_map():
    from bitrobust.experiments.claims import axdnn_claims

    rows = []
    for array in ("tpu16", "gpu256"):
        for seed in range(3):
            for pattern in range(3):
                rows.append(_ax_row("mul8u_1JFF", array, seed, pattern, 0.05))
                rows.append(_ax_row("mul8u_12N4", array, seed, pattern, 0.25 + 0.01 * seed))
                rows.append(_ax_row("mul8s_1KV6", array, seed, pattern, 0.30))  # exact signed
                rows.append(_ax_row("mul8s_1L2N", array, seed, pattern, 0.20))  # less than exact
    claims = axdnn_claims(Results({"axdnn2023": rows}, {}))
    gap, everywhere = claims[0], claims[1]
    assert "(3 seed(s) × 12 values)" in gap.ours and gap.verdict == "reproduced"  # pooled: +5.5
    assert "gpu, mul8s: -10.00 points" in everywhere.ours
    assert "tpu, mul8u: +21.00 points" in everywhere.ours
    assert everywhere.verdict == "partly"


def test_axdnn_fault_loss_orthogonality_uses_the_recorded_powers():
    from bitrobust.experiments.claims import axdnn_claims

    powers = {"mul8u_A": 0.1, "mul8u_B": 0.2, "mul8u_C": 0.3, "mul8u_D": 0.4, "mul8u_1JFF": 0.5}
    document = {
        "records": [{"multipliers": [{"multiplier": m, "power_mw": p} for m, p in powers.items()]}]
    }
    rows = [
        _ax_row(m, "tpu16", seed, 0, loss)
        for seed in range(3)
        for m, loss in (("mul8u_A", 0.4), ("mul8u_B", 0.3), ("mul8u_C", 0.2), ("mul8u_D", 0.1))
    ]
    claim = axdnn_claims(Results({"axdnn2023": rows}, {"axdnn2023": document}))[-1]
    assert "ρ(power, fault-induced loss) = -1.00" in claim.ours
    assert claim.verdict == "not reproduced"  # loss falls as power rises: not orthogonal


def test_bnn_correlations_run_per_architecture_and_count_seeds():
    from bitrobust.experiments.claims import bnn_claims

    records = []
    for arch in ("mlp", "vgg3"):
        for variant, (margin, accuracy) in enumerate(((1, 0.5), (2, 0.6), (3, 0.7), (4, 0.8))):
            for seed in range(3):
                records.append(
                    {
                        "name": f"fashion-mnist-bnn-{arch}-v{variant}",
                        "architecture": arch,
                        "training_seed": seed,
                        "metrics": {
                            "examples": 10000,
                            "layers": [{"margin_normalized_mean": margin + 0.1 * seed}],
                        },
                        "sweep": [
                            {"bit_error_rate": rate, "accuracy_mean": accuracy + 0.01 * seed}
                            for rate in (0.1, 0.2)
                        ],
                    }
                )
    claim = bnn_claims(Results({}, {"bnn2021": {"records": records}}))[0]
    assert "mlp, BER 10 %: ρ = +" in claim.ours and "vgg3, BER 20 %" in claim.ours
    assert "all, BER 10 %" in claim.ours and "3 seed(s) each" in claim.ours
    assert claim.verdict == "reproduced"
    assert "mlp: 1/10000" in claim.evidence


@pytest.mark.parametrize(
    ("estimate", "verdict"),
    [
        (Estimate(0.005, -0.002, 0.012, 3, 1), "reproduced"),
        (Estimate(0.005, -0.05, 0.06, 3, 1), "partly"),  # the cost may be large
        (Estimate(0.005, -0.002, 0.012, 1, 25), "partly"),
        (Estimate(0.03, 0.02, 0.04, 3, 1), "not reproduced"),
    ],
)
def test_a_small_cost_needs_its_whole_interval_below_the_bound(estimate, verdict):
    from bitrobust.experiments.claims import SMALL_ERR_COST, _small_cost_verdict

    assert _small_cost_verdict(estimate, SMALL_ERR_COST) == verdict
