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
from torch.func import functional_call, vmap
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


@torch.no_grad()
def accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000
) -> float:
    """Fraction of ``images`` that ``model``, run as it is (its own weights, any datapath
    faults active around the call), classifies as ``labels``; eval mode, the mode restored."""
    predictions, _ = _predict(model, {}, (images, labels), batch_size)
    return int((predictions == labels).sum()) / max(1, len(images))


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
    if flips == 0 and not pattern.datapath:
        predictions = clean.predictions  # nothing changes: skip the pass
    else:
        predictions, labels = deployment.predict(pattern, data, batch_size)
        _check_same_labels(labels, clean)
    return _trial_result(fault_model, seed, pattern, flips, predictions, clean)


def _trial_result(
    fault_model: FaultModel,
    seed: int,
    pattern: FaultPattern,
    flips: int,
    predictions: torch.Tensor,
    clean: CleanRun,
) -> TrialResult:
    return TrialResult(
        fault_model=fault_model.name,
        seed=int(seed),
        rerr=robust_error(clean.predictions, predictions, clean.labels),
        err_faulty=error_rate(predictions, clean.labels),
        flips=flips,
        err_clean=clean.err,
        examples=len(clean.labels),
        faulty_macs=sum(int(fault.mask.sum()) for fault in pattern.datapath.values()),
    )


def _check_same_labels(labels: torch.Tensor, clean: CleanRun) -> None:
    if not torch.equal(labels, clean.labels):
        raise BitrobustError("the data changed between passes (a shuffling data loader?)")


DEFAULT_MAX_MEMORY_MB = 512.0
"""Default memory budget of :func:`run_trials` for the patterns that go through the data
together (their faulty parameters and masks; with ``vectorize``, one batch's activations each)."""


def run_trials(
    deployment: Deployment,
    fault_models: Sequence[FaultModel],
    seeds: Sequence[int],
    data: Data,
    clean: CleanRun | None = None,
    batch_size: int = 1000,
    progress: Progress | None = None,
    max_memory_mb: float = DEFAULT_MAX_MEMORY_MB,
    vectorize: bool = False,
) -> list[list[TrialResult]]:
    """Every fault model × seed: ``result[i][k]`` is fault model i with seed k.

    Random bit errors that differ only in their rates share one draw per seed (the patterns
    are the same as sampled one by one), and the same seeds serve every fault model, so for
    one seed the flips at a lower rate are a subset of those at a higher rate.

    On a :class:`QuantizedDeployment`, K patterns go through the data together, K as many as
    fit in ``max_memory_mb`` (0: one pattern per pass, the path of every other deployment).
    They share the clean activations up to the first layer any of them changes, when the model
    is a chain of layers (checked on the data): the same operations on the same inputs, so the
    predictions are identical, and faults confined to late layers cost only the rest of the
    network. ``vectorize`` runs the K patterns in one ``torch.func.vmap`` call instead of a
    loop; off by default, as it did not pay on CPU (a GEMM-bound pass costs K GEMMs either way)
    and its logits may differ in the last bits (vmap lowers a biased linear layer to matmul +
    add, not addmm). Models vmap cannot run (custom autograd functions) fall back to the loop.
    """
    if isinstance(max_memory_mb, bool) or not isinstance(max_memory_mb, (int, float)):
        raise BitrobustError(f"max_memory_mb must be a number, got {max_memory_mb!r}")
    if not 0 <= max_memory_mb < float("inf"):
        raise BitrobustError(f"max_memory_mb must be finite and >= 0, got {max_memory_mb!r}")
    clean = clean_run(deployment, data, batch_size) if clean is None else clean
    results: list[list[TrialResult]] = [[] for _ in fault_models]
    total, done = len(fault_models) * len(seeds), 0
    pending = (
        (index, faults, seed, pattern)
        for seed in seeds
        for index, faults, pattern in _sample_all(fault_models, deployment.target, seed)
    )
    # memory faults only: an accelerator's emulated layers run one pattern per pass
    runner = (
        _PatternGroups(deployment, vectorize)
        if isinstance(deployment, QuantizedDeployment)
        else None
    )
    group_size = 1 if runner is None else runner.group_size(max_memory_mb, data, batch_size)
    for group in _chunks(pending, group_size):
        if runner is None or group_size == 1:
            trials = [
                run_trial(deployment, faults, seed, data, clean, batch_size, pattern)
                for _, faults, seed, pattern in group
            ]
        else:
            patterns = [item[3] for item in group]
            flips = [pattern.num_flips() for pattern in patterns]
            predictions = runner.predictions(patterns, flips, data, batch_size, clean)
            trials = [
                _trial_result(faults, seed, pattern, count, faulty, clean)
                for (_, faults, seed, pattern), count, faulty in zip(group, flips, predictions)
            ]
        for (index, faults, seed, _), trial in zip(group, trials):
            results[index].append(trial)
            done += 1
            if progress is not None:
                progress(done, total, f"{faults.name} seed {seed}: RErr {100 * trial.rerr:.2f} %")
    return results


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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


