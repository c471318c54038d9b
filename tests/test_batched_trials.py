"""Several memory fault patterns per pass over the data (run_trials' ``max_memory_mb``): the
same trials as one pattern per pass, the clean prefix of a chain model computed once, vmap
where it runs and the loop where it cannot."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import bitrobust.evaluate as evaluate
from bitrobust.bnn.layers import BinarizedBlock
from bitrobust.cli import main
from bitrobust.errors import BitrobustError
from bitrobust.evaluate import (
    DEFAULT_MAX_MEMORY_MB,
    QuantizedDeployment,
    chain_stages,
    clean_run,
    run_stages,
    run_trials,
)
from bitrobust.faults import RandomBitErrors
from bitrobust.models import build_model
from bitrobust.quant import QuantScheme

SCHEME = QuantScheme.preset("rquant", bits=8)
SEEDS = range(4)


def _data(shape: tuple[int, ...], n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 4, (n,), generator=g)


def _with_running_stats(model: nn.Module) -> nn.Module:
    """Non-trivial batch-norm statistics, so eval mode differs from batch statistics."""
    g = torch.Generator().manual_seed(2)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.randn(module.num_features, generator=g) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=g) + 0.5)
    return model.eval()


def _sequential_bn_cnn() -> nn.Module:
    torch.manual_seed(0)
    return _with_running_stats(
        nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
            nn.Linear(4 * 6 * 6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4),
        )
    )  # fmt: skip


def _built(name: str, **options) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(name, in_channels=1, image_size=8, num_classes=4, **options)
    return _with_running_stats(model)


MODELS = {
    "mlp": lambda: _built("mlp", hidden=[16, 12], norm="regn"),
    "lenet5-regn": lambda: _built("lenet5", norm="regn"),
    "lenet5-gn": lambda: _built("lenet5", norm="gn"),
    "lenet5-none": lambda: _built("lenet5", norm="none"),
    "sequential-bn-cnn": _sequential_bn_cnn,
}
FAULTS = [RandomBitErrors(0.01), RandomBitErrors(0.05)]


def _trials(model: nn.Module, faults, **options):
    deployment = QuantizedDeployment(model, SCHEME)
    data = _data((1, 8, 8))
    clean = clean_run(deployment, data, batch_size=25)
    return run_trials(deployment, faults, SEEDS, data, clean, batch_size=25, **options)


class _VmapCalls:
    """Counts the vmap calls of run_trials that returned (not fell back)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.returned = 0
        original = evaluate.vmap

        def counting(*args, **kwargs):
            mapped = original(*args, **kwargs)

            def call(*inner, **inner_kwargs):
                result = mapped(*inner, **inner_kwargs)
                self.returned += 1
                return result

            return call

        monkeypatch.setattr(evaluate, "vmap", counting)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_grouped_patterns_give_the_same_trials_as_one_per_pass(name, monkeypatch):
    last = [n for n, _ in MODELS[name]().named_parameters()][-1].rpartition(".")[0]
    faults = [*FAULTS, RandomBitErrors(0.05, layers=[last])]
    one_per_pass = _trials(MODELS[name](), faults, max_memory_mb=0)
    assert any(t.err_faulty != t.err_clean for rows in one_per_pass for t in rows)  # bites
    assert _trials(MODELS[name](), faults) == one_per_pass
    calls = _VmapCalls(monkeypatch)
    assert _trials(MODELS[name](), faults, vectorize=True) == one_per_pass
    assert calls.returned > 0  # vmap ran these models, batch norm on its running stats


def test_a_model_vmap_cannot_run_falls_back_to_the_loop(monkeypatch):
    """Binarized layers use a custom autograd function without a vmap rule."""
    torch.manual_seed(0)
    model = build_model("bnn-mlp", in_channels=1, image_size=8, num_classes=4, hidden=[16, 16])
    model = _with_running_stats(model)
    assert any(isinstance(module, BinarizedBlock) for module in model.modules())
    deployment = QuantizedDeployment(model, SCHEME)
    stacked = {n: torch.stack([p, p]) for n, p in deployment.qmodel.clean_parameters().items()}
    with pytest.raises(RuntimeError, match="vmap"):  # the premise: vmap cannot run it
        torch.func.vmap(lambda p, x: torch.func.functional_call(model, p, (x,)), in_dims=(0, None))(
            stacked, _data((1, 8, 8))[0]
        )
    one_per_pass = _trials(model, FAULTS, max_memory_mb=0)
    calls = _VmapCalls(monkeypatch)
    assert _trials(model, FAULTS, vectorize=True) == one_per_pass
    assert calls.returned == 0


