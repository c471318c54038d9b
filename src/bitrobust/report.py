"""Reports: Markdown tables and every plot the package draws (error vs bit error rate, error and
energy vs voltage, BNN layer metrics, heatmaps such as per-layer × bit sensitivity).

Rows are plain dicts, as produced by evaluations and campaigns (e.g. ``{"bit_error_rate": 0.01,
"rerr_mean": 0.052, "rerr_min": 0.049, "rerr_max": 0.057}``). matplotlib is imported inside the
plotting functions, with the non-interactive Agg backend, so ``import bitrobust`` stays fast and
plots work on machines without a display.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MISSING = "–"
DPI = 120
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")
BAND_LABEL = "shaded: min–max over patterns"
TITLE_WIDTH = 60  # characters per title line; longer titles wrap instead of being cut off


def markdown_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    headers: Sequence[str] | None = None,
    floatfmt: str = ".2f",
) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` restricted to ``columns``.

    Floats are formatted with ``floatfmt``, other values with ``str()``; a missing key or a None
    value shows as "–". ``headers`` (default: the column names) label the columns. Cells are
    padded so the raw text lines up, and ``|`` inside a cell is escaped.
    """
    if not columns:
        raise ValueError("markdown_table needs at least one column")
    headers = list(columns) if headers is None else list(headers)
    if len(headers) != len(columns):
        raise ValueError(f"{len(headers)} headers for {len(columns)} columns")

    def cell(row: Mapping[str, Any], column: str) -> str:
        value = row.get(column)
        if value is None:
            text = MISSING
        elif isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
            text = format(float(value), floatfmt)
        else:
            text = str(value)
        return _escape(text)

    table = [[_escape(str(h)) for h in headers], *([cell(r, c) for c in columns] for r in rows)]
    widths = [max(3, *(len(line[i]) for line in table)) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        return (
            "| " + " | ".join(text.ljust(w) for text, w in zip(cells, widths, strict=True)) + " |"
        )

    separator = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(table[0]), separator, *(line(cells) for cells in table[1:])]) + "\n"


