"""The studies run as campaign specs and reproduce the numbers of the runners they replaced.

``tests/data/pinned_studies_tiny.json`` holds what the per-study runners (before 0.3) computed
on tiny settings (8x8 digits): the same settings, as specs, must give the same numbers to the
last bit — training, quantization, fault patterns and the SRAM energy search included.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from bitrobust.campaign.spec import parse_spec
from bitrobust.experiments import stutz2021
from bitrobust.experiments.campaigns import packaged_spec, run_study_spec
from bitrobust.experiments.robustness import model_records, plot_study, results_table

PINNED = json.loads((Path(__file__).parent / "data" / "pinned_studies_tiny.json").read_text())

VARIANTS = {
    "normal": 'label = "Normal"\nquantization = "normal"\nmethod = "normal"',
    "rquant": 'label = "RQuant"\nquantization = "rquant"\nmethod = "normal"',
    "randbet-01": 'label = "RandBET 0.1"\nquantization = "rquant"\nmethod = "randbet"\n'
    "w_max = 0.1\nbit_error_rate = 0.01",
}


def tiny_spec(bits: list[int], variants: list[str], sampler: int, chips: int = 0) -> str:
    """The old tests' TINY study settings as a campaign spec."""
    text = 'name = "tiny"\npatterns = 2\n\n[data]\ndataset = "digits"\ntest_limit = 200\n'
    for b in bits:
        for v in variants:
            text += (
                f'\n[[models]]\nname = "digits-{b}bit-{v}"\n{VARIANTS[v]}\nbits = {b}\n'
                'architecture = "mlp"\noptions = { hidden = [32] }\nepochs = 2\nbatch_size = 64\n'
            )
    text += (
        '\n[[faults]]\nname = "bit-errors"\ntype = "random_bit_errors"\nrates = [0.01, 0.1]\n'
        f"sampler = {sampler}\n"
    )
    for k in range(chips):
        text += (
            f'\n[[faults]]\nname = "sram-chip{k}"\ntype = "sram"\nsynthetic_chip = {k}\n'
            "voltages = [0.8, 0.9, 1.0]\npatterns = 1\n"
        )
    return text


def _strip(records):
    keys = ("bit_error_rate", "rerr_mean", "rerr_min", "rerr_max", "rerr_std", "patterns")
    return [
        {"err": r["err"], "results": [{k: row[k] for k in keys} for row in r["results"]]}
        for r in records
    ]


def _pinned(records):
    return [{"err": r["err"], "results": r["results"]} for r in records]


def test_stutz2021_as_a_spec_gives_the_pinned_numbers(tmp_path, monkeypatch):
    text = tiny_spec([8, 4], ["normal", "rquant"], sampler=1, chips=1)
    monkeypatch.setattr(
        stutz2021, "study_spec", lambda quick, name="stutz2021": (parse_spec(text), text)
    )
    summary = stutz2021.reproduce(
        tmp_path, quick=True, command="bitrobust reproduce stutz2021 --quick"
    )
    pinned = PINNED["stutz2021"]
    assert _strip(summary["records"]) == _pinned(pinned["records"])
    energy = summary["sram"]["results"]["digits"]
    old = pinned["sram"]["digits"]
    assert energy["rows"] == old["rows"] and energy["savings"] == old["savings"]
    assert energy["reference"] == "8 bit Normal" and energy["chips"] == old["chips"]
    report = (tmp_path / "stutz2021.md").read_text()
    assert "bitrobust reproduce stutz2021 --quick" in report and "energy savings" in report
    assert "digits 4 bit RQuant" in report
    assert (tmp_path / "stutz2021.png").stat().st_size > 1000
    assert any("RErr ≤ Err(8 bit Normal) + 1 points" in line for line in summary["findings"])


def test_a_rerun_reuses_the_store_and_a_changed_spec_reruns_only_what_changed(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="bitrobust")
    text = tiny_spec([4], ["rquant", "randbet-01"], sampler=2)
    spec = parse_spec(text)
    rows = run_study_spec(spec, text, tmp_path)
    records = model_records(spec, rows)
    assert _strip(records) == _pinned(PINNED["sampler2"])
    assert [r["variant"] for r in records] == ["RQuant", "RandBET 0.1"]
    caplog.clear()
    assert run_study_spec(spec, text, tmp_path) == rows  # nothing new
    assert "training" not in caplog.text and "trial(s) to run" not in caplog.text
    # The stale-cache bug of the old runners: more patterns must give more patterns.
    more = text.replace("patterns = 2", "patterns = 3")
    grown = model_records(parse_spec(more), run_study_spec(parse_spec(more), more, tmp_path))
    assert all(row["patterns"] == 3 for r in grown for row in r["results"])
    assert "training" not in caplog.text
    # A changed recipe retrains (only) that model.
    caplog.clear()
    other = more.replace("w_max = 0.1", "w_max = 0.2")
    run_study_spec(parse_spec(other), other, tmp_path)
    assert caplog.text.count("trained ") == 1


def test_study_table_and_plot(tmp_path):
    text = tiny_spec([4], ["rquant"], sampler=2)
    spec = parse_spec(text)
    records = model_records(spec, run_study_spec(spec, text, tmp_path))
    table = results_table(records, (0.01, 0.1))
    assert "digits 4 bit RQuant" in table and "RErr % @ p=10 %" in table
    assert plot_study(records, tmp_path / "plot.png").stat().st_size > 1000


