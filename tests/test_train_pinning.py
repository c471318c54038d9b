"""The training loop and the accelerator retuning reproduce, bit for bit, a frozen copy of the
implementations they replaced (same seed and settings → same trained weights), for every method.

The reference (``_reference_train``, ``_reference_retune``) is the code as it was before the
methods became objects; it only uses library primitives (quantize, fault masks, sign flips).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.utils.data import TensorDataset

from bitrobust.bits import sparse_flip_mask, stable_seed
from bitrobust.bnn.training import modified_hinge_loss, random_sign_flips
from bitrobust.faults import FaultPattern
from bitrobust.models import build_model
from bitrobust.quant import BINARY, QuantizedModel, QuantScheme, fake_quantize, parameter_schemes
from bitrobust.train import TrainConfig, train


def blobs(n: int = 200, classes: int = 4, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centers = torch.rand(classes, 1, 4, 4, generator=g)
    images = (centers[labels] + 0.05 * torch.randn(n, 1, 4, 4, generator=g)).clamp(0, 1)
    return TensorDataset(images, labels)


# -- the reference: the loop as it was ------------------------------------------------------
def _project(model, bound, names):
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad and name in names:
                param.clamp_(-bound, bound)


def _loss(config, logits, labels):
    if config.loss == "hinge":
        return modified_hinge_loss(logits, labels, config.hinge_b)
    return F.cross_entropy(logits, labels)


def _perturbed(model, scheme, rate, seed, bound):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        qmodel = QuantizedModel.from_module(model, scheme)
        masks = {
            name: sparse_flip_mask(qt.shape, qt.scheme.bits, rate, generator)
            for name, qt in qmodel.tensors.items()
        }
        faulty = FaultPattern(masks).apply(qmodel).dequantized()
    params = dict(model.named_parameters())
    return {
        name: params[name] + (faulty[name].clamp(-bound, bound) - params[name]).detach()
        for name in faulty
    }


def _reference_train(model, scheme, train_set, config):
    model.train()
    torch.manual_seed(config.seed)
    images_all, labels_all = train_set.tensors
    order_generator = torch.Generator().manual_seed(config.seed)
    batches = math.ceil(len(labels_all) / config.batch_size)
    total_steps = max(1, config.epochs * batches)
    params_list = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(params_list, lr=config.lr, weight_decay=config.weight_decay)
        fractions, gamma = (1 / 5, 2 / 5, 3 / 5, 4 / 5), 0.5
    else:
        optimizer = torch.optim.SGD(
            params_list,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
        fractions, gamma = (2 / 5, 3 / 5, 4 / 5), 0.1
    milestones = [round(total_steps * f) for f in fractions]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)
    bound = config.w_max if config.w_max is not None else 1.0
    schemes = parameter_schemes(model, scheme)
    binary = {name for name, s in schemes.items() if s.binary}
    flip_generator = torch.Generator().manual_seed(stable_seed("bitflip", config.seed))
    up = config.bit_error_rate if config.zero_to_one_rate is None else config.zero_to_one_rate
    down = config.bit_error_rate if config.one_to_zero_rate is None else config.one_to_zero_rate
    perturb, step, losses = False, 0, []
    for _ in range(config.epochs):
        order = torch.randperm(len(labels_all), generator=order_generator)
        for start in range(0, len(order), config.batch_size):
            index = order[start : start + config.batch_size]
            images, labels = images_all[index], labels_all[index]
            _project(model, bound, schemes)
            optimizer.zero_grad(set_to_none=True)
            named = dict(model.named_parameters())
            params = {n: fake_quantize(named[n], s) for n, s in schemes.items()}
            if config.method == "bitflip":
                params = {
                    n: random_sign_flips(v, up, down, flip_generator) if n in binary else v
                    for n, v in params.items()
                }
            loss = _loss(config, functional_call(model, params, (images,)), labels)
            loss.backward()
            perturbed_loss = 0.0
            if config.method == "randbet" and perturb:
                seed = stable_seed("randbet", config.seed, step)
                perturbed = _perturbed(model, scheme, config.bit_error_rate, seed, bound)
                buffers = {name: buf.clone() for name, buf in model.named_buffers()}
                logits = functional_call(model, {**perturbed, **buffers}, (images,))
                p_loss = _loss(config, logits, labels)
                names = list(perturbed)
                grads = torch.autograd.grad(
                    p_loss, [perturbed[n] for n in names], allow_unused=True
                )
                clip = config.perturbed_grad_clip
                with torch.no_grad():
                    for name, grad in zip(names, grads):
                        param = named[name]
                        if param.grad is None:
                            param.grad = torch.zeros_like(param)
                        if grad is not None:
                            param.grad.add_(grad.clamp(-clip, clip))
                        param.grad.div_(2.0)
                perturbed_loss = p_loss.item()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            if config.method == "randbet":
                tau = config.curriculum_threshold
                clean = loss.item()
                perturb = clean < 1.15 * tau and (clean + perturbed_loss) / 2 <= tau
            step += 1
        _project(model, bound, schemes)
    model.eval()
    return losses


# -- the pins --------------------------------------------------------------------------------
def mlp(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("mlp", in_channels=1, image_size=4, num_classes=4, hidden=[24])


def bnn(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("bnn-mlp", in_channels=1, image_size=4, num_classes=4, hidden=[24])


RQUANT = QuantScheme.preset("rquant", bits=8, w_max=0.1)
CASES = {
    "normal": (mlp, QuantScheme.preset("normal", bits=8), dict(method="normal", lr=0.1)),
    "clipping": (mlp, RQUANT, dict(method="clipping", w_max=0.1, lr=0.1)),
    "randbet": (
        mlp,
        RQUANT,
        dict(method="randbet", w_max=0.1, bit_error_rate=0.05, lr=0.1, curriculum_threshold=5.0),
    ),
    "randbet-4bit-perlayer": (
        mlp,
        QuantScheme.preset("perlayer-asym", bits=4, w_max=0.2),
        dict(method="randbet", w_max=0.1, bit_error_rate=0.02, lr=0.1, curriculum_threshold=5.0),
    ),
    "randbet-wider-scheme": (
        mlp,
        QuantScheme.preset("rquant", bits=6, w_max=0.2),
        dict(method="randbet", w_max=0.1, bit_error_rate=0.1, lr=0.1, curriculum_threshold=5.0),
    ),
    "randbet-bnn": (
        bnn,
        BINARY,
        dict(method="randbet", w_max=1.0, optimizer="adam", lr=0.01, curriculum_threshold=5.0),
    ),
    "bitflip": (bnn, BINARY, dict(method="bitflip", bit_error_rate=0.05, optimizer="adam")),
    "bitflip-asym-hinge": (
        bnn,
        BINARY,
        dict(
            method="bitflip",
            zero_to_one_rate=0.1,
            one_to_zero_rate=0.0,
            optimizer="adam",
            lr=0.01,
            loss="hinge",
            hinge_b=16.0,
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_matches_the_reference_bit_for_bit(case):
    build, scheme, options = CASES[case]
    config = TrainConfig(epochs=3, batch_size=32, progress=False, seed=3, **options)
    expected_model, model = build(), build()
    expected_losses = _reference_train(expected_model, scheme, blobs(), config)
    history = train(model, scheme, blobs(), config, device="cpu")
    assert not model.training
    steps = len(expected_losses) // config.epochs
    means = [
        sum(expected_losses[i : i + steps]) / steps for i in range(0, len(expected_losses), steps)
    ]
    assert history.loss == means
    if case.startswith("randbet"):
        assert history.perturbed_fraction[-1] > 0.5  # the perturbed pass really ran
    expected = expected_model.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name


# -- accelerator retuning (FAP+T, FaL-reTune) ------------------------------------------------
def _reference_retune(model, images, labels, config, frozen):
    from bitrobust.hw.convert import emulated_layers
    from bitrobust.hw.layers import quantize_codes

    layers = emulated_layers(model)
    params = []
    for layer in layers.values():
        layer.weight.requires_grad_(True)
        params.append(layer.weight)
        if layer.bias is not None:
            layer.bias.requires_grad_(True)
            params.append(layer.bias)
    grad_masks = {
        name: frozen[name].t().reshape(layer.weight.shape)
        for name, layer in layers.items()
        if name in frozen
    }
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    generator = torch.Generator().manual_seed(config.seed)
    model.eval()
    losses = []
    for _ in range(config.epochs):
        order = torch.randperm(len(labels), generator=generator)
        total, steps = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            index = order[start : start + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(images[index]), labels[index])
            loss.backward()
            for name, layer in layers.items():
                if name in grad_masks and layer.weight.grad is not None:
                    layer.weight.grad[grad_masks[name]] = 0.0
            optimizer.step()
            with torch.no_grad():
                for name, layer in layers.items():
                    codes = quantize_codes(
                        layer.gemm_weight(),
                        layer.weight_scale,
                        layer.weight_zero,
                        layer.multiplier.signed,
                    )
                    if name in frozen:
                        codes = torch.where(frozen[name], layer.weight_codes, codes)
                    layer.set_weight_codes(codes)
            total += loss.item()
            steps += 1
        losses.append(total / steps)
    for layer in layers.values():
        layer.weight.requires_grad_(False)
        if layer.bias is not None:
            layer.bias.requires_grad_(False)
    return losses


@pytest.mark.parametrize("multiplier", ["trunc8u_k2", "exact8s"])
def test_retuning_matches_the_reference_bit_for_bit(multiplier):
    import copy

    from bitrobust.data import load_dataset
    from bitrobust.hw import SystolicArray, emulated_layers, to_accelerator
    from bitrobust.hw.mitigation import MitigationConfig, retune

    images, labels = load_dataset("digits", "train").tensors
    images, labels = images[:300], labels[:300]
    torch.manual_seed(0)
    model = build_model("mlp", in_channels=1, image_size=8, num_classes=10, hidden=[16])
    train(model, QuantScheme.preset("rquant", bits=8), TensorDataset(images, labels),
          TrainConfig(epochs=2, batch_size=64, progress=False))  # fmt: skip
    emulated = to_accelerator(model, multiplier, SystolicArray(4), calibration=images)
    generator = torch.Generator().manual_seed(1)
    frozen = {
        name: torch.rand(layer.gemm_weight().shape, generator=generator) < 0.5
        for name, layer in emulated_layers(emulated).items()
    }
    config = MitigationConfig("fap-t", epochs=2, lr=0.01, batch_size=32, seed=5)
    expected_model = copy.deepcopy(emulated)
    expected_losses = _reference_retune(expected_model, images, labels, config, frozen)
    emulated.train()
    losses = retune(emulated, images, labels, config, frozen)
    assert emulated.training  # the caller's mode comes back
    assert losses == expected_losses
    expected = expected_model.state_dict()
    for name, value in emulated.state_dict().items():
        assert torch.equal(value, expected[name]), name
    expected_layers = emulated_layers(expected_model)
    for name, layer in emulated_layers(emulated).items():
        assert torch.equal(layer.weight_codes, expected_layers[name].weight_codes), name
        assert not layer.weight.requires_grad
