"""The training loop: one epoch after another of mini-batches, each step a forward pass on the
parameters a method chooses (:mod:`.methods`), a backward pass, the method's gradient
adjustments, an optimizer step and the method's projection.

:func:`fit` is the loop itself, for any module, method, optimizer and loss; the accelerator
fine-tuning of :mod:`bitrobust.hw.mitigation` uses it directly. :func:`train` is the usual
entry: it builds the method, optimizer and schedule from a :class:`TrainConfig`.

Optimizer: SGD with Nesterov momentum and the Stutz et al. schedule (×0.1 at 2/5, 3/5 and 4/5
of training, stepped per batch), or Adam as for binarized networks (×0.5 at 1/5, 2/5, 3/5 and
4/5 of training: the reference's StepLR with γ = 0.5). Loss: cross-entropy (optionally with
``label_smoothing``), or the modified hinge loss (``loss="hinge"``, parameter ``hinge_b``).
The loop prints nothing: it reports to the callbacks it is given (:mod:`.progress` has a
printer).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.utils.data import TensorDataset

from bitrobust.bnn.training import modified_hinge_loss
from bitrobust.errors import BitrobustError
from bitrobust.quant import QuantScheme
from bitrobust.train.config import StepReport, TrainConfig, TrainHistory
from bitrobust.train.methods import LossFn, method_from_name
from bitrobust.train.progress import TrainingPrinter

OnStep = Callable[[StepReport], None]
OnEpoch = Callable[[int, TrainHistory], None]


class Batches:
    """Shuffled mini-batches of in-memory tensors, moved to ``device``: a new order each epoch
    from one CPU generator seeded with ``seed``."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        seed: int,
        device: torch.device | str | None = None,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.device = device

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.labels), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.images[index].to(self.device), self.labels[index].to(self.device)


def fit(
    model: nn.Module,
    batches: Batches,
    method,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    loss_fn: LossFn = F.cross_entropy,
    scheme: QuantScheme | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    on_step: OnStep | None = None,
    on_epoch: OnEpoch | None = None,
) -> TrainHistory:
    """Run ``epochs`` epochs of ``batches`` through ``model`` in its current mode (train or
    eval), with ``method``'s hooks around each step; ``scheduler`` steps once per batch.
    Returns the per-epoch mean losses (and RandBET's perturbed-pass statistics)."""
    method.start(model, scheme)
    history = TrainHistory()
    step = 0
    for epoch in range(epochs):
        losses, perturbed_losses = [], []
        for batch, (images, labels) in enumerate(batches):
            optimizer.zero_grad(set_to_none=True)
            params = method.parameters_for_step(model, step)
            logits = functional_call(model, params, (images,)) if params else model(images)
            loss = loss_fn(logits, labels)
            loss.backward()
            clean = loss.item()
            perturbed = method.after_backward(model, images, labels, loss_fn, clean, step)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            method.after_step(model)
            losses.append(clean)
            if perturbed is not None:
                perturbed_losses.append(perturbed)
            step += 1
            if on_step is not None:
                on_step(StepReport(epoch, epochs, batch, len(batches), clean))
        history.loss.append(sum(losses) / max(1, len(losses)))
        history.perturbed_loss.append(sum(perturbed_losses) / max(1, len(perturbed_losses)))
        history.perturbed_fraction.append(len(perturbed_losses) / max(1, len(losses)))
        if on_epoch is not None:
            on_epoch(epoch, history)
    return history


def train(
    model: nn.Module,
    scheme: QuantScheme,
    train_set: TensorDataset,
    config: TrainConfig,
    device: str | torch.device | None = None,
    on_epoch: OnEpoch | None = None,
    *,
    method=None,
    on_step: OnStep | None = None,
) -> TrainHistory:
    """Train ``model`` in place, quantization-aware with ``scheme``, with ``method`` (default:
    the one ``config.method`` names) and ``config``'s optimizer and schedule; returns the loss
    history and leaves the model in eval mode. Without callbacks and with ``config.progress``,
    one line per epoch goes to the ``bitrobust.train`` logger at INFO (nothing is printed)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).train()
    torch.manual_seed(config.seed)
    images, labels = train_set.tensors[0], train_set.tensors[1]
    batches = Batches(images, labels, config.batch_size, config.seed, device)
    optimizer, scheduler = make_optimizer(model, config, max(1, config.epochs * len(batches)))
    if config.progress and on_step is None and on_epoch is None:  # the library prints nothing
        log = logging.getLogger("bitrobust.train").info
        printer = TrainingPrinter(bar=False, lines=True, write=log)
        on_step, on_epoch = printer.on_step, printer.on_epoch
    history = fit(
        model,
        batches,
        method or method_from_name(config.method, config),
        optimizer,
        config.epochs,
        loss_fn=training_loss_fn(config),
        scheme=scheme,
        scheduler=scheduler,
        on_step=on_step,
        on_epoch=on_epoch,
    )
    model.eval()
    return history


def training_loss_fn(config: TrainConfig) -> LossFn:
    """Cross-entropy (with ``config.label_smoothing``), or the modified hinge loss with
    ``config.hinge_b``."""
    if config.loss == "hinge":
        if config.label_smoothing:  # TrainConfig refuses it; a config changed afterwards too
            raise BitrobustError("label smoothing applies to the cross_entropy loss, not 'hinge'")
        return lambda logits, labels: modified_hinge_loss(logits, labels, config.hinge_b)
    if config.label_smoothing:
        return partial(F.cross_entropy, label_smoothing=config.label_smoothing)
    return F.cross_entropy


def training_loss(config: TrainConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss of ``config`` (:func:`training_loss_fn`) on one batch."""
    return training_loss_fn(config)(logits, labels)


def make_optimizer(model: nn.Module, config: TrainConfig, total_steps: int):
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
