"""Binarized networks of Buschjäger et al. 2021 (papers.md §3.2), registered as ``bnn-mlp``,
``vgg3`` and ``vgg7``.

Every hidden layer is a :class:`~bitrobust.bnn.layers.BinarizedBlock` (binarized conv or linear
→ [2×2 max-pool] → batch norm → Hardtanh → sign); the output layer is a binarized linear layer
followed by a learnable :class:`~bitrobust.bnn.layers.Scale`. The input is normalized and stays
real-valued. Weights and biases are stored as 1-bit codes; batch norm and Scale stay float.

- ``bnn-mlp`` (the paper's Fashion-MNIST FC net): 784 → 2048 → 2048 → 10.
- ``vgg3`` (Fashion-MNIST CNN): conv64 → pool → conv64 → pool → fc2048 → fc10.
- ``vgg7`` (CIFAR-10): conv128, conv128 → pool, conv256, conv256 → pool, conv512, conv512 →
  pool, fc1024 → fc10.

The widths are options, so tests and quick studies can build small versions.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from bitrobust.bnn.layers import (
    BinarizedBlock,
    BinarizedConv2d,
    BinarizedLinear,
    BinarizedNetwork,
    Scale,
)
from bitrobust.errors import BitrobustError
from bitrobust.models.layers import Normalize, check_positive_int


def bnn_mlp(
    *,
    in_channels: int,
    image_size: int,
    num_classes: int,
    input_mean: Sequence[float] | None = None,
    input_std: Sequence[float] | None = None,
    hidden: Sequence[int] = (2048, 2048),
    bias: bool = True,
) -> BinarizedNetwork:
    """Normalize → flatten → one binarized block per hidden width → binarized linear → Scale."""
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence) or not hidden:
        raise BitrobustError(f"hidden must be a non-empty list of widths, got {hidden!r}")
    widths = [check_positive_int(width, "each hidden width") for width in hidden]
    _check_bias(bias)
    stages: list[nn.Module] = [Normalize(input_mean, input_std), nn.Flatten()]
    features = in_channels * image_size * image_size
    for width in widths:
        stages.append(BinarizedBlock(BinarizedLinear(features, width, bias=bias)))
        features = width
    stages += [BinarizedLinear(features, num_classes, bias=bias), Scale()]
    return BinarizedNetwork(stages)


def vgg3(
    *,
    in_channels: int,
    image_size: int,
    num_classes: int,
    input_mean: Sequence[float] | None = None,
    input_std: Sequence[float] | None = None,
    channels: int = 64,
    hidden: int = 2048,
    bias: bool = True,
) -> BinarizedNetwork:
    """Two conv3x3 → maxpool blocks of ``channels``, one linear block of ``hidden``, output."""
    return _vgg(
        in_channels, image_size, num_classes, input_mean, input_std,
        convs=[(channels, True), (channels, True)], hidden=hidden, bias=bias,
    )  # fmt: skip


def vgg7(
    *,
    in_channels: int,
    image_size: int,
    num_classes: int,
    input_mean: Sequence[float] | None = None,
    input_std: Sequence[float] | None = None,
    width: int = 128,
    hidden: int = 1024,
    bias: bool = True,
) -> BinarizedNetwork:
    """Conv widths w, w, 2w, 2w, 4w, 4w with a max-pool after every second; then fc blocks."""
    w = check_positive_int(width, "width")
    convs = [(w, False), (w, True), (2 * w, False), (2 * w, True), (4 * w, False), (4 * w, True)]
    return _vgg(
        in_channels, image_size, num_classes, input_mean, input_std,
        convs=convs, hidden=hidden, bias=bias,
    )  # fmt: skip


def _vgg(
    in_channels: int,
    image_size: int,
    num_classes: int,
    input_mean: Sequence[float] | None,
    input_std: Sequence[float] | None,
    *,
    convs: list[tuple[int, bool]],
    hidden: int,
    bias: bool,
) -> BinarizedNetwork:
    """Conv3x3 blocks given as ``(out_channels, pooled)``, flatten, one linear block of
    ``hidden`` and the output layer."""
    check_positive_int(hidden, "hidden")
    for out_channels, _ in convs:
        check_positive_int(out_channels, "channels")
    _check_bias(bias)
    pools = sum(pooled for _, pooled in convs)
    if image_size < 2**pools:
        raise BitrobustError(f"this model needs images of at least {2**pools} pixels")
    stages: list[nn.Module] = [Normalize(input_mean, input_std)]
    channels, size = in_channels, image_size
    for out_channels, pooled in convs:
        pool = 2 if pooled else None
        conv = BinarizedConv2d(channels, out_channels, 3, padding=1, bias=bias)
        stages.append(BinarizedBlock(conv, pool=pool))
        channels, size = out_channels, size // 2 if pool else size
    features = channels * size * size
    stages += [
        nn.Flatten(),
        BinarizedBlock(BinarizedLinear(features, hidden, bias=bias)),
        BinarizedLinear(hidden, num_classes, bias=bias),
        Scale(),
    ]
    return BinarizedNetwork(stages)


def _check_bias(bias: object) -> None:
    if not isinstance(bias, bool):
        raise BitrobustError(f"bias must be true or false, got {bias!r}")
