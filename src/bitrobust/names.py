"""The library's registered names, in a module that imports nothing.

The command line offers these as choices while it parses its arguments, before it imports torch,
so ``bitrobust --help`` and argument errors stay fast. The modules that implement the names
import them from here: one list per idea.
"""

QUANT_PRESETS: tuple[str, ...] = (
    "rquant",
    "normal",
    "perlayer",
    "perlayer-asym",
    "perlayer-asym-unsigned",
    "uint8-affine",
    "int8-symmetric",
)
"""Quantization presets of ``QuantScheme.preset``: the paper's RQuant first, then its other
layouts, then the operand formats of 8-bit (approximate) multipliers."""

TRAIN_METHODS: tuple[str, ...] = ("normal", "clipping", "randbet", "bitflip")
"""Training methods of ``bitrobust.train``."""

LOSSES: tuple[str, ...] = ("cross_entropy", "hinge")
"""Training losses: cross-entropy, or the modified hinge loss of binarized nets."""

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
"""Optimizers: SGD with Nesterov momentum, or Adam."""

IMPORTANCE_METHODS: tuple[str, ...] = ("flip", "gradient")
"""Neuron importance estimates of ``bitrobust.bnn.metrics``."""
