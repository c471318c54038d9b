"""``reproduce axdnn2023`` end to end with tiny settings (8x8 digits, built-in multipliers)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bitrobust.experiments import STUDIES, axdnn2023, load_study

TINY = axdnn2023.AxSettings(
    datasets=("digits",),
    models=(("mlp", {"hidden": [16]}),),
    epochs=2,
    batch_size=64,
    train_limit=None,
    test_limit=100,
    calibration=200,
    multipliers=("exact8u", "trunc8u_k2", "mitchell8u"),
    accurate="exact8u",
    approximate="mitchell8u",
    array_size=4,
    bits=(8, 14),
    rates=(0.1, 0.5),
    patterns=1,
    mitigation_faults=((14, 1),),
    mitigation_patterns=1,
    retune_epochs=1,
    retune_examples=200,
)


PINNED = json.loads((Path(__file__).parent / "data" / "pinned_axdnn2023_tiny.json").read_text())


def test_axdnn2023_as_a_spec_gives_the_pinned_numbers(tmp_path, monkeypatch, caplog):
    assert "axdnn2023" in STUDIES
    text = axdnn2023.spec_text(TINY, "tiny")
    monkeypatch.setattr(axdnn2023, "study_spec", lambda quick: (TINY, text))
    study = load_study("axdnn2023")
    summary = study.reproduce(tmp_path, quick=True, command="bitrobust reproduce axdnn2023 --quick")
    keep = (
        "dataset",
        "model",
        "float_accuracy",
        "multipliers",
        "faults",
        "fault_free",
        "mitigation",
    )
    assert [{k: r[k] for k in keep} for r in summary["records"]] == PINNED["records"]
    assert summary["findings"] == PINNED["findings"]
    report = (tmp_path / "axdnn2023.md").read_text()
    assert "bitrobust reproduce axdnn2023 --quick" in report
    assert "## Mitigation at 50 % faulty PEs" in report and "falretune" in report
    assert (tmp_path / "axdnn2023-bits.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "axdnn2023.json").read_text())
    (record,) = saved["records"]
    assert [row["multiplier"] for row in record["multipliers"]] == list(TINY.multipliers)
    assert len(record["faults"]) == 2 * 2 * 2 * 2  # multipliers × stuck-at × bits × rates
    methods = {row["method"]: row for row in record["mitigation"]}
    assert set(methods) == {"none", "fap", "fap-zero", "fap-t", "falretune"}
    # everything is in the store: a second run trains and runs nothing
    caplog.set_level(logging.INFO, logger="bitrobust")
    caplog.clear()
    again = study.reproduce(tmp_path, quick=True)
    assert again["records"] == summary["records"]
    assert "training" not in caplog.text and "trial(s) to run" not in caplog.text


@pytest.mark.parametrize("quick", [True, False])
def test_the_packaged_specs_are_the_settings(quick):
    settings, text = axdnn2023.study_spec(quick)
    name = "axdnn2023-quick" if quick else "axdnn2023"
    assert text == axdnn2023.spec_text(settings, name)


def test_method_wins_counts_cases_per_fault():
    def row(multiplier, bit, method, accuracy):
        return {
            "multiplier": multiplier,
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
            ],
        }
    ]
    (line,) = axdnn2023._method_wins(records)
    assert "fap in 1 of 3" in line and "fap-zero in 2 of 2" in line and "fap-t" not in line
    assert axdnn2023._method_wins([{"dataset": "d", "model": "m", "mitigation": []}]) == []
