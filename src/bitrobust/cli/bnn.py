"""``bitrobust bnn metrics``: bit error tolerance metrics of a binarized checkpoint."""

from __future__ import annotations

import argparse

from bitrobust.cli.common import (
    add_data_options,
    add_device_option,
    emit,
    int_type,
    load_checkpoint_arg,
    load_test_set,
)


def cmd_metrics(args: argparse.Namespace) -> int:
    from bitrobust.bnn import bnn_metrics, check_binarized_network

    checkpoint = load_checkpoint_arg(args)
    check_binarized_network(
        checkpoint.model, f"'bnn metrics' (checkpoint model '{checkpoint.architecture.model}')"
    )
    dataset, images, labels = load_test_set(args, checkpoint)
    importance = None if args.importance == "none" else args.importance
    metrics = bnn_metrics(
        checkpoint.model,
        images,
        labels,
        importance=importance,
        max_neurons=args.neurons,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    payload = {"checkpoint": str(args.checkpoint), "dataset": dataset, **metrics}
    emit(payload, args.json, _text(metrics))
    return 0


def _text(metrics: dict) -> str:
    from bitrobust.report import markdown_table

    columns = [
        "layer",
        "description",
        "fan_in",
        "margin_mean",
        "margin_normalized_mean",
        "margin_tolerable_flips_mean",
        "margin_zero_flips_fraction",
        "importance_mean",
        "importance_variance",
    ]
    headers = [
        "layer",
        "type",
        "fan-in",
        "margin |a−τ|",
        "margin / fan-in",
        "tolerable flips",
        "0-flip fraction",
        "importance",
        "importance var.",
    ]
    head = f"accuracy {100 * metrics['accuracy']:.2f} % on {metrics['examples']} test examples"
    return head + "\n\n" + markdown_table(metrics["layers"], columns, headers, floatfmt=".4g")


def register(sub: argparse._SubParsersAction) -> None:
    from bitrobust.names import IMPORTANCE_METHODS

    group = sub.add_parser(
        "bnn",
        help="binarized networks: bit error tolerance metrics",
        description="Tools for binarized networks (bnn-mlp, vgg3, vgg7).",
    )
    commands = group.add_subparsers(dest="bnn_command", metavar="COMMAND")
    p = commands.add_parser(
        "metrics",
        help="per-layer neuron margins and neuron importance of a binarized checkpoint",
        description="Per binarized layer: the margin |a − τ| of pre-activations to the folded "
        "batch-norm thresholds (raw, in tolerable weight flips, normalized by fan-in) and the "
        "importance of neurons (accuracy drop when a neuron's output is flipped, or a gradient "
        "estimate) with its variance over the layer's neurons.",
    )
    p.add_argument("checkpoint", help="checkpoint of a binarized model ('bitrobust train')")
    p.add_argument(
        "--dataset", help="test dataset (default: the one the checkpoint was trained on)"
    )
    p.add_argument(
        "--limit",
        type=int_type("--limit"),
        default=1000,
        help="use the first N test examples (default 1000)",
    )
    p.add_argument(
        "--importance",
        choices=(*IMPORTANCE_METHODS, "none"),
        default="flip",
        help="flip: accuracy drop when the neuron's output is flipped (default); gradient: "
        "E|dL/do · o|; none: margins only",
    )
    p.add_argument(
        "--neurons",
        type=int_type("--neurons"),
        default=256,
        help="flip importance: evaluate at most N random neurons per layer (default 256)",
    )
    p.add_argument(
        "--seed", type=int_type("--seed", 0), default=0, help="seed of the neuron subsample"
    )
    p.add_argument(
        "--batch-size", type=int_type("--batch-size"), default=500, help="examples per batch"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_data_options(p)
    add_device_option(p)
    p.set_defaults(handler=cmd_metrics)
    group.set_defaults(handler=lambda args: _missing_command(group))


def _missing_command(parser: argparse.ArgumentParser) -> int:
    import sys

    parser.print_help(sys.stderr)
    return 2
