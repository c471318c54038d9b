"""Sampler 2 at low rates: where sorting the candidates beats the dense bookkeeping.

Two switches decide how a :class:`~bitrobust.faults.RandomBitErrors` pattern is built; both give
the same pattern (pinned in ``tests/test_sampler.py``), so only speed decides them:

- ``bits.SORTED_BELOW``: below this largest rate :func:`~bitrobust.bits.flip_candidates` finds
  repeated candidates with one sort at the end instead of a bit set of all positions;
- ``faults.core.SPARSE_MIN_CODES``: in that regime, tensors with at least this many codes keep
  their mask sparse (sorted indices and bytes) instead of a dense uint8 mask.

For each (model size, rate) this times one pattern plus its faulty weights
(``sample(...).write_into(...)``, as the bench's ``inject_*`` tasks) with the switches on
("sorted, sparse") and off ("bit set, dense"), interleaved, one thread; the ratio is
off / on, so above 1 means the low-rate path pays.

    python benchmarks/bench_sparse_sampling.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import torch

import bitrobust.bits as bits_module
import bitrobust.faults.core as core_module
from bitrobust.faults import RandomBitErrors
from bitrobust.models import build_model
from bitrobust.quant import QuantizedModel, QuantScheme

SIZES = {  # label -> hidden layers of the MNIST mlp
    "mlp 0.2 M": (256, 256),
    "mlp 1.86 M": (1024, 1024),
    "mlp 10 M": (2048, 4096),
}
RATES = (1e-5, 1e-4, 2e-4, 5e-4, 1e-3)
MODES = {  # mode -> (SORTED_BELOW, SPARSE_MIN_CODES)
    "sorted, sparse": (1.0, core_module.SPARSE_MIN_CODES),
    "bit set, dense": (0.0, core_module.SPARSE_MIN_CODES),
}


def time_pattern(qmodel: QuantizedModel, rate: float, mode: str, seed: int) -> float:
    sorted_below, min_codes = MODES[mode]
    weights = {name: value.clone() for name, value in qmodel.clean_parameters().items()}
    with (
        mock.patch.object(bits_module, "SORTED_BELOW", sorted_below),
        mock.patch.object(core_module, "SORTED_BELOW", sorted_below),
        mock.patch.object(core_module, "SPARSE_MIN_CODES", min_codes),
    ):
        start = time.perf_counter()
        RandomBitErrors(rate).sample(qmodel, seed).write_into(qmodel, weights)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    scheme = QuantScheme.preset("rquant", bits=8)
    print("| model | rate | sorted, sparse ms | bit set, dense ms | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, hidden in SIZES.items():
        torch.manual_seed(0)
        model = build_model("mlp", in_channels=1, image_size=28, num_classes=10, hidden=hidden)
        qmodel = QuantizedModel.from_module(model, scheme)
        for rate in RATES:
            times: dict[str, list[float]] = {mode: [] for mode in MODES}
            for seed in range(args.repeats + 1):
                for mode in MODES if seed % 2 else reversed(MODES):
                    times[mode].append(time_pattern(qmodel, rate, mode, seed))
            on, off = (statistics.median(times[mode][1:]) * 1e3 for mode in MODES)
            print(f"| {label} | {rate:g} | {on:.2f} | {off:.2f} | {off / on:.2f} |")


if __name__ == "__main__":
    main()
