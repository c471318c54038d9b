"""One training loop with pluggable hardening methods.

Every method trains *quantization-aware*: the forward pass sees the dequantized weights and the
gradient flows straight through to the float weights (``fake_quantize``). Methods differ in what
they do around that:

- ``normal``:   plain quantization-aware training (the paper's Normal/RQuant models; all
                parameters are still projected to ±1, as in the reference code).
- ``clipping``: project every trainable parameter to [-w_max, w_max] before every forward pass.
- ``randbet``:  clipping plus a second, perturbed pass per step with a fresh random bit error
                pattern; its gradient is clamped to ±0.05 and averaged with the clean one. A loss
                threshold curriculum switches the perturbed pass on and off (Stutz et al. §1.5).
- ``bitflip``:  bit flip injection training of binarized networks (Buschjäger et al., BFIT): the
                one pass of every step sees the binary weights with a fresh random pattern of
                sign flips (−1→+1 at ``zero_to_one_rate``, +1→−1 at ``one_to_zero_rate``, both
                ``bit_error_rate`` unless given); straight-through gradient.

Which parameters are quantized (and projected) is decided per parameter by
:func:`bitrobust.quant.parameter_schemes`: every trainable parameter for ordinary models, only
the binarized weights and biases for binarized networks (their batch norm and scale stay float
and are trained as such).

Loss: cross-entropy, or the modified hinge loss (``loss="hinge"``, parameter ``hinge_b``) of the
margin-maximization paper. Optimizer: SGD with Nesterov momentum and the Stutz et al. schedule
(×0.1 at 2/5, 3/5 and 4/5 of training, stepped per batch), or Adam as for binarized networks
(×0.5 at 1/5, 2/5, 3/5 and 4/5 of training: the reference's StepLR with γ = 0.5).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.utils.data import TensorDataset

from bitrobust.bits import sparse_flip_mask, stable_seed
from bitrobust.bnn.training import modified_hinge_loss, random_sign_flips
from bitrobust.errors import BitrobustError, check_rate
from bitrobust.faults import FaultPattern
from bitrobust.names import LOSSES, OPTIMIZERS, TRAIN_METHODS
from bitrobust.quant import QuantizedModel, QuantScheme, fake_quantize, parameter_schemes

METHODS = TRAIN_METHODS


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
    progress: bool = True
    loss: str = "cross_entropy"  # or "hinge": the modified hinge loss
    hinge_b: float = 128.0  # hinge: the margin b
    optimizer: str = "sgd"  # or "adam"
    zero_to_one_rate: float | None = None  # bitflip: −1→+1 rate (default: bit_error_rate)
    one_to_zero_rate: float | None = None  # bitflip: +1→−1 rate (default: bit_error_rate)

    def __post_init__(self) -> None:
        for option, value, known in (
            ("training method", self.method, METHODS),
            ("loss", self.loss, LOSSES),
            ("optimizer", self.optimizer, OPTIMIZERS),
        ):
            if value not in known:
                raise BitrobustError(f"unknown {option} '{value}' (known: {', '.join(known)})")
        if not (self.hinge_b > 0 and math.isfinite(self.hinge_b)):
            raise BitrobustError(f"hinge_b must be a positive number, got {self.hinge_b}")
        if self.method != "bitflip" and (
            self.zero_to_one_rate is not None or self.one_to_zero_rate is not None
        ):
            raise BitrobustError("per-direction training rates need method 'bitflip'")
        if self.method in ("clipping", "randbet") and self.w_max is None:
            raise BitrobustError(f"method '{self.method}' needs --w-max (e.g. 0.1)")
        if self.w_max is not None and not (self.w_max > 0 and math.isfinite(self.w_max)):
            raise BitrobustError(f"w_max must be a positive number, got {self.w_max}")
        if self.epochs < 0 or self.batch_size < 1:
            raise BitrobustError("epochs must be >= 0 and batch size >= 1")
        check_rate(self.bit_error_rate, "bit error rate")
        for name in ("zero_to_one_rate", "one_to_zero_rate"):
            if getattr(self, name) is not None:
                check_rate(getattr(self, name), name.replace("_", " "))

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


def project_parameters(
    model: nn.Module, bound: float, names: Collection[str] | None = None
) -> None:
    """Clamp trainable parameters in place to [-bound, bound] (the paper's BoxProjection): all of
    them, or those in ``names`` (the quantized ones, as :func:`train` does)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad and (names is None or name in names):
                param.clamp_(-bound, bound)


def quantized_parameters(model: nn.Module, scheme: QuantScheme) -> dict[str, torch.Tensor]:
    """The model's quantized parameters, each fake-quantized with its own scheme
    (:func:`~bitrobust.quant.parameter_schemes`; straight-through gradient)."""
    params = dict(model.named_parameters())
    return {
        name: fake_quantize(params[name], param_scheme)
        for name, param_scheme in parameter_schemes(model, scheme).items()
    }


def flipped_parameters(
    params: dict[str, torch.Tensor],
    binary: Collection[str],
    rates: tuple[float, float],
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """``params`` with random sign flips on the binary ones (``binary`` names) at
    (−1→+1, +1→−1) ``rates``; a fresh pattern on every call, straight-through gradient."""
    return {
        name: random_sign_flips(value, *rates, generator) if name in binary else value
        for name, value in params.items()
    }


def training_loss(config: TrainConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy, or the modified hinge loss with ``config.hinge_b``."""
    if config.loss == "hinge":
        return modified_hinge_loss(logits, labels, config.hinge_b)
    return F.cross_entropy(logits, labels)


def perturbed_parameters(
    model: nn.Module, scheme: QuantScheme, bit_error_rate: float, seed: int, bound: float
) -> dict[str, torch.Tensor]:
    """Weights with a fresh random bit error pattern, projected; straight-through gradient."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        qmodel = QuantizedModel.from_module(model, scheme)
        masks = {
            name: sparse_flip_mask(qt.shape, qt.scheme.bits, bit_error_rate, generator)
            for name, qt in qmodel.tensors.items()
        }
        faulty = FaultPattern(masks).apply(qmodel).dequantized()
    params = dict(model.named_parameters())
    return {
        name: params[name] + (faulty[name].clamp(-bound, bound) - params[name]).detach()
        for name in faulty
    }


class _Batches:
    """Shuffled mini-batches of an in-memory TensorDataset, moved to ``device``."""

    def __init__(self, dataset: TensorDataset, batch_size: int, seed: int, device: torch.device):
        self.images, self.labels = dataset.tensors[0], dataset.tensors[1]
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.device = device

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.labels), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.images[index].to(self.device), self.labels[index].to(self.device)


def train(
    model: nn.Module,
    scheme: QuantScheme,
    train_set: TensorDataset,
    config: TrainConfig,
    device: str | torch.device | None = None,
    on_epoch: Callable[[int, TrainHistory], None] | None = None,
) -> TrainHistory:
    """Train ``model`` in place with ``config.method``; returns the loss history."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).train()
    torch.manual_seed(config.seed)
    batches = _Batches(train_set, config.batch_size, config.seed, device)
    optimizer, scheduler = _optimizer(model, config, max(1, config.epochs * len(batches)))
    bound = config.projection_bound
    schemes = parameter_schemes(model, scheme)
    binary = {name for name, param_scheme in schemes.items() if param_scheme.binary}
    if config.method == "bitflip" and not binary:
        raise BitrobustError(
            "method 'bitflip' flips binary weights, and this model has none "
            "(use a binarized model such as bnn-mlp, or randbet for multi-bit weights)"
        )
    flip_generator = torch.Generator(device=device)
    flip_generator.manual_seed(stable_seed("bitflip", config.seed))
    perturb = False  # the curriculum's "population": starts off
    history = TrainHistory()
    step = 0
    for epoch in range(config.epochs):
        losses, perturbed_losses, perturbed_steps = [], [], 0
        progress = _progress(batches, f"epoch {epoch + 1}/{config.epochs}", config.progress)
        for images, labels in progress:
            project_parameters(model, bound, schemes)
            optimizer.zero_grad(set_to_none=True)
            params = quantized_parameters(model, scheme)
            if config.method == "bitflip":
                params = flipped_parameters(params, binary, config.flip_rates, flip_generator)
            logits = functional_call(model, params, (images,))
            loss = training_loss(config, logits, labels)
            loss.backward()
            perturbed_loss = 0.0
            if config.method == "randbet" and perturb:
                perturbed_loss = _perturbed_step(model, scheme, config, images, labels, step, bound)
                perturbed_losses.append(perturbed_loss)
                perturbed_steps += 1
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            if config.method == "randbet":
                tau = config.curriculum_threshold
                clean = loss.item()
                perturb = clean < 1.15 * tau and (clean + perturbed_loss) / 2 <= tau
            step += 1
            if hasattr(progress, "set_postfix"):
                progress.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        project_parameters(model, bound, schemes)
        history.loss.append(sum(losses) / max(1, len(losses)))
        history.perturbed_loss.append(sum(perturbed_losses) / max(1, len(perturbed_losses)))
        history.perturbed_fraction.append(perturbed_steps / max(1, len(losses)))
        if on_epoch is not None:
            on_epoch(epoch, history)
    model.eval()
    return history


def _optimizer(model: nn.Module, config: TrainConfig, total_steps: int):
    """The optimizer and its per-batch learning rate schedule (see the module docstring)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(
            params, lr=config.lr, weight_decay=config.weight_decay
        )
        fractions, gamma = (1 / 5, 2 / 5, 3 / 5, 4 / 5), 0.5
    else:
        optimizer = torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
        fractions, gamma = (2 / 5, 3 / 5, 4 / 5), 0.1
    milestones = [round(total_steps * f) for f in fractions]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)
    return optimizer, scheduler


def _perturbed_step(
    model: nn.Module,
    scheme: QuantScheme,
    config: TrainConfig,
    images: torch.Tensor,
    labels: torch.Tensor,
    step: int,
    bound: float,
) -> float:
    """RandBET's second pass: add the clamped perturbed gradient and average with the clean one."""
    seed = stable_seed("randbet", config.seed, step)
    perturbed = perturbed_parameters(model, scheme, config.bit_error_rate, seed, bound)
    # Running statistics (batch norm) must not learn from the perturbed pass: give it copies.
    buffers = {name: buf.clone() for name, buf in model.named_buffers()}
    logits = functional_call(model, {**perturbed, **buffers}, (images,))
    loss = training_loss(config, logits, labels)
    names = list(perturbed)
    grads = torch.autograd.grad(loss, [perturbed[n] for n in names], allow_unused=True)
    params = dict(model.named_parameters())
    clip = config.perturbed_grad_clip
    with torch.no_grad():
        for name, grad in zip(names, grads):
            param = params[name]
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            if grad is not None:
                param.grad.add_(grad.clamp(-clip, clip))
            param.grad.div_(2.0)
    return loss.item()


def _progress(iterable, description: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(
        iterable, desc=description, leave=False, file=sys.stderr, dynamic_ncols=True, disable=None
    )


from bitrobust.hw.mitigation import MitigationConfig, fault_aware_pruning, mitigate, retune  # noqa: E402,F401,I001
