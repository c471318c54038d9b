"""``bitrobust evaluate``: Err and RErr of a checkpoint under random bit errors."""

from __future__ import annotations

import argparse

from bitrobust.cli.common import (
    MAX_PATTERNS,
    add_data_options,
    add_device_option,
    emit,
    float_type,
    int_type,
    load_checkpoint_arg,
    load_test_set,
    parse_rates,
    progress_printer,
)
from bitrobust.errors import BitrobustError


def cmd_evaluate(args: argparse.Namespace) -> int:
    from bitrobust.evaluate import evaluate_fault_models
    from bitrobust.faults import RandomBitErrors

    if args.bit_error_rates is not None:
        if args.zero_to_one_rates is not None or args.one_to_zero_rates is not None:
            raise BitrobustError("give --bit-error-rates or the per-direction rates, not both")
        pairs = [(rate, rate) for rate in args.bit_error_rates]
    elif args.zero_to_one_rates is not None and args.one_to_zero_rates is not None:
        if len(args.zero_to_one_rates) != len(args.one_to_zero_rates):
            raise BitrobustError("--zero-to-one-rates and --one-to-zero-rates need equal lengths")
        pairs = list(zip(args.zero_to_one_rates, args.one_to_zero_rates))
    else:
        raise BitrobustError(
            "give --bit-error-rates, or both --zero-to-one-rates and --one-to-zero-rates"
        )
    fault_models = [RandomBitErrors(zero_to_one=a, one_to_zero=b) for a, b in pairs]
    checkpoint = load_checkpoint_arg(args)
    dataset, images, labels = load_test_set(args, checkpoint)
    report = evaluate_fault_models(
        checkpoint.model,
        checkpoint.scheme,
        images,
        labels,
        fault_models,
        patterns=args.patterns,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=progress_printer(True, "evaluate"),
        **({} if args.max_memory is None else {"max_memory_mb": args.max_memory}),
    ).to_json()
    payload = {
        "checkpoint": str(args.checkpoint),
        "dataset": dataset,
        "quantization": checkpoint.scheme.name,
        **report,
    }
    lines = [f"Err {100 * report['err']:.2f} % on {report['examples']} test examples"]
    for row in report["results"]:
        lines.append(
            f"p01={row['zero_to_one']:g} p10={row['one_to_zero']:g}: RErr "
            f"{100 * row['rerr_mean']:.2f} ± {100 * row['rerr_std']:.2f} % "
            f"(min {100 * row['rerr_min']:.2f}, max {100 * row['rerr_max']:.2f}, "
            f"{row['patterns']} patterns)"
        )
    emit(payload, args.json, "\n".join(lines))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="Err and RErr of a checkpoint under random bit errors",
        description="Quantize a checkpoint with its recorded scheme, inject seeded random bit "
        "errors into the stored weights and report Err and RErr (an example is wrong if the "
        "clean or the faulty model errs) over N patterns per rate.",
    )
    p.add_argument("checkpoint", help="checkpoint written by 'bitrobust train'")
    p.add_argument(
        "--dataset", help="test dataset (default: the one the checkpoint was trained on)"
    )
    p.add_argument(
        "--bit-error-rates",
        type=parse_rates,
        help="comma-separated bit error rates in [0, 1], same rate for 0→1 and 1→0 flips",
    )
    p.add_argument("--zero-to-one-rates", type=parse_rates, help="per-rate 0→1 flip probabilities")
    p.add_argument("--one-to-zero-rates", type=parse_rates, help="per-rate 1→0 flip probabilities")
    p.add_argument(
        "--patterns",
        type=int_type("--patterns", 1, MAX_PATTERNS),
        default=10,
        help=f"fault patterns per rate (default 10, at most {MAX_PATTERNS:,})",
    )
    p.add_argument(
        "--seed",
        type=int_type("--seed", 0),
        default=0,
        help="first pattern seed; patterns use seed..seed+N-1",
    )
    p.add_argument(
        "--limit", type=int_type("--limit"), help="evaluate on the first N test examples only"
    )
    p.add_argument(
        "--batch-size", type=int_type("--batch-size"), default=1000, help="evaluation batch size"
    )
    p.add_argument(
        "--max-memory",
        type=float_type("--max-memory", 0),
        metavar="MB",
        help="memory for the fault patterns that go through the test set together, sharing the "
        "activations before the first layer they change (default 512; 0: one pattern per pass); "
        "the results are the same",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_data_options(p)
    add_device_option(p)
    p.set_defaults(handler=cmd_evaluate)
