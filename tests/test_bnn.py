"""Binarized networks: 1-bit codes, per-parameter schemes, models, folding, flips and training."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call
from torch.utils.data import TensorDataset

from bitrobust.bits import bit_planes
from bitrobust.bnn import (
    BinarizedBlock,
    BinarizedConv2d,
    BinarizedLinear,
    BinarizedNetwork,
    Scale,
    binarize,
    fold_batch_norm,
    fold_network,
    is_binarized,
    modified_hinge_loss,
    random_sign_flips,
)
from bitrobust.errors import BitrobustError
from bitrobust.evaluate import evaluate_bit_errors, predict
from bitrobust.faults import FaultPattern, RandomBitErrors
from bitrobust.models import build_model, list_models
from bitrobust.quant import (
    BINARY,
    QuantizedModel,
    QuantScheme,
    fake_quantize,
    parameter_schemes,
    quantize,
)
from bitrobust.train import TrainConfig, project_parameters, train


def tiny_mlp(hidden=(16, 12), seed: int = 0, image_size: int = 4) -> BinarizedNetwork:
    torch.manual_seed(seed)
    return build_model(
        "bnn-mlp", in_channels=1, image_size=image_size, num_classes=3, hidden=list(hidden)
    )


def randomize_batch_norm(model: nn.Module, seed: int = 0) -> None:
    """Running statistics and affine parameters of every BN, with γ < 0 and γ = 0 included."""
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            with torch.no_grad():
                module.running_mean.copy_(torch.randn(n, generator=g) * 4)
                module.running_var.copy_(torch.rand(n, generator=g) * 20 + 0.5)
                module.weight.copy_(torch.randn(n, generator=g))
                module.weight[0] = 0.0  # a constant neuron
                module.weight[1] = -abs(float(module.weight[1])) - 0.1  # flipped comparison
                module.bias.copy_(torch.randn(n, generator=g))
    model.eval()


def blobs(n: int = 240, seed: int = 0) -> TensorDataset:
    """Three separable classes of 1×4×4 images."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    centers = torch.rand(3, 1, 4, 4, generator=g)
    images = (centers[labels] + 0.05 * torch.randn(n, 1, 4, 4, generator=g)).clamp(0, 1)
    return TensorDataset(images, labels)


# --- the binary scheme --------------------------------------------------------------------


def test_binary_scheme_codes_and_values():
    qt = quantize(torch.tensor([-0.3, 0.0, 1e-9, 2.0, -5.0]), BINARY)
    assert qt.codes.tolist() == [0, 0, 1, 1, 0]  # w > 0 ↦ 1 (+1), else 0 (−1)
    assert qt.dequantize().tolist() == [-1.0, -1.0, 1.0, 1.0, -1.0]
    assert qt.protected_mask == 0xFE and BINARY.levels == 1
    every_code = torch.arange(256, dtype=torch.uint8)
    wide = quantize(torch.zeros(256), BINARY).with_codes(every_code)
    assert torch.equal(wide.integer_values(), (every_code.int() & 1) * 2 - 1)  # bits 1..7 ignored
    assert float(qt.step) == 2.0


def test_binary_scheme_names_and_validation():
    assert BINARY.name == "binary"
    assert QuantScheme.from_name("binary") == BINARY
    assert QuantScheme.from_dict(BINARY.to_dict()) == BINARY
    assert QuantScheme.from_dict({"bits": 8}).binary is False  # old checkpoints
    with pytest.raises(BitrobustError, match="bits"):
        QuantScheme(bits=1)  # multi-bit schemes keep needing 2..8
    with pytest.raises(BitrobustError, match="bits"):
        QuantScheme.preset("rquant", bits=1)
    for bad in ({"bits": 2}, {"w_max": 0.1}, {"symmetric": False}):
        with pytest.raises(BitrobustError, match="binary"):
            QuantScheme(**{"bits": 1, "binary": True, **bad})


def test_binary_fake_quantize_is_sign_with_identity_gradient():
    x = torch.tensor([-0.5, 0.0, 0.25, 3.0], requires_grad=True)
    y = fake_quantize(x, BINARY)
    assert y.tolist() == [-1.0, -1.0, 1.0, 1.0]
    assert torch.equal(y.detach(), quantize(x, BINARY).dequantize())
    (y * torch.arange(4.0)).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 2.0, 3.0]
    z = torch.tensor([0.3, -2.0], requires_grad=True)
    binarize(z).sum().backward()
    assert binarize(z).tolist() == [1.0, -1.0] and z.grad.tolist() == [1.0, 1.0]


