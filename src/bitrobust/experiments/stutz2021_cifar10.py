"""Stutz et al. 2021 on CIFAR-10 at CPU scale: the stutz2021 study on its own spec.

``specs/stutz2021-cifar10.toml``: SimpleNet with c = 8 and group norm, 8 bit, per-layer Normal,
RQuant, Clipping 0.1/0.05 and RandBET at w_max 0.1/0.05, three training seeds each, RErr on
the paper's p grid, and synthetic SRAM chips calibrated to the paper's p(V) for the energy part.
"""

from __future__ import annotations

import os
from typing import Any

from bitrobust.experiments import stutz2021

STUDY = "stutz2021-cifar10"


def reproduce(
    out_dir: str | os.PathLike,
    quick: bool,
    data_dir: str | os.PathLike | None = None,
    command: str = "",
    device: str | None = None,
    workers: int | None = 1,
) -> dict[str, Any]:
    """:func:`bitrobust.experiments.stutz2021.reproduce` on this study's spec."""
    return stutz2021.reproduce(out_dir, quick, data_dir, command, device, workers, name=STUDY)


__all__ = ["reproduce"]
