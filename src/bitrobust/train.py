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

SGD with Nesterov momentum and the paper's schedule (×0.1 at 2/5, 3/5 and 4/5 of training,
stepped per batch).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.utils.data import TensorDataset

from bitrobust.bits import stable_seed
from bitrobust.errors import BitrobustError, check_rate
from bitrobust.faults import RandomBitErrors
from bitrobust.quant import QuantizedModel, QuantScheme, fake_quantize

METHODS = ("normal", "clipping", "randbet")


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
    bit_error_rate: float = 0.01  # randbet: rate of the training bit errors
    perturbed_grad_clip: float = 0.05  # randbet: element-wise clamp of the perturbed gradient
    curriculum_threshold: float = 1.75  # randbet: loss threshold τ of the curriculum
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BitrobustError(
                f"unknown training method '{self.method}' (known: {', '.join(METHODS)})"
            )
        if self.method in ("clipping", "randbet") and self.w_max is None:
            raise BitrobustError(f"method '{self.method}' needs --w-max (e.g. 0.1)")
        if self.w_max is not None and not (self.w_max > 0 and math.isfinite(self.w_max)):
            raise BitrobustError(f"w_max must be a positive number, got {self.w_max}")
        if self.epochs < 0 or self.batch_size < 1:
            raise BitrobustError("epochs must be >= 0 and batch size >= 1")
        check_rate(self.bit_error_rate, "bit error rate")

    @property
    def projection_bound(self) -> float:
        return self.w_max if self.w_max is not None else 1.0

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


def project_parameters(model: nn.Module, bound: float) -> None:
    """Clamp every trainable parameter in place to [-bound, bound] (the paper's BoxProjection)."""
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.clamp_(-bound, bound)


def quantized_parameters(model: nn.Module, scheme: QuantScheme) -> dict[str, torch.Tensor]:
    """The model's trainable parameters, fake-quantized (straight-through gradient)."""
    return {
        name: fake_quantize(param, scheme)
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def perturbed_parameters(
    model: nn.Module, scheme: QuantScheme, bit_error_rate: float, seed: int, bound: float
) -> dict[str, torch.Tensor]:
    """Weights with a fresh random bit error pattern, projected; straight-through gradient."""
    with torch.no_grad():
        qmodel = QuantizedModel.from_module(model, scheme)
        faulty = RandomBitErrors(bit_error_rate)(qmodel, seed).dequantized()
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
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )
    total_steps = max(1, config.epochs * len(batches))
    milestones = [round(total_steps * f) for f in (2 / 5, 3 / 5, 4 / 5)]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    bound = config.projection_bound
    perturb = False  # the curriculum's "population": starts off
    history = TrainHistory()
    step = 0
    for epoch in range(config.epochs):
        losses, perturbed_losses, perturbed_steps = [], [], 0
        progress = _progress(batches, f"epoch {epoch + 1}/{config.epochs}", config.progress)
        for images, labels in progress:
            project_parameters(model, bound)
            optimizer.zero_grad(set_to_none=True)
            logits = functional_call(model, quantized_parameters(model, scheme), (images,))
            loss = F.cross_entropy(logits, labels)
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
        project_parameters(model, bound)
        history.loss.append(sum(losses) / max(1, len(losses)))
        history.perturbed_loss.append(sum(perturbed_losses) / max(1, len(perturbed_losses)))
        history.perturbed_fraction.append(perturbed_steps / max(1, len(losses)))
        if on_epoch is not None:
            on_epoch(epoch, history)
    model.eval()
    return history


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
    loss = F.cross_entropy(logits, labels)
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
