"""Accuracy of a model on an emulated accelerator, fault free and over sampled fault maps.

Accuracy loss is measured against the same accelerator without faults (the AxDNN against its
fault-free self, as in Siddique & Hoque), one fault map per seed ``seed … seed + patterns − 1``.
With a :class:`~bitrobust.hw.mitigation.MitigationConfig` every faulty pattern is also mitigated
(on a snapshot that is restored afterwards) and evaluated again.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from bitrobust.errors import BitrobustError
from bitrobust.hw.accelerator import Accelerator, PEFaults
from bitrobust.hw.convert import emulated_layers, set_faults, to_accelerator
from bitrobust.hw.mitigation import MitigationConfig, mitigate, restore, snapshot
from bitrobust.hw.multiplier import Multiplier, load_multiplier


@torch.no_grad()
def accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000
) -> float:
    """Fraction of ``images`` classified as ``labels`` (eval mode)."""
    model.eval()
    device = next(iter(model.parameters())).device
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start : start + batch_size].to(device))
        correct += int((logits.argmax(dim=1).cpu() == labels[start : start + batch_size]).sum())
    return correct / max(1, len(images))


def evaluate_accelerator(
    model: nn.Module,
    multiplier: Multiplier | str,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    accelerator: Accelerator | None = None,
    fault_model: PEFaults | None = None,
    patterns: int = 10,
    seed: int = 0,
    calibration: torch.Tensor | None = None,
    batch_size: int = 1000,
    progress: bool = False,
    mitigation: MitigationConfig | None = None,
    train_images: torch.Tensor | None = None,
    train_labels: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Float, fault-free and faulty accuracy of ``model`` on the emulated accelerator.

    Returns a JSON-ready dict: ``accuracy_float``, ``accuracy_fault_free``, ``accuracy_mean``,
    ``accuracy_std`` (sample std over patterns), ``accuracy_min``/``max``,
    ``accuracy_loss_mean`` (fault free − faulty mean) and one row per pattern.

    ``mitigation`` (with ``train_images``/``train_labels`` for the methods that need them) adds
    ``accuracy_mitigated_mean``/``std``, ``accuracy_mitigated_loss_mean`` and ``recovery``: the
    share of the mean accuracy loss that the mitigation wins back, (mitigated − faulty) /
    (fault free − faulty), None when nothing was lost.
    """
    multiplier = load_multiplier(multiplier)
    if fault_model is not None:
        if accelerator is None:
            raise BitrobustError("evaluating PE faults needs an accelerator (tpu or gpu array)")
        if isinstance(patterns, bool) or not isinstance(patterns, int) or patterns < 1:
            raise BitrobustError(f"patterns must be a positive integer, got {patterns!r}")
    started = time.perf_counter()
    accuracy_float = accuracy(model, images, labels, batch_size)
    emulated = to_accelerator(
        model, multiplier, accelerator, calibration=calibration, batch_size=batch_size
    )
    layer = None if fault_model is None else fault_model.layer
    if layer is not None and layer not in emulated_layers(emulated):
        names = ", ".join(emulated_layers(emulated))
        raise BitrobustError(f"no emulated layer named {layer!r}; layers: {names}")
    fault_free = accuracy(emulated, images, labels, batch_size)
    _say(progress, f"fault free on {multiplier.name}: {100 * fault_free:.2f} %")
    rows = []
    if fault_model is not None:
        assert accelerator is not None
        for index in range(patterns):
            fault_map = fault_model.sample(accelerator, seed + index)
            layers = set_faults(emulated, fault_map)
            value = accuracy(emulated, images, labels, batch_size)
            row = {
                "seed": seed + index,
                "accuracy": value,
                "faulty_pes": fault_map.num_faulty,
                "faulty_layers": layers,
            }
            message = f"pattern {index + 1}/{patterns} (seed {seed + index}): {100 * value:.2f} %"
            if mitigation is not None and mitigation.method != "none":
                saved = snapshot(emulated)
                info = mitigate(emulated, mitigation, train_images, train_labels)
                row["accuracy_mitigated"] = accuracy(emulated, images, labels, batch_size)
                row["mitigation"] = info
                restore(emulated, saved)
                message += f", {mitigation.method} {100 * row['accuracy_mitigated']:.2f} %"
            rows.append(row)
            _say(progress, message)
        set_faults(emulated, None)
    values = [row["accuracy"] for row in rows] or [fault_free]
    mean = statistics.fmean(values)
    extra: dict[str, Any] = {}
    if mitigation is not None and mitigation.method != "none" and rows:
        mitigated = [row["accuracy_mitigated"] for row in rows]
        mitigated_mean = statistics.fmean(mitigated)
        lost = fault_free - mean
        extra = {
            "mitigation": asdict(mitigation),
            "accuracy_mitigated_mean": mitigated_mean,
            "accuracy_mitigated_std": statistics.stdev(mitigated) if len(mitigated) > 1 else 0.0,
            "accuracy_mitigated_loss_mean": fault_free - mitigated_mean,
            "recovery": (mitigated_mean - mean) / lost if lost > 0 else None,
        }
    return {
        "multiplier": multiplier.name,
        "multiplier_signed": multiplier.signed,
        "accelerator": None if accelerator is None else accelerator.name,
        "pes": None if accelerator is None else accelerator.num_pes,
        "fault_model": None if fault_model is None else fault_model.name,
        "layers": list(emulated_layers(emulated)),
        "examples": len(images),
        "accuracy_float": accuracy_float,
        "accuracy_fault_free": fault_free,
        "accuracy_mean": mean,
        "accuracy_std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "accuracy_min": min(values),
        "accuracy_max": max(values),
        "accuracy_loss_mean": fault_free - mean,
        "patterns": len(rows),
        "seed": seed,
        "seconds": time.perf_counter() - started,
        **extra,
        "results": rows,
    }


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)
