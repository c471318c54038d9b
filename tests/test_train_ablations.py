"""The training options of Stutz et al.'s ablations: label smoothing, and RandBET on one fixed
bit error pattern that a campaign fault entry with the same seed evaluates on; both reach the
campaign recipes without changing the fingerprints of recipes that do not use them."""

from __future__ import annotations

import re
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import bitrobust
from bitrobust.campaign import plan as planning
from bitrobust.campaign import worker
from bitrobust.campaign.runner import _pattern_counts
from bitrobust.campaign.spec import parse_spec, spec_hash
from bitrobust.errors import BitrobustError
from bitrobust.evaluate import QuantizedDeployment
from bitrobust.faults import RandomBitErrors
from bitrobust.models import build_model
from bitrobust.quant import QuantizedModel, QuantScheme
from bitrobust.train import RandBET, TrainConfig, train, training_loss_fn
from bitrobust.train.methods import fixed_pattern_faults

SCHEME = QuantScheme.preset("rquant", bits=8, w_max=0.1)
RATE = 0.05


def blobs(n: int = 64, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    centers = torch.rand(4, 1, 4, 4, generator=g)
    return TensorDataset(centers[labels] + 0.05 * torch.randn(n, 1, 4, 4, generator=g), labels)


def mlp(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("mlp", in_channels=1, image_size=4, num_classes=4, hidden=[16])


# -- label smoothing -------------------------------------------------------------------------


def test_label_smoothing_is_torchs_cross_entropy_with_smoothing():
    logits, labels = (
        torch.randn(8, 4, generator=torch.Generator().manual_seed(0)),
        torch.arange(8) % 4,
    )
    smoothed = training_loss_fn(TrainConfig(label_smoothing=0.1))(logits, labels)
    assert torch.equal(smoothed, F.cross_entropy(logits, labels, label_smoothing=0.1))
    plain = training_loss_fn(TrainConfig())(logits, labels)
    assert torch.equal(plain, F.cross_entropy(logits, labels)) and not torch.equal(plain, smoothed)


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, float("nan"), True, "0.1"])
def test_bad_label_smoothing_is_one_line(value):
    with pytest.raises(BitrobustError, match=r"label smoothing must be a number in \[0, 1\)") as e:
        TrainConfig(label_smoothing=value)
    assert "\n" not in str(e.value)


def test_label_smoothing_with_the_hinge_loss_is_refused():
    with pytest.raises(BitrobustError, match="cross_entropy loss, not 'hinge'"):
        TrainConfig(loss="hinge", label_smoothing=0.1)
    config = TrainConfig(loss="hinge")
    config.label_smoothing = 0.1  # changed after validation: the loss still refuses it
    with pytest.raises(BitrobustError, match="not 'hinge'"):
        training_loss_fn(config)


# -- fixed-pattern RandBET --------------------------------------------------------------------


