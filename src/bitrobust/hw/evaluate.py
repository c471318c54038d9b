"""Accuracy of a model on an emulated accelerator, fault free and over sampled fault patterns.

Built on the one trial of :mod:`bitrobust.evaluate`: the model is deployed
(:func:`~bitrobust.hw.deploy.deploy`), every fault model (PE faults, memory faults in the
accelerator's weight memory, or both composed) is sampled with seeds ``seed … seed + patterns
− 1``, and the accuracy loss is measured against the same accelerator without faults (the AxDNN
against its fault-free self, as in Siddique & Hoque). With a
:class:`~bitrobust.hw.mitigation.MitigationConfig` every faulty pattern is also mitigated, on a
copy (:func:`~bitrobust.hw.mitigation.mitigate`), and evaluated again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from bitrobust import stats
from bitrobust.errors import BitrobustError
from bitrobust.evaluate import CleanRun, Progress, accuracy, clean_run, run_trial
from bitrobust.faults import FaultModel, FaultPattern
from bitrobust.hw.accelerator import Accelerator
from bitrobust.hw.catalogue import load_multiplier
from bitrobust.hw.deploy import AcceleratorDeployment, deploy
from bitrobust.hw.mitigation import MitigationConfig, mitigate
from bitrobust.hw.tables import Multiplier


def evaluate_accelerator(
    model: nn.Module,
    multiplier: Multiplier | str,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    accelerator: Accelerator | None = None,
    fault_model: FaultModel | Sequence[FaultModel] | None = None,
    patterns: int = 10,
    seed: int = 0,
    calibration: torch.Tensor | None = None,
    batch_size: int = 1000,
    progress: Progress | None = None,
    mitigation: MitigationConfig | None = None,
    train_images: torch.Tensor | None = None,
    train_labels: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Float, fault-free and faulty accuracy of ``model`` on the emulated accelerator.

    Returns a JSON-ready dict: ``accuracy_float``, ``accuracy_fault_free`` and, for one fault
    model, ``accuracy_mean``, ``accuracy_std`` (sample std over patterns), ``accuracy_min``/
    ``max``, ``accuracy_loss_mean`` (fault free − faulty mean), ``flips_mean`` (memory bits)
    and one row per pattern; for a sequence of fault models, those per model under ``sweep``.

    ``mitigation`` (with ``train_images``/``train_labels`` for the methods that need them) adds
    ``accuracy_mitigated_mean``/``std``, ``accuracy_mitigated_loss_mean`` and ``recovery``: the
    share of the mean accuracy loss that the mitigation wins back, (mitigated − faulty) /
    (fault free − faulty), None when nothing was lost.
    """
    multiplier = load_multiplier(multiplier)
    many = isinstance(fault_model, Sequence)
    models: list[FaultModel] = (
        [] if fault_model is None else list(fault_model) if many else [fault_model]  # type: ignore[list-item]
    )
    if models and (isinstance(patterns, bool) or not isinstance(patterns, int) or patterns < 1):
        raise BitrobustError(f"patterns must be a positive integer, got {patterns!r}")
    started = time.perf_counter()
    accuracy_float = accuracy(model, images, labels, batch_size)
    deployment = deploy(model, multiplier, accelerator, calibration, batch_size)
    data = (images, labels)
    clean = clean_run(deployment, data, batch_size)
    # each model's first pattern up front: bad layers or a missing array fail before any trial
    firsts = [faults.sample(deployment.target, seed) for faults in models]
    reports = [
        _fault_model_report(
            deployment,
            faults,
            first,
            data,
            clean,
            patterns,
            seed,
            batch_size,
            progress,
            mitigation,
            train_images,
            train_labels,
        )  # fmt: skip
        for faults, first in zip(models, firsts)
    ]
    base = {
        "multiplier": multiplier.name,
        "multiplier_signed": multiplier.signed,
        "accelerator": None if accelerator is None else accelerator.name,
        "pes": None if accelerator is None else accelerator.num_pes,
        "layers": list(deployment.layers),
        "examples": len(clean.labels),
        "accuracy_float": accuracy_float,
        "accuracy_fault_free": 1 - clean.err,
        "seed": seed,
    }
    if many:
        result = {**base, "sweep": reports}
    elif reports:
        result = {**base, **reports[0]}
    else:
        fault_free = 1 - clean.err
        result = {
            **base,
            "fault_model": None,
            "accuracy_mean": fault_free,
            "accuracy_std": 0.0,
            "accuracy_min": fault_free,
            "accuracy_max": fault_free,
            "accuracy_loss_mean": 0.0,
            "patterns": 0,
            "results": [],
        }
    result["seconds"] = time.perf_counter() - started
    return result


