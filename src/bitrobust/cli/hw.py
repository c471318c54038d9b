"""``bitrobust multipliers list|show|import`` and ``bitrobust accelerator evaluate``."""

from __future__ import annotations

import argparse
import math
from typing import Any

from bitrobust.cli.common import (
    MAX_PATTERNS,
    add_data_options,
    add_device_option,
    check_output_dir,
    emit,
    float_type,
    int_type,
    load_checkpoint_arg,
    load_test_set,
    parse_rates,
    progress_printer,
)
from bitrobust.errors import BitrobustError

MAX_PES = 2**20
"""Most processing elements an emulated array may have (TPU N ≤ 1024, GPU units ≤ 2^20): the
fault maps hold a few bytes per PE."""


def _signed_option(args: argparse.Namespace) -> bool | None:
    return True if args.signed else False if args.unsigned else None


def _find_entry(name: str, data_dir: str | None):
    from bitrobust.data import evoapprox_dir
    from bitrobust.hw.catalogue import evoapprox_catalogue, user_catalogue

    for entry in user_catalogue() + evoapprox_catalogue(evoapprox_dir(data_dir)):
        if entry.name == name:
            return entry
    return None


def cmd_multipliers_list(args: argparse.Namespace) -> int:
    from bitrobust.data import evoapprox_dir
    from bitrobust.hw.catalogue import evoapprox_catalogue, user_catalogue
    from bitrobust.hw.families import BUILTIN_EXAMPLES, builtin
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
        (e, "evoapprox") for e in evoapprox_catalogue(evoapprox_dir(args.data_dir))
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
    from bitrobust.data import evoapprox_dir
    from bitrobust.hw.catalogue import load_multiplier

    multiplier = load_multiplier(
        args.multiplier, evoapprox_dir(args.data_dir), _signed_option(args)
    )
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
    from bitrobust.hw.catalogue import check_catalogue_name, load_file, user_dir
    from bitrobust.hw.tables import Multiplier

    if args.name is not None:
        check_catalogue_name(args.name)
    folder = check_output_dir(user_dir(args.output), "--output")
    loaded = load_file(args.file, _signed_option(args), args.name, args.function)
    if args.name is None:
        try:
            check_catalogue_name(loaded.name, "the default name")
        except BitrobustError as exc:
            raise BitrobustError(f"{exc} (taken from {args.file}); give --name") from None
    multiplier = Multiplier(
        name=loaded.name,
        table=loaded.table,
        signed=loaded.signed,
        source=str(args.file),
        power_mw=args.power if args.power is not None else loaded.power_mw,
        area_um2=args.area if args.area is not None else loaded.area_um2,
    )
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

    from bitrobust.data import evoapprox_dir, load_dataset
    from bitrobust.hw import PEFaults, evaluate_accelerator, load_multiplier, make_accelerator

    fault_rates = args.fault_rate or [0.0]
    accelerator = make_accelerator(args.array, args.size)  # refuses a size below 1
    pes = args.size * args.size if args.array == "tpu" else args.size
    if pes > MAX_PES:
        largest = math.isqrt(MAX_PES) if args.array == "tpu" else MAX_PES
        raise BitrobustError(
            f"--size {args.size} gives a {args.array} array of {pes:,} PEs; at most "
            f"{MAX_PES:,} (--size {largest:,} for --array {args.array})"
        )
    memory = _memory_faults(args)
    pe_faults: list[Any] = [None]
    if any(rate > 0 for rate in fault_rates):
        if args.bit is None or args.stuck_at is None:
            raise BitrobustError("a fault rate above 0 needs --bit and --stuck-at")
        site, layer = args.site, args.layer
        pe_faults = [PEFaults(r, args.bit, args.stuck_at, site, layer) for r in fault_rates]
    fault_models = [f for f in (_compose(pe, memory) for pe in pe_faults) if f is not None]
    fault_model: Any = fault_models if len(fault_models) > 1 else None
    if len(fault_models) == 1:
        fault_model = fault_models[0]
    if args.patterns < 1:
        raise BitrobustError(f"--patterns must be at least 1, got {args.patterns}")
    if args.calibration < 0:
        raise BitrobustError(f"--calibration must be 0 or more images, got {args.calibration}")
    mitigation, train_images, train_labels = None, None, None
    if args.mitigate is not None:
        from bitrobust.hw.mitigation import MitigationConfig

        if pe_faults == [None]:
            raise BitrobustError("--mitigate needs PE faults (--fault-rate above 0)")
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
    multiplier = load_multiplier(args.multiplier, evoapprox_dir(args.data_dir))
    checkpoint = load_checkpoint_arg(args)
    if args.layer is not None:
        _check_layer(checkpoint.model, args.layer)
    dataset, images, labels = load_test_set(args, checkpoint)
    calibration = None
    if args.calibration:
        calibration = load_dataset(dataset, "train", args.data_dir).tensors[0][: args.calibration]
    if mitigation is not None:
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
        progress=progress_printer(True, "accelerator evaluate"),
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
    for row in report.get("sweep", [report] if fault_model is not None else []):
        lines.append(
            f"{row['fault_model']}: accuracy {100 * row['accuracy_mean']:.2f} ± "
            f"{100 * row['accuracy_std']:.2f} % over {row['patterns']} patterns, loss "
            f"{100 * row['accuracy_loss_mean']:.2f} points"
        )
        if mitigation is not None:
            recovery = row["recovery"]
            lines.append(
                f"  after {mitigation.method}: accuracy "
                f"{100 * row['accuracy_mitigated_mean']:.2f} ± "
                f"{100 * row['accuracy_mitigated_std']:.2f} %, recovery "
                + ("n/a (nothing lost)" if recovery is None else f"{100 * recovery:.1f} %")
            )
    emit(payload, args.json, "\n".join(lines))
    return 0


