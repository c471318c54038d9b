"""Bit error tolerance metrics of binarized networks (Buschjäger et al. 2021, papers.md §3.3).

Pure functions of a :class:`~bitrobust.bnn.layers.BinarizedNetwork` (eval mode, clean weights)
and data. "Neurons" are the binarized outputs of the blocks (features, or channels of a conv
block); the output layer has no threshold and is not included.

- Neuron-level metric (NLM), :func:`neuron_margins`: the margin m = |a − τ| of each
  pre-activation to its folded batch-norm threshold, for every example (and position of a conv
  output). One weight flip moves ``a`` by at most 2 (exactly ±2 for ±1 inputs), so a neuron's
  output survives any k flips of its weights when m > 2k: it tolerates ⌈m/2⌉ − 1 flips. For the
  first layer, whose input is real, one flip moves ``a`` by at most 2·max(|x|, 1 if biased) and
  the count uses that bound. Also reported normalized by the fan-in (the ±1 bias counts as an
  input), so that layers of different width are comparable.
- Inter-neuron metric (INM), :func:`neuron_importance`: the importance of a neuron is the drop
  in accuracy (and the rise in loss) when its output is flipped for every example ("flip"), or
  the first-order estimate E_x |∂L/∂o · o| ("gradient"); the INM of a layer is the variance of
  its neurons' importances. A chunk of neurons is flipped as one batch, its logits computed
  incrementally from the clean pass (:mod:`bitrobust.bnn.flips`: the same values as running the
  flipped copies, a fraction of the cost); ``max_neurons`` evaluates a random subsample of a
  large layer.
- :func:`correlations`: rank correlation (:func:`bitrobust.stats.spearman`) of each metric with
  the accuracy under bit errors across a set of models.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bitrobust.bnn.flips import flipped_logits_function
from bitrobust.bnn.folding import fold_batch_norm
from bitrobust.bnn.layers import (
    BinarizedBlock,
    BinarizedConv2d,
    check_binarized_network,
)
from bitrobust.errors import BitrobustError
from bitrobust.evaluate import accuracy as shared_accuracy
from bitrobust.names import IMPORTANCE_METHODS
from bitrobust.stats import spearman

HISTOGRAM_BINS = 50
HISTOGRAM_MAX = 0.5
"""The normalized-margin histogram has HISTOGRAM_BINS bins over [0, HISTOGRAM_MAX] (margins of
hidden neurons are mostly below 0.3 of the fan-in); larger margins count in the last bin."""


@dataclass(frozen=True)
class LayerMargins:
    """Margins of one block's neurons over all examples (and positions), constant neurons
    (γ = 0, output independent of ``a``) left out."""

    layer: str
    description: str
    neurons: int
    fan_in: int
    margins: torch.Tensor  # |a − τ|, float32, flat
    tolerable_flips: torch.Tensor  # int64, flat, same order
    constant_neurons: int

    def summary(self, bins: int = HISTOGRAM_BINS) -> dict:
        """Means, medians and the histogram of normalized margins (JSON-ready)."""
        count = self.margins.numel()
        normalized = self.margins.double() / self.fan_in
        top = HISTOGRAM_MAX
        histogram = torch.histc(normalized.clamp(max=top).float(), bins=bins, min=0.0, max=top)
        return {
            "layer": self.layer,
            "description": self.description,
            "neurons": self.neurons,
            "fan_in": self.fan_in,
            "values": count,
            "constant_neurons": self.constant_neurons,
            "margin_mean": _mean(self.margins),
            "margin_median": _median(self.margins),
            "margin_normalized_mean": _mean(normalized),
            "margin_tolerable_flips_mean": _mean(self.tolerable_flips),
            "margin_tolerable_flips_median": _median(self.tolerable_flips),
            "margin_zero_flips_fraction": _mean(self.tolerable_flips == 0),
            "margin_histogram": (histogram / max(count, 1)).tolist(),
            "margin_histogram_max": HISTOGRAM_MAX,
        }


@dataclass(frozen=True)
class LayerImportance:
    """Importance of (a subsample of) one block's neurons: ``importance`` is the accuracy drop
    ("flip") or E|∂L/∂o·o| ("gradient"); ``loss_increase`` the mean loss rise ("flip" only)."""

    layer: str
    method: str
    neurons: torch.Tensor  # indices of the evaluated neurons
    importance: torch.Tensor  # float64, one per evaluated neuron
    loss_increase: torch.Tensor | None = None

    def summary(self) -> dict:
        """Mean and variance (over neurons) of the importances, also normalized by Σ|I|."""
        total = float(self.importance.abs().sum())
        normalized = self.importance / total if total > 0 else None
        result = {
            "importance_method": self.method,
            "importance_neurons": int(self.neurons.numel()),
            "importance_mean": _mean(self.importance),
            "importance_variance": _variance(self.importance),
            "importance_normalized_variance": _variance(normalized),
        }
        if self.loss_increase is not None:
            result["importance_loss_mean"] = _mean(self.loss_increase)
            result["importance_loss_variance"] = _variance(self.loss_increase)
        return result


@torch.no_grad()
def neuron_margins(
    model: torch.nn.Module, images: torch.Tensor, batch_size: int = 500
) -> dict[str, LayerMargins]:
    """Margins |a − τ| and tolerable weight flips of every block's neurons on ``images``."""
    network = check_binarized_network(model, "margin metrics")
    network.eval()
    device = _device(network)
    blocks = dict(network.blocks())
    thresholds = {index: fold_batch_norm(block.norm) for index, block in blocks.items()}
    margins: dict[int, list[torch.Tensor]] = {index: [] for index in blocks}
    flips: dict[int, list[torch.Tensor]] = {index: [] for index in blocks}
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        for index, stage in enumerate(network.layers):
            if index not in blocks:
                x = stage(x)
                continue
            block = blocks[index]
            a = block.pre_activation(x)
            margin = thresholds[index].margin(a)
            per_flip = _per_flip_bound(block, x).view((-1,) + (1,) * (a.dim() - 1))
            tolerable = torch.ceil(margin / per_flip) - 1
            tolerable = tolerable.clamp(0, block.fan_in)  # cannot flip more than all its weights
            finite = torch.isfinite(margin)
            margins[index].append(margin[finite].float().cpu())
            flips[index].append(tolerable[finite].long().cpu())
            x = block.activation(block.norm(a))
    return {
        _name(index): LayerMargins(
            layer=_name(index),
            description=describe(block),
            neurons=block.neurons,
            fan_in=block.fan_in,
            margins=torch.cat(margins[index]) if margins[index] else torch.empty(0),
            tolerable_flips=(
                torch.cat(flips[index]) if flips[index] else torch.empty(0, dtype=torch.long)
            ),
            constant_neurons=int((thresholds[index].direction == 0).sum()),
        )
        for index, block in blocks.items()
    }


