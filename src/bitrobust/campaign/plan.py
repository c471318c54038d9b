"""From a spec to work: training jobs, then trials, each with a stable content-addressed id.

A trial is one model (a checkpoint, or a recipe trained with one training seed) × one fault
model (a spec fault entry at one swept value, maybe restricted to one layer or bit) × one
seeded fault pattern. Its id hashes everything that determines its result: the model's
fingerprint (checkpoint content hash, or the training recipe and the package version), the
deployment (accelerator), the test data, the fault model and the pattern seed. Pattern ``k``
uses seed ``spec.seed + k`` at every swept value (common random numbers; the samplers make
the patterns nested across rates and voltages), or ``seed + k`` for a random bit error entry
that sets its own ``seed``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitrobust.campaign.spec import (
    RETRAIN_KEYS,
    CampaignSpec,
    FaultFreeSpec,
    ModelSpec,
    PEFaultsSpec,
    RandomBitErrorsSpec,
    SRAMSpec,
    StuckAtCellsSpec,
)
from bitrobust.errors import BitrobustError


def digest(value: Any, length: int = 16) -> str:
    """Hex digest of a JSON-able value (keys sorted): the ids of this module."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_digest(path: str | os.PathLike[str]) -> str:
    """Content hash of a file (checkpoints, chip maps), so a changed file is a new input."""
    hasher = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                hasher.update(chunk)
    except OSError as exc:
        raise BitrobustError(f"cannot read {path} ({exc.strerror or exc})") from None
    return hasher.hexdigest()[:16]


@dataclass(frozen=True)
class TrainingJob:
    """One recipe with one training seed: what the training stage runs."""

    model: str
    training_seed: int
    dataset: str
    recipe: dict[str, Any]
    fingerprint: str
    checkpoint: str


@dataclass(frozen=True)
class ModelInstance:
    """A model the trials run on: its spec name, training seed (None for a checkpoint),
    fingerprint and checkpoint file."""

    model: str
    training_seed: int | None
    fingerprint: str
    checkpoint: str
    dataset: str


@dataclass(frozen=True)
class FaultSetting:
    """One fault model, as plain data a worker can rebuild it from (:func:`build_fault_model`)."""

    fault: str  # the spec's fault entry name
    kind: str  # the entry's type
    x: float  # the swept value
    x_name: str  # bit_error_rate, voltage or fault_rate
    options: dict[str, Any] = field(default_factory=dict)
    layer: str | None = None
    bit: int | None = None
    accelerator: dict[str, Any] | None = None
    mitigation: dict[str, Any] | None = None

    def key(self) -> dict[str, Any]:
        key = {
            "fault": self.fault,
            "kind": self.kind,
            "x": self.x,
            "options": self.options,
            "layer": self.layer,
            "bit": self.bit,
            "accelerator": self.accelerator,
        }
        if self.mitigation is not None:  # absent otherwise: older ids stay valid
            key["mitigation"] = self.mitigation
        return key


@dataclass(frozen=True)
class Trial:
    trial_id: str
    instance: ModelInstance
    setting: FaultSetting
    pattern: int
    seed: int

    def params(self) -> dict[str, Any]:
        """The row's parameter columns (see :class:`bitrobust.campaign.store.TrialRecord`)."""
        accelerator = self.setting.accelerator
        return {
            "model": self.instance.model,
            "dataset": self.instance.dataset,
            "training_seed": self.instance.training_seed,
            "fault": self.setting.fault,
            "kind": self.setting.kind,
            "x": self.setting.x,
            "x_name": self.setting.x_name,
            "layer": self.setting.layer,
            "bit": self.setting.bit,
            "accelerator": None if accelerator is None else accelerator_label(accelerator),
            "mitigation": None
            if self.setting.mitigation is None
            else self.setting.mitigation["name"],
            "pattern": self.pattern,
        }


def accelerator_label(accelerator: dict[str, Any]) -> str:
    return f"{accelerator['multiplier']} on {accelerator['array']}{accelerator['size']}"


# -- training jobs ---------------------------------------------------------------------------


OPTIONAL_RECIPE_KEYS: tuple[str, ...] = (
    "label_smoothing",
    "fixed_pattern_seed",
    "curriculum_threshold",
)
"""Recipe keys added after checkpoints were fingerprinted: left out of a recipe that does not
set them, so that its fingerprint (checkpoint name, trial ids) does not change."""


def training_recipe(spec: CampaignSpec, model: ModelSpec, training_seed: int) -> dict[str, Any]:
    """Everything that determines a trained model (and nothing else, so that a changed spec
    retrains only the models it affects)."""
    from bitrobust import __version__

    fields = model.model_dump(exclude={"name", "label", "checkpoint", "training_seeds"})
    for key in OPTIONAL_RECIPE_KEYS:  # absent when unset: older fingerprints stay valid
        if fields[key] is None:
            del fields[key]
    return {
        **fields,
        "dataset": spec.dataset_of(model),
        "train_limit": spec.data.train_limit,
        "training_seed": training_seed,
        "package_version": __version__,
    }


