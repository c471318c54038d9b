"""``bitrobust reproduce axdnn2023``: approximate DNNs under permanent PE faults (Siddique & Hoque
2023) and their mitigation by FaL-reTune, FAP and FAP+T (reconstructions, see
:mod:`bitrobust.hw.mitigation` and ``papers.md`` §2.3/§2.5).

For every dataset × model (an MLP and LeNet-5, trained with RQuant quantization-aware training,
several training seeds), deployed on 8-bit EvoApprox multipliers, unsigned (asymmetric uint8
operands) and signed (symmetric int8 operands), each model first retrained through its
multiplier (approximation-aware retraining, as the paper's AxDNNs are):

1. accuracy vs multiplier: fault-free accuracy on each multiplier of the list, with and without
   that retraining, with its power (EvoApprox PDK45 figures) and MAE;
2. accuracy loss vs faulty bit position: bit b of the 16-bit product stuck at 0/1 in a fraction
   of the PEs of a 16×16 weight-stationary systolic array (TPU-like) and of 256 round-robin
   multiplier units (GPU-like), for the exact multiplier and several approximate ones of each
   family (the same PEs for every bit, stuck-at value and multiplier); from it the AxDNN − AccDNN
   loss gap (interval over training seeds and fault maps) and the rank correlation of multiplier
   power with the fault-induced loss (energy vs resilience);
3. mitigation at one fault rate: no mitigation vs FAP (faulty PEs bypassed), FAP-zero, FAP+T,
   FaL-reTune (improved: guard, bias correction, centred objective) and FaL-reTune literal
   (papers.md §2.3: weight mapping and retuning only), all retuning with the same budget.

The study is a campaign: :func:`spec_text` writes :class:`AxSettings` as a spec (the packaged
``specs/axdnn2023.toml`` and ``specs/axdnn2023-quick.toml`` are its output for the full and quick
settings; a test keeps them equal), which runs into ``<out-dir>/campaign.db``. The report is
built from the store's rows and writes ``axdnn2023.md`` (tables and findings),
``axdnn2023-multipliers.png``, ``axdnn2023-bits.png``, ``axdnn2023-energy.png`` and
``axdnn2023.json``.

Fault entry names (the claims code parses them): ``fault-free-<multiplier>-<array>`` (the
deployment the sweeps use: retrained when the study retrains), ``noretrain-<multiplier>-<array>``
(the same, not retrained), ``bits-<multiplier>-<array>-sa<v>`` and
``mitigation-<multiplier>-<array>-b<bit>-sa<v>``; rows carry ``accelerator`` = "<multiplier> on
<array><size>" and ``mitigation`` = the method's label.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bitrobust.campaign.plan import training_jobs
from bitrobust.campaign.spec import CampaignSpec, parse_spec
from bitrobust.checkpoint import load_checkpoint
from bitrobust.data import evoapprox_dir, load_dataset, subset
from bitrobust.errors import BitrobustError
from bitrobust.evaluate import accuracy
from bitrobust.experiments.campaigns import SPECS, provenance_line, run_study_spec
from bitrobust.hw import load_multiplier
from bitrobust.provenance import provenance
from bitrobust.stats import hierarchical_bootstrap_interval, spearman_test, summarize

#: Fault-free multiplier sweep, by published power (PDK45, mW) from high to low.
UNSIGNED_MULTIPLIERS = (
    "mul8u_1JFF",  # exact, 0.391
    "mul8u_2P7",  # 0.386
    "mul8u_KEM",  # 0.370
    "mul8u_NGR",  # 0.276
    "mul8u_L40",  # 0.189
    "mul8u_12N4",  # 0.142
    "mul8u_17KS",  # 0.104
)
#: The Hoque lab's signed set under the EvoApproxLib v2022 names (1KV6 exact; the v2022 1KV8 is
#: the file mul8s_1KV8_v2022, as master's mul8s_1KV8 is another, exact, circuit).
SIGNED_MULTIPLIERS = (
    "mul8s_1KV6",  # exact, 0.425
    "mul8s_1KV8_v2022",  # 0.422
    "mul8s_1KV9",  # 0.410
    "mul8s_1KVP",  # 0.363
    "mul8s_1L2J",  # 0.301
    "mul8s_1L2L",  # 0.200
    "mul8s_1L2N",  # 0.126
    "mul8s_1L12",  # 0.052
)
#: Fault sweeps: per family its exact multiplier and three approximate ones spanning the
#: published power (chosen by power alone, before any result).
FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("mul8u_1JFF", ("mul8u_NGR", "mul8u_12N4", "mul8u_17KS")),
    ("mul8s_1KV6", ("mul8s_1KVP", "mul8s_1L2L", "mul8s_1L2N")),
)
#: Mitigation: each family's exact multiplier and its approximate one of about 0.13 mW.
MITIGATED = ("mul8u_1JFF", "mul8u_12N4", "mul8s_1KV6", "mul8s_1L2N")

#: Mitigations compared, by report name: (MitigationSpec method, options). ``fap`` bypasses
#: the faulty PEs (Zhang et al.'s hardware FAP); ``fap-zero`` only writes the zero-point code,
#: so a faulty PE still adds its stuck bit (software-only pruning); ``falretune`` is the improved
#: reconstruction, ``falretune-literal`` papers.md §2.3's (weight mapping and retuning only).
MITIGATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "fap": ("fap", {}),
    "fap-zero": ("fap", {"bypass": False}),
    "fap-t": ("fap-t", {}),
    "falretune": ("falretune", {}),
    "falretune-literal": (
        "falretune",
        {"guard": False, "compensate_bias": False, "objective": "absolute"},
    ),
}
RETUNING = ("fap-t", "falretune", "falretune-literal")  # the methods with a retraining budget

PAPER = {
    "loss": "a permanent fault can cost an AxDNN up to 56 % accuracy where the same faulty bit "
    "costs the AccDNN only 4 %",
    "recovery": "FaL-reTune improves AxDNN performance up to 98 % at fault rates up to 50 %",
    "energy": "fault resilience in AxDNNs is orthogonal to their energy efficiency",
}


@dataclass
class AxSettings:
    """What to train, on which multipliers and arrays to evaluate, which faults to inject and
    how to mitigate them. The defaults are the full study."""

    datasets: tuple[str, ...] = ("mnist", "fashion-mnist")
    models: tuple[tuple[str, dict[str, Any]], ...] = (
        ("mlp", {"hidden": [256, 128]}),
        ("lenet5", {}),
    )
    training_seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 4
    batch_size: int = 128
    lr: float = 0.05
    train_limit: int | None = 30000
    test_limit: int = 1000
    calibration: int = 1000
    multipliers: tuple[str, ...] = UNSIGNED_MULTIPLIERS + SIGNED_MULTIPLIERS
    families: tuple[tuple[str, tuple[str, ...]], ...] = FAMILIES
    arrays: tuple[str, ...] = ("tpu", "gpu")
    array_size: int = 16  # the TPU-like array is N×N
    gpu_units: int = 256  # the GPU-like array's multiplier units
    retrain_epochs: int = 2  # approximation-aware retraining before faults; 0: none
    retrain_examples: int = 2000
    retrain_lr: float = 0.005
    bits: tuple[int, ...] = (0, 4, 8, 12, 14, 15)
    stuck_at: tuple[int, ...] = (0, 1)
    rates: tuple[float, ...] = (0.1, 0.3, 0.5)
    patterns: int = 3
    mitigated: tuple[str, ...] = MITIGATED
    mitigation_arrays: tuple[str, ...] = ("tpu",)
    mitigation_rate: float = 0.5
    mitigation_faults: tuple[tuple[int, int], ...] = ((14, 1), (15, 0))
    mitigation_patterns: int = 3
    methods: tuple[str, ...] = ("fap", "fap-zero", "fap-t", "falretune", "falretune-literal")
    retune_epochs: int = 2
    retune_lr: float = 0.005
    retune_examples: int = 2000
    seed: int = 0

    @property
    def swept(self) -> tuple[str, ...]:
        """Every multiplier of the fault sweeps: each family's exact one, then its others."""
        return tuple(m for exact, others in self.families for m in (exact, *others))

    @property
    def approximate(self) -> tuple[str, ...]:
        return tuple(m for _, others in self.families for m in others)

    def exact_of(self, multiplier: str) -> str:
        """The exact multiplier of ``multiplier``'s family (the AccDNN it is compared with)."""
        return next(exact for exact, others in self.families if multiplier in (exact, *others))

    def size_of(self, array: str) -> int:
        return self.array_size if array == "tpu" else self.gpu_units

    def check(self) -> AxSettings:
        """Raise a BitrobustError naming the first inconsistent setting."""
        unknown = (set(self.arrays) | set(self.mitigation_arrays)) - {"tpu", "gpu"}
        if unknown:
            raise BitrobustError(f"unknown array(s) {sorted(unknown)}; choose tpu or gpu")
        if not set(self.mitigated) <= set(self.swept):
            raise BitrobustError("every mitigated multiplier must be in a fault-sweep family")
        if not set(self.methods) <= set(MITIGATIONS):
            raise BitrobustError(f"unknown method(s); known: {', '.join(MITIGATIONS)}")
        if min(self.patterns, self.mitigation_patterns, len(self.training_seeds)) < 1:
            raise BitrobustError("patterns and training seeds must be at least 1")
        return self


