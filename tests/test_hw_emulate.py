"""Emulated integer GEMMs and layers: exactness, zero points, bit forcing, faulty products."""

from __future__ import annotations

import os
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bitrobust.errors import BitrobustError
from bitrobust.hw import emulate, kernel
from bitrobust.hw.catalogue import load_multiplier
from bitrobust.hw.emulate import LayerFault, decode, force_bit, integer_gemm, lut_products
from bitrobust.hw.families import exact, mitchell, truncated
from bitrobust.hw.layers import (
    EmulatedConv2d,
    EmulatedLinear,
    affine_qparams,
    quantize_codes,
)
from bitrobust.hw.tables import Multiplier

SIGNS = [False, True]


def codes(shape, generator) -> torch.Tensor:
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)


def int_matmul(act, weight, signed, za=0, zw=0) -> torch.Tensor:
    a = decode(act, signed).to(torch.int64) - za
    w = decode(weight, signed).to(torch.int64) - zw
    return a @ w


PATHS = ["torch-direct", "torch-columns", "kernel-direct", "kernel-columns"]


def use_path(path: str):
    """Patches that make lut_matmul take ``path``: torch or the compiled kernel, each with the
    direct table gather or per-weight columns."""
    engine, gather = path.split("-")
    if engine == "kernel" and kernel.library() is None:
        pytest.skip("the compiled kernel is not available (no C compiler)")
    rows = 0 if gather == "columns" else 10**9
    return (
        mock.patch.dict(os.environ, {kernel.KERNEL_ENV: "1" if engine == "kernel" else "0"}),
        mock.patch.object(emulate, "COLUMN_TABLE_MIN_ROWS", rows),
        mock.patch.object(emulate, "KERNEL_COLUMN_MIN_ROWS", rows),
    )


@pytest.fixture(params=PATHS)
def gather_path(request):
    """Run a test with every implementation of lut_matmul."""
    env, torch_rows, kernel_rows = use_path(request.param)
    with env, torch_rows, kernel_rows:
        yield request.param


# -- integer GEMM ---------------------------------------------------------------------------


@pytest.mark.parametrize("signed", SIGNS)
@pytest.mark.parametrize(("za", "zw"), [(0, 0), (37, 0), (0, 131), (200, 9), (-5, 3)])
def test_exact_table_equals_integer_matmul_with_zero_points(signed, za, zw, gather_path):
    g = torch.Generator().manual_seed(1)
    act, weight = codes((33, 70), g), codes((70, 11), g)
    got = integer_gemm(act, weight, exact(signed), za, zw)
    assert got.dtype == torch.int32
    assert torch.equal(got.to(torch.int64), int_matmul(act, weight, signed, za, zw))


@pytest.mark.parametrize("signed", SIGNS)
def test_approximate_products_follow_the_table_in_operand_order(signed, gather_path):
    m = truncated(4, signed)
    g = torch.Generator().manual_seed(2)
    act, weight = codes((5, 9), g), codes((9, 4), g)
    table = torch.from_numpy(m.table.astype("int64"))
    expected = table[act.long().unsqueeze(2), weight.long().unsqueeze(0)].sum(1)
    assert torch.equal(emulate.lut_matmul(act, weight, m).long(), expected)
    # activation first: an asymmetric table gives a different result with operands swapped
    asym = load_multiplier("bam8u_v0_h3")
    x, w = torch.tensor([[255]], dtype=torch.uint8), torch.tensor([[1]], dtype=torch.uint8)
    assert emulate.lut_matmul(x, w, asym).item() == 0  # weight 1: its row j = 0 is dropped
    assert emulate.lut_matmul(w, x, asym).item() == 248  # weight 255 keeps rows 3..7


def test_chunking_does_not_change_results(monkeypatch):
    g = torch.Generator().manual_seed(3)
    act, weight = codes((50, 20), g), codes((20, 7), g)
    m = mitchell(False)
    whole = emulate.lut_matmul(act, weight, m)
    monkeypatch.setattr(emulate, "CHUNK_ELEMENTS", 300)  # 2 rows per chunk
    assert torch.equal(emulate.lut_matmul(act, weight, m), whole)


