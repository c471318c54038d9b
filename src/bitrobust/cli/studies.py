"""``bitrobust demo`` and ``bitrobust reproduce``: ready-made studies."""

from __future__ import annotations

import argparse
import shlex
import sys

from bitrobust.cli.common import (
    add_data_options,
    add_device_option,
    check_device,
    check_output_dir,
    emit,
    int_type,
)


def cmd_demo(args: argparse.Namespace) -> int:
    from bitrobust.experiments.demo import run_demo

    check_output_dir(args.out_dir, "--out-dir")
    result = run_demo(args.out_dir, args.data_dir, workers=args.workers)
    payload = {k: v for k, v in result.items() if k != "table"}
    emit(
        payload,
        args.json,
        f"{result['table']}\n\nreport: {result['report']}\nplot:   {result['plot']}",
    )
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="train Normal/RQuant/Clipping/RandBET models and compare them under bit errors",
        description="Train a small MLP four ways at 8 bit and print how its error grows with "
        "the bit error rate; writes demo.md and demo.png. Uses MNIST if available, else the "
        "8x8 digits bundled with scikit-learn. Every trial is a row of --out-dir/campaign.db: a "
        "rerun continues where a killed one stopped.",
    )
    p.add_argument(
        "--out-dir", default="bitrobust-demo", help="output folder (default bitrobust-demo)"
    )
    _add_workers(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_data_options(p)
    p.set_defaults(handler=cmd_demo)


def _add_workers(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=int_type("--workers", 1, 4096),
        help="worker processes for training and trials (default: the number of cores; 1 runs "
        "everything in this process)",
    )


def cmd_reproduce(args: argparse.Namespace) -> int:
    from bitrobust.experiments import load_study

    out_dir = args.out_dir or f"reproduce-{args.study}{'-quick' if args.quick else ''}"
    check_output_dir(out_dir, "--out-dir")
    device = check_device(args.device)
    study = load_study(args.study)
    command = "bitrobust " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    summary = study.reproduce(
        out_dir, args.quick, args.data_dir, command, device, workers=args.workers
    )
    emit(
        {
            "study": args.study,
            "mode": summary["mode"],
            "report": summary["report"],
            "findings": summary["findings"],
            "seconds": summary["seconds"],
        },
        args.json,
        "\n".join(summary["findings"]) + f"\n\nreport: {summary['report']}",
    )
    return 0


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    from bitrobust.experiments import STUDIES

    p = sub.add_parser(
        "reproduce",
        help="reproduce a paper's experiment (" + ", ".join(STUDIES) + ")",
        description="Reproduce a paper's experiment and write Markdown tables, plots and a JSON "
        "record to the output folder. Resumable: trained models and finished trials are kept "
        "there (a campaign store for the studies that are campaign specs).\n\n"
        + "\n".join(f"  {name}: {text}" for name, text in STUDIES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("study", choices=list(STUDIES), help="which experiment")
    p.add_argument("--quick", action="store_true", help="small settings (under 15 min on 2 cores)")
    p.add_argument("--out-dir", help="output folder (default reproduce-STUDY[-quick])")
    _add_workers(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_data_options(p)
    add_device_option(p)
    p.set_defaults(handler=cmd_reproduce)


def cmd_claims(args: argparse.Namespace) -> int:
    from bitrobust.experiments.claims import Results, evaluate_claims, write_claims
    from bitrobust.provenance import provenance

    claims = evaluate_claims(Results.load(args.results))
    out = args.out or args.results
    json_path, md_path = write_claims(claims, out, provenance())
    counts: dict[str, dict[str, int]] = {}
    for claim in claims:
        counts.setdefault(claim.paper, {}).setdefault(claim.verdict, 0)
        counts[claim.paper][claim.verdict] += 1
    emit(
        {"claims": str(json_path), "report": str(md_path), "verdicts": counts},
        args.json,
        "\n".join(f"[{c.paper}] {c.verdict}: {c.claim}" for c in claims)
        + f"\n\nwrote {md_path} and {json_path}",
    )
    return 0


def _add_claims(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "claims",
        help="check the papers' claims against the committed results",
        description="Judge every claim of the three papers (papers.md's reference numbers "
        "and the abstracts) on the results in --results (each study's trials.csv.gz and JSON "
        "record, as `bitrobust reproduce` writes them) and write CLAIMS.md and claims.json. "
        "The verdicts are computed, with confidence intervals over training seeds.",
    )
    p.add_argument(
        "--results", default="docs/results", help="results folder (default docs/results)"
    )
    p.add_argument("--out", help="output folder (default: the results folder)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(handler=cmd_claims)


def register(sub: argparse._SubParsersAction) -> None:
    _add_demo(sub)
    _add_reproduce(sub)
    _add_claims(sub)