QUICK = AxSettings(
    datasets=("mnist",),
    epochs=2,
    train_limit=10000,
    test_limit=300,
    retrain_epochs=1,
    retrain_examples=1000,
    bits=(8, 14, 15),
    rates=(0.1, 0.5),
    mitigation_faults=((14, 1),),
    retune_epochs=1,
    retune_examples=500,
)


def settings(quick: bool) -> AxSettings:
    """Quick (under 15 min on 2 cores) or full (under 110 min on 2 cores, 2 workers)."""
    return QUICK if quick else AxSettings()


def _log(message: str) -> None:
    """Progress of the study: the ``bitrobust`` logger at INFO (the CLI shows it on stderr)."""
    logging.getLogger(__name__).info(message)


# -- the cost estimate -----------------------------------------------------------------------

#: Unit costs in seconds of one worker (one thread), measured once on the development machine
#: (2-core x86_64) while another study kept it busy (load ≈ 3.3), so they overestimate an idle
#: machine: MNIST models after one training epoch on 5000 images, a 16×16 TPU-like array, the
#: mean of mul8u_12N4 and mul8s_1L2N (half the swept multipliers are of each family; the
#: unsigned one costs up to 20 % more, the signed one less). ``train`` and ``retune`` per 1000
#: example-epochs; ``trial`` (one product-fault pattern) and ``deploy`` (convert, calibrate on
#: 1000 images, fault-free run) per 1000 test examples; ``fixed`` per mitigation method beyond
#: its test run and its retuning, per 1000 retuning examples (histograms, guard evaluations,
#: weight mapping, pruning).
UNIT_COSTS: dict[str, dict[str, Any]] = {
    "mlp": {
        "train": 0.434,
        "trial": 0.047,
        "deploy": 0.07,
        "retune": 0.135,
        "fixed": {
            "fap": 0.02,
            "fap-zero": 0.0,
            "fap-t": 0.06,
            "falretune": 0.68,
            "falretune-literal": 0.18,
        },
    },
    "lenet5": {
        "train": 0.644,
        "trial": 0.50,
        "deploy": 0.675,
        "retune": 0.68,
        "fixed": {
            "fap": 0.26,
            "fap-zero": 0.0,
            "fap-t": 0.17,
            "falretune": 2.23,
            "falretune-literal": 1.04,
        },
    },
}
TRAIN_SIZE = 60000  # MNIST and Fashion-MNIST training images


def cost_estimate(s: AxSettings, workers: int = 2) -> dict[str, float]:
    """Worker seconds per stage from :data:`UNIT_COSTS` × counts, and the wall time on
    ``workers`` workers (each deployment counted as built by every worker)."""
    stages = dict.fromkeys(("training", "retraining", "deployments", "sweeps", "mitigation"), 0.0)
    tests = s.test_limit / 1000
    for model, _ in s.models:
        unit = UNIT_COSTS[model]
        instances = len(s.datasets) * len(s.training_seeds)
        examples = (s.train_limit or TRAIN_SIZE) / 1000
        stages["training"] += instances * unit["train"] * s.epochs * examples
        retrained = len(dict.fromkeys((*s.multipliers, *s.swept))) if s.retrain_epochs else 0
        stages["retraining"] += (
            instances
            * retrained
            * (unit["deploy"] + unit["retune"] * s.retrain_epochs * s.retrain_examples / 1000)
        )
        stages["deployments"] += instances * _deployments(s) * workers * unit["deploy"]
        sweep = len(s.bits) * len(s.stuck_at) * len(s.rates) * s.patterns
        stages["sweeps"] += instances * len(s.swept) * len(s.arrays) * sweep * unit["trial"] * tests
        settings_count = len(s.mitigated) * len(s.mitigation_arrays) * len(s.mitigation_faults)
        per_setting = sum(_mitigation_cost(s, unit, m) for m in ("none", *s.methods))
        stages["mitigation"] += instances * settings_count * s.mitigation_patterns * per_setting
    total = sum(stages.values())
    return {**stages, "worker_total": total, "wall": total / workers, "workers": workers}


def _deployments(s: AxSettings) -> int:
    """Distinct (multiplier, array, retrained) deployments of one model."""
    first = len(dict.fromkeys((*s.multipliers, *s.swept)))
    others = len(s.swept) * (len(s.arrays) - 1)
    return first * (2 if s.retrain_epochs else 1) + others