# -- bit forcing ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    value=st.integers(-(2**15), 2**16 - 1),
    bit=st.integers(0, 15),
    stuck=st.integers(0, 1),
    signed=st.booleans(),
)
def test_force_bit_sets_exactly_one_bit_of_the_16_bit_pattern(value, bit, stuck, signed):
    value = value if signed else value & 0xFFFF
    if signed and value > 2**15 - 1:
        value -= 2**16
    forced = int(force_bit(torch.tensor([value], dtype=torch.int32), bit, stuck, 16, signed))
    before, after = value & 0xFFFF, forced & 0xFFFF
    assert (after >> bit) & 1 == stuck
    assert before & ~(1 << bit) == after & ~(1 << bit)  # every other bit kept
    assert (-(2**15) <= forced < 2**15) if signed else (0 <= forced < 2**16)
    again = force_bit(torch.tensor([forced], dtype=torch.int32), bit, stuck, 16, signed)
    assert int(again) == forced  # idempotent


@settings(max_examples=100, deadline=None)
@given(value=st.integers(-(2**31), 2**31 - 1), bit=st.integers(0, 31), stuck=st.integers(0, 1))
def test_force_bit_on_the_int32_accumulator(value, bit, stuck):
    forced = int(force_bit(torch.tensor([value], dtype=torch.int32), bit, stuck, 32, True))
    assert ((forced & 0xFFFFFFFF) >> bit) & 1 == stuck
    assert (forced ^ value) & ~(1 << bit) & 0xFFFFFFFF == 0


def test_force_bit_examples_and_errors():
    # signed: setting bit 15 of a small positive product makes it negative
    assert force_bit(torch.tensor([5]), 15, 1, 16, True).item() == 5 - 2**15
    assert force_bit(torch.tensor([5]), 15, 1, 16, False).item() == 5 + 2**15
    assert force_bit(torch.tensor([-1]), 0, 0, 16, True).item() == -2
    with pytest.raises(BitrobustError, match="0..15"):
        force_bit(torch.tensor([1]), 16, 1)
    with pytest.raises(BitrobustError, match="0 or 1"):
        force_bit(torch.tensor([1]), 3, 2)


# -- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize("signed", SIGNS)
@pytest.mark.parametrize(("bit", "stuck"), [(0, 1), (7, 0), (14, 1), (15, 1), (15, 0)])
def test_product_fault_changes_exactly_the_products_of_faulty_macs(signed, bit, stuck, gather_path):
    g = torch.Generator().manual_seed(4)
    act, weight = codes((12, 10), g), codes((10, 6), g)
    mask = torch.rand((10, 6), generator=g) < 0.4
    m = mitchell(signed)
    fault = LayerFault(mask=mask, bit=bit, stuck_at=stuck)
    clean = lut_products(act, weight, m)
    faulty = lut_products(act, weight, m, fault)
    changed = faulty != clean
    assert not changed[:, ~mask].any()  # healthy MACs untouched, for every input row
    expected = force_bit(clean, bit, stuck, 16, signed)
    assert torch.equal(faulty[:, mask], expected[:, mask])
    assert torch.equal(emulate.lut_matmul(act, weight, m, fault), faulty.sum(1, dtype=torch.int32))


def naive_accumulator(products, mask, bit, stuck, segment):
    """Reference: walk each output's chain of partial sums in plain Python."""
    R, K, M = products.shape
    out = torch.zeros((R, M), dtype=torch.int64)
    for r in range(R):
        for m in range(M):
            total = 0
            for start in range(0, K, segment):
                partial = 0
                for k in range(start, min(K, start + segment)):
                    partial = int(products[r, k, m]) + partial
                    partial = (partial + 2**31) % 2**32 - 2**31  # int32
                    if mask[k, m]:
                        pattern = partial & 0xFFFFFFFF
                        pattern = pattern | (1 << bit) if stuck else pattern & ~(1 << bit)
                        partial = (pattern ^ 2**31) - 2**31
                total += partial
            out[r, m] = total
    return out