def plot_error_curves(
    curves: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | os.PathLike[str],
    *,
    x: str = "bit_error_rate",
    y: str = "rerr_mean",
    y_low: str | None = "rerr_min",
    y_high: str | None = "rerr_max",
    title: str = "",
    xlabel: str = "bit error rate p (%)",
    ylabel: str = "RErr (%)",
    logx: bool = True,
    x_scale: float = 100.0,
    y_scale: float = 100.0,
    band_label: str = BAND_LABEL,
) -> Path:
    """Plot one line per label of ``curves`` (rows of x/y values) and save a PNG at ``path``.

    A shaded band spans ``y_low``..``y_high`` where every point of a curve has both; the legend
    says what it is (``band_label``). Values are
    multiplied by ``x_scale``/``y_scale`` (rates as fractions become percent). On a log x axis
    points with x = 0 (the clean model) are dropped. Returns the path written.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 4.0), layout="constrained")
    axes = figure.add_subplot()
    _draw_curves(
        axes, curves, x=x, y=y, y_low=y_low, y_high=y_high, logx=logx,
        x_scale=x_scale, y_scale=y_scale, band_label=band_label,
    )  # fmt: skip
    axes.set(title=_wrap(title), xlabel=xlabel, ylabel=ylabel)
    return _save(figure, path)


def plot_grid(
    panels: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    path: str | os.PathLike[str],
    *,
    ncols: int | None = None,
    x: str = "bit_error_rate",
    y: str = "rerr_mean",
    y_low: str | None = "rerr_min",
    y_high: str | None = "rerr_max",
    title: str = "",
    xlabel: str = "bit error rate p (%)",
    ylabel: str = "RErr (%)",
    logx: bool = True,
    x_scale: float = 100.0,
    y_scale: float = 100.0,
    band_label: str = BAND_LABEL,
) -> Path:
    """Several :func:`plot_error_curves` panels in one PNG, titled by the keys of ``panels``.

    Panels fill a grid of ``ncols`` columns (default: 2 for four panels, else up to 3);
    ``title`` becomes the overall title. One legend below the panels names every curve (a
    label means the same thing in every panel) and the bands. Returns the path written.
    """
    from matplotlib.figure import Figure

    count = max(1, len(panels))
    if ncols is None:
        ncols = 2 if count == 4 else min(count, 3)
    ncols = max(1, min(ncols, count))
    nrows = math.ceil(count / ncols)
    figure = Figure(figsize=(max(6.0, 4.5 * ncols), 3.5 * nrows + 0.6), layout="constrained")
    grid = figure.subplots(nrows, ncols, squeeze=False)
    handles: dict[str, Any] = {}  # one legend for all panels, first handle of each label
    styles = {
        label: i for i, label in enumerate(dict.fromkeys(c for p in panels.values() for c in p))
    }
    for index, axes in enumerate(grid.flat):
        if index >= len(panels):
            axes.set_visible(False)
            continue
        label = list(panels)[index]
        drawn = _draw_curves(
            axes, panels[label], x=x, y=y, y_low=y_low, y_high=y_high, logx=logx,
            x_scale=x_scale, y_scale=y_scale, band_label=band_label, legend=False, styles=styles,
        )  # fmt: skip
        for handle in drawn:
            handles.setdefault(handle.get_label(), handle)
        axes.set(title=label, xlabel=xlabel, ylabel=ylabel)
    if handles:
        figure.legend(
            handles=list(handles.values()),
            loc="outside lower center",
            ncols=min(len(handles), 2 if ncols == 1 else 4),  # stays inside the figure
            fontsize="small",
        )
    if title:
        figure.suptitle(_wrap(title, TITLE_WIDTH * ncols))
    return _save(figure, path)


def plot_voltage_tradeoff(
    curves: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | os.PathLike[str],
    *,
    baseline_err: float | None = None,
    budget: float | None = None,
    operating_voltage: float | None = None,
    energy_name: str = "",
    band_label: str = "shaded: min–max over chips × placements",
    title: str = "",
) -> Path:
    """RErr (left axis, mean with a band) and energy per access (right axis) vs voltage.

    ``curves`` maps a label saying what the line is (e.g. "RErr, mean over chips") to rows
    with ``voltage``, ``rerr_mean``, optionally ``rerr_min``/``rerr_max`` (the band) and
    ``energy_saving``; energy per access relative to V_min is 1 − ``energy_saving``, named by
    ``energy_name`` (e.g. the energy model). A dashed line marks Err + budget, a dotted one the
    operating voltage; one legend lists the lines of both axes. Returns the PNG path.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 5.0), layout="constrained")
    axes = figure.add_subplot()
    handles = _draw_curves(
        axes, curves, x="voltage", y="rerr_mean", y_low="rerr_min", y_high="rerr_max",
        logx=False, x_scale=1.0, y_scale=100.0, band_label=band_label, legend=False,
    )  # fmt: skip
    if handles and baseline_err is not None and budget is not None:
        handles.append(
            axes.axhline(
                100 * (baseline_err + budget), color="grey", linestyle="--", label="Err + budget"
            )
        )
    if handles and operating_voltage is not None:
        handles.append(
            axes.axvline(operating_voltage, color="black", linestyle=":", label="operating point")
        )
    axes.set(title=_wrap(title), xlabel="voltage V / V_min", ylabel="RErr (%)")
    energies = {
        float(row["voltage"]): 1.0 - float(row["energy_saving"])
        for rows in curves.values()
        for row in rows
        if _finite(row.get("voltage")) and _finite(row.get("energy_saving"))
    }
    if handles and energies:
        twin = axes.twinx()
        grid = sorted(energies)
        label = "energy per access / E(V_min)"
        (line,) = twin.plot(
            grid,
            [energies[v] for v in grid],
            color="tab:red",
            alpha=0.7,
            label=f"{label} ({energy_name})" if energy_name else label,
        )
        twin.set_ylabel(label, color="tab:red")
        handles.append(line)
    if handles:  # below the axes: RErr rises on the left, energy on the right
        figure.legend(handles=handles, loc="outside lower center", ncols=2, fontsize="small")
    return _save(figure, path)


