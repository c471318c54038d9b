"""``bitrobust sram`` and ``bitrobust energy`` end to end on a tiny MNIST checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from bitrobust.checkpoint import save_checkpoint
from bitrobust.cli import main
from bitrobust.models.architecture import Architecture

SMALL_CHIP = ["--arrays", "4", "--rows", "64"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    data_dir = Path(os.environ.get("BITROBUST_DATA_DIR", ""))
    if not (data_dir / "mnist").is_dir():
        pytest.skip(f"MNIST not found under {data_dir}")
    from bitrobust.data import load_dataset, subset
    from bitrobust.quant import QuantScheme
    from bitrobust.train import TrainConfig, train

    architecture = Architecture("mlp", "mnist", 1, 28, 10, (0.1307,), (0.3081,), {"hidden": [16]})
    torch.manual_seed(0)
    model = architecture.build()
    scheme = QuantScheme.preset("rquant")
    train_set = subset(load_dataset("mnist", "train"), 2000)
    train(model, scheme, train_set, TrainConfig(epochs=1, progress=False), device="cpu")
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return save_checkpoint(path, model, architecture, scheme, {"method": "normal"})


@pytest.fixture(scope="module")
def chip_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("chips") / "chip.npz"
    assert main(["sram", "make-chip", "--seed", "0", "--out", str(path), *SMALL_CHIP]) == 0
    return path


def _json(capsys) -> dict:
    out = capsys.readouterr().out
    return json.loads(out)  # exactly one JSON object on stdout


def _error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_make_chip_and_show(tmp_path, capsys):
    out = tmp_path / "c.npz"
    args = ["sram", "make-chip", "--seed", "3", "--out", str(out), *SMALL_CHIP, "--json"]
    assert main(args) == 0
    made = _json(capsys)
    assert out.is_file() and made["chip"].startswith("synthetic3-")
    assert (made["arrays"], made["rows"], made["columns"]) == (4, 64, 64)
    assert main(["sram", "show", str(out), "--voltages", "0.80:0.90:0.05", "--json"]) == 0
    shown = _json(capsys)
    assert shown["chip"] == made["chip"]
    assert [r["voltage"] for r in shown["rates"]] == [0.8, 0.85, 0.9]
    rates = [r["bit_error_rate"] for r in shown["rates"]]
    assert rates == sorted(rates, reverse=True) and rates[0] > 0.03


def test_sram_evaluate_json(checkpoint, chip_file, tmp_path, capsys):
    capsys.readouterr()
    plot = tmp_path / "eval.png"
    args = ["sram", "evaluate", str(checkpoint), "--chip", str(chip_file)]
    args += ["--voltages", "0.80,0.85,0.90", "--placements", "2", "--limit", "300"]
    assert main([*args, "--plot", str(plot), "--json"]) == 0
    payload = _json(capsys)
    assert payload["dataset"] == "mnist" and payload["chip"].startswith("synthetic0-")
    assert [r["voltage"] for r in payload["results"]] == [0.8, 0.85, 0.9]
    for row in payload["results"]:
        assert row["rerr_mean"] >= payload["err"] - 1e-9 and row["patterns"] == 2
        assert row["energy_saving"] == pytest.approx(1 - row["voltage"] ** 2)
        assert row["zero_to_one"] + row["one_to_zero"] == pytest.approx(row["failing_cells"])
        # the same meaning as in `evaluate`: the probability that a stored bit flips
        assert row["bit_error_rate"] == pytest.approx(row["failing_cells"] / 2)
    assert plot.is_file() and payload["plot"] == str(plot)


def test_energy_json_reports_the_operating_point(checkpoint, chip_file, tmp_path, capsys):
    capsys.readouterr()
    plot = tmp_path / "energy.png"
    args = ["energy", str(checkpoint), "--budget", "1.0", "--chip", str(chip_file)]
    args += ["--voltages", "0.80:1.00:0.05", "--limit", "300", "--plot", str(plot), "--json"]
    assert main(args) == 0
    payload = _json(capsys)
    assert payload["met"] is True and payload["mode"] == "sram"
    assert {"voltage", "bit_error_rate", "energy_saving", "rerr"} <= set(payload)
    assert payload["rerr"] - payload["err"] <= 0.01 + 1e-9
    assert payload["energy_saving"] == pytest.approx(1 - payload["voltage"] ** 2)
    assert [r["voltage"] for r in payload["rows"]] == [0.8, 0.85, 0.9, 0.95, 1.0]
    assert plot.is_file()


def test_energy_with_random_errors_and_an_energy_table(checkpoint, capsys, tmp_path, monkeypatch):
    capsys.readouterr()
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    args = ["energy", str(checkpoint), "--budget", "2", "--random-errors", "--placements", "2"]
    args += ["--voltages", "0.85,0.9,1.0", "--energy-table", "0.8:0.6,1.0:1.0", "--limit", "200"]
    assert main([*args, "--json"]) == 0
    payload = _json(capsys)
    assert payload["mode"] == "random" and payload["energy_model"] == "table"
    assert payload["plot"] is None and payload["met"] is True
    assert list(workdir.iterdir()) == []  # without --plot no file is written anywhere


def test_energy_budget_not_met_says_so_and_reports_the_best(checkpoint, chip_file, capsys):
    capsys.readouterr()
    args = ["energy", str(checkpoint), "--budget", "0", "--chip", str(chip_file)]
    code = main([*args, "--voltages", "0.76,0.78", "--limit", "200", "--json"])
    assert code == 1
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert payload["met"] is False and payload["voltage"] is None
    assert payload["best"]["voltage"] in (0.76, 0.78)
    assert "no voltage" in captured.err and "best found" in captured.err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["sram", "evaluate", "CKPT", "--chip", "CHIP", "--voltages", "0.5"], "outside"),
        (["sram", "evaluate", "CKPT", "--chip", "BAD", "--voltages", "0.9"], "shape (2, arrays"),
        (["sram", "evaluate", "CKPT", "--chip", "CHIP", "--voltages", "abc"], "voltages"),
        (["energy", "CKPT", "--budget", "-1"], "--budget"),
        (["energy", "CKPT", "--budget", "1", "--chip", "CHIP", "--voltages", "0.7:1:0.1"], "0.7"),
        (["sram", "show", "missing.npz"], "does not exist"),
        (["sram", "make-chip", "--out", "x.npz", "--stuck-at-one", "2"], "stuck_at_one"),
    ],
)
def test_user_errors_are_one_line(args, needle, checkpoint, chip_file, tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 1, 4, 64), np.float32))
    names = {"CKPT": str(checkpoint), "CHIP": str(chip_file), "BAD": str(bad)}
    capsys.readouterr()
    assert main([names.get(a, a) for a in args]) == 2
    line = _error_line(capsys)
    assert line.startswith("bitrobust: error:") and needle in line, line


@pytest.mark.parametrize(
    "command", [["sram"], ["sram", "make-chip"], ["sram", "show"], ["sram", "evaluate"], ["energy"]]
)
def test_help_explains_every_option(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: bitrobust " + " ".join(command) in out


def test_make_chip_calibrated_to_the_bit_error_rate(tmp_path, capsys):
    """``--calibration bit-error-rate``: the chip's bit error rate (not its failing cells)
    follows the curve, so twice as many cells fail as with the default."""
    rows = {}
    for calibration in ("failing-cells", "bit-error-rate"):
        out = tmp_path / f"{calibration}.npz"
        args = ["sram", "make-chip", "--out", str(out), "--calibration", calibration]
        assert main([*args, *SMALL_CHIP, "--json"]) == 0
        rows[calibration] = {r["voltage"]: r for r in _json(capsys)["rates"]}
    cells, bits = rows["failing-cells"], rows["bit-error-rate"]
    voltage = 0.8
    assert bits[voltage]["failing_cells"] > 1.5 * cells[voltage]["failing_cells"]
