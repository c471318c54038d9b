"""The campaign report: one self-contained HTML page and its Markdown twin.

:func:`write_report` turns the rows of finished trials (flat dicts, one per trial, as the
campaign store returns them) into ``report.html`` — plots embedded as base64 PNG data URIs, CSS
and a tiny script inline, a Content-Security-Policy that lets the page fetch nothing — and
``report.md`` with the same tables and the plots as PNG files next to it.

Contents: the title, a table of facts (trials finished, provenance), the spec text; then per
fault entry (the rows' ``fault``) and metric an error-vs-x plot with one curve per model (the
mean over fault patterns and training seeds, its confidence interval shaded) and a table of the
same cells, and, for trials that target one layer and/or bit position, heatmaps of the mean per
layer × bit, one panel per x value. Statistics come from
:func:`bitrobust.campaign.statistics.cell_statistics`; plots from :mod:`bitrobust.report`.

The page is built once as a list of blocks (headings, paragraphs, tables, images, the spec)
that two renderers write out, so the HTML and the Markdown always say the same thing.
"""

from __future__ import annotations

import base64
import datetime
import html
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitrobust.campaign.statistics import CellStatistics, cell_statistics
from bitrobust.report import MISSING, _finite, markdown_table, plot_error_curves, plot_heatmaps

HTML_NAME = "report.html"
MARKDOWN_NAME = "report.md"
MAX_HEATMAP_X = 4  # x values shown as heatmap panels per (fault, model, metric)

# name, and whether the metric is a fraction shown in %
METRICS: dict[str, tuple[str, bool]] = {
    "rerr": ("RErr", True),
    "err_faulty": ("Err under faults", True),
    "err_clean": ("clean Err", True),
    "accuracy_loss": ("accuracy loss", True),
    "flips": ("flipped bits", False),
    "faulty_macs": ("faulty MACs", False),
}
# what x is called, its unit, and the factor a value is shown with (fractions become %)
X_AXES: dict[str, tuple[str, str, float]] = {
    "bit_error_rate": ("bit error rate p", "%", 100.0),
    "fault_rate": ("fault rate", "%", 100.0),
    "voltage": ("voltage V / V_min", "", 1.0),
    "stuck_cell_rate": ("stuck cell rate", "%", 100.0),
}
# a log axis when every x > 0 and they span more than a decade
LOG_X = ("bit_error_rate", "fault_rate", "stuck_cell_rate")
PROVENANCE_LABELS = {
    "bitrobust": "bitrobust version",
    "code": "code fingerprint",
    "torch": "torch version",
}
STATUS_LABELS = {  # keys of CampaignStore.status() besides done and total
    "pending": "trials pending",
    "other": "recorded trials outside the plan",
    "spec_hash": "spec hash",
}
ROW_PROVENANCE = {  # row key → what the trials recorded
    "package_version": "bitrobust version of the trials",
    "torch_version": "torch version of the trials",
    "device": "device of the trials",
}

STYLE = """
body { font-family: system-ui, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #222;
       max-width: 1100px; margin: 1.5em auto; padding: 0 1em; line-height: 1.4; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #eee; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: .8em 0; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; }
p.note { color: #555; }
"""
# Sets body[data-rendered] once the page has loaded: "ok" when every image decoded and there is
# a table, else "broken" (the browser test reads it).
SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var decoded = images.every(function (img) { return img.complete && img.naturalWidth > 0; });
  var ok = decoded && document.getElementsByTagName("table").length > 0;
  document.body.dataset.rendered = ok ? "ok" : "broken";
});
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


# --- the blocks a report is made of ---------------------------------------------------------


@dataclass(frozen=True)
class _Heading:
    level: int
    text: str


@dataclass(frozen=True)
class _Paragraph:
    text: str
    note: bool = False


@dataclass(frozen=True)
class _Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]  # per column: right-aligned in HTML


@dataclass(frozen=True)
class _Image:
    path: Path
    alt: str


@dataclass(frozen=True)
class _Source:
    summary: str
    text: str


_Block = _Heading | _Paragraph | _Table | _Image | _Source


