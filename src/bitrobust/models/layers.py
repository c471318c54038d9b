"""Building blocks shared by the models: input normalization and clipping-friendly group norm.

Two design points come from Stutz et al. (papers.md §1.3, §1.6):

* The input whitening layer is *frozen*: mean and std are buffers, not parameters, because every
  trainable parameter gets quantized, clipped and hit by bit errors, and the input statistics
  must not be.
* Weight clipping projects *all* trainable parameters onto [-w_max, w_max]. A normalization scale
  near 1 would be destroyed by w_max = 0.1, so :class:`ReparameterizedGroupNorm` stores the scale
  as ``1 + weight`` and clipping only limits the deviation from 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bitrobust.errors import BitrobustError

#: Normalization kinds accepted by the ``norm`` option of the models.
NORMS = ("none", "regn", "gn")

#: Group counts tried, in order, by :func:`group_count`.
GROUP_CANDIDATES = (32, 24, 16, 8)


class Normalize(nn.Module):
    """Frozen per-channel input normalization ``(x - mean) / std``; identity without statistics.

    ``mean`` and ``std`` are stored as buffers of shape (1, C, 1, 1), so they travel with the
    state dict but are never trained, quantized or perturbed.
    """

    mean: torch.Tensor | None
    std: torch.Tensor | None

    def __init__(
        self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
    ) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise BitrobustError("input_mean and input_std must be given together")
        if mean is None or std is None:
            self.register_buffer("mean", None)
            self.register_buffer("std", None)
            return
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32)
        std_t = torch.as_tensor(list(std), dtype=torch.float32)
        if mean_t.ndim != 1 or mean_t.shape != std_t.shape or mean_t.numel() == 0:
            raise BitrobustError(
                f"input_mean and input_std need one value per channel, got {list(mean)} and "
                f"{list(std)}"
            )
        if not bool(torch.all(std_t > 0)):
            raise BitrobustError(f"input_std must be positive, got {list(std)}")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1))
        self.register_buffer("std", std_t.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is None or self.std is None:
            return x
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        if self.mean is None or self.std is None:
            return "identity"
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class ReparameterizedGroupNorm(nn.Module):
    """Group norm whose affine scale is ``1 + weight``; weight and bias start at 0.

    At initialization it equals ``nn.GroupNorm(num_groups, num_channels, affine=False)``.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        if num_groups < 1 or num_channels % num_groups != 0:
            raise ValueError(f"{num_channels} channels cannot be split into {num_groups} groups")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_groups, 1 + self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}"


def group_count(
    channels: int, candidates: Sequence[int] = GROUP_CANDIDATES, min_group_channels: int = 2
) -> int:
    """Number of group-norm groups for ``channels``, following the authors' rule.

    The first candidate (32, 24, 16, 8), each capped at ``channels // min_group_channels``, that
    divides ``channels``; 1 if none does. With the authors' cap of 2 channels per group:
    64 → 32, 80 → 16, 48 → 24, 40 → 20 (the cap applies before the divisibility test),
    16 → 8, 6 → 3, 7 → 1, 1 → 1. Narrow networks need a larger ``min_group_channels``: where
    a feature map is 1×1, a group of 2 channels normalizes 2 numbers and passes on little more
    than their order (SimpleNet with c = 8 does not learn CIFAR-10 then; with 8 it does).
    """
    cap = channels // min_group_channels
    for candidate in candidates:
        groups = min(candidate, cap)
        if groups >= 1 and channels % groups == 0:
            return groups
    return 1


def make_norm(kind: str, channels: int, min_group_channels: int = 2) -> nn.Module:
    """The normalization layer for ``channels`` features: ``none``, ``regn`` or ``gn``, with
    :func:`group_count` groups.

    ``regn`` is :class:`ReparameterizedGroupNorm` (the paper's choice); ``gn`` is a plain affine
    ``nn.GroupNorm`` with the same group count, kept for the "clipping cripples normalization"
    ablation; ``none`` is the identity.
    """
    if kind == "none":
        return nn.Identity()
    if kind == "regn":
        return ReparameterizedGroupNorm(
            group_count(channels, GROUP_CANDIDATES, min_group_channels), channels
        )
    if kind == "gn":
        return nn.GroupNorm(group_count(channels, GROUP_CANDIDATES, min_group_channels), channels)
    raise BitrobustError(f"unknown norm {kind!r}; known: {', '.join(NORMS)}")


def check_norm(kind: object) -> str:
    """Return ``kind`` if it is a known normalization name, else raise :class:`BitrobustError`."""
    if not isinstance(kind, str) or kind not in NORMS:
        raise BitrobustError(f"norm must be one of {', '.join(NORMS)}, got {kind!r}")
    return kind


def check_positive_int(value: object, name: str) -> int:
    """Return ``value`` if it is a positive integer (not a bool), else raise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BitrobustError(f"{name} must be a positive integer, got {value!r}")
    return value


def pooled_size(size: int) -> int:
    """Spatial size after a 2×2 max pool, or ``size`` unchanged if pooling would reach 0."""
    return size // 2 if size >= 2 else size


def kaiming_init(module: nn.Module) -> None:
    """Kaiming-normal (fan-in, ReLU) weights and zero biases for every conv and linear layer."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