class _Counted(nn.Module):
    """fc1 → ReLU → fc2 → ReLU → fc3, optionally with a residual around fc2 (then no chain);
    counts the calls of fc1."""

    def __init__(self, residual: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.act1 = nn.Linear(12, 16), nn.ReLU()
        self.fc2, self.act2 = nn.Linear(16, 16), nn.ReLU()
        self.fc3 = nn.Linear(16, 4)
        self.residual = residual
        self.fc1_calls = 0
        self.fc1.register_forward_hook(lambda *_: setattr(self, "fc1_calls", self.fc1_calls + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.fc1(x))
        h = self.act2(self.fc2(h)) + (h if self.residual else 0)
        return self.fc3(h)


def _counted_trials(model: _Counted, faults=(RandomBitErrors(0.05, layers=["fc3"]),), **options):
    deployment = QuantizedDeployment(model.eval(), SCHEME)
    data = _data((12,))
    clean = clean_run(deployment, data, batch_size=20)  # 3 batches
    model.fc1_calls = 0
    return run_trials(deployment, list(faults), SEEDS, data, clean, batch_size=20, **options)


CHECK = 2  # the chain is checked once against the model: one pass through each


def test_layers_before_the_first_faulty_one_run_once_per_batch():
    model = _Counted()
    one_per_pass = _counted_trials(model, max_memory_mb=0)
    assert model.fc1_calls == len(SEEDS) * 3
    assert _counted_trials(model) == one_per_pass
    assert model.fc1_calls == 3 + CHECK  # once per batch for all patterns


def test_patterns_of_a_group_share_the_prefix_up_to_their_own_first_faulty_layer():
    model = _Counted()
    mixed = [RandomBitErrors(0.05), RandomBitErrors(0.05, layers=["fc3"])]
    one_per_pass = _counted_trials(model, mixed, max_memory_mb=0)
    assert model.fc1_calls == 2 * len(SEEDS) * 3
    assert _counted_trials(model, mixed) == one_per_pass
    assert model.fc1_calls == len(SEEDS) * 3 + 3 + CHECK  # unrestricted ones from the input


def test_the_memory_budget_sets_how_many_patterns_share_a_pass():
    model = _Counted()
    per_pattern = sum(5 * p.numel() for p in model.parameters())  # codes + faulty float copy
    two_patterns = _counted_trials(model, max_memory_mb=2.5 * per_pattern / 2**20)
    assert model.fc1_calls == 2 * 3 + CHECK  # two groups of two patterns
    assert two_patterns == _counted_trials(model, max_memory_mb=0)
    assert model.fc1_calls == len(SEEDS) * 3


def test_a_model_that_is_no_chain_runs_whole():
    model = _Counted(residual=True)
    stages = chain_stages(model)
    assert [name for name, _ in stages] == ["fc1", "act1", "fc2", "act2", "fc3"]
    x = _data((12,))[0]
    params = dict(model.named_parameters())
    assert not torch.equal(run_stages(stages, params, x), model(x))
    one_per_pass = _counted_trials(model, max_memory_mb=0)
    assert _counted_trials(model) == one_per_pass
    assert model.fc1_calls == len(SEEDS) * 3 + CHECK  # every pattern from the input


class _FlattensInForward(nn.Module):
    """Children that do not chain: forward flattens between them (as SimpleNet once did)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.conv(x)).flatten(1))


def test_a_model_whose_children_cannot_run_in_a_row_runs_whole():
    torch.manual_seed(0)
    model = _FlattensInForward().eval()
    deployment = QuantizedDeployment(model, SCHEME)
    data = _data((1, 6, 6))
    clean = clean_run(deployment, data, batch_size=20)
    faults = [RandomBitErrors(0.05, layers=["fc"])]
    grouped = run_trials(deployment, faults, SEEDS, data, clean, batch_size=20)
    assert grouped == run_trials(deployment, faults, SEEDS, data, clean, 20, max_memory_mb=0)


def test_simplenet_is_a_chain():
    model = build_model("simplenet", in_channels=1, image_size=8, num_classes=4, width=2).eval()
    x = _data((1, 8, 8))[0]
    params = dict(model.named_parameters())
    assert torch.equal(run_stages(chain_stages(model), params, x), model(x))


def test_chain_stages_of_a_model_registry_mlp():
    model = build_model("mlp", in_channels=1, image_size=8, num_classes=4, hidden=[16])
    names = [name for name, _ in chain_stages(model)]
    assert names == ["normalize", "layers.0", "layers.1", "layers.2", "layers.3", "layers.4"]
    assert [name for name, _ in chain_stages(model, depth=1)] == ["normalize", "layers"]
    x = _data((1, 8, 8))[0]
    params = dict(model.named_parameters())
    assert torch.equal(run_stages(chain_stages(model), params, x), model(x))


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), True, "512"])
def test_bad_memory_budgets_are_refused(bad):
    with pytest.raises(BitrobustError, match="max_memory_mb"):
        _counted_trials(_Counted(), max_memory_mb=bad)


def test_cli_max_memory(tmp_path, data_dir, capsys):
    checkpoint = tmp_path / "m.safetensors"
    train = ["train", "--dataset", "mnist", "--model", "mlp", "--model-option", "hidden=[32]"]
    train += ["--bits", "8", "--epochs", "1", "--train-limit", "500", "--test-limit", "100"]
    assert main([*train, "--no-progress", "--out", str(checkpoint)]) == 0
    payloads = []
    for budget in ([], ["--max-memory", "0"]):
        capsys.readouterr()
        evaluate_args = ["evaluate", str(checkpoint), "--bit-error-rates", "0.01,0.05"]
        evaluate_args += ["--patterns", "3", "--limit", "300", "--json", *budget]
        assert main(evaluate_args) == 0
        payloads.append(json.loads(capsys.readouterr().out))
    assert payloads[0] == payloads[1]
    assert main(["evaluate", str(checkpoint), "--bit-error-rates", "0.01", "--max-memory", "-1"])
    assert "--max-memory" in capsys.readouterr().err


def test_cli_help_names_the_library_default(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert f"default {DEFAULT_MAX_MEMORY_MB:g}" in capsys.readouterr().out