def write_report(
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | os.PathLike[str],
    *,
    title: str,
    metrics: Sequence[str] = ("rerr",),
    spec_text: str | None = None,
    provenance: Mapping[str, str] | None = None,
    status: Mapping[str, Any] | None = None,
    confidence: float = 0.95,
) -> dict[str, Path]:
    """Write ``out_dir/report.html`` and ``out_dir/report.md`` (and the PNGs of its plots).

    ``rows``: finished trials (keys as the campaign store gives them; ``layer``/``bit`` not None
    marks a per-layer/per-bit trial). ``metrics``: the row keys to report (a row without a
    metric is skipped for it). ``status``: ``done`` and ``total`` trials, and anything else to
    list (e.g. ``failed``). ``provenance``: e.g. :func:`bitrobust.provenance.provenance` plus
    ``torch``. ``confidence``: level of the intervals. Returns ``{"html": path, "markdown":
    path}`` plus one entry per PNG, keyed by its file name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, Path] = {}

    def image_path(kind: str, *parts: Any) -> Path:
        name = f"{kind}-{len(images) + 1:02d}-" + "-".join(_slug(p) for p in parts) + ".png"
        images[name] = out / name
        return out / name

    blocks: list[_Block] = [_Heading(1, title), _facts(rows, status, provenance)]
    if spec_text is not None:
        blocks.append(_Source("campaign spec", spec_text))
    if not rows:
        blocks.append(_Paragraph("No trials are finished yet."))
    fault_free = [row for row in rows if row.get("kind") == "fault_free"]
    if fault_free:
        blocks.extend(_fault_free_section(fault_free))
    rows = [row for row in rows if row.get("kind") != "fault_free"]
    for fault in _distinct(rows, "fault"):
        fault_rows = [_with_mitigation(row) for row in rows if row.get("fault") == fault]
        blocks.append(_Heading(2, f"Fault entry: {_text(fault)}"))
        models = _distinct(fault_rows, "fault_model") or _distinct(fault_rows, "kind")
        if models:
            shown = "; ".join(_text(m) for m in models[:3])
            more = f" … ({len(models)} in all)" if len(models) > 3 else ""
            blocks.append(_Paragraph(f"Fault model: {shown}{more}", note=True))
        for metric in metrics:
            blocks.extend(_metric_section(fault_rows, metric, confidence, image_path))
    html_path, markdown_path = out / HTML_NAME, out / MARKDOWN_NAME
    html_path.write_text(_render_html(title, blocks), encoding="utf-8")
    markdown_path.write_text(_render_markdown(blocks, out), encoding="utf-8")
    return {"html": html_path, "markdown": markdown_path, **images}


def report_store(
    store_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> dict[str, Path]:
    """:func:`write_report` of a campaign store: its planned trials (every recorded one when
    nothing is planned), titled by the spec's name, with the spec's metrics and confidence
    level, the store's progress and the provenance of this code. A stored spec this version
    cannot read still gives a report, of RErr at 95 %."""
    from importlib import metadata

    from bitrobust.campaign.spec import parse_spec
    from bitrobust.campaign.store import CampaignStore
    from bitrobust.errors import BitrobustError
    from bitrobust.provenance import provenance

    with CampaignStore.open_existing(store_path) as store:
        meta = store.meta()
        planned = bool(store.planned_ids())
        rows = [record.flat() for record in store.records(planned_only=planned)]
        status = store.status()
    name = status.pop("name", None) or Path(store_path).stem
    metrics, confidence = ["rerr"], 0.95
    spec_text = meta.get("spec_text")
    if spec_text:
        try:
            spec = parse_spec(spec_text, where=f"store {store_path}")
        except BitrobustError as exc:
            status["spec"] = f"not readable by this version ({exc})"
        else:
            name, metrics, confidence = spec.name, list(spec.metrics), spec.confidence
            # sections and curves in the spec's order (rows come sorted by trial id)
            faults = {fault.name: i for i, fault in enumerate(spec.faults)}
            models = {model.name: i for i, model in enumerate(spec.models)}
            mitigations = {
                m.name: i
                for fault in spec.faults
                for i, m in enumerate(getattr(fault, "mitigations", None) or ())
            }
            rows.sort(
                key=lambda r: (
                    faults.get(r["fault"], -1),
                    models.get(r["model"], -1),
                    mitigations.get(r.get("mitigation"), -1),
                )
            )
            rows = _labelled(rows, spec)
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = MISSING
    return write_report(
        rows, out_dir, title=f"Campaign {name}", metrics=metrics, spec_text=spec_text,
        provenance={**provenance(), "torch": torch_version}, status=status,
        confidence=confidence,
    )  # fmt: skip


# --- content ----------------------------------------------------------------------------------


def _facts(
    rows: Sequence[Mapping[str, Any]],
    status: Mapping[str, Any] | None,
    provenance: Mapping[str, str] | None,
) -> _Table:
    """The table under the title: how far the campaign is, and where its numbers come from."""
    facts: list[tuple[str, str]] = []
    status = dict(status or {})
    done, total = status.pop("done", None), status.pop("total", None)
    if done is not None and total is not None:
        share = f" ({done / total:.0%})" if _finite(done) and _finite(total) and total > 0 else ""
        facts.append(("trials finished", f"{done} of {total}{share}"))
        if done != len(rows):
            facts.append(("trials in this report", str(len(rows))))
    else:
        facts.append(("trials finished", str(len(rows) if done is None else done)))
        if total is not None:
            facts.append(("trials planned", str(total)))
    facts.extend((STATUS_LABELS.get(key, str(key)), _text(v)) for key, v in status.items())
    for key, value in (provenance or {}).items():
        facts.append((PROVENANCE_LABELS.get(key, str(key)), _text(value)))
    for key, label in ROW_PROVENANCE.items():
        values = _distinct(rows, key)
        if values:
            facts.append((label, ", ".join(_text(v) for v in values)))
    finished = [float(row["finished_at"]) for row in rows if _finite(row.get("finished_at"))]
    if finished:
        when = datetime.datetime.fromtimestamp(max(finished), tz=datetime.timezone.utc)
        facts.append(("last trial finished", when.strftime("%Y-%m-%d %H:%M:%S UTC")))
    return _Table(("item", "value"), tuple(facts), (False, False))


def _metric_section(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    confidence: float,
    image_path: Callable[..., Path],
) -> list[_Block]:
    """Plot and table of the error curves, then the heatmaps, of one fault entry and metric."""
    name, _, _ = _metric(metric)
    blocks: list[_Block] = [_Heading(3, name)]
    measured = [row for row in rows if _finite(row.get(metric))]
    invalid = sum(row.get(metric) is not None for row in rows) - len(measured)
    if invalid:  # NaN, infinite or not a number: a broken trial, said here, not hidden
        blocks.append(_Paragraph(f"{invalid} trial(s) with a non-finite {name} left out."))
    if not measured:
        blocks.append(_Paragraph(f"No finished trial of this entry has a value for {name}."))
        return blocks
    whole = [row for row in measured if row.get("layer") is None and row.get("bit") is None]
    targeted = [
        row for row in measured if not (row.get("layer") is None and row.get("bit") is None)
    ]
    if whole:
        blocks.extend(_curves(whole, metric, confidence, image_path))
    if targeted:
        blocks.extend(_heatmaps(targeted, metric, confidence, image_path))
    return blocks


def _curves(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    confidence: float,
    image_path: Callable[..., Path],
) -> list[_Block]:
    """The error-vs-x plot (one curve per model, mean and confidence band) and its table."""
    name, unit, scale = _metric(metric)
    axis = _XAxis.of(rows)
    models = _distinct(rows, "model")
    accelerators = _distinct(rows, "accelerator")
    several = len(accelerators) > 1  # then a curve is a (model, accelerator) pair
    keys = ("fault", "model", "x") + (("accelerator",) if several else ())
    cells = sorted(
        cell_statistics(rows, keys, metric, confidence=confidence),
        key=lambda c: _cell_order(c, models, accelerators),
    )
    fault = _text(rows[0].get("fault"))
    blocks: list[_Block] = []
    xs = [float(c.cell["x"]) for c in cells if _finite(c.cell.get("x"))]
    if xs:
        curves: dict[str, list[dict[str, Any]]] = {}
        for cell in cells:
            label = _text(cell.cell.get("model"))
            if several:
                label += f" on {_text(cell.cell.get('accelerator'))}"
            curves.setdefault(label, []).append(
                {"x": cell.cell.get("x"), "y": cell.mean, "low": cell.ci_low, "high": cell.ci_high}
            )
        logx = _log_x(axis.name, xs)
        path = plot_error_curves(
            curves, image_path("curves", fault, metric),
            x="x", y="y", y_low="low", y_high="high", logx=logx,
            x_scale=axis.scale, y_scale=scale,
            title=f"{fault}: {name} vs {axis.short}", xlabel=axis.label, ylabel=name + unit,
            band_label=f"shaded: {confidence:.0%} confidence interval of the mean "
            f"({_methods(cells)})",
        )  # fmt: skip
        alt = (
            f"{name} vs {axis.short} ({'log' if logx else 'linear'} x axis) under {fault}, one "
            f"curve per model, {confidence:.0%} confidence band shaded"
        )
        blocks.append(_Image(path, alt))
    else:
        blocks.append(_Paragraph("No x values to plot against.", note=True))

    seeds = any(cell.training_seeds > 1 for cell in cells)
    headers = ["model", *(["accelerator"] if several else []), axis.label]
    counts = ["trials", "patterns", "training seeds"]
    headers += [f"{name}{unit}: mean ± {confidence:.0%} CI half-width", *counts]
    headers += [f"std over training seeds{unit}"] if seeds else []
    table = []
    for cell in cells:
        line = [_text(cell.cell.get("model"))]
        line += [_text(cell.cell.get("accelerator"))] if several else []
        line.append(_number(cell.cell.get("x"), axis.scale, "g"))
        mean, half = _number(cell.mean, scale), cell.halfwidth()
        line.append(mean if half is None else f"{mean} ± {_number(half, scale)}")
        line += [str(cell.n), str(cell.patterns), str(cell.training_seeds)]
        line += [_number(cell.seed_std, scale)] if seeds else []
        table.append(tuple(line))
    textual = 2 if several else 1  # model (and accelerator) columns are text
    numeric = tuple(i >= textual for i in range(len(headers)))
    blocks.append(_Table(tuple(headers), tuple(table), numeric))
    return blocks


def _heatmaps(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    confidence: float,
    image_path: Callable[..., Path],
) -> list[_Block]:
    """Per model, one PNG of heatmaps of the mean metric, layers × bit positions, one panel
    per x value (at most :data:`MAX_HEATMAP_X`, evenly picked, the smallest and largest
    included)."""
    name, unit, scale = _metric(metric)
    axis = _XAxis.of(rows)
    fault = _text(rows[0].get("fault"))
    blocks: list[_Block] = [
        _Paragraph(
            f"Sensitivity per layer and bit position: mean {name}{unit} of the trials that "
            "target one layer and/or one bit position, over fault patterns and training seeds."
        )
    ]
    for model in _distinct(rows, "model"):
        model_rows = [row for row in rows if row.get("model") == model]
        xs = sorted({row.get("x") for row in model_rows}, key=_none_last)
        shown = _spread(xs, MAX_HEATMAP_X)
        if len(shown) < len(xs):
            values = ", ".join(_number(x, axis.scale, "g") for x in shown)
            blocks.append(_Paragraph(
                f"{_text(model)}: the trials have {len(xs)} values of {axis.short}; the "
                f"heatmaps show {len(shown)} of them ({values}{axis.unit}).", note=True,
            ))  # fmt: skip
        keys = ("fault", "model", "x", "layer", "bit")
        picked = [row for row in model_rows if row.get("x") in shown]
        # only the means are shown: the t interval spares a bootstrap per cell
        cells = cell_statistics(picked, keys, metric, confidence=confidence, method="t")
        layers = sorted({c.cell.get("layer") for c in cells}, key=_natural)
        bits = sorted({c.cell.get("bit") for c in cells}, key=_none_last)
        means = {(c.cell.get("x"), c.cell.get("layer"), c.cell.get("bit")): c.mean for c in cells}
        panels = {
            axis.value(x): [
                [_scaled(means.get((x, layer, bit)), scale) for bit in bits] for layer in layers
            ]
            for x in shown
        }
        path = plot_heatmaps(
            panels, image_path("heatmap", fault, model, metric),
            row_labels=["all layers" if layer is None else str(layer) for layer in layers],
            column_labels=["all bits" if bit is None else str(bit) for bit in bits],
            title=f"{fault} · {_text(model)}: mean {name}{unit}",
            xlabel="bit position", ylabel="layer", colorbar_label=name + unit,
            value_format=".1f" if unit else ".3g",
        )  # fmt: skip
        alt = (
            f"heatmap of the mean {name} per layer and bit position, model {_text(model)} under "
            f"{fault}, one panel per value of {axis.short}"
        )
        blocks.append(_Image(path, alt))
    return blocks


@dataclass(frozen=True)
class _XAxis:
    """How a fault entry's x (the rows' ``x_name``) is labelled and scaled."""

    name: str
    short: str  # e.g. "bit error rate p"
    unit: str  # e.g. "%", or ""
    scale: float  # shown value = x * scale

    @classmethod
    def of(cls, rows: Sequence[Mapping[str, Any]]) -> _XAxis:
        names = _distinct(rows, "x_name")
        name = str(names[0]) if names else "x"
        short, unit, scale = X_AXES.get(name, (name, "", 1.0))
        return cls(name, short, unit, scale)

    @property
    def label(self) -> str:
        return f"{self.short} ({self.unit})" if self.unit else self.short

    def value(self, x: Any) -> str:
        return f"{self.short} = {_number(x, self.scale, 'g')}{self.unit}"


# --- helpers ------------------------------------------------------------------------------------


def _metric(metric: str) -> tuple[str, str, float]:
    """Name, unit suffix (" (%)" or "") and display factor of a metric."""
    name, percent = METRICS.get(metric, (metric, False))
    return (name, " (%)", 100.0) if percent else (name, "", 1.0)


def _distinct(rows: Sequence[Mapping[str, Any]], key: str) -> list[Any]:
    """The non-None values of ``key`` in order of first appearance."""
    seen: dict[Any, None] = {}
    for row in rows:
        value = row.get(key)
        if value is not None:
            seen.setdefault(value, None)
    return list(seen)


def _log_x(x_name: str, xs: Sequence[float]) -> bool:
    """A log x axis for rates when every x is > 0 and they span more than one decade."""
    positive = [x for x in xs if _finite(x)]
    return (
        x_name in LOG_X
        and bool(positive)
        and all(x > 0 for x in positive)
        and max(positive) / min(positive) > 10
    )


def _spread(values: Sequence[Any], most: int) -> list[Any]:
    """At most ``most`` of ``values``, evenly spaced, first and last included."""
    if len(values) <= most:
        return list(values)
    picks = sorted({round(i * (len(values) - 1) / (most - 1)) for i in range(most)})
    return [values[i] for i in picks]


def _fault_free_section(rows: Sequence[Mapping[str, Any]]) -> list[_Block]:
    """One table for every fault-free entry: each model's error on each deployment."""
    headers = ("fault entry", "model", "accelerator", "Err (%)", "examples")
    table = tuple(
        (
            _text(row.get("fault")),
            _text(row.get("model")),
            _text(row.get("accelerator")),
            _number(row.get("err_clean"), 100.0),
            _text(row.get("examples")),
        )
        for row in rows
    )
    return [
        _Heading(2, "Fault free"),
        _Paragraph("Each model's test error on each deployment without faults.", note=True),
        _Table(headers, table, (False, False, False, True, True)),
    ]