def _mitigation_cost(s: AxSettings, unit: dict[str, Any], method: str) -> float:
    """One mitigated trial: the test run, the method's own work and its retuning."""
    cost = unit["trial"] * s.test_limit / 1000
    if method == "none":
        return cost
    cost += unit["fixed"][method] * max(1.0, s.retune_examples / 1000)
    if method in RETUNING:
        cost += unit["retune"] * s.retune_epochs * s.retune_examples / 1000
    return cost


def counts(s: AxSettings) -> dict[str, int]:
    """How much work the settings make: trained models, retrainings and trials by kind."""
    instances = len(s.datasets) * len(s.models) * len(s.training_seeds)
    sweep = len(s.bits) * len(s.stuck_at) * len(s.rates) * s.patterns
    mitigation = len(s.mitigated) * len(s.mitigation_arrays) * len(s.mitigation_faults)
    retrained = len(dict.fromkeys((*s.multipliers, *s.swept))) if s.retrain_epochs else 0
    return {
        "models": instances,
        "retrainings": instances * retrained,
        "fault_free_trials": instances * len(_fault_free_entries(s)),
        "sweep_trials": instances * len(s.swept) * len(s.arrays) * sweep,
        "mitigation_trials": instances * mitigation * s.mitigation_patterns * (1 + len(s.methods)),
    }


def budget_lines(s: AxSettings, workers: int = 2) -> list[str]:
    """The spec header's account of the work and its estimated time."""
    estimate = cost_estimate(s, workers)
    work = counts(s)
    per_stage = ", ".join(
        f"{name} {estimate[name] / 60:.1f}"
        for name in ("training", "retraining", "deployments", "sweeps", "mitigation")
    )
    units = "; ".join(
        f"{model}: train {u['train']} s per 1000 example-epochs, product-fault trial "
        f"{u['trial']} s and deployment {u['deploy']} s per 1000 test images, retuning "
        f"{u['retune']} s per 1000 example-epochs, FaL-reTune extra {u['fixed']['falretune']} s"
        for model, u in UNIT_COSTS.items()
    )
    return [
        f"Work: {work['models']} trained models (datasets × networks × training seeds), "
        f"{work['retrainings']} approximation-aware retrainings, "
        f"{work['fault_free_trials']} fault-free, {work['sweep_trials']} bit-sweep and "
        f"{work['mitigation_trials']} mitigation trials.",
        f"Estimated time with --workers {workers}: {estimate['wall'] / 60:.0f} min wall "
        f"({estimate['worker_total'] / 60:.0f} worker-min: {per_stage}).",
        "How: unit costs measured with one thread on a 2-core x86_64 machine that another "
        "study kept busy (load ≈ 3.3), so they overestimate an idle machine, times the counts "
        "(bitrobust.experiments.axdnn2023.cost_estimate); each deployment is counted as built "
        f"by every worker. Units: {units}.",
        "CIFAR-10 is left out: its small CNN (SimpleNet, width 8) needs 10.1 M MACs per image "
        "against LeNet-5's 0.42 M, so its sweeps would cost about 24 times LeNet-5's; even "
        "LeNet-5 on CIFAR-10 (0.65 M MACs) would add over an hour of worker time.",
    ]


# -- the spec --------------------------------------------------------------------------------


def spec_text(s: AxSettings, name: str = "axdnn2023") -> str:
    """The campaign spec of settings ``s``: one model per dataset × architecture (all training
    seeds); the fault-free entries; per swept multiplier, array and stuck-at value a bit sweep
    at every fault rate; per mitigated multiplier, array and fault the mitigations."""
    s.check()
    lines = [
        f"# Siddique & Hoque 2023 ({name}): made by bitrobust.experiments.axdnn2023.spec_text",
        *(f"# {line}" for line in _wrap_lines(budget_lines(s))),
        f'name = "{name}"',
        'description = "approximate DNNs under permanent PE faults, and their mitigation"',
        f"seed = {s.seed}",
        f"patterns = {s.patterns}",
        'metrics = ["err_faulty", "rerr"]',
        "",
        "[data]",
        f'dataset = "{s.datasets[0]}"',
        f"test_limit = {s.test_limit}",
        *([f"train_limit = {s.train_limit}"] if s.train_limit else []),
    ]
    lines += _model_lines(s)
    lines += _fault_free_lines(s)
    for array in s.arrays:
        for multiplier in s.swept:
            for stuck_at in s.stuck_at:
                lines += _bits_lines(s, multiplier, array, stuck_at)
    for array in s.mitigation_arrays:
        for multiplier in s.mitigated:
            for bit, stuck_at in s.mitigation_faults:
                lines += _mitigation_lines(s, multiplier, array, bit, stuck_at)
    return "\n".join(lines) + "\n"


def _wrap_lines(lines: Iterable[str], width: int = 98) -> list[str]:
    import textwrap

    return [part for line in lines for part in textwrap.wrap(line, width)]


def _model_lines(s: AxSettings) -> list[str]:
    lines = []
    for dataset in s.datasets:
        for model, options in s.models:
            lines += [
                "",
                "[[models]]",
                f'name = "{dataset}-{model}"',
                f'label = "{model}"',
                f'dataset = "{dataset}"',
                f'architecture = "{model}"',
                f"options = {_toml(options)}",
                'quantization = "rquant"',
                "bits = 8",
                f"epochs = {s.epochs}",
                f"batch_size = {s.batch_size}",
                f"lr = {s.lr}",
                f"training_seeds = {_toml(list(s.training_seeds))}",
            ]
    return lines


def _accelerator_lines(s: AxSettings, multiplier: str, array: str, retrain: bool) -> list[str]:
    lines = [
        "[faults.accelerator]",
        f'multiplier = "{multiplier}"',
        f'array = "{array}"',
        f"size = {s.size_of(array)}",
        f"calibration = {s.calibration}",
    ]
    if retrain and s.retrain_epochs:
        lines += [
            f"retrain_epochs = {s.retrain_epochs}",
            f"retrain_examples = {s.retrain_examples}",
            f"retrain_lr = {s.retrain_lr}",
        ]
    return lines


def _fault_free_entries(s: AxSettings) -> list[tuple[str, str, str, bool]]:
    """(entry name, multiplier, array, retrained) of the fault-free entries: every multiplier on
    the first array (a fault-free result does not depend on the array), the swept ones on the
    others; without retraining too, when the study retrains."""
    first = s.arrays[0]
    entries = [
        (f"fault-free-{m}-{first}", m, first, True)
        for m in dict.fromkeys((*s.multipliers, *s.swept))
    ]
    entries += [(f"fault-free-{m}-{a}", m, a, True) for a in s.arrays[1:] for m in s.swept]
    if s.retrain_epochs:
        entries += [
            (f"noretrain-{m}-{first}", m, first, False)
            for m in dict.fromkeys((*s.multipliers, *s.swept))
        ]
    return entries


def _fault_free_lines(s: AxSettings) -> list[str]:
    lines = []
    for name, multiplier, array, retrained in _fault_free_entries(s):
        lines += ["", "[[faults]]", f'name = "{name}"', 'type = "fault_free"']
        lines += _accelerator_lines(s, multiplier, array, retrained)
    return lines


