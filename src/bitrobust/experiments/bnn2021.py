"""``bitrobust reproduce bnn2021``: bit error tolerance metrics of BNNs (Buschjäger et al. 2021).

On Fashion-MNIST, trains the binarized FC network (bnn-mlp) with bit flip injection training
(BFIT) at rates {0, 5, 10, 20} % and with the modified hinge loss (MHL, no injection); measures
accuracy under random bit errors at 0–30 %, the neuron-level metric (margins to the folded
batch-norm thresholds, per layer) and the inter-neuron metric (variance of neuron importance,
per layer); and reports the Spearman correlation, across models, of each metric with the
accuracy at 10 % and 20 %. Writes ``bnn2021.md``, ``bnn2021.png`` (accuracy vs bit error rate),
``bnn2021_metrics.png`` (margin histograms, importance variance) and ``bnn2021.json``.

The training and the accuracy sweep are the packaged campaign ``specs/bnn2021.toml`` (or
``specs/bnn2021-quick.toml``), run into ``<out-dir>/campaign.db`` with the trained models in
``<out-dir>/checkpoints/``: a rerun resumes, and a changed spec retrains and re-evaluates only
what it changes. The margin and importance metrics are not trials; they are computed from each
trained checkpoint every time the report is made (seconds per model), and not cached.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bitrobust import stats
from bitrobust.bnn import bnn_metrics, correlations
from bitrobust.campaign.plan import training_jobs
from bitrobust.campaign.spec import CampaignSpec, ModelSpec
from bitrobust.checkpoint import load_checkpoint
from bitrobust.data import load_dataset, subset
from bitrobust.errors import BitrobustError
from bitrobust.experiments.campaigns import STORE_NAME, packaged_spec, run_study_spec
from bitrobust.report import markdown_table, plot_bnn_metrics, plot_error_curves

FAULT = "bit-errors"
"""The spec's fault entry that the accuracy sweep reads."""


@dataclass(frozen=True)
class MetricSettings:
    """How much the margin and importance metrics see, and which accuracies they are
    correlated with (the rest of the study is its campaign spec)."""

    examples: int = 1000  # the first N test examples
    importance_neurons: int | None = 256  # flip importance: neurons sampled per layer
    correlation_rates: tuple[float, ...] = (0.1, 0.2)


def study_spec(quick: bool) -> tuple[CampaignSpec, str]:
    """The packaged spec: ``specs/bnn2021.toml`` (about 1–1.5 hours on 2 cores) or
    ``specs/bnn2021-quick.toml`` (under 15 minutes)."""
    return packaged_spec("bnn2021-quick" if quick else "bnn2021")


def metric_settings(quick: bool) -> MetricSettings:
    """The metrics' settings of the full run, or of the quick one (fewer sampled neurons)."""
    return MetricSettings(importance_neurons=128) if quick else MetricSettings()


def reproduce(
    out_dir: str | os.PathLike,
    quick: bool,
    data_dir: str | os.PathLike | None = None,
    command: str = "",
    device: str | None = None,
    workers: int | None = 1,
) -> dict[str, Any]:
    """Run the study's campaign into ``out_dir``, compute the metrics of every trained model
    (on ``device``, default CPU) and write the report there."""
    out = Path(out_dir)
    spec, text = study_spec(quick)
    settings = metric_settings(quick)
    started = time.time()
    rows = run_study_spec(spec, text, out, data_dir, workers=workers)
    records = variant_records(spec, rows, out / "checkpoints", settings, data_dir, device)
    correlation_rows = correlation_table_rows(records, settings.correlation_rates)
    findings = summarize(records, correlation_rows, settings.correlation_rates)
    accuracy_plot = plot_accuracy(records, out / "bnn2021.png")
    metrics_plot = plot_bnn_metrics(
        {record["variant"]: record["metrics"]["layers"] for record in records},
        out / "bnn2021_metrics.png",
    )
    elapsed = time.time() - started
    summary = {
        "mode": "quick" if quick else "full",
        "spec": text,
        "metric_settings": asdict(settings),
        "records": records,
        "correlations": correlation_rows,
        "findings": findings,
        "seconds": round(elapsed, 1),
        "compute_seconds": round(sum(r["wall_s"] for r in rows), 1),
        "plots": [accuracy_plot.name, metrics_plot.name],
        "report": str(out / "bnn2021.md"),
        "store": str(out / STORE_NAME),
    }
    (out / "bnn2021.json").write_text(json.dumps(summary, indent=1))
    (out / "bnn2021.md").write_text(
        report_text(spec, settings, records, correlation_rows, findings, summary, command)
    )
    return summary


