"""Trials: a deployed model, a fault model and a seed in; Err, RErr and accuracy loss out.

A :class:`Deployment` is a model as it runs with its weights in (possibly faulty) memory: the
module, the stored codes (:class:`~bitrobust.quant.QuantizedModel`) and, on an emulated
accelerator, its datapath layout. A *trial* (:func:`run_trial`) samples a fault pattern from
the deployment's target and a seed, and runs the untouched module on the faulty weights
(``torch.func.functional_call``) with the pattern's datapath faults active for that forward pass
only. No module is edited, so trials can run in any order, in other processes or on other
machines, and give the same numbers. :class:`QuantizedDeployment` is the memory-only case;
:class:`bitrobust.hw.deploy.AcceleratorDeployment` runs on an emulated accelerator.

RErr (Stutz et al.): an example counts as an error if the clean model *or* the faulty one gets
it wrong, so RErr >= Err by construction. The accuracy loss is measured against the same
deployment without faults (Siddique & Hoque's loss against the fault-free accelerator).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import TensorDataset

from bitrobust import stats
from bitrobust.errors import BitrobustError, check_rate
from bitrobust.faults import FaultModel, FaultPattern, FaultTarget, RandomBitErrors
from bitrobust.faults.core import SAMPLER_VERSION
from bitrobust.quant import QuantizedModel, QuantScheme

Data = tuple[torch.Tensor, torch.Tensor] | TensorDataset | Iterable[Any]
"""Labelled examples: an ``(images, labels)`` pair of tensors, a ``TensorDataset``, or any
iterable of ``(images, labels)`` batches such as a ``DataLoader`` (which must give the same
examples in the same order on every pass)."""

Progress = Callable[[int, int, str], None]
"""``progress(done, total, message)``: called after each trial; the library prints nothing."""


def batches(data: Data, batch_size: int = 1000) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(images, labels)`` batches of ``data`` (tensors are split into ``batch_size``)."""
    if isinstance(data, TensorDataset):
        data = (data.tensors[0], data.tensors[1])
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        images, labels = data
        if len(images) != len(labels):
            raise BitrobustError(f"{len(images)} images but {len(labels)} labels")
        yield from zip(images.split(batch_size), labels.split(batch_size))
        return
    for batch in data:
        if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
            raise BitrobustError("a data loader must yield (images, labels) batches")
        yield batch[0], batch[1]


@torch.no_grad()
def predict(
    model: nn.Module,
    parameters: Mapping[str, torch.Tensor],
    images: torch.Tensor,
    batch_size: int = 1000,
) -> torch.Tensor:
    """Class predictions of ``model`` run with ``parameters`` substituted (in eval mode; the
    model's train/eval mode is restored afterwards)."""
    labels = torch.zeros(len(images), dtype=torch.long)
    return _predict(model, parameters, (images, labels), batch_size)[0]


