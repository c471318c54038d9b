"""``reproduce axdnn2023`` end to end with tiny settings (8x8 digits, built-in multipliers)."""

from __future__ import annotations

import json

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


def test_axdnn2023_report(tmp_path, monkeypatch):
    assert "axdnn2023" in STUDIES
    monkeypatch.setattr(axdnn2023, "settings", lambda quick: TINY)
    study = load_study("axdnn2023")
    summary = study.reproduce(tmp_path, quick=True, command="bitrobust reproduce axdnn2023 --quick")
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
    assert any("FaL-reTune recovers" in line for line in summary["findings"]) or all(
        row["recovery"] is None for row in record["mitigation"]
    )
    assert any("paper: a permanent fault" in line for line in summary["findings"])
    assert any("FaL-reTune is more accurate than fap in" in line for line in summary["findings"])
    # everything cached: a second run reuses the record
    again = study.reproduce(tmp_path, quick=True)
    assert again["records"] == saved["records"]


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
