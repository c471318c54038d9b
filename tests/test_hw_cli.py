"""``bitrobust multipliers`` and ``bitrobust accelerator evaluate`` end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from bitrobust.checkpoint import save_checkpoint
from bitrobust.cli import main
from bitrobust.hw.catalogue import USER_DIR_ENV, evoapprox_catalogue
from bitrobust.hw.tables import exact_table
from bitrobust.models.architecture import Architecture
from bitrobust.quant import QuantScheme


@pytest.fixture(autouse=True)
def user_dir(tmp_path, monkeypatch):
    folder = tmp_path / "catalogue"
    monkeypatch.setenv(USER_DIR_ENV, str(folder))
    return folder


@pytest.fixture
def checkpoint(tmp_path):
    architecture = Architecture(
        model="mlp",
        dataset="mnist",
        in_channels=1,
        image_size=28,
        num_classes=10,
        input_mean=(0.1307,),
        input_std=(0.3081,),
        options={"hidden": [16]},
    )
    torch.manual_seed(0)
    path = tmp_path / "mlp.safetensors"
    save_checkpoint(path, architecture.build(), architecture, QuantScheme(), {})
    return path


def run_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one JSON object
    return json.loads(out)


def run_error(capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(list(args)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bitrobust: error: ") and "\n" not in err
    return err


def test_list_and_show(capsys, evoapprox_dir):
    rows = run_json(capsys, "multipliers", "list")["multipliers"]
    names = {row["name"]: row for row in rows}
    assert names["exact8s"]["signed"] is True and names["mitchell8u"]["wce"] == 4096
    if evoapprox_catalogue(evoapprox_dir):
        assert names["mul8u_L40"]["power_mw"] == 0.189 and len(rows) == 8 + 99
        shown = run_json(capsys, "multipliers", "show", "mul8u_L40")
        assert shown["metrics"]["wce"] == 9124 and shown["published"]["MAE"] == "1011"
    signed_only = run_json(capsys, "multipliers", "list", "--signed")["multipliers"]
    assert all(row["signed"] for row in signed_only)
    capsys.readouterr()
    assert main(["multipliers", "show", "trunc8u_k2"]) == 0
    assert "WCE 1521" in capsys.readouterr().out


def test_import_bin_into_the_user_catalogue_then_use_it(tmp_path, capsys, user_dir):
    table = exact_table(True)
    (tmp_path / "mine.bin").write_bytes(table.astype("<i2").tobytes())
    payload = run_json(
        capsys,
        "multipliers",
        "import",
        str(tmp_path / "mine.bin"),
        "--signed",
        "--name",
        "mine8s",
        "--power",
        "0.2",
    )
    assert payload["signed"] is True and payload["metrics"]["mae"] == 0
    assert np.array_equal(np.load(user_dir / "mine8s.npy"), table)
    shown = run_json(capsys, "multipliers", "show", "mine8s")
    assert shown["exact"] is True and shown["power_mw"] == 0.2
    listed = run_json(capsys, "multipliers", "list")["multipliers"]
    assert any(row["name"] == "mine8s" and row["source"] == "user" for row in listed)


@pytest.mark.skipif(not shutil.which("cc") and not shutil.which("gcc"), reason="no C compiler")
def test_import_c_model(tmp_path, capsys, user_dir):
    source = "#include <stdint.h>\nuint16_t mul8u_x(uint8_t a, uint8_t b) { return a * b; }\n"
    (tmp_path / "x.c").write_text(source)
    payload = run_json(capsys, "multipliers", "import", str(tmp_path / "x.c"))
    assert payload["name"] == "mul8u_x" and payload["metrics"]["wce"] == 0
    (tmp_path / "bad.c").write_text("int mul8u_b(int a, int b) { return a * ; }\n")
    assert "does not compile" in run_error(capsys, "multipliers", "import", str(tmp_path / "bad.c"))
    (tmp_path / "none.c").write_text("this is not C\n")
    assert "no function of two" in run_error(
        capsys, "multipliers", "show", str(tmp_path / "none.c")
    )


def test_bad_multiplier_files_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "short.bin").write_bytes(b"\0" * 10)
    assert "131072 bytes" in run_error(capsys, "multipliers", "import", str(tmp_path / "short.bin"))
    np.save(tmp_path / "wrong.npy", np.zeros((16, 16), dtype=np.int32))
    assert "shape (256, 256)" in run_error(
        capsys, "multipliers", "show", str(tmp_path / "wrong.npy")
    )
    assert "unknown multiplier" in run_error(capsys, "multipliers", "show", "mul8u_NOPE")


def test_accelerator_evaluate_json(checkpoint, data_dir, capsys):
    payload = run_json(
        capsys,
        "accelerator",
        "evaluate",
        str(checkpoint),
        "--multiplier",
        "mitchell8u",
        "--array",
        "tpu",
        "--size",
        "4",
        "--fault-rate",
        "0.3",
        "--stuck-at",
        "1",
        "--bit",
        "14",
        "--patterns",
        "2",
        "--limit",
        "200",
        "--calibration",
        "100",
    )
    for key in ("accuracy_fault_free", "accuracy_mean", "accuracy_std", "accuracy_loss_mean"):
        assert 0.0 <= abs(payload[key]) <= 1.0
    assert payload["accelerator"] == "tpu4" and payload["patterns"] == 2
    assert payload["fault_model"] == "pe-sa1-b14-product-r0.3" and payload["examples"] == 200
    assert payload["layers"] == ["layers.1", "layers.4"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fault-rate", "1.5", "--stuck-at", "1", "--bit", "3"], "fault rate must be in"),
        (["--fault-rate", "0.1", "--stuck-at", "1", "--bit", "16"], "0..15"),
        (
            ["--fault-rate", "0.1", "--stuck-at", "1", "--bit", "40", "--site", "accumulator"],
            "0..31",
        ),
        (["--fault-rate", "0.1"], "needs --bit and --stuck-at"),
        (
            ["--fault-rate", "0.1", "--stuck-at", "0", "--bit", "3", "--layer", "fc9"],
            "no emulated layer named 'fc9'",
        ),
        (["--size", "0"], "array size must be a positive integer"),
    ],
)
def test_accelerator_evaluate_user_errors(checkpoint, data_dir, capsys, extra, message):
    err = run_error(
        capsys,
        "accelerator",
        "evaluate",
        str(checkpoint),
        "--multiplier",
        "exact8u",
        "--limit",
        "50",
        "--calibration",
        "0",
        *extra,
    )
    assert message in err


def test_accelerator_evaluate_memory_and_pe_faults_in_one_trial(checkpoint, data_dir, capsys):
    """Random bit errors in the accelerator's weight memory beside PE faults, and a list of
    PE fault rates: one row per rate, each with both kinds of faults."""
    common = ["accelerator", "evaluate", str(checkpoint), "--multiplier", "mitchell8u"]
    common += ["--size", "4", "--limit", "100", "--calibration", "100", "--patterns", "2"]
    faults = ["--fault-rate", "0.1,0.3", "--stuck-at", "1", "--bit", "14"]
    payload = run_json(capsys, *common, *faults, "--bit-error-rate", "0.01")
    assert [row["fault_model"] for row in payload["sweep"]] == [
        f"pe-sa1-b14-product-r{rate}+random_bit_errors(p01=0.01,p10=0.01,sampler=2)"
        for rate in ("0.1", "0.3")
    ]
    for row in payload["sweep"]:
        assert row["flips_mean"] > 0 and row["patterns"] == 2
        assert all(r["faulty_macs"] > 0 and r["flips"] > 0 for r in row["results"])
    memory_only = run_json(capsys, *common, "--bit-error-rate", "0.05")
    assert memory_only["fault_model"].startswith("random_bit_errors(")
    assert memory_only["flips_mean"] > 0
    assert all(r["faulty_macs"] == 0 for r in memory_only["results"])
    err = run_error(capsys, *common, "--chip", "missing.npz")
    assert "--chip and --voltage go together" in err
