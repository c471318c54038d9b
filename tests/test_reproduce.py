"""``reproduce stutz2021`` end to end with tiny settings (8x8 digits, one chip, three voltages)."""

from __future__ import annotations

import dataclasses
import json

from bitrobust.experiments import load_study, stutz2021
from test_study import TINY  # pytest puts tests/ on sys.path (no package)


def test_stutz2021_report_with_sram_energy(tmp_path, monkeypatch):
    tiny = dataclasses.replace(TINY, bits=(8, 4), variants=stutz2021.STUTZ_VARIANTS[:2])
    monkeypatch.setattr(stutz2021, "settings", lambda quick: tiny)
    monkeypatch.setattr(
        stutz2021, "sram_settings", lambda quick: stutz2021.SramSettings(1, (0.8, 0.9, 1.0), 1)
    )
    study = load_study("stutz2021")
    summary = study.reproduce(tmp_path, quick=True, command="bitrobust reproduce stutz2021 --quick")
    report = (tmp_path / "stutz2021.md").read_text()
    assert "bitrobust reproduce stutz2021 --quick" in report
    assert "digits 4 bit RQuant" in report and "energy savings" in report
    assert (tmp_path / "stutz2021.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "stutz2021.json").read_text())
    energy = saved["sram"]["results"]["digits"]
    assert energy["reference"] == "8 bit Normal"
    assert {s["model"] for s in energy["savings"]} == {
        "8 bit Normal",
        "8 bit RQuant",
        "4 bit Normal",
        "4 bit RQuant",
    }
    assert any("RErr ≤ Err(8 bit Normal) + 1 points" in line for line in summary["findings"])
    # Voltage 1.0 is error free: RErr equals Err there for every model.
    for row in energy["rows"]:
        if row["voltage"] == 1.0:
            assert abs(row["rerr_mean"] - row["err"]) < 1e-9
