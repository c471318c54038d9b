"""``bitrobust reproduce bnn2021``: bit error tolerance metrics of BNNs (Buschjäger et al. 2021).

On Fashion-MNIST, trains two binarized networks, the FC net (bnn-mlp) and the CNN VGG3, each
with bit flip injection training (BFIT) at rates {0, 5, 10, 20} % and with the modified hinge
loss (MHL, b = 32 and 128, no injection), several training seeds per configuration. It measures:

- accuracy under random bit errors (the campaign's trials);
- the neuron-level metric (NLM: margins to the folded batch-norm thresholds, per layer), as
  margin / fan-in, tolerable weight flips and the fraction of neurons a single flip changes;
- the inter-neuron metric (INM: variance of neuron importance, per layer), importance being the
  accuracy drop or the loss rise when a neuron's output is flipped, on the first ``examples``
  test examples (its resolution, 1/examples, is reported with it);
- the Spearman correlation of each metric with the accuracy at 10 % and 20 % bit errors over
  all (model, training seed) points, pooled over the architectures and per architecture, with a
  permutation p-value and a bootstrap interval over the points; every metric with its expected
  and its observed sign.

Writes ``bnn2021.md``, ``bnn2021.png`` (accuracy vs bit error rate, one panel per architecture),
``bnn2021_metrics_<architecture>.png`` (margin histograms, importance variance) and
``bnn2021.json`` (one record per model and training seed, and the correlations).

The training and the accuracy sweep are the packaged campaign ``specs/bnn2021.toml`` (or
``specs/bnn2021-quick.toml``), made by :func:`spec_text` from :class:`StudySettings` (a test
keeps them equal) and run into ``<out-dir>/campaign.db`` with the trained models in
``<out-dir>/checkpoints/``: a rerun resumes, and a changed spec retrains and re-evaluates only
what it changes. The metrics are not trials: they are computed from each trained checkpoint on
the study's workers and cached in ``<out-dir>/metrics/`` by checkpoint and metric settings.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from bitrobust import stats
from bitrobust.bnn import bnn_metrics
from bitrobust.campaign.executors import StopFlag, make_executor
from bitrobust.campaign.plan import digest, training_jobs
from bitrobust.campaign.spec import CampaignSpec, ModelSpec
from bitrobust.checkpoint import load_checkpoint
from bitrobust.data import load_dataset, subset
from bitrobust.errors import BitrobustError
from bitrobust.experiments.campaigns import (
    SPECS,
    STORE_NAME,
    packaged_spec,
    provenance_line,
    run_study_spec,
)
from bitrobust.provenance import provenance
from bitrobust.report import markdown_table, plot_bnn_metrics, plot_grid

FAULT = "bit-errors"
DESCRIPTION = "Buschjäger et al. 2021: BNN accuracy under random bit errors, BFIT and MHL"
"""The spec's fault entry that the accuracy sweep reads."""

ARCHITECTURE_SLUGS = {"bnn-mlp": "mlp"}
"""How model names and records name an architecture (default: its registered name)."""


@dataclass(frozen=True)
class MetricSettings:
    """How much the margin and importance metrics see, and how they are correlated with the
    accuracies (the rest of the study is its campaign spec)."""

    examples: int = 10000  # the first N test examples (of the whole test set, not test_limit)
    architecture_examples: tuple[tuple[str, int], ...] = ()  # per architecture, e.g. vgg3
    importance_neurons: int | None = None  # flip importance: neurons sampled per layer (all)
    correlation_rates: tuple[float, ...] = (0.1, 0.2)
    confidence: float = 0.95
    resamples: int = 10_000  # bootstrap resamples of the (model, seed) points
    permutations: int = 10_000  # of the permutation test (exact for up to 8 points)
    seed: int = 0  # of the neuron sample, the permutations and the bootstrap

    def examples_for(self, architecture: str) -> int:
        """The number of test examples the metrics of ``architecture`` (a slug) see."""
        return dict(self.architecture_examples).get(architecture, self.examples)


# -- the study's settings and its spec --------------------------------------------------------


@dataclass(frozen=True)
class UnitCosts:
    """Seconds of one worker (one thread) of this network: a training epoch per example, a
    test example of a trial, an example of the metrics (margins and importance of all
    neurons). See :data:`COST_NOTE` for how they were measured."""

    train_example_epoch: float
    trial_example: float
    metric_example: float


@dataclass(frozen=True)
class Network:
    """One architecture of the study: its slug in model names, registered name, label,
    options (a TOML inline table), training epochs and unit costs."""

    slug: str
    architecture: str
    label: str
    options: str
    epochs: int
    costs: UnitCosts


@dataclass(frozen=True)
class Variant:
    """One training configuration: BFIT at a rate (0: plain training), or MHL with margin b."""

    slug: str
    label: str
    method: str = "normal"
    bit_error_rate: float | None = None
    loss: str = "cross_entropy"
    hinge_b: float | None = None


VARIANTS = (
    Variant("bfit-0-pct", "BFIT 0 %", bit_error_rate=0.0),
    Variant("bfit-5-pct", "BFIT 5 %", "bitflip", 0.05),
    Variant("bfit-10-pct", "BFIT 10 %", "bitflip", 0.1),
    Variant("bfit-20-pct", "BFIT 20 %", "bitflip", 0.2),
    Variant("mhl-b-32", "MHL b=32", loss="hinge", hinge_b=32.0),
    Variant("mhl-b-128", "MHL b=128", loss="hinge", hinge_b=128.0),
)

