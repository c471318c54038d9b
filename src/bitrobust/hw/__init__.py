"""Approximate and faulty accelerators: product-table multipliers, emulated integer layers,
PE arrays and permanent datapath faults.

    from bitrobust.hw import PEFaults, SystolicArray, load_multiplier, to_accelerator

    mul = load_multiplier("mul8u_L40")              # EvoApprox table (or exact8u, a .npy/.bin/.c)
    array = SystolicArray(16)                       # TPU-like 16×16 weight-stationary array
    faults = PEFaults(rate=0.3, bit=14, stuck_at=1).sample(array, seed=0)
    ax_model = to_accelerator(model, mul, array, faults, calibration=train_images[:1000])

Modules: :mod:`~bitrobust.hw.multiplier` (tables, built-in families, loaders, metrics,
catalogues), :mod:`~bitrobust.hw.ccompile` (C models → tables), :mod:`~bitrobust.hw.emulate`
(integer GEMM through a table, faults), :mod:`~bitrobust.hw.layers` (emulated Linear/Conv2d),
:mod:`~bitrobust.hw.accelerator` (PE mappings, fault maps), :mod:`~bitrobust.hw.convert`
(model conversion), :mod:`~bitrobust.hw.evaluate` (accuracy under fault maps),
:mod:`~bitrobust.hw.mitigation` (FaL-reTune, fault-aware pruning and FAP + retraining,
reconstructed).
"""

from bitrobust.hw.accelerator import (
    Accelerator,
    FaultMap,
    GPUArray,
    PEFaults,
    SystolicArray,
    faulty_pes,
    make_accelerator,
)
from bitrobust.hw.convert import calibrate, emulated_layers, set_faults, to_accelerator
from bitrobust.hw.emulate import (
    LayerFault,
    force_bit,
    integer_gemm,
    lut_matmul,
    lut_products,
)
from bitrobust.hw.evaluate import accuracy, evaluate_accelerator
from bitrobust.hw.layers import EmulatedConv2d, EmulatedLayer, EmulatedLinear
from bitrobust.hw.mitigation import MitigationConfig, fault_aware_pruning, mitigate
from bitrobust.hw.multiplier import (
    CatalogueEntry,
    Multiplier,
    broken_array,
    evoapprox_catalogue,
    exact,
    from_bin,
    from_npy,
    load_file,
    load_multiplier,
    mitchell,
    truncated,
    user_catalogue,
)

__all__ = [
    "Accelerator",
    "CatalogueEntry",
    "EmulatedConv2d",
    "EmulatedLayer",
    "EmulatedLinear",
    "FaultMap",
    "GPUArray",
    "LayerFault",
    "MitigationConfig",
    "Multiplier",
    "PEFaults",
    "SystolicArray",
    "accuracy",
    "broken_array",
    "calibrate",
    "emulated_layers",
    "evaluate_accelerator",
    "evoapprox_catalogue",
    "exact",
    "fault_aware_pruning",
    "faulty_pes",
    "force_bit",
    "from_bin",
    "from_npy",
    "integer_gemm",
    "load_file",
    "load_multiplier",
    "lut_matmul",
    "lut_products",
    "make_accelerator",
    "mitigate",
    "mitchell",
    "set_faults",
    "to_accelerator",
    "truncated",
    "user_catalogue",
]