def _bits_lines(s: AxSettings, multiplier: str, array: str, stuck_at: int) -> list[str]:
    return [
        "",
        "[[faults]]",
        f'name = "bits-{multiplier}-{array}-sa{stuck_at}"',
        'type = "pe_faults"',
        f"fault_rates = {_toml(list(s.rates))}",
        f"bit = {_toml(list(s.bits))}",
        f"stuck_at = {stuck_at}",
        *_accelerator_lines(s, multiplier, array, True),
    ]


def _mitigation_lines(
    s: AxSettings, multiplier: str, array: str, bit: int, stuck_at: int
) -> list[str]:
    lines = [
        "",
        "[[faults]]",
        f'name = "mitigation-{multiplier}-{array}-b{bit}-sa{stuck_at}"',
        'type = "pe_faults"',
        f"fault_rates = [{s.mitigation_rate}]",
        f"bit = {bit}",
        f"stuck_at = {stuck_at}",
        f"patterns = {s.mitigation_patterns}",
        "mitigations = [",
        '    { method = "none" },',
    ]
    for method in s.methods:
        base, options = MITIGATIONS[method]
        extra = "".join(f", {k} = {_toml(v)}" for k, v in options.items())
        label = "" if method == base else f', label = "{method}"'
        lines.append(
            f'    {{ method = "{base}"{label}, epochs = {s.retune_epochs}, '
            f"lr = {s.retune_lr}, examples = {s.retune_examples}{extra} }},"
        )
    return [*lines, "]", *_accelerator_lines(s, multiplier, array, True)]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def study_spec(quick: bool) -> tuple[AxSettings, str]:
    """The settings and the packaged spec text of the quick or full run."""
    name = "axdnn2023-quick" if quick else "axdnn2023"
    return settings(quick), (SPECS / f"{name}.toml").read_text()


# -- records ---------------------------------------------------------------------------------


class _Rows:
    """The store's rows of one model, by fault entry."""

    def __init__(self, rows: Iterable[dict[str, Any]]):
        self.by_fault: dict[str, list[dict[str, Any]]] = {}
        for row in sorted(rows, key=lambda r: (r["training_seed"], r["pattern"])):
            self.by_fault.setdefault(row["fault"], []).append(row)

    def get(self, fault: str, **match: Any) -> list[dict[str, Any]]:
        return [r for r in self.by_fault.get(fault, []) if all(r[k] == v for k, v in match.items())]

    def accuracy(self, fault: str) -> float | None:
        """Mean fault-free accuracy of an entry over training seeds (None if it has no rows)."""
        values = [1 - r["err_faulty"] for r in self.get(fault)]
        return statistics.fmean(values) if values else None


def records_from_rows(
    s: AxSettings,
    spec: CampaignSpec,
    rows: list[dict[str, Any]],
    out: Path,
    data_dir: str | os.PathLike | None,
) -> list[dict[str, Any]]:
    """One record per (dataset, model) from the store's rows: the three parts of the study."""
    checkpoints = {
        (job.model, job.training_seed): job.checkpoint
        for job in training_jobs(spec, out / "checkpoints")
    }
    info = {m: _multiplier_info(m, data_dir) for m in dict.fromkeys((*s.multipliers, *s.swept))}
    records = []
    for dataset in s.datasets:
        images, labels = subset(load_dataset(dataset, "test", data_dir), s.test_limit).tensors
        for model_name, options in s.models:
            name = f"{dataset}-{model_name}"
            by = _Rows(r for r in rows if r["model"] == name)
            floats = [
                accuracy(load_checkpoint(checkpoints[(name, seed)]).model, images, labels)
                for seed in s.training_seeds
            ]
            faults = _loss_rows(s, by)
            record: dict[str, Any] = {
                "dataset": dataset,
                "model": model_name,
                "options": options,
                "examples": len(images),
                "training_seeds": list(s.training_seeds),
                "float_accuracy": statistics.fmean(floats),
                "multipliers": _multiplier_rows(s, by, info),
                "fault_free": {
                    array: {m: by.accuracy(f"fault-free-{m}-{array}") for m in s.swept}
                    for array in s.arrays
                },
                "faults": faults,
                "gaps": _gap_rows(s, by),
                "energy": _energy_rows(s, faults, info),
                "mitigation": _mitigation_rows(s, by),
            }
            records.append(record)
    return records


def _multiplier_info(name: str, data_dir: str | os.PathLike | None) -> dict[str, Any]:
    multiplier = load_multiplier(name, evoapprox_dir(data_dir))
    metrics = multiplier.metrics()
    return {
        "multiplier": name,
        "signed": multiplier.signed,
        "exact": multiplier.is_exact(),
        "power_mw": multiplier.power_mw,
        "mae_percent": metrics["mae_percent"],
        "wce_percent": metrics["wce_percent"],
    }


