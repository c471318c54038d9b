"""Training methods, Err/RErr evaluation and checkpoints on tiny synthetic data."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from bitrobust.checkpoint import load_checkpoint, save_checkpoint
from bitrobust.errors import BitrobustError
from bitrobust.evaluate import (
    QuantizedDeployment,
    evaluate_bit_errors,
    predict,
    robust_error,
    run_trial,
)
from bitrobust.faults import RandomBitErrors
from bitrobust.models.architecture import Architecture
from bitrobust.quant import QuantizedModel, QuantScheme
from bitrobust.train import TrainConfig, perturbed_parameters, project_parameters, train


def blobs(n: int = 256, seed: int = 0) -> TensorDataset:
    """Four separable classes of 1×4×4 'images' in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    centers = torch.rand(4, 1, 4, 4, generator=g)
    images = (centers[labels] + 0.05 * torch.randn(n, 1, 4, 4, generator=g)).clamp(0, 1)
    return TensorDataset(images, labels)


ARCH = Architecture(
    model="mlp",
    dataset="blobs",
    in_channels=1,
    image_size=4,
    num_classes=4,
    options={"hidden": [32]},
)


def trained(method: str, **kwargs) -> tuple[torch.nn.Module, QuantScheme]:
    torch.manual_seed(0)
    model = ARCH.build()
    scheme = QuantScheme.preset("rquant", bits=8, w_max=kwargs.get("w_max"))
    config = TrainConfig(method=method, epochs=5, batch_size=32, lr=0.1, progress=False, **kwargs)
    train(model, scheme, blobs(), config, device="cpu")
    return model, scheme


@pytest.mark.parametrize(
    "method,kwargs",
    [
        ("normal", {}),
        ("clipping", {"w_max": 0.1}),
        ("randbet", {"w_max": 0.1, "bit_error_rate": 0.05}),
    ],
)
def test_every_method_learns_and_respects_its_bound(method, kwargs):
    model, scheme = trained(method, **kwargs)
    images, labels = blobs(seed=0).tensors
    preds = predict(model, QuantizedModel.from_module(model, scheme).dequantized(), images)
    assert (preds == labels).float().mean() > 0.9
    bound = kwargs.get("w_max", 1.0)
    assert all(p.abs().max() <= bound + 1e-6 for p in model.parameters())


def test_randbet_switches_perturbed_pass_on():
    torch.manual_seed(0)
    model = ARCH.build()
    scheme = QuantScheme.preset("rquant", bits=8, w_max=0.1)
    config = TrainConfig(
        method="randbet", epochs=3, batch_size=32, lr=0.1, w_max=0.1, progress=False
    )
    history = train(model, scheme, blobs(), config, device="cpu")
    assert history.perturbed_fraction[-1] > 0.5


def test_training_is_reproducible():
    a, _ = trained("randbet", w_max=0.1)
    b, _ = trained("randbet", w_max=0.1)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_perturbed_parameters_pass_gradient_straight_through():
    model = ARCH.build()
    project_parameters(model, 0.1)
    scheme = QuantScheme.preset("rquant", bits=8, w_max=0.1)
    params = perturbed_parameters(model, scheme, 0.05, seed=1, bound=0.1)
    total = sum(p.sum() for p in params.values())
    total.backward()
    for p in model.parameters():
        assert torch.allclose(p.grad, torch.ones_like(p))
    assert all(v.abs().max() <= 0.1 + 1e-6 for v in params.values())


def test_bad_configs_are_user_errors():
    with pytest.raises(BitrobustError):
        TrainConfig(method="adversarial")
    with pytest.raises(BitrobustError):
        TrainConfig(method="clipping")
    with pytest.raises(BitrobustError):
        TrainConfig(method="randbet", w_max=0.1, bit_error_rate=1.5)


def test_rerr_is_at_least_err_and_grows_with_rate():
    model, scheme = trained("normal")
    images, labels = blobs(seed=1).tensors
    rates = [0.0, 0.01, 0.3]
    report = evaluate_bit_errors(model, scheme, images, labels, rates, patterns=4).to_json()
    rows = report["results"]
    assert rows[0]["rerr_mean"] == pytest.approx(report["err"])  # no flips: RErr = Err
    for row in rows:
        assert row["rerr_min"] >= report["err"] - 1e-9
        assert row["rerr_min"] <= row["rerr_mean"] <= row["rerr_max"]
        assert row["patterns"] == 4
    assert rows[2]["rerr_mean"] > rows[0]["rerr_mean"]


def test_trial_is_a_pure_function_of_its_inputs():
    model, scheme = trained("normal")
    images, labels = blobs(seed=2).tensors
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = run_trial(QuantizedDeployment(model, scheme), RandomBitErrors(0.2), 7, (images, labels))
    again = run_trial(QuantizedDeployment(model, scheme), RandomBitErrors(0.2), 7, (images, labels))
    assert first == again
    assert first.flips > 0 and first.examples == len(labels)
    assert first.err_clean <= first.rerr and first.err_faulty <= first.rerr
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_robust_error_counts_either_mistake():
    labels = torch.tensor([0, 1, 2, 3])
    clean = torch.tensor([0, 1, 0, 3])
    faulty = torch.tensor([0, 0, 2, 3])
    assert robust_error(clean, faulty, labels) == 0.5


def test_evaluate_rejects_bad_rates():
    model, scheme = trained("normal")
    images, labels = blobs().tensors
    with pytest.raises(BitrobustError):
        evaluate_bit_errors(model, scheme, images, labels, [-0.1])
    with pytest.raises(BitrobustError):
        evaluate_bit_errors(model, scheme, images, labels, [0.1], patterns=0)


def test_checkpoint_round_trip(tmp_path):
    model, scheme = trained("clipping", w_max=0.1)
    path = save_checkpoint(tmp_path / "m.safetensors", model, ARCH, scheme, {"method": "clipping"})
    loaded = load_checkpoint(path)
    assert loaded.architecture == ARCH
    assert loaded.scheme == scheme
    assert loaded.training == {"method": "clipping"}
    for (na, pa), (nb, pb) in zip(model.state_dict().items(), loaded.model.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)


def test_corrupt_or_mismatched_checkpoints_are_user_errors(tmp_path):
    model, scheme = trained("normal")
    path = save_checkpoint(tmp_path / "m.safetensors", model, ARCH, scheme, {})
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:200])
    with pytest.raises(BitrobustError, match="corrupt"):
        load_checkpoint(broken)
    other = Architecture(**{**ARCH.__dict__, "options": {"hidden": [16]}})
    mismatched = save_checkpoint(tmp_path / "other.safetensors", other.build(), other, scheme, {})
    # Tamper: claim the 16-wide weights belong to the 32-wide architecture.
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(mismatched), framework="pt") as handle:
        meta = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    meta["architecture"] = meta["architecture"].replace("16", "32")
    save_file(tensors, str(mismatched), metadata=meta)
    with pytest.raises(BitrobustError, match="does not match"):
        load_checkpoint(mismatched)
    with pytest.raises(BitrobustError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")
