"""Err and RErr of quantized models under fault patterns.

A *trial* is a pure function of (float model, quantization scheme, fault model, seed, data):
quantize, sample the pattern, decode the faulty weights and run the model on them through
``torch.func.functional_call``. No model is edited in place, so trials can run in any order, in
other processes or on other machines, and give the same numbers.

RErr (Stutz et al.): an example counts as an error if the clean quantized model *or* the faulty
one gets it wrong, so RErr >= Err by construction.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from bitrobust.errors import BitrobustError, check_rate
from bitrobust.faults import FaultModel, RandomBitErrors
from bitrobust.quant import QuantizedModel, QuantScheme


@torch.no_grad()
def predict(
    model: nn.Module,
    parameters: dict[str, torch.Tensor],
    images: torch.Tensor,
    batch_size: int = 1000,
) -> torch.Tensor:
    """Class predictions of ``model`` run with ``parameters`` substituted (eval mode)."""
    model.eval()
    device = next(iter(parameters.values())).device if parameters else images.device
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        outputs.append(functional_call(model, parameters, (batch,)).argmax(dim=1).cpu())
    return torch.cat(outputs) if outputs else torch.empty(0, dtype=torch.long)


def error_rate(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of wrong predictions."""
    return (predictions != labels).float().mean().item()


def robust_error(
    clean_predictions: torch.Tensor, faulty_predictions: torch.Tensor, labels: torch.Tensor
) -> float:
    """Fraction of examples that the clean *or* the faulty model gets wrong."""
    wrong = (clean_predictions != labels) | (faulty_predictions != labels)
    return wrong.float().mean().item()


@dataclass(frozen=True)
class TrialResult:
    """Metrics of one fault pattern: enough to re-create the trial from its row."""

    fault_model: str
    seed: int
    rerr: float
    err_faulty: float
    flips: int

    def to_dict(self) -> dict:
        return {
            "fault_model": self.fault_model,
            "seed": self.seed,
            "rerr": self.rerr,
            "err_faulty": self.err_faulty,
            "flips": self.flips,
        }


def run_trial(
    model: nn.Module,
    qmodel: QuantizedModel,
    fault_model: FaultModel,
    seed: int,
    images: torch.Tensor,
    labels: torch.Tensor,
    clean_predictions: torch.Tensor | None = None,
    batch_size: int = 1000,
) -> TrialResult:
    """Evaluate one seeded fault pattern; ``clean_predictions`` may be passed to save a pass."""
    if clean_predictions is None:
        clean_predictions = predict(model, qmodel.dequantized(), images, batch_size)
    pattern = fault_model.sample(qmodel, seed)
    faulty = pattern.apply(qmodel).dequantized()
    predictions = predict(model, faulty, images, batch_size)
    return TrialResult(
        fault_model=fault_model.name,
        seed=seed,
        rerr=robust_error(clean_predictions, predictions, labels),
        err_faulty=error_rate(predictions, labels),
        flips=pattern.num_flips(),
    )


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max of per-pattern values."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def evaluate_fault_models(
    model: nn.Module,
    scheme: QuantScheme,
    images: torch.Tensor,
    labels: torch.Tensor,
    fault_models: Sequence[FaultModel],
    patterns: int = 10,
    seed: int = 0,
    batch_size: int = 1000,
    progress: bool = False,
) -> dict:
    """Err, and RErr statistics over ``patterns`` seeded patterns for every fault model.

    The same seeds (``seed`` .. ``seed + patterns - 1``) are used for every fault model, so for
    random bit errors the flipped bits at a lower rate are a subset of those at a higher rate
    for each seed: the sweep is nested and its curves are smooth.
    """
    if patterns < 1:
        raise BitrobustError(f"patterns must be >= 1, got {patterns}")
    if len(images) == 0:
        raise BitrobustError("no examples to evaluate on")
    qmodel = QuantizedModel.from_module(model, scheme)
    clean = predict(model, qmodel.dequantized(), images, batch_size)
    results = []
    for faults in fault_models:
        trials = [
            run_trial(model, qmodel, faults, seed + k, images, labels, clean, batch_size)
            for k in range(patterns)
        ]
        stats = summarize([t.rerr for t in trials])
        results.append(
            {
                "fault_model": faults.name,
                "rerr_mean": stats["mean"],
                "rerr_std": stats["std"],
                "rerr_min": stats["min"],
                "rerr_max": stats["max"],
                "patterns": patterns,
            }
        )
        if progress:
            print(
                f"  {faults.name}: RErr {100 * stats['mean']:.2f} % "
                f"(min {100 * stats['min']:.2f}, max {100 * stats['max']:.2f})",
                file=sys.stderr,
            )
    return {"err": error_rate(clean, labels), "examples": len(labels), "results": results}


def evaluate_bit_errors(
    model: nn.Module,
    scheme: QuantScheme,
    images: torch.Tensor,
    labels: torch.Tensor,
    bit_error_rates: Sequence[float],
    patterns: int = 10,
    seed: int = 0,
    batch_size: int = 1000,
    progress: bool = False,
) -> dict:
    """:func:`evaluate_fault_models` for symmetric random bit errors at each rate."""
    rates = [check_rate(rate, "bit error rate") for rate in bit_error_rates]
    report = evaluate_fault_models(
        model,
        scheme,
        images,
        labels,
        [RandomBitErrors(rate) for rate in rates],
        patterns=patterns,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
    for rate, row in zip(rates, report["results"]):
        row["bit_error_rate"] = rate
    return report
