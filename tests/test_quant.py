"""Quantization schemes: round-trip error, code layout, edge cases, models and fake quantization."""

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bitrobust.errors import BitrobustError
from bitrobust.quant import (
    BINARY,
    EPSILON,
    PRESETS,
    QuantizedModel,
    QuantizedTensor,
    QuantScheme,
    fake_quantize,
    quantize,
    quantize_model,
)


@st.composite
def schemes(draw):
    per_layer = draw(st.booleans())
    symmetric = draw(st.booleans()) if per_layer else True
    w_max = draw(st.none() | st.sampled_from([0.05, 0.1, 0.5, 1.0, 2.0]))
    return QuantScheme(
        bits=draw(st.integers(2, 8)),
        per_layer=per_layer,
        symmetric=symmetric,
        unsigned=draw(st.booleans()),
        rounding=draw(st.booleans()),
        w_max=w_max,
    )


weights = st.lists(
    st.floats(-3.0, 3.0, allow_subnormal=False, width=32), min_size=1, max_size=40
).map(lambda xs: torch.tensor(xs, dtype=torch.float32))


@settings(max_examples=300, deadline=None)
@given(schemes(), weights)
def test_round_trip_error_within_half_step_or_step(scheme, w):
    qt = quantize(w, scheme)
    target = torch.clamp(w, qt.low, qt.high)  # inside the clamp range
    error = (qt.dequantize() - target).abs().max()
    step = qt.step
    bound = step / 2 if scheme.rounding else step
    slack = 1e-5 * step + 4 * torch.finfo(torch.float32).eps * target.abs().max()
    assert error <= bound + slack, (scheme.name, error, step)
    if scheme.per_layer and scheme.symmetric and scheme.w_max is None:
        assert torch.equal(target, w)  # the adaptive range covers every weight


@settings(max_examples=200, deadline=None)
@given(schemes(), weights)
def test_codes_never_use_protected_bits(scheme, w):
    qt = quantize(w * 100, scheme)  # far outside every range, to exercise the clamps
    assert qt.codes.dtype == torch.uint8 and qt.codes.shape == w.shape
    assert int((qt.codes & qt.protected_mask).count_nonzero()) == 0
    assert qt.protected_mask == (0xFF << scheme.bits) & 0xFF


FIXED_POINT = [name for name in PRESETS if not QuantScheme.preset(name).affine]


@settings(max_examples=150, deadline=None)
@given(
    schemes() | st.sampled_from([BINARY, *(QuantScheme.preset(name) for name in PRESETS)]), weights
)
def test_decoding_by_table_is_the_elementwise_decode(scheme, w):
    """Many codes are decoded through a 256-entry table: bit for bit the direct arithmetic."""
    from bitrobust import quant

    qt = quantize(w, scheme)
    codes = torch.randint(0, 256, (quant.DECODE_BY_TABLE_ABOVE + 77,), dtype=torch.uint8)
    by_table = qt.decode(codes)
    assert "_table" in qt.__dict__
    direct = qt._decode_values(codes)
    assert by_table.dtype == direct.dtype == torch.float32
    assert torch.equal(by_table.view(torch.int32), direct.view(torch.int32))  # -0.0 too
    again = qt.with_codes(qt.codes ^ 1)  # shares the table: same scheme, scale and range
    assert again.__dict__["_table"] is qt.__dict__["_table"]
    assert torch.equal(again.decode(codes[:5]), direct[:5])


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("preset", FIXED_POINT)
def test_every_code_dequantizes_inside_range(preset, bits):
    scheme = QuantScheme.preset(preset, bits=bits)
    qt = quantize(torch.linspace(-0.3, 0.7, 256), scheme)
    all_codes = torch.arange(256, dtype=torch.uint8)  # including codes with protected bits set
    values = qt.with_codes(all_codes).dequantize()
    assert bool(torch.isfinite(values).all())
    assert bool((values >= qt.low).all()) and bool((values <= qt.high).all())
    # bits m..7 are ignored on decode: a code and its low m bits give the same value
    low_bits = all_codes & (0xFF ^ qt.protected_mask)
    assert torch.equal(values, qt.with_codes(low_bits).dequantize())


