"""Binarized networks end to end: train → evaluate → bnn metrics, user errors (the bnn2021 study:
test_bnn2021_study.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bitrobust.cli import main


@pytest.fixture(scope="module")
def fmnist() -> Path:
    path = Path(os.environ.get("BITROBUST_DATA_DIR", ""))
    if not (path / "fashion-mnist").is_dir():
        pytest.skip(f"Fashion-MNIST not found under {path}")
    return path


def train_args(out: Path, *extra: str) -> list[str]:
    return [
        "train", "--dataset", "fashion-mnist", "--model", "bnn-mlp",
        "--model-option", "hidden=[32,32]", "--epochs", "1", "--train-limit", "1000",
        "--test-limit", "200", "--no-progress", "--json", "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def bnn_checkpoint(fmnist, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bnn") / "bnn.safetensors"
    assert main(train_args(path, "--method", "bitflip", "--bit-error-rate", "0.1")) == 0
    return path


def run_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def fails_with(capsys, args: list[str], message: str) -> None:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bitrobust: error:") and "\n" not in err, err
    assert message in err, err


def test_train_bitflip_defaults_for_binarized_models(bnn_checkpoint, capsys):
    from bitrobust.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(bnn_checkpoint)
    assert checkpoint.scheme.name == "binary"
    training = checkpoint.training
    assert (training["method"], training["optimizer"], training["lr"]) == ("bitflip", "adam", 1e-3)
    assert (training["batch_size"], training["weight_decay"]) == (256, 0.0)
    assert training["bit_error_rate"] == 0.1 and len(training["loss_history"]) == 1


def test_evaluate_works_on_binarized_checkpoints(bnn_checkpoint, capsys):
    payload = run_json(
        capsys, "evaluate", str(bnn_checkpoint), "--bit-error-rates", "0,0.1",
        "--patterns", "2", "--limit", "200", "--json",
    )  # fmt: skip
    assert payload["quantization"] == "binary"
    assert payload["results"][0]["rerr_mean"] == pytest.approx(payload["err"])
    asymmetric = run_json(
        capsys, "evaluate", str(bnn_checkpoint), "--zero-to-one-rates", "0.3",
        "--one-to-zero-rates", "0", "--patterns", "1", "--limit", "200", "--json",
    )  # fmt: skip
    assert asymmetric["results"][0]["zero_to_one"] == 0.3


def test_bnn_metrics_json(bnn_checkpoint, capsys):
    payload = run_json(
        capsys, "bnn", "metrics", str(bnn_checkpoint), "--limit", "100", "--neurons", "8",
        "--json",
    )  # fmt: skip
    assert payload["examples"] == 100 and 0 <= payload["accuracy"] <= 1
    assert [layer["layer"] for layer in payload["layers"]] == ["layers.2", "layers.3"]
    for layer in payload["layers"]:
        assert layer["margin_mean"] > 0 and layer["margin_tolerable_flips_mean"] >= 0
        assert layer["importance_variance"] >= 0 and layer["importance_neurons"] == 8
    gradient = run_json(
        capsys, "bnn", "metrics", str(bnn_checkpoint), "--limit", "50",
        "--importance", "gradient", "--json",
    )  # fmt: skip
    assert gradient["layers"][0]["importance_method"] == "gradient"
    capsys.readouterr()
    assert main(["bnn", "metrics", str(bnn_checkpoint), "--limit", "50"]) == 0
    assert "tolerable flips" in capsys.readouterr().out


def test_train_with_the_hinge_loss(fmnist, tmp_path, capsys):
    out = tmp_path / "hinge.safetensors"
    payload = run_json(capsys, *train_args(out, "--loss", "hinge", "--hinge-b", "16"))
    assert payload["loss"] == "hinge" and payload["method"] == "normal"


def test_user_errors_are_one_line(fmnist, bnn_checkpoint, tmp_path, capsys):
    out = str(tmp_path / "x.safetensors")
    fails_with(capsys, train_args(Path(out), "--method", "bitflip", "--bit-error-rate", "1.5"),
               "[0, 1]")  # fmt: skip
    fails_with(capsys, train_args(Path(out), "--method", "bitflip", "--one-to-zero-rate", "-1"),
               "[0, 1]")  # fmt: skip
    fails_with(capsys, train_args(Path(out), "--bits", "4"), "do not apply")
    fails_with(capsys, ["bnn", "metrics", str(bnn_checkpoint), "--limit", "0"], "--limit")
    plain = tmp_path / "plain.safetensors"
    args = train_args(plain)
    args[args.index("bnn-mlp")] = "mlp"
    fails_with(capsys, [*args, "--method", "bitflip"], "binary weights")
    assert main(args) == 0
    fails_with(capsys, ["bnn", "metrics", str(plain)], "binarized network")
    fails_with(capsys, ["bnn", "metrics", str(tmp_path / "missing.safetensors")], "does not exist")


def test_checkpoint_with_mismatched_layers_is_a_user_error(bnn_checkpoint, tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(bnn_checkpoint), framework="pt") as handle:
        meta = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    meta["architecture"] = meta["architecture"].replace("[32, 32]", "[32, 16]")
    tampered = tmp_path / "tampered.safetensors"
    save_file(tensors, str(tampered), metadata=meta)
    fails_with(capsys, ["bnn", "metrics", str(tampered)], "does not match")
    fails_with(capsys, ["evaluate", str(tampered), "--bit-error-rates", "0.1"], "does not match")
