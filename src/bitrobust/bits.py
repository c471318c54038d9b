"""Bit-level operations on stored weight codes (uint8 tensors).

Memory faults act on the bits that are actually stored, so everything here works on ``uint8``
codes with integer and bitwise operations. Bit index 0 is the least significant bit.

Reproducibility rests on two functions: :func:`stable_seed` turns any description of a trial
(base seed, parameter name, ...) into the same 63-bit seed on every machine, and
:func:`uniform_draws` turns a seed into one uniform draw per stored bit from a CPU generator,
so a pattern never depends on the device or on other tensors. Thresholding the same draws at
a lower rate gives a subset of the flips at a higher rate (nesting).
"""

from __future__ import annotations

import hashlib
import math
import operator
import sys

import numpy as np
import torch

from bitrobust.errors import check_bits, check_rate

BITS_PER_CODE = 8
_SHIFTS = torch.arange(BITS_PER_CODE, dtype=torch.uint8)
_POPCOUNT = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.int64)


def protected_mask(bits: int) -> int:
    """Mask of the code bits a ``bits``-wide value never uses (bits m..7), e.g. 0xF0 for 4."""
    check_bits(bits)
    return (0xFF << bits) & 0xFF


def value_mask(bits: int) -> int:
    """Mask of the low ``bits`` bits that hold the value, e.g. 0x0F for 4."""
    return 0xFF ^ protected_mask(bits)


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from a blake2b hash of ``repr(parts)``: the same on every machine and run.

    Use plain values (int, float, str and tuples of them); integer-like objects such as numpy
    integers are converted to ``int`` so that ``np.int64(3)`` and ``3`` give the same seed.
    """
    normalized = tuple(_plain(part) for part in parts)
    digest = hashlib.blake2b(repr(normalized).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << 63) - 1)


def _plain(part: object) -> object:
    if isinstance(part, (bool, int, float, str, bytes)) or part is None:
        return part
    try:
        return operator.index(part)
    except TypeError:
        return part


def uniform_draws(
    shape: tuple[int, ...] | torch.Size, seed: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Float32 U[0, 1) draws of shape ``(*shape, 8)``: one draw per stored bit.

    The draws come from a CPU ``torch.Generator`` seeded with ``seed``, so they are identical on
    any machine; they are moved to ``device`` afterwards if one is given.
    """
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed))
    draws = torch.rand((*tuple(shape), BITS_PER_CODE), generator=generator, dtype=torch.float32)
    return draws if device is None else draws.to(device)


def bit_planes(codes: torch.Tensor) -> torch.Tensor:
    """The bits of uint8 ``codes`` as 0/1 uint8 of shape ``(*shape, 8)``, LSB first."""
    _check_codes(codes)
    shifts = _SHIFTS.to(codes.device)
    return (codes.unsqueeze(-1) >> shifts) & 1


# Multiplying eight 0/1 bytes (read as one little-endian int64) by this constant moves byte i
# to bit 56 + i, with no carries between the partial products: a branch-free 8-to-1 pack.
_PACK_MAGIC = 0x0102040810204080


