"""Several fault patterns per pass: where it pays. One pattern per pass vs K patterns grouped
(a loop over the patterns inside each batch) vs K patterns in one ``torch.func.vmap`` call.

``run_trials`` groups as many patterns as fit in ``max_memory_mb`` (0: one per pass). Grouping
reads each batch once for K patterns; ``vmap`` turns K small GEMMs into one batched call, which
pays when a pass is dominated by per-call overhead (small models, small batches) and not when it
is GEMM-bound. Every mode computes the same robust error (checked). Times are per pattern, best
of ``--repeats`` interleaved rounds, one thread; the ratio is one-per-pass time over the mode's.

    python benchmarks/bench_patterns_per_pass.py [--patterns 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from bitrobust.evaluate import QuantizedDeployment, clean_run, run_trials
from bitrobust.faults import RandomBitErrors
from bitrobust.models import build_model
from bitrobust.quant import QuantScheme

CASES = [  # (label, architecture, options, examples, batch size)
    ("mlp 784-64-10, 100 images", "mlp", {"hidden": [64]}, 100, 100),
    ("mlp 784-64-10, 2000 images", "mlp", {"hidden": [64]}, 2000, 1000),
    ("lenet5, 100 images", "lenet5", {}, 100, 100),
    ("lenet5, 2000 images", "lenet5", {}, 2000, 1000),
    ("mlp 784-1024-1024-10, 2000 images", "mlp", {}, 2000, 1000),
]
MODES = {  # mode -> (max_memory_mb, vectorize)
    "one per pass": (0.0, False),
    "grouped loop": (4096.0, False),
    "grouped vmap": (4096.0, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.01)
    args = parser.parse_args()
    torch.set_num_threads(1)
    faults = [RandomBitErrors(args.rate)]
    print(
        f"{args.patterns} patterns at p = {args.rate:g} per round, best of {args.repeats} "
        "rounds, 1 thread; ms per pattern (ratio: one per pass / this mode)"
    )
    print("| case | " + " | ".join(MODES) + " |")
    print("| --- |" + " ---: |" * len(MODES))
    for label, architecture, options, examples, batch in CASES:
        torch.manual_seed(0)
        model = build_model(architecture, in_channels=1, image_size=28, num_classes=10, **options)
        deployment = QuantizedDeployment(model.eval(), QuantScheme.preset("rquant", bits=8))
        data = (torch.rand(examples, 1, 28, 28), torch.randint(0, 10, (examples,)))
        clean = clean_run(deployment, data, batch)
        best = {mode: float("inf") for mode in MODES}
        rerr = {}
        for round_index in range(args.repeats + 1):  # round 0 warms up, untimed
            seeds = list(range(round_index * args.patterns, (round_index + 1) * args.patterns))
            for mode, (budget, vectorize) in MODES.items():
                start = time.perf_counter()
                (results,) = run_trials(
                    deployment, faults, seeds, data, clean, batch, max_memory_mb=budget,
                    vectorize=vectorize,
                )  # fmt: skip
                seconds = (time.perf_counter() - start) / args.patterns
                if round_index:
                    best[mode] = min(best[mode], seconds)
                rerr[mode] = [round(r.rerr, 4) for r in results]
        if len({tuple(values) for values in rerr.values()}) != 1:
            raise AssertionError(f"{label}: the modes disagree on the robust error")
        base = best["one per pass"]
        cells = [f"{1000 * best[mode]:.2f} ({base / best[mode]:.2f}x)" for mode in MODES]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
