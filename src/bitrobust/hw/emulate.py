"""Integer GEMMs whose products come from a multiplier's table, with optional datapath faults.

Everything here is a pure tensor function on 8-bit operand patterns (uint8 tensors): rows of
activations ``act`` (R, K) and a weight matrix ``weight`` (K, M), the layout of the array
mapping in :mod:`bitrobust.hw.accelerator` (weight W[k, m] is the MAC of input k and output m).

For affine-quantized operands, value = decode(pattern) − zero point, the exact identity

    Σ_k (a_k − z_a)(w_km − z_w) = Σ_k a_k·w_km − z_w Σ_k a_k − z_a Σ_k w_km + K z_a z_w

lets only a·w go through the (approximate) table, as in TFApprox; the three correction terms are
computed exactly. With the exact table the result equals integer matmul bit for bit.

Faults (:class:`LayerFault`) act on the multipliers of some MACs: a stuck-at bit of the 16-bit
product (every product those PEs compute, for every input), or of the 32-bit partial sum a PE
passes on. Product faults cost nothing extra: the gather reads from a second, pre-forced copy of
the table for faulty MACs.

On the CPU :func:`lut_matmul` runs the compiled kernel of :mod:`bitrobust.hw.kernel` when it is
available (else a chunked torch gather, the same results): it skips the activations equal to
the most frequent pattern, whose products enter as one per-column constant (the table is shifted
by that pattern's row), so its cost is proportional to the MACs of the other activations.

A fault with ``bypass=True`` is one a mitigation has routed around (fault-aware pruning in the
hardware sense of Zhang et al., VTS'18): the MACs of its faulty PEs are skipped, so they add
nothing to the sum, whatever their weight, and the stuck bit never shows. In
:func:`integer_gemm` the zero-point correction terms then also run over the kept MACs only, so a
bypassed MAC contributes exactly 0 to ``Σ (a − z_a)(w − z_w)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bitrobust.errors import BitrobustError
from bitrobust.hw import kernel
from bitrobust.hw.tables import SIZE, Multiplier
from bitrobust.quant import operand_values

PRODUCT_BITS = 16
ACCUMULATOR_BITS = 32
SITES = ("product", "accumulator")

#: Products gathered per chunk (R·K·M): small enough to stay in cache (2 MiB of int32).
CHUNK_ELEMENTS = 1 << 19

#: From this many rows on, per-weight table columns are built first (see :func:`_gatherer`).
COLUMN_TABLE_MIN_ROWS = 2048

#: Kernel: per-weight columns (K·256·M int32) from this many rows on, up to this many entries.
KERNEL_COLUMN_MIN_ROWS = 4096
KERNEL_COLUMN_MAX_ELEMENTS = 1 << 20

#: Activations sampled to find the most frequent pattern (the one the kernel skips).
SKIP_SAMPLE = 1 << 14


decode = operand_values
"""uint8 operand patterns → int32 values (int8 two's complement when ``signed``): the one
decode of :mod:`bitrobust.quant`."""


def force_bit(
    values: torch.Tensor, bit: int, stuck_at: int, width: int = PRODUCT_BITS, signed: bool = True
) -> torch.Tensor:
    """Force ``bit`` of each value's ``width``-bit pattern to ``stuck_at``; same dtype back.

    The pattern is the two's complement (``signed``) or plain binary representation of values
    that fit ``width`` bits; the result is read back the same way. On a sign-extended integer
    this is a single OR/AND with a constant: forcing the sign bit also sets or clears the
    extension bits above it.
    """
    return _bit_op(values, stuck_at, force_constant(bit, stuck_at, width, signed))


def force_constant(bit: int, stuck_at: int, width: int, signed: bool) -> int:
    """The constant to OR (stuck at 1) or AND (stuck at 0) into a value to force ``bit``."""
    check_bit(bit, width)
    if stuck_at not in (0, 1):
        raise BitrobustError(f"stuck-at value must be 0 or 1, got {stuck_at!r}")
    if signed and bit == width - 1:  # the sign bit: extension bits follow it
        return -(1 << bit) if stuck_at else (1 << bit) - 1
    return (1 << bit) if stuck_at else ~(1 << bit)


def _bit_op(values: torch.Tensor, stuck_at: int, constant: int | torch.Tensor) -> torch.Tensor:
    return values | constant if stuck_at else values & constant


def check_bit(bit: int, width: int) -> int:
    if isinstance(bit, bool) or not isinstance(bit, int) or not 0 <= bit < width:
        raise BitrobustError(f"fault bit must be an integer in 0..{width - 1}, got {bit!r}")
    return bit


@dataclass(frozen=True, eq=False)
class LayerFault:
    """Stuck-at faults on the MACs of one GEMM.

    ``mask`` (bool, K×M) marks MACs that run on a faulty PE. ``site`` is ``"product"`` (bit of
    the 16-bit product) or ``"accumulator"`` (bit of the int32 partial sum the PE outputs).
    For accumulator faults, partial sums run through ``segment`` consecutive k (one pass down a
    systolic column: k = t·segment … (t+1)·segment − 1) and are then added exactly; ``None``
    means one chain over all K. ``bypass`` skips the masked MACs instead (product 0, no
    correction terms, no stuck bit): the PEs are bypassed by a mitigation.
    """

    mask: torch.Tensor
    bit: int
    stuck_at: int
    site: str = "product"
    segment: int | None = None
    bypass: bool = False

    def __post_init__(self) -> None:
        if self.site not in SITES:
            raise BitrobustError(f"fault site must be one of {', '.join(SITES)}, got {self.site!r}")
        check_bit(self.bit, PRODUCT_BITS if self.site == "product" else ACCUMULATOR_BITS)
        if self.stuck_at not in (0, 1):
            raise BitrobustError(f"stuck-at value must be 0 or 1, got {self.stuck_at!r}")
        if self.mask.dtype != torch.bool or self.mask.ndim != 2:
            raise ValueError(f"fault mask must be a 2-D bool tensor, got {self.mask.dtype}")


def product_table(
    multiplier: Multiplier, fault: LayerFault | None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Flat int32 table to gather from: T (index a·256 + w), followed by the faulty copy
    force(T) (index + 65536) when ``fault`` is a product fault, or by zeros when it is
    bypassed. Cached on the multiplier."""
    if fault is not None and fault.bypass:
        key = ("bypass", str(device))
        cache = multiplier._cache
        if key not in cache:
            flat = multiplier.flat_table(device)
            cache[key] = torch.cat([flat, torch.zeros_like(flat)])
        return cache[key]
    if fault is None or fault.site != "product":
        return multiplier.flat_table(device)
    key = ("faulty", str(device), fault.bit, fault.stuck_at)
    cache = multiplier._cache
    if key not in cache:
        flat = multiplier.flat_table(device)
        forced = force_bit(flat, fault.bit, fault.stuck_at, PRODUCT_BITS, multiplier.signed)
        cache[key] = torch.cat([flat, forced])
    return cache[key]


def _check_operands(act: torch.Tensor, weight: torch.Tensor, fault: LayerFault | None) -> None:
    if act.dtype != torch.uint8 or weight.dtype != torch.uint8:
        raise TypeError(f"operands must be uint8 patterns, got {act.dtype} and {weight.dtype}")
    if act.ndim != 2 or weight.ndim != 2 or act.shape[1] != weight.shape[0]:
        raise ValueError(f"cannot multiply {tuple(act.shape)} by {tuple(weight.shape)}")
    if fault is not None and fault.mask.shape != weight.shape:
        raise ValueError(f"fault mask {tuple(fault.mask.shape)} != weight {tuple(weight.shape)}")


def _weight_index(weight: torch.Tensor, fault: LayerFault | None) -> torch.Tensor:
    """Column of the flat table each weight reads: w, or w + 65536 on a faulty-product MAC."""
    index = weight.to(torch.int64)
    if fault is not None and (fault.site == "product" or fault.bypass):
        index = index + fault.mask.to(torch.int64) * (SIZE * SIZE)
    return index


def _gatherer(
    act: torch.Tensor, weight: torch.Tensor, multiplier: Multiplier, fault: LayerFault | None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function from rows of ``act`` (r, K) to their products (r, K, M), int32.

    For many rows it first builds each weight's table column, ``C[k·256 + a, m] = T[a, w_km]``
    (K·256 × M), so that a row gather reads M contiguous products per (r, k) index; for few
    rows it indexes the table directly with ``a·256 + w``.
    """
    K, M = weight.shape
    table = product_table(multiplier, fault, act.device)
    weight_index = _weight_index(weight, fault)
    if act.shape[0] >= COLUMN_TABLE_MIN_ROWS:
        patterns = torch.arange(SIZE, device=act.device) * SIZE
        columns = table[patterns[None, :, None] + weight_index[:, None, :]].view(K * SIZE, M)
        offsets = torch.arange(K, dtype=torch.int32, device=act.device) * SIZE

        def gather(rows: torch.Tensor) -> torch.Tensor:
            index = (rows.to(torch.int32) + offsets).view(-1)
            return columns.index_select(0, index).view(len(rows), K, M)

        return gather
    weight_index32 = weight_index.to(torch.int32)

    def gather_direct(rows: torch.Tensor) -> torch.Tensor:
        index = ((rows.to(torch.int32) * SIZE).unsqueeze(2) + weight_index32).view(-1)
        return table.index_select(0, index).view(len(rows), K, M)

    return gather_direct


def lut_products(
    act: torch.Tensor,
    weight: torch.Tensor,
    multiplier: Multiplier,
    fault: LayerFault | None = None,
) -> torch.Tensor:
    """Every product ``P[r, k, m] = T[act[r, k], weight[k, m]]`` (int32, R×K×M), with product
    faults applied. For inspection and tests; :func:`lut_matmul` does not keep them all."""
    _check_operands(act, weight, fault)
    return _gatherer(act, weight, multiplier, fault)(act)


def lut_matmul(
    act: torch.Tensor,
    weight: torch.Tensor,
    multiplier: Multiplier,
    fault: LayerFault | None = None,
) -> torch.Tensor:
    """``Σ_k T[act[r, k], weight[k, m]]`` with int32 accumulation (R×M), faults applied.

    Chunked over rows so that at most :data:`CHUNK_ELEMENTS` products exist at a time.
    """
    _check_operands(act, weight, fault)
    R, K = act.shape
    M = weight.shape[1]
    if act.device.type == "cpu" and R > 0 and kernel.library() is not None:
        return _kernel_matmul(act, weight, multiplier, fault)
    gather = _gatherer(act, weight, multiplier, fault)
    accumulate_faults = fault is not None and fault.site == "accumulator" and not fault.bypass
    out = torch.empty((R, M), dtype=torch.int32, device=act.device)
    step = max(1, CHUNK_ELEMENTS // max(1, K * M))
    for start in range(0, R, step):
        products = gather(act[start : start + step])
        if accumulate_faults:
            out[start : start + step] = _faulty_accumulate(products, fault)
        else:
            out[start : start + step] = products.sum(dim=1, dtype=torch.int32)
    return out


def most_frequent_pattern(act: torch.Tensor) -> int:
    """The most frequent activation pattern, from an evenly spaced sample (any answer is exact:
    it only decides which activations the kernel skips)."""
    flat = act.reshape(-1)
    step = max(1, flat.numel() // SKIP_SAMPLE)
    return int(torch.bincount(flat[::step], minlength=SIZE).argmax())


def _kernel_matmul(
    act: torch.Tensor, weight: torch.Tensor, multiplier: Multiplier, fault: LayerFault | None
) -> torch.Tensor:
    """:func:`lut_matmul` by the compiled kernel (CPU tensors).

    With per-weight columns (many rows, few outputs) every MAC is visited, M padded to a
    multiple of 8: contiguous vector adds beat unpredictable skips there.
    """
    act = act.contiguous()
    (R, K), M = act.shape, weight.shape[1]
    table = product_table(multiplier, fault, "cpu")
    widx = _weight_index(weight, fault).to(torch.int32)
    use_columns = R >= KERNEL_COLUMN_MIN_ROWS and K * SIZE * M <= KERNEL_COLUMN_MAX_ELEMENTS
    padded = -(-M // 8) * 8 if use_columns else M
    widx = F.pad(widx, (0, padded - M)).contiguous()
    skip = most_frequent_pattern(act)
    skipped = table[skip * SIZE + widx]  # (K, M): the products of the skipped pattern
    if fault is not None and fault.site == "accumulator" and not fault.bypass:
        # chains: no shift; skipping needs the skipped MACs to add exactly 0
        constant = force_constant(fault.bit, fault.stuck_at, ACCUMULATOR_BITS, signed=True)
        or_mask, and_mask = (constant, -1) if fault.stuck_at else (0, constant)
        faulty = F.pad(fault.mask.to(torch.int32), (0, padded - M))
        counts = F.pad(faulty.cumsum(0, dtype=torch.int32), (0, 0, 1, 0)).contiguous()
        forced = torch.where(faulty.bool(), constant, 0 if fault.stuck_at else -1)
        zero_skip = not bool(skipped.any()) and not use_columns
        out = kernel.lut_gemm_accumulator(
            act, table, widx, skip, zero_skip, counts, forced.to(torch.int32).contiguous(),
            fault.segment or K, or_mask, and_mask, _columns(table, widx) if use_columns else None,
        )  # fmt: skip
    else:
        base = skipped.sum(dim=0, dtype=torch.int32)
        if bool(skipped.any()):  # shift each table column by its skipped row: skipped MACs add 0
            copies = table.view(-1, SIZE, SIZE)
            table = (copies - copies[:, skip : skip + 1, :]).reshape(-1)
        columns = _columns(table, widx) if use_columns else None
        out = kernel.lut_gemm(act, table, widx, base, -1 if use_columns else skip, columns)
    return out[:, :M].contiguous() if padded != M else out


def _columns(table: torch.Tensor, widx: torch.Tensor) -> torch.Tensor:
    """Each weight's table column, ``C[k, a, m] = table[a·256 + widx[k, m]]`` (K×256×M)."""
    patterns = torch.arange(SIZE, dtype=torch.int32) * SIZE
    return table[patterns[None, :, None] + widx[:, None, :]].contiguous()


def _faulty_accumulate(products: torch.Tensor, fault: LayerFault) -> torch.Tensor:
    """Sum products (r, K, M) along k in chains of ``fault.segment``, forcing the partial sum's
    bit after each faulty MAC; chain results are added exactly."""
    r, K, M = products.shape
    segment = fault.segment or K
    tiles = -(-K // segment)
    pad = tiles * segment - K
    products = F.pad(products, (0, 0, 0, pad)).view(r, tiles, segment, M)
    mask = F.pad(fault.mask, (0, 0, 0, pad)).view(tiles, segment, M)
    constant = force_constant(fault.bit, fault.stuck_at, ACCUMULATOR_BITS, signed=True)
    # per MAC: the constant on faulty MACs, the neutral element (0 for OR, −1 for AND) elsewhere
    neutral = 0 if fault.stuck_at else -1
    constants = torch.where(mask, constant, neutral).to(torch.int32)
    partial = torch.zeros((r, tiles, M), dtype=torch.int32, device=products.device)
    for row in range(segment):
        partial += products[:, :, row, :]
        if bool(mask[:, row, :].any()):
            partial = _bit_op(partial, fault.stuck_at, constants[:, row, :])
    return partial.sum(dim=1, dtype=torch.int32)


def integer_gemm(
    act: torch.Tensor,
    weight: torch.Tensor,
    multiplier: Multiplier,
    act_zero: int = 0,
    weight_zero: int = 0,
    fault: LayerFault | None = None,
    act_sums: torch.Tensor | None = None,
) -> torch.Tensor:
    """``Σ_k (value(a) − z_a)(value(w) − z_w)`` (int32, R×M) with only a·w from the table.

    Values are the decoded operand patterns (int8 when the multiplier is signed); the zero-point
    terms are exact. Faults act on the table products / partial sums only; bypassed MACs
    (``fault.bypass``) are left out of the sum and of the correction terms. ``act_sums``: each
    row's ``Σ_k value(a)`` (R, int32) where the caller has it cheaper (a convolution's rows
    overlap), else summed from ``act``.
    """
    raw = lut_matmul(act, weight, multiplier, fault)
    if fault is not None and fault.bypass and (act_zero != 0 or weight_zero != 0):
        return raw - _kept_corrections(act, weight, multiplier.signed, act_zero, weight_zero, fault)
    if act_zero == 0 and weight_zero == 0:
        return raw
    signed = multiplier.signed
    K = act.shape[1]
    if weight_zero != 0:
        if act_sums is None:  # summed straight from the bytes (int8 view when signed)
            act_sums = (act.view(torch.int8) if signed else act).sum(dim=1, dtype=torch.int32)
        raw = raw - weight_zero * act_sums[:, None]
    if act_zero != 0:
        weight_sum = decode(weight, signed).sum(dim=0, dtype=torch.int32).unsqueeze(0)  # (1, M)
        raw = raw - act_zero * weight_sum
    return raw + K * act_zero * weight_zero


def _kept_corrections(
    act: torch.Tensor,
    weight: torch.Tensor,
    signed: bool,
    act_zero: int,
    weight_zero: int,
    fault: LayerFault,
) -> torch.Tensor:
    """``z_w Σ_k a_k + z_a Σ_k w_km − n_m z_a z_w`` over the MACs that are not bypassed (R×M)."""
    keep = (~fault.mask.to(act.device)).to(torch.float64)  # (K, M)
    act_values = decode(act, signed).to(torch.float64)
    act_sum = torch.round(act_values @ keep).to(torch.int64)  # exact: sums < 2^53
    weight_sum = (decode(weight, signed).to(torch.int64) * keep.to(torch.int64)).sum(dim=0)
    count = keep.to(torch.int64).sum(dim=0)
    total = weight_zero * act_sum + act_zero * weight_sum - count * (act_zero * weight_zero)
    return total.to(torch.int32)