# -- several patterns per pass over the data -------------------------------------------------

Stage = tuple[str, nn.Module]
"""A step of a chain model: its qualified name ("" for the whole model) and the module."""


def chain_stages(module: nn.Module, depth: int | None = None) -> list[Stage]:
    """``module`` as the chain of its descendants it might run in order: modules with
    parameters or buffers of their own, or without children, are steps; the others are
    replaced by their children, ``depth`` levels down (None: all the way). Whether the module
    really runs them in order is not known from here: :func:`run_stages` is checked against
    the module before any use."""

    def expand(name: str, current: nn.Module, level: int) -> list[Stage]:
        children = list(current.named_children())
        own = [*current.parameters(recurse=False), *current.buffers(recurse=False)]
        if not children or own or (depth is not None and level >= depth):
            return [(name, current)]
        return [
            stage
            for child_name, child in children
            for stage in expand(f"{name}.{child_name}" if name else child_name, child, level + 1)
        ]

    return expand("", module, 0)


def run_stages(
    stages: Sequence[Stage],
    parameters: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    start: int = 0,
    stop: int | None = None,
) -> torch.Tensor:
    """``x`` through ``stages[start:stop]``, each run with its share of ``parameters``
    substituted (``functional_call``)."""
    for name, stage in stages[start:stop]:
        own = _scoped(parameters, name)
        x = functional_call(stage, own, (x,)) if own else stage(x)
    return x


