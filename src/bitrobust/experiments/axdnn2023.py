"""``bitrobust reproduce axdnn2023``: approximate DNNs under permanent PE faults (Siddique & Hoque
2023) and their mitigation by FaL-reTune, FAP and FAP+T (reconstructions, see
:mod:`bitrobust.hw.mitigation` and ``papers.md`` §2.3/§2.5).

For every dataset × model (an MLP and LeNet-5, trained with RQuant quantization-aware training):

1. accuracy vs multiplier: fault-free accuracy on each multiplier of the list, with its power
   (EvoApprox PDK45 figures) and MAE;
2. accuracy loss vs faulty bit position: bit b of the 16-bit product stuck at 0/1 in a fraction
   10/30/50 % of the PEs of a 16×16 weight-stationary systolic array, for the accurate and an
   approximate multiplier (same PEs for every bit, stuck-at value and multiplier);
3. mitigation at fault rate 50 %: no mitigation vs FAP (faulty PEs bypassed) vs FAP+T vs
   FaL-reTune, for a few (bit, stuck-at) faults.

The study is a campaign: :func:`spec_text` writes :class:`AxSettings` as a spec (the packaged
``specs/axdnn2023.toml`` and ``specs/axdnn2023-quick.toml`` are its output for the full and quick
settings; a test keeps them equal), which runs into ``<out-dir>/campaign.db``. The report is
built from the store's rows and writes ``axdnn2023.md`` (tables and findings),
``axdnn2023-multipliers.png``, ``axdnn2023-bits.png`` and ``axdnn2023.json``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bitrobust.campaign.plan import training_jobs
from bitrobust.campaign.spec import CampaignSpec, parse_spec
from bitrobust.checkpoint import load_checkpoint
from bitrobust.data import evoapprox_dir, load_dataset, subset
from bitrobust.evaluate import accuracy
from bitrobust.experiments.campaigns import SPECS, run_study_spec
from bitrobust.hw import load_multiplier
from bitrobust.stats import spearman, summarize

UNSIGNED_MULTIPLIERS = (
    "mul8u_1JFF",
    "mul8u_2P7",
    "mul8u_KEM",
    "mul8u_NGR",
    "mul8u_12N4",
    "mul8u_17KS",
    "mul8u_L40",
)

#: Mitigations compared, by report name: (MitigationConfig method, options). ``fap`` bypasses
#: the faulty PEs (Zhang et al.'s hardware FAP); ``fap-zero`` only writes the zero-point code,
#: so a faulty PE still adds its stuck bit (software-only pruning).
MITIGATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "fap": ("fap", {}),
    "fap-zero": ("fap", {"bypass": False}),
    "fap-t": ("fap-t", {}),
    "falretune": ("falretune", {}),
}

PAPER = {
    "loss": "a permanent fault can cost an AxDNN up to 56 % accuracy where the same faulty bit "
    "costs the AccDNN only 4 %",
    "recovery": "FaL-reTune improves AxDNN performance up to 98 % at fault rates up to 50 %",
}


@dataclass
class AxSettings:
    """What to train, on which multipliers and faults to evaluate, and how to mitigate."""

    datasets: tuple[str, ...] = ("mnist", "fashion-mnist")
    models: tuple[tuple[str, dict[str, Any]], ...] = (
        ("mlp", {"hidden": [256, 128]}),
        ("lenet5", {}),
    )
    epochs: int = 3
    batch_size: int = 128
    lr: float = 0.05
    train_limit: int | None = 20000
    test_limit: int = 500
    calibration: int = 1000
    multipliers: tuple[str, ...] = UNSIGNED_MULTIPLIERS
    accurate: str = "mul8u_1JFF"
    approximate: str = "mul8u_12N4"
    array_size: int = 16
    bits: tuple[int, ...] = (4, 8, 12, 14, 15)
    stuck_at: tuple[int, ...] = (0, 1)
    rates: tuple[float, ...] = (0.1, 0.3, 0.5)
    patterns: int = 2
    mitigation_rate: float = 0.5
    mitigation_faults: tuple[tuple[int, int], ...] = ((14, 1), (15, 0))
    mitigation_patterns: int = 2
    methods: tuple[str, ...] = ("fap", "fap-zero", "fap-t", "falretune")
    retune_epochs: int = 2
    retune_lr: float = 0.005
    retune_examples: int = 1000
    seed: int = 0


def settings(quick: bool) -> AxSettings:
    """Quick (under 15 min on 2 cores) or full (about 1-1.5 h on 2 cores)."""
    if quick:
        return AxSettings()
    return AxSettings(
        epochs=6,
        train_limit=None,
        test_limit=2000,
        bits=(0, 2, 4, 6, 8, 10, 12, 13, 14, 15),
        patterns=3,
        mitigation_faults=((14, 1), (12, 1), (15, 0)),
        mitigation_patterns=2,
        retune_examples=3000,
    )


def _log(message: str) -> None:
    """Progress of the study: the ``bitrobust`` logger at INFO (the CLI shows it on stderr)."""
    logging.getLogger(__name__).info(message)


def spec_text(s: AxSettings, name: str = "axdnn2023") -> str:
    """The campaign spec of settings ``s``: one model per dataset × architecture; per multiplier
    a fault-free entry; per accurate/approximate multiplier and stuck-at value a bit sweep at
    every fault rate; per mitigation fault the five mitigations (none included)."""
    lines = [
        f"# Siddique & Hoque 2023 ({name}): made by bitrobust.experiments.axdnn2023.spec_text",
        f'name = "{name}"',
        'description = "approximate DNNs under permanent PE faults, and their mitigation"',
        f"seed = {s.seed}",
        f"patterns = {s.patterns}",
        'metrics = ["err_faulty", "rerr"]',
        "",
        "[data]",
        f'dataset = "{s.datasets[0]}"',
        f"test_limit = {s.test_limit}",
        *([f"train_limit = {s.train_limit}"] if s.train_limit else []),
    ]
    for dataset in s.datasets:
        for model, options in s.models:
            lines += [
                "",
                "[[models]]",
                f'name = "{dataset}-{model}"',
                f'label = "{model}"',
                f'dataset = "{dataset}"',
                f'architecture = "{model}"',
                f"options = {_toml(options)}",
                'quantization = "rquant"',
                "bits = 8",
                f"epochs = {s.epochs}",
                f"batch_size = {s.batch_size}",
                f"lr = {s.lr}",
                f"training_seeds = [{s.seed}]",
            ]
    accelerator = f"size = {s.array_size}\ncalibration = {s.calibration}"
    for multiplier in dict.fromkeys((*s.multipliers, s.accurate, s.approximate)):
        lines += [
            "",
            "[[faults]]",
            f'name = "fault-free-{multiplier}"',
            'type = "fault_free"',
            "[faults.accelerator]",
            f'multiplier = "{multiplier}"',
            accelerator,
        ]
    for multiplier in (s.accurate, s.approximate):
        for stuck_at in s.stuck_at:
            lines += [
                "",
                "[[faults]]",
                f'name = "bits-{multiplier}-sa{stuck_at}"',
                'type = "pe_faults"',
                f"fault_rates = {_toml(list(s.rates))}",
                f"bit = {_toml(list(s.bits))}",
                f"stuck_at = {stuck_at}",
                "[faults.accelerator]",
                f'multiplier = "{multiplier}"',
                accelerator,
            ]
    for multiplier in (s.accurate, s.approximate):
        for bit, stuck_at in s.mitigation_faults:
            lines += [
                "",
                "[[faults]]",
                f'name = "mitigation-{multiplier}-b{bit}-sa{stuck_at}"',
                'type = "pe_faults"',
                f"fault_rates = [{s.mitigation_rate}]",
                f"bit = {bit}",
                f"stuck_at = {stuck_at}",
                f"patterns = {s.mitigation_patterns}",
                "mitigations = [",
                '    { method = "none" },',
            ]
            for method in s.methods:
                base, options = MITIGATIONS[method]
                extra = "".join(f", {k} = {_toml(v)}" for k, v in options.items())
                label = "" if method == base else f', label = "{method}"'
                lines.append(
                    f'    {{ method = "{base}"{label}, epochs = {s.retune_epochs}, '
                    f"lr = {s.retune_lr}, examples = {s.retune_examples}{extra} }},"
                )
            lines += ["]", "[faults.accelerator]", f'multiplier = "{multiplier}"', accelerator]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def study_spec(quick: bool) -> tuple[AxSettings, str]:
    """The settings and the packaged spec text of the quick or full run."""
    name = "axdnn2023-quick" if quick else "axdnn2023"
    return settings(quick), (SPECS / f"{name}.toml").read_text()


def records_from_rows(
    s: AxSettings,
    spec: CampaignSpec,
    rows: list[dict[str, Any]],
    out: Path,
    data_dir: str | os.PathLike | None,
) -> list[dict[str, Any]]:
    """One record per (dataset, model) from the store's rows: the three parts of the study."""
    by_fault: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: r["pattern"]):
        by_fault.setdefault((row["model"], row["fault"]), []).append(row)
    checkpoints = {job.model: job.checkpoint for job in training_jobs(spec, out / "checkpoints")}
    records = []
    for dataset in s.datasets:
        images, labels = subset(load_dataset(dataset, "test", data_dir), s.test_limit).tensors
        for model_name, options in s.models:
            name = f"{dataset}-{model_name}"

            def accuracies(fault: str, **match: Any) -> list[float]:
                return [
                    1 - r["err_faulty"]
                    for r in by_fault.get((name, fault), [])  # noqa: B023
                    if all(r[k] == v for k, v in match.items())
                ]

            model = load_checkpoint(checkpoints[name]).model
            record: dict[str, Any] = {
                "dataset": dataset,
                "model": model_name,
                "options": options,
                "examples": len(images),
                "float_accuracy": accuracy(model, images, labels),
            }
            fault_free = {
                m: accuracies(f"fault-free-{m}")[0]
                for m in dict.fromkeys((*s.multipliers, s.accurate, s.approximate))
            }
            record["multipliers"] = [
                _multiplier_row(m, fault_free[m], data_dir) for m in s.multipliers
            ]
            record["fault_free"] = fault_free
            record["faults"] = [
                _loss_row(m, sa, b, r, fault_free[m], accuracies(f"bits-{m}-sa{sa}", bit=b, x=r))
                for m in (s.accurate, s.approximate)
                for sa in s.stuck_at
                for b in s.bits
                for r in s.rates
            ]
            record["mitigation"] = []
            for m in (s.accurate, s.approximate):
                for bit, stuck_at in s.mitigation_faults:
                    fault = f"mitigation-{m}-b{bit}-sa{stuck_at}"
                    by_method = {
                        method: accuracies(fault, mitigation=method)
                        for method in ("none", *s.methods)
                    }
                    faulty = statistics.fmean(by_method["none"])
                    lost = fault_free[m] - faulty
                    for method, values in by_method.items():
                        mean = statistics.fmean(values)
                        record["mitigation"].append(
                            {
                                "multiplier": m,
                                "bit": bit,
                                "stuck_at": stuck_at,
                                "rate": s.mitigation_rate,
                                "method": method,
                                "fault_free": fault_free[m],
                                "accuracy_mean": mean,
                                "accuracy_std": summarize(values).std,
                                "recovery": (mean - faulty) / lost if lost > 0 else None,
                            }
                        )
            records.append(record)
    return records


