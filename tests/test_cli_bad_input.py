"""Bad input on the command line: one ``bitrobust: error:`` line, exit status 2, no work done."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from bitrobust.checkpoint import load_checkpoint, save_checkpoint
from bitrobust.cli import main
from bitrobust.cli.common import MAX_PATTERNS, progress_printer
from bitrobust.errors import BitrobustError
from bitrobust.faults import make_chip, save_chip
from bitrobust.hw.catalogue import USER_DIR_ENV
from bitrobust.hw.tables import exact_table
from bitrobust.models.architecture import Architecture
from bitrobust.quant import QuantScheme

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is available here")


def _architecture(dataset: str, channels: int, size: int) -> Architecture:
    return Architecture(
        model="mlp",
        dataset=dataset,
        in_channels=channels,
        image_size=size,
        num_classes=10,
        input_mean=(0.5,) * channels,
        input_std=(0.3,) * channels,
        options={"hidden": [8]},
    )


def _save(path, architecture: Architecture, poison: float | None = None) -> None:
    torch.manual_seed(0)
    model = architecture.build()
    if poison is not None:
        with torch.no_grad():
            model.layers[1].weight[0, 0] = poison
    save_checkpoint(path, model, architecture, QuantScheme.preset("rquant", bits=8), {})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A folder with a good checkpoint and chip and a collection of broken inputs."""
    d = tmp_path_factory.mktemp("bad-input")
    mnist = _architecture("mnist", 1, 28)
    _save(d / "ok.safetensors", mnist)
    _save(d / "nan.safetensors", mnist, float("nan"))
    _save(d / "inf.safetensors", mnist, float("inf"))
    _save(d / "cifar.safetensors", _architecture("cifar10", 3, 32))
    good = (d / "ok.safetensors").read_bytes()
    (d / "truncated.safetensors").write_bytes(good[: len(good) // 2])
    (d / "text.safetensors").write_text("not a safetensors file")
    (d / "afile").write_text("x")
    save_chip(make_chip(0, arrays=2), d / "chip.npz")
    (d / "garbage.npz").write_bytes(b"garbage")
    np.savez(d / "wrongkeys.npz", foo=np.zeros(3))
    np.save(d / "table.npy", exact_table(False))
    np.save(d / "small.npy", np.zeros((3, 3), dtype=np.int32))
    (d / "short.bin").write_bytes(b"\0" * 10)
    np.save(d / "mul8u_trav.npy", exact_table(False))
    (d / "mul8u_trav.json").write_text(json.dumps({"name": "../../trav"}))
    np.save(d / "mul8u_neg.npy", exact_table(False))
    (d / "mul8u_neg.json").write_text(json.dumps({"power_mw": -3}))
    (d / "mul8u_x.c").write_text("unsigned mul8u_x(unsigned a, unsigned b) { return a * b; }\n")
    return d


EVAL = ["evaluate", "{d}/ok.safetensors", "--bit-error-rates", "0.01"]
SRAM = ["sram", "evaluate", "{d}/ok.safetensors", "--chip", "{d}/chip.npz", "--voltages", "0.9"]
ENERGY = ["energy", "{d}/ok.safetensors", "--budget", "1"]
BNN = ["bnn", "metrics", "{d}/ok.safetensors"]
ACC = ["accelerator", "evaluate", "{d}/ok.safetensors", "--multiplier", "exact8u"]
FAULTS = ["--fault-rate", "0.1", "--bit", "3", "--stuck-at", "1"]
IMPORT = ["multipliers", "import", "{d}/table.npy", "--output", "{d}/catalogue"]
CHIP = ["sram", "make-chip", "--out", "{d}/new.npz"]

CASES = {
    # the review's findings
    "import-name-traversal": [*IMPORT, "--name", "../../evil"],
    "import-c-name-traversal": ["multipliers", "import", "{d}/mul8u_x.c", "--name", "../evil"],
    "import-name-separator": [*IMPORT, "--name", "a/b"],
    "import-name-dotdot": [*IMPORT, "--name", ".."],
    "import-name-empty": [*IMPORT, "--name", ""],
    "import-power-negative": [*IMPORT, "--power", "-1"],
    "import-power-nan": [*IMPORT, "--power", "nan"],
    "import-area-inf": [*IMPORT, "--area", "inf"],
    "device-bogus": [*EVAL, "--device", "bogus"],
    "device-meta": [*EVAL, "--device", "meta"],
    "device-bad-index": [*EVAL, "--device", "cuda:-1"],
    "evaluate-batch-size-0": [*EVAL, "--batch-size", "0"],
    "evaluate-batch-size-negative": [*EVAL, "--batch-size", "-5"],
    "evaluate-patterns-0": [*EVAL, "--patterns", "0"],
    "evaluate-patterns-absurd": [*EVAL, "--patterns", str(100 * MAX_PATTERNS)],
    "evaluate-patterns-not-int": [*EVAL, "--patterns", "1.5"],
    "evaluate-limit-0": [*EVAL, "--limit", "0"],
    "evaluate-seed-negative": [*EVAL, "--seed", "-1"],
    "reproduce-out-dir-file": ["reproduce", "stutz2021", "--quick", "--out-dir", "{d}/afile"],
    "reproduce-out-dir-under-file": ["reproduce", "bnn2021", "--out-dir", "{d}/afile/sub"],
    "reproduce-device-bogus": ["reproduce", "stutz2021", "--out-dir", "{d}/r", "--device", "x"],
    "demo-out-dir-file": ["demo", "--out-dir", "{d}/afile"],
    "accelerator-size-huge": [*ACC, "--size", "100000"],
    "accelerator-gpu-units-huge": [*ACC, "--array", "gpu", "--size", str(2**21)],
    "checkpoint-nan": [*EVAL],
    "checkpoint-inf": [*EVAL],
    "checkpoint-truncated": [*EVAL],
    "checkpoint-not-safetensors": [*EVAL],
    "checkpoint-missing": [*EVAL],
    "checkpoint-folder": [*EVAL],
    # beyond the list: rates, names, files, shapes, sizes
    "evaluate-rate-above-1": ["evaluate", "{d}/ok.safetensors", "--bit-error-rates", "1.5"],
    "evaluate-rate-nan": ["evaluate", "{d}/ok.safetensors", "--bit-error-rates", "nan"],
    "evaluate-rates-empty": ["evaluate", "{d}/ok.safetensors", "--bit-error-rates", ","],
    "evaluate-rates-unequal": [
        *EVAL[:2],
        "--zero-to-one-rates",
        "0.1,0.2",
        "--one-to-zero-rates",
        "0.1",
    ],  # fmt: skip
    "evaluate-no-rates": ["evaluate", "{d}/ok.safetensors"],
    "evaluate-dataset-unknown": [*EVAL, "--dataset", "bogus"],
    "evaluate-cifar-checkpoint-on-mnist": [
        "evaluate",
        "{d}/cifar.safetensors",
        "--bit-error-rates",
        "0.01",
        "--dataset",
        "mnist",
    ],  # fmt: skip
    "sram-evaluate-placements-0": [*SRAM, "--placements", "0"],
    "sram-evaluate-placements-absurd": [*SRAM, "--placements", str(100 * MAX_PATTERNS)],
    "sram-evaluate-batch-size-0": [*SRAM, "--batch-size", "0"],
    "sram-evaluate-device-bogus": [*SRAM, "--device", "bogus"],
    "sram-evaluate-voltage-outside-chip": [*SRAM[:-1], "0.5"],
    "sram-evaluate-chip-missing": [*SRAM[:4], "{d}/missing.npz", *SRAM[5:]],
    "sram-evaluate-chip-garbage": [*SRAM[:4], "{d}/garbage.npz", *SRAM[5:]],
    "sram-evaluate-plot-under-file": [*SRAM, "--plot", "{d}/afile/plot.png"],
    "sram-evaluate-nan-checkpoint": ["sram", "evaluate", "{d}/nan.safetensors", *SRAM[3:]],
    "sram-show-chip-wrong-arrays": ["sram", "show", "{d}/wrongkeys.npz"],
    "sram-show-voltage-nan": ["sram", "show", "{d}/chip.npz", "--voltages", "nan"],
    "sram-show-voltage-grid-huge": ["sram", "show", "{d}/chip.npz", "--voltages", "0.8:1:1e-9"],
    "make-chip-arrays-0": [*CHIP, "--arrays", "0"],
    "make-chip-too-large": [*CHIP, "--arrays", "100000", "--rows", "100000"],
    "make-chip-seed-negative": [*CHIP, "--seed", "-1"],
    "make-chip-out-under-file": ["sram", "make-chip", "--out", "{d}/afile/chip.npz"],
    "make-chip-out-folder": ["sram", "make-chip", "--out", "{d}"],
    "make-chip-correlation-nan": [*CHIP, "--row-correlation", "nan"],
    "energy-budget-negative": [*ENERGY[:2], "--budget", "-1"],
    "energy-baseline-err-nan": [*ENERGY, "--baseline-err", "nan"],
    "energy-baseline-err-above-100": [*ENERGY, "--baseline-err", "500"],
    "energy-synthetic-chips-0": [*ENERGY, "--synthetic-chips", "0"],
    "energy-placements-negative": [*ENERGY, "--placements", "-2"],
    "energy-batch-size-0": [*ENERGY, "--batch-size", "0"],
    "energy-device-bogus": [*ENERGY, "--device", "bogus"],
    "energy-checkpoint-missing": ["energy", "{d}/missing.safetensors", "--budget", "1"],
    "energy-chip-garbage": [*ENERGY, "--chip", "{d}/garbage.npz"],
    "bnn-not-binarized": [*BNN],
    "bnn-neurons-0": [*BNN, "--neurons", "0"],
    "bnn-limit-negative": [*BNN, "--limit", "-1"],
    "bnn-batch-size-0": [*BNN, "--batch-size", "0"],
    "bnn-device-bogus": [*BNN, "--device", "bogus"],
    "bnn-nan-checkpoint": ["bnn", "metrics", "{d}/nan.safetensors"],
    "multipliers-show-unknown": ["multipliers", "show", "nosuch"],
    "multipliers-show-bad-shape": ["multipliers", "show", "{d}/small.npy"],
    "multipliers-show-short-bin": ["multipliers", "show", "{d}/short.bin"],
    "multipliers-show-missing-file": ["multipliers", "show", "{d}/missing.npy"],
    "import-name-builtin": [*IMPORT, "--name", "exact8u"],
    "import-name-npy-suffix": [*IMPORT, "--name", "x.npy"],
    "import-default-name-traversal": ["multipliers", "import", "{d}/mul8u_trav.npy"],
    "import-sidecar-power-negative": ["multipliers", "import", "{d}/mul8u_neg.npy"],
    "import-output-file": [*IMPORT[:3], "--output", "{d}/afile"],
    "import-unknown-suffix": ["multipliers", "import", "{d}/afile"],
    "accelerator-size-0": [*ACC, "--size", "0"],
    "accelerator-multiplier-unknown": [*ACC[:4], "nosuch"],
    "accelerator-multiplier-short-bin": [*ACC[:4], "{d}/short.bin"],
    "accelerator-fault-rate-above-1": [*ACC, "--fault-rate", "2"],
    "accelerator-fault-rate-nan": [*ACC, "--fault-rate", "nan"],
    "accelerator-bit-out-of-range": [*ACC, "--fault-rate", "0.1", "--bit", "16", "--stuck-at", "0"],
    "accelerator-fault-without-bit": [*ACC, "--fault-rate", "0.1"],
    "accelerator-layer-unknown": [*ACC, *FAULTS, "--layer", "nosuch"],
    "accelerator-patterns-0": [*ACC, "--patterns", "0"],
    "accelerator-batch-size-0": [*ACC, "--batch-size", "0"],
    "accelerator-calibration-negative": [*ACC, "--calibration", "-1"],
    "accelerator-retune-epochs-negative": [
        *ACC,
        *FAULTS,
        "--mitigate",
        "fap-t",
        "--retune-epochs",
        "-1",
    ],  # noqa: E501
    "accelerator-retune-lr-nan": [*ACC, *FAULTS, "--mitigate", "fap-t", "--retune-lr", "nan"],
    "accelerator-retune-examples-0": [
        *ACC,
        *FAULTS,
        "--mitigate",
        "fap-t",
        "--retune-examples",
        "0",
    ],  # noqa: E501
    "accelerator-mitigate-without-faults": [*ACC, "--mitigate", "fap"],
    "accelerator-device-bogus": [*ACC, "--device", "bogus"],
    "accelerator-cifar-checkpoint-on-mnist": [
        "accelerator",
        "evaluate",
        "{d}/cifar.safetensors",
        "--multiplier",
        "exact8u",
        "--dataset",
        "mnist",
    ],  # fmt: skip
}

CHECKPOINT_FILES = {
    "checkpoint-nan": "nan.safetensors",
    "checkpoint-inf": "inf.safetensors",
    "checkpoint-truncated": "truncated.safetensors",
    "checkpoint-not-safetensors": "text.safetensors",
    "checkpoint-missing": "missing.safetensors",
    "checkpoint-folder": "",
}


def _argv(case: str, folder) -> list[str]:
    argv = [part.format(d=folder) for part in CASES[case]]
    if case in CHECKPOINT_FILES:
        argv[1] = str(folder / CHECKPOINT_FILES[case])
    return argv


def _expect_one_line_error(argv: list[str], capsys) -> str:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bitrobust: error: "), err
    return lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_status_2(case, files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(USER_DIR_ENV, str(tmp_path / "catalogue"))
    before = sorted(p.name for p in files.iterdir())
    _expect_one_line_error(_argv(case, files), capsys)
    assert sorted(p.name for p in files.iterdir()) == before  # nothing written
    assert not (tmp_path / "catalogue").exists()
    assert not (files.parent / "evil.npy").exists() and not (files.parent / "trav.npy").exists()


@NO_CUDA
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_gpu(device, files, capsys):
    argv = [*_argv("device-bogus", files)[:-1], device]
    line = _expect_one_line_error(argv, capsys)
    assert "no CUDA GPU" in line


def test_messages_name_the_option_and_the_tensor(files, capsys):
    line = _expect_one_line_error(_argv("evaluate-batch-size-0", files), capsys)
    assert "--batch-size" in line and "'0'" in line
    line = _expect_one_line_error(_argv("checkpoint-nan", files), capsys)
    assert "nan.safetensors" in line and "layers.1.weight" in line and "NaN" in line
    line = _expect_one_line_error(_argv("accelerator-size-huge", files), capsys)
    assert "--size 1,024" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to read-only folders")
def test_read_only_out_dir(files, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        line = _expect_one_line_error(["demo", "--out-dir", str(locked / "demo")], capsys)
    finally:
        locked.chmod(0o700)
    assert "read-only" in line


def test_load_checkpoint_refuses_non_finite_weights(files):
    with pytest.raises(BitrobustError, match=r"infinite values in tensor 'layers\.1\.weight'"):
        load_checkpoint(files / "inf.safetensors")
    assert load_checkpoint(files / "ok.safetensors").architecture.model == "mlp"


def test_valid_import_name_is_accepted(files, tmp_path, capsys):
    out = tmp_path / "catalogue"
    argv = ["multipliers", "import", str(files / "table.npy"), "--name", "my_mul-1.2"]
    assert main([*argv, "--output", str(out), "--power", "0.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["table"] == str(out / "my_mul-1.2.npy")


def test_progress_printer_throttles_and_always_prints_the_end(capsys):
    now = [100.0]
    report = progress_printer(True, "evaluate", interval=1.0, clock=lambda: now[0])
    for done in range(1, 11):
        now[0] += 0.25
        report(done, 10, "")
    lines = capsys.readouterr().err.splitlines()
    # printed at t=0.25 (first), t=1.25 (a second later), t=2.25, and at the end
    assert lines[0] == "evaluate: 1/10, elapsed 0 s, ETA 2 s"
    assert len(lines) == 4
    assert lines[-1] == "evaluate: 10/10, elapsed 2 s"
    silent = progress_printer(False, "x", clock=lambda: now[0])
    silent(1, 1, "done")
    assert capsys.readouterr().err == ""


def test_progress_printer_long_estimate(capsys):
    now = [0.0]
    report = progress_printer(True, "sweep", clock=lambda: now[0])
    now[0] = 30.0
    report(1, 1000, "p=0.01")
    assert capsys.readouterr().err.strip() == "sweep: 1/1000, elapsed 30 s, ETA 8 h 19 min (p=0.01)"