@pytest.mark.parametrize(("segment", "bit", "stuck"), [(4, 3, 1), (4, 20, 0), (None, 31, 1)])
def test_accumulator_fault_matches_a_naive_partial_sum_chain(segment, bit, stuck, gather_path):
    g = torch.Generator().manual_seed(5)
    act, weight = codes((3, 10), g), codes((10, 5), g)
    mask = torch.rand((10, 5), generator=g) < 0.3
    m = exact(False)
    fault = LayerFault(mask=mask, bit=bit, stuck_at=stuck, site="accumulator", segment=segment)
    products = lut_products(act, weight, m)
    got = emulate.lut_matmul(act, weight, m, fault)
    assert torch.equal(got.long(), naive_accumulator(products, mask, bit, stuck, segment or 10))
    assert torch.equal(lut_products(act, weight, m, fault), products)  # products untouched


def test_layer_fault_validation():
    mask = torch.zeros((2, 2), dtype=torch.bool)
    with pytest.raises(BitrobustError, match="0..15"):
        LayerFault(mask, 16, 1)
    LayerFault(mask, 31, 1, site="accumulator")
    with pytest.raises(BitrobustError, match="site"):
        LayerFault(mask, 1, 1, site="weights")
    with pytest.raises(ValueError, match="fault mask"):
        emulate.lut_matmul(
            torch.zeros((1, 3), dtype=torch.uint8),
            torch.zeros((3, 2), dtype=torch.uint8),
            exact(),
            LayerFault(mask, 1, 1),
        )


# -- layers ----------------------------------------------------------------------------------


def test_affine_quantization():
    scale, zero = affine_qparams(-1.0, 3.0, signed=False)
    assert scale == pytest.approx(4 / 255) and zero == round(1 / scale)
    x = torch.tensor([-1.0, 0.0, 3.0, 10.0])
    q = quantize_codes(x, scale, zero, signed=False)
    assert q.tolist()[:2] == [0, zero] and q.tolist()[2:] == [255, 255]
    assert affine_qparams(0.5, 2.0, signed=False)[1] == 0  # range widened to contain 0
    scale, zero = affine_qparams(-0.5, 2.54, signed=True)
    assert zero == 0 and scale == pytest.approx(0.02)
    q = quantize_codes(torch.tensor([-2.54, -0.02, 0.02]), scale, 0, signed=True)
    assert decode(q, True).tolist() == [-127, -1, 1]


@pytest.mark.parametrize("signed", SIGNS)
def test_emulated_linear_with_exact_table_is_integer_matmul(signed, gather_path):
    torch.manual_seed(6)
    linear = nn.Linear(23, 7)
    layer = EmulatedLinear.from_linear(linear, exact(signed))
    x = torch.randn(9, 23) * 2 + 0.5
    out = layer(x)
    sa, za = affine_qparams(float(x.min()), float(x.max()), signed)
    assert (za != 0) != signed and (layer.weight_zero != 0) != signed
    acc = int_matmul(
        quantize_codes(x, sa, za, signed), layer.weight_codes, signed, za, layer.weight_zero
    )
    expected = acc.to(torch.int32).to(torch.float32) * (sa * layer.weight_scale) + linear.bias
    assert torch.equal(out, expected)
    assert torch.allclose(out, linear(x), atol=0.15)  # and close to the float layer


@pytest.mark.parametrize("signed", SIGNS)
@pytest.mark.parametrize(
    "conv_args",
    [
        {"kernel_size": 3, "padding": 1},
        {"kernel_size": (3, 2), "padding": (2, 1), "stride": 2, "dilation": (1, 2)},
        {"kernel_size": 5, "padding": "valid", "bias": False},
    ],
)
def test_emulated_conv_with_exact_table_is_integer_conv(signed, conv_args, gather_path):
    torch.manual_seed(7)
    conv = nn.Conv2d(3, 4, **conv_args)
    layer = EmulatedConv2d.from_conv(conv, exact(signed))
    x = torch.rand(2, 3, 9, 8) * 3 - 0.7  # asymmetric range: zero point ≠ 0 when unsigned
    out = layer(x)
    sa, za = affine_qparams(float(x.min()), float(x.max()), signed)
    xv = decode(quantize_codes(x, sa, za, signed), signed).double() - za
    wv = layer.weight_values().t().reshape(conv.weight.shape).double()
    acc = F.conv2d(xv, wv, None, conv.stride, conv.padding, conv.dilation)
    expected = acc.to(torch.int32).to(torch.float32) * (sa * layer.weight_scale)
    if conv.bias is not None:
        expected = expected + conv.bias.view(1, -1, 1, 1)
    assert out.shape == conv(x).shape and torch.equal(out, expected)
    assert torch.allclose(out, conv(x), atol=0.2)


