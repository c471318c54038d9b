"""``bitrobust multipliers list|show|import`` and ``bitrobust accelerator evaluate``."""

from __future__ import annotations

import argparse
from typing import Any

from bitrobust.cli.common import (
    add_data_options,
    add_device_option,
    emit,
    load_checkpoint_and_test_set,
)
from bitrobust.errors import BitrobustError, check_rate


def _signed_option(args: argparse.Namespace) -> bool | None:
    return True if args.signed else False if args.unsigned else None


def _find_entry(name: str, data_dir: str | None):
    from bitrobust.hw.multiplier import evoapprox_catalogue, user_catalogue

    for entry in user_catalogue() + evoapprox_catalogue(data_dir):
        if entry.name == name:
            return entry
    return None


def cmd_multipliers_list(args: argparse.Namespace) -> int:
    from bitrobust.hw.multiplier import (
        BUILTIN_EXAMPLES,
        builtin,
        evoapprox_catalogue,
        user_catalogue,
    )
    from bitrobust.report import markdown_table

    rows: list[dict[str, Any]] = []
    for name in BUILTIN_EXAMPLES:
        multiplier = builtin(name)
        assert multiplier is not None
        metrics = multiplier.metrics()
        rows.append(
            {
                "name": name,
                "signed": multiplier.signed,
                "mae": metrics["mae"],
                "wce": metrics["wce"],
                "power_mw": None,
                "area_um2": None,
                "source": "built-in",
            }
        )
    for entry, origin in [(e, "user") for e in user_catalogue()] + [
        (e, "evoapprox") for e in evoapprox_catalogue(args.data_dir)
    ]:
        rows.append(
            {
                "name": entry.name,
                "signed": entry.signed,
                "mae": entry.mae,
                "wce": None if entry.wce is None else int(entry.wce),
                "power_mw": entry.power_mw,
                "area_um2": entry.area_um2,
                "source": origin,
            }
        )
    if args.signed or args.unsigned:
        rows = [row for row in rows if row["signed"] == bool(args.signed)]
    text_rows = [{**row, "signed": "signed" if row["signed"] else "unsigned"} for row in rows]
    columns = ["name", "signed", "mae", "wce", "power_mw", "area_um2", "source"]
    headers = ["name", "operands", "MAE", "WCE", "power (mW)", "area (µm²)", "source"]
    text = markdown_table(text_rows, columns, headers, floatfmt=".4g")
    emit({"multipliers": rows}, args.json, text)
    return 0


def cmd_multipliers_show(args: argparse.Namespace) -> int:
    from bitrobust.hw.multiplier import load_multiplier

    multiplier = load_multiplier(args.multiplier, args.data_dir, _signed_option(args))
    metrics = multiplier.metrics()
    payload: dict[str, Any] = {
        "name": multiplier.name,
        "signed": multiplier.signed,
        "source": multiplier.source,
        "exact": multiplier.is_exact(),
        "symmetric": multiplier.is_symmetric(),
        "power_mw": multiplier.power_mw,
        "area_um2": multiplier.area_um2,
        "metrics": metrics,
    }
    entry = _find_entry(args.multiplier, args.data_dir)
    if entry is not None:
        payload["source"] = entry.source
        payload["power_mw"], payload["area_um2"] = entry.power_mw, entry.area_um2
        if entry.published:
            payload["published"] = {
                key: entry.published[key]
                for key in (
                    "MAE",
                    "WCE",
                    "EP_PERCENT",
                    "MRE_PERCENT",
                    "WCRE_PERCENT",
                    "MSE",
                    "PDK45_PWR",
                    "PDK45_AREA",
                    "PDK45_DELAY",
                    "reference",
                )
                if key in entry.published
            }
    lines = [
        f"{multiplier.name}: {multiplier.kind} 8x8 multiplier from {payload['source']}",
        f"exact: {payload['exact']}, symmetric: {payload['symmetric']}",
        f"MAE {metrics['mae']:.4g} ({metrics['mae_percent']:.3g} % of 2^16), WCE "
        f"{metrics['wce']}, MSE {metrics['mse']:.6g}, bias {metrics['bias']:+.4g}",
        f"EP {metrics['ep_percent']:.2f} %, MRE {metrics['mre_percent']:.2f} %, WCRE "
        f"{metrics['wcre_percent']:.2f} %",
    ]
    figures = []
    if payload["power_mw"] is not None:
        figures.append(f"power {payload['power_mw']:g} mW")
    if payload["area_um2"] is not None:
        figures.append(f"area {payload['area_um2']:g} µm²")
    if figures:
        lines.append(", ".join(figures))
    emit(payload, args.json, "\n".join(lines))
    return 0