def _multiplier_rows(
    s: AxSettings, by: _Rows, info: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per multiplier of the list: its figures and fault-free accuracy (mean over training
    seeds) as deployed for the sweeps and, when the study retrains, without retraining."""
    first = s.arrays[0]
    rows = []
    for m in s.multipliers:
        retrained = by.accuracy(f"fault-free-{m}-{first}")
        plain = by.accuracy(f"noretrain-{m}-{first}") if s.retrain_epochs else retrained
        gain = None if retrained is None or plain is None else retrained - plain
        rows.append(
            {**info[m], "accuracy": retrained, "accuracy_noretrain": plain, "retrain_gain": gain}
        )
    return rows


def _loss_rows(s: AxSettings, by: _Rows) -> list[dict[str, Any]]:
    """Per swept multiplier, array, stuck-at value, bit and rate: the accuracy loss over
    training seeds × fault maps."""
    rows = []
    for array in s.arrays:
        for m in s.swept:
            for stuck_at in s.stuck_at:
                for bit in s.bits:
                    for rate in s.rates:
                        trials = by.get(f"bits-{m}-{array}-sa{stuck_at}", bit=bit, x=rate)
                        if trials:
                            rows.append(_loss_row(m, array, stuck_at, bit, rate, trials))
    return rows


def _loss_row(
    multiplier: str, array: str, stuck_at: int, bit: int, rate: float, trials: list[dict]
) -> dict[str, Any]:
    losses = [r["accuracy_loss"] for r in trials]
    return {
        "multiplier": multiplier,
        "array": array,
        "stuck_at": stuck_at,
        "bit": bit,
        "rate": rate,
        "n": len(trials),
        "accuracy_mean": statistics.fmean(1 - r["err_faulty"] for r in trials),
        **{f"loss_{k}": v for k, v in summarize(losses).to_json(interval=False).items()},
    }


def _unit_losses(s: AxSettings, by: _Rows, multiplier: str, array: str) -> dict[tuple, float]:
    """Accuracy loss per (training seed, fault map, stuck-at, bit, rate) of one sweep."""
    losses = {}
    for stuck_at in s.stuck_at:
        for r in by.get(f"bits-{multiplier}-{array}-sa{stuck_at}"):
            key = (r["training_seed"], r["pattern"], stuck_at, r["bit"], r["x"])
            losses[key] = r["accuracy_loss"]
    return losses


def _gap_rows(s: AxSettings, by: _Rows) -> list[dict[str, Any]]:
    """AxDNN − AccDNN accuracy loss at the same fault (same PEs, bit, stuck-at value, rate,
    training seed): per array and approximate multiplier, and pooled over them (``all``); mean
    over the faults per (training seed, fault map), interval by a two-level bootstrap (training
    seeds, then fault maps)."""
    rows = []
    for array in s.arrays:
        pooled: dict[tuple[int, int], list[float]] = {}
        for m in s.approximate:
            exact = _unit_losses(s, by, s.exact_of(m), array)
            per_unit: dict[tuple[int, int], list[float]] = {}
            for key, loss in _unit_losses(s, by, m, array).items():
                if key in exact:
                    per_unit.setdefault(key[:2], []).append(loss - exact[key])
            for unit, gaps in per_unit.items():
                pooled.setdefault(unit, []).append(statistics.fmean(gaps))
            if per_unit:
                rows.append({"array": array, "multiplier": m, **_gap_summary(per_unit)})
        if pooled:
            rows.append({"array": array, "multiplier": "all", **_gap_summary(pooled)})
    return rows


def _gap_summary(per_unit: dict[tuple[int, int], list[float]]) -> dict[str, Any]:
    means = {unit: statistics.fmean(values) for unit, values in per_unit.items()}
    groups: dict[int, list[float]] = {}
    for (seed, _), value in sorted(means.items()):
        groups.setdefault(seed, []).append(value)
    low, high = hierarchical_bootstrap_interval(list(groups.values()))
    return {
        "gap_mean": statistics.fmean(means.values()),
        "gap_low": low,
        "gap_high": high,
        "seeds": len(groups),
        "maps": len(means) // max(1, len(groups)),
    }


def _energy_rows(
    s: AxSettings, faults: list[dict[str, Any]], info: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Energy vs resilience per array: Spearman ρ (permutation p-value) between the published
    power and the fault-induced loss (mean over bits, stuck-at values, rates, fault maps and
    training seeds) over the approximate multipliers under faults."""
    rows = []
    for array in s.arrays:
        points = []
        for m in s.approximate:
            losses = [f["loss_mean"] for f in faults if (f["multiplier"], f["array"]) == (m, array)]
            if losses and info[m]["power_mw"] is not None:
                points.append((m, info[m]["power_mw"], statistics.fmean(losses)))
        rho, p_value = _spearman([p for _, p, _ in points], [loss for _, _, loss in points])
        rows.append(
            {
                "array": array,
                "rho": rho,
                "p_value": p_value,
                "n": len(points),
                "points": [{"multiplier": m, "power_mw": p, "loss_mean": v} for m, p, v in points],
            }
        )
    return rows


def _spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, float | None]:
    return spearman_test(x, y) if len(x) >= 3 else (None, None)


def _fault_free_correlation(record: dict[str, Any], key: str) -> tuple[Any, Any, int]:
    """Spearman ρ, p and n between power and fault-free accuracy (``key``: ``accuracy`` or
    ``accuracy_noretrain``) over the approximate multipliers of the list."""
    rows = [
        row
        for row in record["multipliers"]
        if not row["exact"] and row["power_mw"] is not None and row[key] is not None
    ]
    rho, p_value = _spearman([r["power_mw"] for r in rows], [r[key] for r in rows])
    return rho, p_value, len(rows)


def _mitigation_rows(s: AxSettings, by: _Rows) -> list[dict[str, Any]]:
    """Per mitigated multiplier, array, fault and method: accuracy over training seeds × fault
    maps, and the recovery of the means, (mitigated − faulty) / (fault free − faulty)."""
    rows = []
    for array in s.mitigation_arrays:
        for m in s.mitigated:
            for bit, stuck_at in s.mitigation_faults:
                fault = f"mitigation-{m}-{array}-b{bit}-sa{stuck_at}"
                none = by.get(fault, mitigation="none")
                if not none:
                    continue
                fault_free = statistics.fmean(1 - r["err_clean"] for r in none)
                faulty = statistics.fmean(1 - r["err_faulty"] for r in none)
                lost = fault_free - faulty
                for method in ("none", *s.methods):
                    values = [1 - r["err_faulty"] for r in by.get(fault, mitigation=method)]
                    mean = statistics.fmean(values)
                    rows.append(
                        {
                            "multiplier": m,
                            "array": array,
                            "bit": bit,
                            "stuck_at": stuck_at,
                            "rate": s.mitigation_rate,
                            "method": method,
                            "fault_free": fault_free,
                            "accuracy_mean": mean,
                            "accuracy_std": summarize(values).std,
                            "recovery": (mean - faulty) / lost if lost > 0 else None,
                            "units": _unit_accuracies(by.get(fault, mitigation=method)),
                        }
                    )
    return rows


def _unit_accuracies(trials: list[dict[str, Any]]) -> dict[str, float]:
    """Accuracy per (training seed, fault map), keyed ``"<seed>/<map>"`` (JSON keys)."""
    return {f"{r['training_seed']}/{r['pattern']}": 1 - r["err_faulty"] for r in trials}


# -- findings --------------------------------------------------------------------------------


def findings(records: list[dict[str, Any]], s: AxSettings) -> list[str]:
    """Lines comparing the measurements with the paper's abstract claims."""
    lines = []
    for r in records:
        lines += _accuracy_findings(r, s)
        lines += _gap_findings(r, s)
        lines += _energy_findings(r)
    lines += _mitigation_findings(records, s)
    return lines


def _tag(record: dict[str, Any]) -> str:
    return f"{record['dataset']} {record['model']}"


def _accuracy_findings(r: dict[str, Any], s: AxSettings) -> list[str]:
    accs = [100 * row["accuracy"] for row in r["multipliers"] if row["accuracy"] is not None]
    if not accs:
        return []
    line = (
        f"- {_tag(r)}, accuracy vs multiplier: fault free {min(accs):.1f}–{max(accs):.1f} % over "
        f"{len(accs)} multipliers (mean of {len(s.training_seeds)} training seeds"
    )
    gains = [row["retrain_gain"] for row in r["multipliers"] if row["retrain_gain"] is not None]
    if s.retrain_epochs and gains:
        best = max(r["multipliers"], key=lambda row: row["retrain_gain"] or 0.0)
        line += (
            f", after {s.retrain_epochs} epoch(s) of approximation-aware retraining on "
            f"{s.retrain_examples} examples; retraining changes accuracy by "
            f"{100 * statistics.fmean(gains):+.1f} points on average, most on "
            f"{best['multiplier']}: {100 * best['accuracy_noretrain']:.1f} → "
            f"{100 * best['accuracy']:.1f} %"
        )
    return [line + ")."]


