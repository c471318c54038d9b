"""Quantization-aware training with hardening methods: one loop, methods as small objects.

- :mod:`.config`: :class:`TrainConfig` (hyper-parameters, model-dependent defaults),
  :class:`TrainHistory` and :class:`StepReport` (what the loop reports);
- :mod:`.methods`: :class:`Normal`, :class:`Clipping`, :class:`RandBET`,
  :class:`BitFlipTraining` (by name: :func:`method_from_name`) and :class:`FrozenWeights`;
- :mod:`.loop`: :func:`fit`, the loop, and :func:`train`, the usual entry;
- :mod:`.progress`: a printer for the loop's callbacks (the loop itself prints nothing).
"""

from bitrobust.train.config import (
    BINARIZED_DEFAULTS,
    DEFAULTS,
    StepReport,
    TrainConfig,
    TrainHistory,
)
from bitrobust.train.loop import (
    Batches,
    fit,
    make_optimizer,
    train,
    training_loss,
    training_loss_fn,
)
from bitrobust.train.methods import (
    METHODS,
    BitFlipTraining,
    Clipping,
    FrozenWeights,
    Normal,
    RandBET,
    flipped_parameters,
    method_from_name,
    perturbed_parameters,
    project_parameters,
    quantized_parameters,
)

__all__ = [
    "BINARIZED_DEFAULTS",
    "DEFAULTS",
    "METHODS",
    "Batches",
    "BitFlipTraining",
    "Clipping",
    "FrozenWeights",
    "Normal",
    "RandBET",
    "StepReport",
    "TrainConfig",
    "TrainHistory",
    "fit",
    "flipped_parameters",
    "make_optimizer",
    "method_from_name",
    "perturbed_parameters",
    "project_parameters",
    "quantized_parameters",
    "train",
    "training_loss",
    "training_loss_fn",
]