def neuron_importance(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    method: str = "flip",
    max_neurons: int | None = None,
    seed: int = 0,
    batch_size: int = 500,
    flip_batch: int = 8192,
) -> dict[str, LayerImportance]:
    """Importance of each block's neurons on (``images``, ``labels``); see the module docstring.

    ``max_neurons`` caps the neurons evaluated per layer ("flip" only; a seeded random subset);
    ``flip_batch`` caps the examples per forward pass of the flipped copies.
    """
    network = check_binarized_network(model, "importance metrics")
    if method not in IMPORTANCE_METHODS:
        raise BitrobustError(
            f"unknown importance method {method!r} (choose from: {', '.join(IMPORTANCE_METHODS)})"
        )
    if len(images) == 0 or len(images) != len(labels):
        raise BitrobustError("importance needs a non-empty set of images with one label each")
    if max_neurons is not None and max_neurons < 1:
        raise BitrobustError(f"max_neurons must be >= 1, got {max_neurons}")
    network.eval()
    if method == "gradient":
        return _gradient_importance(network, images, labels, batch_size)
    return _flip_importance(network, images, labels, max_neurons, seed, batch_size, flip_batch)


@torch.no_grad()
def _flip_importance(network, images, labels, max_neurons, seed, batch_size, flip_batch):
    device = _device(network)
    blocks = dict(network.blocks())
    chosen = _chosen_neurons(blocks, max_neurons, seed)
    flippers = {index: flipped_logits_function(network, index) for index in blocks}
    correct = {index: torch.zeros(len(chosen[index]), dtype=torch.float64) for index in blocks}
    losses = {index: torch.zeros(len(chosen[index]), dtype=torch.float64) for index in blocks}
    clean_correct = clean_loss = 0.0
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        y = labels[start : start + batch_size].to(device)
        outputs = {}
        for index, stage in enumerate(network.layers):
            x = stage(x)
            if index in blocks:
                outputs[index] = x
        clean_correct += float((x.argmax(1) == y).sum())
        clean_loss += float(F.cross_entropy(x, y, reduction="sum"))
        for index, output in outputs.items():
            neurons = chosen[index]
            chunk = max(1, flip_batch // len(y))
            flipped = flippers[index](output)
            for first in range(0, len(neurons), chunk):
                group = neurons[first : first + chunk].to(device)
                logits = flipped(group)
                hits = (logits.argmax(-1) == y).sum(1).double().cpu()
                loss = F.cross_entropy(
                    logits.flatten(0, 1), y.repeat(len(group)), reduction="none"
                ).view(len(group), len(y))
                correct[index][first : first + len(group)] += hits
                losses[index][first : first + len(group)] += loss.sum(1).double().cpu()
    total = len(images)
    return {
        _name(index): LayerImportance(
            layer=_name(index),
            method="flip",
            neurons=chosen[index],
            importance=(clean_correct - correct[index]) / total,
            loss_increase=(losses[index] - clean_loss) / total,
        )
        for index in blocks
    }


def _chosen_neurons(
    blocks: Mapping[int, BinarizedBlock], max_neurons: int | None, seed: int
) -> dict[int, torch.Tensor]:
    """The neurons evaluated per block: all, or a seeded random ``max_neurons`` (sorted)."""
    generator = torch.Generator().manual_seed(seed)
    chosen = {}
    for index, block in blocks.items():
        count = block.neurons
        if max_neurons is not None and count > max_neurons:
            chosen[index] = torch.randperm(count, generator=generator)[:max_neurons].sort().values
        else:
            chosen[index] = torch.arange(count)
    return chosen


def _gradient_importance(network, images, labels, batch_size):
    device = _device(network)
    blocks = dict(network.blocks())
    sums = {
        index: torch.zeros(block.neurons, dtype=torch.float64) for index, block in blocks.items()
    }
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        y = labels[start : start + batch_size].to(device)
        with torch.enable_grad():
            outputs = {}
            for index, stage in enumerate(network.layers):
                x = stage(x)
                if index in blocks:
                    outputs[index] = x
            loss = F.cross_entropy(x, y, reduction="sum")
            grads = torch.autograd.grad(loss, list(outputs.values()))
        for (index, output), grad in zip(outputs.items(), grads):
            contribution = (grad * output).detach()
            if contribution.dim() > 2:  # conv: a channel's output is all its positions
                contribution = contribution.flatten(2).sum(2)
            sums[index] += contribution.abs().sum(0).double().cpu()
    return {
        _name(index): LayerImportance(
            layer=_name(index),
            method="gradient",
            neurons=torch.arange(blocks[index].neurons),
            importance=sums[index] / len(images),
        )
        for index in blocks
    }


def bnn_metrics(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    importance: str | None = "flip",
    max_neurons: int | None = None,
    seed: int = 0,
    batch_size: int = 500,
) -> dict:
    """Clean accuracy and, per block, the margin and importance summaries (JSON-ready).

    ``importance=None`` skips the importance metric. ``"model"`` holds the mean over layers of
    every numeric per-layer metric, for correlating models with one number each.
    """
    network = check_binarized_network(model, "BNN metrics")
    margins = neuron_margins(network, images, batch_size)
    importances = (
        {}
        if importance is None
        else neuron_importance(network, images, labels, importance, max_neurons, seed, batch_size)
    )
    layers = []
    for name, layer_margins in margins.items():
        row = layer_margins.summary()
        if name in importances:
            row.update(importances[name].summary())
        layers.append(row)
    keys = [
        key
        for key, value in layers[0].items()
        if (isinstance(value, float) or value is None) and not key.startswith("margin_histogram")
    ]
    aggregate = {key: _mean_of([row[key] for row in layers]) for key in keys}
    return {
        "examples": len(images),
        "accuracy": accuracy(network, images, labels, batch_size),
        "layers": layers,
        "model": aggregate,
    }


def accuracy(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500
) -> float:
    """Fraction of ``images`` that ``model`` (eval mode, its own weights) classifies right:
    :func:`bitrobust.evaluate.accuracy` in this module's batches of 500."""
    return shared_accuracy(model, images, labels, batch_size)


def correlations(
    metrics: Sequence[Mapping[str, object]], accuracies: Sequence[float]
) -> dict[str, float | None]:
    """Spearman correlation, across models, of every numeric metric (key) that all models
    report with the models' accuracies (e.g. under a bit error rate); None where it is
    undefined (fewer than 3 models, or a constant side: :func:`bitrobust.stats.spearman`)."""
    if len(metrics) != len(accuracies):
        raise ValueError("one accuracy per model needed")
    if not metrics:
        return {}
    keys = [k for k in metrics[0] if all(_is_number(m.get(k)) for m in metrics)]
    return {key: spearman([float(m[key]) for m in metrics], accuracies) for key in keys}


def describe(block: BinarizedBlock) -> str:
    """A short human description, e.g. ``conv3x3 1→64, maxpool2`` or ``linear 784→2048``."""
    layer = block.layer
    if isinstance(layer, BinarizedConv2d):
        text = f"conv{layer.kernel_size[0]}x{layer.kernel_size[1]} "
        text += f"{layer.in_channels}→{layer.out_channels}"
        if isinstance(block.pool, torch.nn.MaxPool2d):
            text += f", maxpool{block.pool.kernel_size}"
        return text
    return f"linear {layer.in_features}→{layer.out_features}"


def _per_flip_bound(block: BinarizedBlock, x: torch.Tensor) -> torch.Tensor:
    """Per example: the most one weight (or bias) flip can move a pre-activation, 2·max|x|."""
    largest = x.detach().abs().flatten(1).amax(1).double()
    if block.layer.bias is not None:
        largest = largest.clamp(min=1.0)
    return (2 * largest).clamp(min=1e-12)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _name(index: int) -> str:
    return f"layers.{index}"


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _mean(values: torch.Tensor | None) -> float | None:
    if values is None or values.numel() == 0:
        return None
    return float(values.double().mean())


def _median(values: torch.Tensor) -> float | None:
    return None if values.numel() == 0 else float(values.double().median())


def _variance(values: torch.Tensor | None) -> float | None:
    if values is None or values.numel() == 0:
        return None
    return float(values.double().var(unbiased=False))


def _mean_of(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None]
    return sum(finite) / len(finite) if finite else None
