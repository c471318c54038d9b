"""Tests for the campaign report: contents, escaping, axes and heatmaps, the Markdown twin, and
the HTML rendered by headless Chromium (tests/browser.py)."""

from __future__ import annotations

import random
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

import browser
from bitrobust import report as plots
from bitrobust.campaign.report import report_store, write_report
from bitrobust.campaign.statistics import cell_statistics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MODELS = {"normal": 0.02, "randbet": 0.01}  # model → RErr without faults
RATES = (0.001, 0.01, 0.1)
LAYERS = ("fc1.weight", "fc2.weight", "fc10.weight")  # fc10 sorts last (natural order)
BITS = tuple(range(8))
METRICS = ("rerr", "err_faulty")


def trial(**fields) -> dict:
    """One finished trial's row, with the store's keys; ``fields`` override."""
    row = {
        "trial_id": "t", "model": "normal", "training_seed": 0, "fault": "bit-errors",
        "fault_model": "RandomBitErrors(p=…)", "x": 0.01, "x_name": "bit_error_rate",
        "pattern": 0, "layer": None, "bit": None, "accelerator": None, "seed": 0,
        "err_clean": 0.02, "err_faulty": 0.05, "rerr": 0.051, "accuracy_loss": 0.03,
        "flips": 120, "faulty_macs": 0, "examples": 1000, "errors_faulty": 50,
        "errors_robust": 51, "wall_s": 0.01, "package_version": "0.2.0",
        "torch_version": "2.13.0", "device": "cpu", "finished_at": 1.7e9,
    }  # fmt: skip
    row.update(fields)
    row["trial_id"] = f"{row['fault']}/{row['model']}/{row['x']}/{row['pattern']}"
    return row


def sweep_rows(seeds=(0, 1), patterns=10, rates=RATES, **fields) -> list[dict]:
    """2 models × rates × patterns × training seeds of the "bit-errors" entry."""
    rng = random.Random(0)
    rows = []
    for model, base in MODELS.items():
        for seed in seeds:
            for p in rates:
                for pattern in range(patterns):
                    rerr = base + 2 * p + 0.004 * seed + rng.uniform(0, 0.01)
                    rows.append(trial(
                        model=model, training_seed=seed, x=p, pattern=pattern, seed=pattern,
                        rerr=rerr, err_faulty=rerr - 0.001, **fields,
                    ))  # fmt: skip
    return rows


def layer_bit_rows(layers=LAYERS, bits=BITS, rates=(0.01, 0.05), patterns=3) -> list[dict]:
    """The "layer-bits" entry: every trial flips bits of one layer at one bit position."""
    rng = random.Random(1)
    return [
        trial(
            fault="layer-bits",
            fault_model="BitPositionErrors(…)",
            model="randbet",
            x=p,
            layer=layer,
            bit=bit,
            pattern=pattern,
            rerr=0.01 + p * (bit or 1) * (i + 1) / 10 + rng.uniform(0, 0.002),
            err_faulty=None,
        )  # fmt: skip
        for p in rates
        for i, layer in enumerate(layers)
        for bit in bits
        for pattern in range(patterns)
    ]


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> dict[str, Path]:
    """The report of a campaign with both kinds of fault entry, written once."""
    out = tmp_path_factory.mktemp("campaign") / "report"
    rows = sweep_rows() + layer_bit_rows()
    return write_report(
        rows, out, title="demo campaign", metrics=METRICS, spec_text='name = "demo"\n',
        provenance={"bitrobust": "0.2.0", "code": "0123456789abcdef", "torch": "2.13.0"},
        status={"done": len(rows), "total": len(rows) + 10},
    )  # fmt: skip


@pytest.fixture
def figures(monkeypatch) -> list:
    """The matplotlib figures the report saves (the PNGs are still written)."""
    saved = []
    original = plots._save

    def keep(figure, path):
        saved.append(figure)
        return original(figure, path)

    monkeypatch.setattr(plots, "_save", keep)
    return saved


