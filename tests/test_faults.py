"""Random bit errors: rates, protection, nesting, reproducibility and independence."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bitrobust.bits import bit_planes, stable_seed
from bitrobust.errors import BitrobustError
from bitrobust.faults import ComposedFaults, FaultModel, FaultPattern, RandomBitErrors
from bitrobust.quant import QuantizedModel, QuantScheme, quantize, quantize_model


def _qmodel(bits: int = 8, **shapes: tuple[int, ...]) -> QuantizedModel:
    scheme = QuantScheme.preset("rquant", bits=bits)
    generator = torch.Generator().manual_seed(0)
    tensors = {
        name: quantize(torch.randn(shape, generator=generator), scheme)
        for name, shape in shapes.items()
    }
    return QuantizedModel(tensors=tensors, scheme=scheme)


def _within_binomial(count: int, trials: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - trials * p) <= sigmas * math.sqrt(trials * p * (1 - p)) + 1


def test_flip_rates_per_direction_within_binomial_bounds():
    qmodel = _qmodel(bits=8, a=(300, 100), b=(50_000,))
    model = RandomBitErrors(zero_to_one=0.02, one_to_zero=0.2)
    pattern = model.sample(qmodel, seed=3)
    ones = flipped_ones = zeros = flipped_zeros = 0
    for name, qt in qmodel.tensors.items():
        bits = bit_planes(qt.codes).bool()
        flips = bit_planes(pattern.masks[name]).bool()
        ones += int(bits.sum())
        zeros += int((~bits).sum())
        flipped_ones += int((flips & bits).sum())
        flipped_zeros += int((flips & ~bits).sum())
    assert _within_binomial(flipped_zeros, zeros, 0.02)
    assert _within_binomial(flipped_ones, ones, 0.2)
    assert pattern.num_flips() == flipped_zeros + flipped_ones


@pytest.mark.parametrize("bits", [2, 4, 7])
def test_protected_bits_never_flip_even_at_rate_one(bits):
    qmodel = _qmodel(bits=bits, w=(1000,))
    pattern = RandomBitErrors(1.0).sample(qmodel, seed=0)
    mask = pattern.masks["w"]
    assert bool((mask == (1 << bits) - 1).all())  # every used bit flips, no other
    faulty = pattern.apply(qmodel)
    assert int((faulty.tensors["w"].codes & faulty.tensors["w"].protected_mask).sum()) == 0
    assert qmodel.num_bits() == bits * 1000 == pattern.num_flips()


def test_rate_zero_flips_nothing():
    qmodel = _qmodel(w=(100,))
    faulty = RandomBitErrors(0.0)(qmodel, seed=1)
    assert torch.equal(faulty.tensors["w"].codes, qmodel.tensors["w"].codes)


@settings(max_examples=30, deadline=None)
@given(
    st.floats(0, 1),
    st.floats(0, 1),
    st.floats(0, 1),
    st.integers(0, 2**40),
)
def test_lower_rate_flips_are_a_subset_per_direction(low, high, other, seed):
    low, high = sorted((low, high))
    qmodel = _qmodel(bits=6, w=(40, 10))
    for lo_model, hi_model in [
        (
            RandomBitErrors(zero_to_one=low, one_to_zero=other),
            RandomBitErrors(zero_to_one=high, one_to_zero=other),
        ),
        (
            RandomBitErrors(zero_to_one=other, one_to_zero=low),
            RandomBitErrors(zero_to_one=other, one_to_zero=high),
        ),
        (RandomBitErrors(low), RandomBitErrors(high)),
    ]:
        lo = lo_model.sample(qmodel, seed).masks["w"]
        hi = hi_model.sample(qmodel, seed).masks["w"]
        assert torch.equal(lo & hi, lo)


def test_same_seed_same_pattern_different_seed_different():
    qmodel = _qmodel(w=(200,), b=(10,))
    model = RandomBitErrors(0.1)
    a, b, c = (model.sample(qmodel, s) for s in (5, 5, 6))
    for name in qmodel.tensors:
        assert torch.equal(a.masks[name], b.masks[name])
    assert not torch.equal(a.masks["w"], c.masks["w"])
    assert RandomBitErrors(0.1).sample(qmodel, 5).masks["w"].equal(a.masks["w"])  # fresh object


def test_tensor_pattern_is_independent_of_other_tensors():
    model = RandomBitErrors(0.05)
    alone = model.sample(_qmodel(w=(30, 7)), seed=11).masks["w"]
    first = model.sample(_qmodel(w=(30, 7), z=(1000,)), seed=11).masks["w"]
    last = model.sample(_qmodel(x=(5, 5), y=(3,), w=(30, 7)), seed=11).masks["w"]
    assert torch.equal(alone, first) and torch.equal(alone, last)


def test_apply_returns_new_model_and_flips_codes():
    qmodel = quantize_model(nn.Linear(10, 5), QuantScheme.preset("rquant"))
    before = {name: qt.codes.clone() for name, qt in qmodel.tensors.items()}
    pattern = RandomBitErrors(0.3).sample(qmodel, seed=2)
    faulty = pattern.apply(qmodel)
    assert faulty is not qmodel
    for name, qt in qmodel.tensors.items():
        assert torch.equal(qt.codes, before[name])
        assert torch.equal(faulty.tensors[name].codes, before[name] ^ pattern.masks[name])
    assert pattern.num_flips() > 0


def test_pattern_apply_checks_names_and_protected_bits():
    qmodel = _qmodel(bits=4, w=(4,))
    with pytest.raises(BitrobustError, match="unknown parameter"):
        FaultPattern({"nope": torch.zeros(4, dtype=torch.uint8)}).apply(qmodel)
    with pytest.raises(ValueError, match="protected"):
        FaultPattern({"w": torch.full((4,), 0x10, dtype=torch.uint8)}).apply(qmodel)


def test_rates_are_validated():
    for bad in (-0.01, 1.01, float("nan"), "high"):
        with pytest.raises(BitrobustError, match="bit_error_rate"):
            RandomBitErrors(bad)
        with pytest.raises(BitrobustError, match="zero_to_one"):
            RandomBitErrors(zero_to_one=bad)
        with pytest.raises(BitrobustError, match="one_to_zero"):
            RandomBitErrors(0.1, one_to_zero=bad)
    with pytest.raises(BitrobustError):
        RandomBitErrors()
    with pytest.raises(BitrobustError, match="seed"):
        RandomBitErrors(0.1).sample(_qmodel(w=(3,)), seed=1.5)


def test_names_and_overrides():
    assert RandomBitErrors(0.01).name == "random_bit_errors(p01=0.01,p10=0.01,sampler=2)"
    model = RandomBitErrors(0.01, one_to_zero=0.002)
    assert (model.zero_to_one, model.one_to_zero) == (0.01, 0.002)
    assert RandomBitErrors(zero_to_one=0.3).name == "random_bit_errors(p01=0.3,p10=0.0,sampler=2)"
    assert RandomBitErrors(0.1, layers=["fc1"], bits=[-1], sampler=1).name == (
        "random_bit_errors(p01=0.1,p10=0.1,layers=fc1,bits=-1,sampler=1)"
    )
    assert RandomBitErrors(0.01) == RandomBitErrors(zero_to_one=0.01, one_to_zero=0.01)
    assert len({RandomBitErrors(0.01), RandomBitErrors(0.01), RandomBitErrors(0.02)}) == 2
    assert isinstance(RandomBitErrors(0.1), FaultModel)


def test_composition_applies_in_order_and_is_reproducible():
    qmodel = _qmodel(w=(500,))
    a, b = RandomBitErrors(0.05), RandomBitErrors(zero_to_one=0.5, one_to_zero=0.0)
    both = a + b
    assert isinstance(both, ComposedFaults)
    assert both.name == f"{a.name}+{b.name}"
    assert (both + a).name == f"{a.name}+{b.name}+{a.name}"
    pattern = both.sample(qmodel, seed=9)
    assert torch.equal(pattern.masks["w"], both.sample(qmodel, seed=9).masks["w"])
    # component i draws with stable_seed(seed, i), and b sees the codes a left
    after_a = a(qmodel, stable_seed(9, 0))
    after_b = b(after_a, stable_seed(9, 1))
    faulty = both(qmodel, seed=9)
    assert torch.equal(faulty.tensors["w"].codes, after_b.tensors["w"].codes)
    assert torch.equal(faulty.tensors["w"].codes, qmodel.tensors["w"].codes ^ pattern.masks["w"])


def test_write_into_gives_the_faulty_parameters_and_restores_the_clean_ones():
    torch.manual_seed(0)
    scheme = QuantScheme.preset("rquant", bits=8)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 4))
    qmodel = QuantizedModel.from_module(model, scheme)
    clean = {name: value.clone() for name, value in qmodel.clean_parameters().items()}
    weights = {name: value.clone() for name, value in clean.items()}
    dense = FaultPattern({"0.weight": torch.full((30, 20), 0x11, dtype=torch.uint8)})
    for pattern in (RandomBitErrors(0.05).sample(qmodel, 1), dense):
        restore = pattern.write_into(qmodel, weights)
        expected = pattern.parameters(qmodel)
        assert all(torch.equal(weights[name], expected[name]) for name in clean)
        assert any(not torch.equal(weights[name], clean[name]) for name in clean)
        restore()
        assert all(torch.equal(weights[name], clean[name]) for name in clean)
    wrong = {**weights, "0.bias": clean["2.bias"].clone()}
    with pytest.raises(ValueError, match="must have shape"):
        RandomBitErrors(0.5).sample(qmodel, 2).write_into(qmodel, wrong)
    assert all(torch.equal(wrong[name], clean[name]) for name in clean if name != "0.bias")
