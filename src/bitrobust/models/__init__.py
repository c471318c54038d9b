"""Models by name: a registry of image classifiers sized for CPU-scale fault experiments.

Every model takes images in [0, 1] of shape (N, C, H, W), starts with a frozen
:class:`~bitrobust.models.layers.Normalize` layer (buffers, never quantized) and returns logits
of shape (N, num_classes)::

    model = build_model("simplenet", in_channels=3, image_size=32, num_classes=10, width=16)

A model factory is any callable taking the keyword arguments ``in_channels``, ``image_size``,
``num_classes``, ``input_mean``, ``input_std`` plus its own keyword-only options (JSON values);
other modules add theirs with :func:`register_model`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from bitrobust.errors import BitrobustError
from bitrobust.models.bnn import bnn_mlp, vgg3, vgg7
from bitrobust.models.layers import (
    Normalize,
    ReparameterizedGroupNorm,
    group_count,
    make_norm,
)
from bitrobust.models.lenet import LeNet5
from bitrobust.models.mlp import MLP
from bitrobust.models.resnet import ResNet20
from bitrobust.models.simplenet import SimpleNet

__all__ = [
    "MLP",
    "MODELS",
    "LeNet5",
    "Normalize",
    "ReparameterizedGroupNorm",
    "ResNet20",
    "SimpleNet",
    "build_model",
    "count_multiply_accumulates",
    "count_parameters",
    "group_count",
    "list_models",
    "make_norm",
    "model_options",
    "register_model",
]

#: Name → factory. Use :func:`register_model` to add entries.
MODELS: dict[str, Callable[..., nn.Module]] = {}

#: Keyword arguments every factory receives; everything else is a model option.
COMMON_ARGS = ("in_channels", "image_size", "num_classes", "input_mean", "input_std")

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(name: str) -> Callable[[F], F]:
    """Decorator adding a model factory (a function or an ``nn.Module`` class) under ``name``."""

    def decorate(factory: F) -> F:
        if name in MODELS and MODELS[name] is not factory:
            raise ValueError(f"model {name!r} is already registered")
        MODELS[name] = factory
        return factory

    return decorate


register_model("mlp")(MLP)
register_model("lenet5")(LeNet5)
register_model("simplenet")(SimpleNet)
register_model("resnet20")(ResNet20)
register_model("bnn-mlp")(bnn_mlp)
register_model("vgg3")(vgg3)
register_model("vgg7")(vgg7)


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(MODELS)


def model_options(name: str) -> dict[str, Any]:
    """The options of model ``name`` with their defaults (tuples shown as lists)."""
    options = {}
    for param in _option_parameters(_lookup(name)):
        default = param.default
        options[param.name] = list(default) if isinstance(default, tuple) else default
    return options


def build_model(
    name: str,
    *,
    in_channels: int,
    image_size: int,
    num_classes: int,
    input_mean: tuple[float, ...] | None = None,
    input_std: tuple[float, ...] | None = None,
    **options: Any,
) -> nn.Module:
    """Build model ``name`` for square images of ``in_channels`` × ``image_size``².

    ``input_mean``/``input_std`` (one value per channel, or both None for no normalization) go
    into the frozen input layer. Unknown names, unknown options and bad values raise
    :class:`BitrobustError`. Initialization follows ``torch``'s global RNG, so
    ``torch.manual_seed`` makes builds reproducible.
    """
    factory = _lookup(name)
    for arg, value in (
        ("in_channels", in_channels),
        ("image_size", image_size),
        ("num_classes", num_classes),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BitrobustError(f"{arg} must be a positive integer, got {value!r}")
    for arg, stats in (("input_mean", input_mean), ("input_std", input_std)):
        if stats is not None and (not isinstance(stats, Sequence) or len(stats) != in_channels):
            raise BitrobustError(f"{arg} needs {in_channels} value(s), one per channel: {stats!r}")
    _check_options(name, factory, options)
    return factory(
        in_channels=in_channels,
        image_size=image_size,
        num_classes=num_classes,
        input_mean=input_mean,
        input_std=input_std,
        **options,
    )


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameter values: the weights that are quantized and faulted."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_multiply_accumulates(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of the conv and linear layers for one input of ``input_shape``
    (channels, height, width): what a MAC array computes per example (FLOPs ≈ 2 × MACs)."""
    total = 0

    def count(layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            per_output = layer.in_channels // layer.groups * math.prod(layer.kernel_size)
        else:
            per_output = layer.in_features
        total += output.numel() * per_output

    hooks = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def _lookup(name: str) -> Callable[..., nn.Module]:
    if name not in MODELS:
        raise BitrobustError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return MODELS[name]


def _option_parameters(factory: Callable[..., nn.Module]) -> list[inspect.Parameter]:
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [
        param
        for param in inspect.signature(factory).parameters.values()
        if param.kind in kinds and param.name not in COMMON_ARGS
    ]


def _check_options(name: str, factory: Callable[..., nn.Module], options: dict[str, Any]) -> None:
    params = inspect.signature(factory).parameters.values()
    if any(param.kind is inspect.Parameter.VAR_KEYWORD for param in params):
        return  # the factory validates its own options
    known = [param.name for param in _option_parameters(factory)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise BitrobustError(
            f"unknown option(s) {', '.join(unknown)} for model {name!r}; "
            f"known options: {', '.join(known) or 'none'}"
        )