# --- which parameters live in the faulty memory ----------------------------------------------


def test_bnn_stores_only_binarized_weights_and_biases():
    model = tiny_mlp()
    schemes = parameter_schemes(model, QuantScheme.preset("rquant"))
    assert set(schemes.values()) == {BINARY}
    assert all(name.endswith(("layer.weight", "layer.bias")) or name.startswith("layers.4.")
               for name in schemes)  # fmt: skip
    assert not any("norm" in name or "scale" in name for name in schemes)
    qmodel = QuantizedModel.from_module(model, BINARY)
    binarized = [m for m in model.modules() if isinstance(m, (BinarizedLinear, BinarizedConv2d))]
    expected = sum(p.numel() for m in binarized for p in m.parameters())
    assert qmodel.num_weights() == qmodel.num_bits() == expected
    assert is_binarized(model) and not is_binarized(nn.Linear(2, 2))


def test_parameter_schemes_nearest_declaration_wins():
    four = QuantScheme.preset("rquant", bits=4)

    class Inner(nn.Module):
        quantization_scheme = four

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)
            self.bin = BinarizedLinear(2, 2)

    class Outer(nn.Module):
        quantization_scheme = None

        def __init__(self):
            super().__init__()
            self.inner = Inner()
            self.free = nn.Linear(2, 2)

    schemes = parameter_schemes(Outer(), QuantScheme())
    assert schemes == {
        "inner.fc.weight": four,
        "inner.fc.bias": four,
        "inner.bin.weight": BINARY,
        "inner.bin.bias": BINARY,
    }
    plain = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    assert set(parameter_schemes(plain, four).values()) == {four}  # undeclared: unchanged
    assert len(parameter_schemes(plain, four)) == 4


# --- models ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,channels,size,options",
    [
        ("bnn-mlp", 1, 28, {"hidden": [32, 16]}),
        ("vgg3", 1, 28, {"channels": 8, "hidden": 32}),
        ("vgg7", 3, 32, {"width": 4, "hidden": 16}),
    ],
)
def test_bnn_models_build_and_run(name, channels, size, options):
    assert name in list_models()
    model = build_model(name, in_channels=channels, image_size=size, num_classes=10, **options)
    x = torch.rand(3, channels, size, size)
    assert model(x).shape == (3, 10)
    assert isinstance(model.layers[-1], Scale)
    assert isinstance(model.layers[-2], BinarizedLinear)
    assert all(isinstance(block, BinarizedBlock) for _, block in model.blocks())


def test_vgg_block_order_and_default_sizes():
    vgg3 = build_model("vgg3", in_channels=1, image_size=28, num_classes=10)
    blocks = [block for _, block in vgg3.blocks()]
    assert [type(b.pool).__name__ for b in blocks] == ["MaxPool2d", "MaxPool2d", "Identity"]
    assert blocks[2].layer.in_features == 7 * 7 * 64 and blocks[2].neurons == 2048
    assert [n for n, _ in blocks[0].named_children()] == ["layer", "pool", "norm", "activation"]
    vgg7 = build_model("vgg7", in_channels=3, image_size=32, num_classes=10, width=2)
    assert [b.neurons for _, b in vgg7.blocks()] == [2, 2, 4, 4, 8, 8, 1024]
    mlp = build_model("bnn-mlp", in_channels=1, image_size=28, num_classes=10)
    assert [b.layer.in_features for _, b in mlp.blocks()] == [784, 2048]


def test_bad_bnn_options_are_user_errors():
    with pytest.raises(BitrobustError, match="hidden"):
        build_model("bnn-mlp", in_channels=1, image_size=4, num_classes=2, hidden=[])
    with pytest.raises(BitrobustError, match="at least 8 pixels"):
        build_model("vgg7", in_channels=3, image_size=4, num_classes=2)
    with pytest.raises(BitrobustError, match="bias"):
        build_model("vgg3", in_channels=1, image_size=8, num_classes=2, bias="yes")


# --- batch-norm threshold folding -------------------------------------------------------------


