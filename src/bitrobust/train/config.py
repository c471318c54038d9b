"""Hyper-parameters of a training run, their model-dependent defaults, and the loss history.

Defaults follow Stutz et al. for ordinary (multi-bit) models: SGD with Nesterov momentum, lr
0.05, batch 128, weight decay 5e-4. Binarized models (bnn-mlp, vgg3, vgg7) train as in the
reference BNN code: Adam, lr 1e-3, batch 256, no weight decay (:meth:`TrainConfig.defaults_for`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from bitrobust.bnn import is_binarized
from bitrobust.errors import BitrobustError, check_rate
from bitrobust.names import LOSSES, OPTIMIZERS, TRAIN_METHODS

DEFAULTS: dict[str, Any] = {"optimizer": "sgd", "lr": 0.05, "batch_size": 128, "weight_decay": 5e-4}
"""Optimizer defaults of ordinary (multi-bit) models."""

BINARIZED_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "batch_size": 256,
    "weight_decay": 0.0,
}
"""Optimizer defaults of binarized models (the reference BNN code)."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (defaults follow Stutz et al.)."""

    method: str = "normal"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    w_max: float | None = None  # projection bound; clipping/randbet need it, normal uses 1.0
    bit_error_rate: float = 0.01  # randbet/bitflip: rate of the training bit errors
    perturbed_grad_clip: float = 0.05  # randbet: element-wise clamp of the perturbed gradient
    curriculum_threshold: float = 1.75  # randbet: loss threshold τ of the curriculum
    seed: int = 0
    progress: bool = True  # train() without a progress callback: the standard stderr printer
    loss: str = "cross_entropy"  # or "hinge": the modified hinge loss
    hinge_b: float = 128.0  # hinge: the margin b
    optimizer: str = "sgd"  # or "adam"
    zero_to_one_rate: float | None = None  # bitflip: −1→+1 rate (default: bit_error_rate)
    one_to_zero_rate: float | None = None  # bitflip: +1→−1 rate (default: bit_error_rate)
    label_smoothing: float = 0.0  # cross_entropy: smoothing of the targets, in [0, 1)
    fixed_pattern_seed: int | None = None  # randbet: one fixed bit error pattern (this seed)

    def __post_init__(self) -> None:
        for option, value, known in (
            ("training method", self.method, TRAIN_METHODS),
            ("loss", self.loss, LOSSES),
            ("optimizer", self.optimizer, OPTIMIZERS),
        ):
            if value not in known:
                raise BitrobustError(f"unknown {option} '{value}' (known: {', '.join(known)})")
        _check_positive("hinge_b", self.hinge_b)
        _check_positive("learning rate", self.lr)
        for name in ("weight_decay", "momentum"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise BitrobustError(f"{name.replace('_', ' ')} must be >= 0, got {value!r}")
        if self.method != "bitflip" and (
            self.zero_to_one_rate is not None or self.one_to_zero_rate is not None
        ):
            raise BitrobustError("per-direction training rates need method 'bitflip'")
        if self.method in ("clipping", "randbet") and self.w_max is None:
            raise BitrobustError(f"method '{self.method}' needs --w-max (e.g. 0.1)")
        if self.w_max is not None:
            _check_positive("w_max", self.w_max)
        if self.epochs < 0 or self.batch_size < 1:
            raise BitrobustError("epochs must be >= 0 and batch size >= 1")
        check_rate(self.bit_error_rate, "bit error rate")
        _check_label_smoothing(self.label_smoothing, self.loss)
        _check_fixed_pattern_seed(self.fixed_pattern_seed, self.method)
        for name in ("zero_to_one_rate", "one_to_zero_rate"):
            if getattr(self, name) is not None:
                check_rate(getattr(self, name), name.replace("_", " "))

    @classmethod
    def defaults_for(cls, model: nn.Module, **options: Any) -> TrainConfig:
        """A config with ``model``'s optimizer defaults (:data:`BINARIZED_DEFAULTS` for
        binarized models, else :data:`DEFAULTS`); ``options`` that are not None win."""
        defaults = BINARIZED_DEFAULTS if is_binarized(model) else DEFAULTS
        given = {name: value for name, value in options.items() if value is not None}
        return cls(**{**defaults, **given})

    @property
    def projection_bound(self) -> float:
        return self.w_max if self.w_max is not None else 1.0

    @property
    def flip_rates(self) -> tuple[float, float]:
        """bitflip: (−1→+1, +1→−1) rates, i.e. the binary code's (0→1, 1→0) rates."""
        up = self.bit_error_rate if self.zero_to_one_rate is None else self.zero_to_one_rate
        down = self.bit_error_rate if self.one_to_zero_rate is None else self.one_to_zero_rate
        return up, down

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record.pop("progress")
        return record


@dataclass
class TrainHistory:
    """Per-epoch mean losses and the fraction of steps that ran a perturbed pass."""

    loss: list[float] = field(default_factory=list)
    perturbed_loss: list[float] = field(default_factory=list)
    perturbed_fraction: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class StepReport:
    """What a step callback hears: ``epoch`` and ``batch`` (0-based) of ``batches`` per epoch
    and ``epochs`` in all, with the step's clean loss."""

    epoch: int
    epochs: int
    batch: int
    batches: int
    loss: float


def _check_positive(what: str, value: object) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise BitrobustError(f"{what} must be a positive number, got {value!r}")


def _check_label_smoothing(value: object, loss: str) -> None:
    """Label smoothing is a cross-entropy option with a value in [0, 1)."""
    if isinstance(value, bool) or not (
        isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value < 1
    ):
        raise BitrobustError(f"label smoothing must be a number in [0, 1), got {value!r}")
    if value and loss != "cross_entropy":
        raise BitrobustError(f"label smoothing applies to the cross_entropy loss, not '{loss}'")


def _check_fixed_pattern_seed(value: object, method: str) -> None:
    """A fixed training pattern is a RandBET option with a whole-number seed >= 0."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise BitrobustError(f"fixed pattern seed must be a whole number >= 0, got {value!r}")
    if method != "randbet":
        raise BitrobustError(f"a fixed bit error pattern needs method 'randbet', not '{method}'")
