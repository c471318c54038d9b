"""``bitrobust reproduce bnn2021``: bit error tolerance metrics of BNNs (Buschjäger et al. 2021).

On Fashion-MNIST, trains the binarized FC network (bnn-mlp) with bit flip injection training
(BFIT) at rates {0, 5, 10, 20} % and with the modified hinge loss (MHL, no injection); measures
accuracy under random bit errors at 0–30 %, the neuron-level metric (margins to the folded
batch-norm thresholds, per layer) and the inter-neuron metric (variance of neuron importance,
per layer); and reports the Spearman correlation, across models, of each metric with the
accuracy at 10 % and 20 %. Writes ``bnn2021.md``, ``bnn2021.png`` (accuracy vs bit error rate),
``bnn2021_metrics.png`` (margin histograms, importance variance) and ``bnn2021.json``.

Checkpoints and per-model results are cached in the output folder, so the study resumes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from bitrobust import stats
from bitrobust.bnn import accuracy, bnn_metrics, correlations
from bitrobust.checkpoint import load_checkpoint, save_checkpoint
from bitrobust.data import dataset_info, load_splits, subset
from bitrobust.evaluate import QuantizedDeployment, clean_run, run_trial
from bitrobust.experiments import COMMITTED_SAMPLER
from bitrobust.faults import RandomBitErrors
from bitrobust.models.architecture import Architecture
from bitrobust.quant import BINARY
from bitrobust.report import markdown_table, plot_bnn_metrics, plot_error_curves
from bitrobust.train import TrainConfig, train


@dataclass(frozen=True)
class BnnVariant:
    """One way of training the BNN: bit flip injection at a rate, and/or the hinge loss."""

    label: str
    bit_error_rate: float = 0.0  # BFIT training rate; 0 means plain training
    loss: str = "cross_entropy"
    hinge_b: float = 128.0

    @property
    def method(self) -> str:
        return "bitflip" if self.bit_error_rate > 0 else "normal"

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.label.lower().replace("%", "pct")).strip("-")


BFIT_VARIANTS = tuple(BnnVariant(f"BFIT {rate:g} %", rate / 100) for rate in (0, 5, 10, 20))


@dataclass
class BnnStudySettings:
    """What to train, how to sweep it and how much data the metrics see."""

    dataset: str = "fashion-mnist"
    model: str = "bnn-mlp"
    model_options: dict[str, Any] = field(default_factory=dict)
    variants: tuple[BnnVariant, ...] = (*BFIT_VARIANTS, BnnVariant("MHL b=128", loss="hinge"))
    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    train_limit: int | None = None
    test_limit: int | None = 5000
    bit_error_rates: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
    patterns: int = 5
    metric_examples: int = 1000  # the first N test examples
    importance_neurons: int | None = 256  # flip importance: neurons sampled per layer
    correlation_rates: tuple[float, ...] = (0.1, 0.2)
    seed: int = 0


def settings(quick: bool) -> BnnStudySettings:
    """The full run (about 1–1.5 hours on 2 cores) or the quick one (under 15 minutes)."""
    if quick:
        return BnnStudySettings(
            model_options={"hidden": [512, 512]},
            epochs=3,
            train_limit=30000,
            test_limit=2000,
            bit_error_rates=(0.0, 0.01, 0.05, 0.1, 0.15, 0.2, 0.3),
            patterns=3,
            importance_neurons=128,
        )
    return BnnStudySettings(
        variants=(
            *BFIT_VARIANTS,
            BnnVariant("MHL b=32", loss="hinge", hinge_b=32.0),
            BnnVariant("MHL b=128", loss="hinge", hinge_b=128.0),
        ),
        model_options={"hidden": [2048, 2048]},
        epochs=6,
    )


def reproduce(
    out_dir: str | os.PathLike,
    quick: bool,
    data_dir: str | os.PathLike | None = None,
    command: str = "",
    device: str | None = None,
) -> dict[str, Any]:
    """Run the study with the quick or full settings; see :func:`run`."""
    return run(settings(quick), out_dir, "quick" if quick else "full", data_dir, command, device)


def run(
    study: BnnStudySettings,
    out_dir: str | os.PathLike,
    mode: str = "custom",
    data_dir: str | os.PathLike | None = None,
    command: str = "",
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, sweep and measure every variant, then write the report to ``out_dir``."""
    out = Path(out_dir)
    started = time.time()
    records = run_models(study, out, data_dir, device, progress)
    correlation_rows = correlation_table_rows(records, study.correlation_rates)
    findings = summarize(records, correlation_rows, study)
    accuracy_plot = plot_accuracy(records, out / "bnn2021.png")
    metrics_plot = plot_bnn_metrics(
        {record["variant"]: record["metrics"]["layers"] for record in records},
        out / "bnn2021_metrics.png",
    )
    elapsed = time.time() - started
    summary = {
        "mode": mode,
        "settings": {**asdict(study), "variants": [asdict(v) for v in study.variants]},
        "records": records,
        "correlations": correlation_rows,
        "findings": findings,
        "seconds": round(elapsed, 1),
        "plots": [accuracy_plot.name, metrics_plot.name],
        "report": str(out / "bnn2021.md"),
    }
    (out / "bnn2021.json").write_text(json.dumps(summary, indent=1))
    (out / "bnn2021.md").write_text(
        report_text(study, records, correlation_rows, findings, summary, command, elapsed)
    )
    return summary