def pack_bits(planes: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`bit_planes`: ``(*shape, 8)`` of 0/1 (int or bool) -> uint8 codes."""
    if planes.shape[-1:] != (BITS_PER_CODE,):
        raise ValueError(f"last dimension must be {BITS_PER_CODE}, got shape {tuple(planes.shape)}")
    as_bytes = (planes.to(torch.uint8) & 1).contiguous()
    if sys.byteorder != "little":
        return (as_bytes << _SHIFTS.to(planes.device)).sum(dim=-1).to(torch.uint8)
    words = as_bytes.view(torch.int64).squeeze(-1)
    return (((words * _PACK_MAGIC) >> 56) & 0xFF).to(torch.uint8)


def popcount(x: torch.Tensor) -> torch.Tensor:
    """Number of set bits of every element of a uint8 tensor (int64, same shape)."""
    _check_codes(x)
    return _POPCOUNT.to(x.device)[x.long()]


def flip_mask(
    codes: torch.Tensor,
    draws: torch.Tensor,
    zero_to_one: float,
    one_to_zero: float,
    protected_mask: int = 0,
) -> torch.Tensor:
    """XOR mask of the bits that flip: uint8, same shape as ``codes``.

    Bit b of element i flips iff ``draws[i, b]`` is below ``zero_to_one`` (if the bit is 0) or
    ``one_to_zero`` (if it is 1), and b is not in ``protected_mask``. Draws are moved to the
    codes' device.
    """
    p01 = check_rate(zero_to_one, "zero_to_one")
    p10 = check_rate(one_to_zero, "one_to_zero")
    _check_codes(codes)
    if not 0 <= protected_mask <= 0xFF:
        raise ValueError(f"protected_mask must be in 0..255, got {protected_mask}")
    if tuple(draws.shape) != (*codes.shape, BITS_PER_CODE):
        raise ValueError(
            f"draws must have shape {(*codes.shape, BITS_PER_CODE)}, got {tuple(draws.shape)}"
        )
    draws = draws.to(codes.device)
    if p01 == p10:  # symmetric: the stored bit values do not matter
        flips = draws < p01
    else:
        is_one = bit_planes(codes).bool()
        flips = draws < torch.where(is_one, p10, p01).to(draws.dtype)
    mask = pack_bits(flips)
    return mask & (0xFF ^ protected_mask)


def _check_codes(codes: torch.Tensor) -> None:
    if codes.dtype != torch.uint8:
        raise TypeError(f"expected a uint8 tensor of codes, got {codes.dtype}")


def sparse_flip_mask(
    shape: tuple[int, ...] | torch.Size,
    value_bits: int,
    rate: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """XOR mask flipping each of the low ``value_bits`` bits of each code with probability ``rate``.

    Exactly i.i.d. Bernoulli(rate) per bit, like :func:`flip_mask`, but it costs time in the
    number of flips rather than the number of bits: the flip count is drawn from
    Binomial(n, rate) and that many distinct bit positions are chosen uniformly. Much faster at
    small rates (e.g. RandBET's fresh pattern every training step); but the same generator state
    at two rates does not give nested patterns, so evaluation sweeps use :func:`flip_mask`.
    """
    index, values = sparse_flips(shape, value_bits, rate, generator)
    return dense_mask(math.prod(shape), index, values).reshape(tuple(shape))


def sparse_flips(
    shape: tuple[int, ...] | torch.Size,
    value_bits: int,
    rate: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sparse_flip_mask` as (sorted distinct flat code indices, their mask bytes): the
    same draws, without the O(codes) mask."""
    check_rate(rate, "bit error rate")
    n_bits = math.prod(shape) * value_bits
    if not n_bits or rate <= 0:
        return torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.uint8)
    if rate > 0.05:  # dense regime: one draw per bit is cheaper than drawing positions
        chosen = torch.nonzero(torch.rand(n_bits, generator=generator) < rate).squeeze(1)
    else:
        trials, probability = torch.tensor(float(n_bits)), torch.tensor(float(rate))
        count = int(torch.binomial(trials, probability, generator))
        chosen = torch.empty(0, dtype=torch.int64)
        while len(chosen) < count:  # distinct positions; few rounds as count << n_bits
            draw = torch.randint(n_bits, (count - len(chosen),), generator=generator)
            chosen = sorted_distinct(torch.cat([chosen, draw]))
    index, bit = _code_and_bit(chosen, value_bits)
    return merge_flips(index, _bit_values(bit))  # sorted: O(flips)


# -- sampling in O(flips) -------------------------------------------------------------------------


NEVER = 2.0
"""The draw of a repeated candidate in :func:`flip_candidates`: above every rate, never flips."""


def ladder_levels(num_bits: int) -> int:
    """Levels of the rate ladder of :func:`flip_candidates` for ``num_bits`` bits: level j of L
    holds the draws in [2^(j-1-L), 2^(j-L)) (level 1 from 0). L grows with log2(num_bits), so
    that the bottom level expects about one candidate and rates near 0 cost nothing."""
    return max(1, math.ceil(math.log2(max(num_bits, 2)))) + 1


def _level_bounds(level: int, levels: int) -> tuple[float, float]:
    low = 0.0 if level == 1 else 2.0 ** (level - 1 - levels)
    return low, 2.0 ** (level - levels)


def _levels_for(rate: float, levels: int) -> int:
    """How many ladder levels hold all draws below ``rate``."""
    if rate <= 0:
        return 0
    level = 1
    while level < levels and _level_bounds(level, levels)[1] < rate:
        level += 1
    return level


SMALL_CHUNK = 64
"""Chunks of at most this many draws take the scalar path of :func:`bernoulli_positions` (and
levels with this few candidates that of :func:`flip_candidates`): the same numbers, with Python
arithmetic where a dozen tensor calls on a handful of elements would cost more."""


def bernoulli_positions(count: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    """Sorted positions in [0, count) each chosen independently with ``probability``.

    Geometric gaps between successes, drawn in chunks from ``generator``: the cost is in the
    number of successes (plus one chunk), not in ``count``.
    """
    positions = _bernoulli(count, probability, generator)
    return torch.tensor(positions, dtype=torch.int64) if isinstance(positions, list) else positions


def _bernoulli(
    count: int, probability: float, generator: torch.Generator
) -> torch.Tensor | list[int]:
    """:func:`bernoulli_positions`, as a list of ints when its chunks are small."""
    if count <= 0 or probability <= 0:
        return []
    if probability >= 1:
        return torch.arange(count, dtype=torch.int64)
    log_miss = math.log1p(-probability)
    expected = count * probability
    chunk = int(expected + 4 * math.sqrt(expected) + 16)
    pieces: list = []
    end = -1
    while True:
        uniforms = torch.rand(chunk, generator=generator, dtype=torch.float64)
        # gap - 1 = floor(log(1 - u) / log(1 - p)) >= 0; truncation is floor for values >= 0,
        # and the clamp keeps int64 safe for tiny p. log1p by torch on both paths; negation,
        # IEEE division, min and truncation are exactly the same in Python.
        logs = uniforms.neg_().log1p_()
        if chunk <= SMALL_CHUNK:
            position, before = end, len(pieces)
            for value in logs.tolist():
                position += int(min(value / log_miss, count)) + 1
                if position >= count:
                    break
                pieces.append(position)
            if len(pieces) - before < chunk:
                return pieces
            end = position
            continue
        gaps = logs.div_(log_miss).clamp_(max=count).to(torch.int64)
        positions = gaps.add_(1).cumsum_(0).add_(end)
        inside = positions[: int(torch.searchsorted(positions, count))]  # sorted: a slice
        pieces.append(inside)
        if len(inside) < chunk:
            break
        end = int(positions[-1])
    return torch.cat(pieces) if len(pieces) > 1 else pieces[0]


SORTED_BELOW = 1 / 2048
"""Below this largest rate :func:`flip_candidates` finds the repeated candidates with one sort
at the end, O(candidates · log); at or above it, with a bit set of all positions, which costs
O(num_bits / 8) to clear but O(1) per candidate. Chosen by measurement
(``benchmarks/bench_sparse_sampling.py``); both give the same
candidates and draws."""


def flip_candidates(num_bits: int, max_rate: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The bits whose uniform draw is below ``max_rate``, with their draws: (positions, draws).

    Sampler version 2. Conceptually every one of ``num_bits`` bits has one U[0, 1) draw, as in
    :func:`uniform_draws`; this draws only the ones below ``max_rate``, level by level up a
    ladder of rates that double (:func:`ladder_levels`): level j adds each bit not drawn yet
    with the conditional probability of a draw in its range. So the cost is O(flips) (about
    2·max_rate·num_bits candidates at most), and the candidates below a rate p do not depend
    on ``max_rate`` ≥ p: a pattern depends only on (seed, p, num_bits), and lower rates give
    subsets. Positions are int64, draws float64. A bit drawn again at a higher level (that
    level's draws are for bits not drawn yet) keeps its first draw, so each level's
    conditional probability stays exact: the repeat is dropped or gets the draw :data:`NEVER`,
    above every rate. The order is unspecified (below :data:`SORTED_BELOW` the candidates of
    several large levels come sorted). One CPU generator seeded with ``seed``: the same result
    on every machine and device.
    """
    check_rate(max_rate, "rate")
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed))
    levels = ladder_levels(num_bits)
    by_sorting = max_rate < SORTED_BELOW
    positions, draws = [], []
    few_positions: list[int] = []  # the small levels' candidates (scalar path), in order
    few_draws: list[float] = []
    few_seen: set[int] = set()
    seen = None  # bit set of the drawn positions, from the first large level on
    for level in range(1, _levels_for(max_rate, levels) + 1):
        low, high = _level_bounds(level, levels)
        chosen = _bernoulli(num_bits, (high - low) / (1 - low), generator)
        if len(chosen) == 0:  # draws nothing from the generator either
            continue
        offsets = torch.rand(len(chosen), generator=generator, dtype=torch.float64)
        if isinstance(chosen, list) and not positions:  # scalar path, the same numbers
            for position, offset in zip(chosen, offsets.tolist()):
                few_positions.append(position)
                if position in few_seen:  # drawn at a lower level: keeps that draw
                    few_draws.append(NEVER)
                else:
                    few_seen.add(position)
                    few_draws.append(offset * (high - low) + low)
            continue
        if isinstance(chosen, list):
            chosen = torch.tensor(chosen, dtype=torch.int64)
        draw = offsets.mul_(high - low).add_(low)  # = low + (high - low) * offset, bit for bit
        if not by_sorting:
            byte, ones = chosen >> 3, _bit_values(chosen & 7)
            if seen is None:
                seen = torch.zeros((num_bits + 7) // 8, dtype=torch.uint8)
                if few_seen:
                    earlier = torch.tensor(sorted(few_seen), dtype=torch.int64)
                    seen.index_add_(0, earlier >> 3, _bit_values(earlier & 7))  # distinct: OR
            if few_seen or positions:  # a bit drawn at a lower level keeps that draw
                repeat = seen.index_select(0, byte).bitwise_and_(ones).bool()
                draw.masked_fill_(repeat, NEVER)
                ones.masked_fill_(repeat, 0)
            seen.index_add_(0, byte, ones)  # distinct bits within a level: sum == OR
        positions.append(chosen)
        draws.append(draw)
    if few_positions:
        positions.insert(0, torch.tensor(few_positions, dtype=torch.int64))
        draws.insert(0, torch.tensor(few_draws, dtype=torch.float64))
    if not positions:
        return torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.float64)
    if len(positions) == 1:  # one large level, or the small levels (repeats: NEVER)
        return positions[0], draws[0]
    if not by_sorting:
        return torch.cat(positions), torch.cat(draws)
    all_positions, all_draws = torch.cat(positions), torch.cat(draws)
    # Level order is draw order: of equal positions, a stable sort keeps the first drawn.
    all_positions, order = torch.sort(all_positions, stable=True)
    first = torch.ones_like(all_positions, dtype=torch.bool)
    torch.ne(all_positions[1:], all_positions[:-1], out=first[1:])
    return all_positions.masked_select(first), all_draws.index_select(0, order.masked_select(first))


def sorted_distinct(values: torch.Tensor) -> torch.Tensor:
    """``torch.unique(values)`` (sorted distinct values) of a CPU integer tensor, by numpy's
    sort, several times faster than torch's on CPU."""
    ordered = np.sort(values.numpy())
    keep = np.ones(len(ordered), dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return torch.from_numpy(ordered[keep])


_ONE = torch.ones((), dtype=torch.uint8)


def _bit_values(bit: torch.Tensor) -> torch.Tensor:
    """``1 << bit`` as uint8 for bit indices 0..7 (any integer dtype)."""
    return torch.bitwise_left_shift(_ONE, bit.to(torch.uint8))


def candidate_flips(
    codes: torch.Tensor,
    value_bits: int,
    positions: torch.Tensor,
    draws: torch.Tensor,
    zero_to_one: float,
    one_to_zero: float,
    allowed_bits: int = 0xFF,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The candidates that flip at these rates, as (flat code indices, uint8 one-bit values):
    code ``index[i]`` gets ``values[i]`` XORed in; a code may appear once per flipped bit.

    Bit position ``pos`` is bit ``pos % value_bits`` of code ``pos // value_bits``; it flips if
    its draw is below ``one_to_zero`` when the stored bit is 1, else below ``zero_to_one``,
    and its bit is in ``allowed_bits``. Repeated positions must carry :data:`NEVER` but once.
    :func:`dense_mask` and :func:`merge_flips` turn the result into a mask.
    """
    p01 = check_rate(zero_to_one, "zero_to_one")
    p10 = check_rate(one_to_zero, "one_to_zero")
    if p01 == p10:
        keep = draws < p01
    else:
        index, bit = _code_and_bit(positions, value_bits)
        stored_codes = codes.reshape(-1).index_select(0, index.to(codes.device)).cpu()
        stored = (stored_codes.to(torch.int64) >> bit) & 1
        keep = draws < torch.where(stored.bool(), p10, p01)
    flipped = positions.masked_select(keep)
    index, bit = _code_and_bit(flipped, value_bits)
    if allowed_bits & ((1 << value_bits) - 1) != (1 << value_bits) - 1:
        allowed = ((allowed_bits >> bit) & 1).bool()
        index, bit = index.masked_select(allowed), bit.masked_select(allowed)
    return index, _bit_values(bit)


def _code_and_bit(positions: torch.Tensor, value_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bit position -> (code index, bit of that code)."""
    if value_bits & (value_bits - 1) == 0:  # 1, 2, 4 or 8 bits: shifts instead of division
        return positions >> (value_bits.bit_length() - 1), positions & (value_bits - 1)
    return positions // value_bits, positions % value_bits


def dense_mask(numel: int, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Flat uint8 XOR mask of ``numel`` codes from sparse (index, values), e.g. those of
    :func:`candidate_flips` (a code once per flipped bit) or of :func:`merge_flips`."""
    mask = torch.zeros(numel, dtype=torch.uint8)
    return mask.index_add_(0, index, values)  # distinct bits of a code: sum == OR


def merge_flips(index: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index, values) with each code once, sorted, its bits ORed: a sparse mask. O(n) when
    ``index`` is sorted already (as from :func:`flip_candidates` at low rates), else a sort."""
    if len(index) > 1 and not bool((index[1:] >= index[:-1]).all()):
        order = torch.from_numpy(np.argsort(index.numpy()))
        index, values = index.index_select(0, order), values.index_select(0, order)
    new = torch.ones_like(index, dtype=torch.bool)
    torch.ne(index[1:], index[:-1], out=new[1:])
    merged, group = index.masked_select(new), new.cumsum(0).sub_(1)
    combined = torch.zeros(len(merged), dtype=torch.uint8)
    return merged, combined.index_add_(0, group, values)  # distinct bits: sum == OR
