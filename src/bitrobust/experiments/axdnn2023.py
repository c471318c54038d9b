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

Writes ``axdnn2023.md`` (tables and findings), ``axdnn2023-multipliers.png``,
``axdnn2023-bits.png`` and ``axdnn2023.json``; checkpoints and per-model results are cached in
the output folder, keyed by a fingerprint of the settings that produced them.
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

from bitrobust.bits import stable_seed
from bitrobust.checkpoint import load_checkpoint, save_checkpoint
from bitrobust.data import evoapprox_dir, load_splits, subset
from bitrobust.evaluate import CleanRun, accuracy, clean_run, run_trial
from bitrobust.hw import PEFaults, SystolicArray, deploy, load_multiplier
from bitrobust.hw.deploy import AcceleratorDeployment
from bitrobust.hw.mitigation import MitigationConfig, mitigate
from bitrobust.models.architecture import Architecture
from bitrobust.quant import QuantScheme
from bitrobust.stats import spearman, summarize
from bitrobust.train import TrainConfig, train

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


def _fingerprint(value: Any) -> str:
    return f"{stable_seed(json.dumps(value, sort_keys=True, default=str)):016x}"


def _train_key(s: AxSettings, dataset: str, model: str, options: dict[str, Any]) -> str:
    return _fingerprint(
        {
            "dataset": dataset,
            "model": model,
            "options": options,
            "epochs": s.epochs,
            "batch_size": s.batch_size,
            "lr": s.lr,
            "train_limit": s.train_limit,
            "seed": s.seed,
            "quant": "rquant8",
        }
    )


def _eval_key(s: AxSettings, train_key: str) -> str:
    record = asdict(s)
    for name in ("datasets", "models", "epochs", "batch_size", "lr", "train_limit"):
        record.pop(name)
    return _fingerprint([train_key, record])


def _model(s, dataset, model_name, options, train_set, out, device):
    """The trained model for (dataset, model): from the cache when its fingerprint matches."""
    key = _train_key(s, dataset, model_name, options)
    path = out / "checkpoints" / f"{dataset}-{model_name}.safetensors"
    if path.exists():
        checkpoint = load_checkpoint(path, device or "cpu")
        if checkpoint.training.get("fingerprint") == key:
            return checkpoint.model, key, 0.0
    started = time.time()
    torch.manual_seed(s.seed)
    architecture = Architecture.for_dataset(model_name, dataset, options)
    model = architecture.build()
    scheme = QuantScheme.preset("rquant", bits=8)
    config = TrainConfig(
        epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, seed=s.seed, progress=False
    )
    _log(f"[{dataset} {model_name}] training {s.epochs} epochs")
    history = train(model, scheme, train_set, config, device=device)
    training = {**config.to_dict(), "fingerprint": key, "loss_history": history.loss}
    save_checkpoint(path, model, architecture, scheme, training)
    return model, key, time.time() - started


def evaluate_model(
    s: AxSettings,
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    data_dir: str | os.PathLike | None,
    tag: str,
) -> dict[str, Any]:
    """The three parts of the study for one trained model."""
    calibration = train_images[: s.calibration]
    array = SystolicArray(s.array_size)
    data = (images, labels)
    result: dict[str, Any] = {"float_accuracy": accuracy(model, images, labels)}
    deployed: dict[str, tuple[AcceleratorDeployment, CleanRun]] = {}

    def deployment_for(name: str) -> tuple[AcceleratorDeployment, CleanRun]:
        if name not in deployed:
            multiplier = load_multiplier(name, evoapprox_dir(data_dir))
            deployment = deploy(model, multiplier, array, calibration=calibration)
            deployed[name] = (deployment, clean_run(deployment, data))
        return deployed[name]

    def faulty_accuracy(name: str, faults: PEFaults, seed: int) -> float:
        deployment, clean = deployment_for(name)
        return 1 - run_trial(deployment, faults, seed, data, clean).err_faulty

    rows = []
    for name in s.multipliers:
        deployment, clean = deployment_for(name)
        metrics = deployment.multiplier.metrics()
        rows.append(
            {
                "multiplier": name,
                "power_mw": deployment.multiplier.power_mw,
                "mae_percent": metrics["mae_percent"],
                "wce_percent": metrics["wce_percent"],
                "accuracy": 1 - clean.err,
            }
        )
    result["multipliers"] = rows
    fault_free = {row["multiplier"]: row["accuracy"] for row in rows}
    for name in (s.accurate, s.approximate):
        fault_free[name] = 1 - deployment_for(name)[1].err

    fault_rows = []
    for name in (s.accurate, s.approximate):
        _log(f"[{tag}] {name}: bit sweep")
        for stuck_at in s.stuck_at:
            for bit in s.bits:
                for rate in s.rates:
                    faults = PEFaults(rate, bit, stuck_at)
                    values = [
                        faulty_accuracy(name, faults, s.seed + index) for index in range(s.patterns)
                    ]
                    losses = [fault_free[name] - v for v in values]
                    fault_rows.append(
                        {
                            "multiplier": name,
                            "stuck_at": stuck_at,
                            "bit": bit,
                            "rate": rate,
                            "accuracy_mean": statistics.fmean(values),
                            **{
                                f"loss_{k}": v
                                for k, v in summarize(losses).to_json(interval=False).items()
                            },
                        }
                    )
    result["faults"] = fault_rows
    result["fault_free"] = dict(fault_free)

    mitigation_rows = []
    for name in (s.accurate, s.approximate):
        deployment, clean = deployment_for(name)
        for bit, stuck_at in s.mitigation_faults:
            _log(f"[{tag}] {name}: mitigation of bit {bit} stuck at {stuck_at}")
            by_method: dict[str, list[float]] = {"none": []}
            faults = PEFaults(s.mitigation_rate, bit, stuck_at)
            for index in range(s.mitigation_patterns):
                pattern = faults.sample(deployment.target, s.seed + index)
                by_method["none"].append(faulty_accuracy(name, faults, s.seed + index))
                for method in s.methods:
                    base, options = MITIGATIONS[method]
                    config = MitigationConfig(
                        base,
                        epochs=s.retune_epochs,
                        lr=s.retune_lr,
                        examples=s.retune_examples,
                        seed=s.seed + index,
                        **options,
                    )
                    mitigated = mitigate(deployment, pattern, config, train_images, train_labels)
                    trial = run_trial(
                        mitigated.deployment, faults, 0, data, clean, pattern=mitigated.pattern
                    )
                    by_method.setdefault(method, []).append(1 - trial.err_faulty)
            faulty = statistics.fmean(by_method["none"])
            lost = fault_free[name] - faulty
            for method, values in by_method.items():
                mean = statistics.fmean(values)
                mitigation_rows.append(
                    {
                        "multiplier": name,
                        "bit": bit,
                        "stuck_at": stuck_at,
                        "rate": s.mitigation_rate,
                        "method": method,
                        "fault_free": fault_free[name],
                        "accuracy_mean": mean,
                        "accuracy_std": summarize(values).std,
                        "recovery": (mean - faulty) / lost if lost > 0 else None,
                    }
                )
    result["mitigation"] = mitigation_rows
    return result


