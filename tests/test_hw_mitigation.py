"""FaL-reTune, fault-aware pruning (bypass) and FAP+T on tiny emulated models."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from bitrobust.checkpoint import save_checkpoint
from bitrobust.cli import main
from bitrobust.data import load_dataset
from bitrobust.hw import (
    EmulatedLinear,
    LayerFault,
    PEFaults,
    SystolicArray,
    calibrate,
    deploy,
    exact,
    integer_gemm,
    load_multiplier,
)
from bitrobust.hw.accelerator import GPUArray
from bitrobust.hw.emulate import decode, force_bit
from bitrobust.hw.mitigation import (
    MitigationConfig,
    RetrainConfig,
    activation_histograms,
    candidate_codes,
    map_weights,
    mitigate,
    retrain,
)
from bitrobust.models.architecture import Architecture
from bitrobust.quant import QuantScheme
from bitrobust.train import TrainConfig, train


@pytest.mark.parametrize("multiplier", ["exact8u", "trunc8u_k2", "mitchell8s"])
def test_bypassed_macs_add_exactly_nothing(multiplier):
    mul = load_multiplier(multiplier)
    generator = torch.Generator().manual_seed(0)
    act = torch.randint(0, 256, (7, 12), generator=generator, dtype=torch.uint8)
    weight = torch.randint(0, 256, (12, 5), generator=generator, dtype=torch.uint8)
    mask = torch.rand(12, 5, generator=generator) < 0.4
    za, zw = (0, 0) if mul.signed else (17, 131)
    fault = LayerFault(mask=mask, bit=14, stuck_at=1, bypass=True)
    got = integer_gemm(act, weight, mul, za, zw, fault)
    table = torch.from_numpy(mul.table.astype("int64"))
    a = decode(act, mul.signed).to(torch.int64)
    w = decode(weight, mul.signed).to(torch.int64)
    products = table[act.long()[:, :, None], weight.long()[None, :, :]]  # (R, K, M)
    contribution = products - zw * a[:, :, None] - za * w[None] + za * zw
    expected = (contribution * (~mask)[None]).sum(dim=1)
    assert torch.equal(got.to(torch.int64), expected)


def _digits_model(hidden=32, epochs=3):
    train_set = load_dataset("digits", "train")
    torch.manual_seed(0)
    architecture = Architecture.for_dataset("mlp", "digits", {"hidden": [hidden]})
    model = architecture.build()
    config = TrainConfig(epochs=epochs, batch_size=64, progress=False)
    train(model, QuantScheme.preset("rquant", bits=8), train_set, config)
    return model, train_set.tensors


@pytest.fixture(scope="module")
def digits_model():
    return _digits_model()


def _accuracy(deployment, pattern, images, labels) -> float:
    predictions, _ = deployment.predict(pattern, (images, labels))
    return float((predictions == labels).float().mean())


def _state(module: nn.Module) -> dict[str, bytes]:
    return {k: v.detach().numpy().tobytes() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("bypass", [True, False])
def test_fap_prunes_exactly_the_faulty_weights(digits_model, bypass):
    model, (images, _) = digits_model
    deployment = deploy(model, "trunc8u_k2", SystolicArray(4), calibration=images[:300])
    pattern = PEFaults(0.5, 12, 1).sample(deployment.target, 0)
    untouched = _state(deployment.module)
    result = mitigate(deployment, pattern, MitigationConfig("fap", bypass=bypass))
    assert _state(deployment.module) == untouched  # the caller's deployment is not changed
    assert result.summary["pruned_weights"] == sum(
        int(f.mask.sum()) for f in pattern.datapath.values()
    )
    for name, layer in result.deployment.layers.items():
        mask = pattern.datapath[name].mask
        before = deployment.layers[name].weight_codes
        assert torch.all(layer.weight_codes[mask] == (layer.weight_zero & 0xFF))
        assert torch.equal(layer.weight_codes[~mask], before[~mask])
        assert result.pattern.datapath[name].bypass is bypass
        assert torch.all(layer.gemm_weight()[mask] == 0)  # the float weight of a pruned MAC
    if bypass:  # bypassed PEs: the stuck bit no longer shows
        other = PEFaults(0.5, 3, 0).sample(deployment.target, 0)  # the same PEs
        other_result = mitigate(deployment, other, MitigationConfig("fap"))
        with torch.no_grad():
            mine = result.deployment.faulty_module(result.pattern)(images[:50])
            theirs = other_result.deployment.faulty_module(other_result.pattern)(images[:50])
        assert torch.equal(mine, theirs)


def _brute_force_code(layer, histogram, q_w, bit, stuck_at):
    mul = layer.multiplier
    table = torch.from_numpy(mul.table.astype("int64"))
    faulty = force_bit(table, bit, stuck_at, 16, mul.signed)
    _, za = layer.input_qparams(torch.zeros(1))
    values = decode(torch.arange(256, dtype=torch.uint8), mul.signed).long()
    costs = {}
    for q in candidate_codes(mul.signed).tolist():
        total = 0.0
        for a in torch.nonzero(histogram).flatten().tolist():
            intended = table[a, q_w] - za * values[q_w]
            actual = faulty[a, q] - za * values[q]
            total += float(histogram[a]) * abs(int(actual - intended))
        costs[q] = total
    best = min(costs.values())
    return q_w if costs[q_w] <= best else min(q for q, c in costs.items() if c == best)


@pytest.mark.parametrize(
    ("multiplier", "bit", "stuck_at"), [("trunc8u_k2", 9, 1), ("mitchell8s", 13, 0)]
)
def test_mapping_picks_the_argmin_code(multiplier, bit, stuck_at):
    torch.manual_seed(1)
    linear = nn.Linear(6, 3)
    layer = EmulatedLinear.from_linear(linear, load_multiplier(multiplier))
    model = nn.Sequential(layer)
    data = torch.randn(40, 6) * 0.8 + 0.3
    calibrate(model, data)
    mask = torch.rand(6, 3, generator=torch.Generator().manual_seed(2)) < 0.5
    fault = LayerFault(mask=mask, bit=bit, stuck_at=stuck_at)
    histogram = activation_histograms(model, data[:20])["0"]
    original = layer.weight_codes.clone()
    bias = layer.bias.detach().clone()
    map_weights(layer, fault, histogram)
    assert torch.equal(layer.bias, bias)  # no compensation asked
    for k, m in zip(*torch.nonzero(mask, as_tuple=True)):
        expected = _brute_force_code(layer, histogram, int(original[k, m]), bit, stuck_at)
        assert int(layer.weight_codes[k, m]) == expected
    assert torch.equal(layer.weight_codes[~mask], original[~mask])


def test_falretune_never_worse_than_no_mitigation(digits_model):
    model, (images, labels) = digits_model
    subset_images, subset_labels = images[:400], labels[:400]
    for multiplier, bit, stuck_at in (("exact8u", 14, 1), ("trunc8u_k2", 12, 0), ("exact8s", 6, 1)):
        deployment = deploy(model, multiplier, SystolicArray(4), calibration=images)
        pattern = PEFaults(0.5, bit, stuck_at).sample(deployment.target, 0)
        before = _accuracy(deployment, pattern, subset_images, subset_labels)
        config = MitigationConfig("falretune", epochs=1, examples=400, lr=0.01)
        result = mitigate(deployment, pattern, config, images, labels)
        info = result.summary
        after = _accuracy(result.deployment, result.pattern, subset_images, subset_labels)
        assert after >= before, (multiplier, bit, stuck_at, info)
        assert info["retune_accuracy"]["none"] == pytest.approx(before)
        if (multiplier, bit) == ("exact8u", 14):  # a high stuck-at-1 bit: a large recovery
            assert after > before + 0.2
        assert _accuracy(deployment, pattern, subset_images, subset_labels) == before


def test_fap_t_retrains_with_pruned_weights_frozen(digits_model):
    model, (images, labels) = digits_model
    deployment = deploy(model, exact(False), SystolicArray(4), calibration=images[:300])
    pattern = PEFaults(0.5, 14, 1).sample(deployment.target, 0)
    config = MitigationConfig("fap-t", epochs=1, examples=300)
    result = mitigate(deployment, pattern, config, images, labels)
    info = result.summary
    assert info["pruned_weights"] > 0 and len(info["retune_loss"]) == 1
    for name, layer in result.deployment.layers.items():
        fault = result.pattern.datapath[name]
        assert torch.all(layer.weight_codes[fault.mask] == (layer.weight_zero & 0xFF))
        assert fault.bypass and not layer.weight.requires_grad


def test_retraining_adapts_to_the_multiplier_deterministically_on_any_array(digits_model):
    """Approximation-aware retraining: fault free, the same result twice and on every array
    (the array does not change a fault-free forward pass), the deployment left as it was."""
    model, (images, labels) = digits_model
    config = RetrainConfig(epochs=1, examples=300, lr=0.01)
    tpu = deploy(model, "mitchell8u", SystolicArray(4), calibration=images[:300])
    before = _state(tpu.module)
    first, again = (retrain(tpu, images, labels, config) for _ in range(2))
    gpu = retrain(deploy(model, "mitchell8u", GPUArray(16), images[:300]), images, labels, config)
    assert _state(first.module) == _state(again.module) == _state(gpu.module)
    assert _state(tpu.module) == before and _state(first.module) != before
    assert first.accelerator == tpu.accelerator and gpu.accelerator == GPUArray(16)
    no_faults = PEFaults(0.0, 0, 0).sample(tpu.target, 0)
    assert _accuracy(first, no_faults, images, labels) != _accuracy(tpu, no_faults, images, labels)


def test_config_is_checked():
    from bitrobust.errors import BitrobustError

    with pytest.raises(BitrobustError, match="unknown mitigation"):
        MitigationConfig("magic")
    with pytest.raises(BitrobustError, match="epochs"):
        dataclasses.replace(MitigationConfig(), epochs=-1)
    with pytest.raises(BitrobustError, match="retrain epochs must be an integer >= 1"):
        RetrainConfig(epochs=0)
    with pytest.raises(BitrobustError, match="retrain learning rate"):
        RetrainConfig(lr=0.0)


def test_cli_mitigate_adds_the_mitigated_accuracy(tmp_path, capsys, data_dir):
    architecture = Architecture.for_dataset("mlp", "mnist", {"hidden": [16]})
    torch.manual_seed(0)
    path = tmp_path / "mlp.safetensors"
    save_checkpoint(path, architecture.build(), architecture, QuantScheme(), {})
    capsys.readouterr()
    args = ["accelerator", "evaluate", str(path), "--multiplier", "trunc8u_k2", "--size", "4"]
    args += ["--fault-rate", "0.5", "--bit", "13", "--stuck-at", "1", "--patterns", "2"]
    args += ["--limit", "100", "--calibration", "200", "--mitigate", "falretune"]
    args += ["--retune-epochs", "1", "--retune-examples", "200", "--json"]
    assert main(args) == 0
    payload = json.loads(capsys.readouterr().out)
    for key in ("accuracy_mitigated_mean", "accuracy_mitigated_std", "recovery"):
        assert key in payload
    assert payload["mitigation"]["method"] == "falretune"
    assert payload["mitigation"]["epochs"] == 1 and payload["mitigation"]["examples"] == 200
    assert all("accuracy_mitigated" in row for row in payload["results"])
    assert main([*args[:-7], "--mitigate", "fap", "--json"]) == 0
    fap = json.loads(capsys.readouterr().out)
    assert fap["mitigation"]["method"] == "fap" and fap["mitigation"]["bypass"] is True
