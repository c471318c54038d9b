"""``bitrobust demo``: the paper's headline in a few minutes on a laptop.

Trains a small MLP four ways (Normal, RQuant, Clipping, RandBET) at 8 bit, sweeps random bit
error rates, prints the table and writes ``demo.md`` and ``demo.png``. Uses MNIST when it is found
(or can be downloaded) and falls back to scikit-learn's bundled 8×8 digits otherwise.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from bitrobust.data import load_splits
from bitrobust.errors import BitrobustError
from bitrobust.experiments.robustness import (
    STUTZ_VARIANTS,
    StudySettings,
    plot_study,
    results_table,
    run_study,
)
from bitrobust.faults.core import SAMPLER_VERSION

DEMO_VARIANTS = tuple(
    v for v in STUTZ_VARIANTS if v.label in ("Normal", "RQuant", "Clipping 0.1", "RandBET 0.1")
)


def pick_dataset(data_dir: str | os.PathLike | None) -> str:
    """MNIST if available, else the digits bundled with scikit-learn (with a one-line notice)."""
    try:
        load_splits("mnist", data_dir)
        return "mnist"
    except BitrobustError as exc:
        logging.getLogger(__name__).info(
            f"notice: MNIST unavailable ({exc}); using scikit-learn's 8x8 digits"
        )
        return "digits"


def demo_settings(dataset: str) -> StudySettings:
    small = dataset == "digits"
    return StudySettings(
        datasets=(dataset,),
        bits=(8,),
        variants=DEMO_VARIANTS,
        model="mlp",
        model_options={"hidden": [256, 256]},
        epochs=30 if small else 5,
        batch_size=64 if small else 128,
        test_limit=None if small else 5000,
        bit_error_rates=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1),
        patterns=10,
    )


def run_demo(
    out_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Run the demo study; returns the per-model records and where the report went."""
    out = Path(out_dir)
    started = time.time()
    dataset = pick_dataset(data_dir)
    study = demo_settings(dataset)
    records = run_study(study, out, data_dir=data_dir, sampler=SAMPLER_VERSION)
    table = results_table(records, study.bit_error_rates)
    plot = plot_study(records, out / "demo.png")
    report = out / "demo.md"
    report.write_text(
        "# bitrobust demo: error under random bit errors in 8-bit weights\n\n"
        f"Dataset: {dataset}; model: MLP {study.model_options['hidden']}; "
        f"{study.patterns} bit error patterns per rate; RErr in %.\n\n"
        f"{table}\n\n![RErr vs bit error rate]({plot.name})\n"
    )
    return {
        "dataset": dataset,
        "table": table,
        "report": str(report),
        "plot": str(plot),
        "records": records,
        "seconds": round(time.time() - started, 1),
    }