def _multiplier_row(name: str, fault_free: float, data_dir: str | os.PathLike | None) -> dict:
    multiplier = load_multiplier(name, evoapprox_dir(data_dir))
    metrics = multiplier.metrics()
    return {
        "multiplier": name,
        "power_mw": multiplier.power_mw,
        "mae_percent": metrics["mae_percent"],
        "wce_percent": metrics["wce_percent"],
        "accuracy": fault_free,
    }


def _loss_row(
    multiplier: str, stuck_at: int, bit: int, rate: float, fault_free: float, values: list[float]
) -> dict[str, Any]:
    losses = [fault_free - v for v in values]
    return {
        "multiplier": multiplier,
        "stuck_at": stuck_at,
        "bit": bit,
        "rate": rate,
        "accuracy_mean": statistics.fmean(values),
        **{f"loss_{k}": v for k, v in summarize(losses).to_json(interval=False).items()},
    }


def findings(records: list[dict[str, Any]], s: AxSettings) -> list[str]:
    """Lines comparing the measurements with the paper's abstract claims."""
    lines = []
    for r in records:
        tag = f"{r['dataset']} {r['model']}"
        rows = [row for row in r["multipliers"] if row["power_mw"] is not None]
        accs = [100 * row["accuracy"] for row in r["multipliers"]]
        rho = spearman([row["power_mw"] for row in rows], [row["accuracy"] for row in rows])
        rho_text = "n/a (no power figures)" if rho is None else f"{rho:+.2f}"
        lines.append(
            f"- {tag}, accuracy vs multiplier: fault free {min(accs):.1f}–{max(accs):.1f} % over "
            f"{len(accs)} multipliers; Spearman ρ(power, accuracy) = {rho_text} (paper: "
            "resilience and accuracy are orthogonal to energy efficiency)."
        )
        faults = r["faults"]
        ax = [row for row in faults if row["multiplier"] == s.approximate]
        acc = {
            (row["bit"], row["stuck_at"], row["rate"]): row
            for row in faults
            if row["multiplier"] == s.accurate
        }
        if ax and acc:
            worst = max(ax, key=lambda row: row["loss_mean"])
            same = acc.get((worst["bit"], worst["stuck_at"], worst["rate"]))
            gap = max(
                ax,
                key=lambda row: (
                    row["loss_mean"]
                    - acc.get((row["bit"], row["stuck_at"], row["rate"]), row)["loss_mean"]
                ),
            )
            gap_acc = acc.get((gap["bit"], gap["stuck_at"], gap["rate"]), gap)
            lines.append(
                f"- {tag}, faulty bit: the worst AxDNN ({s.approximate}) loss is "
                f"{100 * worst['loss_mean']:.1f} points (bit {worst['bit']} stuck at "
                f"{worst['stuck_at']}, {100 * worst['rate']:g} % faulty PEs), where the AccDNN "
                f"({s.accurate}) loses {100 * same['loss_mean']:.1f}; the largest AxDNN − AccDNN "
                f"gap at the same fault is {100 * (gap['loss_mean'] - gap_acc['loss_mean']):+.1f} "
                f"points ({100 * gap['loss_mean']:.1f} vs {100 * gap_acc['loss_mean']:.1f}, bit "
                f"{gap['bit']} SA{gap['stuck_at']}, {100 * gap['rate']:g} %) — paper: "
                f"{PAPER['loss']}."
            )
        for name in (s.accurate, s.approximate):
            rows = [row for row in r["mitigation"] if row["multiplier"] == name]
            for bit, stuck_at in s.mitigation_faults:
                group = {
                    row["method"]: row
                    for row in rows
                    if row["bit"] == bit and row["stuck_at"] == stuck_at
                }
                if "none" not in group:
                    continue
                parts = []
                for method, row in group.items():
                    recovery = row["recovery"]
                    rec = "" if recovery is None else f" (recovery {100 * recovery:.0f} %)"
                    parts.append(f"{method} {100 * row['accuracy_mean']:.1f} %{rec}")
                lines.append(
                    f"- {tag}, {name}, bit {bit} SA{stuck_at} at "
                    f"{100 * s.mitigation_rate:g} % faulty PEs (fault free "
                    f"{100 * group['none']['fault_free']:.1f} %): " + ", ".join(parts) + "."
                )
    lines += _method_wins(records)
    recoveries = [
        row["recovery"]
        for r in records
        for row in r["mitigation"]
        if row["method"] == "falretune" and row["recovery"] is not None
    ]
    if recoveries:
        lines.append(
            f"- FaL-reTune recovers {100 * min(recoveries):.0f}–{100 * max(recoveries):.0f} % of "
            f"the accuracy lost at {100 * s.mitigation_rate:g} % faulty PEs over "
            f"{len(recoveries)} cases (recovery = share of the lost accuracy won back; the "
            f"paper's '{PAPER['recovery']}' is not defined more precisely in the abstract)."
        )
    return lines