@pytest.mark.parametrize("name", ["demo", "stutz2021", "stutz2021-quick"])
def test_the_packaged_specs_are_valid(name):
    spec, text = packaged_spec(name)
    assert spec.name == name and text.startswith("#")


# -- the generated spec ------------------------------------------------------------------------


@pytest.mark.parametrize("quick", [False, True])
def test_the_packaged_stutz2021_specs_are_the_generator(quick):
    name = "stutz2021-quick" if quick else "stutz2021"
    spec, text = packaged_spec(name)
    assert text == stutz2021.spec_text(quick)
    assert len(spec.models) == 2 * (11 + 4)  # datasets × (8-bit + 4-bit variants)
    assert {len(m.training_seeds) for m in spec.models} == {2 if quick else 3}
    for model in spec.models:
        assert (
            model.name
            == f"{spec.dataset_of(model)}-{model.bits}bit-" + model.name.split("bit-", 1)[1]
        )
    assert "mnist-4bit-normal" not in {m.name for m in spec.models}  # does not train at 4 bit
    faults = {f.name: f for f in spec.faults}
    assert faults["bit-errors"].sampler == 2 and faults["bit-errors"].rates == list(stutz2021.RATES)
    assert all(f.calibration == "bit_error_rate" for f in spec.faults if f.type == "sram")
    assert stutz2021.estimate(spec).wall_minutes(2) < (15 if quick else 100)


def test_the_training_pattern_entry_is_the_fixed_pattern_models_training_pattern():
    from bitrobust.campaign import plan
    from bitrobust.train.methods import FIXED_PATTERN_SAMPLER

    spec, _ = packaged_spec("stutz2021")
    entry = next(f for f in spec.faults if f.name == stutz2021.TRAINING_PATTERN)
    fixed = [m for m in spec.models if m.fixed_pattern_seed is not None]
    assert {m.name for m in fixed} == {
        "mnist-8bit-randbet-fixed-01",
        "fashion-mnist-8bit-randbet-fixed-01",
    }
    assert set(entry.models) == {
        f"{d}-8bit-{v}"
        for d in ("mnist", "fashion-mnist")
        for v in ("randbet-fixed-01", "randbet-01", "clipping-01")
    }
    for model in fixed:
        assert (entry.seed, entry.patterns, entry.sampler) == (
            model.fixed_pattern_seed,
            1,
            FIXED_PATTERN_SAMPLER,
        )
        assert model.bit_error_rate in entry.rates
    # every training seed's model is evaluated on that one pattern, at each rate
    jobs = plan.training_jobs(spec, "checkpoints")
    trials = plan.plan_trials(spec, plan.model_instances(spec, jobs), {})
    on_pattern = [
        t for t in trials if t.setting.fault == entry.name and t.instance.model == fixed[0].name
    ]
    assert sorted(t.seed for t in on_pattern) == [1000] * 2 * 3  # rates × training seeds


def tiny_stutz_spec() -> str:
    """The study's structure (every variant and fault entry), very small, on 8x8 digits."""
    tiny = replace(
        stutz2021.QUICK,
        name="tiny-stutz",
        datasets=("digits",),
        hidden=(16,),
        epochs=1,
        train_limit=300,
        test_limit=100,
        patterns=2,
        rates=(0.01, 0.1),
        chips=1,
        voltages=(0.8, 0.9, 1.0),
    )
    return stutz2021.render_spec(tiny, quick=True)


def test_stutz2021_runs_every_variant_and_fault_entry_end_to_end(tmp_path, monkeypatch):
    text = tiny_stutz_spec()
    spec = parse_spec(text)
    monkeypatch.setattr(stutz2021, "study_spec", lambda quick, name="stutz2021": (spec, text))
    summary = stutz2021.reproduce(tmp_path, quick=True)
    assert len(list((tmp_path / "checkpoints").glob("*.safetensors"))) == 15 * 2
    rows = run_study_spec(spec, text, tmp_path)  # all in the store: runs nothing
    for fault in spec.faults:
        models = fault.models or [m.name for m in spec.models]
        assert {r["model"] for r in rows if r["fault"] == fault.name} == set(models), fault.name
    records = summary["records"]
    assert [r["variant"] for r in records[:4]] == [
        "Normal",
        "Normal (per-layer)",
        "Per-layer +asym",
        "Per-layer +asym +unsigned",
    ]
    assert all(r["training_seeds"] == [0, 1] for r in records)
    pattern = summary["training_pattern"]
    assert len(pattern) == 3 * 2 and all(r["rerr_random"] is not None for r in pattern)
    report = (tmp_path / "stutz2021.md").read_text()
    assert "## Training on a fixed bit error pattern" in report
    assert "RandBET fixed pattern = Clipping 0.1 + bit error training" in report
    assert "label smoothing (the poster: on Clipping 0.15) at p = 1 %" in report
    assert any("≥ Clipping 0.1 ≥ RandBET 0.1" in line for line in summary["findings"])
    assert any("Clipping 0.05 ≥ RandBET 0.05" in line for line in summary["findings"])
