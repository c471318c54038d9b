"""CIFAR-style ResNet-20 (He et al. 2016) with reparameterized group norm instead of batch norm.

Batch norm's running statistics interact badly with bit errors (papers.md §1.6), so every norm
layer is a :class:`~bitrobust.models.layers.ReparameterizedGroupNorm` by default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bitrobust.errors import BitrobustError
from bitrobust.models.layers import Normalize, check_norm, kaiming_init, make_norm

SHORTCUTS = ("conv", "pad")


class BasicBlock(nn.Module):
    """conv3×3 → norm → ReLU → conv3×3 → norm, plus the shortcut, then ReLU.

    When the shape changes, the shortcut is a strided 1×1 conv + norm (``"conv"``, He et al.'s
    option B) or a parameter-free subsample with zero-padded channels (``"pad"``, option A).
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, norm: str, shortcut: str
    ) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=bias)
        self.norm1 = make_norm(norm, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=bias)
        self.norm2 = make_norm(norm, out_channels)
        self.stride = stride
        self.extra_channels = out_channels - in_channels
        self.shortcut: nn.Module | None = None
        changes_shape = stride != 1 or in_channels != out_channels
        if changes_shape and shortcut == "conv":
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=bias),
                make_norm(norm, out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self._shortcut(x))

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is not None:
            return self.shortcut(x)
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels > 0:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x


class ResNet20(nn.Module):
    """conv3×3 stem, 3 stages × 3 basic blocks (16/32/64 × ``width`` channels), global average
    pool, linear. Stages 2 and 3 halve the spatial size with stride 2.

    Options: ``width`` multiplier (positive number, default 1), ``norm`` (default ``"regn"``),
    ``shortcut`` (``"conv"`` default, or ``"pad"``). Conv biases are only used without norm.
    Kaiming-normal initialization.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        num_classes: int,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
        width: float = 1,
        norm: str = "regn",
        shortcut: str = "conv",
    ) -> None:
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
            raise BitrobustError(f"width must be a positive number, got {width!r}")
        check_norm(norm)
        if shortcut not in SHORTCUTS:
            raise BitrobustError(
                f"shortcut must be one of {', '.join(SHORTCUTS)}, got {shortcut!r}"
            )
        widths = [max(1, round(base * width)) for base in (16, 32, 64)]

        self.normalize = Normalize(input_mean, input_std)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=norm == "none"),
            make_norm(norm, widths[0]),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        channels = widths[0]
        for stage, out_channels in enumerate(widths):
            for index in range(3):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(channels, out_channels, stride, norm, shortcut))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.blocks(self.stem(self.normalize(x))))
        return self.classifier(features.flatten(1))