def cmd_multipliers_import(args: argparse.Namespace) -> int:
    from bitrobust.hw.multiplier import Multiplier, load_file, user_dir

    loaded = load_file(args.file, _signed_option(args), args.name, args.function)
    multiplier = Multiplier(
        name=loaded.name,
        table=loaded.table,
        signed=loaded.signed,
        source=str(args.file),
        power_mw=args.power if args.power is not None else loaded.power_mw,
        area_um2=args.area if args.area is not None else loaded.area_um2,
    )
    folder = user_dir(args.output)
    path = multiplier.save(folder / f"{multiplier.name}.npy")
    metrics = multiplier.metrics()
    payload = {
        "name": multiplier.name,
        "signed": multiplier.signed,
        "table": str(path),
        "metadata": str(path.with_suffix(".json")),
        "metrics": metrics,
    }
    text = (
        f"imported {multiplier.name} ({multiplier.kind}) to {path}: MAE {metrics['mae']:.4g}, "
        f"WCE {metrics['wce']}"
    )
    emit(payload, args.json, text)
    return 0


def cmd_accelerator_evaluate(args: argparse.Namespace) -> int:

    from bitrobust.data import load_dataset
    from bitrobust.hw import PEFaults, evaluate_accelerator, load_multiplier, make_accelerator

    check_rate(args.fault_rate, "fault rate")
    fault_model = None
    if args.fault_rate > 0:
        if args.bit is None or args.stuck_at is None:
            raise BitrobustError("a fault rate above 0 needs --bit and --stuck-at")
        fault_model = PEFaults(args.fault_rate, args.bit, args.stuck_at, args.site, args.layer)
    if args.patterns < 1:
        raise BitrobustError(f"--patterns must be at least 1, got {args.patterns}")
    if args.calibration < 0:
        raise BitrobustError(f"--calibration must be 0 or more images, got {args.calibration}")
    accelerator = make_accelerator(args.array, args.size)
    multiplier = load_multiplier(args.multiplier, args.data_dir)
    checkpoint, dataset, images, labels = load_checkpoint_and_test_set(args)
    calibration = None
    if args.calibration:
        calibration = load_dataset(dataset, "train", args.data_dir).tensors[0][: args.calibration]
    mitigation, train_images, train_labels = None, None, None
    if args.mitigate is not None:
        from bitrobust.hw.mitigation import MitigationConfig

        if fault_model is None:
            raise BitrobustError("--mitigate needs faults (--fault-rate above 0)")
        if args.mitigate == "falretune" and not args.calibration:
            raise BitrobustError("--mitigate falretune needs calibrated ranges (--calibration)")
        mitigation = MitigationConfig(
            method=args.mitigate,
            epochs=args.retune_epochs,
            lr=args.retune_lr,
            examples=args.retune_examples,
            bypass=not args.prune_to_zero_code,
            objective=args.mapping_objective,
            seed=args.seed,
        )
        train_images, train_labels = load_dataset(dataset, "train", args.data_dir).tensors
        train_images = train_images[: args.retune_examples]
        train_labels = train_labels[: args.retune_examples]
    report = evaluate_accelerator(
        checkpoint.model,
        multiplier,
        images,
        labels,
        accelerator=accelerator,
        fault_model=fault_model,
        patterns=args.patterns,
        seed=args.seed,
        calibration=calibration,
        batch_size=args.batch_size,
        progress=not args.json,
        mitigation=mitigation,
        train_images=train_images,
        train_labels=train_labels,
    )
    payload = {"checkpoint": str(args.checkpoint), "dataset": dataset, **report}
    lines = [
        f"{report['multiplier']} on {report['accelerator']}: "
        f"float {100 * report['accuracy_float']:.2f} %, "
        f"fault free {100 * report['accuracy_fault_free']:.2f} % ({report['examples']} examples)"
    ]
    if fault_model is not None:
        lines.append(
            f"{fault_model.name}: accuracy {100 * report['accuracy_mean']:.2f} ± "
            f"{100 * report['accuracy_std']:.2f} % over {report['patterns']} patterns, loss "
            f"{100 * report['accuracy_loss_mean']:.2f} points"
        )
    if mitigation is not None:
        recovery = report["recovery"]
        lines.append(
            f"after {mitigation.method}: accuracy {100 * report['accuracy_mitigated_mean']:.2f} ± "
            f"{100 * report['accuracy_mitigated_std']:.2f} %, recovery "
            + ("n/a (nothing lost)" if recovery is None else f"{100 * recovery:.1f} %")
        )
    emit(payload, args.json, "\n".join(lines))
    return 0