class Nesting(HTMLParser):
    """Checks that every element is closed, in order (void elements need no end tag)."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            assert dict(attrs).get("alt"), "an image without alt text"
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open.pop() == tag, f"</{tag}> closes nothing open"


def assert_well_formed(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>")
    parser = Nesting()
    parser.feed(html)
    parser.close()
    assert parser.open == [], parser.open


def pngs(paths: dict[str, Path]) -> dict[str, Path]:
    return {name: path for name, path in paths.items() if name not in ("html", "markdown")}


# --- contents ----------------------------------------------------------------------------------


def test_report_files_and_structure(campaign):
    html = campaign["html"].read_text()
    images = pngs(campaign)
    # curves: bit-errors × 2 metrics; heatmaps: layer-bits × randbet × rerr (err_faulty missing)
    assert sorted(n.split("-")[0] for n in images) == ["curves", "curves", "heatmap"]
    for path in images.values():
        assert path.parent == campaign["html"].parent
        assert path.read_bytes().startswith(PNG_MAGIC)
    assert html.count("<img ") == 3 and html.count('src="data:image/png;base64,') == 3
    assert html.count("<table>") == 3  # facts + one per curve section
    assert "<th" in html and 'alt="' in html
    assert_well_formed(html)
    # self-contained: nothing but data URIs, and a policy that forbids fetching
    assert not re.search(r'(src|href)="(?!data:)', html)
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "http://" not in html and "https://" not in html
    for text in ("demo campaign", "0123456789abcdef", "2.13.0", "bit error rate p (%)"):
        assert text in html
    assert "trials finished</td><td>" in html and f"of {len(sweep_rows()) + 144 + 10}" in html
    assert "<details><summary>campaign spec</summary><pre>name = &quot;demo&quot;" in html
    assert "No finished trial of this entry has a value for Err under faults." in html


def test_table_shows_mean_and_halfwidth_of_cell_statistics(campaign):
    markdown = campaign["markdown"].read_text()
    rows = sweep_rows()
    for cell in cell_statistics(rows, ("fault", "model", "x"), "rerr"):
        mean, half = 100 * cell.mean, 100 * cell.halfwidth()
        x = format(100 * cell.cell["x"], "g")
        expected = (
            rf"\| {cell.cell['model']} +\| {x} +\| {mean:.2f} ± {half:.2f} +\| 20 +\| 10 +\| 2 "
        )
        assert re.search(expected, markdown), expected
    assert "RErr (%): mean ± 95% CI half-width" in markdown
    assert "std over training seeds (%)" in markdown  # two training seeds


def test_markdown_twin(campaign):
    markdown = campaign["markdown"].read_text()
    assert markdown.startswith("# demo campaign\n")
    assert "## Fault entry: bit-errors" in markdown and "## Fault entry: layer-bits" in markdown
    links = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", markdown)
    assert sorted(links) == sorted(pngs(campaign))
    assert all((campaign["markdown"].parent / link).is_file() for link in links)
    assert '```\nname = "demo"\n```' in markdown
    # the same tables as the HTML: every table header appears in both
    html = campaign["html"].read_text()
    for header in re.findall(r'<th scope="col">([^<]*)</th>', html):
        assert header in markdown


def test_user_strings_are_escaped(tmp_path):
    evil = '<script>alert("x")</script>'
    rows = sweep_rows(seeds=(0,), patterns=2, fault="a&b <i>", fault_model=evil)
    rows += [dict(row, model=evil) for row in rows]
    paths = write_report(
        rows, tmp_path, title=f"title {evil}", spec_text=f"name = '{evil}'",
        provenance={"code": evil}, status={"done": 1, "total": 2, "note": evil},
    )  # fmt: skip
    html = paths["html"].read_text()
    assert html.count("<script") == 1  # the report's own script only
    assert_well_formed(html)
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "a&amp;b &lt;i&gt;" in html and "<i>" not in html
    markdown = paths["markdown"].read_text()
    assert "<script" not in markdown.split("```")[0] + markdown.split("```")[-1]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+\.png", name) for name in pngs(paths))


def test_empty_store(tmp_path):
    paths = write_report(
        [], tmp_path / "empty", title="nothing yet", status={"done": 0, "total": 8}
    )
    assert set(paths) == {"html", "markdown"}
    html = paths["html"].read_text()
    assert "No trials are finished yet." in html and "0 of 8 (0%)" in html
    assert "<table>" in html and "<img" not in html
    assert "No trials are finished yet." in paths["markdown"].read_text()


def test_rows_without_the_metric_are_skipped(tmp_path):
    rows = sweep_rows(seeds=(0,), patterns=4)
    for row in rows[::2]:
        row["err_faulty"] = None
    rows[1].pop("err_faulty")
    rows[0]["rerr"] = float("nan")
    paths = write_report(rows, tmp_path, title="t", metrics=("rerr", "err_faulty", "flips"))
    markdown = paths["markdown"].read_text()
    assert len(pngs(paths)) == 3
    rerr, err_faulty, flips = markdown.split("### ")[1:]
    assert "1 trial(s) with a non-finite RErr left out." in rerr
    assert re.search(r"\| 3 +\| 3 +\| 1 +\|", rerr)  # the NaN trial's cell
    assert re.search(r"\| 4 +\| 4 +\| 1 +\|", rerr)  # 4 trials, 4 patterns, 1 seed per cell
    assert not re.search(r"\| 4 +\| 4 +\| 1 +\|", err_faulty) and "| 1 " in err_faulty
    assert "std over training seeds" not in markdown  # one training seed
    assert "flipped bits: mean" in flips and "(%)" not in flips.split("\n")[0]


def test_several_accelerators_are_separate_curves(tmp_path, figures):
    rows = [
        dict(row, accelerator=accelerator)
        for row in sweep_rows(seeds=(0,), patterns=2, x_name="fault_rate")
        for accelerator in ("mul8u_1JFF on tpu16x16", "exact")
    ]
    paths = write_report(rows, tmp_path, title="t")
    labels = [line.get_label() for line in figures[0].axes[0].get_lines()]
    assert labels == [f"{m} on {a}" for m in MODELS for a in ("mul8u_1JFF on tpu16x16", "exact")]
    markdown = paths["markdown"].read_text()
    assert "| model   | accelerator" in markdown and "fault rate (%)" in markdown


@pytest.mark.parametrize(
    ("x_name", "xs", "scale"),
    [
        ("bit_error_rate", (0.001, 0.01, 0.1), "log"),
        ("fault_rate", (1e-4, 1e-3, 1e-2), "log"),
        ("bit_error_rate", (0.0, 0.01, 0.1), "linear"),  # x = 0 (clean) stays on the axis
        ("bit_error_rate", (0.02, 0.05, 0.1), "linear"),  # within a decade
        ("voltage", (0.01, 0.5, 1.0), "linear"),  # voltages are linear
    ],
)
def test_log_x_axis_choice(tmp_path, figures, x_name, xs, scale):
    rows = sweep_rows(seeds=(0,), patterns=3, rates=xs, x_name=x_name)
    write_report(rows, tmp_path, title="t")
    (figure,) = figures
    (axes,) = figure.axes
    assert axes.get_xscale() == scale
    assert (
        axes.get_xlabel()
        == {
            "bit_error_rate": "bit error rate p (%)",
            "fault_rate": "fault rate (%)",
            "voltage": "voltage V / V_min",
        }[x_name]
    )
    assert [line.get_label() for line in axes.get_lines()] == list(MODELS)
    assert len(axes.collections) == len(MODELS)  # a shaded confidence band per curve


def test_heatmaps_only_for_layer_or_bit_rows(tmp_path, figures):
    paths = write_report(sweep_rows(seeds=(0,), patterns=3), tmp_path / "a", title="t")
    assert not any(name.startswith("heatmap") for name in paths)
    assert "Sensitivity per layer" not in paths["html"].read_text()

    paths = write_report(layer_bit_rows(), tmp_path / "b", title="t")
    assert [name.split("-")[0] for name in pngs(paths)] == ["heatmap"]  # no curves, no table
    figure = figures[-1]
    panels = [axes for axes in figure.axes if axes.images]
    assert len(panels) == 2  # one per x value
    assert panels[0].images[0].get_array().shape == (len(LAYERS), len(BITS))
    assert [t.get_text() for t in panels[0].get_yticklabels()] == list(LAYERS)
    assert panels[0].get_title() == "bit error rate p = 1%"
    assert len(panels[0].texts) == len(LAYERS) * len(BITS)  # annotated


@pytest.mark.parametrize(
    ("layers", "bits", "shape"),
    [(LAYERS, (None,), (3, 1)), ((None,), BITS, (1, 8))],
)
def test_heatmap_of_layers_only_or_bits_only(tmp_path, figures, layers, bits, shape):
    write_report(layer_bit_rows(layers=layers, bits=bits, rates=(0.01,)), tmp_path, title="t")
    (panel,) = [axes for axes in figures[-1].axes if axes.images]
    assert panel.images[0].get_array().shape == shape
    labels = [t.get_text() for t in panel.get_xticklabels() + panel.get_yticklabels()]
    assert ("all bits" in labels) == (bits == (None,))
    assert ("all layers" in labels) == (layers == (None,))


def test_heatmaps_show_at_most_four_x_values(tmp_path, figures):
    rates = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
    paths = write_report(layer_bit_rows(rates=rates, patterns=1), tmp_path, title="t")
    panels = [axes for axes in figures[-1].axes if axes.images]
    assert len(panels) == 4
    assert "the trials have 6 values of bit error rate p; the heatmaps show 4" in (
        paths["html"].read_text()
    )
    assert panels[0].get_title().endswith("= 0.1%") and panels[-1].get_title().endswith("= 5%")


SPEC = """name = "tiny"
metrics = ["rerr", "err_faulty"]
confidence = 0.9

