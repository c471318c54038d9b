"""``bitrobust sram ...`` (chip maps, evaluation on a chip) and ``bitrobust energy``."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from bitrobust.cli.common import (
    MAX_PATTERNS,
    add_data_options,
    add_device_option,
    check_output_file,
    emit,
    float_type,
    int_type,
    load_checkpoint_arg,
    load_test_set,
    progress_printer,
)
from bitrobust.errors import BitrobustError

SHOW_VOLTAGES = (0.76, 0.78, 0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.95, 1.0)
MAX_VOLTAGES = 1000
"""Most voltages a grid may have (each is a full evaluation)."""
MAX_CHIP_CELLS = 2**26
"""Most cells (arrays × rows × columns) of a synthetic chip: 64 times the default 32×512×64,
about a gigabyte while it is generated."""


def parse_voltages(text: str) -> list[float]:
    """``0.80,0.85,0.90`` or an inclusive range ``START:STOP:STEP`` such as ``0.80:1.00:0.01``."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [float(x) for x in text.split(":")]
            if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
                raise BitrobustError(f"a voltage range is START:STOP:STEP with STEP > 0: {text!r}")
            start, stop, step = parts
            if not all(math.isfinite(x) for x in parts):
                raise ValueError
            count = math.floor((stop - start) / step + 1e-9) + 1
            if count > MAX_VOLTAGES:
                raise BitrobustError(
                    f"the voltage range {text!r} has {count:,} voltages; at most {MAX_VOLTAGES}"
                )
            values = [round(start + k * step, 10) for k in range(count)]
        else:
            values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BitrobustError(
            f"voltages must be numbers like 0.80,0.85 or 0.8:1:0.01, got {text!r}"
        ) from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise BitrobustError(f"voltages must be positive numbers (V / V_min), got {text!r}")
    return values


def parse_energy_table(text: str) -> list[tuple[float, float]]:
    """``V:E,V:E,...`` pairs of voltage and relative energy per access."""
    try:
        pairs = [tuple(float(x) for x in item.split(":")) for item in text.split(",") if item]
    except ValueError:
        pairs = []
    if len(pairs) < 2 or any(len(pair) != 2 for pair in pairs):
        raise BitrobustError(f"--energy-table expects V:E,V:E,... (two or more), got {text!r}")
    return pairs  # type: ignore[return-value]


def parse_budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value >= 0):
        raise BitrobustError(f"--budget is in percentage points and must be >= 0, got {text!r}")
    return value


def _rates_lines(rows: list[dict[str, float]]) -> list[str]:
    return [
        f"V={r['voltage']:<6g} p={100 * r['bit_error_rate']:.4g} % "
        f"(failing cells {100 * r['failing_cells']:.4g} %, "
        f"0→1 {100 * r['zero_to_one']:.4g} %, 1→0 {100 * r['one_to_zero']:.4g} %)"
        for r in rows
    ]


def _chip_summary(chip: Any) -> dict[str, Any]:
    geometry = chip.geometry
    return {
        "chip": chip.id,
        "arrays": geometry.arrays,
        "rows": geometry.rows,
        "columns": geometry.columns,
        "voltage_range": list(chip.voltage_range),
        "stuck_at_one": float(chip.fail_value.float().mean()),
    }


def _default_show_voltages(chip: Any) -> list[float]:
    low, high = chip.voltage_range
    inside = [v for v in SHOW_VOLTAGES if low <= v <= high]
    return inside or [low + (high - low) * k / 10 for k in range(11)]


