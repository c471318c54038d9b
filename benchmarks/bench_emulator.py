"""Approximate-multiplier GEMM: bitrobust's chunked table gather vs the one-shot gather, against
plain float matmul, on the GEMM shapes of LeNet-5 and the MLP.

Emulating an 8×8 approximate multiplier means one table lookup per product. The obvious way (as
in many PyTorch emulators) builds the index ``a·256 + w`` of every product at once and sums the
gathered products: R·K·M int64 indices and int32 products in memory. bitrobust's
:func:`bitrobust.hw.emulate.lut_matmul` gathers in chunks of at most ``CHUNK_ELEMENTS``
products and, for many rows, first builds each weight's table column so that one index reads M
contiguous products. All variants are checked to give the same int32 result, then timed side by
side in one run; "ratio" is one-shot time / variant time. Memory is the largest intermediate
the variant allocates, computed from the shapes.

    python benchmarks/bench_emulator.py [--repeats 5] [--batch 256]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from bitrobust.hw import emulate
from bitrobust.hw.emulate import LayerFault, lut_matmul
from bitrobust.hw.multiplier import SIZE, Multiplier, exact


def one_shot(act: torch.Tensor, weight: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Every product's index at once, one gather, one sum."""
    index = act.to(torch.int64).unsqueeze(2) * SIZE + weight.to(torch.int64)
    return table[index].sum(dim=1, dtype=torch.int32)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (and table caches)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def mib(elements: int, bytes_each: int) -> float:
    return elements * bytes_each / 2**20


def variants(
    act: torch.Tensor, weight: torch.Tensor, multiplier: Multiplier, generator: torch.Generator
) -> list[tuple[str, Callable[[], torch.Tensor], float]]:
    """(label, call, largest intermediate in MiB) of each variant, checked to agree first."""
    (R, K), M = act.shape, weight.shape[1]
    table = multiplier.flat_table()
    fault = LayerFault(torch.rand((K, M), generator=generator) < 0.3, bit=14, stuck_at=1)
    reference = one_shot(act, weight, table)
    if not torch.equal(lut_matmul(act, weight, multiplier), reference):
        raise AssertionError("lut_matmul disagrees with the one-shot gather")
    if not torch.equal((act.double() @ weight.double()).to(torch.int32), reference):
        raise AssertionError("the exact table disagrees with matmul")
    chunk_rows = min(R, max(1, emulate.CHUNK_ELEMENTS // (K * M)))
    columns = K * SIZE * M if R >= emulate.COLUMN_TABLE_MIN_ROWS else 0
    ours = mib(chunk_rows * K * M, 4 + 4) + mib(columns, 4)
    return [
        ("one-shot gather", lambda: one_shot(act, weight, table), mib(R * K * M, 8 + 4)),
        ("bitrobust lut_matmul", lambda: lut_matmul(act, weight, multiplier), ours),
        (
            "bitrobust, 30 % PEs with a stuck-at product bit",
            lambda: lut_matmul(act, weight, multiplier, fault),
            ours,
        ),
        ("float matmul (no table)", lambda: act.float() @ weight.float(), mib(R * K + K * M, 4)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256, help="images per forward pass")
    args = parser.parse_args()
    b = args.batch
    shapes = {  # (rows R, inputs K, outputs M) of the layer's GEMM for one batch
        "lenet5 conv1 (im2col)": (b * 28 * 28, 25, 6),
        "lenet5 conv2 (im2col)": (b * 10 * 10, 150, 16),
        "mlp fc1": (b, 784, 256),
        "mlp fc2": (b, 256, 128),
    }
    multiplier = exact(signed=False)
    generator = torch.Generator().manual_seed(0)
    print(f"batch {b}, {args.repeats} repeats, {torch.get_num_threads()} threads")
    print("| GEMM (R×K×M) | variant | ms | ratio | largest intermediate (MiB) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, (R, K, M) in shapes.items():
        act = torch.randint(0, SIZE, (R, K), dtype=torch.uint8, generator=generator)
        weight = torch.randint(0, SIZE, (K, M), dtype=torch.uint8, generator=generator)
        base = None
        for label, fn, memory in variants(act, weight, multiplier, generator):
            seconds = timed(fn, args.repeats)
            base = base or seconds
            print(
                f"| {name} {R}×{K}×{M} | {label} | {1000 * seconds:.2f} | {base / seconds:.2f}x "
                f"| {memory:.1f} |"
            )


if __name__ == "__main__":
    main()
