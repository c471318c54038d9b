"""Approximate and faulty accelerators: product-table multipliers, emulated integer layers,
PE arrays and permanent datapath faults.

    from bitrobust.data import evoapprox_dir
    from bitrobust.evaluate import run_trial
    from bitrobust.faults import RandomBitErrors
    from bitrobust.hw import PEFaults, SystolicArray, deploy, load_multiplier

    multiplier = load_multiplier("mul8u_L40", evoapprox_dir())  # <data-dir>/evoapprox
    deployment = deploy(model, multiplier, SystolicArray(16), calibration=train_images[:1000])
    faults = PEFaults(rate=0.3, bit=14, stuck_at=1) + RandomBitErrors(0.001)  # one trial, both
    result = run_trial(deployment, faults, seed=0, data=(images, labels))
    faulty = deployment.faulty_module(faults.sample(deployment.target, seed=0))  # an nn.Module

Modules, each importing only those before it: :mod:`~bitrobust.hw.tables` (the product table,
its checks and error metrics), :mod:`~bitrobust.hw.families` (built-in multipliers),
:mod:`~bitrobust.hw.ccompile` (C models → tables), :mod:`~bitrobust.hw.catalogue` (table
files, the user and EvoApprox catalogues, :func:`load_multiplier`; the caller names the
EvoApprox folder), :mod:`~bitrobust.hw.kernel` (the compiled table GEMM),
:mod:`~bitrobust.hw.emulate` (integer GEMM through a table, faults), :mod:`~bitrobust.hw.layers`
(emulated Linear/Conv2d), :mod:`~bitrobust.hw.accelerator` (PE mappings, PE faults),
:mod:`~bitrobust.hw.convert` (model conversion), :mod:`~bitrobust.hw.deploy` (a converted model
as the target of memory and datapath faults), :mod:`~bitrobust.hw.mitigation` (FaL-reTune,
fault-aware pruning and FAP + retraining, reconstructed), :mod:`~bitrobust.hw.evaluate`
(accuracy under fault patterns).
"""

from bitrobust.evaluate import accuracy  # moved to bitrobust.evaluate; public here before
from bitrobust.hw.accelerator import (
    Accelerator,
    AcceleratorLayout,
    FaultMap,
    GPUArray,
    PEFaults,
    SystolicArray,
    faulty_pes,
    make_accelerator,
)
from bitrobust.hw.catalogue import (
    CatalogueEntry,
    evoapprox_catalogue,
    from_bin,
    from_npy,
    load_file,
    load_multiplier,
    user_catalogue,
)
from bitrobust.hw.convert import calibrate, emulated_layers, to_accelerator
from bitrobust.hw.deploy import AcceleratorDeployment, deploy
from bitrobust.hw.emulate import (
    LayerFault,
    force_bit,
    integer_gemm,
    lut_matmul,
    lut_products,
)
from bitrobust.hw.evaluate import evaluate_accelerator
from bitrobust.hw.families import broken_array, exact, mitchell, truncated
from bitrobust.hw.layers import EmulatedConv2d, EmulatedLayer, EmulatedLinear, datapath_faults
from bitrobust.hw.mitigation import Mitigated, MitigationConfig, fault_aware_pruning, mitigate
from bitrobust.hw.tables import Multiplier

__all__ = [
    "Accelerator",
    "AcceleratorDeployment",
    "AcceleratorLayout",
    "CatalogueEntry",
    "EmulatedConv2d",
    "EmulatedLayer",
    "EmulatedLinear",
    "FaultMap",
    "GPUArray",
    "LayerFault",
    "Mitigated",
    "MitigationConfig",
    "Multiplier",
    "PEFaults",
    "SystolicArray",
    "accuracy",
    "broken_array",
    "calibrate",
    "datapath_faults",
    "deploy",
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
    "to_accelerator",
    "truncated",
    "user_catalogue",
]
