"""Emulated accelerator vs float model: LeNet-5 and an MLP over MNIST test images, side by side.

Each model (untrained, random init: timing only) runs over the same images, batch by batch
under ``torch.no_grad``, as the float model, on the emulated accelerator with the exact 8-bit
multiplier, with an EvoApprox table, and with that table plus 30 % faulty PEs of a 16×16
TPU-like array (a stuck product bit, then a stuck partial-sum bit). "× float" is the time over
the float model's time in the same run; "× product" compares the accumulator-fault run with the
product-fault run. ``--torch`` adds the same emulated runs on the pure-torch gather (the fallback
when no C compiler is available); their outputs are checked equal to the kernel's, bit for bit.

    python benchmarks/bench_emulator.py [--quick] [--images 10000] [--repeats 3] [--torch]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
from torch import nn

from bitrobust.data import evoapprox_dir, load_dataset
from bitrobust.hw import PEFaults, SystolicArray, deploy, kernel, load_multiplier, to_accelerator
from bitrobust.models import build_model

MODELS = {
    "lenet5": {"norm": "regn"},
    "mlp 784-256-256-10": {"hidden": [256, 256]},
}


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Best of ``repeats`` wall-clock times after one warm-up (table caches, kernel build)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def predict(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(batch) for batch in images.split(batch_size)])


def with_torch_gather(fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """``fn`` run with the compiled kernel switched off."""

    def run() -> torch.Tensor:
        previous = os.environ.get(kernel.KERNEL_ENV)
        os.environ[kernel.KERNEL_ENV] = "0"
        try:
            return fn()
        finally:
            if previous is None:
                del os.environ[kernel.KERNEL_ENV]
            else:
                os.environ[kernel.KERNEL_ENV] = previous

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1000 images, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--multiplier", default="mul8u_L40")
    parser.add_argument("--torch", action="store_true", help="also time the pure-torch gather")
    args = parser.parse_args()
    if args.quick:
        args.images, args.repeats = min(args.images, 1000), 1
    torch.set_num_threads(1)
    images = load_dataset("mnist", "test").tensors[0][: args.images]
    array = SystolicArray(16)
    multiplier = load_multiplier(args.multiplier, evoapprox_dir())
    faults = {
        "product": PEFaults(0.3, 14, 1, site="product"),
        "accumulator": PEFaults(0.3, 20, 1, site="accumulator"),
    }
    print(
        f"{len(images)} MNIST test images, batch {args.batch}, best of {args.repeats}, "
        f"{torch.get_num_threads()} thread, kernel {'on' if kernel.library() else 'off'}"
    )
    print("| model | run | s | × float | × product |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, options in MODELS.items():
        torch.manual_seed(0)
        model = build_model(
            name.split()[0], in_channels=1, image_size=28, num_classes=10, **options
        ).eval()
        calibration = images[:500]
        runs: dict[str, Callable[[], torch.Tensor]] = {
            "float": lambda model=model: predict(model, images, args.batch)
        }
        emulated = {
            "exact8u": to_accelerator(model, "exact8u", calibration=calibration),
            args.multiplier: to_accelerator(model, multiplier, calibration=calibration),
        }
        for site, fault_model in faults.items():  # the faulty model as an ordinary module
            deployment = deploy(model, multiplier, array, calibration=calibration)
            pattern = fault_model.sample(deployment.target, seed=1)
            emulated[f"{args.multiplier}, 30 % PEs stuck {site} bit"] = deployment.faulty_module(
                pattern
            )
        for label, converted in emulated.items():
            runs[label] = lambda converted=converted: predict(converted, images, args.batch)
            if args.torch:
                runs[f"{label} (torch gather)"] = with_torch_gather(runs[label])
        if args.torch:  # the two implementations agree bit for bit on every run
            for label in emulated:
                fast, slow = runs[label](), runs[f"{label} (torch gather)"]()
                if not torch.equal(fast, slow):
                    raise AssertionError(f"{name}, {label}: kernel and torch gather disagree")
        seconds = {label: timed(fn, args.repeats) for label, fn in runs.items()}
        product = f"{args.multiplier}, 30 % PEs stuck product bit"
        for label, value in seconds.items():
            vs_product = ""
            if "accumulator" in label:
                product_label = product + (" (torch gather)" if "torch" in label else "")
                vs_product = f"{value / seconds[product_label]:.2f}x"
            print(
                f"| {name} | {label} | {value:.3f} | {value / seconds['float']:.2f}x "
                f"| {vs_product} |"
            )


if __name__ == "__main__":
    main()
