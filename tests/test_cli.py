"""The command line end to end: train → evaluate on a data subset, JSON output, user errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bitrobust.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bitrobust.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "m.safetensors"
    code = main(
        [
            "train",
            "--dataset",
            "mnist",
            "--model",
            "mlp",
            "--model-option",
            "hidden=[64]",
            "--bits",
            "8",
            "--method",
            "randbet",
            "--w-max",
            "0.1",
            "--bit-error-rate",
            "0.01",
            "--epochs",
            "1",
            "--train-limit",
            "2000",
            "--test-limit",
            "500",
            "--lr",
            "0.05",
            "--no-progress",
            "--out",
            str(path),
        ]
    )
    assert code == 0
    return path


def test_train_then_evaluate_json(checkpoint, data_dir, capsys):
    capsys.readouterr()
    code = main(
        [
            "evaluate",
            str(checkpoint),
            "--bit-error-rates",
            "0.001,0.01",
            "--patterns",
            "3",
            "--limit",
            "500",
            "--json",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    payload = json.loads(out)  # exactly one JSON object on stdout
    assert payload["dataset"] == "mnist"
    assert 0 <= payload["err"] < 0.5
    assert [r["bit_error_rate"] for r in payload["results"]] == [0.001, 0.01]
    for row in payload["results"]:
        assert {"rerr_mean", "rerr_std", "rerr_min", "rerr_max", "patterns"} <= set(row)
        assert row["rerr_mean"] >= payload["err"] - 1e-9
        assert row["patterns"] == 3


def test_evaluate_per_direction_rates(checkpoint, data_dir, capsys):
    capsys.readouterr()
    code = main(
        [
            "evaluate",
            str(checkpoint),
            "--zero-to-one-rates",
            "0.0,0.02",
            "--one-to-zero-rates",
            "0.0,0.0",
            "--patterns",
            "2",
            "--limit",
            "200",
            "--json",
        ]
    )
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    first, second = payload["results"]
    assert first["rerr_mean"] == pytest.approx(payload["err"])
    assert second["zero_to_one"] == 0.02 and second["one_to_zero"] == 0.0


@pytest.mark.parametrize(
    "args,needle",
    [
        (["evaluate", "CKPT", "--bit-error-rates", "0.1,1.5"], "[0, 1]"),
        (["evaluate", "CKPT", "--bit-error-rates", "abc"], "rate"),
        (["evaluate", "missing.safetensors", "--bit-error-rates", "0.1"], "does not exist"),
        (["train", "--model", "nosuchnet", "--epochs", "0", "--out", "x.safetensors"], "nosuchnet"),
        (["train", "--bits", "9", "--epochs", "0", "--out", "x.safetensors"], "bits"),
        (["train", "--dataset", "imagenet", "--epochs", "0", "--out", "x.safetensors"], "imagenet"),
    ],
)
def test_user_errors_are_one_line_without_traceback(args, needle, checkpoint):
    args = [str(checkpoint) if a == "CKPT" else a for a in args]
    result = run_cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bitrobust: error:") and needle in lines[0]


def test_corrupt_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    result = run_cli("evaluate", str(bad), "--bit-error-rates", "0.1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "corrupt" in result.stderr


@pytest.mark.parametrize("command", ["train", "evaluate", "demo", "reproduce"])
def test_every_command_has_help(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert "usage: bitrobust " + command in result.stdout
