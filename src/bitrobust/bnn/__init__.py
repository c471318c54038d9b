"""Binarized neural networks: layers, bit flip training, threshold folding, tolerance metrics.

- :mod:`bitrobust.bnn.layers`: sign-binarized linear/conv layers (weights and biases stored as
  1-bit codes, :data:`bitrobust.quant.BINARY`), blocks (layer → [pool] → BN → Hardtanh → sign)
  and :class:`BinarizedNetwork`; the models are registered in :mod:`bitrobust.models.bnn`.
- :mod:`bitrobust.bnn.training`: bit flip injection (``--method bitflip``) and the modified
  hinge loss (``--loss hinge``), used by :func:`bitrobust.train.train`.
- :mod:`bitrobust.bnn.folding`: batch norm + sign folded into per-neuron thresholds.
- :mod:`bitrobust.bnn.metrics`: neuron margins, neuron importance, rank correlations.
- :mod:`bitrobust.bnn.flips`: logits with one neuron's output flipped, computed incrementally
  (what flip importance evaluates).
"""

from bitrobust.bnn.folding import FoldedBlock, Thresholds, fold_batch_norm, fold_network
from bitrobust.bnn.layers import (
    BinarizedBlock,
    BinarizedConv2d,
    BinarizedLinear,
    BinarizedNetwork,
    Scale,
    SignActivation,
    binarize,
    check_binarized_network,
    is_binarized,
)
from bitrobust.bnn.metrics import (
    IMPORTANCE_METHODS,
    LayerImportance,
    LayerMargins,
    accuracy,
    bnn_metrics,
    correlations,
    neuron_importance,
    neuron_margins,
    spearman,
)
from bitrobust.bnn.training import modified_hinge_loss, random_sign_flips

__all__ = [
    "IMPORTANCE_METHODS",
    "BinarizedBlock",
    "BinarizedConv2d",
    "BinarizedLinear",
    "BinarizedNetwork",
    "FoldedBlock",
    "LayerImportance",
    "LayerMargins",
    "Scale",
    "SignActivation",
    "Thresholds",
    "accuracy",
    "binarize",
    "bnn_metrics",
    "check_binarized_network",
    "correlations",
    "fold_batch_norm",
    "fold_network",
    "is_binarized",
    "modified_hinge_loss",
    "neuron_importance",
    "neuron_margins",
    "random_sign_flips",
    "spearman",
]