def _gap_findings(r: dict[str, Any], s: AxSettings) -> list[str]:
    lines = []
    for row in r["gaps"]:
        if row["multiplier"] != "all":
            continue
        lines.append(
            f"- {_tag(r)}, {row['array']}: AxDNN − AccDNN accuracy loss at the same fault "
            f"{100 * row['gap_mean']:+.1f} points (95 % CI {100 * row['gap_low']:+.1f} to "
            f"{100 * row['gap_high']:+.1f}; mean over {len(s.approximate)} approximate "
            f"multipliers, bits, stuck-at values and rates; interval over {row['seeds']} "
            f"training seeds × {row['maps']} fault maps)."
        )
    largest = _largest_gap(r, s)
    if largest:
        lines.append(largest)
    return lines


def _largest_gap(r: dict[str, Any], s: AxSettings) -> str | None:
    """The largest AxDNN − AccDNN gap of one setting (a selected maximum, as the paper's)."""
    exact = {
        (f["multiplier"], f["array"], f["stuck_at"], f["bit"], f["rate"]): f for f in r["faults"]
    }
    pairs = []
    for f in r["faults"]:
        if f["multiplier"] in s.approximate:
            base = exact.get((s.exact_of(f["multiplier"]), *_setting(f)))
            if base is not None:
                pairs.append((f["loss_mean"] - base["loss_mean"], f, base))
    if not pairs:
        return None
    gap, ax, acc = max(pairs, key=lambda pair: pair[0])
    return (
        f"- {_tag(r)}, largest gap of one setting: {ax['multiplier']} on {ax['array']} loses "
        f"{100 * ax['loss_mean']:.1f} points where {acc['multiplier']} loses "
        f"{100 * acc['loss_mean']:.1f} ({100 * gap:+.1f}; bit {ax['bit']} SA{ax['stuck_at']}, "
        f"{100 * ax['rate']:g} % faulty PEs; a selected maximum) — paper: {PAPER['loss']}."
    )


def _setting(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["array"], row["stuck_at"], row["bit"], row["rate"])


def _energy_findings(r: dict[str, Any]) -> list[str]:
    parts = [
        f"{row['array']} ρ = {_rho_text(row['rho'], row['p_value'])} over {row['n']}"
        for row in r["energy"]
    ]
    free = []
    for key, label in (("accuracy", "as swept"), ("accuracy_noretrain", "without retraining")):
        rho, p_value, n = _fault_free_correlation(r, key)
        free.append(f"{label} ρ = {_rho_text(rho, p_value)} over {n}")
    return [
        f"- {_tag(r)}, energy vs resilience: Spearman ρ(power, fault-induced loss) "
        + "; ".join(parts)
        + " approximate multipliers; ρ(power, fault-free accuracy) "
        + "; ".join(free)
        + f" (paper: {PAPER['energy']}; a large p is only an absence of evidence)."
    ]


def _rho_text(rho: float | None, p_value: float | None) -> str:
    return "n/a" if rho is None else f"{rho:+.2f} (p = {p_value:.2f})"


def _mitigation_findings(records: list[dict[str, Any]], s: AxSettings) -> list[str]:
    cases = _recovery_cases(records)
    if not cases:
        return []
    lines = []
    parts = []
    for method in s.methods:
        values = [c[method] for c in cases if method in c]
        if values:
            parts.append(f"{method} {_mean_text(values)}")
    lines.append(
        f"- Mean recovery at {100 * s.mitigation_rate:g} % faulty PEs over {len(cases)} cases "
        "(network × multiplier × array × fault × training seed × fault map; recovery = share of "
        "the lost accuracy won back; 95 % t interval over the cases): "
        + ", ".join(parts)
        + f" — paper: {PAPER['recovery']}."
    )
    lines += _method_wins(records, "falretune")
    lines += _method_wins(records, "falretune-literal")
    return lines


def _mean_text(values: Sequence[float]) -> str:
    """``mean %`` with its 95 % t interval when there are several values."""
    summary = summarize(values)
    text = f"{_percent(summary.mean)} %"
    if summary.ci_low is not None and summary.ci_high is not None:
        text += f" [{_percent(summary.ci_low)}, {_percent(summary.ci_high)}]"
    return text


def _percent(share: float) -> str:
    """A share in whole percent (an int: no "-0")."""
    return str(round(100 * share))