def _method_wins(records: list[dict[str, Any]]) -> list[str]:
    """How often FaL-reTune beats each other mitigation on the same fault (mean accuracy)."""
    cases: dict[tuple, dict[str, float]] = {}
    for r in records:
        for row in r["mitigation"]:
            key = (r["dataset"], r["model"], row["multiplier"], row["bit"], row["stuck_at"])
            cases.setdefault(key, {})[row["method"]] = row["accuracy_mean"]
    parts = []
    for other in [m for m in MITIGATIONS if m != "falretune"]:
        pairs = [c for c in cases.values() if "falretune" in c and other in c]
        if pairs:
            wins = sum(c["falretune"] > c[other] for c in pairs)
            parts.append(f"{other} in {wins} of {len(pairs)}")
    if not parts:
        return []
    return [
        "- FaL-reTune is more accurate than " + ", ".join(parts) + " cases (paper: FaL-reTune "
        "beats FAP and FAP+T; its FAP baseline's hardware is not specified in the abstract)."
    ]


def _tables(records: list[dict[str, Any]], s: AxSettings) -> list[str]:
    from bitrobust.report import markdown_table

    lines = ["## Accuracy vs multiplier (fault free)", ""]
    names = list(s.multipliers)
    rows = []
    for r in records:
        row: dict[str, Any] = {"model": f"{r['dataset']} {r['model']}"}
        row["float"] = 100 * r["float_accuracy"]
        for entry in r["multipliers"]:
            row[entry["multiplier"]] = 100 * entry["accuracy"]
        rows.append(row)
    lines.append(markdown_table(rows, ["model", "float", *names]))
    first = records[0]["multipliers"] if records else []
    lines += [
        "",
        markdown_table(
            first,
            ["multiplier", "power_mw", "mae_percent", "wce_percent"],
            ["multiplier", "power (mW)", "MAE (% of 2^16)", "WCE (% of 2^16)"],
            floatfmt=".4g",
        ),
        "",
        "## Accuracy loss (points) vs faulty bit",
        "",
        f"Bit b of the 16-bit product stuck at 0/1 in a fraction of the PEs of a "
        f"{s.array_size}×{s.array_size} systolic array; mean over {s.patterns} fault maps.",
        "",
    ]
    for r in records:
        for stuck_at in s.stuck_at:
            rows = []
            for name in (s.accurate, s.approximate):
                for rate in s.rates:
                    row = {"multiplier": name, "rate": f"{100 * rate:g} %"}
                    for f in r["faults"]:
                        if (f["multiplier"], f["stuck_at"], f["rate"]) == (name, stuck_at, rate):
                            row[str(f["bit"])] = 100 * f["loss_mean"]
                    rows.append(row)
            columns = ["multiplier", "rate", *(str(b) for b in s.bits)]
            headers = ["multiplier", "faulty PEs", *(f"bit {b}" for b in s.bits)]
            lines += [
                f"### {r['dataset']} {r['model']}, stuck at {stuck_at}",
                "",
                markdown_table(rows, columns, headers),
                "",
            ]
    lines += [
        f"## Mitigation at {100 * s.mitigation_rate:g} % faulty PEs",
        "",
        f"Accuracy (%) mean over {s.mitigation_patterns} fault maps; recovery = (mitigated − "
        "faulty) / (fault free − faulty). FAP bypasses the faulty PEs; FAP-zero only sets "
        "their weights to the zero-point code, so a faulty PE still adds its stuck bit; FAP+T "
        "(bypass) and FaL-reTune "
        f"retune for {s.retune_epochs} epoch(s) at lr {s.retune_lr} on {s.retune_examples} "
        "training examples; FaL-reTune keeps the best of faulty/mapped/retuned on those examples.",
        "",
    ]
    rows = []
    for r in records:
        for m in r["mitigation"]:
            rows.append(
                {
                    "model": f"{r['dataset']} {r['model']}",
                    "multiplier": m["multiplier"],
                    "fault": f"bit {m['bit']} SA{m['stuck_at']}",
                    "method": m["method"],
                    "fault_free": 100 * m["fault_free"],
                    "accuracy": 100 * m["accuracy_mean"],
                    "std": 100 * m["accuracy_std"],
                    "recovery": None if m["recovery"] is None else 100 * m["recovery"],
                }
            )
    columns = ["model", "multiplier", "fault", "method", "fault_free", "accuracy", "std"]
    headers = [*columns[:4], "fault free %", "accuracy %", "std", "recovery %"]
    lines.append(markdown_table(rows, [*columns, "recovery"], headers))
    return lines


