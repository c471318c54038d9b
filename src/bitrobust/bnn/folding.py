"""Batch-norm threshold folding: BN + Hardtanh + sign of a binarized neuron is ``a`` vs ``τ``.

With running statistics, BN gives y = γ (a − μ) / √(σ² + ε) + β, and Hardtanh keeps the sign,
so the neuron outputs +1 iff y > 0 (papers.md §3.3):

- γ > 0: +1 iff a > τ, with τ = μ − β √(σ² + ε) / γ;
- γ < 0: +1 iff a < τ (the comparison flips);
- γ = 0: the constant sign(β) (+1 iff β > 0), whatever a is.

A tie (y = 0) gives −1 in both the unfolded and the folded form. Thresholds are computed in
float64, so for integer pre-activations the comparison is exact; the unfolded BN rounds in
float32 and can only disagree when y is within float32 rounding of 0. Pooling between the
layer and BN is kept: the threshold applies to the pooled pre-activation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from bitrobust.bnn.layers import BinarizedBlock, BinarizedNetwork, check_binarized_network


@dataclass(frozen=True)
class Thresholds:
    """Per-neuron folded batch norm: ``tau`` (float64), ``direction`` (+1, −1, or 0 for
    constant neurons) and ``constant`` (the ±1 output of constant neurons)."""

    tau: torch.Tensor
    direction: torch.Tensor
    constant: torch.Tensor

    def apply(self, pre_activation: torch.Tensor) -> torch.Tensor:
        """±1 outputs (dtype of the input) for pre-activations of shape (N, C) or (N, C, H, W)."""
        shape = (1, -1) + (1,) * (pre_activation.dim() - 2)
        a = pre_activation.to(torch.float64)
        tau = self.tau.to(a.device).view(shape)
        direction = self.direction.to(a.device).view(shape)
        constant = self.constant.to(a.device).view(shape) > 0
        positive = torch.where(direction > 0, a > tau, a < tau)
        positive = torch.where(direction == 0, constant, positive)
        return torch.where(positive, 1.0, -1.0).to(pre_activation.dtype)

    def margin(self, pre_activation: torch.Tensor) -> torch.Tensor:
        """|a − τ| (float64, same shape); +inf for constant neurons, which no flip changes."""
        shape = (1, -1) + (1,) * (pre_activation.dim() - 2)
        a = pre_activation.to(torch.float64)
        distance = (a - self.tau.to(a.device).view(shape)).abs()
        constant = self.direction.to(a.device).view(shape) == 0
        return torch.where(constant, torch.full_like(distance, float("inf")), distance)


def fold_batch_norm(norm: nn.BatchNorm1d | nn.BatchNorm2d) -> Thresholds:
    """The thresholds equivalent to ``norm`` (eval mode, running statistics) followed by sign."""
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError("batch norm without running statistics cannot be folded")
    mean = norm.running_mean.detach().to(torch.float64)
    std = torch.sqrt(norm.running_var.detach().to(torch.float64) + norm.eps)
    if norm.affine:
        gamma = norm.weight.detach().to(torch.float64)
        beta = norm.bias.detach().to(torch.float64)
    else:
        gamma, beta = torch.ones_like(mean), torch.zeros_like(mean)
    direction = torch.sign(gamma).to(torch.int8)
    safe_gamma = torch.where(gamma == 0, torch.ones_like(gamma), gamma)
    tau = torch.where(gamma == 0, torch.zeros_like(mean), mean - beta * std / safe_gamma)
    constant = torch.where(beta > 0, 1, -1).to(torch.int8)
    return Thresholds(tau=tau.cpu(), direction=direction.cpu(), constant=constant.cpu())


class FoldedBlock(nn.Module):
    """A :class:`BinarizedBlock` with BN + Hardtanh + sign replaced by threshold comparisons."""

    def __init__(self, block: BinarizedBlock) -> None:
        super().__init__()
        self.layer = block.layer
        self.pool = block.pool
        self.thresholds = fold_batch_norm(block.norm)

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.layer(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.thresholds.apply(self.pre_activation(x))


def fold_network(model: nn.Module) -> BinarizedNetwork:
    """A copy of a binarized network with every block's batch norm folded into thresholds.

    In eval mode it computes the same outputs as ``model`` (which is left unchanged).
    """
    folded = copy.deepcopy(check_binarized_network(model, "folding")).eval()
    for index, block in list(folded.blocks()):
        folded.layers[index] = FoldedBlock(block)
    return folded