@pytest.mark.parametrize("signed", SIGNS)
@pytest.mark.parametrize(
    ("channels", "conv_args"),
    [
        (16, {"kernel_size": 3, "padding": 1}),
        (1, {"kernel_size": 5, "padding": 2}),
        (6, {"kernel_size": (3, 2), "padding": (2, 1), "stride": 2, "dilation": (1, 2)}),
    ],
)
def test_convolution_window_sums_equal_the_row_sums(signed, channels, conv_args):
    """The zero-point term of a convolution comes from a float convolution with a ones kernel:
    exactly the sums of the GEMM rows (integers far below 2^24)."""
    torch.manual_seed(3)
    layer = EmulatedConv2d.from_conv(nn.Conv2d(channels, 8, **conv_args), exact(signed))
    codes = torch.randint(0, 256, (5, channels, 13, 11), dtype=torch.uint8)
    for zero in (0, 77, 200):
        rows = layer.activation_rows(codes, zero)
        values = rows.view(torch.int8) if signed else rows
        expected = values.sum(dim=1, dtype=torch.int32)
        assert torch.equal(layer.activation_sums(codes, zero), expected)


def test_calibrated_range_and_straight_through_gradient():
    torch.manual_seed(8)
    layer = EmulatedLinear.from_linear(nn.Linear(4, 3), exact(False))
    layer.calibrating = True
    layer(torch.tensor([[0.0, 1.0, 2.0, 3.0]]))
    layer(torch.tensor([[-1.0, 0.0, 0.0, 0.0]]))
    layer.calibrating = False
    assert layer.act_range.tolist() == [-1.0, 3.0]
    assert layer.input_qparams(torch.zeros(1, 4)) == affine_qparams(-1.0, 3.0, False)
    x = torch.randn(5, 4, requires_grad=True)
    layer(x).sum().backward()
    assert torch.allclose(x.grad, layer.weight.sum(0).expand(5, 4))


