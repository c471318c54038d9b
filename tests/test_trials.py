"""One fault contract and pure trials: memory and datapath faults composed in one trial on an
approximate accelerator, untouched models, frozen parameters, data loaders, faulty modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bitrobust.errors import BitrobustError
from bitrobust.evaluate import (
    QuantizedDeployment,
    clean_run,
    evaluate_deployment,
    predict,
    run_trial,
)
from bitrobust.faults import FaultPattern, RandomBitErrors
from bitrobust.hw import PEFaults, SystolicArray, load_multiplier
from bitrobust.hw.deploy import AcceleratorDeployment, deploy
from bitrobust.hw.emulate import LayerFault, integer_gemm
from bitrobust.hw.layers import quantize_codes
from bitrobust.quant import QuantScheme


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def _data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 12, generator=g), torch.randint(0, 3, (n,), generator=g)


def _state(module: nn.Module) -> dict[str, bytes]:
    return {k: v.detach().cpu().numpy().tobytes() for k, v in module.state_dict().items()}


def test_a_weight_bit_flipped_in_memory_changes_what_the_faulty_pe_computes():
    """Memory and datapath faults in one trial on an approximate accelerator: the faulty PE
    multiplies the *flipped* weight code, then its product bit is stuck."""
    images, _ = _data()
    multiplier = load_multiplier("mitchell8u")
    deployment = deploy(_mlp(), multiplier, SystolicArray(2), calibration=images)
    layer = deployment.layers["1"]
    K, M = layer.gemm_shape
    mask = torch.zeros(K, M, dtype=torch.bool)
    mask[3, 5] = True  # one MAC (input 3, output 5) runs on the faulty PE
    pe_fault = LayerFault(mask=mask, bit=11, stuck_at=1)
    flip = torch.zeros(M, K, dtype=torch.uint8)
    flip[5, 3] = 0b1000_0000  # the MSB of that very weight, as stored in memory
    both = FaultPattern(masks={"1.weight": flip}, datapath={"1": pe_fault})
    memory_only = FaultPattern(masks={"1.weight": flip})
    pe_only = FaultPattern(datapath={"1": pe_fault})

    def first_layer(pattern: FaultPattern) -> torch.Tensor:
        outputs = {}
        hook = layer.register_forward_hook(lambda m, i, o: outputs.setdefault("out", o))
        try:
            deployment.predict(pattern, (images, torch.zeros(len(images), dtype=torch.long)))
        finally:
            hook.remove()
        return outputs["out"]

    # the reference: integer GEMM on the flipped codes with the stuck bit on that MAC
    scale, zero = layer.input_qparams(images)
    rows = quantize_codes(images, scale, zero, signed=False)
    codes = layer.weight_codes ^ flip.t()
    acc = integer_gemm(rows, codes, multiplier, zero, layer.weight_zero, pe_fault)
    expected = acc.to(torch.float32) * (scale * layer.weight_scale) + layer.bias
    assert torch.equal(first_layer(both), expected)
    assert not torch.equal(first_layer(both), first_layer(memory_only))
    assert not torch.equal(first_layer(both), first_layer(pe_only))


def test_random_bit_errors_plus_pe_faults_run_in_one_trial():
    images, labels = _data()
    deployment = deploy(_mlp(), "mitchell8u", SystolicArray(4), calibration=images)
    faults = RandomBitErrors(0.02) + PEFaults(0.25, bit=12, stuck_at=1)
    assert faults.name == f"{RandomBitErrors(0.02).name}+{PEFaults(0.25, 12, 1).name}"
    pattern = faults.sample(deployment.target, seed=3)
    assert pattern.num_flips() > 0 and set(pattern.datapath) == {"1", "3"}
    result = run_trial(deployment, faults, 3, (images, labels))
    assert result.flips == pattern.num_flips()
    assert result.faulty_macs == sum(int(f.mask.sum()) for f in pattern.datapath.values())
    assert result == run_trial(deployment, faults, 3, (images, labels))  # a pattern is a seed
    memory = RandomBitErrors(0.02).sample(deployment.target, seed=3)
    assert memory.num_flips() > 0  # the accelerator's weights are in the faulty memory


def test_pe_faults_need_an_accelerator_layout():
    images, labels = _data()
    with pytest.raises(BitrobustError, match="accelerator"):
        PEFaults(0.1, 3, 1).sample(QuantizedDeployment(_mlp(), QuantScheme()).target, 0)
    no_array = deploy(_mlp(), "exact8u", None, calibration=images)
    with pytest.raises(BitrobustError, match="accelerator"):
        run_trial(no_array, PEFaults(0.1, 3, 1), 0, (images, labels))
    with pytest.raises(BitrobustError, match="no emulated layer named 'x'"):
        PEFaults(0.1, 3, 1, layer="x").sample(deploy(_mlp(), "exact8u", SystolicArray(2)).target, 0)


@pytest.mark.parametrize("on_accelerator", [False, True])
def test_a_trial_leaves_the_model_untouched_even_when_it_fails(on_accelerator):
    images, labels = _data()
    model = _mlp()
    if on_accelerator:
        deployment = deploy(model, "mitchell8u", SystolicArray(4), calibration=images)
        faults = RandomBitErrors(0.05) + PEFaults(0.5, bit=13, stuck_at=1)
    else:
        deployment = QuantizedDeployment(model, QuantScheme.preset("rquant"))
        faults = RandomBitErrors(0.05)
    before = _state(deployment.module)
    run_trial(deployment, faults, 1, (images, labels))
    assert _state(deployment.module) == before

    def failing_loader():
        yield images[:10], labels[:10]
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        deployment.predict(faults.sample(deployment.target, 1), failing_loader())
    assert _state(deployment.module) == before
    clean = clean_run(deployment, (images, labels))
    assert run_trial(deployment, faults, 1, (images, labels), clean).seed == 1  # still works


def test_a_frozen_model_gets_faults():
    model = _mlp().requires_grad_(False)
    images, labels = _data()
    deployment = QuantizedDeployment(model, QuantScheme.preset("rquant"))
    assert len(deployment.qmodel.tensors) == 4
    result = run_trial(deployment, RandomBitErrors(0.1), 0, (images, labels))
    assert result.flips > 0


def test_a_model_with_nothing_stored_is_refused():
    class NothingStored(nn.Module):
        quantization_scheme = None

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(12, 3)

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(BitrobustError, match="no stored"):
        QuantizedDeployment(NothingStored(), QuantScheme())


def test_a_data_loader_gives_the_same_results_as_tensors():
    images, labels = _data(100)
    deployment = QuantizedDeployment(_mlp(), QuantScheme.preset("rquant"))
    faults = [RandomBitErrors(0.01), RandomBitErrors(0.1)]
    from_tensors = evaluate_deployment(deployment, (images, labels), faults, patterns=3).to_json()
    loader = DataLoader(TensorDataset(images, labels), batch_size=7)
    from_loader = evaluate_deployment(deployment, loader, faults, patterns=3).to_json()
    assert from_loader == from_tensors
    shuffled = DataLoader(TensorDataset(images, labels), batch_size=7, shuffle=True)
    with pytest.raises(BitrobustError, match="changed between passes"):
        evaluate_deployment(deployment, shuffled, [RandomBitErrors(0.3)], patterns=2)


def test_evaluation_rows_report_rates_with_one_meaning():
    images, labels = _data()
    deployment = QuantizedDeployment(_mlp(), QuantScheme.preset("rquant"))
    faults = [RandomBitErrors(zero_to_one=0.02, one_to_zero=0.06)]
    evaluation = evaluate_deployment(deployment, (images, labels), faults, patterns=2)
    assert [t.seed for t in evaluation.results[0].trials] == [0, 1]  # typed results
    row = evaluation.to_json()["results"][0]
    assert row["bit_error_rate"] == pytest.approx(0.04)  # (p01 + p10) / 2
    assert (row["zero_to_one"], row["one_to_zero"]) == (0.02, 0.06)
    assert row["rerr_ci_low"] <= row["rerr_mean"] <= row["rerr_ci_high"]


def test_predict_restores_the_train_or_eval_mode():
    model = _mlp().train()
    images, _ = _data()
    predict(model, dict(model.named_parameters()), images)
    assert model.training
    predict(model.eval(), dict(model.named_parameters()), images)
    assert not model.training


@pytest.mark.parametrize("on_accelerator", [False, True])
def test_the_faulty_model_as_a_module(on_accelerator):
    images, labels = _data()
    if on_accelerator:
        deployment: QuantizedDeployment | AcceleratorDeployment = deploy(
            _mlp(), "mitchell8u", SystolicArray(4), calibration=images
        )
        faults = RandomBitErrors(0.05) + PEFaults(0.5, bit=13, stuck_at=1)
    else:
        deployment = QuantizedDeployment(_mlp(), QuantScheme.preset("rquant"))
        faults = RandomBitErrors(0.05)
    pattern = faults.sample(deployment.target, 4)
    faulty = deployment.faulty_module(pattern)
    with torch.no_grad():
        mine = faulty(images).argmax(1)
    assert torch.equal(mine, deployment.predict(pattern, (images, labels))[0])
    assert isinstance(faulty, nn.Module) and faulty.state_dict()


def test_random_errors_plus_a_chip_plus_pe_faults_in_one_trial():
    """The issue's example: ``RandomBitErrors(p) + ProfiledSRAM(chip, V) + PEFaults(...)`` on
    an emulated approximate accelerator, in one trial, reproducibly."""
    from bitrobust.faults import ProfiledSRAM, make_chip

    images, labels = _data()
    deployment = deploy(_mlp(), "mitchell8u", SystolicArray(4), calibration=images)
    chip = make_chip(0, arrays=2, rows=16, columns=64)
    faults = RandomBitErrors(0.02) + ProfiledSRAM(chip, 0.8) + PEFaults(0.3, bit=13, stuck_at=1)
    pattern = faults.sample(deployment.target, seed=2)
    chip_only = ProfiledSRAM(chip, 0.8).sample(deployment.target, seed=2)
    assert chip_only.num_flips() > 0 and pattern.num_flips() > 0 and pattern.datapath
    result = run_trial(deployment, faults, 2, (images, labels))
    assert result.flips == pattern.num_flips() and result.faulty_macs > 0
    assert result == run_trial(deployment, faults, 2, (images, labels))
