"""Stutz et al. 2021 on CIFAR-10 at CPU scale: the stutz2021 study on its own spec.

``specs/stutz2021-cifar10.toml`` (made by :func:`spec_text`; a test keeps them equal):
SimpleNet with c = 8 and group norm, 8 bit, per-layer Normal, RQuant, Clipping 0.1/0.05 and
RandBET at w_max 0.1/0.05, three training seeds each, RErr on the paper's p grid, and synthetic
SRAM chips calibrated to the paper's p(V) for the energy part.
"""

from __future__ import annotations

import os
from typing import Any

from bitrobust.experiments import stutz2021

STUDY = "stutz2021-cifar10"

#: (name, label, quantization, method, w_max, training bit error rate, curriculum τ) of each
#: model. RandBET turns its bit errors on only once the clean loss is low enough (τ = 1.75 in
#: the paper, for 250-epoch models); these 3-epoch models at w_max 0.05 stay near a loss of 1.9,
#: so a second RandBET 0.05 uses τ = 2.0 to see RandBET train at this scale at all.
VARIANTS: tuple[tuple[str, str, str, str, float | None, float | None, float | None], ...] = (
    ("perlayer-normal", "Normal (per-layer)", "perlayer", "normal", None, None, None),
    ("rquant", "RQuant", "rquant", "normal", None, None, None),
    ("clipping-01", "Clipping 0.1", "rquant", "clipping", 0.1, None, None),
    ("clipping-005", "Clipping 0.05", "rquant", "clipping", 0.05, None, None),
    ("randbet-01", "RandBET 0.1", "rquant", "randbet", 0.1, 0.01, None),
    ("randbet-005", "RandBET 0.05", "rquant", "randbet", 0.05, 0.01, None),
    ("randbet-005-tau2", "RandBET 0.05 τ=2", "rquant", "randbet", 0.05, 0.01, 2.0),
)
#: The random bit error rates: the paper's CIFAR-10 grid (papers.md §1.9) from 0.01 % to 2 %.
RATES = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.015, 0.02)
#: SRAM voltages relative to V_min, down to where the chips are profiled.
VOLTAGES = tuple(round(0.76 + 0.02 * k, 2) for k in range(13))


def spec_text(quick: bool) -> str:
    """The study's campaign spec, full (about 1.5 h on 2 cores) or quick (minutes)."""
    mode = "quick" if quick else "full"
    name = f"{STUDY}-quick" if quick else STUDY
    epochs = 1 if quick else 3
    lines = [
        f"# Stutz et al. 2021 on CIFAR-10 at CPU scale ({mode} mode): SimpleNet with channel "
        "factor",
        "# c = 8 (87,882 parameters, 10.06 M multiply-accumulates per image; c = 64: 5.50 M and "
        "631.5 M)",
        "# and reparameterized group norm (groups of at least 8 channels),",
        "# 8 bit: per-layer Normal, RQuant,",
        "# Clipping 0.1/0.05 and RandBET at w_max 0.1/0.05 (p = 1 %; at 0.05 also with the "
        "curriculum",
        "# threshold τ = 2.0 instead of 1.75), each trained with several seeds;",
        "# RErr under random bit errors on the paper's p grid, and on synthetic SRAM chips "
        "calibrated to",
        "# the paper's p(V) (the rate of flipped bits) down to 0.76 V_min for the energy part.",
        f"# No augmentation and {epochs} epoch(s): a CPU-scale model, not the paper's 250-epoch "
        "one.",
        f'name = "{name}"',
        'description = "Stutz et al. 2021 on CIFAR-10: RErr vs random bit error rate; energy on '
        'calibrated SRAM chips"',
        "seed = 0",
        f"patterns = {3 if quick else 25}",
        'metrics = ["rerr", "err_faulty"]',
        "",
        "[data]",
        'dataset = "cifar10"',
        f"test_limit = {500 if quick else 1000}",
        *(["train_limit = 5000"] if quick else []),
        "batch_size = 500",
    ]
    seeds = [0, 1] if quick else [0, 1, 2]
    for variant, label, quantization, method, w_max, rate, threshold in VARIANTS:
        lines += [
            "",
            "[[models]]",
            f'name = "cifar10-8bit-{variant}"',
            f'label = "{label}"',
            'architecture = "simplenet"',
            "options = { width = 8, min_group_channels = 8 }",
            f'quantization = "{quantization}"',
            "bits = 8",
            f'method = "{method}"',
            f"epochs = {epochs}",
            "batch_size = 128",
            "lr = 0.05",
            *([f"w_max = {w_max}"] if w_max is not None else []),
            *([f"bit_error_rate = {rate}"] if rate is not None else []),
            *([f"curriculum_threshold = {threshold}"] if threshold is not None else []),
            f"training_seeds = {seeds}",
        ]
    rates = [0.001, 0.01] if quick else list(RATES)
    lines += [
        "",
        "[[faults]]",
        'name = "bit-errors"',
        'label = "random bit errors"',
        'type = "random_bit_errors"',
        f"rates = {rates}",
    ]
    voltages = [0.8, 0.9, 1.0] if quick else list(VOLTAGES)
    lines += stutz2021.sram_chip_entries(1 if quick else 2, voltages)
    return "\n".join(lines) + "\n"


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


__all__ = ["RATES", "VARIANTS", "VOLTAGES", "reproduce", "spec_text"]