def _memory_faults(args: argparse.Namespace) -> Any:
    """The memory fault model of ``--bit-error-rate``/per-direction rates and ``--chip``
    ``--voltage`` (composed when both are given), or None."""
    from bitrobust.faults import ProfiledSRAM, RandomBitErrors, load_chip

    faults = []
    directions = (args.zero_to_one_rate, args.one_to_zero_rate)
    if args.bit_error_rate is not None or any(rate is not None for rate in directions):
        faults.append(
            RandomBitErrors(
                args.bit_error_rate,
                zero_to_one=args.zero_to_one_rate,
                one_to_zero=args.one_to_zero_rate,
            )
        )
    if (args.chip is None) != (args.voltage is None):
        raise BitrobustError("--chip and --voltage go together")
    if args.chip is not None:
        faults.append(ProfiledSRAM(load_chip(args.chip), args.voltage))
    return _compose(*faults) if faults else None


def _compose(*faults: Any) -> Any:
    """The given fault models composed (``a + b``), the one alone, or None."""
    from bitrobust.faults import ComposedFaults

    present = [f for f in faults if f is not None]
    if len(present) < 2:
        return present[0] if present else None
    return ComposedFaults(*present)


def _check_layer(model: Any, layer: str) -> None:
    """Refuse ``--layer`` unless it names a Linear/Conv2d module (the layers that are emulated)."""
    from torch import nn

    names = [n for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv2d)]
    if layer not in names:
        raise BitrobustError(f"no emulated layer named {layer!r}; layers: {', '.join(names)}")


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
    p.add_argument("--power", type=float_type("--power", 0), help="power in mW, if known")
    p.add_argument("--area", type=float_type("--area", 0), help="area in µm², if known")
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
    p.add_argument(
        "--size",
        type=int,
        default=16,
        help=f"N: array side (tpu, at most {math.isqrt(MAX_PES)}) or units (gpu, at most 2^20)",
    )
    p.add_argument(
        "--fault-rate",
        type=lambda text: parse_rates(text, "fault rate"),
        help="fraction of faulty PEs in [0, 1], or a comma-separated list of them "
        "(default 0: no PE faults)",
    )
    p.add_argument(
        "--bit-error-rate",
        type=float_type("--bit-error-rate", 0, 1),
        help="random bit errors in the accelerator's weight memory, beside the PE faults in "
        "the same trial: the probability that a stored bit flips",
    )
    p.add_argument(
        "--zero-to-one-rate", type=float_type("--zero-to-one-rate", 0, 1), help="0→1 flip rate"
    )
    p.add_argument(
        "--one-to-zero-rate", type=float_type("--one-to-zero-rate", 0, 1), help="1→0 flip rate"
    )
    p.add_argument("--chip", help="SRAM chip map (.npz/.npy) holding the weights, with --voltage")
    p.add_argument("--voltage", type=float, help="supply voltage of --chip (V / V_min)")
    p.add_argument("--stuck-at", type=int, choices=(0, 1), help="stuck-at value")
    p.add_argument("--bit", type=int, help="faulty bit: 0..15 of the product, 0..31 of the sum")
    p.add_argument(
        "--site",
        choices=("product", "accumulator"),
        default="product",
        help="where the stuck bit sits (default: product)",
    )
    p.add_argument("--layer", help="only this layer's MACs are faulty (module name)")
    p.add_argument(
        "--patterns",
        type=int_type("--patterns", 1, MAX_PATTERNS),
        default=10,
        help="fault maps (default 10)",
    )
    p.add_argument("--seed", type=int_type("--seed", 0), default=0, help="first fault-map seed")
    p.add_argument("--dataset", help="test dataset (default: the checkpoint's)")
    p.add_argument(
        "--limit", type=int_type("--limit"), help="evaluate on the first N test examples only"
    )
    p.add_argument(
        "--calibration",
        type=int_type("--calibration", 0),
        default=1000,
        help="training images that fix activation ranges (0: per batch)",
    )
    p.add_argument(
        "--batch-size", type=int_type("--batch-size"), default=1000, help="evaluation batch size"
    )
    p.add_argument(
        "--mitigate",
        choices=("falretune", "fap", "fap-t"),
        help="also evaluate each fault map after a mitigation: FaL-reTune (weight mapping + "
        "retuning), fault-aware pruning, or pruning + retraining (reconstructions, see "
        "bitrobust.hw.mitigation)",
    )
    p.add_argument(
        "--retune-epochs",
        type=int_type("--retune-epochs", 0),
        default=2,
        help="retuning epochs (default 2)",
    )
    p.add_argument(
        "--retune-lr",
        type=float_type("--retune-lr", 0),
        default=0.005,
        help="retuning learning rate (default 0.005)",
    )
    p.add_argument(
        "--retune-examples",
        type=int_type("--retune-examples"),
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