def _methods(cells: Sequence[CellStatistics]) -> str:
    """How the cells' intervals were made: the bootstrap over patterns (one training seed) and/or
    t over the training-seed means."""
    names = {"bootstrap": "bootstrap over patterns", "t": "t over training-seed means"}
    used = dict.fromkeys(
        names["t"] if c.training_seeds > 1 and c.method == "t" else names.get(c.method, c.method)
        for c in cells
    )
    return "; ".join(used)


def _labelled(rows: list[dict[str, Any]], spec: Any) -> list[dict[str, Any]]:
    """Models and fault entries named by their ``label`` where the spec gives one and no two
    entries share it (a shared label would merge their cells)."""
    names = {}
    for entries, key in ((spec.models, "model"), (spec.faults, "fault")):
        labels = [e.label or e.name for e in entries]
        names[key] = {
            e.name: label for e, label in zip(entries, labels) if labels.count(label) == 1
        }
    return [
        {**r, "model": names["model"].get(r["model"], r["model"]),
         "fault": names["fault"].get(r["fault"], r["fault"])}
        for r in rows
    ]  # fmt: skip


def _with_mitigation(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """A mitigated trial's curve is its model's with the mitigation named: ``lenet5 + fap``."""
    if row.get("mitigation") is None:
        return row
    return {**row, "model": f"{row.get('model')} + {row['mitigation']}"}


def _cell_order(cell: CellStatistics, models: list[Any], accelerators: list[Any]) -> tuple:
    model, accelerator = cell.cell.get("model"), cell.cell.get("accelerator")
    return (
        models.index(model) if model in models else len(models),
        accelerators.index(accelerator) if accelerator in accelerators else len(accelerators),
        _none_last(cell.cell.get("x")),
    )


def _none_last(value: Any) -> tuple:
    return (value is None, value if value is not None else 0)


def _natural(value: Any) -> tuple:
    """Sort key for layer names: digit runs compare as numbers (``fc2`` before ``fc10``)."""
    if value is None:
        return (1, ())
    parts = re.split(r"(\d+)", str(value))
    return (0, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts))


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else value * scale


