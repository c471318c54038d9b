"""Tests for Markdown tables and error-curve plots."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bitrobust import report
from bitrobust.report import (
    BAND_LABEL,
    markdown_table,
    plot_bnn_metrics,
    plot_error_curves,
    plot_grid,
    plot_voltage_tradeoff,
)

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


@pytest.fixture
def figures(monkeypatch):
    """The figures the report functions save (they still write their PNGs)."""
    saved = []
    original = report._save

    def keep(figure, path):
        saved.append(figure)
        return original(figure, path)

    monkeypatch.setattr(report, "_save", keep)
    return saved


def legend_labels(figure) -> list[str]:
    legends = list(figure.legends) + [a.get_legend() for a in figure.axes if a.get_legend()]
    return [text.get_text() for legend in legends for text in legend.get_texts()]


def test_curves_differ_in_marker_and_dash_and_bands_are_explained(tmp_path, figures):
    curves = {"Clipping": curve(0.0), "RandBET": curve(0.0), "Normal": curve(0.1)}
    plot_error_curves(curves, tmp_path / "p.png")
    (figure,) = figures
    lines = figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == list(curves)
    assert len({(line.get_marker(), line.get_linestyle()) for line in lines}) == 3
    # identical curves: the later one is drawn above, with hollow markers
    assert lines[1].get_zorder() > lines[0].get_zorder()
    assert all(line.get_markerfacecolor() == "none" for line in lines)
    assert legend_labels(figure) == [*curves, BAND_LABEL]
    plot_error_curves(curves, tmp_path / "q.png", y_low=None, band_label="unused")
    assert legend_labels(figures[1]) == list(curves)  # no band, no band entry


def test_plot_grid_has_one_legend_for_all_panels(tmp_path, figures):
    panels = {"a": {"Normal": curve(0.0), "RandBET": curve(0.1)}, "b": {"Normal": curve(0.2)}}
    plot_grid(panels, tmp_path / "g.png", band_label="shaded: min–max over 5 seeds")
    (figure,) = figures
    assert all(axes.get_legend() is None for axes in figure.axes)
    assert legend_labels(figure) == ["Normal", "RandBET", "shaded: min–max over 5 seeds"]


def test_a_label_looks_the_same_in_every_panel(tmp_path, figures):
    panels = {"8 bit": {"Normal": curve(0.0), "RQuant": curve(0.1)}, "4 bit": {"RQuant": curve(0)}}
    plot_grid(panels, tmp_path / "g.png")
    (figure,) = figures
    first, second = ({line.get_label(): line for line in a.get_lines()} for a in figure.axes[:2])
    style = lambda line: (line.get_color(), line.get_marker(), line.get_linestyle())  # noqa: E731
    assert style(second["RQuant"]) == style(first["RQuant"]) != style(first["Normal"])


def test_long_titles_wrap(tmp_path, figures):
    title = "mnist, rquant 8-bit per-layer asymmetric: 4 chip(s) × 2 placement(s), budget 1 pp"
    plot_error_curves({"a": curve(0.0)}, tmp_path / "t.png", title=title)
    shown = figures[0].axes[0].get_title()
    assert shown.replace("\n", " ") == title
    assert max(len(line) for line in shown.splitlines()) <= report.TITLE_WIDTH


def voltage_rows() -> list[dict]:
    return [
        {
            "voltage": v,
            "rerr_mean": 0.05 + (1 - v),
            "rerr_min": 0.05,
            "rerr_max": 0.3,
            "energy_saving": 1 - v * v,
        }
        for v in (1.0, 0.8, 0.9)
    ]


def test_voltage_tradeoff_legend_has_both_axes(tmp_path, figures):
    path = plot_voltage_tradeoff(
        {"RErr, mean over chips": voltage_rows()},
        tmp_path / "v" / "e.png",
        baseline_err=0.05,
        budget=0.01,
        operating_voltage=0.9,
        energy_name="quadratic",
        title="a title",
    )
    assert path.read_bytes().startswith(PNG_MAGIC)
    (figure,) = figures
    assert legend_labels(figure) == [
        "RErr, mean over chips",
        "shaded: min–max over chips × placements",
        "Err + budget",
        "operating point",
        "energy per access / E(V_min) (quadratic)",
    ]
    axes, twin = figure.axes
    (energy,) = twin.get_lines()
    assert list(energy.get_xdata()) == [0.8, 0.9, 1.0]
    assert list(energy.get_ydata()) == pytest.approx([0.64, 0.81, 1.0])
    (rerr,) = axes.get_lines()[:1]
    assert list(rerr.get_ydata()) == pytest.approx([25.0, 15.0, 5.0])  # sorted by voltage, in %


def test_voltage_tradeoff_without_energy_or_data(tmp_path, figures):
    rows = [{k: v for k, v in row.items() if k != "energy_saving"} for row in voltage_rows()]
    plot_voltage_tradeoff({"RErr": rows}, tmp_path / "a.png")
    assert len(figures[0].axes) == 1 and legend_labels(figures[0])[0] == "RErr"
    path = plot_voltage_tradeoff({"RErr": []}, tmp_path / "b.png", baseline_err=0.1, budget=0.01)
    assert path.read_bytes().startswith(PNG_MAGIC) and legend_labels(figures[1]) == []


def test_plot_bnn_metrics_draws_a_panel_per_layer_and_one_for_importance(tmp_path, figures):
    def layers(scale: float) -> list[dict]:
        return [
            {
                "layer": f"layers.{i}",
                "description": "linear 4→4",
                "margin_histogram": [0.5 * scale, 0.5, 1 - scale],
                "margin_histogram_max": 0.3,
                "importance_variance": scale * (i + 1) if i else None,
            }
            for i in range(2)
        ]

    path = plot_bnn_metrics({"BFIT 0 %": layers(0.2), "MHL": layers(0.6)}, tmp_path / "m.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    first, second, bars = figures[0].axes
    assert first.get_title() == "layers.0 (linear 4→4)"
    assert list(first.get_lines()[0].get_xdata()) == pytest.approx([0.05, 0.15, 0.25])
    heights = [patch.get_height() for patch in bars.patches]
    assert heights == pytest.approx([0.0, 0.4, 0.0, 1.2])  # a missing variance draws as 0


def test_importing_report_does_not_import_matplotlib():
    code = "import sys, bitrobust.report; print('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
