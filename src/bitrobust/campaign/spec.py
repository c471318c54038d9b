"""The campaign spec: one TOML file that states an experiment, validated with pydantic.

A spec names the test data, the models (checkpoints, or training recipes with several training
seeds), the fault sources with the values they sweep (bit error rates, voltages, PE fault
rates), the number of fault patterns, and optionally adaptive stopping. Unknown keys, wrong
types and unknown names are errors that name the key: ``spec quickstart.toml: faults[1].rates:
…``. Everything else (the trials, their ids, their order) follows from the spec and
:mod:`bitrobust.campaign.plan`.

Example (``examples/campaigns/quickstart.toml`` is a complete one)::

    name = "quickstart"
    patterns = 10

    [data]
    dataset = "mnist"
    test_limit = 1000

    [[models]]
    name = "normal"
    architecture = "mlp"
    epochs = 2

    [[faults]]
    name = "bit-errors"
    type = "random_bit_errors"
    rates = [0.001, 0.01, 0.05]
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bitrobust.errors import BitrobustError
from bitrobust.names import LOSSES, OPTIMIZERS, QUANT_PRESETS, TRAIN_METHODS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

METRICS: tuple[str, ...] = (
    "rerr",
    "err_faulty",
    "accuracy_loss",
    "err_clean",
    "flips",
    "faulty_macs",
)
"""What every trial measures (see :class:`bitrobust.evaluate.TrialResult`); a spec's
``metrics`` picks those its report shows."""

Rate = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    """The test set every trial evaluates on, and the training set of the recipes."""

    dataset: str = "mnist"
    test_limit: int | None = Field(default=None, ge=1)
    train_limit: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=1000, ge=1)

    _known_dataset = field_validator("dataset")(lambda cls, v: _dataset(v))


def _dataset(value: str) -> str:
    from bitrobust.data.catalog import canonical_name

    try:
        return canonical_name(value)
    except BitrobustError as exc:
        raise ValueError(str(exc)) from None


class ModelSpec(_Strict):
    """A checkpoint (``checkpoint = "file"``), or a training recipe: architecture, quantization
    and method, trained once per entry of ``training_seeds``."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.+-]+$")
    label: str | None = None  # how reports name it (default: name)
    dataset: str | None = None  # trained and tested on this one (default: [data] dataset)
    checkpoint: str | None = None
    architecture: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    quantization: str = "rquant"
    bits: int = Field(default=8, ge=1, le=8)
    method: str = "normal"
    epochs: int = Field(default=10, ge=0)
    batch_size: int | None = Field(default=None, ge=1)
    lr: float | None = Field(default=None, gt=0)
    optimizer: str | None = None
    weight_decay: float | None = Field(default=None, ge=0)
    loss: str | None = None
    hinge_b: float | None = Field(default=None, gt=0)  # the hinge loss's margin b
    w_max: float | None = Field(default=None, gt=0)
    bit_error_rate: Rate | None = None
    label_smoothing: float | None = Field(default=None, ge=0, lt=1)  # cross_entropy only
    fixed_pattern_seed: int | None = Field(default=None, ge=0)  # randbet: one fixed pattern
    # randbet: the loss threshold τ of the curriculum (default 1.75, the paper's)
    curriculum_threshold: float | None = Field(default=None, gt=0)
    training_seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0])

    _known_dataset = field_validator("dataset")(lambda cls, v: None if v is None else _dataset(v))

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if (self.checkpoint is None) == (self.architecture is None):
            raise ValueError("give either checkpoint or architecture (a training recipe)")
        if self.checkpoint is None:
            from bitrobust.models import MODELS

            if self.architecture not in MODELS:
                raise ValueError(
                    f"unknown architecture {self.architecture!r} (known: {', '.join(MODELS)})"
                )
            known = {*QUANT_PRESETS, "binary"}
            if self.quantization not in known:
                raise ValueError(
                    f"unknown quantization {self.quantization!r} (known: {', '.join(known)})"
                )
            for key, value, names in (
                ("method", self.method, TRAIN_METHODS),
                ("optimizer", self.optimizer, OPTIMIZERS),
                ("loss", self.loss, LOSSES),
            ):
                if value is not None and value not in names:
                    raise ValueError(f"unknown {key} {value!r} (known: {', '.join(names)})")
            if len(set(self.training_seeds)) != len(self.training_seeds) or not self.training_seeds:
                raise ValueError("training_seeds must be distinct and not empty")
            self._check_ablations()
        return self

    def _check_ablations(self) -> None:
        """The ablation options apply to one loss and one method only."""
        if self.label_smoothing and self.loss == "hinge":
            raise ValueError("label_smoothing applies to the cross_entropy loss, not hinge")
        for key in ("fixed_pattern_seed", "curriculum_threshold"):
            if getattr(self, key) is not None and self.method != "randbet":
                raise ValueError(f"{key} needs method 'randbet', not {self.method!r}")

    @property
    def trained(self) -> bool:
        return self.checkpoint is None


