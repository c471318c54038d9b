"""The train-and-sweep study: records, caching and resumption (on the bundled 8x8 digits)."""

from __future__ import annotations

import dataclasses
import json
import logging

from bitrobust.experiments.robustness import (
    STUTZ_VARIANTS,
    StudySettings,
    plot_study,
    results_table,
    run_study,
)

TINY = StudySettings(
    datasets=("digits",),
    bits=(4,),
    variants=(STUTZ_VARIANTS[1], STUTZ_VARIANTS[4]),  # RQuant, RandBET
    model="mlp",
    model_options={"hidden": [32]},
    epochs=2,
    batch_size=64,
    test_limit=200,
    bit_error_rates=(0.01, 0.1),
    patterns=2,
)


def test_study_records_resume_and_invalidate(tmp_path, capsys, caplog, monkeypatch):
    """The study logs its progress (nothing printed) and resumes from its records."""
    caplog.set_level(logging.INFO, logger="bitrobust")
    # as a library: no handler of the command line (an in-process CLI test may have added one)
    monkeypatch.setattr(logging.getLogger("bitrobust"), "handlers", [])
    records = run_study(TINY, tmp_path, progress=False)
    assert [r["variant"] for r in records] == ["RQuant", "RandBET 0.1"]
    for record in records:
        assert record["bits"] == 4 and record["examples"] == 200
        assert [row["bit_error_rate"] for row in record["results"]] == [0.01, 0.1]
        assert all(row["rerr_mean"] >= record["err"] - 1e-9 for row in record["results"])
    assert capsys.readouterr().err == ""  # the library prints nothing
    caplog.clear()

    again = run_study(TINY, tmp_path, progress=False)  # everything cached: same records
    assert again == records
    assert caplog.text.count("cached result") == 2
    caplog.clear()

    more_patterns = dataclasses.replace(TINY, patterns=3)  # same models, new evaluation
    rerun = run_study(more_patterns, tmp_path, progress=False)
    log = caplog.text
    assert log.count("cached checkpoint") == 2 and "training" not in log
    assert all(r["results"][0]["patterns"] == 3 for r in rerun)

    # A half-written result file (killed mid-write) is recomputed, not trusted.
    (tmp_path / "results" / "digits-4bit-rquant.json").write_text('{"name": "dig')
    run_study(more_patterns, tmp_path, progress=False)
    assert json.loads((tmp_path / "results" / "digits-4bit-rquant.json").read_text())["name"]

    other_epochs = dataclasses.replace(TINY, epochs=1)  # different models: retrain
    caplog.clear()
    run_study(other_epochs, tmp_path, progress=False)
    assert caplog.text.count("training") == 2


def test_study_table_and_plot(tmp_path):
    records = run_study(TINY, tmp_path, progress=False)
    table = results_table(records, TINY.bit_error_rates)
    assert "digits 4 bit RQuant" in table and "RErr % @ p=10 %" in table
    assert plot_study(records, tmp_path / "plot.png").stat().st_size > 1000
