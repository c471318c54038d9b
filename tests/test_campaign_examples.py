"""The example campaigns in examples/campaigns/ parse and plan, their per-layer sweeps name real
layers, every fault model they ask for can be built, and the quickstart (shrunk) runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitrobust.campaign import plan as planning
from bitrobust.campaign import worker
from bitrobust.campaign.runner import run_campaign
from bitrobust.campaign.spec import CampaignSpec, load_spec
from bitrobust.campaign.store import CampaignStore
from bitrobust.quant import QuantizedModel

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "campaigns"
SPECS = sorted(EXAMPLES.glob("*.toml"))
EXPECTED = {
    "quickstart.toml",
    "memory-bit-errors.toml",
    "sram-chip.toml",
    "approximate-accelerator.toml",
    "binarized-network.toml",
}


def _needs_layout(fault) -> bool:
    return bool(getattr(fault, "per_layer", False) or getattr(fault, "per_bit", False))


def _layouts(
    spec: CampaignSpec, jobs: list[planning.TrainingJob], instances: list[planning.ModelInstance]
) -> dict[str, planning.ModelLayout]:
    """The layouts of per-layer/per-bit sweeps, from the untrained models of the recipes (the
    stored parameters do not depend on training)."""
    recipes = {(j.model, j.training_seed): j.recipe for j in jobs}
    layouts = {}
    for instance in instances:
        for fault in spec.fault_models_for(instance.model):
            if not _needs_layout(fault):
                continue
            if fault.accelerator is not None:
                pytest.skip("per-layer sweeps on an accelerator need its deployment")
            model, _, scheme, _ = worker.build_recipe(
                recipes[(instance.model, instance.training_seed)]
            )
            tensors = QuantizedModel.from_module(model, scheme).tensors
            bits = max(tensor.scheme.bits for tensor in tensors.values())
            layouts[planning.layout_key(instance, None)] = planning.ModelLayout(
                tuple(tensors), bits
            )
    return layouts


def test_every_example_is_here_and_documented():
    assert {p.name for p in SPECS} == EXPECTED
    readme = (EXAMPLES / "README.md").read_text()
    for path in SPECS:
        assert f"`{path.name}`" in readme
        text = path.read_text()
        assert "on 2 cores with --workers 2" in text  # the measured runtime, at the top
        assert text.lstrip().startswith("#")


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_an_example_parses_and_plans(path, tmp_path):
    spec, text = load_spec(path)
    assert text == path.read_text() and spec.name == path.stem
    jobs = planning.training_jobs(spec, tmp_path)
    assert all(not Path(j.checkpoint).exists() for j in jobs)
    instances = planning.model_instances(spec, jobs)
    layouts = _layouts(spec, jobs, instances)
    trials = planning.plan_trials(spec, instances, layouts)
    assert len({t.trial_id for t in trials}) == len(trials) > 0
    # every fault entry gives trials for every model it applies to: a `layers` filter that
    # names no stored parameter would silently sweep nothing
    for model in spec.models:
        for fault in spec.fault_models_for(model.name):
            mine = [t for t in trials if t.instance.model == model.name]
            assert any(t.setting.fault == fault.name for t in mine), (model.name, fault.name)
    for fault in spec.faults:
        if _needs_layout(fault) and fault.layers:
            swept = {t.setting.layer for t in trials if t.setting.fault == fault.name}
            assert swept == set(fault.layers), f"{fault.name}: layers not in the model"


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_fault_model_of_an_example_builds(path, tmp_path, evoapprox_dir):
    """What the runner checks before any trial: voltages in the chip's range, known
    multipliers, valid fault options."""
    spec, _ = load_spec(path)
    jobs = planning.training_jobs(spec, tmp_path)
    instances = planning.model_instances(spec, jobs)
    trials = planning.plan_trials(spec, instances, _layouts(spec, jobs, instances))
    multipliers = {t.setting.accelerator["multiplier"] for t in trials if t.setting.accelerator}
    if multipliers:
        from bitrobust.hw import load_multiplier

        if not any(evoapprox_dir.glob("*.npy")):
            pytest.skip("EvoApprox tables not found")
        for name in multipliers:
            load_multiplier(name, evoapprox_dir)
    seen = set()
    for trial in trials:
        key = repr(trial.setting.key())
        if key not in seen:
            seen.add(key)
            worker.build_fault_model(trial.setting.__dict__, None)


def shrunk_quickstart() -> tuple[CampaignSpec, str]:
    spec, text = load_spec(EXAMPLES / "quickstart.toml")
    data = spec.data.model_copy(update={"test_limit": 200, "train_limit": 1000})
    models = [m.model_copy(update={"epochs": 1}) for m in spec.models]
    return spec.model_copy(update={"patterns": 2, "data": data, "models": models}), text


def test_the_quickstart_shrunk_runs_to_completion(tmp_path, data_dir):
    spec, text = shrunk_quickstart()
    rates = next(f for f in spec.faults if f.type == "random_bit_errors").rates
    voltages = next(f for f in spec.faults if f.type == "sram").voltages
    store = tmp_path / "quickstart.db"
    summary = run_campaign(spec, text, store)
    expected = len(spec.models) * (len(rates) + len(voltages)) * spec.patterns
    assert summary.total == summary.done == summary.new == expected
    assert summary.trained == len(spec.models) and not summary.interrupted
    with CampaignStore.open_existing(store) as opened:
        rows = [r.flat() for r in opened.records()]
    assert len(rows) == expected
    assert {r["fault"] for r in rows} == {f.name for f in spec.faults}
    assert all(0 <= r["rerr"] <= 1 and r["examples"] == 200 for r in rows)
    flips = {(r["fault"], r["x"], r["pattern"]): r["flips"] for r in rows}
    for pattern in range(spec.patterns):
        # nested patterns: a higher rate flips a superset, a lower voltage fails more cells
        by_rate = [flips[("bit-errors", x, pattern)] for x in sorted(rates)]
        assert by_rate == sorted(by_rate) and by_rate[0] > 0
        by_voltage = [flips[("sram", v, pattern)] for v in sorted(voltages)]
        assert by_voltage == sorted(by_voltage, reverse=True) and by_voltage[-1] > 0
    # rerunning finds nothing to do
    again = run_campaign(spec, text, store)
    assert (again.new, again.trained, again.done) == (0, 0, expected)
