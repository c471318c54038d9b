"""``bitrobust bench``: time bitrobust against pytorchfi, MRFI and bare references."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bitrobust.cli.common import add_data_options, int_type
from bitrobust.errors import BitrobustError

TASK_NAMES = (
    "inject_p10, inject_p1, inject_p0.1, inject_p0.01, inject_p0.01_10M, campaign100, "
    "approx_lenet5, approx_mlp, accumulator_lenet5, accumulator_mlp, randbet_epoch"
)
INSTALL = "pip install --no-deps mrfi==2.1.0 pytorchfi==0.6.0 && pip install pyyaml scipy"


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from bitrobust.bench import Settings, run_suite

    settings = Settings.for_mode(args.quick, args.data_dir, torch.get_num_threads())
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    tasks = [name.strip() for name in args.tasks.split(",") if name.strip()] if args.tasks else None
    result = run_suite(tasks, settings, repeats, memory=not args.no_memory)
    if args.out:
        path = Path(args.out)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise BitrobustError(f"cannot write {path}: {exc.strerror or exc}") from exc
        print(f"bench: wrote {path}", file=sys.stderr)
    print(json.dumps(result) if args.json else table(result))
    return 0


def table(result: dict) -> str:
    """The rows as a Markdown table; ratio = contender's median time / bitrobust's."""
    from bitrobust.bench.targets import describe
    from bitrobust.report import markdown_table

    rows = [
        {
            "task": row["task"],
            "contender": row["contender"],
            "median": f"{row['median_s']:.4g}",
            "min": f"{row['min_s']:.4g}",
            "rss": "–" if row["peak_rss_mb"] is None else f"{row['peak_rss_mb']:.0f}",
            "ratio": f"{row['ratio']:.2f}",
        }
        for row in result["rows"]
    ]
    machine = result["machine"]
    header = (
        f"{machine['cpu']}, {machine['threads']} thread(s), torch {machine['torch']}, "
        f"{machine['mode']} mode, {machine['repeats']} repeat(s)"
    )
    columns = ["task", "contender", "median", "min", "rss", "ratio"]
    headers = ["task", "contender", "median s", "min s", "peak RSS MB", "time / bitrobust"]
    skipped = "".join(f"\nskipped {s['contender']}: {s['reason']}" for s in result["skipped"])
    goals = [
        {
            "target": entry["target"],
            "measured": describe(entry),
            "met": "yes" if entry["met"] else "no",
        }
        for entry in result["targets"]
    ]
    return (
        header
        + "\n\n"
        + markdown_table(rows, columns, headers)
        + skipped
        + "\n\nTargets (ratios of medians in this run):\n\n"
        + markdown_table(goals, ["target", "measured", "met"], ["target", "measured", "met"])
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time bitrobust against pytorchfi, MRFI and bare references, same work",
        description="Run the same work with bitrobust and each contender in one process, "
        "interleaved round-robin and repeated; report median and min seconds, the peak RSS "
        "of a fresh process running each contender once, and the time ratio to bitrobust. "
        f"Tasks: {TASK_NAMES}. Missing peer tools are skipped with a notice; install them "
        f"without their CUDA dependencies: {INSTALL}",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, 1 repeat (a few minutes)")
    p.add_argument("--tasks", help=f"comma-separated subset of: {TASK_NAMES}")
    p.add_argument(
        "--repeats",
        type=int_type("--repeats", 1),
        help="timed rounds per task (default 3, 1 with --quick)",
    )
    p.add_argument("--out", help="also write the JSON result to this file")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-RSS child processes")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_data_options(p)
    p.set_defaults(handler=cmd_bench)