RETRAIN_KEYS: tuple[str, ...] = ("retrain_epochs", "retrain_examples", "retrain_lr")
"""The accelerator keys of approximation-aware retraining: part of a trial's id only when
``retrain_epochs`` is set, so that the ids of accelerators without retraining stay as before."""


class AcceleratorSpec(_Strict):
    """An emulated accelerator: an (approximate) 8-bit multiplier in a PE array; with
    ``retrain_epochs`` the deployed model is first retrained through the fault-free multiplier
    (approximation-aware retraining, :func:`bitrobust.hw.mitigation.retrain`), once per model."""

    multiplier: str = "exact8u"
    array: Literal["tpu", "gpu"] = "tpu"
    size: int = Field(default=16, ge=1, le=256)
    calibration: int = Field(default=0, ge=0)  # training images that calibrate activations
    retrain_epochs: int = Field(default=0, ge=0)  # 0: deployed as trained
    retrain_examples: int = Field(default=2000, ge=1)  # the first N training examples
    retrain_lr: float = Field(default=0.005, gt=0)

    @model_validator(mode="after")
    def _retrain_needs_epochs(self) -> AcceleratorSpec:
        if not self.retrain_epochs and {"retrain_examples", "retrain_lr"} & self.model_fields_set:
            raise ValueError("retrain_examples and retrain_lr need retrain_epochs >= 1")
        return self

    @property
    def retrains(self) -> bool:
        return self.retrain_epochs > 0

    def key(self) -> dict[str, Any]:
        """The accelerator as trial ids and tasks see it: the retraining keys only when it
        retrains."""
        return self.model_dump(exclude=None if self.retrains else set(RETRAIN_KEYS))


class _FaultBase(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.+-]+$")
    label: str | None = None  # how reports name it (default: name)
    patterns: int | None = Field(default=None, ge=1, le=100_000)  # default: the spec's
    models: list[str] | None = None  # the model names it applies to (default: all)
    accelerator: AcceleratorSpec | None = None  # deploy on this accelerator (default: memory only)


class MemoryRestriction(_Strict):
    layers: list[str] | None = None
    bits: list[int] | None = None
    per_layer: bool = False  # one sweep per stored parameter: a sensitivity heatmap
    per_bit: bool = False  # one sweep per bit position of the m-bit value


class RandomBitErrorsSpec(_FaultBase, MemoryRestriction):
    """Random bit errors in weight memory: symmetric ``rates``, or per direction."""

    type: Literal["random_bit_errors"]
    rates: list[Rate] | None = None
    zero_to_one_rates: list[Rate] | None = None
    one_to_zero_rates: list[Rate] | None = None
    sampler: Literal[1, 2] = 2
    # pattern k uses seed + k (default: the spec's seed); a RandBET model's fixed_pattern_seed
    # with patterns = 1 and sampler 2 evaluates it on the very pattern it was trained on
    seed: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _rates(self) -> RandomBitErrorsSpec:
        directed = (self.zero_to_one_rates, self.one_to_zero_rates)
        if self.rates is not None:
            if any(d is not None for d in directed):
                raise ValueError("give rates, or zero_to_one_rates and one_to_zero_rates, not both")
            if not self.rates:
                raise ValueError("rates must not be empty")
        elif any(d is None for d in directed):
            raise ValueError("give rates, or both zero_to_one_rates and one_to_zero_rates")
        elif len(directed[0]) != len(directed[1]) or not directed[0]:  # type: ignore[arg-type]
            raise ValueError("zero_to_one_rates and one_to_zero_rates need equal, nonzero lengths")
        return self