def test_unsupported_convolutions_are_user_errors():
    with pytest.raises(BitrobustError, match="groups=1"):
        EmulatedConv2d.from_conv(nn.Conv2d(4, 4, 3, groups=2), exact())
    with pytest.raises(BitrobustError, match="reflect"):
        EmulatedConv2d.from_conv(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"), exact())
    with pytest.raises(BitrobustError, match="padding='same'"):
        EmulatedConv2d.from_conv(nn.Conv2d(1, 1, 3, padding="same"), exact())


# -- fast paths against a slow reference -------------------------------------------------------


def wrap(values: np.ndarray, bits: int) -> np.ndarray:
    """Integers read back as ``bits``-bit two's complement."""
    return (values + 2 ** (bits - 1)) % 2**bits - 2 ** (bits - 1)


def forced(values: np.ndarray, bit: int, stuck: int, bits: int, signed: bool) -> np.ndarray:
    """Set or clear ``bit`` of each value's ``bits``-bit pattern, read back the same way."""
    pattern = values % 2**bits
    pattern = pattern | (1 << bit) if stuck else pattern & ~(1 << bit)
    return wrap(pattern, bits) if signed else pattern


def reference_gemm(act, weight, table, signed, za, zw, fault) -> np.ndarray:
    """Σ_k (a − z_a)(w − z_w) the slow way: every product, every partial sum, in int64."""
    a, w = act.numpy().astype(np.int64), weight.numpy().astype(np.int64)
    K, M = w.shape
    products = table.astype(np.int64)[a[:, :, None], w[None, :, :]]  # R×K×M
    mask = np.zeros((K, M), bool) if fault is None else fault.mask.numpy()
    keep = np.ones((K, M), np.int64)
    if fault is not None and fault.bypass:
        products[:, mask] = 0
        keep = (~mask).astype(np.int64)
    elif fault is not None and fault.site == "product":
        products[:, mask] = forced(products[:, mask], fault.bit, fault.stuck_at, 16, signed)
    if fault is not None and fault.site == "accumulator" and not fault.bypass:
        segment = fault.segment or K
        raw = np.zeros((len(a), M), np.int64)
        for start in range(0, K, segment):
            partial = np.zeros_like(raw)
            for k in range(start, min(K, start + segment)):
                partial = wrap(partial + products[:, k], 32)
                partial[:, mask[k]] = forced(
                    partial[:, mask[k]], fault.bit, fault.stuck_at, 32, True
                )
            raw += partial
    else:
        raw = products.sum(axis=1)
    av = decode(act, signed).numpy().astype(np.int64)
    wv = decode(weight, signed).numpy().astype(np.int64)
    corrections = zw * (av @ keep) + za * (wv * keep).sum(0) - za * zw * keep.sum(0)
    return wrap(raw - corrections, 32)


@st.composite
def gemm_cases(draw):
    """A random table (some rows zero), operands concentrated on a few patterns, zero points,
    and no fault, a product, accumulator or bypassed fault at a random bit and stuck value."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    signed = draw(st.booleans())
    R, K, M = draw(st.integers(1, 24)), draw(st.integers(1, 40)), draw(st.integers(1, 20))
    low, high = (-(2**15), 2**15) if signed else (0, 2**16)
    table = rng.integers(low, high, (256, 256))
    frequent = rng.integers(0, 256, 3)
    for code in frequent[: draw(st.integers(0, 3))]:
        table[code] = 0  # e.g. the zero activation: lets the kernel skip it in chains
    share = draw(st.sampled_from([0.0, 0.5, 0.9, 1.0]))
    act = np.where(
        rng.random((R, K)) < share, rng.choice(frequent, (R, K)), rng.integers(0, 256, (R, K))
    )
    weight = rng.integers(0, 256, (K, M))
    za, zw = draw(st.integers(-128, 255)), draw(st.integers(-128, 255))
    kind = draw(st.sampled_from(["none", "product", "accumulator", "bypass"]))
    fault = None
    if kind != "none":
        mask = torch.from_numpy(rng.random((K, M)) < draw(st.sampled_from([0.05, 0.3, 1.0])))
        site = "accumulator" if kind == "accumulator" else "product"
        bit = draw(st.integers(0, 31 if site == "accumulator" else 15))
        segment = draw(st.one_of(st.none(), st.integers(1, K)))
        fault = LayerFault(
            mask, bit, draw(st.integers(0, 1)), site, segment, bypass=kind == "bypass"
        )
    multiplier = Multiplier("random", table, signed)
    as_codes = lambda x: torch.from_numpy(x.astype(np.uint8))  # noqa: E731
    return multiplier, as_codes(act), as_codes(weight), za, zw, fault


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=60, deadline=None)
@given(case=gemm_cases())
def test_every_path_equals_the_slow_reference_bit_for_bit(path, case):
    multiplier, act, weight, za, zw, fault = case
    expected = reference_gemm(act, weight, multiplier.table, multiplier.signed, za, zw, fault)
    env, torch_rows, kernel_rows = use_path(path)
    with env, torch_rows, kernel_rows:
        got = integer_gemm(act, weight, multiplier, za, zw, fault)
    assert got.dtype == torch.int32 and got.shape == expected.shape
    assert np.array_equal(got.numpy().astype(np.int64), expected)


def test_kernel_skips_the_most_frequent_pattern_exactly():
    """Saturated activations (all one nonzero pattern) under every fault site."""
    if kernel.library() is None:
        pytest.skip("the compiled kernel is not available (no C compiler)")
    g = torch.Generator().manual_seed(9)
    act = torch.full((40, 48), 255, dtype=torch.uint8)
    act[3, 5] = 7  # one row differs in one chain
    weight = codes((48, 12), g)
    mask = torch.rand((48, 12), generator=g) < 0.3
    m = mitchell(False)
    assert emulate.most_frequent_pattern(act) == 255
    for fault in (
        None,
        LayerFault(mask, 3, 1),
        LayerFault(mask, 9, 0, site="accumulator", segment=16),
        LayerFault(mask, 30, 1, site="accumulator"),
    ):
        expected = reference_gemm(act, weight, m.table, False, 0, 0, fault)
        got = emulate.lut_matmul(act, weight, m, fault)
        assert np.array_equal(got.numpy().astype(np.int64), expected)