def training_jobs(spec: CampaignSpec, checkpoint_dir: str | os.PathLike[str]) -> list[TrainingJob]:
    """The training stage: one job per recipe and training seed, stored by fingerprint."""
    jobs = []
    for model in spec.models:
        if not model.trained:
            continue
        for training_seed in model.training_seeds:
            recipe = training_recipe(spec, model, training_seed)
            fingerprint = digest(recipe)
            path = (
                Path(checkpoint_dir) / f"{model.name}-seed{training_seed}-{fingerprint}.safetensors"
            )
            jobs.append(
                TrainingJob(
                    model.name,
                    training_seed,
                    spec.dataset_of(model),
                    recipe,
                    fingerprint,
                    str(path),
                )
            )
    return jobs


def model_instances(spec: CampaignSpec, jobs: list[TrainingJob]) -> list[ModelInstance]:
    """Every model the trials run on, in spec order (checkpoints hashed by content)."""
    by_model: dict[str, list[TrainingJob]] = {}
    for job in jobs:
        by_model.setdefault(job.model, []).append(job)
    instances = []
    for model in spec.models:
        if model.trained:
            instances += [
                ModelInstance(j.model, j.training_seed, j.fingerprint, j.checkpoint, j.dataset)
                for j in by_model[model.name]
            ]
        else:
            assert model.checkpoint is not None
            fingerprint = file_digest(model.checkpoint)
            instances.append(
                ModelInstance(
                    model.name, None, fingerprint, model.checkpoint, spec.dataset_of(model)
                )
            )
    return instances


# -- fault settings and trials ---------------------------------------------------------------


@dataclass(frozen=True)
class ModelLayout:
    """What per-layer and per-bit sweeps need to know of a deployed model."""

    stored: tuple[str, ...]  # names of the parameters in the faulty memory
    bits: int  # bits per stored value


def fault_settings(fault: Any, layout: ModelLayout | None) -> list[FaultSetting]:
    """The fault models of one spec entry: one per swept value (× layer × bit if asked)."""
    accelerator = None if fault.accelerator is None else fault.accelerator.key()
    common = {"fault": fault.name, "kind": fault.type, "accelerator": accelerator}
    if isinstance(fault, RandomBitErrorsSpec):
        if fault.rates is not None:
            pairs = [(r, r) for r in fault.rates]
        else:
            pairs = list(zip(fault.zero_to_one_rates or (), fault.one_to_zero_rates or ()))
        values = [
            ((a + b) / 2, {"zero_to_one": a, "one_to_zero": b, "sampler": fault.sampler})
            for a, b in pairs
        ]
        return _memory_settings(fault, values, "bit_error_rate", common, layout)
    if isinstance(fault, StuckAtCellsSpec):
        values = [(r, {"rate": r, "stuck_at_one": fault.stuck_at_one}) for r in fault.rates]
        return _memory_settings(fault, values, "stuck_cell_rate", common, layout)
    if isinstance(fault, SRAMSpec):
        chip: dict[str, Any] = (
            {"synthetic_chip": fault.synthetic_chip}
            if fault.chip is None
            else {"chip": fault.chip, "chip_digest": file_digest(fault.chip)}
        )
        if fault.calibration != "failing_cells":  # absent by default: older ids stay valid
            chip["calibration"] = fault.calibration
        return [
            FaultSetting(
                **common,
                x=v,
                x_name="voltage",
                options={**chip, "voltage": v, "placement": fault.placement},
            )
            for v in fault.voltages
        ]
    if isinstance(fault, PEFaultsSpec):
        sweep = isinstance(fault.bit, list)
        mitigations = [{**m.model_dump(), "name": m.name} for m in fault.mitigations or ()] or [
            None
        ]
        return [
            FaultSetting(
                **common,
                x=r,
                x_name="fault_rate",
                options={"bit": b, "stuck_at": fault.stuck_at, "site": fault.site, "rate": r},
                layer=fault.layer,
                bit=b if sweep else None,
                mitigation=m,
            )
            for b in fault.bits
            for r in fault.fault_rates
            for m in mitigations
        ]
    if isinstance(fault, FaultFreeSpec):
        return [FaultSetting(**common, x=0.0, x_name="fault_rate")]
    raise BitrobustError(f"unknown fault type {fault.type!r}")  # pragma: no cover