def plot_bnn_metrics(
    models: Mapping[str, Sequence[Mapping[str, Any]]], path: str | os.PathLike[str]
) -> Path:
    """Per-layer tolerance metrics of binarized networks (:func:`bitrobust.bnn.bnn_metrics`).

    ``models`` maps a model label to its layer rows (``layer``, ``description``,
    ``margin_histogram`` over [0, ``margin_histogram_max``], ``importance_variance``); every
    model has the same layers. One panel per layer overlays the models' normalized-margin
    histograms; a last panel shows the importance variance per layer and model as bars.
    """
    from matplotlib.figure import Figure

    layers = next(iter(models.values()), [])
    panels = len(layers) + 1
    figure = Figure(figsize=(4.5 * panels, 3.6), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    for index, layer in enumerate(layers):
        ax = axes[index]
        for number, (label, rows) in enumerate(models.items()):
            histogram = rows[index]["margin_histogram"]
            width = rows[index].get("margin_histogram_max", 1.0) / len(histogram)
            centers = [(i + 0.5) * width for i in range(len(histogram))]
            linestyle = LINESTYLES[number % len(LINESTYLES)]
            ax.plot(centers, histogram, linestyle=linestyle, label=str(label))
        ax.set(
            title=f"{layer['layer']} ({layer['description']})",
            xlabel="margin |a − τ| / fan-in (last bin: and above)",
            ylabel="fraction of (neuron, example) pairs",
        )
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    ax = axes[-1]
    width = 0.8 / max(len(models), 1)
    for number, (label, rows) in enumerate(models.items()):
        values = [row.get("importance_variance") or 0.0 for row in rows]
        positions = [i + number * width for i in range(len(values))]
        ax.bar(positions, values, width=width, label=str(label))
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(layers))])
    ax.set_xticklabels([layer["layer"] for layer in layers])
    ax.set(title="importance variance (INM)", ylabel="variance of accuracy drop")
    ax.legend(fontsize="small")
    return _save(figure, path)


def plot_heatmaps(
    panels: Mapping[str, Sequence[Sequence[float | None]]],
    path: str | os.PathLike[str],
    *,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    colorbar_label: str = "",
    value_format: str = ".1f",
) -> Path:
    """Heatmaps of matrices with the same rows and columns, one panel per key of ``panels``
    (the panel's title), with one shared colour scale; narrow panels side by side in two
    columns, wide ones (many columns) one under another.

    Each cell is annotated with its value (``value_format``); a None or NaN cell is left grey
    and marked "–". Returns the PNG path.
    """
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    matrices = {
        label: np.array(
            [[float(v) if _finite(v) else np.nan for v in row] for row in matrix], dtype=float
        ).reshape(len(row_labels), len(column_labels))
        for label, matrix in panels.items()
    }
    finite = [m[np.isfinite(m)] for m in matrices.values()]
    values = np.concatenate(finite) if finite else np.array([])
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    count = max(1, len(matrices))
    cells = len(row_labels) * len(column_labels)
    width = max(3.2, 0.42 * len(column_labels) + 1.6)
    height = max(2.0, 0.3 * len(row_labels) + 1.3)
    ncols = min(count, 2 if width <= 6.0 else 1)  # wide panels go one under another
    nrows = math.ceil(count / ncols)
    figure = Figure(figsize=(width * ncols + 1.2, height * nrows + 0.6), layout="constrained")
    grid = figure.subplots(nrows, ncols, squeeze=False)
    cmap = colormaps["viridis"].with_extremes(bad="#dddddd")
    image = None
    for index, axes in enumerate(grid.flat):
        if index >= len(matrices):
            axes.set_visible(False)
            continue
        label, matrix = list(matrices.items())[index]
        image = axes.imshow(matrix, cmap=cmap, vmin=low, vmax=high, aspect="auto")
        for (i, j), value in np.ndenumerate(matrix):
            if math.isfinite(value):
                shade = cmap(image.norm(value))
                luminance = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2]
                text, color = format(value, value_format), "black" if luminance > 0.5 else "white"
            else:
                text, color = MISSING, "black"
            axes.text(j, i, text, ha="center", va="center", color=color,
                      fontsize=7 if cells <= 120 else 5)  # fmt: skip
        axes.set_xticks(range(len(column_labels)), [str(c) for c in column_labels], fontsize=7)
        axes.set_yticks(range(len(row_labels)), [str(r) for r in row_labels], fontsize=7)
        axes.set(title=label, xlabel=xlabel, ylabel=ylabel)
    if image is not None:
        shown = [axes for axes in grid.flat if axes.get_visible()]
        figure.colorbar(image, ax=shown, label=colorbar_label, shrink=0.9)
    if title:
        figure.suptitle(_wrap(title, TITLE_WIDTH * ncols))
    return _save(figure, path)


