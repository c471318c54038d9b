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
from pathlib import Path
from typing import Any

import torch

from bitrobust.campaign.spec import CampaignSpec, SRAMSpec
from bitrobust.energy import EnergyModel, chip_rates, find_operating_point
from bitrobust.experiments.campaigns import packaged_spec, run_study_spec
from bitrobust.experiments.robustness import model_records, plot_study, results_table
from bitrobust.experiments.sram_energy import energy_savings, savings_table, voltage_table
from bitrobust.faults import make_chip

MNIST_RATES = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2)


STUDY = "stutz2021"

VARIANTS = {
    "Normal": "global range ±1, symmetric, offset binary, truncation",
    "Normal (per-layer)": "per-layer range, symmetric, signed, truncation (the poster's first "
    "quantization row)",
    "RQuant": "per-layer asymmetric offset binary with rounding",
    "Clipping": "RQuant + all parameters projected to ±w during training",
    "RandBET": "Clipping w + random bit error training at p = 1 % (the paper's main setting) "
    "or the p given",
}
"""What each variant label (up to its first number) means, for the report."""


def study_spec(quick: bool, name: str = STUDY) -> tuple[CampaignSpec, str]:
    """The packaged spec ``specs/<name>.toml`` (full: about 1-2 hours on 2 cores) or
    ``specs/<name>-quick.toml`` (under 15 minutes)."""
    return packaged_spec(f"{name}-quick" if quick else name)


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


def sram_energy(spec: CampaignSpec, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per dataset: every model on the spec's synthetic SRAM chips over its voltage grid (the
    rows of its ``sram`` entries), and the energy savings at ≤ 1 % and ≤ 2.5 % extra error over
    the 8-bit Normal model's Err."""
    entries = [f for f in spec.faults if isinstance(f, SRAMSpec)]
    if not entries:
        return {}
    chips = [
        make_chip(f.synthetic_chip, calibration=f.calibration)
        for f in entries
        if f.synthetic_chip is not None
    ]
    voltages = sorted({v for f in entries for v in f.voltages})
    names = {f.name for f in entries}
    energy = EnergyModel()
    results = {}
    for dataset in dict.fromkeys(spec.dataset_of(m) for m in spec.models):
        evaluated: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        for model in spec.models:
            if spec.dataset_of(model) != dataset:
                continue
            mine = [r for r in rows if r["model"] == model.name and r["fault"] in names]
            if not mine:
                continue
            per_seed = {r["training_seed"]: r["err_clean"] for r in mine}
            err = sum(per_seed.values()) / len(per_seed)  # mean over training seeds

            def evaluate(voltage: float, mine: list[dict[str, Any]] = mine) -> dict[str, Any]:
                values = [r["rerr"] for r in mine if r["x"] == voltage]
                return {"rerr": values, **chip_rates(chips, voltage)}

            point = find_operating_point(evaluate, voltages, 1.0, err, energy=energy)
            evaluated[f"{model.bits} bit {model.label or model.name}"] = (err, point.rows)
        if not evaluated:
            continue
        reference = "8 bit Normal" if "8 bit Normal" in evaluated else next(iter(evaluated))
        result = energy_savings(evaluated, voltages, reference=reference, energy=energy)
        patterns = {f.patterns or spec.patterns for f in entries}
        results[dataset] = {
            **result,
            "chips": [chip.id for chip in chips],
            "placements": max(patterns),
        }
        logging.getLogger(__name__).info(f"[{dataset}] SRAM energy: {len(evaluated)} models")
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
    workers: int | None = 1,
    name: str = STUDY,
) -> dict[str, Any]:
    """Run the study's campaign (``specs/<name>[-quick].toml``) into ``out_dir`` and write its
    Markdown report, plot and JSON record there, named after ``name``."""
    out = Path(out_dir)
    spec, text = study_spec(quick, name)
    started = time.time()
    rows = run_study_spec(spec, text, out, data_dir, workers=workers)
    records = model_records(spec, rows)
    rates = tuple(next(f for f in spec.faults if f.name == "bit-errors").rates)
    plot = plot_study(records, out / f"{name}.png")
    table = results_table(records, rates)
    checks = ordering_check(records)
    energy = sram_energy(spec, rows)
    energy_lines = energy_findings(energy)
    elapsed = time.time() - started
    compute = sum(r["wall_s"] for r in rows)
    model = spec.models[0]
    chips = next(iter(energy.values()))["chips"] if energy else []
    calibrations = {f.calibration for f in spec.faults if isinstance(f, SRAMSpec)}
    calibration_option, calibration_text = (
        "",
        ("as the fraction of failing cells (a stored bit flips with about p/2)"),
    )
    if calibrations == {"bit_error_rate"}:
        calibration_option = " --calibration bit-error-rate"
        calibration_text = "as the rate of flipped stored bits, the paper's definition"
    summary = {
        "mode": "quick" if quick else "full",
        "spec": text,
        "records": records,
        "findings": checks + energy_lines,
        "sram": {"chips": chips, "results": energy},
        "seconds": round(elapsed, 1),
        "plot": plot.name,
        "report": str(out / f"{name}.md"),
        "store": str(out / "campaign.db"),
    }
    (out / f"{name}.json").write_text(json.dumps(summary, indent=1))
    labels = dict.fromkeys(m.label or m.name for m in spec.models)
    meanings = [
        f"{label} = {meaning}"
        for label in labels
        for key, meaning in VARIANTS.items()
        if label == key or (label.startswith(key + " ") and key != "Normal")
    ]
    lines = [
        f"# Stutz et al. 2021 reproduction: {spec.description or 'RErr under random bit errors'}",
        "",
        f"Command: `{command or f'bitrobust reproduce {name}'}` ({summary['mode']} mode; "
        f"the trials took {compute / 60:.1f} min of worker time on {platform.machine()} with "
        f"{torch.get_num_threads()} thread(s) per worker; this run {elapsed / 60:.1f} min, "
        "reusing the trained models and finished trials its campaign store already held).",
        "",
        f"Campaign spec: `bitrobust/experiments/specs/{spec.name}.toml`; every trial is a row "
        f"of `{Path(summary['store']).name}` (`bitrobust campaign report` renders it).",
        "",
        f"Model: {model.architecture} {model.options}, {model.epochs} epochs, training seeds "
        f"{', '.join(map(str, model.training_seeds))}, "
        f"train examples: {spec.data.train_limit or 'all'}, first {spec.data.test_limit} test "
        f"examples, {spec.patterns} patterns per rate "
        f"(seeds {spec.seed}..{spec.seed + spec.patterns - 1}, "
        "nested across rates). RErr = an example is wrong if the clean or the faulty model errs; "
        "values are means over patterns and training seeds in %.",
        "",
        "Variants: " + "; ".join(meanings) + ".",
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
        f"Each model on {len(chips)} synthetic chips (`bitrobust sram make-chip --seed 0..."
        f"{len(chips) - 1}{calibration_option}`: 32 arrays of 512×64 cells, p(V) from the "
        f"paper's poster {calibration_text}, row/column correlated failures, 60 % stuck-at-1) "
        "with one placement of the weights, at voltages "
        "relative to V_min; energy per access (V/V_min)². The saving is read at the lowest "
        "voltage whose mean RErr stays within the budget there and at every higher voltage of "
        "the grid.",
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
    (out / f"{name}.md").write_text("\n".join(lines))
    return summary


__all__ = ["reproduce", "study_spec"]