def _fault_model_report(
    deployment: AcceleratorDeployment,
    faults: FaultModel,
    first: FaultPattern,
    data: tuple[torch.Tensor, torch.Tensor],
    clean: CleanRun,
    patterns: int,
    seed: int,
    batch_size: int,
    progress: Progress | None,
    mitigation: MitigationConfig | None,
    train_images: torch.Tensor | None,
    train_labels: torch.Tensor | None,
) -> dict[str, Any]:
    """The trials of one fault model (and, with ``mitigation``, of each mitigated pattern);
    ``first`` is its pattern for ``seed``, already sampled."""
    mitigates = mitigation is not None and mitigation.method != "none"
    rows = []
    for index in range(patterns):
        pattern = first if index == 0 else faults.sample(deployment.target, seed + index)
        trial = run_trial(deployment, faults, seed + index, data, clean, batch_size, pattern)
        row: dict[str, Any] = {
            "seed": seed + index,
            "accuracy": 1 - trial.err_faulty,
            "flips": trial.flips,
            "faulty_macs": trial.faulty_macs,
            "faulty_layers": len(pattern.datapath),
        }
        message = f"{faults.name} seed {seed + index}: {100 * row['accuracy']:.2f} %"
        if mitigates:
            assert mitigation is not None
            result = mitigate(deployment, pattern, mitigation, train_images, train_labels)
            mitigated = run_trial(
                result.deployment, faults, seed + index, data, clean, batch_size, result.pattern
            )
            row["accuracy_mitigated"] = 1 - mitigated.err_faulty
            row["recovery"] = trial.recovery(mitigated)
            row["mitigation"] = result.summary
            message += f", {mitigation.method} {100 * row['accuracy_mitigated']:.2f} %"
        rows.append(row)
        if progress is not None:
            progress(index + 1, patterns, message)
    fault_free = 1 - clean.err
    accuracies = stats.summarize([row["accuracy"] for row in rows])
    report: dict[str, Any] = {
        "fault_model": faults.name,
        "accuracy_mean": accuracies.mean,
        "accuracy_std": accuracies.std,
        "accuracy_min": accuracies.min,
        "accuracy_max": accuracies.max,
        "accuracy_ci_low": accuracies.ci_low,
        "accuracy_ci_high": accuracies.ci_high,
        "accuracy_loss_mean": fault_free - accuracies.mean,
        "flips_mean": stats.summarize([float(row["flips"]) for row in rows]).mean,
        "patterns": len(rows),
    }
    if mitigates:
        assert mitigation is not None
        mitigated = stats.summarize([row["accuracy_mitigated"] for row in rows])
        lost = fault_free - accuracies.mean
        report.update(
            {
                "mitigation": asdict(mitigation),
                "accuracy_mitigated_mean": mitigated.mean,
                "accuracy_mitigated_std": mitigated.std,
                "accuracy_mitigated_loss_mean": fault_free - mitigated.mean,
                "recovery": (mitigated.mean - accuracies.mean) / lost if lost > 0 else None,
            }
        )
    report["results"] = rows
    return report