def test_folded_thresholds_equal_bn_and_sign_including_negative_and_zero_gamma():
    block = BinarizedBlock(BinarizedLinear(64, 32))
    randomize_batch_norm(block, seed=1)
    assert (block.norm.weight < 0).any() and (block.norm.weight == 0).any()
    thresholds = fold_batch_norm(block.norm)
    a = torch.randint(-65, 66, (500, 32)).float()
    expected = block.activation(block.norm(a))
    assert torch.equal(thresholds.apply(a), expected)
    assert bool((thresholds.apply(a)[:, 0] == (1 if block.norm.bias[0] > 0 else -1)).all())


def test_ties_give_minus_one_in_both_forms():
    norm = nn.BatchNorm1d(2).eval()
    with torch.no_grad():
        norm.running_mean.copy_(torch.tensor([3.0, -2.0]))
        norm.weight.copy_(torch.tensor([0.5, -0.5]))
        norm.bias.zero_()
    a = torch.tensor([[3.0, -2.0], [4.0, -3.0], [2.0, -1.0]])
    folded = fold_batch_norm(norm).apply(a)
    assert torch.equal(folded, binarize(torch.nn.functional.hardtanh(norm(a))))
    assert folded.tolist() == [[-1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]]


@pytest.mark.parametrize(
    "name,options,size",
    [("bnn-mlp", {"hidden": [24, 16]}, 8), ("vgg3", {"channels": 6, "hidden": 16}, 8)],
)
def test_folded_network_computes_the_same_logits(name, options, size):
    torch.manual_seed(3)
    model = build_model(name, in_channels=1, image_size=size, num_classes=5, **options)
    randomize_batch_norm(model, seed=4)
    x = torch.rand(64, 1, size, size)
    folded = fold_network(model)
    assert torch.equal(folded(x), model(x))  # pooling sits between conv and BN in vgg3
    assert any(isinstance(m, BinarizedBlock) for m in model.modules())  # original untouched
    with pytest.raises(BitrobustError, match="binarized network"):
        fold_network(nn.Linear(2, 2))


# --- weight flips and margins -----------------------------------------------------------------


def _one_neuron(weights: list[int], bias: int | None, mean: float, gamma: float, beta: float):
    block = BinarizedBlock(BinarizedLinear(len(weights), 1, bias=bias is not None)).eval()
    with torch.no_grad():
        block.layer.weight.copy_(torch.tensor([weights], dtype=torch.float32))
        if bias is not None:
            block.layer.bias.fill_(bias)
        block.norm.running_mean.fill_(mean)
        block.norm.running_var.fill_(4.0)
        block.norm.weight.fill_(gamma)
        block.norm.bias.fill_(beta)
    return block


def _flip(qmodel: QuantizedModel, name: str, indices: list[int]) -> QuantizedModel:
    mask = torch.zeros_like(qmodel.tensors[name].codes).flatten()
    mask[indices] = 1  # bit 0: the sign
    return FaultPattern({name: mask.view_as(qmodel.tensors[name].codes)}).apply(qmodel)


