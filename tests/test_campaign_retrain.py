"""Approximation-aware retraining as an accelerator option (``retrain_epochs``): once per model
and multiplier, before any fault, saved beside the checkpoints, in the ids only when set."""

from __future__ import annotations

from pathlib import Path

import pytest

import bitrobust
from bitrobust.campaign import plan as planning
from bitrobust.campaign import worker
from bitrobust.campaign.plan import ModelInstance, plan_trials
from bitrobust.campaign.runner import run_campaign
from bitrobust.campaign.spec import parse_spec
from bitrobust.campaign.store import CampaignStore
from bitrobust.errors import BitrobustError

PINNED_SPEC = """
name = "pinned-ids"
patterns = 2
[data]
dataset = "digits"
test_limit = 50
[[models]]
name = "m"
architecture = "mlp"
[[faults]]
name = "free"
type = "fault_free"
[faults.accelerator]
multiplier = "mitchell8u"
size = 4
calibration = 10
[[faults]]
name = "bits"
type = "pe_faults"
fault_rates = [0.1, 0.5]
bit = [3, 14]
stuck_at = 1
[faults.accelerator]
multiplier = "exact8u"
array = "gpu"
size = 8
[[faults]]
name = "mitigated"
type = "pe_faults"
fault_rates = [0.5]
bit = 14
stuck_at = 0
mitigations = [{ method = "none" }, { method = "falretune", guard = false, epochs = 1 }]
[faults.accelerator]
multiplier = "mitchell8u"
[[faults]]
name = "memory"
type = "random_bit_errors"
rates = [0.01]
"""

#: Recorded with the code before accelerators could retrain (package version 0.3.0).
PINNED_IDS = [
    ("free", 0.0, None, None, 0, "5af934472fc300f0"),
    ("bits", 0.1, 3, None, 0, "b11955f9f8ac7b5b"),
    ("bits", 0.1, 3, None, 1, "72e3a51d377c684f"),
    ("bits", 0.5, 3, None, 0, "af689fa40529ab09"),
    ("bits", 0.5, 3, None, 1, "532f3517c37fb071"),
    ("bits", 0.1, 14, None, 0, "b1aadd72a9b7d2bf"),
    ("bits", 0.1, 14, None, 1, "14dc6c4aa14fd867"),
    ("bits", 0.5, 14, None, 0, "62e29857d53449a6"),
    ("bits", 0.5, 14, None, 1, "52fb69d23ed6c0f7"),
    ("mitigated", 0.5, None, "none", 0, "09ff18d46fc5ca1c"),
    ("mitigated", 0.5, None, "none", 1, "68d4d0eebe8efbe9"),
    ("mitigated", 0.5, None, "falretune", 0, "7983c4eeb80c8753"),
    ("mitigated", 0.5, None, "falretune", 1, "23ffb411ae319fdd"),
    ("memory", 0.01, None, None, 0, "55d839355db3e3f8"),
    ("memory", 0.01, None, None, 1, "bf666d10dc93ed06"),
]

INSTANCE = ModelInstance("m", 0, "0123456789abcdef", "m.safetensors", "digits")


@pytest.fixture
def version_030(monkeypatch):
    """Trial ids hash the package version: pin the one the ids were recorded with."""
    monkeypatch.setattr(bitrobust, "__version__", "0.3.0")


def _ids(text: str) -> list[tuple]:
    trials = plan_trials(parse_spec(text), [INSTANCE], {})
    return [
        (
            t.setting.fault,
            t.setting.x,
            t.setting.bit,
            None if t.setting.mitigation is None else t.setting.mitigation["name"],
            t.pattern,
            t.trial_id,
        )
        for t in trials
    ]


def test_trial_ids_without_retraining_are_as_before(version_030):
    assert _ids(PINNED_SPEC) == PINNED_IDS