def _recovery_cases(records: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per (network, multiplier, array, fault, training seed, fault map) where the fault cost
    accuracy: each method's recovery."""
    cases = []
    for r in records:
        settings: dict[tuple, dict[str, dict[str, Any]]] = {}
        for row in r["mitigation"]:
            key = (row["multiplier"], row["array"], row["bit"], row["stuck_at"])
            settings.setdefault(key, {})[row["method"]] = row
        for methods in settings.values():
            none = methods["none"]
            for unit, faulty in none["units"].items():
                lost = none["fault_free"] - faulty
                if lost <= 0:
                    continue
                cases.append(
                    {
                        m: (row["units"][unit] - faulty) / lost
                        for m, row in methods.items()
                        if unit in row["units"]
                    }
                )
    return cases


def _method_wins(records: list[dict[str, Any]], method: str = "falretune") -> list[str]:
    """How often ``method`` beats each other mitigation on the same fault (mean accuracy), and
    its mean accuracy difference to FAP+T (same retraining budget)."""
    cases: dict[tuple, dict[str, float]] = {}
    for r in records:
        for row in r["mitigation"]:
            key = (
                r["dataset"],
                r["model"],
                row["multiplier"],
                row.get("array"),
                row["bit"],
                row["stuck_at"],
            )
            cases.setdefault(key, {})[row["method"]] = row["accuracy_mean"]
    parts = []
    for other in [m for m in ("none", *MITIGATIONS) if m != method]:
        pairs = [c for c in cases.values() if method in c and other in c]
        if pairs:
            wins = sum(c[method] > c[other] for c in pairs)
            parts.append(f"{other} in {wins} of {len(pairs)}")
    if not parts:
        return []
    line = f"- {method} is more accurate than " + ", ".join(parts) + " cases"
    versus = [c[method] - c["fap-t"] for c in cases.values() if method in c and "fap-t" in c]
    if len(versus) > 1:
        summary = summarize(versus)
        line += (
            f"; vs FAP+T with the same retraining budget {100 * summary.mean:+.1f} points "
            f"(95 % CI {100 * summary.ci_low:+.1f} to {100 * summary.ci_high:+.1f} over "
            f"{len(versus)} settings)"
        )
    return [line + " (paper: FaL-reTune beats FAP and FAP+T)."]


# -- tables and plots ------------------------------------------------------------------------


def _tables(records: list[dict[str, Any]], s: AxSettings) -> list[str]:
    return [
        *_multiplier_tables(records, s),
        *_energy_table(records),
        *_gap_table(records),
        *_bit_tables(records, s),
        *_mitigation_table(records, s),
    ]


def _multiplier_tables(records: list[dict[str, Any]], s: AxSettings) -> list[str]:
    from bitrobust.report import markdown_table

    names = list(s.multipliers)
    rows = []
    for r in records:
        for key, kind in (("accuracy", "retrained"), ("accuracy_noretrain", "as trained")):
            if key == "accuracy_noretrain" and not s.retrain_epochs:
                continue
            row: dict[str, Any] = {"model": _tag(r), "deployed": kind}
            row["float"] = 100 * r["float_accuracy"]
            for entry in r["multipliers"]:
                row[entry["multiplier"]] = None if entry[key] is None else 100 * entry[key]
            rows.append(row)
    first = records[0]["multipliers"] if records else []
    return [
        "## Accuracy vs multiplier (fault free)",
        "",
        f"Accuracy (%) mean over {len(s.training_seeds)} training seeds; 'retrained': after "
        f"approximation-aware retraining ({s.retrain_epochs} epoch(s), {s.retrain_examples} "
        f"examples, lr {s.retrain_lr}), the deployment every fault sweep uses.",
        "",
        markdown_table(rows, ["model", "deployed", "float", *names]),
        "",
        markdown_table(
            first,
            ["multiplier", "signed", "power_mw", "mae_percent", "wce_percent"],
            ["multiplier", "signed", "power (mW)", "MAE (% of 2^16)", "WCE (% of 2^16)"],
            floatfmt=".4g",
        ),
        "",
    ]


def _energy_table(records: list[dict[str, Any]]) -> list[str]:
    from bitrobust.report import markdown_table

    rows = []
    for r in records:
        free = _fault_free_correlation(r, "accuracy")
        for row in r["energy"]:
            rows.append(
                {
                    "model": _tag(r),
                    "array": row["array"],
                    "loss": _rho_text(row["rho"], row["p_value"]),
                    "n": row["n"],
                    "free": _rho_text(free[0], free[1]),
                    "n_free": free[2],
                }
            )
    headers = ["model", "array", "ρ(power, fault loss)", "n", "ρ(power, fault-free acc.)", "n"]
    return [
        "## Energy vs resilience",
        "",
        "Spearman rank correlation with permutation p-value between the multiplier's published "
        "power and its fault-induced accuracy loss (mean over bits, stuck-at values, fault rates, "
        "fault maps and training seeds), over the approximate multipliers under faults; and "
        "between power and fault-free accuracy over the approximate multipliers of the list.",
        "",
        markdown_table(rows, ["model", "array", "loss", "n", "free", "n_free"], headers),
        "",
    ]


def _gap_table(records: list[dict[str, Any]]) -> list[str]:
    from bitrobust.report import markdown_table

    rows = [
        {
            "model": _tag(r),
            "array": g["array"],
            "multiplier": g["multiplier"],
            "gap": 100 * g["gap_mean"],
            "ci": f"{100 * g['gap_low']:+.1f} to {100 * g['gap_high']:+.1f}",
        }
        for r in records
        for g in r["gaps"]
    ]
    return [
        "## AxDNN − AccDNN loss gap",
        "",
        "Accuracy loss of the approximate multiplier minus that of its family's exact one at the "
        "same fault (same faulty PEs, bit, stuck-at value and rate, same training seed), in "
        "points: mean over the faults per training seed and fault map; 95 % interval by a "
        "two-level bootstrap (training seeds, then fault maps). 'all' pools the approximate "
        "multipliers.",
        "",
        markdown_table(
            rows,
            ["model", "array", "multiplier", "gap", "ci"],
            ["model", "array", "multiplier", "gap (points)", "95 % CI"],
        ),
        "",
    ]


def _bit_tables(records: list[dict[str, Any]], s: AxSettings) -> list[str]:
    from bitrobust.report import markdown_table

    lines = [
        "## Accuracy loss (points) vs faulty bit",
        "",
        f"Bit b of the 16-bit product stuck at 0/1 in a fraction of the PEs ({s.array_size}×"
        f"{s.array_size} TPU-like array, {s.gpu_units} GPU-like units); mean over fault rates "
        f"{', '.join(f'{100 * r:g} %' for r in s.rates)}, {s.patterns} fault maps and "
        f"{len(s.training_seeds)} training seeds (per rate: axdnn2023.json).",
        "",
    ]
    columns = ["multiplier", "stuck_at", *(str(b) for b in s.bits)]
    headers = ["multiplier", "stuck at", *(f"bit {b}" for b in s.bits)]
    for r in records:
        for array in s.arrays:
            rows = []
            for m in s.swept:
                for stuck_at in s.stuck_at:
                    row: dict[str, Any] = {"multiplier": m, "stuck_at": stuck_at}
                    for bit in s.bits:
                        losses = [
                            f["loss_mean"]
                            for f in r["faults"]
                            if (f["multiplier"], f["array"], f["stuck_at"], f["bit"])
                            == (m, array, stuck_at, bit)
                        ]
                        if losses:
                            row[str(bit)] = 100 * statistics.fmean(losses)
                    rows.append(row)
            lines += [f"### {_tag(r)}, {array}", "", markdown_table(rows, columns, headers), ""]
    return lines


def _mitigation_table(records: list[dict[str, Any]], s: AxSettings) -> list[str]:
    from bitrobust.report import markdown_table

    methods = ["none", *s.methods]
    rows = []
    for r in records:
        groups: dict[tuple, dict[str, Any]] = {}
        for m in r["mitigation"]:
            key = (m["multiplier"], m["array"], m["bit"], m["stuck_at"])
            row = groups.setdefault(
                key,
                {
                    "model": _tag(r),
                    "multiplier": m["multiplier"],
                    "array": m["array"],
                    "fault": f"bit {m['bit']} SA{m['stuck_at']}",
                    "fault_free": 100 * m["fault_free"],
                },
            )
            recovery = "" if m["recovery"] is None else f" ({100 * m['recovery']:.0f} %)"
            row[m["method"]] = f"{100 * m['accuracy_mean']:.1f}{recovery}"
        rows += list(groups.values())
    columns = ["model", "multiplier", "array", "fault", "fault_free", *methods]
    headers = [*columns[:4], "fault free %", *methods]
    return [
        f"## Mitigation at {100 * s.mitigation_rate:g} % faulty PEs",
        "",
        f"Accuracy (%) mean over {len(s.training_seeds)} training seeds × "
        f"{s.mitigation_patterns} fault maps, with the recovery (mitigated − faulty) / (fault "
        "free − faulty) of the means. FAP bypasses the faulty PEs; FAP-zero only sets their "
        "weights to the zero-point code, so a faulty PE still adds its stuck bit; FAP+T "
        "(bypass), FaL-reTune and FaL-reTune literal retune for the same "
        f"{s.retune_epochs} epoch(s) at lr {s.retune_lr} on {s.retune_examples} training "
        "examples. FaL-reTune (improved) keeps the best of faulty/mapped/retuned on those "
        "examples, absorbs the mapped MACs' mean error in the bias and maps with the centred "
        "objective; the literal variant (papers.md §2.3) only maps (absolute objective) and "
        "retunes.",
        "",
        markdown_table(rows, columns, headers),
    ]


def plots(records: list[dict[str, Any]], s: AxSettings, out: Path) -> list[Path]:
    """Accuracy vs power, loss vs faulty bit, and fault-induced loss vs power."""
    from bitrobust.report import plot_grid

    panels: dict[str, dict[str, list[dict]]] = {}
    for r in records:
        panel = panels.setdefault(r["dataset"], {})
        rows = [row for row in r["multipliers"] if row["power_mw"] is not None]
        panel[r["model"]] = [row for row in rows if row["accuracy"] is not None]
        if s.retrain_epochs:
            panel[f"{r['model']} (no retraining)"] = [
                {**row, "accuracy": row["accuracy_noretrain"]}
                for row in rows
                if row["accuracy_noretrain"] is not None
            ]
    common = {"logx": False, "x_scale": 1.0, "xlabel": "multiplier power (mW, PDK45)"}
    first = plot_grid(
        panels,
        out / "axdnn2023-multipliers.png",
        x="power_mw",
        y="accuracy",
        y_low=None,
        y_high=None,
        ylabel="fault-free accuracy (%)",
        title="Accuracy vs multiplier power",
        **common,
    )
    return [first, _bits_plot(records, s, out), _energy_plot(records, out, common)]


def _bits_plot(records: list[dict[str, Any]], s: AxSettings, out: Path) -> Path:
    from bitrobust.report import plot_grid

    top = max(s.rates)
    panels: dict[str, dict[str, list[dict]]] = {}
    for r in records:
        for array in s.arrays:
            for stuck_at in s.stuck_at:
                panel = panels.setdefault(f"{_tag(r)} {array} SA{stuck_at}", {})
                for f in r["faults"]:
                    if (f["array"], f["stuck_at"], f["rate"]) == (array, stuck_at, top):
                        panel.setdefault(f["multiplier"], []).append(f)
    return plot_grid(
        panels,
        out / "axdnn2023-bits.png",
        ncols=4,
        x="bit",
        y="loss_mean",
        y_low="loss_min",
        y_high="loss_max",
        band_label="shaded: min–max over training seeds × fault maps",
        xlabel="faulty product bit",
        ylabel="accuracy loss (points)",
        logx=False,
        x_scale=1.0,
        title=f"Accuracy loss vs faulty bit position at {100 * top:g} % faulty PEs",
    )


def _energy_plot(records: list[dict[str, Any]], out: Path, common: dict[str, Any]) -> Path:
    from bitrobust.report import plot_grid

    panels = {
        _tag(r): {
            row["array"]: sorted(row["points"], key=lambda p: p["power_mw"]) for row in r["energy"]
        }
        for r in records
    }
    return plot_grid(
        panels,
        out / "axdnn2023-energy.png",
        x="power_mw",
        y="loss_mean",
        y_low=None,
        y_high=None,
        ylabel="fault-induced accuracy loss (points)",
        title="Fault-induced loss vs multiplier power (approximate multipliers)",
        **common,
    )


# -- the study -------------------------------------------------------------------------------


def reproduce(
    out_dir: str | os.PathLike,
    quick: bool,
    data_dir: str | os.PathLike | None = None,
    command: str = "",
    device: str | None = None,
    workers: int | None = 1,
) -> dict[str, Any]:
    """Run the study's campaign into ``out_dir`` and write its Markdown report, plots and JSON
    record there."""
    out = Path(out_dir)
    s, text = study_spec(quick)
    spec = parse_spec(text, "spec axdnn2023")
    started = time.time()
    rows = run_study_spec(spec, text, out, data_dir, workers=workers)
    records = records_from_rows(s, spec, rows, out, data_dir)
    figures = plots(records, s, out)
    lines_found = findings(records, s)
    elapsed = time.time() - started
    compute = sum(r["wall_s"] for r in rows)
    summary = {
        "mode": "quick" if quick else "full",
        "settings": asdict(s),
        "spec": text,
        "records": records,
        "findings": lines_found,
        "provenance": provenance(),
        "seconds": round(elapsed, 1),
        "plots": [p.name for p in figures],
        "report": str(out / "axdnn2023.md"),
        "store": str(out / "campaign.db"),
    }
    (out / "axdnn2023.json").write_text(json.dumps(summary, indent=1))
    (out / "axdnn2023.md").write_text(
        "\n".join(_report(s, spec, summary, records, figures, command, compute, elapsed))
    )
    return summary


def _report(
    s: AxSettings,
    spec: CampaignSpec,
    summary: dict[str, Any],
    records: list[dict[str, Any]],
    figures: list[Path],
    command: str,
    compute: float,
    elapsed: float,
) -> list[str]:
    models = ", ".join(f"{name} {opts or ''}".strip() for name, opts in s.models)
    retraining = (
        f"after approximation-aware retraining ({s.retrain_epochs} epoch(s) on "
        f"{s.retrain_examples} examples, lr {s.retrain_lr}; straight-through gradient through "
        "the multiplier's table)"
        if s.retrain_epochs
        else "without retraining"
    )
    return [
        "# Siddique & Hoque 2023 reproduction: approximate DNNs under permanent faults",
        "",
        f"Command: `{command or 'bitrobust reproduce axdnn2023'}` ({summary['mode']} mode; "
        f"the trials took {compute / 60:.1f} min of worker time on {platform.machine()} with "
        f"{torch.get_num_threads()} thread(s) per worker; this run {elapsed / 60:.1f} min, "
        "reusing the trained models and finished trials its campaign store already held).",
        "",
        provenance_line(summary["provenance"]),
        "",
        f"Campaign spec: `bitrobust/experiments/specs/{spec.name}.toml`; every trial is a row "
        "of `campaign.db` (`bitrobust campaign report` renders it).",
        "",
        f"Models: {models}; RQuant 8-bit quantization-aware training, {s.epochs} epochs on "
        f"{s.train_limit or 'all'} training examples, training seeds "
        f"{', '.join(map(str, s.training_seeds))}; then run on 8-bit integer hardware "
        "(asymmetric uint8 operands for unsigned multipliers, symmetric int8 for signed ones, "
        f"activation ranges from {s.calibration} training images) {retraining}, first "
        f"{s.test_limit} test examples. Accuracy loss is against the same deployment without "
        "faults. The fault model, FAP/FAP+T and FaL-reTune are reconstructions (papers.md "
        "§2.3; `bitrobust.hw.mitigation`).",
        "",
        "## Against the paper's claims",
        "",
        *summary["findings"],
        "",
        *_tables(records, s),
        "",
        *(f"![{p.stem}]({p.name})\n" for p in figures),
    ]


__all__ = [
    "MITIGATIONS",
    "QUICK",
    "AxSettings",
    "cost_estimate",
    "counts",
    "findings",
    "reproduce",
    "settings",
    "spec_text",
]