def run(
    s: AxSettings,
    out: Path,
    data_dir: str | os.PathLike | None = None,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """Train and evaluate every (dataset, model); one record each (cached)."""
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "results").mkdir(parents=True, exist_ok=True)
    records = []
    for dataset in s.datasets:
        train_set, test_set = load_splits(dataset, data_dir)
        train_set = subset(train_set, s.train_limit)
        images, labels = subset(test_set, s.test_limit).tensors
        train_images, train_labels = train_set.tensors
        for model_name, options in s.models:
            tag = f"{dataset} {model_name}"
            model, train_key, train_seconds = _model(
                s, dataset, model_name, options, train_set, out, device
            )
            key = _eval_key(s, train_key)
            path = out / "results" / f"{dataset}-{model_name}.json"
            try:
                cached = json.loads(path.read_text())
            except (OSError, ValueError):
                cached = None
            if cached is not None and cached.get("fingerprint") == key:
                _log(f"[{tag}] cached result")
                records.append(cached)
                continue
            started = time.time()
            result = evaluate_model(
                s, model, images, labels, train_images, train_labels, data_dir, tag
            )
            record = {
                "dataset": dataset,
                "model": model_name,
                "options": options,
                "fingerprint": key,
                "examples": len(images),
                "train_seconds": round(train_seconds, 1),
                "eval_seconds": round(time.time() - started, 1),
                **result,
            }
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(record, indent=1))
            os.replace(tmp, path)
            records.append(record)
    return records


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
) -> dict[str, Any]:
    """Run the study and write its Markdown report, plots and JSON record to ``out_dir``."""
    out = Path(out_dir)
    s = settings(quick)
    started = time.time()
    records = run(s, out, data_dir, device)
    figures = plots(records, s, out)
    lines_found = findings(records, s)
    elapsed = time.time() - started
    compute = sum(r["train_seconds"] + r["eval_seconds"] for r in records)
    summary = {
        "mode": "quick" if quick else "full",
        "settings": asdict(s),
        "records": records,
        "findings": lines_found,
        "seconds": round(elapsed, 1),
        "plots": [p.name for p in figures],
        "report": str(out / "axdnn2023.md"),
    }
    (out / "axdnn2023.json").write_text(json.dumps(summary, indent=1))
    models = ", ".join(f"{name} {opts or ''}".strip() for name, opts in s.models)
    text = [
        "# Siddique & Hoque 2023 reproduction: approximate DNNs under permanent faults",
        "",
        f"Command: `{command or 'bitrobust reproduce axdnn2023'}` ({summary['mode']} mode; "
        f"training and evaluation took {compute / 60:.1f} min on {platform.machine()} with "
        f"{torch.get_num_threads()} thread(s); this run {elapsed / 60:.1f} min, reusing cached "
        "models and results where present).",
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


__all__ = ["MITIGATIONS", "AxSettings", "findings", "reproduce", "run", "settings"]
