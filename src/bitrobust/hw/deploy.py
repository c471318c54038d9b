"""A model deployed on an emulated accelerator: the target of memory and datapath faults alike.

    multiplier = load_multiplier("mul8u_L40", evoapprox_dir)  # e.g. <data-dir>/evoapprox
    deployment = deploy(model, multiplier, SystolicArray(16), calibration=train_images[:1000])
    faults = RandomBitErrors(0.01) + PEFaults(0.3, bit=14, stuck_at=1)
    result = run_trial(deployment, faults, seed=0, data=(images, labels))

The accelerator keeps its weights as 8-bit operand codes (``uint8-affine`` or
``int8-symmetric`` of :mod:`bitrobust.quant`, by the multiplier's signedness) in the same,
possibly low-voltage, memory that random bit errors and SRAM chips act on: the deployment's
:class:`~bitrobust.quant.QuantizedModel` names them ``<layer>.weight`` in the float model's
layout. A trial passes the faulty codes to the emulated layers through ``functional_call`` and
activates the PE faults for that forward pass only (:func:`~bitrobust.hw.layers.datapath_faults`),
so a weight bit flipped in memory changes what a faulty PE multiplies. Biases, normalization
and everything off the array stay float, outside the faulty memory.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from bitrobust.errors import BitrobustError
from bitrobust.evaluate import Deployment
from bitrobust.faults import FaultPattern
from bitrobust.hw.accelerator import Accelerator, AcceleratorLayout
from bitrobust.hw.convert import emulated_layers, to_accelerator
from bitrobust.hw.layers import EmulatedLayer, datapath_faults, weight_scheme
from bitrobust.hw.tables import Multiplier
from bitrobust.quant import QuantizedModel


class AcceleratorDeployment(Deployment):
    """An emulated-accelerator module (from :func:`~bitrobust.hw.convert.to_accelerator`) with
    its stored weight codes and, given an ``accelerator``, the layout PE faults need."""

    def __init__(self, emulated: nn.Module, accelerator: Accelerator | None = None):
        layers = emulated_layers(emulated)
        if not layers:
            raise BitrobustError("the model has no emulated layer (use to_accelerator first)")
        first = next(iter(layers.values()))
        qmodel = QuantizedModel(
            tensors={f"{name}.weight": layer.stored_weight() for name, layer in layers.items()},
            scheme=weight_scheme(first.multiplier),
        )
        layout = None
        if accelerator is not None:
            layout = AcceleratorLayout(
                accelerator, {name: layer.gemm_shape for name, layer in layers.items()}
            )
        super().__init__(emulated, qmodel, layout)
        self.accelerator = accelerator
        self.layers: dict[str, EmulatedLayer] = layers

    @property
    def multiplier(self) -> Multiplier:
        return next(iter(self.layers.values())).multiplier

    def substitutions(self, pattern: FaultPattern) -> dict[str, torch.Tensor]:
        if not pattern.masks:
            return {}
        faulty = pattern.apply(self.qmodel)
        substitutions = {}
        for name in pattern.masks:
            layer_name = name.removesuffix(".weight")
            codes = faulty.tensors[name].codes
            substitutions[f"{layer_name}.weight_codes"] = self.layers[layer_name].gemm_codes(codes)
        return substitutions

    def activate(self, pattern: FaultPattern) -> contextlib.AbstractContextManager:
        unknown = sorted(set(pattern.datapath) - set(self.layers))
        if unknown:
            raise BitrobustError(
                f"datapath faults for unknown layer(s) {', '.join(unknown)}; "
                f"layers: {', '.join(self.layers)}"
            )
        return datapath_faults(pattern.datapath)


def deploy(
    model: nn.Module,
    multiplier: Multiplier | str,
    accelerator: Accelerator | None = None,
    calibration: torch.Tensor | None = None,
    batch_size: int = 1000,
) -> AcceleratorDeployment:
    """``model`` on an emulated accelerator built from ``multiplier`` (and, for PE faults, an
    ``accelerator`` array), its activation ranges calibrated on ``calibration`` images."""
    emulated = to_accelerator(
        model, multiplier, accelerator, calibration=calibration, batch_size=batch_size
    )
    return AcceleratorDeployment(emulated, accelerator)
