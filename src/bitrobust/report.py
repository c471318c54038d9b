"""Reports: Markdown tables and error-versus-bit-error-rate plots.

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
) -> Path:
    """Plot one line per label of ``curves`` (rows of x/y values) and save a PNG at ``path``.

    A shaded band spans ``y_low``..``y_high`` where every point of a curve has both. Values are
    multiplied by ``x_scale``/``y_scale`` (rates as fractions become percent). On a log x axis
    points with x = 0 (the clean model) are dropped. Returns the path written.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 4.0), layout="constrained")
    axes = figure.add_subplot()
    _draw_curves(
        axes, curves, x=x, y=y, y_low=y_low, y_high=y_high, logx=logx,
        x_scale=x_scale, y_scale=y_scale,
    )  # fmt: skip
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
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
) -> Path:
    """Several :func:`plot_error_curves` panels in one PNG, titled by the keys of ``panels``.

    Panels fill a grid of ``ncols`` columns (default: 2 for four panels, else up to 3);
    ``title`` becomes the overall title. Returns the path written.
    """
    from matplotlib.figure import Figure

    count = max(1, len(panels))
    if ncols is None:
        ncols = 2 if count == 4 else min(count, 3)
    ncols = max(1, min(ncols, count))
    nrows = math.ceil(count / ncols)
    figure = Figure(figsize=(4.5 * ncols, 3.5 * nrows), layout="constrained")
    grid = figure.subplots(nrows, ncols, squeeze=False)
    for index, axes in enumerate(grid.flat):
        if index >= len(panels):
            axes.set_visible(False)
            continue
        label = list(panels)[index]
        _draw_curves(
            axes, panels[label], x=x, y=y, y_low=y_low, y_high=y_high, logx=logx,
            x_scale=x_scale, y_scale=y_scale,
        )  # fmt: skip
        axes.set(title=label, xlabel=xlabel, ylabel=ylabel)
    if title:
        figure.suptitle(title)
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
) -> None:
    """Draw each curve's line (sorted by x) and its band onto ``axes``."""
    drawn = False
    for label, rows in curves.items():
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
        (line,) = axes.plot(xs, ys, marker="o", markersize=3, label=str(label))
        drawn = True
        if (
            y_low
            and y_high
            and all(_finite(r.get(y_low)) and _finite(r.get(y_high)) for r in points)
        ):
            lows = [float(row[y_low]) * y_scale for row in points]
            highs = [float(row[y_high]) * y_scale for row in points]
            axes.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.2, linewidth=0)
    if not drawn:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
        return
    if logx:
        from matplotlib.ticker import FuncFormatter

        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize="small")


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(float(value))


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