MLP = Network(
    "mlp", "bnn-mlp", "MLP", "{ hidden = [2048, 2048] }", 4, UnitCosts(1.0e-3, 0.2e-3, 4.5e-3)
)
VGG3 = Network(
    "vgg3",
    "vgg3",
    "VGG3",
    "{ channels = 64, hidden = 2048 }",
    3,
    UnitCosts(2.2e-3, 1.2e-3, 30e-3),
)
QUICK_MLP = Network(
    "mlp", "bnn-mlp", "MLP", "{ hidden = [512, 512] }", 3, UnitCosts(0.4e-3, 0.03e-3, 0.56e-3)
)
QUICK_VGG3 = Network(
    "vgg3",
    "vgg3",
    "VGG3",
    "{ channels = 32, hidden = 512 }",
    2,
    UnitCosts(0.64e-3, 0.38e-3, 5.3e-3),
)

TRIAL_FIXED_S = 0.25
"""Seconds of a trial beyond its test examples (drawing the bit errors with sampler 2)."""
MODEL_FIXED_S = 3.0
"""Seconds per trained model for loading data and checkpoints, saving, starting tasks."""
STUDY_FIXED_S = 60.0
"""Seconds of the run outside the workers (pool start-up, correlations, plots)."""
COST_NOTE = (
    "Unit costs: CPU seconds of one thread, measured on the 2-core x86_64 development machine "
    "while another study kept both cores busy (load 3-5; wall clock was 1.5-2x the CPU time, "
    "so a loaded machine takes up to that much longer and an idle one somewhat less): one "
    "training epoch on 2048-4096 examples (plain and BFIT), campaign trials on 500 and 2000 "
    "test examples (sampler 2; per-example slope and a fixed part), bnn_metrics (margins and "
    "flip importance of every neuron) on 500 examples."
)


@dataclass(frozen=True)
class StudySettings:
    """What the campaign trains and sweeps, and the metric settings of the report."""

    name: str
    mode: str
    networks: tuple[Network, ...]
    metrics: MetricSettings
    variants: tuple[Variant, ...] = VARIANTS
    training_seeds: tuple[int, ...] = (0, 1, 2)
    train_limit: int | None = 30000
    test_limit: int = 2000
    rates: tuple[float, ...] = (0.0, 0.01, 0.05, 0.1, 0.15, 0.2, 0.3)
    patterns: int = 3
    batch_size: int = 256
    lr: float = 0.001
    seed: int = 0
    cuts: tuple[str, ...] = field(default_factory=tuple)  # what was cut to fit the budget


FULL = StudySettings(
    name="bnn2021",
    mode="full",
    networks=(MLP, VGG3),
    metrics=MetricSettings(examples=10000, architecture_examples=(("vgg3", 3000),)),
    cuts=(
        "training on the first 30000 of the 60000 training images, 4 epochs (MLP) and 3 (VGG3) "
        "(the one-seed MLP study before: 6 epochs on all 60000)",
        "VGG3 metrics on the first 3000 test examples (about 30 ms per example, mostly the flips "
        "of its first conv layer's 64 channels); the MLP's on all 10000",
        "the accuracy sweep on the first 2000 test examples at 7 rates, 3 patterns per rate and "
        "seed (before: 5000 examples, 9 rates, 5 patterns)",
    ),
)
QUICK = StudySettings(
    name="bnn2021-quick",
    mode="quick",
    networks=(QUICK_MLP, QUICK_VGG3),
    metrics=MetricSettings(examples=2000),
    train_limit=15000,
    test_limit=1000,
    rates=(0.0, 0.05, 0.1, 0.2, 0.3),
    patterns=2,
    cuts=(
        "narrower networks (MLP 512-512, VGG3 32 channels and fc 512), 15000 training images, "
        "3 epochs (MLP) and 2 (VGG3)",
        "1000 test examples for the sweep (2 patterns), 2000 for the metrics",
    ),
)


def study_settings(quick: bool) -> StudySettings:
    """Quick (under 15 min on 2 cores) or full (about 80 min on 2 cores, 2 workers)."""
    return QUICK if quick else FULL


def study_spec(quick: bool) -> tuple[CampaignSpec, str]:
    """The packaged spec ``specs/bnn2021.toml`` or ``specs/bnn2021-quick.toml``."""
    return packaged_spec(study_settings(quick).name)


def metric_settings(quick: bool) -> MetricSettings:
    """The metrics' settings of the full run, or of the quick one."""
    return study_settings(quick).metrics


def model_name(network: Network, variant: Variant) -> str:
    """``fashion-mnist-bnn-<architecture>-<variant>``, e.g. fashion-mnist-bnn-vgg3-mhl-b-128."""
    return f"fashion-mnist-bnn-{network.slug}-{variant.slug}"


def cost_estimate(s: StudySettings, workers: int = 2) -> dict[str, float]:
    """Worker seconds per stage (unit costs × counts) and the wall seconds on ``workers``."""
    stages = dict.fromkeys(("training", "trials", "metrics", "models"), 0.0)
    train_size = s.train_limit or 60000
    trials = len(s.rates) * s.patterns
    for network in s.networks:
        models = len(s.variants) * len(s.training_seeds)
        costs = network.costs
        stages["training"] += models * network.epochs * train_size * costs.train_example_epoch
        stages["trials"] += models * trials * (TRIAL_FIXED_S + s.test_limit * costs.trial_example)
        examples = min(s.metrics.examples_for(network.slug), 10000)
        stages["metrics"] += models * examples * costs.metric_example
        stages["models"] += models * MODEL_FIXED_S
    stages["wall"] = sum(stages.values()) / workers + STUDY_FIXED_S
    return stages