def test_signed_twos_complement_decode():
    scheme = QuantScheme(bits=4, unsigned=False, rounding=True)
    qt = quantize(torch.tensor([-0.7, 0.7, 0.0, 0.1, 0.2, 0.3]), scheme)
    assert qt.codes[:2].tolist() == [0b1001, 0b0111]  # -7 and +7 in 4-bit two's complement
    codes = torch.tensor([0b0000, 0b0001, 0b0111, 0b1000, 0b1001, 0b1111], dtype=torch.uint8)
    assert qt.with_codes(codes).integer_values().tolist() == [0, 1, 7, -8, -7, -1]
    # -8 * Δ lies outside ±q_max and is clamped, as in the paper
    assert qt.with_codes(codes).dequantize()[3] == qt.low
    three_bit = quantize(torch.tensor([0.3, 0.1, 0.0]), QuantScheme(bits=3, unsigned=False))
    codes3 = torch.tensor([0b011, 0b100, 0b111], dtype=torch.uint8)
    assert three_bit.with_codes(codes3).integer_values().tolist() == [3, -4, -1]


def test_offset_binary_layout():
    scheme = QuantScheme(bits=8, unsigned=True, rounding=True)
    qt = quantize(torch.tensor([-1.0, 0.0, 1.0]), scheme)
    assert qt.codes.tolist() == [1, 128, 255]
    assert qt.integer_values().tolist() == [-127, 0, 127]


def test_paper_worked_example_rquant():
    # papers.md §1.2: RQuant, 8 bit, range [-0.08, 0.1]: Δ = 1.001/127, codes 1 .. 255
    qt = quantize(torch.tensor([-0.08, 0.1]), QuantScheme.preset("rquant"))
    assert qt.codes.tolist() == [1, 255]
    assert math.isclose(float(qt.scale), 1.001 / 127, rel_tol=1e-6)
    assert torch.allclose(qt.dequantize(), torch.tensor([-0.08, 0.1]))
    assert math.isclose(float(qt.low), -0.08, rel_tol=1e-6)


def test_scale_formulas():
    w = torch.tensor([-0.2, 0.05])
    per_layer = quantize(w, QuantScheme(bits=8))
    assert math.isclose(float(per_layer.scale), (0.2 + EPSILON) / 127, rel_tol=1e-6)
    clipped = quantize(w, QuantScheme(bits=8, w_max=0.1))
    assert math.isclose(float(clipped.scale), 0.1 / 127, rel_tol=1e-6)
    assert math.isclose(float(clipped.dequantize()[0]), -0.1, rel_tol=1e-6)
    normal = quantize(w, QuantScheme.preset("normal", bits=4))
    assert math.isclose(float(normal.scale), (1 + EPSILON) / 7, rel_tol=1e-6)
    assert float(normal.high) == 1.0


def test_truncation_is_the_papers_integer_cast():
    # two's complement truncates toward zero; offset binary casts after the offset (floor)
    # 3 bit, max|w| = 1: Δ = 1.001 / 3, so w / Δ = -2.997, -1.4985, 1.4985
    w = torch.tensor([-1.0, -0.5, 0.5])
    signed = quantize(w, QuantScheme(bits=3, unsigned=False, rounding=False))
    assert signed.integer_values().tolist() == [-2, -1, 1]
    unsigned = quantize(w, QuantScheme(bits=3, rounding=False))
    assert unsigned.integer_values().tolist() == [-3, -2, 1]
    rounded = quantize(w, QuantScheme(bits=3))
    assert rounded.integer_values().tolist() == [-3, -1, 1]


