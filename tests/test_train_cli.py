"""``bitrobust train``: bad inputs are one line and exit 2 before any data is loaded or any
training starts; progress goes to stderr, one line per epoch when it is not a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import bitrobust.data
import bitrobust.train
from bitrobust.checkpoint import load_checkpoint
from bitrobust.cli import main

GOOD = ["train", "--dataset", "digits", "--model-option", "hidden=[16]", "--epochs", "1"]


@pytest.fixture
def no_work(monkeypatch):
    """Loading data or training fails the test: every refusal must come before."""

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the inputs were checked")

    monkeypatch.setattr(bitrobust.data, "load_splits", forbidden)
    monkeypatch.setattr(bitrobust.train, "train", forbidden)


def refuse(capsys, args: list[str], needle: str) -> None:
    capsys.readouterr()
    assert main(args) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("bitrobust: error:") and needle in lines[0], lines[0]


@pytest.mark.parametrize(
    "option,value,needle",
    [
        ("--lr", "-1", "--lr"),
        ("--lr", "0", "--lr"),
        ("--lr", "nan", "--lr"),
        ("--lr", "inf", "--lr"),
        ("--train-limit", "0", "--train-limit"),
        ("--test-limit", "0", "--test-limit"),
        ("--epochs", "0", "--epochs"),
        ("--epochs", "-2", "--epochs"),
        ("--batch-size", "0", "--batch-size"),
        ("--batch-size", "-5", "--batch-size"),
        ("--bit-error-rate", "1.5", "--bit-error-rate"),
        ("--bit-error-rate", "-0.1", "--bit-error-rate"),
        ("--bit-error-rate", "nan", "--bit-error-rate"),
        ("--w-max", "0", "--w-max"),
        ("--w-max", "-0.1", "--w-max"),
        ("--w-max", "nan", "--w-max"),
        ("--weight-decay", "-1", "--weight-decay"),
        ("--hinge-b", "0", "--hinge-b"),
        ("--label-smoothing", "1", "--label-smoothing"),
        ("--label-smoothing", "-0.1", "--label-smoothing"),
        ("--label-smoothing", "nan", "--label-smoothing"),
        ("--fixed-pattern-seed", "-1", "--fixed-pattern-seed"),
        ("--fixed-pattern-seed", "1.5", "--fixed-pattern-seed"),
    ],
)
def test_bad_numbers_are_refused_up_front(capsys, tmp_path, no_work, option, value, needle):
    refuse(capsys, [*GOOD, "--out", str(tmp_path / "m.safetensors"), option, value], needle)


def test_ablation_options_out_of_place_are_refused_up_front(capsys, tmp_path, no_work):
    out = ["--out", str(tmp_path / "m.safetensors")]
    refuse(capsys, [*GOOD, *out, "--fixed-pattern-seed", "3"], "needs method 'randbet'")
    hinge = ["--loss", "hinge", "--label-smoothing", "0.1"]
    refuse(capsys, [*GOOD, *out, *hinge], "label smoothing applies to the cross_entropy loss")


def test_ablation_options_reach_the_training_config(capsys, tmp_path, monkeypatch):
    seen = []
    real_train = bitrobust.train.train

    def spy(model, scheme, train_set, config, **kwargs):
        seen.append(config)
        return real_train(model, scheme, train_set, config, **kwargs)

    monkeypatch.setattr(bitrobust.train, "train", spy)
    out = tmp_path / "m.safetensors"
    args = [*GOOD, "--method", "randbet", "--w-max", "0.1", "--train-limit", "40"]
    args += ["--test-limit", "20", "--batch-size", "16", "--no-progress", "--json"]
    args += ["--label-smoothing", "0.1", "--fixed-pattern-seed", "5", "--out", str(out)]
    assert main(args) == 0
    assert (seen[0].label_smoothing, seen[0].fixed_pattern_seed) == (0.1, 5)
    training = load_checkpoint(out).training
    assert (training["label_smoothing"], training["fixed_pattern_seed"]) == (0.1, 5)


def test_the_ablation_options_have_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--label-smoothing" in text and "--fixed-pattern-seed" in text


def test_bad_out_paths_are_refused_up_front(capsys, tmp_path, no_work):
    refuse(capsys, [*GOOD, "--out", ""], "--out")
    refuse(capsys, [*GOOD, "--out", "  "], "--out")
    refuse(capsys, [*GOOD, "--out", str(tmp_path)], "is a folder")
    refuse(capsys, [*GOOD, "--out", str(tmp_path / "missing" / "m.safetensors")], "not exist")
    refuse(capsys, [*GOOD, "--out", "/proc/bitrobust-m.safetensors"], "not writable")
    assert not list(tmp_path.iterdir())  # no <dir>.tmp, no probe left behind


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_refused_up_front(capsys, tmp_path, no_work):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        refuse(capsys, [*GOOD, "--out", str(folder / "m.safetensors")], "not writable")
    finally:
        folder.chmod(0o700)
    existing = tmp_path / "m.safetensors"
    existing.write_bytes(b"")
    existing.chmod(0o400)
    refuse(capsys, [*GOOD, "--out", str(existing)], "read-only")


def test_json_run_prints_one_line_per_epoch_on_stderr(capsys, tmp_path):
    out = tmp_path / "m.safetensors"
    args = [*GOOD[:-1], "2", "--train-limit", "300", "--test-limit", "100", "--json"]
    assert main([*args, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)  # stdout: exactly one JSON object
    assert payload["checkpoint"] == str(out) and out.exists()
    epochs = [line for line in captured.err.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"]
    assert all("loss" in line and line.endswith(" s") for line in epochs)
    assert main([*args, "--no-progress", "--out", str(out)]) == 0
    assert "epoch 1/2" not in capsys.readouterr().err


def test_bad_input_from_the_shell_is_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bitrobust.cli", *GOOD, "--lr", "-1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("bitrobust: error: --lr")