class StuckAtCellsSpec(_FaultBase, MemoryRestriction):
    """Permanently stuck memory cells at each ``rates`` entry."""

    type: Literal["stuck_at_cells"]
    rates: list[Rate] = Field(min_length=1)
    stuck_at_one: Rate = 0.5


class SRAMSpec(_FaultBase):
    """A low-voltage SRAM chip (a chip map file, or a synthetic chip by seed) at ``voltages``."""

    type: Literal["sram"]
    chip: str | None = None
    synthetic_chip: int | None = Field(default=None, ge=0)
    voltages: list[Annotated[float, Field(gt=0)]] = Field(min_length=1)
    placement: Literal["random", "offset", "linear"] = "random"
    # a synthetic chip's p(V): the rate of failing cells, or of flipped bits (the paper's)
    calibration: Literal["failing_cells", "bit_error_rate"] = "failing_cells"

    @model_validator(mode="after")
    def _one_chip(self) -> SRAMSpec:
        if (self.chip is None) == (self.synthetic_chip is None):
            raise ValueError("give either chip (a chip map file) or synthetic_chip (a seed)")
        if self.chip is not None and "calibration" in self.model_fields_set:
            raise ValueError("calibration applies to synthetic chips only")
        return self


class MitigationSpec(_Strict):
    """A mitigation of PE faults (:class:`bitrobust.hw.mitigation.MitigationConfig`): ``none``,
    ``fap`` (faulty PEs bypassed, or with ``bypass = false`` given zero codes), ``fap-t`` (FAP
    then retuning) or ``falretune``; seeded by the trial's pattern seed."""

    method: Literal["none", "fap", "fap-t", "falretune"]
    label: str | None = None  # how reports name it (default: method)
    epochs: int = Field(default=2, ge=0)
    lr: float = Field(default=0.005, ge=0)
    examples: int = Field(default=2000, ge=1)  # the first N training examples
    batch_size: int = Field(default=128, ge=1)
    bypass: bool = True
    guard: bool = True
    compensate_bias: bool = True
    objective: Literal["absolute", "centered"] = "centered"

    @property
    def name(self) -> str:
        return self.label or self.method


class PEFaultsSpec(_FaultBase):
    """Permanent stuck-at faults in a fraction ``fault_rates`` of the accelerator's PEs: product
    (or accumulator) bit ``bit`` — or each of a list of bits, a sensitivity sweep — stuck at
    ``stuck_at``; optionally each pattern also mitigated by every entry of ``mitigations``."""

    type: Literal["pe_faults"]
    fault_rates: list[Rate] = Field(min_length=1)
    bit: Annotated[int, Field(ge=0, le=31)] | list[Annotated[int, Field(ge=0, le=31)]]
    stuck_at: Literal[0, 1]
    site: Literal["product", "accumulator"] = "product"
    layer: str | None = None
    mitigations: list[MitigationSpec] | None = None

    @property
    def bits(self) -> list[int]:
        return list(self.bit) if isinstance(self.bit, list) else [self.bit]

    @model_validator(mode="after")
    def _needs_array(self) -> PEFaultsSpec:
        if self.accelerator is None:
            raise ValueError("PE faults need an [faults.accelerator] table")
        if isinstance(self.bit, list) and not self.bit:
            raise ValueError("bit must not be an empty list")
        names = [m.name for m in self.mitigations or ()]
        if len(set(names)) != len(names):
            raise ValueError("mitigation names (label or method) must be unique")
        return self


class FaultFreeSpec(_FaultBase):
    """No faults: the deployment's own error (e.g. each approximate multiplier fault free)."""

    type: Literal["fault_free"]


FaultSpec = Annotated[
    RandomBitErrorsSpec | StuckAtCellsSpec | SRAMSpec | PEFaultsSpec | FaultFreeSpec,
    Field(discriminator="type"),
]


class AdaptiveSpec(_Strict):
    """Add patterns to a cell until its confidence interval is narrow enough."""

    target_halfwidth: float = Field(gt=0, le=1)
    max_patterns: int = Field(ge=1, le=100_000)
    min_patterns: int | None = Field(default=None, ge=2)
    metric: Literal[METRICS] = "rerr"  # type: ignore[valid-type]


