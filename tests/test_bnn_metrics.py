"""BNN metrics: margins, tolerable flips, neuron importance, rank correlation."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bitrobust.bnn import (
    BinarizedBlock,
    BinarizedLinear,
    BinarizedNetwork,
    Scale,
    bnn_metrics,
    correlations,
    flips,
    fold_batch_norm,
    neuron_importance,
    neuron_margins,
    spearman,
)
from bitrobust.errors import BitrobustError
from bitrobust.models import build_model


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            with torch.no_grad():
                module.running_mean.copy_(torch.randn(n, generator=g) * 3)
                module.running_var.copy_(torch.rand(n, generator=g) * 10 + 1)
                module.weight.copy_(torch.randn(n, generator=g))
                module.bias.copy_(torch.randn(n, generator=g))
    return model.eval()


def data(n: int = 60, size: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g), torch.randint(0, 3, (n,), generator=g)


def mlp(seed: int = 0) -> BinarizedNetwork:
    torch.manual_seed(seed)
    model = build_model("bnn-mlp", in_channels=1, image_size=4, num_classes=3, hidden=[10, 6])
    return randomized(model, seed)


def hand_network() -> BinarizedNetwork:
    """Two ±1 inputs → one hidden block of two neurons (no bias) → output layer."""
    block = BinarizedBlock(BinarizedLinear(4, 2, bias=False))
    with torch.no_grad():
        block.layer.weight.copy_(torch.tensor([[1.0, 1.0, 1.0, -1.0], [1.0, -1.0, -1.0, -1.0]]))
        block.norm.running_mean.copy_(torch.tensor([0.5, 0.0]))
        block.norm.running_var.fill_(1.0 - block.norm.eps)  # σ = 1 exactly
        block.norm.weight.copy_(torch.tensor([1.0, -2.0]))
        block.norm.bias.copy_(torch.tensor([0.0, 1.0]))  # τ = (0.5, 0.5)
    return BinarizedNetwork([nn.Flatten(), block, BinarizedLinear(2, 2), Scale()]).eval()


def test_margins_and_tolerable_flips_by_hand():
    network = hand_network()
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, -1.0, -1.0, -1.0]])  # ±1: one flip moves a by 2
    tau = fold_batch_norm(network.layers[1].norm).tau
    assert tau.tolist() == pytest.approx([0.5, 0.5])
    # a = (2, −2) for the first input and (0, 4) for the second
    layer = neuron_margins(network, x)["layers.1"]
    assert layer.margins.tolist() == pytest.approx([1.5, 2.5, 0.5, 3.5])
    assert layer.tolerable_flips.tolist() == [0, 1, 0, 1]  # ⌈m/2⌉ − 1
    summary = layer.summary()
    assert summary["fan_in"] == 4 and summary["neurons"] == 2 and summary["values"] == 4
    assert summary["margin_mean"] == pytest.approx(2.0)
    assert summary["margin_normalized_mean"] == pytest.approx(0.5)
    assert summary["margin_tolerable_flips_mean"] == pytest.approx(0.5)
    assert summary["margin_zero_flips_fraction"] == pytest.approx(0.5)
    assert sum(summary["margin_histogram"]) == pytest.approx(1.0)


def test_real_valued_first_layer_uses_the_largest_input_per_flip():
    network = hand_network()
    x = torch.tensor([[3.0, 3.0, 3.0, -3.0]])  # a = (12, 0): one flip moves a by up to 6
    layer = neuron_margins(network, x)["layers.1"]
    assert layer.margins.tolist() == pytest.approx([11.5, 0.5])
    assert layer.tolerable_flips.tolist() == [1, 0]  # ⌈11.5 / 6⌉ − 1


def test_constant_neurons_are_left_out_of_the_margins():
    network = hand_network()
    with torch.no_grad():
        network.layers[1].norm.weight[1] = 0.0
    layer = neuron_margins(network, torch.ones(3, 4))["layers.1"]
    assert layer.constant_neurons == 1 and layer.margins.numel() == 3


@torch.no_grad()
def test_flip_importance_equals_brute_force_flips():
    model = mlp()
    images, labels = data()
    result = neuron_importance(model, images, labels, "flip", flip_batch=50, batch_size=25)
    assert list(result) == ["layers.2", "layers.3"]
    for name, layer in result.items():
        drops, rises = brute_force_importance(model, images, labels, name, layer.neurons.tolist())
        for position, (drop, rise) in enumerate(zip(drops, rises)):
            assert float(layer.importance[position]) == pytest.approx(drop, abs=1e-12)
            assert float(layer.loss_increase[position]) == pytest.approx(rise, abs=1e-5)


def test_flip_importance_on_conv_channels_and_subsample():
    torch.manual_seed(1)
    model = randomized(
        build_model("vgg3", in_channels=1, image_size=8, num_classes=3, channels=5, hidden=12)
    )
    images, labels = data(size=8)
    full = neuron_importance(model, images, labels, "flip")
    assert [int(layer.neurons.numel()) for layer in full.values()] == [5, 5, 12]
    sampled = neuron_importance(model, images, labels, "flip", max_neurons=4, seed=3)
    for name, layer in sampled.items():
        assert layer.neurons.numel() == 4 and len(set(layer.neurons.tolist())) == 4
        index = [full[name].neurons.tolist().index(n) for n in layer.neurons.tolist()]
        assert torch.allclose(layer.importance, full[name].importance[index])


def brute_force_importance(model, images, labels, name, neurons):
    """Accuracy drop and loss rise of each neuron flipped by a forward hook (the definition)."""
    block = model.get_submodule(name)
    clean_logits = model(images)
    clean = int((clean_logits.argmax(1) == labels).sum())
    drops, rises = [], []
    for neuron in neurons:

        def flip(module, inputs, output, neuron=neuron):
            output = output.clone()
            output[:, neuron] = -output[:, neuron]
            return output

        handle = block.register_forward_hook(flip)
        logits = model(images)
        handle.remove()
        drops.append((clean - int((logits.argmax(1) == labels).sum())) / len(labels))
        rises.append(float(F.cross_entropy(logits, labels) - F.cross_entropy(clean_logits, labels)))
    return drops, rises


@torch.no_grad()
def test_flip_importance_of_conv_channels_equals_brute_force_flips():
    torch.manual_seed(2)
    model = randomized(
        build_model("vgg3", in_channels=1, image_size=8, num_classes=3, channels=5, hidden=12)
    )
    images, labels = data(size=8)
    result = neuron_importance(model, images, labels, "flip", flip_batch=40, batch_size=20)
    assert list(result) == ["layers.1", "layers.2", "layers.4"]
    for name, layer in result.items():
        drops, rises = brute_force_importance(model, images, labels, name, layer.neurons.tolist())
        assert layer.importance.tolist() == pytest.approx(drops, abs=1e-12)
        assert layer.loss_increase.tolist() == pytest.approx(rises, abs=1e-5)


@pytest.mark.parametrize(
    "architecture, size, options",
    [
        ("bnn-mlp", 4, {"hidden": [10, 8, 6]}),  # incremental and two-valued linear paths
        ("vgg3", 8, {"channels": 5, "hidden": 12}),  # conv → pooled conv → flatten → linear
        ("vgg7", 8, {"width": 2, "hidden": 6}),  # conv → conv without pooling
    ],
)
@torch.no_grad()
def test_every_flip_path_gives_the_logits_of_recomputing(architecture, size, options):
    """Each fast path of bitrobust.bnn.flips equals running flipped copies, to the bit."""
    torch.manual_seed(3)
    model = randomized(
        build_model(architecture, in_channels=1, image_size=size, num_classes=3, **options)
    )
    x = data(size=size)[0]
    outputs = {}
    for index, stage in enumerate(model.layers):
        x = outputs[index] = stage(x)
    for index, block in model.blocks():
        group = torch.tensor([0, block.neurons - 1, 1])
        fast = flips.flipped_logits_function(model, index)(outputs[index])(group)
        slow = flips._recomputed_logits(model.layers[index + 1 :], outputs[index], group)
        assert torch.equal(fast, slow), index


def test_gradient_importance_is_first_order_and_non_negative():
    model = mlp()
    images, labels = data()
    result = neuron_importance(model, images, labels, "gradient", batch_size=7)
    for layer in result.values():
        assert layer.loss_increase is None and bool((layer.importance >= 0).all())
    # by hand for the last hidden layer: E_x |∂L/∂o_j · o_j|
    hidden = model.layers[:4](images).detach().requires_grad_(True)
    loss = F.cross_entropy(model.layers[4:](hidden), labels, reduction="sum")
    (grad,) = torch.autograd.grad(loss, hidden)
    expected = (grad * hidden).abs().mean(0)
    assert torch.allclose(result["layers.3"].importance.float(), expected, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())


def test_bnn_metrics_is_json_ready_and_aggregates_layers():
    model = mlp()
    images, labels = data()
    metrics = bnn_metrics(model, images, labels, importance="flip", max_neurons=4)
    text = json.dumps(metrics, allow_nan=False)
    assert "margin_tolerable_flips_mean" in text
    assert [layer["layer"] for layer in metrics["layers"]] == ["layers.2", "layers.3"]
    for key in ("margin_mean", "margin_tolerable_flips_mean", "importance_variance"):
        mean = sum(layer[key] for layer in metrics["layers"]) / 2
        assert metrics["model"][key] == pytest.approx(mean)
    assert 0 <= metrics["accuracy"] <= 1


def test_metrics_on_non_binarized_models_are_user_errors():
    plain = build_model("mlp", in_channels=1, image_size=4, num_classes=3, hidden=[8])
    images, labels = data()
    for call in (
        lambda: neuron_margins(plain, images),
        lambda: neuron_importance(plain, images, labels),
        lambda: bnn_metrics(plain, images, labels),
    ):
        with pytest.raises(BitrobustError, match="binarized network"):
            call()
    with pytest.raises(BitrobustError, match="importance method"):
        neuron_importance(mlp(), images, labels, "shapley")
    with pytest.raises(BitrobustError, match="max_neurons"):
        neuron_importance(mlp(), images, labels, max_neurons=0)


def test_spearman_against_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)  # 1 − 6·4/120
    # ties take their average rank: x ranks (1.5, 1.5, 3, 4)
    assert spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)
    assert spearman([1, 1, 1], [1, 2, 3]) is None  # bitrobust.stats: undefined → None
    assert spearman([1, 2], [2, 1]) is None
    scipy_stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 5, (30,), generator=g), torch.randn(30, generator=g)
    expected = scipy_stats.spearmanr(x.tolist(), y.tolist()).statistic
    assert spearman(x.tolist(), y.tolist()) == pytest.approx(expected)


def test_correlations_use_numeric_metrics_all_models_report():
    models = [
        {"layer": "a", "m": 1.0, "n": 3.0, "partial": 1.0},
        {"layer": "b", "m": 2.0, "n": 2.0, "partial": None},
        {"layer": "c", "m": 3.0, "n": 1.0},
    ]
    result = correlations(models, [0.1, 0.2, 0.3])
    assert result == pytest.approx({"m": 1.0, "n": -1.0})
