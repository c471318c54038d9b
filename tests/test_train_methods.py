"""The training methods as objects: registry, model-dependent defaults, RandBET's incremental
perturbed weights, frozen weights in the generic loop, and a loop that prints nothing."""

from __future__ import annotations

import io

import torch
from torch.utils.data import TensorDataset

from bitrobust.bits import stable_seed
from bitrobust.models import build_model
from bitrobust.names import TRAIN_METHODS
from bitrobust.quant import QuantScheme
from bitrobust.train import (
    METHODS,
    Batches,
    FrozenWeights,
    RandBET,
    TrainConfig,
    fit,
    method_from_name,
    perturbed_parameters,
    project_parameters,
    train,
)
from bitrobust.train.progress import TrainingPrinter


def blobs(n: int = 128, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    centers = torch.rand(4, 1, 4, 4, generator=g)
    return TensorDataset(centers[labels] + 0.05 * torch.randn(n, 1, 4, 4, generator=g), labels)


def mlp():
    torch.manual_seed(0)
    return build_model("mlp", in_channels=1, image_size=4, num_classes=4, hidden=[16])


def test_every_registered_name_builds_its_method():
    assert tuple(METHODS) == TRAIN_METHODS
    config = TrainConfig(method="randbet", w_max=0.2, bit_error_rate=0.03, seed=4)
    for name in TRAIN_METHODS:
        method = method_from_name(name, config)
        assert isinstance(method, METHODS[name]) and method.name == name
    randbet = method_from_name("randbet", config)
    assert (randbet.bound, randbet.bit_error_rate, randbet.seed) == (0.2, 0.03, 4)


def test_defaults_depend_on_the_model_and_given_options_win():
    plain = TrainConfig.defaults_for(mlp())
    assert (plain.optimizer, plain.lr, plain.batch_size, plain.weight_decay) == (
        "sgd",
        0.05,
        128,
        5e-4,
    )
    bnn = build_model("bnn-mlp", in_channels=1, image_size=4, num_classes=4, hidden=[8])
    binarized = TrainConfig.defaults_for(bnn, lr=None, batch_size=64)
    assert (binarized.optimizer, binarized.lr, binarized.batch_size) == ("adam", 1e-3, 64)
    assert binarized.weight_decay == 0.0


def test_randbet_perturbed_weights_equal_the_full_requantization():
    scheme = QuantScheme.preset("rquant", bits=8, w_max=0.1)
    for bound in (0.1, 0.05):  # 0.05: the scheme's range exceeds the bound, values are clamped
        model = mlp()
        project_parameters(model, bound)
        method = RandBET(bound, bit_error_rate=0.05, seed=2)
        method.start(model, scheme)
        method.parameters_for_step(model, step=7)
        fast = method.perturbed_values(model, step=7)
        seed = stable_seed("randbet", 2, 7)
        reference = perturbed_parameters(model, scheme, 0.05, seed, bound)
        params = dict(model.named_parameters())
        assert set(fast) == set(reference)
        changed = 0
        for name, value in fast.items():
            assert torch.equal(value, reference[name].detach()), name
            changed += int((value != params[name]).sum())
        assert changed > 0


def test_frozen_weights_keep_their_values_and_the_rest_learns():
    model = mlp()
    model.train()
    weight = dict(model.named_parameters())["layers.1.weight"]
    mask = torch.rand(weight.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    before = weight.detach().clone()
    refreshed = []
    images, labels = blobs().tensors
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    method = FrozenWeights({"layers.1.weight": mask}, refresh=lambda m: refreshed.append(1))
    history = fit(model, Batches(images, labels, 32, seed=0), method, optimizer, epochs=2)
    assert len(history.loss) == 2 and len(refreshed) == 8
    assert torch.equal(weight.detach()[mask], before[mask])
    assert not torch.equal(weight.detach()[~mask], before[~mask])


def test_the_loop_prints_nothing_and_reports_to_callbacks(capsys):
    steps, epochs = [], []
    config = TrainConfig(epochs=2, batch_size=32, lr=0.1, progress=True)
    train(mlp(), QuantScheme(), blobs(), config, device="cpu", on_step=steps.append,
          on_epoch=lambda epoch, history: epochs.append((epoch, len(history.loss))))  # fmt: skip
    assert capsys.readouterr() == ("", "")
    assert [(s.epoch, s.batch, s.batches) for s in steps][:5] == [
        (0, 0, 4),
        (0, 1, 4),
        (0, 2, 4),
        (0, 3, 4),
        (1, 0, 4),
    ]
    assert epochs == [(0, 1), (1, 2)]


def test_printer_writes_one_line_per_epoch_off_a_terminal():
    stream = io.StringIO()
    ticks = iter([0.0, 1.5, 4.0])
    printer = TrainingPrinter(stream, clock=lambda: next(ticks))
    assert printer.lines and not printer.bar
    config = TrainConfig(epochs=2, batch_size=64, lr=0.1)
    train(mlp(), QuantScheme(), blobs(), config, device="cpu",
          on_step=printer.on_step, on_epoch=printer.on_epoch)  # fmt: skip
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1/2  loss ") and lines[0].endswith("  1.5 s")
    assert lines[1].startswith("epoch 2/2  loss ") and lines[1].endswith("  2.5 s")


def test_bit_flip_training_against_any_fault_model():
    """BFIT through the one fault contract: each step's flips are the fault model's pattern for
    (seed, step) on the 1-bit codes, at its rates, with a straight-through gradient."""
    from bitrobust.faults import RandomBitErrors, StuckAtCells
    from bitrobust.quant import BINARY
    from bitrobust.train import BitFlipTraining

    torch.manual_seed(0)
    model = build_model("bnn-mlp", in_channels=1, image_size=8, num_classes=4, hidden=[256])
    method = BitFlipTraining(0.0, 0.0, seed=3, faults=RandomBitErrors(0.2))
    method.start(model, BINARY)
    clean = BitFlipTraining(0.0, 0.0, seed=3)
    clean.start(model, BINARY)
    plain = clean.parameters_for_step(model, 0)
    first = method.parameters_for_step(model, 0)
    assert method.binary and set(first) == set(plain)
    total = sum(int((first[n] != plain[n]).sum()) for n in method.binary)
    size = sum(plain[n].numel() for n in method.binary)
    assert abs(total / size - 0.2) < 0.02
    again = method.parameters_for_step(model, 0)
    assert all(torch.equal(first[n], again[n]) for n in first)  # a step's pattern is a seed
    other = method.parameters_for_step(model, 1)
    assert any(not torch.equal(first[n], other[n]) for n in method.binary)
    name = next(iter(method.binary))
    first[name].sum().backward()  # straight through to the float weight
    assert torch.equal(model.get_parameter(name).grad, torch.ones_like(first[name]))
    stuck = BitFlipTraining(0.0, 0.0, faults=StuckAtCells(0.5, stuck_at_one=1.0))
    stuck.start(model, BINARY)
    towards_plus = stuck.parameters_for_step(model, 0)
    for n in stuck.binary:  # cells stuck at 1 only ever turn −1 into +1
        assert bool((towards_plus[n] >= plain[n]).all())
