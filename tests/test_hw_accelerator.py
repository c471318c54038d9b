"""PE mappings, fault maps, model conversion and accuracy under permanent faults."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bitrobust.errors import BitrobustError
from bitrobust.faults import FaultPattern
from bitrobust.hw import (
    FaultMap,
    GPUArray,
    PEFaults,
    SystolicArray,
    calibrate,
    deploy,
    emulated_layers,
    evaluate_accelerator,
    exact,
    faulty_pes,
    lut_products,
    make_accelerator,
    mitchell,
    to_accelerator,
)
from bitrobust.hw.layers import EmulatedConv2d, EmulatedLinear
from bitrobust.models import build_model


def test_systolic_mapping_tiles_weights_onto_the_array():
    array = SystolicArray(4)
    pe = array.pe_index(10, 6)
    for k in range(10):
        for m in range(6):
            assert pe[k, m] == (k % 4) * 4 + m % 4
    assert array.num_pes == 16 and array.segment(10) == 4 and array.name == "tpu4"


def test_gpu_mapping_is_round_robin_over_macs():
    array = GPUArray(7)
    K, M = 5, 3
    pe = array.pe_index(K, M)
    flat = [int(pe[k, m]) for m in range(M) for k in range(K)]  # output-major MAC order
    assert flat == [i % 7 for i in range(K * M)]
    assert array.segment(K) == K and array.num_pes == 7
    with pytest.raises(BitrobustError, match="unknown array"):
        make_accelerator("fpga", 4)
    with pytest.raises(BitrobustError, match="positive"):
        SystolicArray(0)


def test_same_seed_same_fault_map_and_rates_nest():
    first = PEFaults(0.3, 14, 1).fault_map(SystolicArray(16), seed=5)
    again = PEFaults(0.3, 14, 1).fault_map(SystolicArray(16), seed=5)
    assert torch.equal(first.faulty, again.faulty) and first.num_faulty == round(0.3 * 256)
    other = PEFaults(0.3, 14, 1).fault_map(SystolicArray(16), seed=6)
    assert not torch.equal(first.faulty, other.faulty)
    low, high = faulty_pes(256, 0.1, 5), faulty_pes(256, 0.5, 5)
    assert bool((low <= high).all()) and int(high.sum()) == 128
    other_bit = PEFaults(0.3, 2, 0).fault_map(SystolicArray(16), seed=5)
    assert torch.equal(other_bit.faulty, first.faulty)  # same PEs for every bit and value
    assert faulty_pes(10, 0.0, 1).sum() == 0 and faulty_pes(10, 1.0, 1).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 1.5, "bit": 3, "stuck_at": 1}, "fault rate must be in"),
        ({"rate": -0.1, "bit": 3, "stuck_at": 1}, "fault rate must be in"),
        ({"rate": 0.1, "bit": 16, "stuck_at": 1}, "0..15"),
        ({"rate": 0.1, "bit": -1, "stuck_at": 1}, "0..15"),
        ({"rate": 0.1, "bit": 32, "stuck_at": 1, "site": "accumulator"}, "0..31"),
        ({"rate": 0.1, "bit": 3, "stuck_at": 2}, "0 or 1"),
    ],
)
def test_fault_model_validation(kwargs, message):
    with pytest.raises(BitrobustError, match=message):
        PEFaults(**kwargs)


def test_fault_model_name_encodes_parameters():
    assert PEFaults(0.3, 14, 1).name == "pe-sa1-b14-product-r0.3"
    assert PEFaults(0.1, 20, 0, "accumulator", "fc").name == "pe-sa0-b20-accumulator-r0.1-layerfc"


def test_faulty_pe_affects_exactly_its_weights_for_every_input():
    array = SystolicArray(3)
    faulty = torch.zeros(9, dtype=torch.bool)
    faulty[4] = True  # PE (1, 1)
    fmap = FaultMap(array, faulty, bit=12, stuck_at=1)
    fault = fmap.layer_fault("any", 7, 5)
    expected = torch.zeros((7, 5), dtype=torch.bool)
    expected[1::3, 1::3] = True
    assert torch.equal(fault.mask, expected)
    g = torch.Generator().manual_seed(0)
    act = torch.randint(0, 256, (20, 7), dtype=torch.uint8, generator=g)
    weight = torch.randint(0, 256, (7, 5), dtype=torch.uint8, generator=g)
    changed = lut_products(act, weight, exact(), fault) != lut_products(act, weight, exact())
    assert not changed[:, ~expected].any()
    assert changed[:, expected].any(dim=0).all()  # some input changes each faulty MAC
    assert fmap.layer_fault("any", 1, 1) is None  # PE 0 is healthy: no fault at all


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.GroupNorm(2, 4)
        self.head = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 5))

    def forward(self, x):
        return self.head(self.norm(self.conv(x)))


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return Tiny().eval(), torch.rand(12, 1, 8, 8)


def test_to_accelerator_keeps_a_module_and_replaces_gemm_layers(tiny):
    model, x = tiny
    converted = to_accelerator(model, "exact8u", calibration=x)
    assert isinstance(converted, nn.Module) and converted is not model
    layers = emulated_layers(converted)
    assert list(layers) == ["conv", "head.3"]
    assert isinstance(layers["conv"], EmulatedConv2d) and isinstance(
        layers["head.3"], EmulatedLinear
    )
    assert isinstance(converted.norm, nn.GroupNorm) and isinstance(model.conv, nn.Conv2d)
    with torch.no_grad():
        assert torch.allclose(converted(x), model(x), atol=0.1)
    assert not torch.isnan(layers["conv"].act_range).any()


def test_fault_free_accelerator_equals_the_plain_emulated_model(tiny):
    model, x = tiny
    deployment = deploy(model, mitchell(True), SystolicArray(4), calibration=x)
    plain = to_accelerator(model, mitchell(True), calibration=x)

    def run(pattern: FaultPattern) -> torch.Tensor:
        with torch.no_grad():
            return deployment.faulty_module(pattern)(x)

    with torch.no_grad():
        reference = plain(x)
    assert torch.equal(run(FaultPattern()), reference)
    assert torch.equal(run(PEFaults(0.0, 15, 1).sample(deployment.target, 0)), reference)
    faulty = PEFaults(0.5, 14, 1).sample(deployment.target, 3)
    assert not torch.equal(run(faulty), reference)
    with torch.no_grad():
        assert torch.equal(deployment.module(x), reference)  # the faults were never stored


def test_layer_restricted_faults(tiny):
    model, x = tiny
    deployment = deploy(model, exact(False), GPUArray(10), calibration=x)
    pattern = PEFaults(0.5, 13, 1, layer="head.3").sample(deployment.target, 0)
    assert set(pattern.datapath) == {"head.3"}
    with pytest.raises(BitrobustError, match="no emulated layer named 'fc'"):
        PEFaults(0.5, 13, 1, layer="fc").sample(deployment.target, 0)


def test_unsupported_layers_are_user_errors():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return x * self.scale

    class MyLinear(nn.Linear):  # e.g. a binarized layer: not an ordinary Linear
        pass

    for bad in (
        nn.Sequential(nn.Conv1d(1, 1, 3)),
        nn.Sequential(Custom(), nn.Linear(2, 2)),
        nn.Sequential(MyLinear(2, 2)),
    ):
        with pytest.raises(BitrobustError, match="cannot"):
            to_accelerator(bad, exact())
    with pytest.raises(BitrobustError, match="no Linear or Conv2d"):
        to_accelerator(nn.Sequential(nn.ReLU()), exact())
    with pytest.raises(BitrobustError, match="accelerator"):
        PEFaults(0.1, 1, 1).sample(deploy(nn.Linear(2, 2), exact()).target, 0)


def test_lenet_and_mlp_from_the_registry_convert(tiny):
    torch.manual_seed(0)
    for name, options in (("lenet5", {"norm": "regn"}), ("mlp", {"hidden": [16]})):
        model = build_model(
            name,
            in_channels=1,
            image_size=8,
            num_classes=10,
            input_mean=(0.5,),
            input_std=(0.25,),
            **options,
        ).eval()
        x = torch.rand(4, 1, 8, 8)
        converted = to_accelerator(model, exact(True), calibration=x)
        with torch.no_grad():
            assert converted(x).shape == (4, 10)
            assert torch.allclose(converted(x), model(x), atol=0.1)


def test_evaluate_accelerator_reports_accuracy_and_loss(tiny):
    model, x = tiny
    with torch.no_grad():
        labels = model(x).argmax(1)
    report = evaluate_accelerator(
        model,
        exact(False),
        x,
        labels,
        accelerator=SystolicArray(4),
        fault_model=PEFaults(0.5, 15, 1),
        patterns=3,
        seed=1,
        calibration=x,
    )
    assert report["accuracy_float"] == 1.0 and report["patterns"] == 3
    assert [row["seed"] for row in report["results"]] == [1, 2, 3]
    mean = sum(row["accuracy"] for row in report["results"]) / 3
    assert report["accuracy_mean"] == pytest.approx(mean)
    assert report["accuracy_loss_mean"] == pytest.approx(report["accuracy_fault_free"] - mean)
    again = evaluate_accelerator(
        model,
        exact(False),
        x,
        labels,
        accelerator=SystolicArray(4),
        fault_model=PEFaults(0.5, 15, 1),
        patterns=3,
        seed=1,
        calibration=x,
    )
    assert again["results"] == report["results"]  # seeded
    with pytest.raises(BitrobustError, match="no emulated layer"):
        evaluate_accelerator(
            model,
            exact(),
            x,
            labels,
            accelerator=SystolicArray(4),
            fault_model=PEFaults(0.5, 15, 1, layer="nope"),
        )


def test_calibrate_accepts_batches(tiny):
    model, x = tiny
    converted = to_accelerator(model, exact())
    calibrate(converted, [x[:6], x[6:]])
    whole = to_accelerator(model, exact(), calibration=x)
    for name, layer in emulated_layers(converted).items():
        assert torch.equal(layer.act_range, emulated_layers(whole)[name].act_range)
