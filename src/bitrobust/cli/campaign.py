"""``bitrobust campaign run|status|export|report``: declarative, resumable campaigns."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bitrobust.cli.common import add_data_options, check_output_dir, emit, int_type

EXECUTORS = ("local", "ray")  # bitrobust.campaign.executors.EXECUTORS, without importing it


def cmd_run(args: argparse.Namespace) -> int:
    from bitrobust.campaign.executors import make_executor
    from bitrobust.campaign.runner import run_campaign, stop_on_signals
    from bitrobust.campaign.spec import load_spec

    spec, text = load_spec(args.spec)
    if args.address and args.executor != "ray":
        from bitrobust.errors import BitrobustError

        raise BitrobustError("--address needs --executor ray")
    with make_executor(args.executor, args.workers, args.address) as executor:
        bar = _ProgressBar()
        with stop_on_signals(getattr(executor, "abandon", None)) as stop:
            try:
                summary = run_campaign(
                    spec,
                    text,
                    args.store,
                    executor,
                    data_dir=args.data_dir,
                    checkpoint_dir=args.checkpoints,
                    force=args.force,
                    progress=bar.update,
                    stop=stop,
                )
            finally:
                bar.close()
    payload = summary.to_json()
    text_out = (
        f"{summary.done}/{summary.total} trials done ({summary.new} new, "
        f"{summary.trained} model(s) trained) in {summary.seconds:.1f} s; store: {summary.store}"
    )
    if summary.interrupted:
        text_out += "\ninterrupted: rerun the same command to continue"
    emit(payload, args.json, text_out)
    return 130 if summary.interrupted else 0


class _ProgressBar:
    """A tqdm bar with ETA on stderr, created at the first trial."""

    def __init__(self) -> None:
        self._bar: Any = None

    def update(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="trial", file=sys.stderr, mininterval=0.5)
        self._bar.total = total
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def cmd_status(args: argparse.Namespace) -> int:
    from bitrobust.campaign.store import CampaignStore

    with CampaignStore.open_existing(args.store) as store:
        status = store.status()
    emit(status, args.json, f"{status['done']}/{status['total']} trials done")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from bitrobust.campaign.store import CampaignStore

    with CampaignStore.open_existing(args.store) as store:
        path = store.export(args.out, args.format)
        count = store.status()["done"]
    emit({"out": str(path), "format": args.format, "trials": count}, args.json, f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bitrobust.campaign.report import report_store

    check_output_dir(args.out, "--out")
    paths = report_store(args.store, args.out)
    emit(
        {key: str(path) for key, path in paths.items()},
        args.json,
        f"report: {paths['html']}\n        {paths['markdown']}",
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "campaign",
        help="run a campaign stated in a TOML spec into a resumable store; status, export, report",
        description="Campaigns: models × fault models × swept values × patterns, stated in one "
        "TOML file (see examples/campaigns/), run into a SQLite store that a killed run "
        "continues from.",
    )
    commands = p.add_subparsers(dest="campaign_command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="train the spec's models and run every trial not yet in the store",
        description="Train what the spec asks for (checkpoints stored by fingerprint), then run "
        "every trial the store lacks. Kill it at any moment and rerun the same command: it "
        "continues where it stopped. Ctrl-C once finishes the trials in flight; twice abandons "
        "them.",
    )
    run.add_argument("spec", help="campaign spec (TOML)")
    run.add_argument("--store", required=True, help="SQLite store of the results (created)")
    run.add_argument(
        "--executor", choices=EXECUTORS, default="local", help="where trials run (default local)"
    )
    run.add_argument("--address", help="Ray cluster address (with --executor ray)")
    run.add_argument(
        "--workers",
        type=int_type("--workers", 1, 4096),
        help="worker processes (default: the number of cores)",
    )
    run.add_argument(
        "--checkpoints", help="folder of trained checkpoints (default STORE.checkpoints/)"
    )
    run.add_argument("--force", action="store_true", help="reuse a store made from another spec")
    run.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_data_options(run)
    run.set_defaults(handler=cmd_run)

    status = commands.add_parser("status", help="how many trials are done")
    status.add_argument("store", help="campaign store")
    status.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    status.set_defaults(handler=cmd_status)

    export = commands.add_parser(
        "export", help="one row per trial, sorted by trial id, as CSV or Parquet"
    )
    export.add_argument("store", help="campaign store")
    export.add_argument("--format", choices=("csv", "parquet"), default="csv")
    export.add_argument("--out", required=True, help="output file")
    export.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    export.set_defaults(handler=cmd_export)

    report = commands.add_parser(
        "report", help="HTML and Markdown report: curves with confidence bands, tables, heatmaps"
    )
    report.add_argument("store", help="campaign store")
    report.add_argument("--out", required=True, help="output folder (report.html, report.md)")
    report.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    report.set_defaults(handler=cmd_report)