def cmd_make_chip(args: argparse.Namespace) -> int:
    from bitrobust.faults import make_chip, save_chip

    cells = args.arrays * args.rows * args.columns
    if cells > MAX_CHIP_CELLS:
        raise BitrobustError(
            f"a chip of {args.arrays} × {args.rows}×{args.columns} = {cells:,} cells is too "
            f"large; at most {MAX_CHIP_CELLS:,} cells"
        )
    check_output_file(args.out, "--out")
    chip = make_chip(
        args.seed,
        args.arrays,
        args.rows,
        args.columns,
        row_correlation=args.row_correlation,
        column_correlation=args.column_correlation,
        stuck_at_one=args.stuck_at_one,
        value_correlation=args.value_correlation,
        calibration=args.calibration.replace("-", "_"),
    )
    path = save_chip(chip, args.out)
    rates = chip.rates_table(_default_show_voltages(chip))
    payload = {"path": str(path), **_chip_summary(chip), "rates": rates}
    text = f"wrote {path} (chip {chip.id}, {args.arrays} × {args.rows}×{args.columns} cells)"
    emit(payload, args.json, "\n".join([text, *_rates_lines(rates)]))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from bitrobust.faults import load_chip

    chip = load_chip(args.chip)
    voltages = args.voltages or _default_show_voltages(chip)
    rates = chip.rates_table(voltages)
    summary = _chip_summary(chip)
    payload = {"path": str(args.chip), **summary, "rates": rates}
    text = (
        f"chip {chip.id}: {summary['arrays']} × {summary['rows']}×{summary['columns']} cells, "
        f"profiled {chip.voltage_range[0]:g}..{chip.voltage_range[1]:g} V_min, "
        f"{100 * summary['stuck_at_one']:.1f} % stuck-at-1"
    )
    emit(payload, args.json, "\n".join([text, *_rates_lines(rates)]))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from bitrobust.energy import energy_saving
    from bitrobust.evaluate import evaluate_fault_models
    from bitrobust.faults import ProfiledSRAM, load_chip

    if args.plot:
        check_output_file(args.plot, "--plot")
    chip = load_chip(args.chip)
    fault_models = [ProfiledSRAM(chip, v, placement=args.placement) for v in args.voltages]
    checkpoint = load_checkpoint_arg(args)
    dataset, images, labels = load_test_set(args, checkpoint)
    report = evaluate_fault_models(
        checkpoint.model,
        checkpoint.scheme,
        images,
        labels,
        fault_models,
        patterns=args.placements,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=progress_printer(True, "sram evaluate"),
    ).to_json()
    for rates, row in zip(chip.rates_table(args.voltages), report["results"]):
        row.update(rates)
        row["energy_saving"] = energy_saving(row["voltage"])
    payload = {
        "checkpoint": str(args.checkpoint),
        "dataset": dataset,
        "quantization": checkpoint.scheme.name,
        "chip": chip.id,
        "placement": args.placement,
        **report,
        "plot": None,
    }
    if args.plot:
        from bitrobust.report import plot_voltage_tradeoff

        payload["plot"] = str(
            plot_voltage_tradeoff(
                {Path(args.checkpoint).stem: report["results"]},
                args.plot,
                title=f"chip {chip.id}",
            )
        )
    lines = [f"Err {100 * report['err']:.2f} % on {report['examples']} test examples"]
    for row in report["results"]:
        lines.append(
            f"V={row['voltage']:g}: p={100 * row['bit_error_rate']:.3g} %, RErr "
            f"{100 * row['rerr_mean']:.2f} ± {100 * row['rerr_std']:.2f} % "
            f"(min {100 * row['rerr_min']:.2f}, max {100 * row['rerr_max']:.2f}, "
            f"{row['patterns']} placements), energy saving {100 * row['energy_saving']:.1f} %"
        )
    if payload["plot"]:
        lines.append(f"plot: {payload['plot']}")
    emit(payload, args.json, "\n".join(lines))
    return 0