class CampaignSpec(_Strict):
    """A whole campaign: models × fault models × swept values × patterns."""

    name: str = Field(min_length=1)
    description: str = ""
    seed: int = Field(default=0, ge=0)  # pattern k uses seed + k, at every swept value
    patterns: int = Field(default=10, ge=1, le=100_000)
    metrics: list[Literal[METRICS]] = Field(default_factory=lambda: ["rerr"])  # type: ignore[valid-type]
    confidence: float = Field(default=0.95, gt=0, lt=1)
    data: DataSpec = Field(default_factory=DataSpec)
    models: list[ModelSpec] = Field(min_length=1)
    faults: list[FaultSpec] = Field(min_length=1)
    adaptive: AdaptiveSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CampaignSpec:
        for kind, names in (
            ("model", [m.name for m in self.models]),
            ("fault", [f.name for f in self.faults]),
        ):
            seen = {n for n in names if names.count(n) > 1}
            if seen:
                raise ValueError(
                    f"{kind} names must be unique; repeated: {', '.join(sorted(seen))}"
                )
        known = {m.name for m in self.models}
        for fault in self.faults:
            unknown = [n for n in fault.models or () if n not in known]
            if unknown:
                raise ValueError(
                    f"fault {fault.name!r} names unknown model(s): {', '.join(unknown)}"
                )
        if self.adaptive is not None and self.adaptive.max_patterns < self.patterns:
            raise ValueError("adaptive.max_patterns must be at least patterns")
        return self

    def fault_models_for(self, model: str) -> list[Any]:
        return [f for f in self.faults if f.models is None or model in f.models]

    def dataset_of(self, model: ModelSpec) -> str:
        return model.dataset or self.data.dataset

    def model(self, name: str) -> ModelSpec:
        return next(m for m in self.models if m.name == name)


def spec_hash(spec: CampaignSpec) -> str:
    """A hash of the spec's content as written (not its formatting, nor the defaults of keys it
    leaves out, so a newer version's new keys do not orphan a store): a store belongs to one
    spec."""
    text = json.dumps(spec.model_dump(mode="json", exclude_unset=True), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_spec(text: str, where: str = "spec") -> CampaignSpec:
    """Validate TOML ``text``; a BitrobustError naming ``where`` and the offending key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BitrobustError(f"{where}: not valid TOML ({exc})") from None
    try:
        return CampaignSpec.model_validate(raw)
    except ValidationError as exc:
        raise BitrobustError(f"{where}: {_first_error(exc, raw)}") from None


def load_spec(path: str | os.PathLike[str]) -> tuple[CampaignSpec, str]:
    """Read and validate the spec file at ``path``; returns the spec and its text."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BitrobustError(f"spec {path}: cannot read it ({exc.__class__.__name__})") from None
    spec = parse_spec(text, f"spec {path}")
    return resolve_paths(spec, path.parent), text


def resolve_paths(spec: CampaignSpec, base: Path) -> CampaignSpec:
    """Checkpoint and chip paths relative to the spec's folder."""

    def absolute(value: str | None) -> str | None:
        return None if value is None else str((base / Path(value).expanduser()).resolve())

    models = [m.model_copy(update={"checkpoint": absolute(m.checkpoint)}) for m in spec.models]
    faults = [
        f.model_copy(update={"chip": absolute(f.chip)}) if isinstance(f, SRAMSpec) else f
        for f in spec.faults
    ]
    return spec.model_copy(update={"models": models, "faults": faults})


def _first_error(exc: ValidationError, raw: Any) -> str:
    """One line for the first validation error: its key path and message (and how many more)."""
    error = exc.errors()[0]
    location = _location(error["loc"], raw)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return f"{location or '(top level)'}: {message}{suffix}"


def _location(loc: tuple[Any, ...], raw: Any) -> str:
    """``faults[1].rates[0]`` from pydantic's location, without the discriminator's tag."""
    parts: list[str] = []
    node = raw
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
        elif isinstance(node, dict) and item in node:
            parts.append(f".{item}" if parts else str(item))
            node = node[item]
        elif isinstance(node, dict) and item == node.get("type"):
            continue  # the tagged union's branch name
        else:
            parts.append(f".{item}" if parts else str(item))
            node = None
    return "".join(parts)