def _add_signed_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--signed", action="store_true", help="operands are int8 (two's complement)")
    group.add_argument("--unsigned", action="store_true", help="operands are uint8")


def register(sub: argparse._SubParsersAction) -> None:
    mult = sub.add_parser(
        "multipliers",
        help="8x8 multipliers: list, show metrics, import tables and C models",
        description="Product-table multipliers: built-in families (exact8u, trunc8u_k2, "
        "bam8u_v6_h0, mitchell8u; s for signed), the EvoApprox tables under "
        "<data-dir>/evoapprox, and tables imported into the user catalogue "
        "($BITROBUST_MULTIPLIER_DIR, else ~/.cache/bitrobust/multipliers).",
    )
    msub = mult.add_subparsers(dest="multipliers_command", metavar="COMMAND")

    p = msub.add_parser("list", help="name, signedness, MAE, WCE, power and area of each")
    _add_signed_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_data_options(p)
    p.set_defaults(handler=cmd_multipliers_list)

    p = msub.add_parser("show", help="all error metrics of one multiplier")
    p.add_argument("multiplier", help="built-in or catalogue name, or a .npy/.bin/.c file")
    _add_signed_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_data_options(p)
    p.set_defaults(handler=cmd_multipliers_show)

    p = msub.add_parser(
        "import",
        help="convert a .npy/.bin table or a C model into the user catalogue",
        description="Read a product table (.npy int (256, 256); .bin: TFApprox 65,536 "
        "little-endian uint16, index a*256+b) or an EvoApprox C model (compiled with $CC, cc, "
        "gcc or clang) and write <output>/<name>.npy with a <name>.json of metadata and metrics. "
        "Signedness defaults to the name (mul8s_/mul8u_), then the table's values.",
    )
    p.add_argument("file", help=".npy, .bin or .c file")
    p.add_argument("--name", help="catalogue name (default: the file or C function name)")
    p.add_argument("--function", help="C function to tabulate (default: detected)")
    _add_signed_options(p)
    p.add_argument("--power", type=float, help="power in mW, if known")
    p.add_argument("--area", type=float, help="area in µm², if known")
    p.add_argument(
        "--output",
        help="folder to write to (default: $BITROBUST_MULTIPLIER_DIR, else "
        "~/.cache/bitrobust/multipliers, where --multiplier NAME finds it)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(handler=cmd_multipliers_import)

    acc = sub.add_parser(
        "accelerator",
        help="evaluate a checkpoint on an emulated approximate, faulty accelerator",
    )
    asub = acc.add_subparsers(dest="accelerator_command", metavar="COMMAND")
    p = asub.add_parser(
        "evaluate",
        help="accuracy fault free and under permanent PE faults",
        description="Run a checkpoint with its Linear/Conv2d layers on 8-bit integer hardware "
        "whose products come from MULTIPLIER (unsigned: asymmetric uint8 with zero points; "
        "signed: symmetric int8), then with bit BIT of the product (or partial sum) stuck at "
        "0/1 in a seeded random fraction of the PEs of a TPU-like systolic array or GPU-like "
        "array, one fault map per seed. Accuracy loss is against the fault-free accelerator.",
    )
    p.add_argument("checkpoint", help="checkpoint written by 'bitrobust train'")
    p.add_argument("--multiplier", required=True, help="multiplier name or .npy/.bin/.c file")
    p.add_argument(
        "--array",
        choices=("tpu", "gpu"),
        default="tpu",
        help="tpu: N×N weight-stationary systolic array; gpu: N units, round robin",
    )
    p.add_argument("--size", type=int, default=16, help="N: array side (tpu) or units (gpu)")
    p.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        help="fraction of faulty PEs in [0, 1] (default 0: fault free only)",
    )
    p.add_argument("--stuck-at", type=int, choices=(0, 1), help="stuck-at value")
    p.add_argument("--bit", type=int, help="faulty bit: 0..15 of the product, 0..31 of the sum")
    p.add_argument(
        "--site",
        choices=("product", "accumulator"),
        default="product",
        help="where the stuck bit sits (default: product)",
    )
    p.add_argument("--layer", help="only this layer's MACs are faulty (module name)")
    p.add_argument("--patterns", type=int, default=10, help="fault maps (default 10)")
    p.add_argument("--seed", type=int, default=0, help="first fault-map seed")
    p.add_argument("--dataset", help="test dataset (default: the checkpoint's)")
    p.add_argument("--limit", type=int, help="evaluate on the first N test examples only")
    p.add_argument(
        "--calibration",
        type=int,
        default=1000,
        help="training images that fix activation ranges (0: per batch)",
    )
    p.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size")
    p.add_argument(
        "--mitigate",
        choices=("falretune", "fap", "fap-t"),
        help="also evaluate each fault map after a mitigation: FaL-reTune (weight mapping + "
        "retuning), fault-aware pruning, or pruning + retraining (reconstructions, see "
        "bitrobust.hw.mitigation)",
    )
    p.add_argument("--retune-epochs", type=int, default=2, help="retuning epochs (default 2)")
    p.add_argument(
        "--retune-lr", type=float, default=0.005, help="retuning learning rate (default 0.005)"
    )
    p.add_argument(
        "--retune-examples",
        type=int,
        default=2000,
        help="training examples for the histograms and retuning (default 2000)",
    )
    p.add_argument(
        "--mapping-objective",
        choices=("centered", "absolute"),
        default="centered",
        help="FaL-reTune: score codes by the product error around its mean (absorbed by the "
        "bias; default) or by the plain absolute error",
    )
    p.add_argument(
        "--prune-to-zero-code",
        action="store_true",
        help="FAP: write the zero-point code instead of bypassing the faulty PEs",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_data_options(p)
    add_device_option(p)
    p.set_defaults(handler=cmd_accelerator_evaluate)
