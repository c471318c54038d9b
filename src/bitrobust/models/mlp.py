"""Multi-layer perceptron on flattened images: the smallest model for CPU-scale experiments."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bitrobust.errors import BitrobustError
from bitrobust.models.layers import Normalize, check_norm, check_positive_int, make_norm


class MLP(nn.Module):
    """Normalize → flatten → (Linear → norm → ReLU) per hidden layer → Linear.

    ``hidden`` lists the hidden widths (``[]`` gives a linear classifier). ``norm`` defaults to
    ``"none"``; ``"regn"`` puts a reparameterized group norm after each hidden linear layer.
    Weights use PyTorch's default initialization.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        image_size: int,
        num_classes: int,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
        hidden: Sequence[int] = (1024, 1024),
        norm: str = "none",
    ) -> None:
        super().__init__()
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise BitrobustError(f"hidden must be a list of positive integers, got {hidden!r}")
        widths = [check_positive_int(width, "each hidden width") for width in hidden]
        check_norm(norm)

        self.normalize = Normalize(input_mean, input_std)
        layers: list[nn.Module] = [nn.Flatten()]
        features = in_channels * image_size * image_size
        for width in widths:
            layers += [nn.Linear(features, width), make_norm(norm, width), nn.ReLU()]
            features = width
        layers.append(nn.Linear(features, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.normalize(x))