[[models]]
name = "normal"
architecture = "mlp"

[[faults]]
name = "bit-errors"
type = "random_bit_errors"
rates = [0.001, 0.01, 0.1]
"""


def test_report_of_a_store(tmp_path):
    from bitrobust.campaign.spec import parse_spec, spec_hash
    from bitrobust.campaign.store import PROVENANCE_COLUMNS, CampaignStore, TrialRecord

    rows = sweep_rows(seeds=(0,), patterns=3)
    records = [
        TrialRecord(
            trial_id=row["trial_id"],
            params={
                k: row[k]
                for k in (
                    "model",
                    "training_seed",
                    "fault",
                    "x",
                    "x_name",
                    "pattern",
                    "layer",
                    "bit",
                    "accelerator",
                )
            },
            seed=row["seed"],
            metrics={m: row[m] for m in ("rerr", "err_faulty", "examples", "errors_robust")},
            **{name: row[name] for name in PROVENANCE_COLUMNS},
        )  # fmt: skip
        for row in rows
    ]
    store_path = tmp_path / "s.db"
    with CampaignStore.create_or_open(store_path, spec_hash(parse_spec(SPEC)), SPEC) as store:
        store.set_meta("name", "tiny")
        store.set_planned([*(r.trial_id for r in records), "not-run-yet"])
        store.record(records)
    paths = report_store(store_path, tmp_path / "report")
    html = paths["html"].read_text()
    assert "<h1>Campaign tiny</h1>" in html
    assert f"{len(rows)} of {len(rows) + 1}" in html and "trials pending</td><td>1" in html
    assert (
        "code fingerprint" in html
        and "metrics = [&quot;rerr&quot;, &quot;err_faulty&quot;]" in html
    )
    assert len(pngs(paths)) == 2  # the spec's two metrics
    assert "mean ± 90% CI half-width" in html  # the spec's confidence


# --- in a browser -------------------------------------------------------------------------------


def test_chromium_renders_the_report(campaign):
    chromium = browser.require_chromium()
    page = campaign["html"]
    start = time.perf_counter()
    dom = browser.dump_dom(chromium, page)
    assert 'data-rendered="ok"' in dom, dom[-2000:]
    assert len(re.findall(r"<img\b", dom)) == 3
    assert len(re.findall(r"<table\b", dom)) == 3
    assert "document.body.dataset.rendered" in dom  # the script survived, and ran

    png = browser.screenshot(chromium, page, page.with_name("screenshot.png"), 1200, 3000)
    elapsed = time.perf_counter() - start
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == (1200, 3000)
        pixels = image.convert("RGB")
        colours = pixels.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200, "screenshot looks blank"
    most = max(count for count, _ in colours)
    assert most < 0.95 * 1200 * 3000, "screenshot is nearly one colour"
    assert elapsed < 60


def test_missing_chromium_skips_but_fails_under_ci(monkeypatch):
    monkeypatch.delenv("BITROBUST_CHROMIUM", raising=False)
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must render the report"):
        browser.require_chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="Chromium not found"):
        browser.require_chromium()


def test_chromium_reports_a_broken_image(campaign, tmp_path):
    """The page's check is not always "ok": a corrupt image makes it say "broken"."""
    chromium = browser.require_chromium()
    html = campaign["html"].read_text()
    broken = tmp_path / "broken.html"
    broken.write_text(html.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1))
    assert 'data-rendered="broken"' in browser.dump_dom(chromium, broken)