def test_the_committed_axdnn2023_trials_are_what_the_packaged_spec_plans(version_030):
    """A rerun of the committed study resumes it: every committed trial id is planned by the
    packaged spec, and nothing more (the ids hash the spec entries, recipes and version)."""
    from bitrobust.experiments.campaigns import packaged_spec
    from bitrobust.experiments.claims import load_trials

    spec, _ = packaged_spec("axdnn2023")
    instances = planning.model_instances(spec, planning.training_jobs(spec, "checkpoints"))
    planned = {t.trial_id for t in plan_trials(spec, instances, {})}
    results = Path(__file__).resolve().parents[1] / "docs" / "results" / "axdnn2023"
    committed = {row["trial_id"] for row in load_trials(results / "trials.csv.gz")}
    assert committed == planned


def test_retraining_enters_only_the_ids_of_the_entries_that_set_it(version_030):
    retraining = 'multiplier = "mitchell8u"\nretrain_epochs = 1\nretrain_examples = 100\n'
    text = PINNED_SPEC.replace('multiplier = "mitchell8u"\nsize = 4', retraining + "size = 4")
    changed = {(row[0], row[4]): row[5] for row in _ids(text)}
    before = {(row[0], row[4]): row[5] for row in PINNED_IDS}
    assert [key for key in before if changed[key] != before[key]] == [("free", 0)]
    (free,) = [f for f in parse_spec(text).faults if f.name == "free"]
    assert free.accelerator.key()["retrain_lr"] == 0.005


def test_retrain_options_without_epochs_are_one_clear_error():
    text = PINNED_SPEC.replace("calibration = 10", "calibration = 10\nretrain_examples = 100")
    with pytest.raises(BitrobustError, match=r"faults\[0\]\.accelerator: retrain_examples .*"):
        parse_spec(text)


TINY = """
name = "retrain"
patterns = 1
metrics = ["err_faulty"]
[data]
dataset = "digits"
test_limit = 200
[[models]]
name = "m"
architecture = "mlp"
options = { hidden = [16] }
epochs = 2
"""


def _entry(name: str, array: str, size: int, retrain: bool) -> str:
    lines = [
        f'\n[[faults]]\nname = "{name}"\ntype = "fault_free"\n[faults.accelerator]',
        f'multiplier = "mitchell8u"\narray = "{array}"\nsize = {size}\ncalibration = 200',
    ]
    if retrain:
        lines.append("retrain_epochs = 1\nretrain_examples = 300\nretrain_lr = 0.02")
    return "\n".join(lines) + "\n"


def test_retraining_runs_once_per_model_and_multiplier_and_changes_accuracy(tmp_path):
    text = TINY + "".join(
        (
            _entry("plain", "tpu", 4, False),
            _entry("tpu", "tpu", 4, True),
            _entry("gpu", "gpu", 16, True),
        )
    )
    spec = parse_spec(text)
    worker._DEPLOYMENTS.clear()
    run_campaign(spec, text, tmp_path / "a.db", checkpoint_dir=tmp_path / "checkpoints")
    retrained = sorted((tmp_path / "checkpoints").glob("*-retrained-*.safetensors"))
    assert len(retrained) == 1  # one retraining serves both arrays
    with CampaignStore.open_existing(tmp_path / "a.db") as store:
        accuracy = {r.params["fault"]: 1 - r.metrics["err_faulty"] for r in store.records()}
    assert accuracy["tpu"] == accuracy["gpu"] != accuracy["plain"]
    # the worker retrains to the same weights when the saved file is not there
    trial = next(
        t
        for t in plan_trials(spec, planning.model_instances(spec, _jobs(spec, tmp_path)), {})
        if t.setting.fault == "tpu"
    )
    task = {
        "checkpoint": trial.instance.checkpoint,
        "fingerprint": trial.instance.fingerprint,
        "accelerator": trial.setting.accelerator,
        "data": planning.data_key(spec, trial.instance),
        "batch_size": spec.data.batch_size,
        "data_dir": None,
    }
    loaded = worker.build_deployment({**task, "retrained": str(retrained[0])})
    computed = worker.build_deployment({**task, "retrained": None})
    assert _state(loaded.module) == _state(computed.module)


def _jobs(spec, tmp_path: Path):
    return planning.training_jobs(spec, tmp_path / "checkpoints")


def _state(module) -> dict[str, bytes]:
    return {k: v.detach().numpy().tobytes() for k, v in module.state_dict().items()}