def test_one_stored_bit_flip_moves_the_pre_activation_by_two():
    torch.manual_seed(0)
    block = BinarizedBlock(BinarizedLinear(50, 8)).eval()
    x = torch.randint(0, 2, (20, 50)).float() * 2 - 1  # ±1 inputs, as after a hidden layer
    qmodel = QuantizedModel.from_module(block, BINARY)

    def pre_activation(q: QuantizedModel) -> torch.Tensor:
        params = {name.removeprefix("layer."): value for name, value in q.dequantized().items()}
        return functional_call(block.layer, params, (x,))

    clean = pre_activation(qmodel)
    assert bool((clean == clean.round()).all())  # integer pre-activations
    for index in (0, 17, 399):
        neuron, column = divmod(index, 50)
        delta = pre_activation(_flip(qmodel, "layer.weight", [index])) - clean
        weight = qmodel.dequantized()["layer.weight"][neuron, column]
        assert torch.equal(delta[:, neuron], -2 * weight * x[:, column])  # exactly ±2
        assert bool((delta[:, neuron].abs() == 2).all())
        others = [j for j in range(8) if j != neuron]
        assert bool((delta[:, others] == 0).all())
    delta = pre_activation(_flip(qmodel, "layer.bias", [3])) - clean
    assert bool((delta[:, 3].abs() == 2).all())


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.sampled_from([-1, 1]), min_size=1, max_size=40),
    inputs_seed=st.integers(0, 2**16),
    bias=st.sampled_from([None, -1, 1]),
    mean=st.floats(-30, 30),
    gamma=st.floats(-3, 3).filter(lambda g: abs(g) > 1e-3),
    beta=st.floats(-3, 3),
    flips_seed=st.integers(0, 2**16),
    k=st.integers(1, 6),
)
def test_margin_above_two_k_survives_any_k_weight_flips(
    weights, inputs_seed, bias, mean, gamma, beta, flips_seed, k
):
    block = _one_neuron(weights, bias, mean, gamma, beta)
    thresholds = fold_batch_norm(block.norm)
    g = torch.Generator().manual_seed(inputs_seed)
    x = torch.randint(0, 2, (16, len(weights)), generator=g).float() * 2 - 1
    qmodel = QuantizedModel.from_module(block, BINARY)
    clean = block(x)
    margin = thresholds.margin(block.pre_activation(x))[:, 0]
    # k flips anywhere among the neuron's stored bits (weights, and the bias if there is one)
    slots = [("layer.weight", i) for i in range(len(weights))]
    slots += [("layer.bias", 0)] if bias is not None else []
    order = torch.randperm(len(slots), generator=torch.Generator().manual_seed(flips_seed))
    chosen = [slots[i] for i in order[: min(k, len(slots))].tolist()]
    faulty = qmodel
    for name in {name for name, _ in chosen}:
        faulty = _flip(faulty, name, [i for n, i in chosen if n == name])
    outputs = functional_call(block, faulty.dequantized(), (x,))
    safe = margin > 2 * k
    assert torch.equal(outputs[safe], clean[safe])


# --- flip rates -----------------------------------------------------------------------------


def _within_binomial(count: int, trials: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - trials * p) <= sigmas * math.sqrt(trials * p * (1 - p)) + 1


def test_stored_bit_errors_honour_both_directions_on_binary_codes():
    model = tiny_mlp(hidden=(256, 256), image_size=8)
    qmodel = QuantizedModel.from_module(model, BINARY)
    faults = RandomBitErrors(zero_to_one=0.05, one_to_zero=0.3)
    faulty = faults(qmodel, seed=7)
    plus = minus = plus_flipped = minus_flipped = 0
    for name, qt in qmodel.tensors.items():
        before, after = qt.dequantize(), faulty.tensors[name].dequantize()
        assert torch.equal(faulty.tensors[name].codes & 0xFE, torch.zeros_like(qt.codes))
        plus += int((before > 0).sum())
        minus += int((before < 0).sum())
        plus_flipped += int(((before > 0) & (after < 0)).sum())
        minus_flipped += int(((before < 0) & (after > 0)).sum())
    assert _within_binomial(minus_flipped, minus, 0.05)  # −1→+1 is the code's 0→1
    assert _within_binomial(plus_flipped, plus, 0.3)
    everything = RandomBitErrors(1.0)(qmodel, seed=0)
    for name, qt in qmodel.tensors.items():
        assert torch.equal(everything.tensors[name].dequantize(), -qt.dequantize())
        assert bool((bit_planes(everything.tensors[name].codes)[..., 1:] == 0).all())


def test_training_sign_flips_honour_both_directions_and_pass_gradients():
    w = torch.where(
        torch.rand(200_000, generator=torch.Generator().manual_seed(0)) > 0.4, 1.0, -1.0
    )
    w.requires_grad_(True)
    g = torch.Generator().manual_seed(1)
    flipped = random_sign_flips(w, minus_to_plus=0.02, plus_to_minus=0.15, generator=g)
    plus, minus = w.detach() > 0, w.detach() < 0
    assert _within_binomial(int((flipped[plus] < 0).sum()), int(plus.sum()), 0.15)
    assert _within_binomial(int((flipped[minus] > 0).sum()), int(minus.sum()), 0.02)
    again = random_sign_flips(w, 0.02, 0.15, generator=g)
    assert not torch.equal(again, flipped)  # a fresh pattern on every call
    flipped.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))  # straight through
    assert random_sign_flips(w, 0.0, 0.0) is w
    with pytest.raises(BitrobustError):
        random_sign_flips(w, 1.5, 0.0)


# --- evaluation and training ------------------------------------------------------------------


