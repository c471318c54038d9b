"""Ready-made studies: the demo and the reproductions of the papers' experiments.

Each study is a campaign spec shipped in ``experiments/specs/`` (quick and full) plus a
paper-specific report. Its module has ``reproduce(out_dir, quick, data_dir, command, device,
workers) -> dict`` (with at least ``mode``, ``report``, ``findings`` and ``seconds``), which
runs the spec into ``out_dir/campaign.db`` (trained checkpoints in ``out_dir/checkpoints``), so
an interrupted study resumes where it stopped and a changed spec recomputes only what it
changes, then writes Markdown tables, plots and a JSON record built from the store's rows.
Register a new study in ``STUDIES``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from bitrobust.errors import BitrobustError

COMMITTED_SAMPLER = 1
"""The random bit error sampler of committed results made before the studies moved to sampler 2
(those in docs/results/bnn2021, from its earlier spec).
Studies re-run since then use the O(flips) sampler 2 (:data:`bitrobust.faults.core.SAMPLER_VERSION`,
the default of the CLI and the library), which draws other patterns from the same seeds with the
same distribution; their trial records name the sampler."""

STUDIES: dict[str, str] = {
    "stutz2021": "Stutz et al. 2021: Normal, RQuant, Clipping (w_max 0.1, 0.05) and RandBET at "
    "8 and 4 bit on MNIST and Fashion-MNIST, 3 training seeds each, with the quantization, label "
    "smoothing and fixed-pattern ablations; RErr vs random bit error rate, and energy on "
    "calibrated SRAM chips",
    "stutz2021-cifar10": "Stutz et al. 2021 on CIFAR-10 at CPU scale: SimpleNet (c = 8, group "
    "norm) at 8 bit, per-layer Normal, RQuant, Clipping and RandBET at w_max 0.1 and 0.05, 3 "
    "training seeds each; RErr vs random bit error rate, and energy on calibrated SRAM chips",
    "bnn2021": "Buschjäger et al. 2021: binarized MLP and VGG3 on Fashion-MNIST with bit flip "
    "training (0/5/10/20 %) and the hinge loss, 3 training seeds each; accuracy vs bit error "
    "rate, margin and importance metrics, and their rank correlation with accuracy under bit "
    "errors (permutation p-values, bootstrap intervals)",
    "axdnn2023": "Siddique & Hoque 2023: MLP and LeNet-5 on MNIST and Fashion-MNIST, 3 training "
    "seeds, retrained for each EvoApprox multiplier (signed and unsigned families, exact and 3 "
    "approximate each) on a 16x16 TPU-like and a 256-unit GPU-like array; accuracy vs multiplier "
    "power, accuracy loss vs stuck-at product bit at 10/30/50 % faulty PEs over 3 fault maps, and "
    "FAP, FAP+T and FaL-reTune (literal and improved) at 50 %",
}


def load_study(name: str) -> ModuleType:
    """The module implementing study ``name``."""
    if name not in STUDIES:
        raise BitrobustError(f"unknown study {name!r} (known: {', '.join(STUDIES)})")
    return importlib.import_module(f"bitrobust.experiments.{name.replace('-', '_')}")
