"""Tests for Markdown tables and error-curve plots."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bitrobust.report import markdown_table, plot_error_curves, plot_grid

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def curve(offset: float) -> list[dict]:
    rates = [0.0, 0.001, 0.005, 0.01, 0.05]
    return [
        {
            "bit_error_rate": p,
            "rerr_mean": 0.01 + offset + p,
            "rerr_min": 0.005 + offset + p,
            "rerr_max": 0.02 + offset + p,
        }
        for p in rates
    ]


def test_markdown_table_formats_floats_and_missing_values():
    rows = [
        {"model": "RQuant", "err": 4.3217, "rerr": 11.28, "n": 50},
        {"model": "Clip|0.1", "err": 4.4, "n": 50},
        {"model": "none", "err": None, "rerr": float("nan"), "n": True},
    ]
    text = markdown_table(
        rows, ["model", "err", "rerr", "n"], headers=["Model", "Err", "RErr", "n"]
    )
    assert text == (
        "| Model     | Err  | RErr  | n    |\n"
        "| --------- | ---- | ----- | ---- |\n"
        "| RQuant    | 4.32 | 11.28 | 50   |\n"
        "| Clip\\|0.1 | 4.40 | –     | 50   |\n"
        "| none      | –    | nan   | True |\n"
    )


def test_markdown_table_floatfmt_and_default_headers():
    text = markdown_table([{"p": 0.000125}], ["p"], floatfmt=".2e")
    assert text.splitlines() == ["| p        |", "| -------- |", "| 1.25e-04 |"]


def test_markdown_table_without_rows_and_with_bad_headers():
    assert markdown_table([], ["a", "b"]).splitlines() == ["| a   | b   |", "| --- | --- |"]
    with pytest.raises(ValueError):
        markdown_table([], ["a", "b"], headers=["only one"])
    with pytest.raises(ValueError):
        markdown_table([], [])


def test_markdown_table_handles_numpy_floats():
    np = pytest.importorskip("numpy")
    text = markdown_table([{"v": np.float32(0.125)}], ["v"], floatfmt=".3f")
    assert "0.125" in text


def test_plot_error_curves_writes_png(tmp_path):
    path = plot_error_curves(
        {"Normal": curve(0.02), "RandBET": curve(0.0)},
        tmp_path / "plots" / "rerr.png",
        title="MNIST 8 bit",
    )
    assert path == tmp_path / "plots" / "rerr.png"
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_plot_error_curves_linear_axis_without_band_and_missing_keys(tmp_path):
    rows = [{"bit_error_rate": 0.0, "rerr_mean": 0.1}, {"bit_error_rate": 0.01, "rerr_mean": 0.2}]
    path = plot_error_curves(
        {"a": rows, "empty": []}, str(tmp_path / "lin.png"), logx=False, y_low=None, y_high=None
    )
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_plot_error_curves_with_no_plottable_points(tmp_path):
    path = plot_error_curves({"clean only": [{"bit_error_rate": 0.0, "rerr_mean": 0.1}]},
                             tmp_path / "none.png")  # fmt: skip
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_plot_grid_writes_png(tmp_path):
    panels = {
        "MNIST 8 bit": {"Normal": curve(0.02), "RandBET": curve(0.0)},
        "MNIST 4 bit": {"Normal": curve(0.04)},
        "CIFAR 8 bit": {"Normal": curve(0.1)},
        "CIFAR 4 bit": {"Normal": curve(0.2)},
    }
    path = plot_grid(panels, tmp_path / "grid.png", title="RErr vs p", ncols=2)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    path = plot_grid(panels, tmp_path / "grid3.png")  # 3 columns, one hidden panel
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_importing_report_does_not_import_matplotlib():
    code = "import sys, bitrobust.report; print('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
