"""Tests for the model registry, the shared layers and each architecture."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bitrobust.errors import BitrobustError
from bitrobust.models import (
    MODELS,
    Normalize,
    ReparameterizedGroupNorm,
    build_model,
    count_multiply_accumulates,
    count_parameters,
    group_count,
    list_models,
    model_options,
    register_model,
)
from bitrobust.models.layers import make_norm
from bitrobust.models.lenet import conv_paddings

SHAPES = [(1, 28), (3, 32), (1, 8)]  # MNIST, CIFAR, scikit-learn digits

# Small option sets so the whole file runs in seconds on a CPU.
SMALL = {
    "mlp": {"hidden": [32, 16]},
    "lenet5": {},
    "simplenet": {"width": 4},
    "resnet20": {"width": 0.5},
}


def test_list_models():
    assert list_models() == ["bnn-mlp", "lenet5", "mlp", "resnet20", "simplenet", "vgg3", "vgg7"]


@pytest.mark.parametrize("name", ["lenet5", "mlp", "resnet20", "simplenet"])
@pytest.mark.parametrize(("channels", "size"), SHAPES)
def test_every_model_builds_and_classifies(name, channels, size):
    model = build_model(name, in_channels=channels, image_size=size, num_classes=10, **SMALL[name])
    out = model(torch.rand(3, channels, size, size))
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()
    assert isinstance(next(iter(model.children())), Normalize)  # the input layer comes first


@pytest.mark.parametrize("name", ["lenet5", "mlp", "resnet20", "simplenet"])
def test_default_options_build_on_cifar_shape(name):
    model = build_model(name, in_channels=3, image_size=32, num_classes=7)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize("name", ["lenet5", "mlp", "resnet20", "simplenet"])
def test_builds_are_deterministic_under_manual_seed(name):
    def build():
        torch.manual_seed(123)
        return build_model(name, in_channels=1, image_size=28, num_classes=10, **SMALL[name])

    first, second = build().state_dict(), build().state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_normalize_holds_buffers_not_parameters():
    layer = Normalize((0.5, 0.25, 0.0), (0.5, 0.5, 2.0))
    assert list(layer.parameters()) == []
    assert set(dict(layer.named_buffers())) == {"mean", "std"}
    x = torch.rand(2, 3, 4, 4)
    expected = (x - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) / torch.tensor(
        [0.5, 0.5, 2.0]
    ).view(1, 3, 1, 1)
    assert torch.allclose(layer(x), expected)


def test_normalize_is_identity_without_statistics_and_has_no_state():
    layer = Normalize()
    x = torch.rand(2, 1, 3, 3)
    assert torch.equal(layer(x), x)
    assert layer.state_dict() == {}


def test_model_normalization_is_frozen_and_saved():
    model = build_model(
        "lenet5", in_channels=1, image_size=28, num_classes=10,
        input_mean=(0.1307,), input_std=(0.3081,),
    )  # fmt: skip
    names = {name for name, _ in model.named_parameters()}
    assert not any(name.startswith("normalize") for name in names)
    assert {"normalize.mean", "normalize.std"} <= set(model.state_dict())


@pytest.mark.parametrize(
    ("mean", "std"),
    [((0.5,), None), ((0.5, 0.5), (0.2, 0.2)), ((0.5,), (0.0,))],
)
def test_bad_input_statistics_are_user_errors(mean, std):
    with pytest.raises(BitrobustError):
        build_model(
            "mlp", in_channels=1, image_size=8, num_classes=10, input_mean=mean, input_std=std
        )


def test_reparameterized_group_norm_starts_as_plain_group_norm():
    torch.manual_seed(0)
    x = torch.randn(4, 16, 5, 5) * 3 + 1
    layer = ReparameterizedGroupNorm(8, 16)
    assert torch.equal(layer.weight, torch.zeros(16))
    assert torch.equal(layer.bias, torch.zeros(16))
    plain = nn.GroupNorm(8, 16, affine=False)
    assert torch.allclose(layer(x), plain(x), atol=1e-6)


def test_reparameterized_group_norm_scale_is_one_plus_weight_and_trains():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 3, 3)
    layer = ReparameterizedGroupNorm(3, 6)
    layer(x).pow(2).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    with torch.no_grad():
        layer.weight.fill_(0.1)
        layer.bias.fill_(-0.05)
    normed = nn.GroupNorm(3, 6, affine=False)(x)
    assert torch.allclose(layer(x), 1.1 * normed - 0.05, atol=1e-6)


def test_reparameterized_group_norm_rejects_indivisible_groups():
    with pytest.raises(ValueError):
        ReparameterizedGroupNorm(4, 6)


@pytest.mark.parametrize(
    ("channels", "groups"),
    [(2048, 32), (512, 32), (128, 32), (96, 32), (64, 32), (80, 16), (48, 24), (40, 20),
     (32, 16), (24, 12), (16, 8), (12, 6), (10, 5), (8, 4), (6, 3), (4, 2), (2, 1), (7, 1),
     (1, 1)],
)  # fmt: skip
def test_group_count_rule(channels, groups):
    assert group_count(channels) == groups
    assert channels % group_count(channels) == 0


@pytest.mark.parametrize(
    ("channels", "min_group_channels", "groups"),
    [(32, 8, 4), (256, 8, 32), (64, 8, 8), (8, 8, 1), (4, 8, 1), (32, 2, 16)],
)
def test_group_count_with_a_minimum_group_size(channels, min_group_channels, groups):
    assert group_count(channels, min_group_channels=min_group_channels) == groups
    norm = make_norm("regn", channels, min_group_channels)
    assert norm.num_groups == groups


def test_simplenet_group_size_option_leaves_the_parameters_alone():
    narrow = build_model("simplenet", in_channels=3, image_size=32, num_classes=10, width=8)
    wide_groups = build_model(
        "simplenet", in_channels=3, image_size=32, num_classes=10, width=8, min_group_channels=8
    )
    assert count_parameters(narrow) == count_parameters(wide_groups) == 87_882
    groups = [m.num_groups for m in wide_groups.modules() if hasattr(m, "num_groups")]
    assert min(ch // g for ch, g in zip(_norm_channels(wide_groups), groups)) >= 8
    with pytest.raises(BitrobustError, match="min_group_channels"):
        build_model("simplenet", in_channels=3, image_size=32, num_classes=10, min_group_channels=0)


def _norm_channels(model: nn.Module) -> list[int]:
    return [m.num_channels for m in model.modules() if hasattr(m, "num_groups")]


def test_make_norm_kinds():
    assert isinstance(make_norm("none", 8), nn.Identity)
    assert isinstance(make_norm("regn", 8), ReparameterizedGroupNorm)
    assert isinstance(make_norm("gn", 8), nn.GroupNorm)
    with pytest.raises(BitrobustError):
        make_norm("bn", 8)


def test_unknown_model_lists_known_names():
    with pytest.raises(BitrobustError, match="lenet5, mlp, resnet20, simplenet"):
        build_model("vgg16", in_channels=3, image_size=32, num_classes=10)


def test_unknown_option_lists_known_options():
    with pytest.raises(BitrobustError, match="depth.*known options: width, norm"):
        build_model("simplenet", in_channels=3, image_size=32, num_classes=10, depth=3)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("mlp", {"hidden": 64}),
        ("mlp", {"hidden": [64, 0]}),
        ("mlp", {"norm": "batch"}),
        ("lenet5", {"norm": 1}),
        ("simplenet", {"width": 0}),
        ("simplenet", {"width": 2.5}),
        ("resnet20", {"width": -1}),
        ("resnet20", {"shortcut": "identity"}),
    ],
)
def test_bad_option_values_are_user_errors(name, options):
    with pytest.raises(BitrobustError):
        build_model(name, in_channels=1, image_size=28, num_classes=10, **options)


@pytest.mark.parametrize("field", ["in_channels", "image_size", "num_classes"])
def test_bad_shapes_are_user_errors(field):
    args = {"in_channels": 1, "image_size": 8, "num_classes": 10, field: 0}
    with pytest.raises(BitrobustError):
        build_model("mlp", **args)


def test_model_options_report_defaults():
    assert model_options("mlp") == {"hidden": [1024, 1024], "norm": "none"}
    assert model_options("lenet5") == {"norm": "regn"}
    assert model_options("simplenet") == {"width": 16, "norm": "regn", "min_group_channels": 2}
    assert model_options("resnet20") == {"width": 1, "norm": "regn", "shortcut": "conv"}


def test_register_model_adds_a_buildable_entry():
    @register_model("tiny-test-net")
    def tiny(*, in_channels, image_size, num_classes, input_mean=None, input_std=None, k=2):
        return nn.Sequential(
            Normalize(input_mean, input_std),
            nn.Flatten(),
            nn.Linear(in_channels * image_size**2, num_classes * k),
        )

    try:
        assert "tiny-test-net" in list_models()
        model = build_model("tiny-test-net", in_channels=1, image_size=4, num_classes=3, k=1)
        assert model(torch.rand(2, 1, 4, 4)).shape == (2, 3)
        with pytest.raises(BitrobustError, match="known options: k"):
            build_model("tiny-test-net", in_channels=1, image_size=4, num_classes=3, j=1)
        with pytest.raises(ValueError):
            register_model("tiny-test-net")(lambda **kwargs: nn.Identity())
    finally:
        del MODELS["tiny-test-net"]


def test_simplenet_width_64_matches_paper_parameter_count():
    model = build_model("simplenet", in_channels=3, image_size=32, num_classes=10, width=64)
    conv_weights = conv_biases = norm_params = linear_params = 0
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            conv_weights += module.weight.numel()
            conv_biases += module.bias.numel()
        elif isinstance(module, ReparameterizedGroupNorm):
            norm_params += module.weight.numel() + module.bias.numel()
        elif isinstance(module, nn.Linear):
            linear_params += module.weight.numel() + module.bias.numel()
    # papers.md §1.6: conv weights 5,482,176; conv biases 4,544; GN 9,088; FC 2,570 (≈ 5.50 M).
    assert (conv_weights, conv_biases, norm_params, linear_params) == (5482176, 4544, 9088, 2570)
    assert count_parameters(model) == 5498378


@pytest.mark.parametrize(("size", "pools"), [(32, 5), (28, 4), (8, 3)])
def test_simplenet_skips_pools_that_would_collapse_the_image(size, pools):
    model = build_model("simplenet", in_channels=1, image_size=size, num_classes=10, width=2)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == pools


def test_simplenet_uses_reparameterized_group_norm_and_biases():
    model = build_model("simplenet", in_channels=3, image_size=32, num_classes=10, width=4)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, ReparameterizedGroupNorm)]
    assert len(convs) == len(norms) == 13
    assert all(conv.bias is not None for conv in convs)


@pytest.mark.parametrize(
    ("size", "paddings", "features"), [(32, (0, 0), 400), (28, (2, 0), 400), (8, (2, 2), 64)]
)
def test_lenet_paddings_and_flatten_size(size, paddings, features):
    assert conv_paddings(size) == paddings
    model = build_model("lenet5", in_channels=1, image_size=size, num_classes=10)
    first_linear = next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert first_linear.in_features == features


def test_lenet_norm_none_has_no_group_norm():
    model = build_model("lenet5", in_channels=1, image_size=28, num_classes=10, norm="none")
    assert not any(isinstance(m, ReparameterizedGroupNorm) for m in model.modules())
    assert count_parameters(model) == 61706  # the classic LeNet-5 with 28×28 padding


def test_mlp_layer_widths():
    model = build_model("mlp", in_channels=1, image_size=28, num_classes=10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (784, 1024), (1024, 1024), (1024, 10)
    ]  # fmt: skip
    assert not any(isinstance(m, ReparameterizedGroupNorm) for m in model.modules())
    linear = build_model("mlp", in_channels=1, image_size=8, num_classes=10, hidden=[])
    assert count_parameters(linear) == 64 * 10 + 10


def test_resnet20_structure():
    model = build_model("resnet20", in_channels=3, image_size=32, num_classes=10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 19  # stem + 9 blocks × 2; with the final linear: 20 layers
    assert [m.out_channels for m in convs][::6] == [16, 16, 32, 64]
    shortcuts = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert len(shortcuts) == 2
    assert count_parameters(model) == 272474
    padded = build_model("resnet20", in_channels=3, image_size=32, num_classes=10, shortcut="pad")
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in padded.modules())
    assert padded(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_resnet20_width_multiplier():
    model = build_model("resnet20", in_channels=3, image_size=32, num_classes=10, width=2)
    assert model.classifier.in_features == 128


def test_multiply_accumulates_count_convs_and_linears():
    mlp = build_model("mlp", in_channels=1, image_size=28, num_classes=10)
    assert count_multiply_accumulates(mlp, (1, 28, 28)) == 784 * 1024 + 1024 * 1024 + 1024 * 10
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))
    assert count_multiply_accumulates(conv, (3, 8, 8)) == 4 * 8 * 8 * 3 * 9 + 256 * 2
    simplenet = build_model(
        "simplenet", in_channels=3, image_size=32, num_classes=10, width=8, min_group_channels=8
    )
    assert count_multiply_accumulates(simplenet, (3, 32, 32)) == 10_061_120