def plots(records: list[dict[str, Any]], s: AxSettings, out: Path) -> list[Path]:
    from bitrobust.report import plot_grid

    panels: dict[str, dict[str, list[dict]]] = {}
    for r in records:
        panel = panels.setdefault(r["dataset"], {})
        panel[r["model"]] = [row for row in r["multipliers"] if row["power_mw"] is not None]
    first = plot_grid(
        panels,
        out / "axdnn2023-multipliers.png",
        x="power_mw",
        y="accuracy",
        y_low=None,
        y_high=None,
        xlabel="multiplier power (mW, PDK45)",
        ylabel="fault-free accuracy (%)",
        logx=False,
        x_scale=1.0,
        title="Accuracy vs multiplier power",
    )
    bit_panels: dict[str, dict[str, list[dict]]] = {}
    for r in records:
        for stuck_at in s.stuck_at:
            panel = bit_panels.setdefault(f"{r['dataset']} {r['model']} SA{stuck_at}", {})
            for f in r["faults"]:
                if f["stuck_at"] == stuck_at:
                    panel.setdefault(f"{f['multiplier']} {100 * f['rate']:g} %", []).append(f)
    second = plot_grid(
        bit_panels,
        out / "axdnn2023-bits.png",
        ncols=4,
        x="bit",
        y="loss_mean",
        y_low="loss_min",
        y_high="loss_max",
        band_label=f"shaded: min–max over {s.patterns} fault maps",
        xlabel="faulty product bit",
        ylabel="accuracy loss (points)",
        logx=False,
        x_scale=1.0,
        title="Accuracy loss vs faulty bit position",
    )
    return [first, second]