def _draw_curves(
    axes: Axes,
    curves: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    x: str,
    y: str,
    y_low: str | None,
    y_high: str | None,
    logx: bool,
    x_scale: float,
    y_scale: float,
    band_label: str = BAND_LABEL,
    legend: bool = True,
    styles: Mapping[str, int] | None = None,
) -> list[Any]:
    """Draw each curve's line (sorted by x) and its band onto ``axes``; return the legend
    handles (the lines, then one grey patch saying what the bands are, if any was drawn).

    Curves differ in colour, marker and dash, and use hollow markers, so that a curve lying
    on top of another leaves the one below visible; bands sit under every line. ``styles``
    gives a label's style number (default: its position), so that a label drawn in several
    panels looks the same in each.
    """
    handles: list[Any] = []
    banded = False
    for position, (label, rows) in enumerate(curves.items()):
        index = position if styles is None else styles.get(label, position)
        points = sorted(
            (row for row in rows if _finite(row.get(x)) and _finite(row.get(y))),
            key=lambda row: float(row[x]),
        )
        if logx:
            points = [row for row in points if float(row[x]) > 0]
        if not points:
            continue
        xs = [float(row[x]) * x_scale for row in points]
        ys = [float(row[y]) * y_scale for row in points]
        (line,) = axes.plot(
            xs,
            ys,
            color=f"C{index % 10}",
            marker=MARKERS[index % len(MARKERS)],
            linestyle=LINESTYLES[index % len(LINESTYLES)],
            markersize=5,
            markerfacecolor="none",
            linewidth=1.5,
            zorder=3 + index / 100,
            label=str(label),
        )
        handles.append(line)
        if (
            y_low
            and y_high
            and all(_finite(r.get(y_low)) and _finite(r.get(y_high)) for r in points)
        ):
            lows = [float(row[y_low]) * y_scale for row in points]
            highs = [float(row[y_high]) * y_scale for row in points]
            axes.fill_between(
                xs, lows, highs, color=line.get_color(), alpha=0.15, linewidth=0, zorder=1
            )
            banded = True
    if not handles:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
        return handles
    if banded:
        from matplotlib.patches import Patch

        handles.append(Patch(facecolor="grey", alpha=0.3, label=band_label))
    if logx:
        from matplotlib.ticker import FuncFormatter

        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.grid(True, which="major", alpha=0.3)
    if legend:
        axes.legend(handles=handles, fontsize="small")
    return handles


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(float(value))


def _wrap(title: str, width: int = TITLE_WIDTH) -> str:
    import textwrap

    return "\n".join(textwrap.fill(line, width) for line in title.splitlines())


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _save(figure: Any, path: str | os.PathLike[str]) -> Path:
    """Render ``figure`` with the Agg canvas (no pyplot, no global backend change) to a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, format="png")
    return path