@pytest.mark.parametrize("preset", ["rquant", "perlayer-asym", "perlayer-asym-unsigned"])
@pytest.mark.parametrize("value", [0.0, 0.37, -2.0])
def test_asymmetric_constant_tensor(preset, value):
    constant = torch.full((16,), value)
    qt = quantize(constant, QuantScheme.preset(preset, bits=4))
    assert torch.equal(qt.low, qt.high) and float(qt.low) == float(constant[0])
    assert torch.equal(qt.dequantize(), constant)
    every_code = qt.with_codes(torch.arange(16, dtype=torch.uint8)).dequantize()
    assert torch.equal(every_code, constant)  # no NaN, whatever the bits


@pytest.mark.parametrize("preset", PRESETS)
def test_zero_size_tensors(preset):
    scheme = QuantScheme.preset(preset)
    for shape in [(0,), (3, 0)]:
        qt = quantize(torch.zeros(shape), scheme)
        assert qt.codes.shape == shape and qt.dequantize().shape == shape
        assert bool(torch.isfinite(qt.scale))


def test_scheme_validation_and_names():
    for bad in (1, 9, 0, 2.0, True):
        with pytest.raises(BitrobustError, match="bits"):
            QuantScheme(bits=bad)
    with pytest.raises(BitrobustError, match="per_layer"):
        QuantScheme(per_layer=False, symmetric=False)
    for bad in (0.0, -1.0, float("inf"), "0.1"):
        with pytest.raises(BitrobustError, match="w_max"):
            QuantScheme(w_max=bad)
    with pytest.raises(BitrobustError, match="unknown quantization preset 'foo'"):
        QuantScheme.preset("foo")
    with pytest.raises(BitrobustError, match="bits"):
        QuantScheme.preset("rquant", bits=9)
    assert QuantScheme.preset("rquant", w_max=0.1).name == "q8-perlayer-asym-unsigned-round-wmax0.1"
    assert QuantScheme.preset("normal", bits=4).name == "q4-global-sym-unsigned-trunc-wmax1.0"
    assert QuantScheme(per_layer=False) == QuantScheme(per_layer=False, w_max=1.0)


@settings(max_examples=100)
@given(schemes())
def test_scheme_serialisation_round_trips(scheme):
    assert QuantScheme.from_dict(json.loads(json.dumps(scheme.to_dict()))) == scheme
    assert QuantScheme.from_name(scheme.name) == scheme


def test_scheme_from_bad_content():
    with pytest.raises(BitrobustError, match="unknown quantization scheme field"):
        QuantScheme.from_dict({"bits": 8, "colour": "red"})
    with pytest.raises(BitrobustError, match="mapping"):
        QuantScheme.from_dict([8])
    with pytest.raises(BitrobustError, match="true or false"):
        QuantScheme.from_dict({"rounding": "yes"})
    with pytest.raises(BitrobustError, match="not a quantization scheme name"):
        QuantScheme.from_name("q8-sideways")
    assert QuantScheme.from_name("q8-perlayer-sym-unsigned-round-wmax1e-05").w_max == 1e-05


def test_presets_are_the_poster_ladder():
    s = {name: QuantScheme.preset(name, bits=8) for name in PRESETS}
    assert (s["perlayer"].symmetric, s["perlayer"].unsigned, s["perlayer"].rounding) == (
        True,
        False,
        False,
    )
    assert s["perlayer-asym"] == QuantScheme(symmetric=False, unsigned=False, rounding=False)
    assert s["perlayer-asym-unsigned"] == QuantScheme(symmetric=False, rounding=False)
    assert s["rquant"] == QuantScheme(symmetric=False)
    assert s["normal"] == QuantScheme(per_layer=False, rounding=False, w_max=1.0)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4, 3)
        self.frozen = nn.Linear(3, 3)
        self.frozen.requires_grad_(False)

    def forward(self, x):
        x = self.gn(self.bn(self.conv(x))).amax(dim=(2, 3))
        return self.frozen(self.fc(x))


