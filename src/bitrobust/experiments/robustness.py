"""Per-model records of a train-and-sweep campaign (the demo, ``reproduce stutz2021``).

A study's campaign trains every variant (Normal, RQuant, Clipping, RandBET, ...) and sweeps
random bit error rates; :func:`model_records` turns the store's rows into one record per model
(Err and RErr statistics per rate), which :func:`results_table` and :func:`plot_study` render.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bitrobust import stats
from bitrobust.campaign.spec import CampaignSpec


def model_records(
    spec: CampaignSpec, rows: Sequence[dict[str, Any]], fault: str = "bit-errors"
) -> list[dict[str, Any]]:
    """One record per model of ``spec`` (in spec order) from the rows of fault entry ``fault``:
    ``name``, ``dataset``, ``bits``, ``variant`` (the model's label), ``quantization``,
    ``err``, ``examples`` and ``results`` (one row per rate: ``bit_error_rate``,
    ``rerr_mean``/``std``/``min``/``max``, ``rerr_ci_low``/``high``, ``err_faulty_mean``,
    ``flips_mean``, ``patterns``; statistics over patterns and training seeds)."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["fault"] == fault:
            by_model.setdefault(row["model"], []).append(row)
    records = []
    for model in spec.models:
        model_rows = by_model.get(model.name)
        if not model_rows:
            continue
        by_rate: dict[float, list[dict[str, Any]]] = {}
        for row in sorted(model_rows, key=lambda r: (r["training_seed"] or 0, r["pattern"])):
            by_rate.setdefault(row["x"], []).append(row)
        results = []
        for rate in sorted(by_rate):
            trials = by_rate[rate]
            rerr = stats.summarize([t["rerr"] for t in trials])
            results.append(
                {
                    "bit_error_rate": rate,
                    **{f"rerr_{k}": v for k, v in rerr.to_json(interval=False).items()},
                    "rerr_ci_low": rerr.ci_low,
                    "rerr_ci_high": rerr.ci_high,
                    "err_faulty_mean": stats.summarize([t["err_faulty"] for t in trials]).mean,
                    "flips_mean": stats.summarize([float(t["flips"]) for t in trials]).mean,
                    "patterns": len(trials),
                }
            )
        first = model_rows[0]
        records.append(
            {
                "name": model.name,
                "dataset": spec.dataset_of(model),
                "bits": model.bits,
                "variant": model.label or model.name,
                "quantization": model.quantization,
                "training_seeds": sorted({r["training_seed"] for r in model_rows}, key=str),
                "err": stats.summarize(
                    [r["err_clean"] for r in model_rows if r["pattern"] == 0]
                ).mean,
                "examples": first["examples"],
                "results": results,
            }
        )
    return records


def results_table(records: list[dict[str, Any]], rates: tuple[float, ...]) -> str:
    """Markdown: one row per model, Err then mean RErr (%) at each rate."""
    from bitrobust.report import markdown_table

    rows = []
    for record in records:
        row = {"model": f"{record['dataset']} {record['bits']} bit {record['variant']}"}
        row["Err"] = 100 * record["err"]
        by_rate = {r["bit_error_rate"]: r for r in record["results"]}
        for rate in rates:
            if rate in by_rate:
                row[f"{100 * rate:g}"] = 100 * by_rate[rate]["rerr_mean"]
        rows.append(row)
    columns = ["model", "Err"] + [f"{100 * rate:g}" for rate in rates]
    headers = ["model", "Err %"] + [f"RErr % @ p={100 * rate:g} %" for rate in rates]
    return markdown_table(rows, columns, headers)


def plot_study(records: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """One panel per (dataset, bits), one curve per variant: RErr vs p with min/max bands
    (over patterns, and training seeds where a model has several)."""
    from bitrobust.report import BAND_LABEL, plot_grid

    panels: dict[str, dict[str, list[dict]]] = {}
    for record in records:
        panel = panels.setdefault(f"{record['dataset']} {record['bits']} bit", {})
        panel[record["variant"]] = record["results"]
    seeded = any(len(record["training_seeds"]) > 1 for record in records)
    band = "shaded: min–max over patterns and training seeds" if seeded else BAND_LABEL
    return plot_grid(panels, path, band_label=band)