def _predict(
    model: nn.Module,
    parameters: Mapping[str, torch.Tensor],
    data: Data,
    batch_size: int,
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(predictions, labels) over ``data``, on the parameters' device, in eval mode."""
    was_training = model.training
    model.eval()
    device = _device(model, parameters)
    outputs, targets = [], []
    try:
        with torch.no_grad(), context():
            for images, labels in batches(data, batch_size):
                logits = functional_call(model, dict(parameters), (images.to(device),))
                outputs.append(logits.argmax(dim=1).cpu())
                targets.append(labels.cpu())
    finally:
        model.train(was_training)
    if not outputs:
        return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    return torch.cat(outputs), torch.cat(targets)


def _device(model: nn.Module, parameters: Mapping[str, torch.Tensor]) -> torch.device:
    for tensor in parameters.values():
        return tensor.device
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def error_rate(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of wrong predictions."""
    return (predictions != labels).float().mean().item()


def robust_error(
    clean_predictions: torch.Tensor, faulty_predictions: torch.Tensor, labels: torch.Tensor
) -> float:
    """Fraction of examples that the clean *or* the faulty model gets wrong."""
    wrong = (clean_predictions != labels) | (faulty_predictions != labels)
    return wrong.float().mean().item()


# -- deployments ----------------------------------------------------------------------------


class Deployment(ABC):
    """A module with its weights stored as codes: what fault models sample from and trials run.

    Subclasses say how a pattern's faulty codes enter the forward pass
    (:meth:`substitutions`) and how its datapath faults are switched on (:meth:`activate`).
    """

    def __init__(self, module: nn.Module, qmodel: QuantizedModel, datapath: Any = None):
        if not qmodel.tensors:
            raise BitrobustError(
                "the model has no stored (quantized) parameters, so faults cannot reach it; "
                "quantize at least one parameter"
            )
        self.module = module
        self.target = FaultTarget(qmodel, datapath)

    @property
    def qmodel(self) -> QuantizedModel:
        return self.target.qmodel

    @abstractmethod
    def substitutions(self, pattern: FaultPattern) -> dict[str, torch.Tensor]:
        """Tensors to run the module with (``functional_call``) under ``pattern``."""

    def activate(self, pattern: FaultPattern) -> contextlib.AbstractContextManager:
        """A context in which the pattern's datapath faults act (none for memory-only)."""
        if pattern.datapath:
            raise BitrobustError(
                "datapath (PE) faults need a model deployed on an emulated accelerator "
                "(bitrobust.hw.deploy.AcceleratorDeployment)"
            )
        return contextlib.nullcontext()

    def predict(
        self, pattern: FaultPattern | None, data: Data, batch_size: int = 1000
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(predictions, labels) over ``data`` under ``pattern`` (None: fault free)."""
        pattern = FaultPattern() if pattern is None else pattern
        return _predict(
            self.module,
            self.substitutions(pattern),
            data,
            batch_size,
            lambda: self.activate(pattern),
        )

    def faulty_module(self, pattern: FaultPattern) -> nn.Module:
        """A standalone copy of the module with the faulty weights loaded, that runs with the
        pattern's datapath faults: for a user's own loop. ``state_dict()`` gives its weights."""
        return FaultyModule(self, pattern)


class QuantizedDeployment(Deployment):
    """A float module whose stored parameters are quantized with ``scheme`` (memory faults
    only). Parameters are stored unless their module opts out
    (:func:`~bitrobust.quant.parameter_schemes`)."""

    def __init__(self, module: nn.Module, scheme: QuantScheme):
        super().__init__(module, QuantizedModel.from_module(module, scheme))
        self.scheme = scheme

    def substitutions(self, pattern: FaultPattern) -> dict[str, torch.Tensor]:
        return pattern.parameters(self.qmodel)


class FaultyModule(nn.Module):
    """A deployment's module under one fault pattern, as an ordinary module."""

    def __init__(self, deployment: Deployment, pattern: FaultPattern):
        super().__init__()
        self.inner = copy.deepcopy(deployment.module)
        with torch.no_grad():
            for name, tensor in deployment.substitutions(pattern).items():
                _assign(self.inner, name, tensor)
        self._activate = lambda: deployment.activate(pattern)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self._activate():
            return self.inner(*args, **kwargs)


def _assign(module: nn.Module, name: str, tensor: torch.Tensor) -> None:
    owner_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    current = getattr(owner, leaf)
    current.data = tensor.detach().clone().to(current.device)


# -- trials ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CleanRun:
    """The fault-free predictions a trial compares with (computed once per deployment)."""

    predictions: torch.Tensor
    labels: torch.Tensor

    @property
    def err(self) -> float:
        return error_rate(self.predictions, self.labels)


@dataclass(frozen=True)
class TrialResult:
    """Metrics of one fault pattern: enough to re-create the trial from its row.

    ``err_clean``/``err_faulty``: test error without / with the faults; ``rerr``: clean or
    faulty wrong; ``flips``: stored bits flipped; ``faulty_macs``: MACs on faulty PEs.
    """

    fault_model: str
    seed: int
    rerr: float
    err_faulty: float
    flips: int
    err_clean: float = 0.0
    examples: int = 0
    faulty_macs: int = 0

    @property
    def accuracy_loss(self) -> float:
        """Accuracy lost to the faults: fault-free accuracy − faulty accuracy."""
        return self.err_faulty - self.err_clean

    def recovery(self, mitigated: TrialResult) -> float | None:
        """The share of this trial's lost accuracy that ``mitigated`` wins back, None when
        nothing was lost."""
        lost = self.accuracy_loss
        return (self.err_faulty - mitigated.err_faulty) / lost if lost > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "accuracy_loss": self.accuracy_loss}

    to_dict = to_json


def clean_run(deployment: Deployment, data: Data, batch_size: int = 1000) -> CleanRun:
    """The deployment's fault-free predictions on ``data``."""
    predictions, labels = deployment.predict(None, data, batch_size)
    if len(labels) == 0:
        raise BitrobustError("no examples to evaluate on")
    return CleanRun(predictions, labels)


def run_trial(
    deployment: Deployment,
    fault_model: FaultModel,
    seed: int,
    data: Data,
    clean: CleanRun | None = None,
    batch_size: int = 1000,
    pattern: FaultPattern | None = None,
) -> TrialResult:
    """Evaluate one seeded fault pattern (``pattern``, if given, is the already sampled one);
    ``clean`` may be passed to save the fault-free pass."""
    clean = clean_run(deployment, data, batch_size) if clean is None else clean
    if pattern is None:
        pattern = fault_model.sample(deployment.target, seed)
    flips = pattern.num_flips()
    faulty_macs = sum(int(fault.mask.sum()) for fault in pattern.datapath.values())
    if flips == 0 and not pattern.datapath:
        predictions = clean.predictions  # nothing changes: skip the pass
    else:
        predictions, labels = deployment.predict(pattern, data, batch_size)
        if not torch.equal(labels, clean.labels):
            raise BitrobustError("the data changed between passes (a shuffling data loader?)")
    return TrialResult(
        fault_model=fault_model.name,
        seed=int(seed),
        rerr=robust_error(clean.predictions, predictions, clean.labels),
        err_faulty=error_rate(predictions, clean.labels),
        flips=flips,
        err_clean=clean.err,
        examples=len(clean.labels),
        faulty_macs=faulty_macs,
    )


def run_trials(
    deployment: Deployment,
    fault_models: Sequence[FaultModel],
    seeds: Sequence[int],
    data: Data,
    clean: CleanRun | None = None,
    batch_size: int = 1000,
    progress: Progress | None = None,
) -> list[list[TrialResult]]:
    """Every fault model × seed: ``result[i][k]`` is fault model i with seed k.

    Random bit errors that differ only in their rates share one draw per seed (the patterns
    are the same as sampled one by one), and the same seeds serve every fault model, so for
    one seed the flips at a lower rate are a subset of those at a higher rate.
    """
    clean = clean_run(deployment, data, batch_size) if clean is None else clean
    results: list[list[TrialResult]] = [[] for _ in fault_models]
    total, done = len(fault_models) * len(seeds), 0
    for seed in seeds:
        for index, faults, pattern in _sample_all(fault_models, deployment.target, seed):
            trial = run_trial(deployment, faults, seed, data, clean, batch_size, pattern)
            results[index].append(trial)
            done += 1
            if progress is not None:
                progress(done, total, f"{faults.name} seed {seed}: RErr {100 * trial.rerr:.2f} %")
    return results


def _sample_all(
    fault_models: Sequence[FaultModel], target: FaultTarget, seed: int
) -> list[tuple[int, FaultModel, FaultPattern]]:
    groups: dict[str, list[int]] = {}
    for index, faults in enumerate(fault_models):
        key = faults.at_rates(0, 0).name if isinstance(faults, RandomBitErrors) else f"#{index}"
        groups.setdefault(key, []).append(index)
    sampled = []
    for indices in groups.values():
        first = fault_models[indices[0]]
        members = [fault_models[i] for i in indices]
        if isinstance(first, RandomBitErrors):
            patterns = first.sample_rates(target, seed, members)  # type: ignore[arg-type]
        else:
            patterns = [first.sample(target, seed)]
        sampled.extend(zip(indices, members, patterns))
    return sorted(sampled, key=lambda item: item[0])


# -- sweeps ---------------------------------------------------------------------------------


def evaluate_deployment(
    deployment: Deployment,
    data: Data,
    fault_models: Sequence[FaultModel],
    patterns: int = 10,
    seed: int = 0,
    batch_size: int = 1000,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Err, and RErr statistics over ``patterns`` seeded patterns (seeds ``seed`` ..
    ``seed + patterns − 1``, the same for every fault model) for every fault model.

    JSON-ready: ``err``, ``examples`` and one row per fault model with ``rerr_mean``,
    ``rerr_std``, ``rerr_min``, ``rerr_max``, its 95 % t interval ``rerr_ci_low``/``high``,
    ``err_faulty_mean``, ``accuracy_loss_mean``, ``flips_mean`` and ``patterns``.
    """
    if isinstance(patterns, bool) or not isinstance(patterns, int) or patterns < 1:
        raise BitrobustError(f"patterns must be a positive integer, got {patterns!r}")
    clean = clean_run(deployment, data, batch_size)
    seeds = range(seed, seed + patterns)
    trials = run_trials(deployment, fault_models, seeds, data, clean, batch_size, progress)
    return {
        "err": clean.err,
        "examples": len(clean.labels),
        "results": [summarize_trials(faults, rows) for faults, rows in zip(fault_models, trials)],
    }


def summarize_trials(fault_model: FaultModel, trials: Sequence[TrialResult]) -> dict[str, Any]:
    """One JSON row for a fault model's trials: RErr statistics and means of the rest."""
    rerr = stats.summarize([t.rerr for t in trials])
    row: dict[str, Any] = {"fault_model": fault_model.name}
    row.update({f"rerr_{key}": value for key, value in rerr.to_json(interval=False).items()})
    row["rerr_ci_low"], row["rerr_ci_high"] = rerr.ci_low, rerr.ci_high
    row["err_faulty_mean"] = stats.summarize([t.err_faulty for t in trials]).mean
    row["accuracy_loss_mean"] = stats.summarize([t.accuracy_loss for t in trials]).mean
    row["flips_mean"] = stats.summarize([float(t.flips) for t in trials]).mean
    row["patterns"] = len(trials)
    if isinstance(fault_model, RandomBitErrors):
        row["bit_error_rate"] = fault_model.bit_error_rate
        row["zero_to_one"] = fault_model.zero_to_one
        row["one_to_zero"] = fault_model.one_to_zero
    return row


def evaluate_fault_models(
    model: nn.Module,
    scheme: QuantScheme,
    images: torch.Tensor | Data,
    labels: torch.Tensor | None,
    fault_models: Sequence[FaultModel],
    patterns: int = 10,
    seed: int = 0,
    batch_size: int = 1000,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """:func:`evaluate_deployment` for ``model`` quantized with ``scheme`` (memory faults).
    ``images`` may be a tensor (with ``labels``) or any :data:`Data` (``labels`` None)."""
    data = (images, labels) if labels is not None else images
    return evaluate_deployment(
        QuantizedDeployment(model, scheme), data, fault_models, patterns, seed, batch_size, progress
    )


def evaluate_bit_errors(
    model: nn.Module,
    scheme: QuantScheme,
    images: torch.Tensor | Data,
    labels: torch.Tensor | None,
    bit_error_rates: Sequence[float],
    patterns: int = 10,
    seed: int = 0,
    batch_size: int = 1000,
    progress: Progress | None = None,
    sampler: int = SAMPLER_VERSION,
) -> dict[str, Any]:
    """:func:`evaluate_fault_models` for symmetric random bit errors at each rate (drawn with
    random bit error sampler ``sampler``)."""
    rates = [check_rate(rate, "bit error rate") for rate in bit_error_rates]
    return evaluate_fault_models(
        model,
        scheme,
        images,
        labels,
        [RandomBitErrors(rate, sampler=sampler) for rate in rates],
        patterns=patterns,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
