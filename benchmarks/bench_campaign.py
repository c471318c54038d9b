"""Campaign throughput: one pattern per pass vs grouped patterns that share the clean prefix.

Random bit errors on the MNIST MLP (8-bit rquant) over test images, faults in every layer, in
the second and third linear layers, or in the last one. Each configuration runs
``evaluate_fault_models`` with ``max_memory_mb=0`` (one pattern per pass) and with the default
budget (patterns grouped, each starting at the first layer it changes), interleaved, one CPU
thread; the table gives the median seconds per pattern and their ratio. Both give the same RErr
(checked).

    python benchmarks/bench_campaign.py [--patterns 20] [--examples 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bitrobust.data import load_dataset
from bitrobust.evaluate import DEFAULT_MAX_MEMORY_MB, evaluate_fault_models
from bitrobust.faults import RandomBitErrors
from bitrobust.models import build_model
from bitrobust.quant import QuantScheme


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns", type=int, default=20)
    parser.add_argument("--examples", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    torch.set_num_threads(1)
    images, labels = load_dataset("mnist", "test", args.data_dir).tensors
    images, labels = images[: args.examples], labels[: args.examples]
    torch.manual_seed(0)
    model = build_model("mlp", in_channels=1, image_size=28, num_classes=10).eval()
    scheme = QuantScheme.preset("rquant", bits=8)
    linear = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    cases = {
        "every layer": RandomBitErrors(0.01),
        "layers 2-3": RandomBitErrors(0.01, layers=linear[1:]),
        "last layer": RandomBitErrors(0.01, layers=linear[-1:]),
    }
    budgets = {"one per pass": 0, "grouped": DEFAULT_MAX_MEMORY_MB}
    seconds: dict[tuple[str, str], list[float]] = {}
    rerr: dict[tuple[str, str], float] = {}
    for _ in range(args.rounds):
        for case, faults in cases.items():
            for label, budget in budgets.items():
                start = time.perf_counter()
                result = evaluate_fault_models(
                    model, scheme, images, labels, [faults], patterns=args.patterns,
                    max_memory_mb=budget,
                )  # fmt: skip
                per_pattern = (time.perf_counter() - start) / args.patterns
                seconds.setdefault((case, label), []).append(per_pattern)
                rerr[(case, label)] = result.results[0].rerr.mean
    print(f"MNIST mlp, {args.examples} images, {args.patterns} patterns at p = 1 %, 1 thread")
    print("| faults in | one per pass, s/pattern | grouped, s/pattern | speed-up |")
    print("| --- | ---: | ---: | ---: |")
    for case in cases:
        single = statistics.median(seconds[(case, "one per pass")])
        grouped = statistics.median(seconds[(case, "grouped")])
        assert rerr[(case, "one per pass")] == rerr[(case, "grouped")], case
        print(f"| {case} | {single:.3f} | {grouped:.3f} | {single / grouped:.2f}x |")


if __name__ == "__main__":
    main()