def variant_spec(model: ModelSpec) -> dict[str, Any]:
    """How a variant was trained: its label, BFIT rate (0 for plain training), loss and b."""
    from bitrobust.train import TrainConfig  # its defaults: what a spec leaves out

    rate = TrainConfig.bit_error_rate if model.bit_error_rate is None else model.bit_error_rate
    return {
        "label": model.label or model.name,
        "bit_error_rate": rate if model.method == "bitflip" else 0.0,
        "loss": model.loss or TrainConfig.loss,
        "hinge_b": TrainConfig.hinge_b if model.hinge_b is None else model.hinge_b,
    }


def variant_records(
    spec: CampaignSpec,
    rows: list[dict[str, Any]],
    checkpoint_dir: Path,
    settings: MetricSettings,
    data_dir: str | os.PathLike | None = None,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """One record per model of ``spec`` (in spec order): ``name``, ``variant`` (its label),
    ``variant_spec``, ``accuracy`` (clean), ``sweep`` (:func:`sweep_rows`) and ``metrics``
    (:func:`bitrobust.bnn.bnn_metrics` of its checkpoint on the first ``settings.examples``
    test examples, recomputed on every call)."""
    checkpoints: dict[str, str] = {}
    for job in training_jobs(spec, checkpoint_dir):
        if job.model in checkpoints:
            raise BitrobustError(
                f"model {job.model!r}: bnn2021 correlates one trained model per variant; "
                "give it one training seed"
            )
        checkpoints[job.model] = job.checkpoint
    tests: dict[str, Any] = {}
    records = []
    for model in spec.models:
        mine = sorted(
            (r for r in rows if r["model"] == model.name and r["fault"] == FAULT),
            key=lambda r: r["pattern"],
        )
        if not mine:
            continue
        examples = mine[0]["examples"]
        started = time.time()
        _log(f"[{model.name}] margins and importance on {settings.examples} examples")
        dataset = spec.dataset_of(model)
        if dataset not in tests:
            tests[dataset] = load_dataset(dataset, "test", data_dir)
        count = min(settings.examples, spec.data.test_limit or settings.examples)
        images, labels = subset(tests[dataset], count).tensors
        network = load_checkpoint(checkpoints[model.name], device or "cpu").model
        metrics = bnn_metrics(
            network,
            images,
            labels,
            importance="flip",
            max_neurons=settings.importance_neurons,
            seed=spec.seed,
        )
        records.append(
            {
                "name": model.name,
                "variant": model.label or model.name,
                "variant_spec": variant_spec(model),
                # the fault-free error as a count of examples: the exact clean accuracy
                "accuracy": (examples - round(mine[0]["err_clean"] * examples)) / examples,
                "sweep": sweep_rows(mine),
                "metrics": metrics,
                "checkpoint": Path(checkpoints[model.name]).name,
                "eval_seconds": round(sum(r["wall_s"] for r in mine), 1),
                "metric_seconds": round(time.time() - started, 1),
            }
        )
        _log(f"[{model.name}] clean accuracy {100 * records[-1]['accuracy']:.2f} %")
    return records


def sweep_rows(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per bit error rate of one model's trial rows (sorted by pattern): accuracy (1 − error
    of the faulty model) mean/min/max and mean RErr over the patterns. At rate 0 every pattern
    is the clean model, and the row holds one."""
    by_rate: dict[float, list[dict[str, Any]]] = {}
    for row in rows:
        by_rate.setdefault(row["x"], []).append(row)
    result = []
    for rate in sorted(by_rate):
        trials = by_rate[rate] if rate > 0 else by_rate[rate][:1]
        accuracies = stats.summarize([1 - trial["err_faulty"] for trial in trials])
        result.append(
            {
                "bit_error_rate": rate,
                "accuracy_mean": accuracies.mean,
                "accuracy_min": accuracies.min,
                "accuracy_max": accuracies.max,
                "rerr_mean": stats.summarize([trial["rerr"] for trial in trials]).mean,
                "patterns": len(trials),
            }
        )
    return result


#: Metrics correlated with the accuracy under bit errors, and the sign the paper leads one to
#: expect: larger margins and more evenly spread importance (lower variance) mean more tolerance.
CORRELATED_METRICS = {
    "margin_normalized_mean": ("NLM: margin / fan-in", +1),
    "margin_tolerable_flips_mean": ("NLM: tolerable flips", +1),
    "margin_zero_flips_fraction": ("fraction of 0-flip neurons", -1),
    "importance_variance": ("INM: importance variance (accuracy drop)", -1),
    "importance_loss_variance": ("INM: importance variance (loss rise)", -1),
}


def accuracy_at(record: dict[str, Any], rate: float) -> float | None:
    """The record's mean accuracy at bit error rate ``rate`` (None if not swept)."""
    for row in record["sweep"]:
        if math.isclose(row["bit_error_rate"], rate):
            return row["accuracy_mean"]
    return None


MEAN_SCOPE = "all layers (mean)"
HEADLINE_METRICS = ("margin_normalized_mean", "margin_tolerable_flips_mean", "importance_variance")


def correlation_table_rows(
    records: list[dict[str, Any]], rates: tuple[float, ...]
) -> list[dict[str, Any]]:
    """Spearman ρ across models of each metric with the accuracy at each rate: over all
    models (metrics averaged over layers, and per layer) and over the BFIT models alone."""
    groups = {"all": records}
    bfit = [r for r in records if r["variant_spec"]["loss"] == "cross_entropy"]
    if 3 <= len(bfit) < len(records):
        groups["BFIT only"] = bfit
    rows = []
    for group, members in groups.items():
        scopes = {MEAN_SCOPE: [record["metrics"]["model"] for record in members]}
        if group == "all" and members:
            for index, layer in enumerate(members[0]["metrics"]["layers"]):
                label = f"{layer['layer']} ({layer['description']})"
                scopes[label] = [record["metrics"]["layers"][index] for record in members]
        for rate in rates:
            accuracies = [accuracy_at(record, rate) for record in members]
            if len(members) < 2 or any(a is None for a in accuracies):
                continue
            for scope, metrics in scopes.items():
                rhos = correlations(metrics, accuracies)  # type: ignore[arg-type]
                for key, (label, expected) in CORRELATED_METRICS.items():
                    if key in rhos:
                        rows.append(
                            {
                                "models": f"{group} ({len(members)})",
                                "rate": rate,
                                "scope": scope,
                                "metric": key,
                                "label": label,
                                "expected_sign": expected,
                                "spearman": rhos[key],
                            }
                        )
    return rows


def summarize(
    records: list[dict[str, Any]],
    correlation_rows: list[dict[str, Any]],
    rates: tuple[float, ...],
) -> list[str]:
    """Findings: accuracy at the correlation rates, whether BFIT widens the margins, and the
    headline correlations (mean over layers) against the expected signs."""
    lines = []
    for rate in rates:
        values = ", ".join(
            f"{record['variant']} {_pct(accuracy_at(record, rate))}" for record in records
        )
        lines.append(f"- Accuracy at {100 * rate:g} % bit errors: {values}.")
    bfit = sorted(
        (r for r in records if r["variant_spec"]["loss"] == "cross_entropy"),
        key=lambda r: r["variant_spec"]["bit_error_rate"],
    )
    flips = [r["metrics"]["model"]["margin_tolerable_flips_mean"] for r in bfit]
    if len(bfit) >= 2 and None not in flips:
        pairs = ", ".join(f"{r['variant']} {value:.2f}" for r, value in zip(bfit, flips))
        grows = all(a < b for a, b in zip(flips, flips[1:]))
        lines.append(
            f"- Tolerable weight flips per neuron (mean over layers): {pairs}; "
            f"{'grows' if grows else 'does NOT grow'} with the BFIT rate (expected: grows)."
        )
    headline = {}
    for row in correlation_rows:
        if row["scope"] == MEAN_SCOPE and row["metric"] in HEADLINE_METRICS:
            headline.setdefault((row["rate"], row["models"]), []).append(row)
    for (rate, models), rows in headline.items():
        parts, agree = [], 0
        for row in rows:
            rho = row["spearman"]
            parts.append(f"{row['label']} {'–' if rho is None else f'{rho:+.2f}'}")
            agree += rho is not None and rho * row["expected_sign"] > 0
        lines.append(
            f"- Spearman ρ with accuracy at {100 * rate:g} %, {models} models: "
            f"{'; '.join(parts)} — {agree} of {len(rows)} with the expected sign "
            "(+ for margins, − for importance variance)."
        )
    return lines


def report_text(
    spec: CampaignSpec,
    settings: MetricSettings,
    records: list[dict[str, Any]],
    correlation_rows: list[dict[str, Any]],
    findings: list[str],
    summary: dict[str, Any],
    command: str,
) -> str:
    """The Markdown report."""
    fault = next(f for f in spec.faults if f.name == FAULT)
    rates = tuple(fault.rates)
    accuracy_rows = []
    for record in records:
        row: dict[str, Any] = {"model": record["variant"]}
        for rate in rates:
            row[f"{rate}"] = _scaled(accuracy_at(record, rate))
        accuracy_rows.append(row)
    accuracy_table = markdown_table(
        accuracy_rows,
        ["model"] + [f"{rate}" for rate in rates],
        ["model"] + [f"acc. % @ {100 * rate:g} %" for rate in rates],
    )
    layer_rows = []
    for record in records:
        for layer in record["metrics"]["layers"]:
            layer_rows.append(
                {
                    "model": record["variant"],
                    "layer": f"{layer['layer']} ({layer['description']})",
                    **layer,
                }
            )
    layer_table = markdown_table(
        layer_rows,
        [
            "model",
            "layer",
            "margin_mean",
            "margin_normalized_mean",
            "margin_tolerable_flips_mean",
            "margin_zero_flips_fraction",
            "importance_mean",
            "importance_variance",
            "importance_loss_variance",
        ],
        [
            "model",
            "layer",
            "margin |a−τ|",
            "margin / fan-in",
            "tolerable flips",
            "0-flip fraction",
            "importance (acc. drop)",
            "importance var.",
            "importance var. (loss)",
        ],
        floatfmt=".4g",
    )
    correlation_table = _correlation_table(correlation_rows, settings.correlation_rates)
    model = spec.models[0]
    options = model.options or "default widths"
    patterns = fault.patterns or spec.patterns
    lines = [
        "# Buschjäger et al. 2021 reproduction: bit error tolerance metrics of BNNs",
        "",
        f"Command: `{command or 'bitrobust reproduce bnn2021'}` ({summary['mode']} mode; "
        f"the trials took {summary['compute_seconds'] / 60:.1f} min of worker time on "
        f"{platform.machine()} with {torch.get_num_threads()} thread(s) per worker; this run "
        f"{summary['seconds'] / 60:.1f} min, reusing the trained models and finished trials in "
        "its campaign store).",
        "",
        f"Campaign spec: `bitrobust/experiments/specs/{spec.name}.toml`; every trial is a row "
        f"of `{Path(summary['store']).name}` (`bitrobust campaign report` renders it). The "
        "metrics are computed from the trained checkpoints each time this report is made.",
        "",
        f"Model: {model.architecture} {options} on {spec.dataset_of(model)}, {model.epochs} "
        f"epochs of Adam (lr {model.lr:g}, batch {model.batch_size}), train examples: "
        f"{spec.data.train_limit or 'all'}; first {spec.data.test_limit or 'all'} test examples "
        f"for the accuracy sweep ({patterns} seeded patterns per rate, nested across rates), "
        f"first {settings.examples} for the metrics (importance on up to "
        f"{settings.importance_neurons or 'all'} random neurons per layer).",
        "",
        "Variants: BFIT p = random sign flips of the binary weights and biases at rate p on every "
        "training forward pass (BFIT 0 % is plain training); MHL b = modified hinge loss with "
        "margin b, no injection. Bit errors at test time flip the stored 1-bit codes "
        "(−1 ↔ +1) at the given rate; batch norm and the output scale stay float.",
        "",
        "## Accuracy under random bit errors",
        "",
        accuracy_table,
        f"![accuracy vs bit error rate]({summary['plots'][0]})",
        "",
        "## Metrics per layer",
        "",
        "Margin = |a − τ| of every pre-activation to its folded batch-norm threshold (mean over "
        "neurons, test examples and positions); tolerable flips = ⌈margin / 2⌉ − 1 (the first "
        "layer, with real inputs, uses 2·max|x| per flip); 0-flip fraction = share of neuron "
        "outputs that a single weight flip can change. Importance = accuracy drop when the "
        "neuron's output is flipped for all examples; its variance over neurons is the INM.",
        "",
        layer_table,
        f"![margin histograms and importance variance]({summary['plots'][1]})",
        "",
        "## Correlation with accuracy under bit errors",
        "",
        "Spearman rank correlation across models (all of them, and the BFIT models alone) of "
        "each metric with the accuracy under bit errors. The loss-based importance variance "
        "also scales with the size of the logits, which the hinge loss makes larger.",
        "",
        correlation_table,
        "## Findings",
        "",
        *findings,
        "",
    ]
    return "\n".join(lines)


def _correlation_table(rows: list[dict[str, Any]], rates: tuple[float, ...]) -> str:
    """Markdown: one row per (models, layers, metric), one Spearman column per accuracy rate."""
    table: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        entry = table.setdefault(
            (row["models"], row["scope"], row["metric"]),
            {
                "models": row["models"],
                "scope": row["scope"],
                "label": row["label"],
                "expected": "+" if row["expected_sign"] > 0 else "−",
            },
        )
        entry[f"{row['rate']}"] = row["spearman"]
    columns = ["models", "scope", "label", "expected"] + [f"{rate}" for rate in rates]
    headers = ["models", "layers", "metric", "expected sign"]
    headers += [f"ρ @ {100 * rate:g} %" for rate in rates]
    return markdown_table(list(table.values()), columns, headers)


def plot_accuracy(records: list[dict[str, Any]], path: Path) -> Path:
    """Accuracy vs bit error rate, one line per model, min/max over patterns as a band."""
    curves = {record["variant"]: record["sweep"] for record in records}
    return plot_error_curves(
        curves,
        path,
        y="accuracy_mean",
        y_low="accuracy_min",
        y_high="accuracy_max",
        title="BNN accuracy under random bit errors",
        ylabel="accuracy (%)",
        logx=False,
    )


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _scaled(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _log(message: str) -> None:
    """Progress of the study: the ``bitrobust`` logger at INFO (the CLI shows it on stderr)."""
    logging.getLogger(__name__).info(message)


__all__ = ["reproduce", "study_spec"]
