"""Train-and-sweep study behind ``bitrobust demo`` and ``bitrobust reproduce stutz2021``.

For every dataset × bit width × variant (Normal, RQuant, Clipping, RandBET, ...): train a
quantization-aware model, save it, and measure Err and RErr over a sweep of random bit error
rates. Checkpoints and per-model results are cached in the output folder, so a killed run
resumes where it stopped without repeating or losing a model.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from bitrobust.bits import stable_seed
from bitrobust.checkpoint import load_checkpoint, save_checkpoint
from bitrobust.data import dataset_info, load_splits, subset
from bitrobust.evaluate import evaluate_bit_errors
from bitrobust.experiments import COMMITTED_SAMPLER
from bitrobust.models.architecture import Architecture
from bitrobust.quant import QuantScheme
from bitrobust.train import TrainConfig, train


@dataclass(frozen=True)
class Variant:
    """One way of training a model: its quantization preset and hardening method."""

    label: str
    quant: str  # QuantScheme preset name
    method: str  # training method
    w_max: float | None = None
    bit_error_rate: float = 0.01  # RandBET training rate

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.label.lower().replace(".", "")).strip("-")


STUTZ_VARIANTS = (
    Variant("Normal", "normal", "normal"),
    Variant("RQuant", "rquant", "normal"),
    Variant("Clipping 0.1", "rquant", "clipping", w_max=0.1),
    Variant("Clipping 0.05", "rquant", "clipping", w_max=0.05),
    Variant("RandBET 0.1", "rquant", "randbet", w_max=0.1, bit_error_rate=0.01),
    Variant("RandBET 0.1 p=5%", "rquant", "randbet", w_max=0.1, bit_error_rate=0.05),
)


@dataclass
class StudySettings:
    """What to train and how to sweep it."""

    datasets: tuple[str, ...] = ("mnist",)
    bits: tuple[int, ...] = (8,)
    variants: tuple[Variant, ...] = STUTZ_VARIANTS
    model: str = "mlp"
    model_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    train_limit: int | None = None  # use only the first N training examples
    test_limit: int | None = 9000  # the paper evaluates on the first 9000 test examples
    bit_error_rates: tuple[float, ...] = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1)
    patterns: int = 25
    seed: int = 0


def _log(message: str) -> None:
    """Progress of the study: the ``bitrobust`` logger at INFO (the CLI shows it on stderr)."""
    logging.getLogger(__name__).info(message)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_study(
    settings: StudySettings,
    out_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    device: str | None = None,
    progress: bool = True,
    sampler: int = COMMITTED_SAMPLER,
) -> list[dict[str, Any]]:
    """Train and evaluate every (dataset, bits, variant); return one record per model.

    ``sampler`` is the random bit error sampler (the committed studies keep version 1)."""
    out = Path(out_dir)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "results").mkdir(parents=True, exist_ok=True)
    records = []
    for dataset in settings.datasets:
        train_set, test_set = load_splits(dataset, data_dir)
        train_set = subset(train_set, settings.train_limit)
        test_set = subset(test_set, settings.test_limit)
        info = dataset_info(dataset)
        for bits in settings.bits:
            for variant in settings.variants:
                name = f"{dataset}-{bits}bit-{variant.slug}"
                train_key = _train_fingerprint(settings, info.name, bits, variant)
                eval_key = _eval_fingerprint(settings, train_key, sampler)
                result_path = out / "results" / f"{name}.json"
                cached = _read_json(result_path)
                if cached is not None and cached.get("fingerprint") == eval_key:
                    _log(f"[{name}] cached result")
                    records.append(cached)
                    continue
                ckpt_path = out / "checkpoints" / f"{name}.safetensors"
                started = time.time()
                checkpoint = (
                    load_checkpoint(ckpt_path, device or "cpu") if ckpt_path.exists() else None
                )
                if checkpoint is not None and checkpoint.training.get("fingerprint") == train_key:
                    _log(f"[{name}] cached checkpoint")
                    model, scheme = checkpoint.model, checkpoint.scheme
                else:
                    model, scheme = _train_variant(
                        settings, variant, bits, info, train_set, ckpt_path, device, progress
                    )
                train_seconds = time.time() - started
                images, labels = test_set.tensors
                started = time.time()
                _log(f"[{name}] evaluating {settings.patterns} patterns per rate")
                report = evaluate_bit_errors(
                    model,
                    scheme,
                    images,
                    labels,
                    settings.bit_error_rates,
                    patterns=settings.patterns,
                    seed=settings.seed,
                    sampler=sampler,
                ).to_json()
                if progress:
                    for row in report["results"]:
                        _log(
                            f"  {row['fault_model']}: RErr {100 * row['rerr_mean']:.2f} % "
                            f"(min {100 * row['rerr_min']:.2f}, max {100 * row['rerr_max']:.2f})"
                        )
                record = {
                    "name": name,
                    "fingerprint": eval_key,
                    "dataset": dataset,
                    "bits": bits,
                    "variant": variant.label,
                    "variant_spec": asdict(variant),
                    "quantization": scheme.name,
                    "checkpoint": str(ckpt_path.relative_to(out)),
                    "train_seconds": round(train_seconds, 1),
                    "eval_seconds": round(time.time() - started, 1),
                    **report,
                }
                _log(f"[{name}] Err {100 * report['err']:.2f} %")
                _atomic_write(result_path, json.dumps(record, indent=1))
                records.append(record)
    return records


def _train_fingerprint(settings: StudySettings, dataset: str, bits: int, variant: Variant) -> str:
    """Hash of everything that determines a trained model: a cached one is reused only if equal."""
    key = {
        "dataset": dataset,
        "bits": bits,
        "variant": asdict(variant),
        "model": settings.model,
        "model_options": settings.model_options,
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "lr": settings.lr,
        "train_limit": settings.train_limit,
        "seed": settings.seed,
    }
    return f"{stable_seed(json.dumps(key, sort_keys=True)):016x}"


def _eval_fingerprint(settings: StudySettings, train_key: str, sampler: int) -> str:
    """Hash of the trained model's fingerprint and everything that determines its evaluation
    (the sampler only when it is not 1, so that results cached before samplers had versions
    keep their keys)."""
    key = [train_key, settings.test_limit, list(settings.bit_error_rates), settings.patterns]
    if sampler != 1:
        key.append(f"sampler{sampler}")
    return f"{stable_seed(json.dumps(key)):016x}"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # missing or half-written: recompute


def _train_variant(
    settings: StudySettings,
    variant: Variant,
    bits: int,
    info,
    train_set: TensorDataset,
    ckpt_path: Path,
    device: str | None,
    progress: bool,
):
    torch.manual_seed(settings.seed)
    architecture = Architecture.for_dataset(settings.model, info.name, settings.model_options)
    model = architecture.build()
    scheme = QuantScheme.preset(variant.quant, bits=bits, w_max=variant.w_max)
    config = TrainConfig(
        method=variant.method,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        w_max=variant.w_max,
        bit_error_rate=variant.bit_error_rate,
        seed=settings.seed,
        progress=progress,
    )
    _log(f"[{ckpt_path.stem}] training {settings.model} ({variant.method}, {scheme.name})")
    history = train(model, scheme, train_set, config, device=device)
    save_checkpoint(
        ckpt_path,
        model,
        architecture,
        scheme,
        {
            **config.to_dict(),
            "fingerprint": _train_fingerprint(settings, info.name, bits, variant),
            "loss_history": history.loss,
            "perturbed_fraction": history.perturbed_fraction,
        },
    )
    return model, scheme


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
    """One panel per (dataset, bits), one curve per variant: RErr vs p with min/max bands."""
    from bitrobust.report import plot_grid

    panels: dict[str, dict[str, list[dict]]] = {}
    for record in records:
        panel = panels.setdefault(f"{record['dataset']} {record['bits']} bit", {})
        panel[record["variant"]] = record["results"]
    return plot_grid(panels, path)
