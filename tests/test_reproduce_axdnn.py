"""``reproduce axdnn2023`` end to end with tiny settings (8x8 digits, built-in multipliers)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from bitrobust.errors import BitrobustError
from bitrobust.experiments import STUDIES, axdnn2023, load_study

TINY = axdnn2023.AxSettings(
    datasets=("digits",),
    models=(("mlp", {"hidden": [16]}),),
    training_seeds=(0, 1),
    epochs=2,
    batch_size=64,
    train_limit=None,
    test_limit=100,
    calibration=200,
    multipliers=("exact8u", "trunc8u_k2", "mitchell8u", "exact8s", "mitchell8s"),
    families=(("exact8u", ("mitchell8u",)), ("exact8s", ("mitchell8s",))),
    arrays=("tpu", "gpu"),
    array_size=4,
    gpu_units=16,
    retrain_epochs=1,
    retrain_examples=200,
    retrain_lr=0.01,
    bits=(14,),
    rates=(0.5,),
    patterns=1,
    mitigated=("exact8u", "mitchell8u", "mitchell8s"),
    mitigation_faults=((14, 1),),
    mitigation_patterns=1,
    retune_epochs=1,
    retune_examples=200,
)
"""A miniature study (digits, two training seeds, one bit, rate and fault map): both arrays,
both multiplier families, retraining and every mitigation, FaL-reTune literal included."""


PINNED = json.loads((Path(__file__).parent / "data" / "pinned_axdnn2023_tiny.json").read_text())


def test_axdnn2023_as_a_spec_gives_the_pinned_numbers(tmp_path, monkeypatch, caplog):
    assert "axdnn2023" in STUDIES
    text = axdnn2023.spec_text(TINY, "tiny")
    monkeypatch.setattr(axdnn2023, "study_spec", lambda quick: (TINY, text))
    study = load_study("axdnn2023")
    summary = study.reproduce(tmp_path, quick=True, command="bitrobust reproduce axdnn2023 --quick")
    keep = ("dataset", "model", "float_accuracy", "multipliers", "fault_free", "faults", "gaps")
    keep += ("energy", "mitigation")
    assert [{k: r[k] for k in keep} for r in summary["records"]] == PINNED["records"]
    assert summary["findings"] == PINNED["findings"]
    report = (tmp_path / "axdnn2023.md").read_text()
    assert "bitrobust reproduce axdnn2023 --quick" in report
    assert "## Mitigation at 50 % faulty PEs" in report and "falretune-literal" in report
    assert "## Energy vs resilience" in report and "## AxDNN − AccDNN loss gap" in report
    for plot in ("bits", "multipliers", "energy"):
        assert (tmp_path / f"axdnn2023-{plot}.png").stat().st_size > 1000
    (record,) = json.loads((tmp_path / "axdnn2023.json").read_text())["records"]
    assert [row["multiplier"] for row in record["multipliers"]] == list(TINY.multipliers)
    assert any(row["retrain_gain"] for row in record["multipliers"])  # retraining changes it
    assert len(record["faults"]) == 2 * 4 * 2  # arrays × swept multipliers × stuck-at values
    assert {row["array"] for row in record["faults"]} == {"tpu", "gpu"}
    methods = {row["method"] for row in record["mitigation"]}
    assert methods == {"none", "fap", "fap-zero", "fap-t", "falretune", "falretune-literal"}
    rows = {r["accelerator"] for r in _rows(tmp_path)}
    assert {"mitchell8s on gpu16", "mitchell8u on tpu4", "exact8s on tpu4"} <= rows
    # everything is in the store: a second run trains, retrains and runs nothing
    caplog.set_level(logging.INFO, logger="bitrobust")
    caplog.clear()
    again = study.reproduce(tmp_path, quick=True)
    assert again["records"] == summary["records"]
    assert "training" not in caplog.text and "trial(s) to run" not in caplog.text


def _rows(out: Path) -> list[dict]:
    from bitrobust.campaign.store import CampaignStore

    with CampaignStore.open_existing(out / "campaign.db") as store:
        return [record.flat() for record in store.records()]


@pytest.mark.parametrize("quick", [True, False])
def test_the_packaged_specs_are_the_settings(quick):
    settings, text = axdnn2023.study_spec(quick)
    name = "axdnn2023-quick" if quick else "axdnn2023"
    assert text == axdnn2023.spec_text(settings, name)


def test_method_wins_counts_cases_per_fault():
    def row(multiplier, bit, method, accuracy, array="tpu"):
        return {
            "multiplier": multiplier,
            "array": array,
            "bit": bit,
            "stuck_at": 1,
            "method": method,
            "accuracy_mean": accuracy,
        }

    records = [
        {
            "dataset": "d",
            "model": "m",
            "mitigation": [
                row("a", 14, "fap", 0.5),
                row("a", 14, "fap-zero", 0.1),
                row("a", 14, "falretune", 0.4),
                row("a", 12, "fap", 0.5),
                row("a", 12, "fap-zero", 0.1),
                row("a", 12, "falretune", 0.6),
                row("b", 14, "fap", 0.5),
                row("b", 14, "falretune", 0.5),
                row("b", 14, "fap", 0.1, array="gpu"),
                row("b", 14, "falretune", 0.5, array="gpu"),
            ],
        }
    ]
    (line,) = axdnn2023._method_wins(records)
    assert "fap in 2 of 4" in line and "fap-zero in 2 of 2" in line and "fap-t" not in line
    assert axdnn2023._method_wins([{"dataset": "d", "model": "m", "mitigation": []}]) == []


def _sweep_rows(losses: dict[str, float], seeds=(0, 1), patterns=(0, 1)) -> list[dict]:
    """Bit-sweep rows of one model: ``losses`` by multiplier, shifted by seed and pattern."""
    return [
        {
            "model": "d-m",
            "fault": f"bits-{m}-tpu-sa1",
            "training_seed": seed,
            "pattern": pattern,
            "bit": 14,
            "x": 0.5,
            "accuracy_loss": loss + 0.01 * seed + 0.02 * pattern,
            "err_faulty": 0.5,
        }
        for m, loss in losses.items()
        for seed in seeds
        for pattern in patterns
    ]


def test_the_gap_pairs_each_approximate_multiplier_with_its_exact_one_per_seed_and_map():
    s = dataclasses.replace(
        TINY, arrays=("tpu",), stuck_at=(1,), families=(("e", ("a", "b")), ("f", ("c",)))
    )
    losses = {"e": 0.2, "a": 0.5, "b": 0.3, "f": 0.1, "c": 0.1}
    rows = axdnn2023._gap_rows(s, axdnn2023._Rows(_sweep_rows(losses)))
    gaps = {row["multiplier"]: row for row in rows}
    assert gaps["a"]["gap_mean"] == pytest.approx(0.3) and gaps["c"]["gap_mean"] == 0
    assert gaps["all"]["gap_mean"] == pytest.approx((0.3 + 0.1 + 0.0) / 3)
    assert gaps["a"]["gap_low"] == pytest.approx(0.3) == pytest.approx(gaps["a"]["gap_high"])
    assert (gaps["all"]["seeds"], gaps["all"]["maps"]) == (2, 2)


def test_energy_vs_resilience_is_a_spearman_test_over_the_approximate_multipliers():
    s = dataclasses.replace(TINY, arrays=("tpu",), families=(("e", ("a", "b", "c")),))
    faults = [
        {"multiplier": m, "array": "tpu", "loss_mean": loss}
        for m, loss in (("e", 0.9), ("a", 0.1), ("b", 0.2), ("c", 0.3), ("a", 0.1))
    ]
    info = {m: {"power_mw": power} for m, power in (("e", 0.4), ("a", 0.3), ("b", 0.2), ("c", 0.1))}
    (row,) = axdnn2023._energy_rows(s, faults, info)
    assert (row["rho"], row["n"]) == (pytest.approx(-1.0), 3)
    assert row["p_value"] == pytest.approx(2 / 6)  # exact permutation test, n = 3
    assert [p["multiplier"] for p in row["points"]] == ["a", "b", "c"]


def test_the_studies_fit_their_budget_with_three_seeds_and_fault_maps():
    for quick, minutes in ((True, 15), (False, 110)):
        s = axdnn2023.settings(quick)
        assert axdnn2023.cost_estimate(s, workers=2)["wall"] <= minutes * 60
        assert len(s.training_seeds) >= 3 and min(s.patterns, s.mitigation_patterns) >= 3
        assert all(len(others) >= 3 for _, others in s.families)
        assert set(s.arrays) == {"tpu", "gpu"}
        assert {"falretune", "falretune-literal", "fap-t"} <= set(s.methods)


def test_inconsistent_settings_are_one_clear_error():
    with pytest.raises(BitrobustError, match="unknown array"):
        axdnn2023.spec_text(dataclasses.replace(TINY, arrays=("tpu", "npu")))
    with pytest.raises(BitrobustError, match="every mitigated multiplier"):
        axdnn2023.spec_text(dataclasses.replace(TINY, mitigated=("exact8u", "bam8u_v6_h0")))
