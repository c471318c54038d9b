"""A compiled CPU kernel for table GEMMs: one gather-add per MAC whose activation is not skipped.

The pure-torch gather of :mod:`bitrobust.hw.emulate` materializes products chunk by chunk; this
kernel adds them straight into the int32 output, row by row, in C (built once per machine with
the system C compiler, loaded with :mod:`ctypes`, cached under ``~/.cache/bitrobust/kernels``).
Activations equal to a ``skip`` pattern are not visited at all: after ReLU or on an image's
background most activations are one pattern, so the cost is proportional to the others.

Two sources of products, the same results:

- *direct*: ``table[a·256 + widx[k, m]]``, the (faulty) flat table, L2-resident, gathered by the
  weight index; for layers with many outputs;
- *columns*: ``columns[(k·256 + a)·M + m]``, each weight's table column built beforehand, so a
  MAC row is M contiguous int32; for layers with few outputs and many rows.

Arithmetic is on uint32, i.e. int32 with wraparound, as torch's int32 sums. With accumulator
faults, partial sums run in chains of ``segment`` consecutive k; a stuck bit is forced after each
faulty MAC. Forcing is idempotent and a skipped MAC adds 0 (its table entries must be 0), so
forcing once per stretch of skipped MACs that holds a faulty one is exact; ``counts`` (prefix
counts of faulty MACs per column) tells whether a stretch holds one.

Disabled (the callers fall back to torch) when no compiler works or ``$BITROBUST_KERNEL=0``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

from bitrobust.errors import BitrobustError
from bitrobust.hw.ccompile import find_compiler

KERNEL_ENV = "BITROBUST_KERNEL"
CACHE_DIR = "~/.cache/bitrobust/kernels"
FLAGS = ("-O3", "-shared", "-fPIC", "-fno-strict-aliasing")
#: 256-bit vectors: measured 1.4× faster than 512-bit gathers on a Sapphire Rapids core.
NATIVE = ("-march=native", "-mprefer-vector-width=256")

SOURCE = r"""
#include <stdint.h>
#include <string.h>

typedef const int32_t *restrict ctab;

static inline void add_direct(uint32_t *restrict acc, ctab row, ctab wi, int64_t M) {
    for (int64_t m = 0; m < M; ++m) acc[m] += (uint32_t)row[wi[m]];
}

static inline void add_column(uint32_t *restrict acc, ctab src, int64_t M) {
    for (int64_t m = 0; m < M; ++m) acc[m] += (uint32_t)src[m];
}

static inline void add_mac(uint32_t *restrict acc, ctab table, ctab columns, ctab widx,
                           int64_t k, int a, int64_t M) {
    if (columns) add_column(acc, columns + ((k << 8) + a) * M, M);
    else add_direct(acc, table + ((int64_t)a << 8), widx + k * M, M);
}

/* out[r, m] = base[m] + sum over k with act[r, k] != skip of the product of MAC (k, m). */
void bitrobust_lut_gemm(const uint8_t *act, int64_t R, int64_t K, int64_t M, ctab table,
                        ctab columns, ctab widx, ctab base, int32_t skip, int32_t *out) {
    for (int64_t r = 0; r < R; ++r) {
        uint32_t *restrict acc = (uint32_t *)(out + r * M);
        const uint8_t *a = act + r * K;
        memcpy(acc, base, (size_t)M * sizeof *acc);
        if (columns) {
            for (int64_t k = 0; k < K; ++k)
                if (a[k] != skip) add_column(acc, columns + ((k << 8) + a[k]) * M, M);
        } else {
            for (int64_t k = 0; k < K; ++k)
                if (a[k] != skip) add_direct(acc, table + ((int64_t)a[k] << 8), widx + k * M, M);
        }
    }
}

/* Force the stuck bit of partial[m] if a faulty MAC of column m lies in the stretch [lo, hi). */
static inline void force_span(uint32_t *restrict partial, ctab lo, ctab hi, int64_t M,
                              uint32_t or_mask, uint32_t and_mask) {
    for (int64_t m = 0; m < M; ++m) {
        uint32_t forced = (partial[m] | or_mask) & and_mask;
        partial[m] = hi[m] != lo[m] ? forced : partial[m];
    }
}

/* Add MAC k's products into partial and force the stuck bit of the columns whose MAC k is
   faulty, in one pass: forced[m] is or_mask or 0 (stuck at 1), and_mask or ~0 (stuck at 0). */
static inline void add_force(uint32_t *restrict partial, ctab table, ctab columns, ctab widx,
                             int64_t k, int a, int64_t M, const uint32_t *restrict forced,
                             int stuck_one) {
    ctab src = columns ? columns + ((k << 8) + a) * M : table + ((int64_t)a << 8);
    ctab wi = widx + k * M;
    if (columns && stuck_one)
        for (int64_t m = 0; m < M; ++m) partial[m] = (partial[m] + (uint32_t)src[m]) | forced[m];
    else if (columns)
        for (int64_t m = 0; m < M; ++m) partial[m] = (partial[m] + (uint32_t)src[m]) & forced[m];
    else if (stuck_one)
        for (int64_t m = 0; m < M; ++m)
            partial[m] = (partial[m] + (uint32_t)src[wi[m]]) | forced[m];
    else
        for (int64_t m = 0; m < M; ++m)
            partial[m] = (partial[m] + (uint32_t)src[wi[m]]) & forced[m];
}

