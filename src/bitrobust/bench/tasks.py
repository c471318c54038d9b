"""The benchmark tasks: the same job done by bitrobust and by each contender.

A :class:`Task` builds its shared inputs once (``setup``, untimed) and, per contender, prepares
an :class:`Entry` (untimed) whose ``run(k)`` is the timed work for repeat ``k`` (a seed). Sizes
come from :class:`Settings`: the full mode is the issue's job (10k MNIST test images, 100
patterns, a whole epoch), ``quick`` a small slice of it. Each row reports what it ran in
``work``. Models are untrained (seeded initialization): the work does not depend on the weights.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from bitrobust.bench import contenders as peers

INPUT_SHAPE = [1, 28, 28]
CAMPAIGN_RATE = 0.01
MLP_10M_HIDDEN = (2048, 4096)  # 784·2048 + 2048·4096 + 4096·10 + biases ≈ 10.05 M parameters
APPROX_MULTIPLIER = "mul8u_L40"


@dataclass(frozen=True)
class Settings:
    """What every task needs to know to build its inputs (picklable: sent to child processes)."""

    quick: bool = False
    data_dir: str | None = None
    threads: int = 1
    campaign_patterns: int = 100
    campaign_examples: int = 10_000
    approx_examples: int = 10_000
    epoch_examples: int | None = None  # None: the whole MNIST training set

    @classmethod
    def for_mode(cls, quick: bool, data_dir: str | None, threads: int) -> Settings:
        if not quick:
            return cls(data_dir=data_dir, threads=threads)
        return cls(
            quick=True,
            data_dir=data_dir,
            threads=threads,
            campaign_patterns=5,
            campaign_examples=1000,
            approx_examples=1000,
            epoch_examples=2000,
        )


@dataclass(frozen=True)
class Entry:
    """A prepared contender: ``run(k)`` is the timed work (it may return a float that sums up
    what it computed); ``note`` says what it actually does."""

    run: Callable[[int], Any]
    note: str = ""


@dataclass(frozen=True)
class Task:
    name: str
    setup: Callable[[Settings], dict[str, Any]]
    contenders: dict[str, Callable[[dict[str, Any]], Entry]]
    work: Callable[[dict[str, Any]], str] = field(default=lambda context: "")


def mnist(settings: Settings, split: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    from bitrobust.data import load_dataset, subset

    return subset(load_dataset("mnist", split, settings.data_dir), limit).tensors


def seeded_model(name: str, **options: Any) -> nn.Module:
    from bitrobust.models import build_model

    torch.manual_seed(0)
    return build_model(name, in_channels=1, image_size=28, num_classes=10, **options).eval()


# --- inject_p*: one pattern -> faulty float weights ------------------------------------------


def inject_task(name: str, p: float, contenders: tuple[str, ...], **model_options: Any) -> Task:
    def setup(settings: Settings) -> dict[str, Any]:
        from bitrobust.quant import QuantizedModel

        model = seeded_model("mlp", **model_options)
        return {"model": model, "qmodel": QuantizedModel.from_module(model, peers.scheme())}

    def prepare(contender: str) -> Callable[[dict[str, Any]], Entry]:
        def make(context: dict[str, Any]) -> Entry:
            injector = peers.make_injector(
                contender, context["model"], context["qmodel"], p, INPUT_SHAPE
            )
            return Entry(injector, peers.NOTES[contender])

        return make

    def work(context: dict[str, Any]) -> str:
        qmodel = context["qmodel"]
        return f"one pattern at p={p:g} on {qmodel.num_weights():,} 8-bit weights (mlp)"

    return Task(name, setup, {c: prepare(c) for c in contenders}, work)


# --- campaign100: patterns x test images -> RErr ---------------------------------------------


def campaign_setup(settings: Settings) -> dict[str, Any]:
    images, labels = mnist(settings, "test", settings.campaign_examples)
    return {
        "model": seeded_model("mlp"),
        "images": images,
        "labels": labels,
        "patterns": settings.campaign_patterns,
    }


def campaign_bitrobust(context: dict[str, Any]) -> Entry:
    from bitrobust.evaluate import evaluate_fault_models
    from bitrobust.faults import RandomBitErrors

    images, patterns = context["images"], context["patterns"]

    def run(k: int) -> float:
        report = evaluate_fault_models(
            context["model"], peers.scheme(), images, context["labels"],
            [RandomBitErrors(CAMPAIGN_RATE)], patterns=patterns, seed=k * patterns,
            batch_size=len(images),
        )  # fmt: skip
        return report.results[0].rerr.mean

    return Entry(
        run, "evaluate_fault_models: quantize, clean pass, sample + functional_call, patterns "
        "grouped in the default memory budget (every layer faulty: no clean prefix to share, "
        "vmap off as it does not pay on CPU); outcome: RErr",
    )  # fmt: skip


def campaign_loop(context: dict[str, Any]) -> Entry:
    """The naive campaign: per pattern, deep-copy the model and write faulty weights in place."""
    from bitrobust.faults import RandomBitErrors
    from bitrobust.quant import QuantizedModel

    model, images, labels = context["model"], context["images"], context["labels"]
    faults = RandomBitErrors(CAMPAIGN_RATE)

    @torch.no_grad()
    def run(k: int) -> float:
        qmodel = QuantizedModel.from_module(model, peers.scheme())
        clean = copy.deepcopy(model)
        for name, value in qmodel.dequantized().items():
            clean.get_parameter(name).copy_(value)
        clean_predictions = clean(images).argmax(1)
        rerrs = []
        for seed in range(k * context["patterns"], (k + 1) * context["patterns"]):
            faulty_model = copy.deepcopy(model)
            faulty = faults.sample(qmodel, seed).apply(qmodel).dequantized()
            for name, param in faulty_model.named_parameters():
                param.copy_(faulty[name])
            predictions = faulty_model(images).argmax(1)
            wrong = (predictions != labels) | (clean_predictions != labels)
            rerrs.append(wrong.float().mean().item())
        return sum(rerrs) / len(rerrs)

    return Entry(
        run, "deep copy + in-place weight edit per pattern, bitrobust's sampler; outcome: RErr"
    )


def campaign_forward(context: dict[str, Any]) -> Entry:
    """The least work of any exact campaign: one dense forward pass per pattern (here the clean
    quantized weights, nothing sampled)."""
    from bitrobust.quant import QuantizedModel

    model, images, labels = context["model"], context["images"], context["labels"]
    stored = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, value in QuantizedModel.from_module(model, peers.scheme()).dequantized().items():
            stored.get_parameter(name).copy_(value)

    @torch.no_grad()
    def run(k: int) -> float:
        errors = [
            (stored(images).argmax(1) != labels).float().mean().item()
            for _ in range(context["patterns"])
        ]
        return sum(errors) / len(errors)

    return Entry(
        run, "the bound: the forward passes alone (one per pattern, clean stored weights, no "
        "sampling); outcome: Err",
    )  # fmt: skip


def campaign_mrfi(context: dict[str, Any]) -> Entry:
    injector = peers.MrfiInjector(context["model"], CAMPAIGN_RATE, INPUT_SHAPE)
    fi_model, images, labels = injector.fi_model, context["images"], context["labels"]

    def run(k: int) -> float:
        with fi_model.golden_run():
            clean_predictions = fi_model(images).argmax(1)
        rerrs = []
        for seed in range(k * context["patterns"], (k + 1) * context["patterns"]):
            torch.manual_seed(seed)  # MRFI's generators: torch's and numpy's global ones
            np.random.seed(seed)
            predictions = fi_model(images).argmax(1)  # one forward = one pattern
            wrong = (predictions != labels) | (clean_predictions != labels)
            rerrs.append(wrong.float().mean().item())
        return sum(rerrs) / len(rerrs)

    return Entry(
        run, "MRFI re-injects on every forward, so each pattern is one batch of all images; "
        + peers.NOTES["mrfi"] + "; outcome: RErr",
    )  # fmt: skip


def campaign_work(context: dict[str, Any]) -> str:
    return (
        f"{context['patterns']} patterns at p={CAMPAIGN_RATE:g} x {len(context['images'])} "
        "MNIST test images, mlp, one batch per pattern"
    )


# --- approx_*: test images through an emulated approximate-multiplier accelerator -------------


def approx_task(name: str, model_name: str) -> Task:
    def setup(settings: Settings) -> dict[str, Any]:
        images, _ = mnist(settings, "test", settings.approx_examples)
        return {"model": seeded_model(model_name), "images": images, "data_dir": settings.data_dir}

    def forward(model: nn.Module, images: torch.Tensor) -> Callable[[int], None]:
        @torch.no_grad()
        def run(k: int) -> None:
            for start in range(0, len(images), 1000):
                model(images[start : start + 1000])

        return run

    def converted(multiplier: str, note: str) -> Callable[[dict[str, Any]], Entry]:
        def make(context: dict[str, Any]) -> Entry:
            from bitrobust.data import evoapprox_dir
            from bitrobust.hw.catalogue import load_multiplier
            from bitrobust.hw.convert import to_accelerator

            table = load_multiplier(multiplier, evoapprox_dir(context["data_dir"]))
            calibration = context["images"][:1000]
            model = to_accelerator(context["model"], table, calibration=calibration)
            return Entry(forward(model, context["images"]), note)

        return make

    def float_model(context: dict[str, Any]) -> Entry:
        return Entry(forward(context["model"], context["images"]), "the float model, nn.Linear")

    def work(context: dict[str, Any]) -> str:
        return f"{len(context['images'])} MNIST test images through {model_name}, batches of 1000"

    return Task(
        name,
        setup,
        {
            "bitrobust": converted(APPROX_MULTIPLIER, f"to_accelerator({APPROX_MULTIPLIER})"),
            "exact-int8": converted("exact8u", "to_accelerator(exact8u): the exact uint8 table"),
            "float": float_model,
        },
        work,
    )


def pe_fault_task(name: str, model_name: str) -> Task:
    """The emulated accelerator with 30 % faulty PEs of a 16×16 TPU-like array: a stuck bit of
    the int32 partial sum (bitrobust) against a stuck product bit (``product_faults``)."""

    def setup(settings: Settings) -> dict[str, Any]:
        images, _ = mnist(settings, "test", settings.approx_examples)
        return {"model": seeded_model(model_name), "images": images, "data_dir": settings.data_dir}

    def faulty(site: str, bit: int) -> Callable[[dict[str, Any]], Entry]:
        def make(context: dict[str, Any]) -> Entry:
            from bitrobust.data import evoapprox_dir
            from bitrobust.hw import PEFaults, SystolicArray, deploy
            from bitrobust.hw.catalogue import load_multiplier

            table = load_multiplier(APPROX_MULTIPLIER, evoapprox_dir(context["data_dir"]))
            images = context["images"]
            deployment = deploy(
                context["model"], table, SystolicArray(16), calibration=images[:1000]
            )
            pattern = PEFaults(0.3, bit, 1, site=site).sample(deployment.target, seed=1)
            model = deployment.faulty_module(pattern)

            @torch.no_grad()
            def run(k: int) -> None:
                for start in range(0, len(images), 1000):
                    model(images[start : start + 1000])

            note = f"{APPROX_MULTIPLIER}, 30 % of 16x16 PEs with {site} bit {bit} stuck at 1"
            return Entry(run, note)

        return make

    def work(context: dict[str, Any]) -> str:
        return (
            f"{len(context['images'])} MNIST test images through {model_name} on a faulty "
            "TPU-like array, batches of 1000"
        )

    return Task(
        name,
        setup,
        {"bitrobust": faulty("accumulator", 20), "product_faults": faulty("product", 14)},
        work,
    )


# --- randbet_epoch: one training epoch --------------------------------------------------------


def epoch_setup(settings: Settings) -> dict[str, Any]:
    from torch.utils.data import TensorDataset

    images, labels = mnist(settings, "train", settings.epoch_examples)
    return {"model": seeded_model("mlp"), "train_set": TensorDataset(images, labels)}


def epoch_entry(method: str) -> Callable[[dict[str, Any]], Entry]:
    def make(context: dict[str, Any]) -> Entry:
        from bitrobust.train import TrainConfig, train

        w_max = 0.1 if method == "randbet" else None
        config = TrainConfig(method=method, epochs=1, w_max=w_max, progress=False)

        def run(k: int) -> float:
            history = train(
                copy.deepcopy(context["model"]), peers.scheme(), context["train_set"], config,
                device="cpu",
            )  # fmt: skip
            return history.perturbed_fraction[0]

        note = f"bitrobust.train.train, method {method}"
        if method == "randbet":
            note += f", w_max {w_max}, p {config.bit_error_rate} (perturbed pass per curriculum)"
        return Entry(run, note + "; outcome: fraction of steps with a perturbed pass")

    return make


def epoch_work(context: dict[str, Any]) -> str:
    return f"one epoch on {len(context['train_set'])} MNIST training images, mlp, batch 128"


def all_tasks() -> dict[str, Task]:
    """Every task by name, in the order they run."""
    everyone = ("bitrobust", "limit", *peers.PEER_TOOLS)
    tasks = [
        inject_task("inject_p10", 0.1, ("bitrobust", "limit", "mrfi")),  # PyTorchFI: ~1 min
        inject_task("inject_p1", 0.01, everyone),
        inject_task("inject_p0.1", 0.001, everyone),
        inject_task("inject_p0.01", 0.0001, everyone),
        inject_task("inject_p0.01_10M", 0.0001, ("bitrobust", "limit"), hidden=MLP_10M_HIDDEN),
        Task(
            "campaign100",
            campaign_setup,
            {
                "bitrobust": campaign_bitrobust,
                "mrfi": campaign_mrfi,
                "loop": campaign_loop,
                "forward": campaign_forward,
            },
            campaign_work,
        ),
        approx_task("approx_lenet5", "lenet5"),
        approx_task("approx_mlp", "mlp"),
        pe_fault_task("accumulator_lenet5", "lenet5"),
        pe_fault_task("accumulator_mlp", "mlp"),
        Task(
            "randbet_epoch",
            epoch_setup,
            {"bitrobust": epoch_entry("randbet"), "normal_epoch": epoch_entry("normal")},
            epoch_work,
        ),
    ]
    return {task.name: task for task in tasks}


TASKS = all_tasks()
