"""Binarized layers (Buschjäger et al. 2021, papers.md §3.2) and the network that holds them.

- Weights, biases and activations are binarized with ``sign``: x > 0 ↦ +1, else −1, with a
  straight-through (identity) gradient. A Hardtanh before the activation's sign gives the usual
  |x| ≤ 1 gradient clipping; the first layer sees the real-valued (normalized) image.
- :class:`BinarizedLinear` and :class:`BinarizedConv2d` declare ``quantization_scheme =
  BINARY``: their weights and biases live in the faulty memory as 1-bit codes
  (:func:`bitrobust.quant.parameter_schemes`). Their forward pass binarizes the weights itself,
  so the module is a binarized network on its own, and running it with dequantized (±1, possibly
  flipped) codes gives the same values.
- :class:`BinarizedBlock` is one layer of binarized neurons: layer → [max-pool] → batch norm →
  Hardtanh → sign. Its integer pre-activation ``a`` (after pooling) is what the batch-norm
  threshold is compared with (:mod:`bitrobust.bnn.folding`).
- :class:`BinarizedNetwork` is a sequence of stages; it declares ``quantization_scheme = None`` so
  batch norm and the final :class:`Scale` stay float, outside the faulty memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bitrobust.errors import BitrobustError
from bitrobust.quant import BINARY, straight_through


def binarize(x: torch.Tensor) -> torch.Tensor:
    """+1 where x > 0, else −1, with the identity as gradient (straight-through estimator)."""
    return straight_through(x, torch.where(x > 0, 1.0, -1.0).to(x.dtype))


class BinarizedLinear(nn.Linear):
    """``nn.Linear`` whose weight and bias are binarized to ±1 and stored as 1-bit codes."""

    quantization_scheme = BINARY

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else binarize(self.bias)
        return F.linear(x, binarize(self.weight), bias)

    @property
    def fan_in(self) -> int:
        """Inputs per neuron, the ±1 bias counted as one more input."""
        return self.in_features + (self.bias is not None)


class BinarizedConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight and bias are binarized to ±1 and stored as 1-bit codes.

    Zero padding contributes 0 to the pre-activation, so border positions have fewer effective
    inputs; the pre-activation is still an integer when the input is ±1.
    """

    quantization_scheme = BINARY

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else binarize(self.bias)
        return self._conv_forward(x, binarize(self.weight), bias)

    @property
    def fan_in(self) -> int:
        """Inputs per output value (channels × kernel area), the bias counted as one more."""
        kernel = self.kernel_size[0] * self.kernel_size[1]
        return self.in_channels // self.groups * kernel + (self.bias is not None)


class SignActivation(nn.Module):
    """Hardtanh, then sign with a straight-through gradient: ±1 outputs, gradient 1 on |x| ≤ 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return binarize(F.hardtanh(x))


class Scale(nn.Module):
    """Multiply by one learnable scalar (initialized to 1e-3) to bring integer logits to a
    usable range for the loss; it stays float."""

    def __init__(self, init: float = 1e-3) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(init)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


BinarizedLayer = BinarizedLinear | BinarizedConv2d


class BinarizedBlock(nn.Module):
    """One layer of binarized neurons: layer → [2×2 max-pool] → batch norm → Hardtanh → sign.

    The neurons are the output features (linear) or channels (conv). ``pool`` is the max-pool
    size or None; as in the reference models, pooling sits between the layer and batch norm.
    Only the layer's weight and bias are stored (as 1-bit codes); batch norm stays float.
    """

    quantization_scheme = None  # batch norm is not in the faulty memory; the layer declares BINARY

    def __init__(self, layer: BinarizedLayer, pool: int | None = None) -> None:
        super().__init__()
        if not isinstance(layer, (BinarizedLinear, BinarizedConv2d)):
            raise TypeError(f"expected a binarized layer, got {type(layer).__name__}")
        conv = isinstance(layer, BinarizedConv2d)
        if pool is not None and not conv:
            raise BitrobustError("max-pooling needs a convolutional layer")
        self.layer = layer
        self.pool = nn.MaxPool2d(pool) if pool else nn.Identity()
        neurons = layer.out_channels if conv else layer.out_features
        self.norm = nn.BatchNorm2d(neurons) if conv else nn.BatchNorm1d(neurons)
        self.activation = SignActivation()

    @property
    def neurons(self) -> int:
        return self.norm.num_features

    @property
    def fan_in(self) -> int:
        return self.layer.fan_in

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """``a``: the layer's output after pooling, before batch norm (integer for ±1 input)."""
        return self.pool(self.layer(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.norm(self.pre_activation(x)))


class BinarizedNetwork(nn.Module):
    """A binarized classifier as a sequence of stages (``self.layers``), run in order.

    Stages are the input normalization, reshapes, :class:`BinarizedBlock` s, the binarized
    output layer and :class:`Scale`. Only the binarized layers' weights and biases are stored
    (as 1-bit codes); everything else stays float.
    """

    quantization_scheme = None  # BN and Scale are not in the faulty memory

    def __init__(self, stages: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def blocks(self) -> Iterator[tuple[int, BinarizedBlock]]:
        """(stage index, block) of every binarized block, in order."""
        for index, stage in enumerate(self.layers):
            if isinstance(stage, BinarizedBlock):
                yield index, stage


def is_binarized(model: nn.Module) -> bool:
    """Whether ``model`` holds any parameter stored as a binary (1-bit sign) code."""
    return any(
        getattr(module, "quantization_scheme", None) is not None
        and module.quantization_scheme.binary
        for module in model.modules()
    )


def check_binarized_network(model: nn.Module, what: str = "this") -> BinarizedNetwork:
    """``model`` if it is a :class:`BinarizedNetwork` with at least one block, else raise."""
    if not isinstance(model, BinarizedNetwork):
        raise BitrobustError(
            f"{what} needs a binarized network (e.g. bnn-mlp, vgg3, vgg7), "
            f"got {type(model).__name__}"
        )
    if not any(True for _ in model.blocks()):
        raise BitrobustError(f"{what} needs binarized neurons with batch norm; the model has none")
    return model