def _scoped(parameters: Mapping[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    if not name:
        return dict(parameters)
    prefix = name + "."
    return {
        key[len(prefix) :]: value for key, value in parameters.items() if key.startswith(prefix)
    }


def _stage_of(stages: Sequence[Stage], parameter: str) -> int:
    for index, (name, _) in enumerate(stages):
        if not name or parameter.startswith(name + "."):
            return index
    raise BitrobustError(f"parameter {parameter!r} is in no stage of the chain")


class _PatternGroups:
    """Predictions of several memory fault patterns of one deployment in one pass over the
    data, sharing the clean prefix of a chain model (see :func:`run_trials`)."""

    def __init__(self, deployment: QuantizedDeployment, vectorize: bool):
        self.module = deployment.module
        self.qmodel = deployment.qmodel
        self.vectorize = vectorize
        self._chain: list[Stage] | None = None
        self._chain_checked = False

    def group_size(self, max_memory_mb: float, data: Data, batch_size: int) -> int:
        """How many patterns fit in the budget: each holds its masks and faulty parameters
        and, vectorized, one batch's activations."""
        per_pattern = sum(5 * qt.codes.numel() for qt in self.qmodel.tensors.values())
        if self.vectorize:
            per_pattern += self._activation_bytes(data, batch_size)
        return max(1, int(max_memory_mb * 2**20 // per_pattern))

    def _activation_bytes(self, data: Data, batch_size: int) -> int:
        """Bytes of every module output in a clean pass over the first batch."""
        sizes: list[int] = []

        def record(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                sizes.append(output.numel() * output.element_size())

        parameters = dict(self.qmodel.clean_parameters())
        for images, labels in batches(data, batch_size):
            hooks = [m.register_forward_hook(record) for m in self.module.modules()]
            try:
                _predict(self.module, parameters, (images, labels), len(images))
            finally:
                for hook in hooks:
                    hook.remove()
            break
        return sum(sizes)

    def predictions(
        self,
        patterns: Sequence[FaultPattern],
        flips: Sequence[int],
        data: Data,
        batch_size: int,
        clean: CleanRun,
    ) -> list[torch.Tensor]:
        """Each pattern's predictions over ``data`` (the clean ones where nothing flips:
        ``flips`` gives each pattern's flipped bits)."""
        clean_parameters = self.qmodel.clean_parameters()
        faulty = [i for i, count in enumerate(flips) if count > 0]
        substitutions = [patterns[i].parameters(self.qmodel) for i in faulty]
        changed = [
            {name for name, tensor in parameters.items() if tensor is not clean_parameters[name]}
            for parameters in substitutions
        ]
        starts: list[int] = []
        stacked: dict[int, tuple[list[int], dict[str, torch.Tensor]]] = {}
        outputs: list[list[torch.Tensor]] = [[] for _ in faulty]
        labels_seen = []
        was_training = self.module.training
        self.module.eval()
        device = _device(self.module, clean_parameters)
        try:
            with torch.no_grad():
                for images, labels in batches(data, batch_size) if faulty else ():
                    x = images.to(device)
                    if not starts:
                        starts = [self._start(names, clean_parameters, x) for names in changed]
                        if self.vectorize:
                            stacked = _stack_by_start(starts, substitutions, changed)
                    inputs = self._prefixes(clean_parameters, x, sorted(set(starts)))
                    logits: list[torch.Tensor | None] = [None] * len(faulty)
                    for start, (members, batched) in stacked.items() if self.vectorize else ():
                        together = self._vmapped(start, batched, clean_parameters, inputs[start])
                        for member, member_logits in zip(
                            members, () if together is None else together
                        ):
                            logits[member] = member_logits
                    for i, (start, parameters) in enumerate(zip(starts, substitutions)):
                        if logits[i] is None:
                            logits[i] = run_stages(
                                self._stages(start), parameters, inputs[start], start
                            )
                    for output, pattern_logits in zip(outputs, logits):
                        output.append(pattern_logits.argmax(dim=1).cpu())  # type: ignore[union-attr]
                    labels_seen.append(labels.cpu())
        finally:
            self.module.train(was_training)
        if faulty:
            _check_same_labels(torch.cat(labels_seen), clean)
        result = [clean.predictions] * len(patterns)
        for i, output in zip(faulty, outputs):
            result[i] = torch.cat(output)
        return result

    def _stages(self, start: int) -> list[Stage]:
        """The chain from a shared prefix on, the whole model from the input."""
        return self._chain if start > 0 and self._chain is not None else [("", self.module)]

    def _start(
        self, changed: set[str], clean_parameters: Mapping[str, torch.Tensor], x: torch.Tensor
    ) -> int:
        """The first chain stage a pattern changes, the stages before it shared; 0 (the whole
        model, from the input) unless a chain pays (a stored layer precedes that stage) and
        matches the model on ``x`` (checked once, only where it would pay)."""
        if not self._chain_checked:
            if self._first_changed(chain_stages(self.module), changed) == 0:
                return 0
            self._chain = self._checked_chain(clean_parameters, x)
            self._chain_checked = True
        return 0 if self._chain is None else self._first_changed(self._chain, changed)

    def _first_changed(self, chain: Sequence[Stage], changed: set[str]) -> int:
        if len(chain) < 2 or not changed:
            return 0
        start = min(_stage_of(chain, name) for name in changed)
        stored_before = any(_stage_of(chain, name) < start for name in self.qmodel.tensors)
        return start if stored_before else 0

    def _prefixes(
        self, clean_parameters: Mapping[str, torch.Tensor], x: torch.Tensor, starts: list[int]
    ) -> dict[int, torch.Tensor]:
        """The clean activations entering each of ``starts`` (ascending), each computed once."""
        inputs, h, position = {0: x}, x, 0
        for start in starts:
            if start > 0 and self._chain is not None:
                h = run_stages(self._chain, clean_parameters, h, position, start)
                inputs[start], position = h, start
        return inputs

    def _checked_chain(
        self, clean_parameters: Mapping[str, torch.Tensor], x: torch.Tensor
    ) -> list[Stage] | None:
        """The deepest chain decomposition whose clean logits on ``x`` equal the model's."""
        reference = functional_call(self.module, dict(clean_parameters), (x,))
        deepest, top = chain_stages(self.module), chain_stages(self.module, depth=1)
        for stages in [deepest] if top == deepest else [deepest, top]:
            if len(stages) < 2:
                continue
            try:  # a forward() that does more than run its children in order (e.g. a flatten)
                chained = run_stages(stages, clean_parameters, x)
            except (RuntimeError, TypeError, ValueError):
                continue
            if chained.shape == reference.shape and torch.equal(chained, reference):
                return stages
        return None

    def _vmapped(
        self,
        start: int,
        stacked: Mapping[str, torch.Tensor],
        clean_parameters: Mapping[str, torch.Tensor],
        h: torch.Tensor,
    ) -> torch.Tensor | None:
        """The logits of patterns stacked along dim 0 from one vmap call, or None (and the
        loop from now on) where vmap cannot run the model."""
        stages = self._stages(start)
        shared = {n: t for n, t in clean_parameters.items() if n not in stacked}

        def one(batched: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
            return run_stages(stages, {**shared, **batched}, inputs, start)

        try:
            return vmap(one, in_dims=(0, None))(dict(stacked), h)
        except Exception:  # noqa: BLE001 - e.g. autograd.Function without a vmap rule
            self.vectorize = False
            return None


def _stack_by_start(
    starts: Sequence[int],
    substitutions: Sequence[Mapping[str, torch.Tensor]],
    changed: Sequence[set[str]],
) -> dict[int, tuple[list[int], dict[str, torch.Tensor]]]:
    """start -> (the patterns that start there, their changed parameters stacked on dim 0)."""
    groups: dict[int, list[int]] = {}
    for i, start in enumerate(starts):
        groups.setdefault(start, []).append(i)
    stacked = {}
    for start, members in groups.items():
        names = set().union(*(changed[i] for i in members))
        stacked[start] = (
            members,
            {n: torch.stack([substitutions[i][n] for i in members]) for n in sorted(names)},
        )
    return stacked


# -- sweeps ---------------------------------------------------------------------------------


def evaluate_deployment(
    deployment: Deployment,
    data: Data,
    fault_models: Sequence[FaultModel],
    patterns: int = 10,
    seed: int = 0,
    batch_size: int = 1000,
    progress: Progress | None = None,
    max_memory_mb: float = DEFAULT_MAX_MEMORY_MB,
    vectorize: bool = False,
) -> Evaluation:
    """Err, and RErr statistics over ``patterns`` seeded patterns (seeds ``seed`` ..
    ``seed + patterns − 1``, the same for every fault model) for every fault model.
    ``max_memory_mb`` and ``vectorize``: how many patterns share a pass (:func:`run_trials`).

    Returns an :class:`Evaluation`; its ``to_json()`` has ``err``, ``examples`` and one row per
    fault model (:meth:`FaultModelResult.to_json`).
    """
    if isinstance(patterns, bool) or not isinstance(patterns, int) or patterns < 1:
        raise BitrobustError(f"patterns must be a positive integer, got {patterns!r}")
    clean = clean_run(deployment, data, batch_size)
    seeds = range(seed, seed + patterns)
    trials = run_trials(
        deployment, fault_models, seeds, data, clean, batch_size, progress,
        max_memory_mb=max_memory_mb, vectorize=vectorize,
    )  # fmt: skip
    return Evaluation(
        err=clean.err,
        examples=len(clean.labels),
        results=tuple(
            FaultModelResult(faults, tuple(rows)) for faults, rows in zip(fault_models, trials)
        ),
    )


@dataclass(frozen=True, eq=False)
class FaultModelResult:
    """One fault model's trials (one per seed) and their statistics."""

    fault_model: FaultModel
    trials: tuple[TrialResult, ...]

    @property
    def rerr(self) -> stats.Summary:
        """RErr over the patterns, with a 95 % t interval."""
        return stats.summarize([t.rerr for t in self.trials])

    @property
    def err_faulty(self) -> stats.Summary:
        return stats.summarize([t.err_faulty for t in self.trials])

    @property
    def accuracy_loss(self) -> stats.Summary:
        return stats.summarize([t.accuracy_loss for t in self.trials])

    def to_json(self) -> dict[str, Any]:
        """One JSON row: ``rerr_mean``/``std``/``min``/``max``/``ci_low``/``ci_high``,
        ``err_faulty_mean``, ``accuracy_loss_mean``, ``flips_mean``, ``patterns`` and, for
        random bit errors, ``bit_error_rate``, ``zero_to_one``, ``one_to_zero``."""
        rerr = self.rerr
        row: dict[str, Any] = {"fault_model": self.fault_model.name}
        row.update({f"rerr_{key}": value for key, value in rerr.to_json(interval=False).items()})
        row["rerr_ci_low"], row["rerr_ci_high"] = rerr.ci_low, rerr.ci_high
        row["err_faulty_mean"] = self.err_faulty.mean
        row["accuracy_loss_mean"] = self.accuracy_loss.mean
        row["flips_mean"] = stats.summarize([float(t.flips) for t in self.trials]).mean
        row["patterns"] = len(self.trials)
        faults = self.fault_model
        if isinstance(faults, RandomBitErrors):
            row["bit_error_rate"] = faults.bit_error_rate
            row["zero_to_one"] = faults.zero_to_one
            row["one_to_zero"] = faults.one_to_zero
        return row


@dataclass(frozen=True, eq=False)
class Evaluation:
    """A sweep's result: the clean error, and one :class:`FaultModelResult` per fault model."""

    err: float
    examples: int
    results: tuple[FaultModelResult, ...]

    def to_json(self) -> dict[str, Any]:
        """``{"err", "examples", "results": [one row per fault model]}``."""
        return {
            "err": self.err,
            "examples": self.examples,
            "results": [result.to_json() for result in self.results],
        }


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
    max_memory_mb: float = DEFAULT_MAX_MEMORY_MB,
    vectorize: bool = False,
) -> Evaluation:
    """:func:`evaluate_deployment` for ``model`` quantized with ``scheme`` (memory faults).
    ``images`` may be a tensor (with ``labels``) or any :data:`Data` (``labels`` None)."""
    data = (images, labels) if labels is not None else images
    return evaluate_deployment(
        QuantizedDeployment(model, scheme), data, fault_models, patterns, seed, batch_size,
        progress, max_memory_mb=max_memory_mb, vectorize=vectorize,
    )  # fmt: skip


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
    max_memory_mb: float = DEFAULT_MAX_MEMORY_MB,
    vectorize: bool = False,
) -> Evaluation:
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
        max_memory_mb=max_memory_mb,
        vectorize=vectorize,
    )
