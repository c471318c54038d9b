"""Bit-level helpers: planes, popcount, seeds, draws and flip masks."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bitrobust.bits import (
    bit_planes,
    flip_mask,
    pack_bits,
    popcount,
    protected_mask,
    stable_seed,
    uniform_draws,
    value_mask,
)
from bitrobust.errors import BitrobustError

byte_lists = st.lists(st.integers(0, 255), min_size=0, max_size=64)
rates = st.floats(0.0, 1.0)


@given(byte_lists)
def test_bit_planes_lsb_first_and_pack_inverts(values):
    codes = torch.tensor(values, dtype=torch.uint8)
    planes = bit_planes(codes)
    assert planes.shape == (len(values), 8)
    for value, row in zip(values, planes.tolist(), strict=True):
        assert row == [(value >> b) & 1 for b in range(8)]
    assert torch.equal(pack_bits(planes), codes)


@given(byte_lists)
def test_popcount_matches_python(values):
    codes = torch.tensor(values, dtype=torch.uint8)
    assert popcount(codes).tolist() == [bin(v).count("1") for v in values]


def test_protected_and_value_masks():
    assert protected_mask(8) == 0x00
    assert protected_mask(4) == 0xF0
    assert protected_mask(2) == 0xFC
    assert value_mask(4) == 0x0F
    for bad in (1, 9):
        with pytest.raises(BitrobustError, match="bits"):
            protected_mask(bad)


def test_stable_seed_is_fixed_and_63_bit():
    # A golden value: the seed must not change across machines, runs or releases.
    assert stable_seed(100, "conv1.weight") == stable_seed(100, "conv1.weight")
    assert stable_seed(100, "conv1.weight") == 7930883831196115533
    assert stable_seed(np.int64(100), "conv1.weight") == stable_seed(100, "conv1.weight")
    assert stable_seed(100, "conv1.weight") != stable_seed(101, "conv1.weight")
    assert stable_seed(100, "a") != stable_seed(100, "b")
    assert all(0 <= stable_seed(i) < 2**63 for i in range(100))


def test_uniform_draws_reproducible_shape_and_range():
    a = uniform_draws((3, 5), seed=7)
    assert a.shape == (3, 5, 8) and a.dtype == torch.float32
    assert torch.equal(a, uniform_draws(torch.Size([3, 5]), seed=7))
    assert not torch.equal(a, uniform_draws((3, 5), seed=8))
    assert bool((a >= 0).all()) and bool((a < 1).all())
    assert uniform_draws((0, 4), seed=1).shape == (0, 4, 8)


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.integers(0, 255), st.lists(rates, min_size=8, max_size=8)), max_size=16),
    rates,
    rates,
    st.integers(0, 255),
)
def test_flip_mask_matches_reference(rows, p01, p10, protected):
    codes = torch.tensor([code for code, _ in rows], dtype=torch.uint8)
    draws = torch.tensor([d for _, d in rows], dtype=torch.float32).reshape(len(rows), 8)
    mask = flip_mask(codes, draws, p01, p10, protected)
    for (code, row), got in zip(rows, mask.tolist(), strict=True):
        expected = 0
        for b in range(8):
            rate = p10 if (code >> b) & 1 else p01
            if np.float32(row[b]) < np.float32(rate) and not (protected >> b) & 1:
                expected |= 1 << b
        assert got == expected


def test_flip_mask_extremes_and_protection():
    codes = torch.randint(0, 16, (1000,), dtype=torch.uint8)
    draws = uniform_draws(codes.shape, seed=0)
    assert int(flip_mask(codes, draws, 0.0, 0.0).sum()) == 0
    everything = flip_mask(codes, draws, 1.0, 1.0, protected_mask(4))
    assert bool((everything == 0x0F).all())


def test_flip_mask_rejects_bad_rates():
    codes = torch.zeros(4, dtype=torch.uint8)
    draws = uniform_draws(codes.shape, seed=0)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(BitrobustError, match="zero_to_one"):
            flip_mask(codes, draws, bad, 0.1)
        with pytest.raises(BitrobustError, match="one_to_zero"):
            flip_mask(codes, draws, 0.1, bad)
    with pytest.raises(ValueError, match="shape"):
        flip_mask(codes, draws[:2], 0.1, 0.1)
    with pytest.raises(TypeError):
        flip_mask(codes.long(), draws, 0.1, 0.1)


@pytest.mark.parametrize("value_bits,rate", [(8, 0.01), (4, 0.2), (2, 0.5), (8, 1.0), (8, 0.0)])
def test_sparse_flip_mask_rate_and_protected_bits(value_bits, rate):
    """Sparse sampling: flip count within 5 sigma of n·p, never outside the low value bits."""
    from bitrobust.bits import popcount, sparse_flip_mask, sparse_flips

    shape = (300, 70)
    mask = sparse_flip_mask(shape, value_bits, rate, torch.Generator().manual_seed(3))
    assert mask.shape == shape and mask.dtype == torch.uint8
    assert not bool((mask & (0xFF << value_bits) & 0xFF).any())
    n = 300 * 70 * value_bits
    flips = int(popcount(mask).sum())
    assert abs(flips - n * rate) <= 5 * (n * rate * (1 - rate)) ** 0.5 + 1e-9
    again = sparse_flip_mask(shape, value_bits, rate, torch.Generator().manual_seed(3))
    assert torch.equal(mask, again)
    index, values = sparse_flips(shape, value_bits, rate, torch.Generator().manual_seed(3))
    flat = mask.reshape(-1)  # the same draws, kept sparse: sorted indices of the nonzero bytes
    assert torch.equal(index, torch.nonzero(flat).squeeze(1)) and torch.equal(values, flat[index])


def test_sparse_flip_mask_is_uniform_over_bit_positions():
    from bitrobust.bits import bit_planes, sparse_flip_mask

    mask = sparse_flip_mask((20000,), 8, 0.05, torch.Generator().manual_seed(0))
    per_bit = bit_planes(mask).float().mean(dim=0)
    assert torch.all((per_bit - 0.05).abs() < 0.01)