class RecordingRandBET(RandBET):
    """RandBET that keeps a copy of every step's flip masks."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[dict[str, torch.Tensor]] = []

    def flips(self, step: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        flips = super().flips(step)
        masks = {}
        for name, (index, values) in flips.items():  # as flip_masks gives them: dense
            mask = torch.zeros(self._quantized[name][0].codes.numel(), dtype=torch.uint8)
            masks[name] = mask.index_copy_(0, index, values)
        self.seen.append(masks)
        return flips


def train_recording(fixed_pattern_seed: int | None) -> tuple[torch.nn.Module, RecordingRandBET]:
    """A tiny RandBET run whose perturbed pass runs from the second step on (4 steps)."""
    config = TrainConfig(
        method="randbet",
        epochs=1,
        batch_size=16,
        w_max=0.1,
        bit_error_rate=RATE,
        curriculum_threshold=100.0,  # always below: every step after the first is perturbed
        fixed_pattern_seed=fixed_pattern_seed,
        progress=False,
    )
    method = RecordingRandBET(
        0.1, RATE, curriculum_threshold=100.0, fixed_pattern_seed=fixed_pattern_seed
    )
    model = mlp()
    train(model, SCHEME, blobs(), config, device="cpu", method=method)
    return model, method


def same_masks(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n].reshape(-1), b[n].reshape(-1)) for n in a)


def test_fixed_pattern_steps_flip_the_same_bits_and_fresh_ones_do_not():
    _, fixed = train_recording(fixed_pattern_seed=7)
    assert len(fixed.seen) == 3 and sum(int(m.count_nonzero()) for m in fixed.seen[0].values())
    assert all(same_masks(fixed.seen[0], masks) for masks in fixed.seen[1:])
    _, fresh = train_recording(fixed_pattern_seed=None)
    assert not same_masks(fresh.seen[0], fresh.seen[1])


def test_the_fixed_pattern_is_the_evaluation_pattern_of_its_seed():
    model, method = train_recording(fixed_pattern_seed=7)
    # the trained weights differ from those the pattern was first sampled on: value independent
    codes = QuantizedDeployment(model, SCHEME).qmodel
    evaluated = RandomBitErrors(RATE, sampler=2).sample(codes, 7)
    assert fixed_pattern_faults(RATE) == RandomBitErrors(RATE, sampler=2)
    assert same_masks(method.seen[0], dict(evaluated.masks))
    other = RandomBitErrors(RATE, sampler=2).sample(codes, 8)
    assert not same_masks(method.seen[0], dict(other.masks))


def test_a_campaign_entry_with_the_training_seed_evaluates_on_the_training_pattern():
    model, method = train_recording(fixed_pattern_seed=7)
    spec = parse_spec(SPEC + f"seed = 7\npatterns = 1\nrates = [0.01, {RATE}]\n")
    jobs = planning.training_jobs(spec, "checkpoints")
    trials = planning.plan_trials(spec, planning.model_instances(spec, jobs), {})
    at_rate = [t for t in trials if t.setting.x == RATE and t.instance.model == "fixed"]
    assert [t.seed for t in at_rate] == [7]
    faults = worker.build_fault_model(asdict(at_rate[0].setting), None)
    pattern = faults.sample(QuantizedDeployment(model, SCHEME).qmodel, at_rate[0].seed)
    assert same_masks(method.seen[0], dict(pattern.masks))


@pytest.mark.parametrize("sampler", [1, 2])
def test_symmetric_random_bit_errors_do_not_depend_on_the_weights(sampler):
    first = QuantizedModel.from_module(mlp(seed=0), SCHEME)
    second = QuantizedModel.from_module(mlp(seed=1), SCHEME)
    assert all(
        not torch.equal(first.tensors[name].codes, second.tensors[name].codes)
        for name in first.tensors
    )
    symmetric = RandomBitErrors(RATE, sampler=sampler)
    assert same_masks(
        dict(symmetric.sample(first, 3).masks), dict(symmetric.sample(second, 3).masks)
    )
    directed = RandomBitErrors(zero_to_one=RATE, one_to_zero=RATE / 5, sampler=sampler)
    assert not same_masks(
        dict(directed.sample(first, 3).masks), dict(directed.sample(second, 3).masks)
    )


@pytest.mark.parametrize(
    "options",
    [{"method": "normal"}, {"method": "clipping", "w_max": 0.1}, {"method": "bitflip"}],
)
def test_a_fixed_pattern_needs_randbet(options):
    with pytest.raises(BitrobustError, match="fixed bit error pattern needs method 'randbet'"):
        TrainConfig(fixed_pattern_seed=3, **options)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3"])
def test_bad_fixed_pattern_seeds_are_refused(seed):
    with pytest.raises(BitrobustError, match="fixed pattern seed must be a whole number"):
        TrainConfig(method="randbet", w_max=0.1, fixed_pattern_seed=seed)


def test_the_config_records_both_options():
    record = TrainConfig(
        method="randbet", w_max=0.1, label_smoothing=0.1, fixed_pattern_seed=5
    ).to_dict()
    assert (record["label_smoothing"], record["fixed_pattern_seed"]) == (0.1, 5)


# -- campaign specs ---------------------------------------------------------------------------

SPEC = """
name = "ablations"
[data]
dataset = "digits"
train_limit = 100
[[models]]
name = "fixed"
architecture = "mlp"
method = "randbet"
w_max = 0.1
bit_error_rate = 0.05
fixed_pattern_seed = 7
[[models]]
name = "smoothed"
architecture = "mlp"
method = "clipping"
w_max = 0.1
label_smoothing = 0.1
[[faults]]
name = "same-chip"
type = "random_bit_errors"
"""

PINNED = """
name = "pin"
seed = 3
[data]
dataset = "digits"
train_limit = 100
[[models]]
name = "normal"
architecture = "mlp"
options = { hidden = [32] }
epochs = 1
[[models]]
name = "randbet"
architecture = "mlp"
method = "randbet"
w_max = 0.1
bit_error_rate = 0.01
training_seeds = [0, 1]
[[faults]]
name = "bit-errors"
type = "random_bit_errors"
rates = [0.01]
"""


@pytest.fixture
def pinned_version(monkeypatch):
    """Fingerprints hash the package version: pin it, so the pinned values stay valid."""
    monkeypatch.setattr(bitrobust, "__version__", "pinned")


def fingerprints(text: str) -> dict[tuple[str, int], str]:
    jobs = planning.training_jobs(parse_spec(text), "checkpoints")
    return {(job.model, job.training_seed): job.fingerprint for job in jobs}


def test_recipes_without_the_new_keys_keep_their_fingerprints_and_ids(pinned_version):
    # computed with the code before label_smoothing and fixed_pattern_seed existed
    assert fingerprints(PINNED) == {
        ("normal", 0): "eab91e2c30b1dd84",
        ("randbet", 0): "30ef76209d9d785e",
        ("randbet", 1): "9de7eab4b5d16793",
    }
    spec = parse_spec(PINNED)
    instances = planning.model_instances(spec, planning.training_jobs(spec, "checkpoints"))
    trials = planning.plan_trials(spec, instances, {})
    assert (trials[0].trial_id, trials[-1].trial_id, len(trials)) == (
        "f44ce55dfc5ab008",
        "8b11f99c25dca063",
        30,
    )
    assert spec_hash(spec) == "ccc4f7e38e8be4cb"
    recipe = planning.training_recipe(spec, spec.models[0], 0)
    assert not {"label_smoothing", "fixed_pattern_seed"} & set(recipe)


@pytest.mark.parametrize("key", ["label_smoothing = 0.1", "fixed_pattern_seed = 7"])
def test_a_recipe_using_a_new_key_is_another_model(pinned_version, key):
    before = fingerprints(PINNED)
    changed = fingerprints(
        PINNED.replace("training_seeds = [0, 1]", f"training_seeds = [0, 1]\n{key}")
    )
    assert changed[("normal", 0)] == before[("normal", 0)]
    assert changed[("randbet", 0)] != before[("randbet", 0)]
    assert changed[("randbet", 1)] != before[("randbet", 1)]


def test_spec_keys_reach_the_training_config():
    spec = parse_spec(SPEC + "rates = [0.05]\n")
    recipes = {job.model: job.recipe for job in planning.training_jobs(spec, "checkpoints")}
    assert recipes["fixed"]["fixed_pattern_seed"] == 7 and "label_smoothing" not in recipes["fixed"]
    *_, fixed = worker.build_recipe(recipes["fixed"])
    *_, smoothed = worker.build_recipe(recipes["smoothed"])
    assert (fixed.fixed_pattern_seed, fixed.label_smoothing) == (7, 0.0)
    assert (smoothed.fixed_pattern_seed, smoothed.label_smoothing) == (None, 0.1)
    assert fixed.curriculum_threshold == 1.75 and "curriculum_threshold" not in recipes["fixed"]


def test_a_curriculum_threshold_reaches_randbet_and_is_another_model():
    text = SPEC.replace("fixed_pattern_seed = 7", "curriculum_threshold = 2.0") + "rates = [0.05]\n"
    jobs = planning.training_jobs(parse_spec(text), "checkpoints")
    recipe = next(job.recipe for job in jobs if job.model == "fixed")
    assert recipe["curriculum_threshold"] == 2.0
    *_, config = worker.build_recipe(recipe)
    assert config.curriculum_threshold == 2.0
    plain = next(
        j
        for j in planning.training_jobs(parse_spec(SPEC + "rates = [0.05]\n"), "c")
        if j.model == "fixed"
    )
    assert next(j for j in jobs if j.model == "fixed").fingerprint != plain.fingerprint


@pytest.mark.parametrize(
    "change, message",
    [
        (("label_smoothing = 0.1", "label_smoothing = 1.0"), "models[1].label_smoothing"),
        (("label_smoothing = 0.1", "label_smoothing = -0.1"), "models[1].label_smoothing"),
        (("label_smoothing = 0.1", 'label_smoothing = "a"'), "models[1].label_smoothing"),
        (("fixed_pattern_seed = 7", "fixed_pattern_seed = -1"), "models[0].fixed_pattern_seed"),
        (("fixed_pattern_seed = 7", "fixed_pattern_seed = 1.5"), "models[0].fixed_pattern_seed"),
        (('method = "randbet"', 'method = "clipping"'), "fixed_pattern_seed needs method"),
        (("label_smoothing = 0.1", 'label_smoothing = 0.1\nloss = "hinge"'), "not hinge"),
        (
            ("label_smoothing = 0.1", "label_smoothing = 0.1\ncurriculum_threshold = 2.0"),
            "curriculum_threshold needs method",
        ),
        (
            ("fixed_pattern_seed = 7", "fixed_pattern_seed = 7\ncurriculum_threshold = 0"),
            "models[0].curriculum_threshold",
        ),
        (('type = "random_bit_errors"', 'type = "random_bit_errors"\nseed = -1'), "faults[0].seed"),
    ],
)
def test_bad_ablation_keys_are_refused(change, message):
    with pytest.raises(BitrobustError, match=re.escape(message)) as e:
        parse_spec(SPEC.replace(*change) + "rates = [0.05]\n")
    assert "\n" not in str(e.value)


def test_a_fault_entry_seed_moves_its_patterns_and_adaptive_stopping_follows(pinned_version):
    text = PINNED + "seed = 40\npatterns = 2\n"
    spec = parse_spec(text + "[adaptive]\ntarget_halfwidth = 0.01\nmax_patterns = 12\n")
    instances = planning.model_instances(spec, planning.training_jobs(spec, "checkpoints"))
    planned = planning.plan_trials(spec, instances, {})
    assert sorted({t.seed for t in planned}) == [40, 41]
    assert [t.pattern for t in planned[:2]] == [0, 1]
    grown = planning.plan_trials(
        spec, instances, {}, {planning.cell_key(t.instance.model, t.setting): 4 for t in planned}
    )
    counts = _pattern_counts(spec, planned, {t.trial_id for t in grown})
    assert set(counts.values()) == {4}
    # an entry whose seed is the spec's plans the very trials of an entry without one
    plain, same = parse_spec(PINNED), parse_spec(PINNED + "seed = 3\n")
    assert [t.trial_id for t in planning.plan_trials(plain, instances, {})] == [
        t.trial_id for t in planning.plan_trials(same, instances, {})
    ]