/* One chain over [start, end) (partial sums, forced after faulty MACs) added into acc. MACs
   with act == skip are not visited: their products must be 0 (skip -1 visits all); a stretch
   of them is forced once if it holds a faulty MAC. */
static void chain(uint32_t *restrict acc, uint32_t *restrict partial, const uint8_t *a,
                  int64_t start, int64_t end, int64_t M, ctab table, ctab columns, ctab widx,
                  int32_t skip, ctab counts, const uint32_t *forced, int stuck_one,
                  uint32_t or_mask, uint32_t and_mask) {
    int64_t next = start; /* the first MAC whose forcing is not applied yet */
    memset(partial, 0, (size_t)M * sizeof *partial);
    for (int64_t k = start; k < end; ++k) {
        if (a[k] == skip) continue;
        if (k > next)
            force_span(partial, counts + next * M, counts + k * M, M, or_mask, and_mask);
        add_force(partial, table, columns, widx, k, a[k], M, forced + k * M, stuck_one);
        next = k + 1;
    }
    if (end > next)
        force_span(partial, counts + next * M, counts + end * M, M, or_mask, and_mask);
    for (int64_t m = 0; m < M; ++m) acc[m] += partial[m];
}

/* Chains of `segment` partial sums per output, bit forced after faulty MACs; chains add up.
   A chain whose activations all equal `fill[0]` has one value for every row: computed once
   into tile_cache (tiles x M, tile_done flags). `zero_skip`: fill's products are all 0, so
   the other chains skip those MACs too. */
void bitrobust_lut_gemm_acc(const uint8_t *act, int64_t R, int64_t K, int64_t M, ctab table,
                            ctab columns, ctab widx, const uint8_t *fill, int32_t zero_skip,
                            ctab counts, const uint32_t *forced, int32_t stuck_one,
                            int64_t segment, uint32_t or_mask, uint32_t and_mask,
                            int32_t *scratch, int32_t *tile_cache, uint8_t *tile_done,
                            int32_t *out) {
    uint32_t *restrict partial = (uint32_t *)scratch;
    int32_t skip = zero_skip ? fill[0] : -1;
    for (int64_t r = 0; r < R; ++r) {
        uint32_t *restrict acc = (uint32_t *)(out + r * M);
        const uint8_t *a = act + r * K;
        memset(acc, 0, (size_t)M * sizeof *acc);
        for (int64_t start = 0, t = 0; start < K; start += segment, ++t) {
            int64_t end = start + segment < K ? start + segment : K, k = start;
            while (k < end && a[k] == fill[0]) ++k;
            if (k < end) {
                chain(acc, partial, a, start, end, M, table, columns, widx, skip, counts,
                      forced, stuck_one, or_mask, and_mask);
                continue;
            }
            uint32_t *cached = (uint32_t *)(tile_cache + t * M);
            if (!tile_done[t]) {
                memset(cached, 0, (size_t)M * sizeof *cached);
                chain(cached, partial, fill, start, end, M, table, columns, widx, -1,
                      counts, forced, stuck_one, or_mask, and_mask);
                tile_done[t] = 1;
            }
            for (int64_t m = 0; m < M; ++m) acc[m] += cached[m];
        }
    }
}
"""

_library: ctypes.CDLL | None = None
_loaded = False


def enabled() -> bool:
    """Whether the compiled kernel is to be used (``$BITROBUST_KERNEL`` is not ``0``)."""
    return os.environ.get(KERNEL_ENV, "1").strip() not in ("0", "false", "no", "off")


def _machine_tag() -> str:
    """What the built library depends on: source, flags, CPU features (``-march=native``)."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features", "model name")):
                cpu += line
    except OSError:
        cpu = platform.processor()
    text = "\n".join([SOURCE, " ".join(FLAGS + NATIVE), platform.machine(), cpu])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _compile(target: Path) -> None:
    compiler = find_compiler()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bitrobust-kernel-") as tmp:
        source = Path(tmp) / "lut_gemm.c"
        source.write_text(SOURCE)
        built = Path(tmp) / target.name
        for extra in (NATIVE, ()):
            command = [compiler, *FLAGS, *extra, "-o", str(built), str(source)]
            result = subprocess.run(command, capture_output=True, text=True, timeout=300)
            if result.returncode == 0:
                break
        else:
            raise BitrobustError(f"the LUT kernel does not compile: {result.stderr.strip()[:200]}")
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(built.read_bytes())
        os.replace(partial, target)  # atomic: concurrent builders never see half a file


