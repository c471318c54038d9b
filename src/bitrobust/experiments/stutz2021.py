"""``bitrobust reproduce stutz2021``: Normal vs RQuant vs Clipping vs RandBET (Stutz et al. 2021).

Trains the paper's model variants at 8 and 4 bit on MNIST and Fashion-MNIST, sweeps random bit
error rates, and writes ``stutz2021.md`` (tables + the ordering check against the paper's claim),
``stutz2021.png`` and ``stutz2021.json``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bitrobust.bits import stable_seed
from bitrobust.data import load_dataset, subset
from bitrobust.experiments.robustness import (
    STUTZ_VARIANTS,
    StudySettings,
    plot_study,
    results_table,
    run_study,
)
from bitrobust.experiments.sram_energy import run_sram_energy, savings_table, voltage_table

MNIST_RATES = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2)


@dataclass(frozen=True)
class SramSettings:
    """Synthetic low-voltage SRAM chips on which the trained models are evaluated."""

    chips: int
    voltages: tuple[float, ...]
    placements: int


def sram_settings(quick: bool) -> SramSettings:
    """Voltage grid (relative to V_min) and chip count of the energy part."""
    if quick:
        return SramSettings(2, tuple(round(0.80 + 0.02 * i, 2) for i in range(11)), 1)
    return SramSettings(4, tuple(round(0.80 + 0.01 * i, 2) for i in range(21)), 1)


def settings(quick: bool) -> StudySettings:
    """The full run (about 1-2 hours on 2 cores) or the quick one (under 15 minutes)."""
    if quick:
        return StudySettings(
            datasets=("mnist", "fashion-mnist"),
            bits=(8, 4),
            model="mlp",
            model_options={"hidden": [256, 256]},
            epochs=2,
            train_limit=20000,
            test_limit=2000,
            bit_error_rates=(0.001, 0.01, 0.05, 0.1),
            patterns=5,
        )
    return StudySettings(
        datasets=("mnist", "fashion-mnist"),
        bits=(8, 4),
        model="mlp",
        model_options={"hidden": [512, 512]},
        epochs=15,
        test_limit=9000,
        bit_error_rates=MNIST_RATES,
        patterns=25,
    )


def ordering_check(records: list[dict[str, Any]]) -> list[str]:
    """Compare, per (dataset, bits), mean RErr at the highest rate with the paper's ordering."""
    lines = []
    groups: dict[tuple[str, int], dict[str, dict]] = {}
    for record in records:
        groups.setdefault((record["dataset"], record["bits"]), {})[record["variant"]] = record
    for (dataset, bits), by_variant in groups.items():
        order = [v for v in ("Normal", "RQuant", "Clipping 0.1", "RandBET 0.1") if v in by_variant]
        top = {v: by_variant[v]["results"][-1] for v in order}
        rate = next(iter(top.values()))["bit_error_rate"] if top else None
        values = ", ".join(
            f"{v} {100 * r['results'][-1]['rerr_mean']:.2f}" for v, r in by_variant.items()
        )
        holds = all(top[a]["rerr_mean"] >= top[b]["rerr_mean"] for a, b in zip(order, order[1:]))
        verdict = "holds" if holds else "does NOT hold"
        err = {v: 100 * by_variant[v]["err"] for v in order}
        cost = err.get("RandBET 0.1", float("nan")) - err.get("RQuant", float("nan"))
        lines.append(
            f"- {dataset}, {bits} bit, p = {100 * rate:g} %: RErr {values} — the paper's ordering "
            f"Normal ≥ RQuant ≥ Clipping ≥ RandBET {verdict}; RandBET's clean Err minus RQuant's: "
            f"{cost:+.2f} points."
        )
    return lines


def sram_energy(
    records: list[dict[str, Any]],
    out: Path,
    study: StudySettings,
    sram: SramSettings,
    data_dir: str | os.PathLike | None,
    device: str | None,
) -> dict[str, dict[str, Any]]:
    """Per dataset: every trained model on synthetic chips over a voltage grid, and the energy
    savings at ≤ 1 % and ≤ 2.5 % extra error over the 8-bit Normal model's Err (cached)."""
    results = {}
    (out / "sram").mkdir(exist_ok=True)
    for dataset in study.datasets:
        group = [r for r in records if r["dataset"] == dataset]
        models = [(f"{r['bits']} bit {r['variant']}", out / r["checkpoint"]) for r in group]
        key = json.dumps([[r["fingerprint"] for r in group], asdict(sram)])
        fingerprint = f"{stable_seed(key):016x}"
        cache = out / "sram" / f"{dataset}.json"
        if cache.exists():
            cached = json.loads(cache.read_text())
            if cached.get("fingerprint") == fingerprint:
                results[dataset] = cached
                continue
        images, labels = subset(load_dataset(dataset, "test", data_dir), study.test_limit).tensors
        labels_seen = [label for label, _ in models]
        reference = "8 bit Normal" if "8 bit Normal" in labels_seen else labels_seen[0]
        logging.getLogger(__name__).info(f"[{dataset}] SRAM chips: {len(models)} models")
        result = run_sram_energy(
            models,
            images,
            labels,
            chips=sram.chips,
            voltages=sram.voltages,
            placements=sram.placements,
            reference=reference,
            seed=study.seed,
            device=device or "cpu",
            progress=True,
        )
        result["fingerprint"] = fingerprint
        cache.write_text(json.dumps(result, indent=1))
        results[dataset] = result
    return results


