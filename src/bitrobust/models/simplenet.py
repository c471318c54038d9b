"""SimpleNet as used by Stutz et al. (papers.md §1.6), re-implemented from the description.

With ``width`` c = 64 (the paper's models) and CIFAR-10 inputs the network has 5,498,378
parameters: conv weights 5,482,176, conv biases 4,544, group-norm parameters 9,088 and the final
linear layer 2,570. CPU-scale experiments use the default c = 16.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bitrobust.models.layers import (
    Normalize,
    check_norm,
    check_positive_int,
    kaiming_init,
    make_norm,
)

POOL = "pool"

#: The layer plan as (channels in multiples of c, kernel size), with POOL for a 2×2 max pool.
PLAN: tuple[tuple[int, int] | str, ...] = (
    (1, 3), (2, 3), (2, 3), (2, 3), POOL,
    (2, 3), (2, 3), (4, 3), POOL,
    (4, 3), (4, 3), POOL,
    (8, 3), POOL,
    (32, 1), (4, 1), POOL,
    (4, 3),
)  # fmt: skip


class SimpleNet(nn.Module):
    """13 conv → norm → ReLU blocks with 5 max pools, a global max pool and one linear layer.

    Pools that would shrink the spatial size below 1 are skipped (one on 28×28 MNIST, two on
    8×8 digits), so every input size keeps the full depth. All layers have biases; conv and
    linear weights are Kaiming-normal, biases zero. ``norm`` is ``"regn"`` by default, with
    the authors' group rule; reduced widths need ``min_group_channels = 8`` (see
    :func:`~bitrobust.models.layers.group_count`).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        num_classes: int,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
        width: int = 16,
        norm: str = "regn",
        min_group_channels: int = 2,
    ) -> None:
        super().__init__()
        check_positive_int(width, "width")
        check_positive_int(min_group_channels, "min_group_channels")
        check_norm(norm)

        self.normalize = Normalize(input_mean, input_std)
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for step in PLAN:
            if step == POOL:
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            factor, kernel = step
            out_channels = factor * width
            layers += [
                nn.Conv2d(channels, out_channels, kernel, padding=kernel // 2),
                make_norm(norm, out_channels, min_group_channels),
                nn.ReLU(),
            ]
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten()  # a child, so evaluation can start mid-network (a chain)
        self.classifier = nn.Linear(channels, num_classes)
        kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.features(self.normalize(x)))
        return self.classifier(self.flatten(features))