def _load() -> ctypes.CDLL:
    target = Path(os.path.expanduser(CACHE_DIR)) / f"lut_gemm_{_machine_tag()}.so"
    if not target.is_file():
        _compile(target)
    library = ctypes.CDLL(str(target))
    p, i64, i32, u32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_uint32
    library.bitrobust_lut_gemm.argtypes = [p, i64, i64, i64, p, p, p, p, i32, p]
    library.bitrobust_lut_gemm.restype = None
    library.bitrobust_lut_gemm_acc.argtypes = [
        *(p, i64, i64, i64, p, p, p, p, i32, p, p, i32, i64, u32, u32, p, p, p, p)
    ]
    library.bitrobust_lut_gemm_acc.restype = None
    return library


def library() -> ctypes.CDLL | None:
    """The loaded kernel, building it on first use; None (with one warning) if it cannot be."""
    global _library, _loaded
    if not enabled():
        return None
    if not _loaded:
        _loaded = True
        try:
            _library = _load()
        except (BitrobustError, OSError, subprocess.SubprocessError) as exc:
            warnings.warn(f"bitrobust: using the slower torch table GEMM ({exc})", stacklevel=2)
            _library = None
    return _library


def _ptr(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def _check(tensors: dict[str, tuple[torch.Tensor | None, torch.dtype]]) -> None:
    for name, (tensor, dtype) in tensors.items():
        if tensor is None:
            continue
        if tensor.dtype != dtype or not tensor.is_contiguous() or tensor.device.type != "cpu":
            raise ValueError(f"kernel operand {name} must be a contiguous CPU {dtype} tensor")


def lut_gemm(
    act: torch.Tensor,
    table: torch.Tensor,
    widx: torch.Tensor,
    base: torch.Tensor,
    skip: int,
    columns: torch.Tensor | None = None,
) -> torch.Tensor:
    """``base[m] + Σ_{k: act[r,k] ≠ skip} product(k, act[r,k], m)`` (int32, R×M).

    The product is ``columns[k, a, m]`` when given (K×256×M), else ``table[a·256 + widx[k, m]]``.
    ``skip`` −1 visits every MAC.
    """
    lib = library()
    assert lib is not None, "kernel.lut_gemm needs the compiled kernel (see kernel.library)"
    (R, K), M = act.shape, widx.shape[1]
    _check(
        {
            "act": (act, torch.uint8),
            "table": (table, torch.int32),
            "widx": (widx, torch.int32),
            "base": (base, torch.int32),
            "columns": (columns, torch.int32),
        }
    )
    out = torch.empty((R, M), dtype=torch.int32)
    lib.bitrobust_lut_gemm(
        act.data_ptr(), R, K, M, table.data_ptr(), _ptr(columns), widx.data_ptr(),
        base.data_ptr(), skip, out.data_ptr(),
    )  # fmt: skip
    return out


def lut_gemm_accumulator(
    act: torch.Tensor,
    table: torch.Tensor,
    widx: torch.Tensor,
    fill: int,
    zero_fill: bool,
    counts: torch.Tensor,
    forced: torch.Tensor,
    segment: int,
    or_mask: int,
    and_mask: int,
    columns: torch.Tensor | None = None,
) -> torch.Tensor:
    """Chained partial sums with a forced bit after faulty MACs (int32, R×M).

    ``counts`` ((K+1)×M int32): faulty MACs of column m at k' < k. ``forced`` (K×M int32): per
    MAC, what a visited MAC's partial sum is OR-ed with (stuck at 1: ``or_mask`` if faulty,
    else 0) or AND-ed with (stuck at 0: ``and_mask`` if faulty, else −1). A chain whose activations
    all equal ``fill`` is computed once; ``zero_fill`` (the products of ``fill`` are all 0)
    lets the other chains skip those MACs. ``or_mask``/``and_mask``: the forcing, as uint32.
    """
    lib = library()
    assert lib is not None, "kernel.lut_gemm_accumulator needs the compiled kernel"
    (R, K), M = act.shape, widx.shape[1]
    _check(
        {
            "act": (act, torch.uint8),
            "table": (table, torch.int32),
            "widx": (widx, torch.int32),
            "counts": (counts, torch.int32),
            "forced": (forced, torch.int32),
            "columns": (columns, torch.int32),
        }
    )
    out = torch.empty((R, M), dtype=torch.int32)
    scratch = torch.empty(M, dtype=torch.int32)
    tiles = -(-K // segment)
    tile_cache = torch.empty((tiles, M), dtype=torch.int32)
    tile_done = torch.zeros(tiles, dtype=torch.uint8)
    fills = torch.full((K,), fill, dtype=torch.uint8)
    lib.bitrobust_lut_gemm_acc(
        act.data_ptr(), R, K, M, table.data_ptr(), _ptr(columns), widx.data_ptr(),
        fills.data_ptr(), int(zero_fill), counts.data_ptr(), forced.data_ptr(), int(or_mask != 0),
        segment, or_mask & 0xFFFFFFFF,
        and_mask & 0xFFFFFFFF, scratch.data_ptr(), tile_cache.data_ptr(), tile_done.data_ptr(),
        out.data_ptr(),
    )  # fmt: skip
    return out