def test_quantized_model_covers_every_parameter_frozen_ones_included():
    """Frozen parameters live in the same memory: they are quantized (and so get faults)."""
    net = _Net()
    scheme = QuantScheme.preset("rquant", bits=4)
    qmodel = quantize_model(net, scheme)
    stored = [name for name, _ in net.named_parameters()]
    assert list(qmodel.tensors) == stored
    assert {"conv.bias", "bn.weight", "gn.weight", "fc.bias", "frozen.weight"} <= set(stored)
    assert not any("running" in name for name in qmodel.tensors)  # buffers are not stored
    assert qmodel.num_bits() == 4 * sum(net.get_parameter(n).numel() for n in stored)

    params = qmodel.dequantized()
    x = torch.randn(2, 1, 5, 5)
    out = torch.func.functional_call(net, params, (x,))
    assert out.shape == (2, 3)
    for name, value in params.items():
        assert value.shape == net.get_parameter(name).shape


def test_quantized_model_with_codes_is_a_new_object():
    qmodel = QuantizedModel.from_module(nn.Linear(3, 2), QuantScheme(bits=8))
    before = qmodel.tensors["weight"].codes.clone()
    changed = qmodel.with_codes({"weight": before ^ 1})
    assert changed is not qmodel
    assert torch.equal(qmodel.tensors["weight"].codes, before)
    assert torch.equal(changed.tensors["weight"].codes, before ^ 1)
    assert changed.tensors["bias"] is qmodel.tensors["bias"]
    with pytest.raises(BitrobustError, match="nope"):
        qmodel.with_codes({"nope": before})


@pytest.mark.parametrize("preset", PRESETS)
def test_fake_quantize_forward_and_straight_through_gradient(preset):
    scheme = QuantScheme.preset(preset, bits=4 if preset in FIXED_POINT else 8)
    x = torch.randn(20, requires_grad=True)
    y = fake_quantize(x, scheme)
    assert torch.equal(y.detach(), quantize(x, scheme).dequantize())
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_quantized_tensor_with_codes_checks_shape():
    qt = quantize(torch.randn(4), QuantScheme())
    assert isinstance(qt.with_codes(qt.codes ^ 1), QuantizedTensor)
    with pytest.raises(ValueError, match="shape"):
        qt.with_codes(qt.codes[:2])


@pytest.mark.parametrize("signed", [False, True])
def test_affine_operand_formats(signed):
    """The 8-bit operand formats of multipliers: zero is exact, codes decode as (code − zero)·Δ
    without a clamp, signed codes stay in −127..127, and names round-trip."""
    scheme = QuantScheme.preset("int8-symmetric" if signed else "uint8-affine")
    assert scheme.affine and scheme.protected_mask == 0 and scheme.unsigned is not signed
    assert QuantScheme.from_name(scheme.name) == scheme
    w = torch.cat([torch.linspace(0.2, 1.7, 40), torch.zeros(1)])  # all positive, plus 0
    qt = quantize(w, scheme)
    values = qt.integer_values()
    assert int(values[-1]) == 0 and float(qt.dequantize()[-1]) == 0.0
    assert torch.allclose(qt.dequantize(), w, atol=float(qt.scale) / 2 + 1e-7)
    all_codes = torch.arange(256, dtype=torch.uint8)
    expected = torch.arange(256)
    expected = torch.where(expected >= 128, expected - 256, expected) if signed else expected
    expected = expected - qt.zero_point
    assert torch.equal(qt.decode(all_codes), (expected * qt.scale).to(torch.float32))
    if signed:
        assert int(values.min()) >= -127 and int(values.max()) <= 127
    for bad in ({"bits": 4}, {"rounding": False}, {"per_layer": False}):
        with pytest.raises(BitrobustError, match="affine"):
            QuantScheme(**{"affine": True, "symmetric": signed, "unsigned": not signed, **bad})
    with pytest.raises(BitrobustError, match="8-bit"):
        QuantScheme.preset("uint8-affine", bits=4)