def _memory_settings(
    fault: Any,
    values: list[tuple[float, dict[str, Any]]],
    x_name: str,
    common: dict[str, Any],
    layout: ModelLayout | None,
) -> list[FaultSetting]:
    layers: list[str | None] = [None]
    bits: list[int | None] = [None]
    if fault.per_layer or fault.per_bit:
        if layout is None:  # pragma: no cover - the planner always passes one
            raise BitrobustError(f"fault {fault.name!r}: per-layer/per-bit sweeps need a model")
        from bitrobust.faults import RandomBitErrors

        # the entry's own restriction decides which layers and bits a sweep visits
        restriction = RandomBitErrors(0.0, layers=fault.layers or None, bits=fault.bits or None)
        if fault.per_layer:
            chosen = [n for n in layout.stored if restriction.covers(n)]
            if not chosen:
                raise BitrobustError(
                    f"fault {fault.name!r}: layers {fault.layers} name no stored parameter "
                    f"(stored: {', '.join(layout.stored)})"
                )
            layers = list(chosen)
        if fault.per_bit:
            allowed = restriction.allowed_bits(layout.bits)
            bits = [b for b in range(layout.bits) if allowed >> b & 1]
    settings = []
    for layer in layers:
        for bit in bits:
            for x, options in values:
                restricted = {
                    **options,
                    "layers": [layer] if layer is not None else fault.layers,
                    "bits": [bit] if bit is not None else fault.bits,
                }
                settings.append(
                    FaultSetting(
                        **common, x=x, x_name=x_name, options=restricted, layer=layer, bit=bit
                    )
                )
    return settings


def trial_id(
    instance: ModelInstance, setting: FaultSetting, data: dict[str, Any], seed: int
) -> str:
    from bitrobust import __version__

    return digest(
        {
            "model": [instance.model, instance.fingerprint],
            "fault_model": setting.key(),
            "data": data,
            "seed": seed,
            "package_version": __version__,
        }
    )


def data_key(spec: CampaignSpec, instance: ModelInstance) -> dict[str, Any]:
    """The test data of a model's trials."""
    return {"dataset": instance.dataset, "test_limit": spec.data.test_limit}


def plan_trials(
    spec: CampaignSpec,
    instances: list[ModelInstance],
    layouts: dict[str, ModelLayout],
    patterns: dict[tuple[str, str], int] | None = None,
) -> list[Trial]:
    """Every trial of the campaign: instance × fault setting × pattern, in a stable order.

    ``layouts`` maps a model fingerprint (+ accelerator) to its :class:`ModelLayout`
    (:func:`layout_key`); ``patterns`` overrides the pattern count per (model name, fault
    entry name, x) cell key (adaptive stopping)."""
    trials = []
    for instance in instances:
        data = data_key(spec, instance)
        for fault in spec.fault_models_for(instance.model):
            accelerator = None if fault.accelerator is None else fault.accelerator.key()
            layout = layouts.get(layout_key(instance, accelerator))
            for setting in fault_settings(fault, layout):
                count = 1 if setting.kind == "fault_free" else fault.patterns or spec.patterns
                if patterns is not None and setting.kind != "fault_free":
                    count = patterns.get(cell_key(instance.model, setting), count)
                for pattern in range(count):
                    seed = first_seed(spec, fault) + pattern
                    tid = trial_id(instance, setting, data, seed)
                    trials.append(Trial(tid, instance, setting, pattern, seed))
    return trials


def first_seed(spec: CampaignSpec, fault: Any) -> int:
    """The seed of a fault entry's pattern 0: its own ``seed`` if it sets one, else the
    spec's."""
    own = getattr(fault, "seed", None)
    return spec.seed if own is None else own


def cell_key(model: str, setting: FaultSetting) -> tuple[Any, ...]:
    """The cell a trial's statistics aggregate over (patterns and training seeds)."""
    mitigation = None if setting.mitigation is None else setting.mitigation["name"]
    return (model, setting.fault, setting.x, setting.layer, setting.bit, mitigation)


def layout_key(instance: ModelInstance, accelerator: dict[str, Any] | None) -> str:
    return digest([instance.fingerprint, accelerator])


# -- approximation-aware retraining ----------------------------------------------------------


def retraining_key(accelerator: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a model's approximation-aware retraining on ``accelerator`` depends on, or None if
    it does not retrain. Not the PE array: without faults the array does not change a forward
    pass, so one retraining serves every array of a multiplier."""
    if not accelerator or not accelerator.get("retrain_epochs"):
        return None
    from bitrobust import __version__

    keys = ("multiplier", "calibration", *RETRAIN_KEYS)
    return {**{k: accelerator[k] for k in keys}, "package_version": __version__}


def retrained_checkpoint(
    checkpoint_dir: str | os.PathLike[str], instance: ModelInstance, accelerator: dict[str, Any]
) -> str | None:
    """Where the retrained weights of ``instance`` on ``accelerator`` are kept (None if it does
    not retrain): beside the trained checkpoints, named by content like them."""
    key = retraining_key(accelerator)
    if key is None:
        return None
    name = f"{instance.model}-seed{instance.training_seed}-{instance.fingerprint}"
    return str(Path(checkpoint_dir) / f"{name}-retrained-{digest(key)}.safetensors")