def reproduce(
    out_dir: str | os.PathLike,
    quick: bool,
    data_dir: str | os.PathLike | None = None,
    command: str = "",
    device: str | None = None,
    workers: int | None = 1,
) -> dict[str, Any]:
    """Run the study's campaign into ``out_dir`` and write its Markdown report, plots and JSON
    record there."""
    out = Path(out_dir)
    s, text = study_spec(quick)
    spec = parse_spec(text, "spec axdnn2023")
    started = time.time()
    rows = run_study_spec(spec, text, out, data_dir, workers=workers)
    records = records_from_rows(s, spec, rows, out, data_dir)
    figures = plots(records, s, out)
    lines_found = findings(records, s)
    elapsed = time.time() - started
    compute = sum(r["wall_s"] for r in rows)
    summary = {
        "mode": "quick" if quick else "full",
        "settings": asdict(s),
        "spec": text,
        "records": records,
        "findings": lines_found,
        "seconds": round(elapsed, 1),
        "plots": [p.name for p in figures],
        "report": str(out / "axdnn2023.md"),
        "store": str(out / "campaign.db"),
    }
    (out / "axdnn2023.json").write_text(json.dumps(summary, indent=1))
    models = ", ".join(f"{name} {opts or ''}".strip() for name, opts in s.models)
    text = [
        "# Siddique & Hoque 2023 reproduction: approximate DNNs under permanent faults",
        "",
        f"Command: `{command or 'bitrobust reproduce axdnn2023'}` ({summary['mode']} mode; "
        f"the trials took {compute / 60:.1f} min of worker time on {platform.machine()} with "
        f"{torch.get_num_threads()} thread(s) per worker; this run {elapsed / 60:.1f} min, "
        "reusing the trained models and finished trials its campaign store already held).",
        "",
        f"Campaign spec: `bitrobust/experiments/specs/{spec.name}.toml`; every trial is a row "
        "of `campaign.db` (`bitrobust campaign report` renders it).",
        "",
        f"Models: {models}; RQuant 8-bit quantization-aware training, {s.epochs} epochs on "
        f"{s.train_limit or 'all'} training examples; then run on 8-bit integer hardware "
        f"(asymmetric uint8 for unsigned multipliers, activation ranges from {s.calibration} "
        f"training images), first {s.test_limit} test examples. Accuracy loss is against the "
        "same multiplier without faults. The fault model, FAP/FAP+T and FaL-reTune are "
        "reconstructions (papers.md §2.3; `bitrobust.hw.mitigation`).",
        "",
        "## Against the paper's claims",
        "",
        *lines_found,
        "",
        *_tables(records, s),
        "",
        f"![accuracy vs power]({figures[0].name})",
        "",
        f"![loss vs bit]({figures[1].name})",
        "",
    ]
    (out / "axdnn2023.md").write_text("\n".join(text))
    return summary


__all__ = ["MITIGATIONS", "AxSettings", "findings", "reproduce", "settings", "spec_text"]