def test_evaluate_works_on_binarized_models_unchanged():
    model = tiny_mlp()
    randomize_batch_norm(model)
    images, labels = blobs().tensors
    report = evaluate_bit_errors(model, BINARY, images, labels, [0.0, 0.2], patterns=2).to_json()
    assert report["results"][0]["rerr_mean"] == pytest.approx(report["err"])
    clean = predict(model, QuantizedModel.from_module(model, BINARY).dequantized(), images)
    assert torch.equal(clean, predict(model, {}, images))  # stored codes = the module's signs


def test_modified_hinge_loss_by_hand():
    outputs = torch.tensor([[3.0, -1.0, 10.0]])
    # y = (+1, −1, −1): max(0, 4 − 3) + max(0, 4 − 1) + max(0, 4 + 10) = 1 + 3 + 14 = 18
    loss = modified_hinge_loss(outputs, torch.tensor([0]), b=4.0)
    assert float(loss) == pytest.approx(18 / 3 / 4)
    assert float(modified_hinge_loss(torch.tensor([[9.0, -9.0]]), torch.tensor([0]), 4.0)) == 0
    with pytest.raises(BitrobustError):
        modified_hinge_loss(outputs, torch.tensor([0]), b=0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "normal"},
        {"method": "bitflip", "bit_error_rate": 0.05},
        {"method": "bitflip", "zero_to_one_rate": 0.1, "one_to_zero_rate": 0.0},
        {"method": "normal", "loss": "hinge", "hinge_b": 16.0},
    ],
)
def test_binarized_training_learns(kwargs):
    model = tiny_mlp(hidden=(64,))
    config = TrainConfig(
        epochs=15, batch_size=32, lr=0.01, optimizer="adam", weight_decay=0.0,
        progress=False, **kwargs,
    )  # fmt: skip
    train(model, BINARY, blobs(), config, device="cpu")
    images, labels = blobs(seed=0).tensors
    accuracy = (predict(model, {}, images) == labels).float().mean()
    assert accuracy > 0.9, kwargs
    latent = [p for n, p in model.named_parameters() if n in parameter_schemes(model, BINARY)]
    assert all(p.abs().max() <= 1.0 for p in latent)


@torch.no_grad()
def test_only_stored_parameters_are_projected():
    model = tiny_mlp()
    model.layers[-1].scale.fill_(5.0)
    model.layers[2].norm.weight.fill_(3.0)
    model.layers[2].layer.weight.mul_(100)
    project_parameters(model, 1.0, parameter_schemes(model, BINARY))
    assert float(model.layers[-1].scale[0]) == 5.0
    assert float(model.layers[2].norm.weight[0]) == 3.0
    assert float(model.layers[2].layer.weight.abs().max()) <= 1.0


def test_bitflip_training_is_reproducible_and_needs_binary_weights():
    def run() -> list[torch.Tensor]:
        model = tiny_mlp(hidden=(16,))
        config = TrainConfig(method="bitflip", epochs=2, batch_size=32, lr=0.01,
                             optimizer="adam", bit_error_rate=0.1, progress=False)  # fmt: skip
        train(model, BINARY, blobs(), config, device="cpu")
        return [p.detach().clone() for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(run(), run()))
    plain = build_model("mlp", in_channels=1, image_size=4, num_classes=3, hidden=[8])
    config = TrainConfig(method="bitflip", epochs=1, progress=False)
    with pytest.raises(BitrobustError, match="binary weights"):
        train(plain, QuantScheme(), blobs(), config, device="cpu")


def test_bad_training_options_are_user_errors():
    with pytest.raises(BitrobustError, match="loss"):
        TrainConfig(loss="mse")
    with pytest.raises(BitrobustError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(BitrobustError, match="hinge_b"):
        TrainConfig(loss="hinge", hinge_b=-1.0)
    with pytest.raises(BitrobustError, match="bitflip"):
        TrainConfig(method="normal", zero_to_one_rate=0.1)
    with pytest.raises(BitrobustError, match=r"\[0, 1\]"):
        TrainConfig(method="bitflip", one_to_zero_rate=1.5)
    with pytest.raises(BitrobustError, match=r"\[0, 1\]"):
        TrainConfig(method="bitflip", bit_error_rate=-0.1)
    assert TrainConfig(method="bitflip", bit_error_rate=0.1, one_to_zero_rate=0.3).flip_rates == (
        0.1,
        0.3,
    )
