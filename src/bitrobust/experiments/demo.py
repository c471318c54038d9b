"""``bitrobust demo``: the paper's headline in a few minutes on a laptop.

Runs the packaged campaign ``specs/demo.toml``: a small MLP trained four ways (Normal, RQuant,
Clipping, RandBET) at 8 bit, swept over random bit error rates; prints the table and writes
``demo.md`` and ``demo.png``. Uses MNIST when it is found (or can be downloaded) and falls back
to scikit-learn's bundled 8×8 digits otherwise.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from bitrobust.campaign.spec import CampaignSpec
from bitrobust.data import load_splits
from bitrobust.errors import BitrobustError
from bitrobust.experiments.campaigns import packaged_spec, run_study_spec
from bitrobust.experiments.robustness import model_records, plot_study, results_table


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


def demo_spec(dataset: str) -> tuple[CampaignSpec, str]:
    """The demo's spec, for the 8×8 digits: 30 epochs of batch 64 on the whole test set."""
    spec, text = packaged_spec("demo")
    if dataset == "mnist":
        return spec, text
    models = [
        m.model_copy(update={"dataset": dataset, "epochs": 30, "batch_size": 64})
        for m in spec.models
    ]
    data = spec.data.model_copy(update={"dataset": dataset, "test_limit": None})
    spec = spec.model_copy(update={"models": models, "data": data})
    return spec, f"{text}\n# run on {dataset}: 30 epochs, batch 64, the whole test set\n"


def run_demo(
    out_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Run the demo campaign; returns the per-model records and where the report went.

    ``workers``: processes that train the four models and run the trials side by side (default:
    the number of cores; 1 runs everything in this process). The figures do not depend on it.
    """
    out = Path(out_dir)
    started = time.time()
    dataset = pick_dataset(data_dir)
    spec, text = demo_spec(dataset)
    rows = run_study_spec(spec, text, out, data_dir, workers=workers)
    records = model_records(spec, rows)
    rates = tuple(spec.faults[0].rates)
    table = results_table(records, rates)
    plot = plot_study(records, out / "demo.png")
    report = out / "demo.md"
    hidden = spec.models[0].options["hidden"]
    report.write_text(
        "# bitrobust demo: error under random bit errors in 8-bit weights\n\n"
        f"Dataset: {dataset}; model: MLP {hidden}; {spec.patterns} bit error patterns per "
        f"rate; RErr in %. Campaign spec: `bitrobust/experiments/specs/demo.toml`; every trial "
        f"is a row of `{out / 'campaign.db'}` (`bitrobust campaign report` renders it).\n\n"
        f"{table}\n\n![RErr vs bit error rate]({plot.name})\n"
    )
    return {
        "dataset": dataset,
        "table": table,
        "report": str(report),
        "plot": str(plot),
        "store": str(out / "campaign.db"),
        "records": records,
        "seconds": round(time.time() - started, 1),
    }
