"""Energy savings of robust models on low-voltage SRAM (Stutz et al. §1.8, for ``reproduce``).

The paper's claim: at ≤ 1 % extra error relative to a normally trained 8-bit model, a robust
model runs its weight memory at about 20 % lower energy; at ≤ 2.5 %, about 30 %.
:func:`run_sram_energy` evaluates several checkpoints on the same synthetic chips over a voltage
grid and finds, for every model and budget, the lowest voltage whose mean RErr stays within the
budget of the *reference* model's clean Err (see :func:`bitrobust.energy.find_operating_point`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import torch

from bitrobust.checkpoint import Checkpoint, load_checkpoint
from bitrobust.energy import DEFAULT_VOLTAGES, EnergyModel, find_operating_point, sram_evaluator
from bitrobust.errors import BitrobustError
from bitrobust.faults import SRAMChip, make_chip
from bitrobust.report import markdown_table

BUDGETS: tuple[float, ...] = (0.01, 0.025)
"""Extra error over the reference's Err: the paper's ≤ 1 % and ≤ 2.5 % (as fractions)."""


def run_sram_energy(
    models: Sequence[tuple[str, str | os.PathLike[str] | Checkpoint]],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    chips: int | Sequence[SRAMChip] = 4,
    voltages: Sequence[float] = DEFAULT_VOLTAGES,
    placements: int = 1,
    budgets: Sequence[float] = BUDGETS,
    reference: str | None = None,
    energy: EnergyModel | None = None,
    seed: int = 0,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate ``(label, checkpoint)`` pairs on chips over ``voltages``; savings per budget.

    ``chips`` is a number of synthetic chips (seeds 0..N−1, default geometry) or a list of
    chips; each chip is used with ``placements`` placements. ``reference`` names the model
    whose clean Err the budgets are measured from (default: the first). Returns
    ``{"reference", "reference_err", "chips", "rows", "savings"}``: ``rows`` has one entry per
    model and voltage (``model``, ``voltage``, ``bit_error_rate``, ``energy_saving``, ``err``,
    ``rerr_mean``, ``rerr_min``, ``rerr_max``, ...), ``savings`` one per model and budget
    (``model``, ``budget``, ``met``, ``voltage``, ``bit_error_rate``, ``energy_saving``,
    ``rerr``; the best voltage found when the budget is not met, with ``met`` False).
    """
    if not models:
        raise BitrobustError("give at least one (label, checkpoint) pair")
    labels_seen = [label for label, _ in models]
    if len(set(labels_seen)) != len(labels_seen):
        raise BitrobustError("model labels must be unique")
    reference = labels_seen[0] if reference is None else reference
    if reference not in labels_seen:
        raise BitrobustError(f"reference {reference!r} is not one of the models")
    chip_list = [make_chip(k) for k in range(chips)] if isinstance(chips, int) else list(chips)
    energy = energy or EnergyModel()

    evaluated: dict[str, tuple[float, list[dict[str, Any]]]] = {}
    for label, source in models:
        checkpoint = source if isinstance(source, Checkpoint) else load_checkpoint(source, device)
        err, evaluate = sram_evaluator(
            checkpoint.model,
            checkpoint.scheme,
            images,
            labels,
            chip_list,
            placements=placements,
            seed=seed,
            batch_size=batch_size,
        )
        # budget 1 admits everything: this only collects the rows of the whole grid.
        point = find_operating_point(evaluate, voltages, 1.0, err, energy=energy)
        evaluated[label] = (err, point.rows)
        if progress:
            logging.getLogger(__name__).info(
                f"  {label}: Err {100 * err:.2f} %, {len(point.rows)} voltages"
            )

    return {
        **energy_savings(evaluated, voltages, budgets, reference, energy),
        "chips": [chip.id for chip in chip_list],
        "placements": placements,
    }


def energy_savings(
    evaluated: dict[str, tuple[float, list[dict[str, Any]]]],
    voltages: Sequence[float],
    budgets: Sequence[float] = BUDGETS,
    reference: str | None = None,
    energy: EnergyModel | None = None,
) -> dict[str, Any]:
    """Per model and budget, the lowest voltage within the budget over ``reference``'s Err.

    ``evaluated`` maps a model label to its clean Err and its rows over the voltage grid (from
    :func:`~bitrobust.energy.find_operating_point` with budget 1). Returns ``reference``,
    ``reference_err``, ``energy_model``, ``rows`` and ``savings`` (see :func:`run_sram_energy`).
    """
    energy = energy or EnergyModel()
    reference = next(iter(evaluated)) if reference is None else reference
    reference_err = evaluated[reference][0]
    rows, savings = [], []
    for label, (err, model_rows) in evaluated.items():
        for row in model_rows:
            rows.append({"model": label, "err": err, **_public(row)})
        lookup = {row["voltage"]: row for row in model_rows}
        for budget in budgets:
            point = find_operating_point(
                lambda v, lookup=lookup: lookup[v], voltages, budget, reference_err, energy=energy
            )
            chosen = point.row or point.best
            savings.append(
                {
                    "model": label,
                    "budget": budget,
                    "met": point.met,
                    "voltage": chosen["voltage"],
                    "bit_error_rate": chosen.get("bit_error_rate"),
                    "failing_cells": chosen.get("failing_cells"),
                    "energy_saving": chosen["energy_saving"] if point.met else 0.0,
                    "rerr": chosen["rerr"],
                }
            )
    return {
        "reference": reference,
        "reference_err": reference_err,
        "energy_model": energy.name,
        "rows": rows,
        "savings": savings,
    }


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A search row without the search-specific fields (they depend on the budget)."""
    return {k: v for k, v in row.items() if k not in ("rerr", "excess", "admissible")}


def _percent(value: float | None) -> str | None:
    return None if value is None else f"{100 * value:.3g}"


def savings_table(result: dict[str, Any]) -> str:
    """Markdown: per model and budget, the voltage, bit error rate p (the probability that a
    stored bit flips), the fraction of failing cells, RErr and energy saving."""
    rows = [
        {
            "model": s["model"],
            "budget": f"≤ +{100 * s['budget']:g} %",
            "voltage": f"{s['voltage']:.2f}" if s["met"] else f"none (best {s['voltage']:.2f})",
            "p": None if s["bit_error_rate"] is None else f"{100 * s['bit_error_rate']:.3g}",
            "failing": None
            if s.get("failing_cells") is None
            else f"{100 * s['failing_cells']:.3g}",
            "rerr": 100 * s["rerr"],
            "saving": 100 * s["energy_saving"],
        }
        for s in result["savings"]
    ]
    headers = [
        "model", "extra error", "V / V_min", "p (%)", "failing cells (%)", "RErr (%)",
        "energy saving (%)",
    ]  # fmt: skip
    columns = ["model", "budget", "voltage", "p", "failing", "rerr", "saving"]
    return markdown_table(rows, columns, headers)


def voltage_table(result: dict[str, Any]) -> str:
    """Markdown: mean RErr (%) per model (rows) and voltage (columns)."""
    voltages = sorted({row["voltage"] for row in result["rows"]}, reverse=True)
    table: dict[str, dict[str, Any]] = {}
    for row in result["rows"]:
        entry = table.setdefault(row["model"], {"model": row["model"], "err": 100 * row["err"]})
        entry[f"{row['voltage']:g}"] = 100 * row["rerr_mean"]
    columns = ["model", "err", *(f"{v:g}" for v in voltages)]
    headers = ["model", "Err", *(f"V={v:g}" for v in voltages)]
    return markdown_table(list(table.values()), columns, headers)