def cmd_energy(args: argparse.Namespace) -> int:
    from bitrobust.energy import (
        DEFAULT_VOLTAGES,
        EnergyModel,
        VoltageErrorCurve,
        find_operating_point,
        random_errors_evaluator,
        sram_evaluator,
    )
    from bitrobust.faults import load_chip, make_chip

    checkpoint = load_checkpoint_arg(args)
    energy = EnergyModel()
    if args.energy_table:
        energy = EnergyModel.from_table(*zip(*args.energy_table))
    voltages = args.voltages or list(DEFAULT_VOLTAGES)
    for voltage in voltages:
        energy(voltage)  # out-of-table voltages fail before any evaluation
    if args.random_errors:
        if args.chip:
            raise BitrobustError("give --chip or --random-errors, not both")
        curve = VoltageErrorCurve.default()
        if args.curve_chip:
            curve = VoltageErrorCurve.from_chip(load_chip(args.curve_chip))
        curve.check_voltages(voltages)
        chips, mode = [], f"random bit errors at p(V) of curve '{curve.name}'"
    else:
        chips = [load_chip(path) for path in args.chip] if args.chip else None
        chips = chips or [make_chip(k) for k in range(args.synthetic_chips)]
        for chip in chips:
            for voltage in voltages:
                chip.check_voltage(voltage)
        mode = f"{len(chips)} chip(s) × {args.placements} placement(s)"
    dataset, images, labels = load_test_set(args, checkpoint)
    if args.random_errors:
        err, evaluate = random_errors_evaluator(
            checkpoint.model, checkpoint.scheme, images, labels, curve,
            patterns=args.placements, seed=args.seed, batch_size=args.batch_size,
        )  # fmt: skip
    else:
        err, evaluate = sram_evaluator(
            checkpoint.model, checkpoint.scheme, images, labels, chips,
            placements=args.placements, placement=args.placement, seed=args.seed,
            batch_size=args.batch_size,
        )  # fmt: skip
    baseline = err if args.baseline_err is None else args.baseline_err / 100
    print(f"Err {100 * err:.2f} % on {len(labels)} test examples; {mode}", file=sys.stderr)

    def show(row: dict[str, Any]) -> None:  # progress: on stderr, also with --json
        print(
            f"  V={row['voltage']:g}: p={100 * row.get('bit_error_rate', 0.0):.3g} %, "
            f"RErr {100 * row['rerr_mean']:.2f} % (max {100 * row['rerr_max']:.2f}), "
            f"saving {100 * row['energy_saving']:.1f} %",
            file=sys.stderr,
            flush=True,
        )

    point = find_operating_point(
        evaluate,
        voltages,
        args.budget / 100,
        baseline,
        statistic=args.statistic,
        energy=energy,
        progress=show,
    )
    plot = None
    if args.plot:  # files only where asked
        from bitrobust.report import plot_voltage_tradeoff

        over = "patterns" if args.random_errors else "chips × placements"
        plot = str(
            plot_voltage_tradeoff(
                {f"RErr, mean over {over}": point.rows},
                args.plot,
                baseline_err=baseline,
                budget=args.budget / 100,
                operating_voltage=point.voltage,
                energy_name=energy.name,
                band_label=f"shaded: min–max over {over}",
                title=f"{Path(args.checkpoint).stem} ({dataset}, {checkpoint.scheme.name}): {mode}",
            )
        )
    payload = {
        "checkpoint": str(args.checkpoint),
        "dataset": dataset,
        "quantization": checkpoint.scheme.name,
        "examples": len(labels),
        "err": err,
        "mode": "random" if args.random_errors else "sram",
        "chips": [chip.id for chip in chips],
        "placements": args.placements,
        **point.to_dict(),
        "plot": plot,
    }
    if point.met:
        row = point.row
        text = (
            f"operating point: V = {row['voltage']:g} V_min, p = "
            f"{100 * row.get('bit_error_rate', 0.0):.3g} %, {args.statistic} RErr "
            f"{100 * row['rerr']:.2f} % (Err {100 * baseline:.2f} %, budget +{args.budget:g}), "
            f"energy saving {100 * row['energy_saving']:.1f} %"
        )
    else:
        text = point.message
    emit(payload, args.json, text + (f"\nplot: {plot}" if plot else ""))
    if not point.met:
        print(f"bitrobust: {point.message}", file=sys.stderr)
        return 1
    return 0


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint written by 'bitrobust train'")
    p.add_argument(
        "--dataset", help="test dataset (default: the one the checkpoint was trained on)"
    )
    p.add_argument(
        "--limit", type=int_type("--limit"), help="evaluate on the first N test examples only"
    )
    p.add_argument(
        "--batch-size", type=int_type("--batch-size"), default=1000, help="evaluation batch size"
    )
    p.add_argument(
        "--placement",
        choices=("random", "offset", "linear"),
        default="random",
        help="how weights are placed on a chip per seed: random offset and array order "
        "(default), random offset only, or the same linear layout for every seed",
    )
    p.add_argument(
        "--seed",
        type=int_type("--seed", 0),
        default=0,
        help="first placement seed; uses seed..seed+N-1",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_data_options(p)
    add_device_option(p)


def _add_geometry_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--arrays", type=int_type("--arrays"), default=32, help="SRAM arrays (default 32)"
    )
    p.add_argument(
        "--rows", type=int_type("--rows"), default=512, help="rows per array (default 512)"
    )
    p.add_argument(
        "--columns", type=int_type("--columns"), default=64, help="bit columns per row (default 64)"
    )
    p.add_argument(
        "--row-correlation",
        type=float,
        default=0.05,
        help="share of a cell's latent failure variable common to its row (default 0.05)",
    )
    p.add_argument(
        "--column-correlation",
        type=float,
        default=0.15,
        help="share of a cell's latent failure variable common to its column (default 0.15)",
    )
    p.add_argument(
        "--stuck-at-one",
        type=float,
        default=0.6,
        help="fraction of cells that fail to 1 rather than 0 (default 0.6)",
    )
    p.add_argument(
        "--value-correlation",
        type=float,
        default=0.3,
        help="share of the fail-value latent variable common to a column (default 0.3)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    sram = sub.add_parser(
        "sram",
        help="low-voltage SRAM chip maps: make, show, evaluate a checkpoint on one",
        description="Chip maps give every SRAM cell the voltage (relative to V_min) below "
        "which it fails and the value it is stuck at. Weights are packed as m-bit words into "
        "the chip's rows; a stored bit flips when its cell fails and holds the other value.",
    )
    sram_sub = sram.add_subparsers(dest="sram_command", metavar="SUBCOMMAND")
    sram.set_defaults(handler=lambda args: _missing_subcommand(sram))

    p = sram_sub.add_parser(
        "make-chip",
        help="write a synthetic chip map (.npz)",
        description="Generate a synthetic chip whose bit error rate follows the Stutz et al. "
        "voltage curve (0.76..1.0 V_min), with failures clustered along rows and columns and "
        "a stuck-at-1 bias, and write it as .npz (or .npy).",
    )
    p.add_argument("--seed", type=int_type("--seed", 0), default=0, help="chip seed (default 0)")
    p.add_argument("--out", required=True, help="output file, .npz (or .npy)")
    p.add_argument(
        "--calibration",
        choices=("failing-cells", "bit-error-rate"),
        default="failing-cells",
        help="what the curve's p(V) is the rate of: failing cells (default; stored bits then flip "
        "with about p/2) or flipped stored bits on balanced data, the paper's bit error rate "
        "(2p of the cells fail)",
    )
    _add_geometry_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(handler=cmd_make_chip)

    p = sram_sub.add_parser(
        "show",
        help="bit error rate of a chip vs voltage",
        description="Print a chip's geometry and, at each voltage, its bit error rate p (the "
        "probability that a stored bit flips, for 0s and 1s equally common: half the failing "
        "cells, as stuck cells only flip bits that differ from their value), the fraction of "
        "failing cells, and the 0→1 / 1→0 flip rates.",
    )
    p.add_argument("chip", help="chip map (.npz or .npy)")
    p.add_argument(
        "--voltages",
        type=parse_voltages,
        help="voltages / V_min, comma-separated or START:STOP:STEP (default: 0.76..1.0)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(handler=cmd_show)

    p = sram_sub.add_parser(
        "evaluate",
        help="Err and RErr of a checkpoint on a chip at several voltages",
        description="Quantize a checkpoint, place its weights on the chip (one placement per "
        "seed) and report RErr at each voltage, with the chip's bit error rate and the energy "
        "saving ((V/V_min)² energy per access).",
    )
    _add_model_options(p)
    p.add_argument("--chip", required=True, help="chip map (.npz or .npy)")
    p.add_argument(
        "--voltages",
        type=parse_voltages,
        required=True,
        help="voltages / V_min within the chip's profiled range, e.g. 0.80,0.85,0.90",
    )
    p.add_argument(
        "--placements",
        type=int_type("--placements", 1, MAX_PATTERNS),
        default=5,
        help="placements per voltage (default 5)",
    )
    p.add_argument("--plot", help="also write a PNG of RErr and energy vs voltage here")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser(
        "energy",
        help="lowest SRAM voltage (largest energy saving) within an RErr budget",
        description="Walk a voltage grid from V_min down and report the lowest voltage at "
        "which the checkpoint's RErr over a set of chips stays within BUDGET percentage points "
        "of its clean Err (at that voltage and every grid voltage above it), with the bit "
        "error rate and energy saving there. Exit status 1 if no voltage meets the budget "
        "(the best voltage found is reported).",
    )
    _add_model_options(p)
    p.add_argument(
        "--budget",
        type=parse_budget,
        required=True,
        help="allowed RErr − Err in percentage points, e.g. 1.0",
    )
    p.add_argument(
        "--chip",
        action="append",
        help="chip map to evaluate on (repeat for several; default: synthetic chips)",
    )
    p.add_argument(
        "--synthetic-chips",
        type=int_type("--synthetic-chips", 1, 100),
        default=4,
        help="without --chip: number of synthetic chips, seeds 0..N-1 (default 4)",
    )
    p.add_argument(
        "--placements",
        type=int_type("--placements", 1, MAX_PATTERNS),
        default=1,
        help="placements per chip, or patterns with --random-errors (default 1)",
    )
    p.add_argument(
        "--random-errors",
        action="store_true",
        help="use i.i.d. random bit errors at the curve's p(V) instead of chips",
    )
    p.add_argument(
        "--curve-chip",
        help="with --random-errors: take p(V) from this chip map instead of the paper's curve",
    )
    p.add_argument(
        "--voltages",
        type=parse_voltages,
        help="voltage grid / V_min (default 0.80:1.00:0.01)",
    )
    p.add_argument(
        "--statistic",
        choices=("mean", "max"),
        default="mean",
        help="RErr over chips and placements that must meet the budget (default mean)",
    )
    p.add_argument(
        "--baseline-err",
        type=float_type("--baseline-err", 0, 100),
        help="Err in percent to measure the budget from (default: this checkpoint's Err), "
        "e.g. a normally trained reference model's",
    )
    p.add_argument(
        "--energy-table",
        type=parse_energy_table,
        help="energy per access relative to V_min as V:E,V:E,... (default (V/V_min)^2)",
    )
    p.add_argument("--plot", help="also write a PNG of RErr and energy vs voltage here")
    p.set_defaults(handler=cmd_energy)


def _missing_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2
