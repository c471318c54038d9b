"""Turn a float model into one that runs on an emulated (approximate, possibly faulty) accelerator.

:func:`to_accelerator` copies the model and swaps every ``nn.Linear`` and ``nn.Conv2d`` for its
emulated counterpart; everything else (normalization, activations, pooling, the input
``Normalize``) runs in float, as on the host. Layers with weights that the emulator cannot run
(other layer types, subclasses such as binarized layers, grouped convolutions) are refused
with a :class:`~bitrobust.errors.BitrobustError`. The result is an ordinary ``nn.Module`` that
holds no faults: a trial passes them to its forward passes (see :mod:`bitrobust.hw.deploy`), so
many patterns cost one conversion.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from bitrobust.errors import BitrobustError
from bitrobust.hw.accelerator import Accelerator
from bitrobust.hw.catalogue import load_multiplier
from bitrobust.hw.layers import EmulatedConv2d, EmulatedLayer, EmulatedLinear
from bitrobust.hw.tables import Multiplier
from bitrobust.models.layers import Normalize, ReparameterizedGroupNorm

#: Layers with parameters that may stay in float (they are not GEMMs on the array).
FLOAT_LAYERS: tuple[type[nn.Module], ...] = (
    nn.GroupNorm,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.LayerNorm,
    ReparameterizedGroupNorm,
    Normalize,
)


def to_accelerator(
    model: nn.Module,
    multiplier: Multiplier | str,
    accelerator: Accelerator | None = None,
    calibration: torch.Tensor | None = None,
    batch_size: int = 1000,
) -> nn.Module:
    """A copy of ``model`` whose Linear/Conv2d layers use ``multiplier`` (an object, or a
    built-in, user-catalogue or file name: EvoApprox tables are loaded first with
    :func:`~bitrobust.hw.catalogue.load_multiplier` and their folder), mapped onto
    ``accelerator`` (the PE array; None when no PE faults are studied).

    ``calibration`` images fix each layer's activation range (recommended; else per batch).
    """
    multiplier = load_multiplier(multiplier)
    converted = copy.deepcopy(model).eval()
    for name, module in list(converted.named_modules()):
        if type(module) is nn.Linear:
            _replace(converted, name, EmulatedLinear.from_linear(module, multiplier))
        elif type(module) is nn.Conv2d:
            _replace(converted, name, EmulatedConv2d.from_conv(module, multiplier, name))
        else:
            _check_supported(name, module)
    layers = emulated_layers(converted)
    if not layers:
        raise BitrobustError("the model has no Linear or Conv2d layer to run on the accelerator")
    for name, layer in layers.items():
        layer.layer_name = name
        layer.accelerator = accelerator
    if calibration is not None:
        calibrate(converted, calibration, batch_size)
    return converted


def _check_supported(name: str, module: nn.Module) -> None:
    own = [p for p, _ in module.named_parameters(recurse=False)]
    if not own or isinstance(module, EmulatedLayer) or type(module) in FLOAT_LAYERS:
        return
    raise BitrobustError(
        f"layer '{name}' ({type(module).__name__}) has weights the accelerator emulator cannot "
        "run; supported: nn.Linear and nn.Conv2d (groups=1), with normalization layers in float"
    )


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def emulated_layers(model: nn.Module) -> dict[str, EmulatedLayer]:
    """Module name → emulated layer, in forward-definition order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, EmulatedLayer)}


@torch.no_grad()
def calibrate(model: nn.Module, images: torch.Tensor | Iterable[torch.Tensor], batch_size=1000):
    """Set each emulated layer's activation range to the min/max of its input over ``images``
    (a tensor, split into batches, or an iterable of batches), computed in float."""
    layers = emulated_layers(model).values()
    batches = images.split(batch_size) if isinstance(images, torch.Tensor) else images
    was_training = model.training
    model.eval()
    for layer in layers:
        layer.reset_range()
        layer.calibrating = True
    try:
        device = next(iter(model.parameters())).device
        for batch in batches:
            model(batch.to(device))
    finally:
        for layer in layers:
            layer.calibrating = False
        model.train(was_training)
