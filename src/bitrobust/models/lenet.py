"""LeNet-5 style CNN, sized for 28×28 (MNIST), 32×32 (CIFAR) and 8×8 (scikit-learn digits)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bitrobust.models.layers import Normalize, check_norm, make_norm, pooled_size


def conv_paddings(image_size: int) -> tuple[int, int]:
    """Paddings of the two 5×5 convolutions for square inputs of side ``image_size``.

    The classic network sees 32×32 inputs: conv 32→28, pool →14, conv →10, pool →5. A conv is
    padded by 2 (keeping its input size) when its input is smaller than in the classic network
    (32 for the first conv, 14 for the second). So 28×28 MNIST gets the usual padding 2 on the
    first conv only (28→28→14→10→5) and 8×8 digits get padding 2 on both (8→8→4→4→2, 64
    features) instead of collapsing to nothing.
    """
    first = 0 if image_size >= 32 else 2
    second = 0 if pooled_size(image_size - 4 + 2 * first) >= 14 else 2
    return first, second


class LeNet5(nn.Module):
    """conv5×5(6) → norm → ReLU → pool → conv5×5(16) → norm → ReLU → pool → fc120 → fc84 → fc.

    ``norm`` is ``"regn"`` (default: reparameterized group norm after each conv), ``"gn"`` or
    ``"none"``. Pools are skipped when the spatial size is already 1. Weights use PyTorch's
    default initialization.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        num_classes: int,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
        norm: str = "regn",
    ) -> None:
        super().__init__()
        check_norm(norm)

        self.normalize = Normalize(input_mean, input_std)
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for out_channels, padding in zip((6, 16), conv_paddings(image_size), strict=True):
            layers += [
                nn.Conv2d(channels, out_channels, 5, padding=padding),
                make_norm(norm, out_channels),
                nn.ReLU(),
            ]
            channels, size = out_channels, size - 4 + 2 * padding
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * size * size, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))