def _number(value: Any, scale: float, spec: str | None = None) -> str:
    """``value × scale`` formatted with ``spec`` (default: 2 decimals for percent, else 4
    significant digits); None shows as "–"."""
    if spec is None:
        spec = ".2f" if scale == 100.0 else ".4g"
    if not _finite(value):
        return MISSING if value is None else _text(value)
    return format(float(value) * scale, spec)


def _text(value: Any) -> str:
    """A user value as one line of text (escaping happens in the renderers)."""
    return MISSING if value is None else " ".join(str(value).split())


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", str(value)).strip("-.")[:40] or "x"


# --- renderers ----------------------------------------------------------------------------------


def _render_html(title: str, blocks: Sequence[_Block]) -> str:
    e = html.escape
    body: list[str] = []
    for block in blocks:
        if isinstance(block, _Heading):
            body.append(f"<h{block.level}>{e(block.text)}</h{block.level}>")
        elif isinstance(block, _Paragraph):
            css = ' class="note"' if block.note else ""
            body.append(f"<p{css}>{e(block.text)}</p>")
        elif isinstance(block, _Table):
            head = "".join(f'<th scope="col">{e(h)}</th>' for h in block.headers)
            lines = [f"<thead><tr>{head}</tr></thead>", "<tbody>"]
            for row in block.rows:
                cells = "".join(
                    f'<td class="num">{e(c)}</td>' if numeric else f"<td>{e(c)}</td>"
                    for c, numeric in zip(row, block.numeric, strict=True)
                )
                lines.append(f"<tr>{cells}</tr>")
            lines.append("</tbody>")
            body.append("<table>\n" + "\n".join(lines) + "\n</table>")
        elif isinstance(block, _Image):
            data = base64.b64encode(block.path.read_bytes()).decode("ascii")
            body.append(f'<img src="data:image/png;base64,{data}" alt="{e(block.alt)}">')
        elif isinstance(block, _Source):
            body.append(
                f"<details><summary>{e(block.summary)}</summary><pre>{e(block.text)}</pre>"
                "</details>"
            )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + f"\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )


def _render_markdown(blocks: Sequence[_Block], out: Path) -> str:
    """Markdown with ``<``, ``>`` and ``&`` of user text as HTML entities (renderers pass raw
    HTML through), tables by :func:`bitrobust.report.markdown_table`, images as relative
    links to the PNGs in ``out``."""
    e = html.escape
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, _Heading):
            parts.append("#" * block.level + " " + e(block.text, quote=False))
        elif isinstance(block, _Paragraph):
            parts.append(e(block.text, quote=False))
        elif isinstance(block, _Table):
            columns = [str(i) for i in range(len(block.headers))]
            rows = [
                {c: e(v, quote=False) for c, v in zip(columns, row, strict=True)}
                for row in block.rows
            ]
            headers = [e(h, quote=False) for h in block.headers]
            parts.append(markdown_table(rows, columns, headers=headers).rstrip("\n"))
        elif isinstance(block, _Image):
            alt = re.sub(r"[\[\]]", "", e(block.alt, quote=False))
            parts.append(f"![{alt}]({block.path.relative_to(out).as_posix()})")
        elif isinstance(block, _Source):
            longest = max((len(run) for run in re.findall(r"`+", block.text)), default=0)
            fence = "`" * max(3, longest + 1)
            parts.append(
                f"{e(block.summary, quote=False)}:\n\n{fence}\n{block.text.rstrip()}\n{fence}"
            )
    return "\n\n".join(parts) + "\n"