def energy_findings(results: dict[str, dict[str, Any]]) -> list[str]:
    """One line per dataset and budget: the energy saving of each model."""
    paper = {0.01: "about 20 %", 0.025: "about 30 %"}
    lines = []
    for dataset, result in results.items():
        by_budget: dict[float, list[str]] = {}
        for s in result["savings"]:
            saving = f"{100 * s['energy_saving']:.0f} %" if s["met"] else "none"
            by_budget.setdefault(s["budget"], []).append(f"{s['model']} {saving}")
        for budget, entries in by_budget.items():
            lines.append(
                f"- {dataset}, RErr ≤ Err({result['reference']}) + {100 * budget:g} points "
                f"(paper: {paper.get(budget, '?')} saving): " + ", ".join(entries) + "."
            )
    return lines


def reproduce(
    out_dir: str | os.PathLike,
    quick: bool,
    data_dir: str | os.PathLike | None = None,
    command: str = "",
    device: str | None = None,
) -> dict[str, Any]:
    """Run the study and write its Markdown report, plot and JSON record to ``out_dir``."""
    out = Path(out_dir)
    study = settings(quick)
    started = time.time()
    records = run_study(study, out, data_dir=data_dir, device=device)
    plot = plot_study(records, out / "stutz2021.png")
    table = results_table(records, study.bit_error_rates)
    checks = ordering_check(records)
    sram = sram_settings(quick)
    energy = sram_energy(records, out, study, sram, data_dir, device)
    energy_lines = energy_findings(energy)
    elapsed = time.time() - started
    compute = sum(r["train_seconds"] + r["eval_seconds"] for r in records)
    summary = {
        "mode": "quick" if quick else "full",
        "settings": {**asdict(study), "variants": [asdict(v) for v in study.variants]},
        "records": records,
        "findings": checks + energy_lines,
        "sram": {"settings": asdict(sram), "results": energy},
        "seconds": round(elapsed, 1),
        "plot": plot.name,
        "report": str(out / "stutz2021.md"),
    }
    (out / "stutz2021.json").write_text(json.dumps(summary, indent=1))
    lines = [
        "# Stutz et al. 2021 reproduction: RErr under random bit errors",
        "",
        f"Command: `{command or 'bitrobust reproduce stutz2021'}` ({summary['mode']} mode; "
        f"training and bit error evaluation took {compute / 60:.1f} min on "
        f"{platform.machine()} with {torch.get_num_threads()} thread(s); this run "
        f"{elapsed / 60:.1f} min, reusing cached models and results where present).",
        "",
        f"Model: {study.model} {study.model_options}, {study.epochs} epochs, "
        f"train examples: {study.train_limit or 'all'}, first {study.test_limit} test examples, "
        f"{study.patterns} patterns per rate "
        f"(seeds {study.seed}..{study.seed + study.patterns - 1}, "
        "nested across rates). RErr = an example is wrong if the clean or the faulty model errs; "
        "values are means over patterns in %.",
        "",
        "Variants: Normal = global range ±1, symmetric, offset binary, truncation; RQuant = "
        "per-layer asymmetric offset binary with rounding; Clipping w = RQuant + all parameters "
        "projected to ±w; RandBET = Clipping 0.1 + random bit error training at p = 1 % (the "
        "paper's main setting) or 5 %.",
        "",
        table,
        "",
        "## Against the paper's claim",
        "",
        *checks,
        "",
        f"![RErr vs bit error rate]({plot.name})",
        "",
        "## Low-voltage SRAM: error and energy",
        "",
        f"Each model on {sram.chips} synthetic chips (`bitrobust sram make-chip --seed 0..."
        f"{sram.chips - 1}`: 32 arrays of 512×64 cells, p(V) from the paper's poster, row/column "
        f"correlated failures, 60 % stuck-at-1) × {sram.placements} placement(s) of the weights, "
        "at voltages relative to V_min; energy per access (V/V_min)². The saving is read at the "
        "lowest voltage whose mean RErr stays within the budget there and at every higher voltage "
        "of the grid.",
        "",
        *energy_lines,
        "",
    ]
    for dataset, result in energy.items():
        lines += [
            f"### {dataset}: energy savings",
            "",
            savings_table(result),
            "",
            f"### {dataset}: mean RErr (%) vs voltage",
            "",
            voltage_table(result),
            "",
        ]
    (out / "stutz2021.md").write_text("\n".join(lines))
    return summary


__all__ = ["STUTZ_VARIANTS", "reproduce", "settings"]