def spec_text(s: StudySettings) -> str:
    """The campaign spec of ``s``: a header (what it is, the cost estimate and how it was made,
    what was cut), one model per network × variant (all training seeds), one fault entry."""
    lines = [*_header(s), f'name = "{s.name}"']
    lines += [
        f'description = "{DESCRIPTION}"',
        f"seed = {s.seed}",
        f"patterns = {s.patterns}",
        'metrics = ["err_faulty", "rerr"]',
        "",
        "[data]",
        'dataset = "fashion-mnist"',
        f"test_limit = {s.test_limit}",
        *([f"train_limit = {s.train_limit}"] if s.train_limit else []),
        "batch_size = 1000",
    ]
    for network in s.networks:
        for variant in s.variants:
            lines += ["", *_model_lines(s, network, variant)]
    lines += [
        "",
        "[[faults]]",
        f'name = "{FAULT}"',
        'label = "random bit errors"',
        'type = "random_bit_errors"',
        f"rates = [{', '.join(str(rate) for rate in s.rates)}]",
        "sampler = 2",
    ]
    return "\n".join(lines) + "\n"


def write_packaged_specs() -> list[Path]:
    """Write ``specs/bnn2021.toml`` and ``specs/bnn2021-quick.toml`` from the settings."""
    paths = []
    for settings in (FULL, QUICK):
        path = SPECS / f"{settings.name}.toml"
        path.write_text(spec_text(settings))
        paths.append(path)
    return paths


def _model_lines(s: StudySettings, network: Network, variant: Variant) -> list[str]:
    lines = [
        "[[models]]",
        f'name = "{model_name(network, variant)}"',
        f'label = "{network.label} {variant.label}"',
        f'architecture = "{network.architecture}"',
        f"options = {network.options}",
        'quantization = "binary"',
        f'method = "{variant.method}"',
    ]
    if variant.bit_error_rate is not None:
        lines.append(f"bit_error_rate = {variant.bit_error_rate}")
    lines.append(f'loss = "{variant.loss}"')
    if variant.hinge_b is not None:
        lines.append(f"hinge_b = {variant.hinge_b}")
    return lines + [
        f"epochs = {network.epochs}",
        f"batch_size = {s.batch_size}",
        f"lr = {s.lr:g}",
        'optimizer = "adam"',
        "weight_decay = 0.0",
        f"training_seeds = [{', '.join(str(seed) for seed in s.training_seeds)}]",
    ]


def _header(s: StudySettings) -> list[str]:
    """The spec's comment lines: what, the budget estimate and its basis, what was cut."""
    seeds = len(s.training_seeds)
    models = len(s.networks) * len(s.variants) * seeds
    nets = ", ".join(f"{n.label} ({n.architecture}, {n.options.strip('{} ')})" for n in s.networks)
    examples = ", ".join(f"{n.label} {s.metrics.examples_for(n.slug)}" for n in s.networks)
    estimate = cost_estimate(s)
    costs = "; ".join(
        f"{n.label}: train {1e3 * n.costs.train_example_epoch:g} ms/example-epoch, trial "
        f"{TRIAL_FIXED_S:g} s + {1e3 * n.costs.trial_example:g} ms/example, metrics "
        f"{1e3 * n.costs.metric_example:g} ms/example"
        for n in s.networks
    )
    text = (
        f"Buschjäger et al. 2021 ({s.mode} mode), made by bitrobust.experiments.bnn2021.spec_text "
        "(edit the settings there, then run bnn2021.write_packaged_specs(); a test keeps this "
        "file equal to its output). Binarized "
        f"networks on Fashion-MNIST: {nets}, each trained with bit flip injection (BFIT) at 0, "
        "5, 10 and 20 % and with the modified hinge loss (MHL, no injection) at b = 32 and 128, "
        f"{seeds} training seeds each ({models} models); accuracy under random bit errors. "
        "`bitrobust reproduce bnn2021` runs this spec, then computes the margin and importance "
        f"metrics of every checkpoint on the first test examples ({examples}). BFIT 0 % is "
        "plain training. Optimizer as in the reference BNN code: Adam, lr 1e-3, batch 256, no "
        "weight decay. Random bit errors use sampler 2; at rate 0 every pattern is the clean "
        "model (the report reads one)."
    )
    budget = (
        f"Budget estimate, 2 workers: {estimate['wall'] / 60:.0f} min wall = (training "
        f"{estimate['training'] / 60:.0f} + trials {estimate['trials'] / 60:.0f} + metrics "
        f"{estimate['metrics'] / 60:.0f} + per-model overhead {estimate['models'] / 60:.0f}) "
        f"worker-min / 2 + {STUDY_FIXED_S / 60:.0f} min. {costs}. {COST_NOTE}"
    )
    cut = "Cut to fit: " + "; ".join(s.cuts) + "." if s.cuts else ""
    lines = []
    for paragraph in (text, budget, cut):
        if paragraph:
            lines += _wrap(paragraph, 98) + ["#"]
    return [line if line == "#" else f"# {line}" for line in lines[:-1]]


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, break_on_hyphens=False)