def run_models(
    study: BnnStudySettings,
    out: Path,
    data_dir: str | os.PathLike | None,
    device: str | None,
    progress: bool,
) -> list[dict[str, Any]]:
    """One record per variant (accuracy sweep + metrics), cached in ``out/results``."""
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "results").mkdir(parents=True, exist_ok=True)
    train_set, test_set = load_splits(study.dataset, data_dir)
    train_set = subset(train_set, study.train_limit)
    images, labels = subset(test_set, study.test_limit).tensors
    records = []
    for variant in study.variants:
        name = f"{study.dataset}-{study.model}-{variant.slug}"
        result_path = out / "results" / f"{name}.json"
        if result_path.exists():
            _log(f"[{name}] cached result")
            records.append(json.loads(result_path.read_text()))
            continue
        ckpt_path = out / "checkpoints" / f"{name}.safetensors"
        started = time.time()
        if ckpt_path.exists():
            _log(f"[{name}] cached checkpoint")
            model = load_checkpoint(ckpt_path, device or "cpu").model
        else:
            model = train_variant(study, variant, train_set, ckpt_path, device, progress)
        train_seconds = time.time() - started
        started = time.time()
        _log(f"[{name}] accuracy under bit errors, {study.patterns} patterns per rate")
        sweep = accuracy_sweep(model, images, labels, study.bit_error_rates, study.patterns)
        clean_accuracy = accuracy(model, images, labels)
        eval_seconds = time.time() - started
        started = time.time()
        _log(f"[{name}] margins and importance on {study.metric_examples} examples")
        count = study.metric_examples
        metrics = bnn_metrics(
            model,
            images[:count],
            labels[:count],
            importance="flip",
            max_neurons=study.importance_neurons,
            seed=study.seed,
        )
        record = {
            "name": name,
            "variant": variant.label,
            "variant_spec": asdict(variant),
            "accuracy": clean_accuracy,
            "sweep": sweep,
            "metrics": metrics,
            "train_seconds": round(train_seconds, 1),
            "eval_seconds": round(eval_seconds, 1),
            "metric_seconds": round(time.time() - started, 1),
        }
        _log(f"[{name}] clean accuracy {100 * record['accuracy']:.2f} %")
        tmp = result_path.with_name(result_path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, result_path)
        records.append(record)
    return records


def train_variant(
    study: BnnStudySettings,
    variant: BnnVariant,
    train_set,
    ckpt_path: Path,
    device: str | None,
    progress: bool,
) -> torch.nn.Module:
    """Train one BNN (Adam, no weight decay) and save its checkpoint."""
    info = dataset_info(study.dataset)
    architecture = Architecture.for_dataset(study.model, info.name, study.model_options)
    torch.manual_seed(study.seed)
    model = architecture.build()
    config = TrainConfig(
        method=variant.method,
        epochs=study.epochs,
        batch_size=study.batch_size,
        lr=study.lr,
        optimizer="adam",
        weight_decay=0.0,
        bit_error_rate=variant.bit_error_rate,
        loss=variant.loss,
        hinge_b=variant.hinge_b,
        seed=study.seed,
        progress=progress,
    )
    _log(f"[{ckpt_path.stem}] training {study.model} ({variant.label})")
    history = train(model, BINARY, train_set, config, device=device)
    save_checkpoint(
        ckpt_path, model, architecture, BINARY, {**config.to_dict(), "loss_history": history.loss}
    )
    return model


def accuracy_sweep(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    rates: tuple[float, ...],
    patterns: int,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Accuracy (1 − error of the faulty model) and RErr per symmetric bit error rate, over
    seeded patterns (seeds ``seed``..``seed + patterns - 1``, nested across rates)."""
    deployment = QuantizedDeployment(model, BINARY)
    data = (images, labels)
    clean = clean_run(deployment, data)
    rows = []
    for rate in rates:
        faults = RandomBitErrors(rate, sampler=COMMITTED_SAMPLER)
        trials = [
            run_trial(deployment, faults, seed + k, data, clean)
            for k in range(patterns if rate > 0 else 1)
        ]
        accuracies = stats.summarize([1 - trial.err_faulty for trial in trials])
        rows.append(
            {
                "bit_error_rate": rate,
                "accuracy_mean": accuracies.mean,
                "accuracy_min": accuracies.min,
                "accuracy_max": accuracies.max,
                "rerr_mean": stats.summarize([trial.rerr for trial in trials]).mean,
                "patterns": len(trials),
            }
        )
    return rows


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
    records: list[dict[str, Any]], correlation_rows: list[dict[str, Any]], study: BnnStudySettings
) -> list[str]:
    """Findings: accuracy at the correlation rates, whether BFIT widens the margins, and the
    headline correlations (mean over layers) against the expected signs."""
    lines = []
    for rate in study.correlation_rates:
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
    study: BnnStudySettings,
    records: list[dict[str, Any]],
    correlation_rows: list[dict[str, Any]],
    findings: list[str],
    summary: dict[str, Any],
    command: str,
    elapsed: float,
) -> str:
    """The Markdown report."""
    rates = study.bit_error_rates
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
    correlation_table = _correlation_table(correlation_rows, study.correlation_rates)
    options = study.model_options or "default widths"
    lines = [
        "# Buschjäger et al. 2021 reproduction: bit error tolerance metrics of BNNs",
        "",
        f"Command: `{command or 'bitrobust reproduce bnn2021'}` ({summary['mode']} mode, "
        f"{elapsed / 60:.1f} min on {platform.machine()} with {torch.get_num_threads()} threads).",
        "",
        f"Model: {study.model} {options} on {study.dataset}, {study.epochs} epochs of Adam "
        f"(lr {study.lr:g}, batch {study.batch_size}), train examples: "
        f"{study.train_limit or 'all'}; first {study.test_limit or 'all'} test examples for the "
        f"accuracy sweep ({study.patterns} seeded patterns per rate, nested across rates), first "
        f"{study.metric_examples} for the metrics (importance on up to "
        f"{study.importance_neurons or 'all'} random neurons per layer).",
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