# -- the run ----------------------------------------------------------------------------------


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
    records = variant_records(
        spec, rows, out / "checkpoints", settings, data_dir, device, workers, out / "metrics"
    )
    correlation_rows = correlation_table_rows(records, settings)
    findings = summarize(records, correlation_rows, settings)
    plots = [plot_accuracy(records, out / "bnn2021.png"), *plot_metrics(records, out)]
    summary = {
        "mode": "quick" if quick else "full",
        "spec": text,
        "metric_settings": asdict(settings),
        "records": records,
        "correlations": correlation_rows,
        "findings": findings,
        "provenance": provenance(),
        "seconds": round(time.time() - started, 1),
        "compute_seconds": round(sum(r["wall_s"] for r in rows), 1),
        "plots": [plot.name for plot in plots],
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


def training_label(variant: dict[str, Any]) -> str:
    """The training configuration in words, e.g. "BFIT 20 %" or "MHL b=128"."""
    if variant["loss"] == "hinge":
        return f"MHL b={variant['hinge_b']:g}"
    return f"BFIT {100 * variant['bit_error_rate']:g} %"


def architecture_slug(model: ModelSpec) -> str:
    """``mlp`` for bnn-mlp, else the registered architecture name (e.g. ``vgg3``)."""
    name = model.architecture or "checkpoint"
    return ARCHITECTURE_SLUGS.get(name, name)


def variant_records(
    spec: CampaignSpec,
    rows: list[dict[str, Any]],
    checkpoint_dir: Path,
    settings: MetricSettings,
    data_dir: str | os.PathLike | None = None,
    device: str | None = None,
    workers: int | None = 1,
    cache_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """One record per model of ``spec`` and training seed (spec order, then seed): ``name``,
    ``architecture``, ``variant`` (its label), ``training_seed``, ``variant_spec``,
    ``accuracy`` (clean), ``sweep`` (:func:`sweep_rows`) and ``metrics``
    (:func:`bitrobust.bnn.bnn_metrics` of its checkpoint, with ``importance_resolution``)."""
    jobs = {(job.model, job.training_seed): job for job in training_jobs(spec, checkpoint_dir)}
    records, items = [], []
    for model in spec.models:
        if not model.trained:
            raise BitrobustError(f"model {model.name!r}: bnn2021 needs training recipes")
        architecture = architecture_slug(model)
        for seed in model.training_seeds:
            mine = sorted(
                (
                    r
                    for r in rows
                    if r["model"] == model.name
                    and r["training_seed"] == seed
                    and r["fault"] == FAULT
                ),
                key=lambda r: r["pattern"],
            )
            if not mine:
                continue
            job = jobs[(model.name, seed)]
            examples = mine[0]["examples"]
            records.append(
                {
                    "name": model.name,
                    "architecture": architecture,
                    "variant": model.label or model.name,
                    "training_seed": seed,
                    "variant_spec": variant_spec(model),
                    # the fault-free error as a count of examples: the exact clean accuracy
                    "accuracy": (examples - round(mine[0]["err_clean"] * examples)) / examples,
                    "sweep": sweep_rows(mine),
                    "checkpoint": Path(job.checkpoint).name,
                    "eval_seconds": round(sum(r["wall_s"] for r in mine), 1),
                }
            )
            items.append(
                {
                    "checkpoint": job.checkpoint,
                    "dataset": job.dataset,
                    "data_dir": None if data_dir is None else str(data_dir),
                    "examples": settings.examples_for(architecture),
                    "importance_neurons": settings.importance_neurons,
                    "seed": settings.seed,
                    "device": device or "cpu",
                }
            )
    for record, result in zip(records, metric_results(items, workers, cache_dir)):
        record["metrics"] = result["metrics"]
        record["metric_seconds"] = round(result["seconds"], 1)
    return records


def metric_results(
    items: list[dict[str, Any]], workers: int | None, cache_dir: Path | None
) -> list[dict[str, Any]]:
    """:func:`model_metrics` of every item, from ``cache_dir`` where it holds them, else on
    ``workers`` processes (one thread each; one, in this process, on a GPU) and cached."""
    paths = [None if cache_dir is None else cache_dir / _cache_name(item) for item in items]
    results: list[dict[str, Any] | None] = [_read_cache(path) for path in paths]
    missing = [index for index, result in enumerate(results) if result is None]
    if missing:
        on_cpu = all(items[index]["device"] == "cpu" for index in missing)
        _log(f"metrics of {len(missing)} model(s) on {workers if on_cpu else 1} worker(s)")
        with make_executor("local", workers if on_cpu else 1) as executor:
            work = [items[index] for index in missing]
            for position, result in executor.map(model_metrics, work, StopFlag()):
                index = missing[position]
                results[index] = result
                if paths[index] is not None:
                    paths[index].parent.mkdir(parents=True, exist_ok=True)
                    paths[index].write_text(json.dumps(result))
                name = Path(items[index]["checkpoint"]).name
                _log(f"[{name}] metrics in {result['seconds']:.0f} s")
    return results  # type: ignore[return-value]


def _cache_name(item: dict[str, Any]) -> str:
    """The cache file of an item: its checkpoint (named by its recipe's fingerprint) and a
    digest of the metric settings and the package version."""
    from bitrobust import __version__

    key = {k: item[k] for k in ("dataset", "examples", "importance_neurons", "seed")}
    return f"{Path(item['checkpoint']).stem}-{digest({**key, 'version': __version__})}.json"


def _read_cache(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


_TEST_SETS: dict[tuple[str, str | None], Any] = {}


def model_metrics(item: dict[str, Any]) -> dict[str, Any]:
    """One checkpoint's :func:`bitrobust.bnn.bnn_metrics` (flip importance) on the first
    ``examples`` test examples, with ``importance_resolution`` = 1/examples; run by a worker."""
    started = time.perf_counter()
    key = (item["dataset"], item["data_dir"])
    if key not in _TEST_SETS:
        _TEST_SETS[key] = load_dataset(item["dataset"], "test", item["data_dir"])
    images, labels = subset(_TEST_SETS[key], item["examples"]).tensors
    network = load_checkpoint(item["checkpoint"], item["device"]).model
    metrics = bnn_metrics(
        network,
        images,
        labels,
        importance="flip",
        max_neurons=item["importance_neurons"],
        seed=item["seed"],
    )
    metrics["importance_resolution"] = 1 / metrics["examples"]
    return {"metrics": metrics, "seconds": time.perf_counter() - started}


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


# -- correlations -----------------------------------------------------------------------------

#: Metrics correlated with the accuracy under bit errors, and the sign the paper leads one to
#: expect: larger margins and more evenly spread importance (lower variance) mean more tolerance.
CORRELATED_METRICS = {
    "margin_normalized_mean": ("NLM: margin / fan-in", +1),
    "margin_tolerable_flips_mean": ("NLM: tolerable flips", +1),
    "margin_zero_flips_fraction": ("fraction of 0-flip neurons", -1),
    "importance_variance": ("INM: importance variance (accuracy drop)", -1),
    "importance_loss_variance": ("INM: importance variance (loss rise)", -1),
}
IMPORTANCE_METRICS = ("importance_variance", "importance_loss_variance")
MEAN_SCOPE = "all layers (mean)"
POOLED = "all"
"""The ``architecture`` of correlations over the points of every architecture."""


def accuracy_at(record: dict[str, Any], rate: float) -> float | None:
    """The record's mean accuracy at bit error rate ``rate`` (None if not swept)."""
    for row in record["sweep"]:
        if math.isclose(row["bit_error_rate"], rate):
            return row["accuracy_mean"]
    return None


def correlation_groups(
    records: list[dict[str, Any]],
) -> list[tuple[str, str, list[dict[str, Any]], bool]]:
    """(architecture, models label, records, per-layer scopes too) of every correlation: all
    architectures pooled (when there are several) and each alone, all variants and the BFIT
    variants alone; per-layer scopes for all variants of one architecture."""
    architectures = list(dict.fromkeys(r["architecture"] for r in records))
    scopes = [(POOLED, records)] if len(architectures) > 1 else []
    scopes += [(a, [r for r in records if r["architecture"] == a]) for a in architectures]
    groups = []
    for architecture, members in scopes:
        groups.append((architecture, f"all ({len(members)})", members, architecture != POOLED))
        bfit = [r for r in members if r["variant_spec"]["loss"] == "cross_entropy"]
        if 3 <= len(bfit) < len(members):
            groups.append((architecture, f"BFIT only ({len(bfit)})", bfit, False))
    return groups


def correlation_table_rows(
    records: list[dict[str, Any]], settings: MetricSettings
) -> list[dict[str, Any]]:
    """Spearman ρ over (model, seed) points of each metric with the accuracy at each rate,
    with its permutation p-value and bootstrap interval (:func:`correlation_row`)."""
    rows = []
    for architecture, models, members, per_layer in correlation_groups(records):
        scopes = {MEAN_SCOPE: [record["metrics"]["model"] for record in members]}
        if per_layer:
            for index, layer in enumerate(members[0]["metrics"]["layers"]):
                label = f"{layer['layer']} ({layer['description']})"
                scopes[label] = [record["metrics"]["layers"][index] for record in members]
        resolutions = sorted({r["metrics"]["importance_resolution"] for r in members})
        for rate in settings.correlation_rates:
            accuracies = [accuracy_at(record, rate) for record in members]
            if len(members) < 2 or any(a is None for a in accuracies):
                continue
            for scope, metrics in scopes.items():
                for key in CORRELATED_METRICS:
                    values = [m.get(key) for m in metrics]
                    if any(not isinstance(v, (int, float)) for v in values):
                        continue
                    row = correlation_row(values, accuracies, key, settings)  # type: ignore[arg-type]
                    rows.append(
                        {
                            "architecture": architecture,
                            "models": models,
                            "points": len(members),
                            "rate": rate,
                            "scope": scope,
                            **row,
                            "importance_resolution": (
                                resolutions if key in IMPORTANCE_METRICS else None
                            ),
                        }
                    )
    return rows


def correlation_row(
    values: Sequence[float], accuracies: Sequence[float], key: str, settings: MetricSettings
) -> dict[str, Any]:
    """``metric``, ``label``, ``expected_sign``, ``spearman``, ``p_value`` (two-sided
    permutation test), ``ci_low``/``ci_high`` (percentile bootstrap over the points),
    ``observed_sign`` and ``agrees`` (observed = expected) of one metric; None where undefined."""
    label, expected = CORRELATED_METRICS[key]
    rho, p_value = stats.spearman_test(values, accuracies, settings.permutations, settings.seed)
    interval = stats.spearman_bootstrap_interval(
        values, accuracies, settings.confidence, settings.seed, settings.resamples
    )
    observed = None if rho is None else (rho > 0) - (rho < 0)
    return {
        "metric": key,
        "label": label,
        "expected_sign": expected,
        "spearman": rho,
        "p_value": p_value,
        "ci_low": None if interval is None else interval[0],
        "ci_high": None if interval is None else interval[1],
        "observed_sign": observed,
        "agrees": None if observed is None else observed == expected,
    }


# -- findings ---------------------------------------------------------------------------------


def summarize(
    records: list[dict[str, Any]],
    correlation_rows: list[dict[str, Any]],
    settings: MetricSettings,
) -> list[str]:
    """Findings: per architecture the accuracy at the correlation rates and whether BFIT widens
    the margins; the importance resolution; every metric's correlation (mean over layers, all
    variants) against its expected sign, with p-value and interval."""
    lines = []
    for architecture, members in _by_architecture(records).items():
        lines += _accuracy_findings(architecture, members, settings.correlation_rates)
        lines += _margin_finding(architecture, members)
        counts = sorted({r["metrics"]["examples"] for r in members})
        lines.append(
            f"- {architecture}: importance measured on {_join(counts)} test examples: "
            f"resolution {_join([f'1/{n}' for n in counts])} (one example's accuracy)."
        )
    significant = 1 - settings.confidence
    for row in correlation_rows:
        if row["scope"] != MEAN_SCOPE or not row["models"].startswith("all"):
            continue
        lines.append(
            f"- ρ({row['label']}, accuracy at {100 * row['rate']:g} %), {row['architecture']}, "
            f"{row['points']} points: {_correlation_text(row)}; expected sign "
            f"{_sign(row['expected_sign'])}, observed {_sign(row['observed_sign'])}"
            + _verdict(row, significant)
            + "."
        )
    return lines + _sign_summary(correlation_rows, significant)


def _sign_summary(rows: list[dict[str, Any]], significant: float) -> list[str]:
    """Per metric: in how many (architecture, rate) cells (mean over layers, all variants) the
    observed sign is the expected one, and how many of those are significant."""
    lines = []
    for key, (label, expected) in CORRELATED_METRICS.items():
        cells = [
            r
            for r in rows
            if r["metric"] == key and r["scope"] == MEAN_SCOPE and r["models"].startswith("all")
        ]
        defined = [r for r in cells if r["spearman"] is not None]
        if not defined:
            continue
        agree = [r for r in defined if r["agrees"]]
        sure = [r for r in agree if r["p_value"] < significant]
        signs = ", ".join(
            f"{r['architecture']} @ {100 * r['rate']:g} % {_sign(r['observed_sign'])}"
            for r in defined
        )
        lines.append(
            f"- Sign of {label} (expected {_sign(expected)}): {signs} — the expected sign in "
            f"{len(agree)} of {len(defined)}, significantly (p < {significant:g}) in {len(sure)}."
        )
    return lines


def _by_architecture(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record["architecture"], []).append(record)
    return groups


def _by_model(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by model (its training seeds), in record order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record["name"], []).append(record)
    return groups


def _accuracy_findings(
    architecture: str, records: list[dict[str, Any]], rates: tuple[float, ...]
) -> list[str]:
    lines = []
    for rate in rates:
        parts = []
        for seeds in _by_model(records).values():
            values = [accuracy_at(r, rate) for r in seeds]
            parts.append(f"{seeds[0]['variant']} {_mean_sd_pct(values)}")
        lines.append(
            f"- {architecture}: accuracy at {100 * rate:g} % bit errors (mean ± sd over "
            f"training seeds): {', '.join(parts)}."
        )
    return lines


def _margin_finding(architecture: str, records: list[dict[str, Any]]) -> list[str]:
    bfit = [
        seeds
        for seeds in _by_model(records).values()
        if seeds[0]["variant_spec"]["loss"] == "cross_entropy"
    ]
    bfit.sort(key=lambda seeds: seeds[0]["variant_spec"]["bit_error_rate"])
    flips = [
        _mean([r["metrics"]["model"]["margin_tolerable_flips_mean"] for r in seeds])
        for seeds in bfit
    ]
    if len(bfit) < 2 or None in flips:
        return []
    pairs = ", ".join(f"{seeds[0]['variant']} {v:.2f}" for seeds, v in zip(bfit, flips))
    grows = all(a < b for a, b in zip(flips, flips[1:]))
    return [
        f"- {architecture}: tolerable weight flips per neuron (mean over layers and seeds): "
        f"{pairs}; {'grows' if grows else 'does NOT grow'} with the BFIT rate (expected: grows)."
    ]


def _verdict(row: dict[str, Any], significant: float) -> str:
    if row["spearman"] is None:
        return ""
    agree = "agrees" if row["agrees"] else "does NOT agree"
    sure = row["p_value"] is not None and row["p_value"] < significant
    return f" — {agree}, {'significant' if sure else 'not significant'} at p < {significant:g}"


def _correlation_text(row: dict[str, Any]) -> str:
    if row["spearman"] is None:
        return "ρ undefined"
    text = f"ρ = {row['spearman']:+.2f}"
    if row["ci_low"] is not None:
        text += f" [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
    return text + f", p = {row['p_value']:.3g}"


# -- the report -------------------------------------------------------------------------------


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
    rates = tuple(fault.rates or ())
    patterns = fault.patterns or spec.patterns
    seeds = sorted({r["training_seed"] for r in records})
    models = "; ".join(
        f"{architecture} {_options(spec, members[0]['name'])}"
        for architecture, members in _by_architecture(records).items()
    )
    lines = [
        "# Buschjäger et al. 2021 reproduction: bit error tolerance metrics of BNNs",
        "",
        f"Command: `{command or 'bitrobust reproduce bnn2021'}` ({summary['mode']} mode; "
        f"the trials took {summary['compute_seconds'] / 60:.1f} min of worker time on "
        f"{platform.machine()} with 1 thread per worker ({torch.get_num_threads()} in this "
        f"process); this run {summary['seconds'] / 60:.1f} min, reusing the trained models, "
        "finished trials and computed metrics of its output folder).",
        "",
        provenance_line(summary["provenance"]),
        "",
        f"Campaign spec: `bitrobust/experiments/specs/{spec.name}.toml`; every trial is a row "
        f"of `{Path(summary['store']).name}` (`bitrobust campaign report` renders it). The "
        "metrics are computed from the trained checkpoints and cached in `metrics/`.",
        "",
        f"Models: {models} on {spec.data.dataset}, training seeds {seeds}, Adam; train "
        f"examples: {spec.data.train_limit or 'all'}; first {spec.data.test_limit or 'all'} test "
        f"examples for the accuracy sweep (seeded patterns per rate and seed: {patterns}, nested "
        f"across rates); for the metrics the first {_examples_text(records)} test examples "
        f"(importance of {settings.importance_neurons or 'all'} neurons per layer).",
        "",
        "Variants: BFIT p = random sign flips of the binary weights and biases at rate p on every "
        "training forward pass (BFIT 0 % is plain training); MHL b = modified hinge loss with "
        "margin b, no injection. Bit errors at test time flip the stored 1-bit codes "
        "(−1 ↔ +1) at the given rate; batch norm and the output scale stay float.",
        "",
        "## Accuracy under random bit errors",
        "",
        "Mean ± standard deviation over training seeds of each seed's mean over patterns.",
        "",
        _accuracy_table(records, rates),
        f"![accuracy vs bit error rate]({summary['plots'][0]})",
        "",
        "## Metrics per layer",
        "",
        "Mean over training seeds. Margin = |a − τ| of every pre-activation to its folded "
        "batch-norm threshold (mean over neurons, test examples and positions); tolerable flips "
        "= ⌈margin / 2⌉ − 1 (the first layer, with real inputs, uses 2·max|x| per flip); 0-flip "
        "fraction = share of neuron outputs that a single weight flip can change. Importance = "
        "accuracy drop (or loss rise) when the neuron's output is flipped for all examples; its "
        "variance over neurons is the INM. An accuracy drop is a whole number of examples: its "
        "resolution is 1/examples, given beside it.",
        "",
        _layer_table(records),
        *[f"![margin histograms and importance variance]({plot})" for plot in summary["plots"][1:]],
        "",
        "## Correlation with accuracy under bit errors",
        "",
        "Spearman rank correlation over the (model, training seed) points — all architectures "
        "pooled and each alone; all variants and the BFIT variants alone — of each metric with "
        "the accuracy under bit errors: ρ, its percentile bootstrap interval over the points "
        f"({100 * settings.confidence:g} %, {settings.resamples} resamples; the seeds of one "
        "recipe are treated as independent points, so the interval leans narrow) and the "
        f"two-sided permutation p-value ({settings.permutations} permutations, exact for up to "
        "8 points). Pooling architectures mixes their different metric scales and accuracies. "
        "The loss-based importance variance also scales with the size of the logits, which the "
        "hinge loss makes larger.",
        "",
        _correlation_table(correlation_rows, settings.correlation_rates),
        "## Findings",
        "",
        *findings,
        "",
    ]
    return "\n".join(lines)


def _options(spec: CampaignSpec, name: str) -> str:
    model = next(m for m in spec.models if m.name == name)
    options = ", ".join(f"{k} {v}" for k, v in model.options.items()) or "default widths"
    return f"({model.architecture}, {options}, epochs {model.epochs})"


def _examples_text(records: list[dict[str, Any]]) -> str:
    counts = {r["architecture"]: r["metrics"]["examples"] for r in records}
    return ", ".join(f"{n} ({a})" for a, n in counts.items())


def _accuracy_table(records: list[dict[str, Any]], rates: tuple[float, ...]) -> str:
    rows = []
    for seeds in _by_model(records).values():
        row: dict[str, Any] = {"model": seeds[0]["variant"], "seeds": len(seeds)}
        for rate in rates:
            row[f"{rate}"] = _mean_sd_pct([accuracy_at(r, rate) for r in seeds], unit="")
        rows.append(row)
    return markdown_table(
        rows,
        ["model", "seeds"] + [f"{rate}" for rate in rates],
        ["model", "seeds"] + [f"acc. % @ {100 * rate:g} %" for rate in rates],
    )


LAYER_COLUMNS = {
    "margin_mean": "margin |a−τ|",
    "margin_normalized_mean": "margin / fan-in",
    "margin_tolerable_flips_mean": "tolerable flips",
    "margin_zero_flips_fraction": "0-flip fraction",
    "importance_mean": "importance (acc. drop)",
    "importance_variance": "importance var.",
    "importance_loss_variance": "importance var. (loss)",
}


def _layer_table(records: list[dict[str, Any]]) -> str:
    rows = []
    for seeds in _by_model(records).values():
        for index, layer in enumerate(seeds[0]["metrics"]["layers"]):
            row: dict[str, Any] = {
                "model": seeds[0]["variant"],
                "layer": f"{layer['layer']} ({layer['description']})",
                "resolution": f"1/{seeds[0]['metrics']['examples']}",
            }
            for key in LAYER_COLUMNS:
                row[key] = _mean([r["metrics"]["layers"][index].get(key) for r in seeds])
            rows.append(row)
    columns = ["model", "layer", *LAYER_COLUMNS, "resolution"]
    headers = ["model", "layer", *LAYER_COLUMNS.values(), "importance resolution"]
    return markdown_table(rows, columns, headers, floatfmt=".4g")


def _correlation_table(rows: list[dict[str, Any]], rates: tuple[float, ...]) -> str:
    """Markdown: one row per (architecture, models, layers, metric), one column per rate
    with ρ [interval], p."""
    table: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for row in rows:
        entry = table.setdefault(
            (row["architecture"], row["models"], row["scope"], row["metric"]),
            {
                "architecture": row["architecture"],
                "models": row["models"],
                "scope": row["scope"],
                "label": row["label"],
                "expected": _sign(row["expected_sign"]),
                "resolution": _join([f"1/{round(1 / r)}" for r in row["importance_resolution"]])
                if row["importance_resolution"]
                else "",
            },
        )
        entry[f"{row['rate']}"] = _correlation_text(row)
    columns = ["architecture", "models", "scope", "label", "expected"]
    columns += [f"{rate}" for rate in rates] + ["resolution"]
    headers = ["architecture", "models (points)", "layers", "metric", "expected sign"]
    headers += [f"ρ [CI], p @ {100 * rate:g} %" for rate in rates] + ["importance resolution"]
    return markdown_table(list(table.values()), columns, headers)


# -- plots ------------------------------------------------------------------------------------


def plot_accuracy(records: list[dict[str, Any]], path: Path) -> Path:
    """Accuracy vs bit error rate, one panel per architecture, one line per training
    configuration (mean over seeds), the band spanning every seed's min/max over patterns."""
    panels = {
        architecture: {
            training_label(seeds[0]["variant_spec"]): _seed_mean_sweep(seeds)
            for seeds in _by_model(members).values()
        }
        for architecture, members in _by_architecture(records).items()
    }
    return plot_grid(
        panels,
        path,
        y="accuracy_mean",
        y_low="accuracy_min",
        y_high="accuracy_max",
        title="BNN accuracy under random bit errors",
        ylabel="accuracy (%)",
        logx=False,
        band_label="min–max over seeds and patterns",
    )


def _seed_mean_sweep(seeds: list[dict[str, Any]]) -> list[dict[str, float]]:
    """The sweep of several training seeds: mean of their means, min of mins, max of maxes."""
    rows = []
    for row in seeds[0]["sweep"]:
        rate = row["bit_error_rate"]
        same = [r for s in seeds for r in s["sweep"] if math.isclose(r["bit_error_rate"], rate)]
        rows.append(
            {
                "bit_error_rate": rate,
                "accuracy_mean": _mean([r["accuracy_mean"] for r in same]),
                "accuracy_min": min(r["accuracy_min"] for r in same),
                "accuracy_max": max(r["accuracy_max"] for r in same),
            }
        )
    return rows


def plot_metrics(records: list[dict[str, Any]], out: Path) -> list[Path]:
    """Per architecture, :func:`bitrobust.report.plot_bnn_metrics` of each configuration's
    first training seed: ``bnn2021_metrics_<architecture>.png``."""
    paths = []
    for architecture, members in _by_architecture(records).items():
        models = {
            training_label(seeds[0]["variant_spec"]): seeds[0]["metrics"]["layers"]
            for seeds in _by_model(members).values()
        }
        paths.append(plot_bnn_metrics(models, out / f"bnn2021_metrics_{architecture}.png"))
    return paths


# -- small helpers ----------------------------------------------------------------------------


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None]
    return sum(finite) / len(finite) if finite else None


def _mean_sd_pct(values: Sequence[float | None], unit: str = " %") -> str:
    """``mean ± sd`` of fractions in percent (sd over the values; none for one value)."""
    finite = [v for v in values if v is not None]
    if not finite:
        return "–"
    summary = stats.summarize(finite)
    if len(finite) == 1:
        return f"{100 * summary.mean:.1f}{unit}"
    return f"{100 * summary.mean:.1f} ± {100 * summary.std:.1f}{unit}"


def _sign(sign: int | None) -> str:
    return {1: "+", -1: "−", 0: "0"}.get(sign, "–") if sign is not None else "–"


def _join(values: Sequence[Any]) -> str:
    return "–".join(str(v) for v in values) if len(values) <= 2 else ", ".join(map(str, values))


def _log(message: str) -> None:
    """Progress of the study: the ``bitrobust`` logger at INFO (the CLI shows it on stderr)."""
    logging.getLogger(__name__).info(message)


__all__ = ["reproduce", "spec_text", "study_settings", "study_spec"]
