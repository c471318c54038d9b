"""The ``bitrobust`` command: a thin layer over the library.

User errors (``BitrobustError``) are printed as one line, ``bitrobust: error: ...``, with exit
status 2 and no traceback. Commands that report figures take ``--json`` and then print exactly
one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from bitrobust.errors import BitrobustError


def _rates(text: str) -> list[float]:
    """Parse a comma-separated list of rates in [0, 1]."""
    from bitrobust.errors import check_rate

    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise BitrobustError(f"expected a comma-separated list of rates, got {text!r}")
    return [check_rate(item, "bit error rate") for item in items]


def _option(text: str) -> tuple[str, Any]:
    """Parse KEY=VALUE, VALUE as JSON when possible (``hidden=[256,256]``, ``width=16``)."""
    if "=" not in text:
        raise BitrobustError(f"--model-option expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _emit(payload: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(payload))
    else:
        print(text)


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        help="folder with the dataset files (default: $BITROBUST_DATA_DIR, else "
        "~/.cache/bitrobust/data; missing files are downloaded when online)",
    )


def _add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", help="torch device, e.g. cpu or cuda (default: cuda when available)"
    )


# --------------------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from bitrobust.checkpoint import Architecture, save_checkpoint
    from bitrobust.data import dataset_info, load_splits
    from bitrobust.evaluate import error_rate, predict
    from bitrobust.experiments.robustness import _subset
    from bitrobust.quant import QuantizedModel, QuantScheme
    from bitrobust.train import TrainConfig, train

    config = TrainConfig(
        method=args.method,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        w_max=args.w_max,
        bit_error_rate=args.bit_error_rate,
        seed=args.seed,
        progress=not args.no_progress,
    )
    quant = args.quant or ("normal" if args.method == "normal" and args.w_max is None else "rquant")
    scheme = QuantScheme.preset(quant, bits=args.bits, w_max=args.w_max)
    info = dataset_info(args.dataset)
    train_set, test_set = load_splits(args.dataset, args.data_dir)
    train_set = _subset(train_set, args.train_limit)
    test_set = _subset(test_set, args.test_limit)
    architecture = Architecture(
        model=args.model,
        dataset=info.name,
        in_channels=info.in_channels,
        image_size=info.image_size,
        num_classes=info.num_classes,
        input_mean=tuple(info.mean),
        input_std=tuple(info.std),
        options=dict(args.model_option or []),
    )
    torch.manual_seed(args.seed)
    model = architecture.build()
    print(
        f"training {args.model} on {args.dataset} ({len(train_set)} examples), "
        f"method {args.method}, {scheme.name}",
        file=sys.stderr,
    )
    history = train(model, scheme, train_set, config, device=args.device)
    path = save_checkpoint(
        args.out, model, architecture, scheme, {**config.to_dict(), "loss": history.loss}
    )
    images, labels = test_set.tensors
    err = error_rate(
        predict(model, QuantizedModel.from_module(model, scheme).dequantized(), images), labels
    )
    payload = {
        "checkpoint": str(path),
        "model": args.model,
        "dataset": args.dataset,
        "method": args.method,
        "quantization": scheme.name,
        "err": err,
        "test_examples": len(labels),
        "final_loss": history.loss[-1] if history.loss else None,
    }
    _emit(payload, args.json, f"saved {path}; quantized test error {100 * err:.2f} %")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    from bitrobust.quant import PRESETS
    from bitrobust.train import METHODS

    p = sub.add_parser(
        "train",
        help="train a quantization-aware (optionally hardened) model",
        description="Train a model with quantization-aware training and save a checkpoint "
        "(safetensors with architecture, quantization scheme and training record).",
    )
    p.add_argument("--dataset", default="mnist", help="mnist, fashion-mnist, cifar10 or digits")
    p.add_argument("--model", default="mlp", help="mlp, lenet5, simplenet or resnet20")
    p.add_argument(
        "--model-option",
        action="append",
        type=_option,
        metavar="KEY=VALUE",
        help="model option, repeatable, e.g. hidden=[256,256] or width=16",
    )
    p.add_argument("--bits", type=int, default=8, help="bits per stored weight, 2..8 (default 8)")
    p.add_argument(
        "--quant",
        choices=PRESETS,
        help="quantization scheme (default: rquant, or normal for --method normal without --w-max)",
    )
    p.add_argument(
        "--method",
        choices=METHODS,
        default="normal",
        help="normal: quantization-aware training; clipping: project parameters to ±w_max; "
        "randbet: clipping + random bit error training",
    )
    p.add_argument("--w-max", type=float, help="clipping bound w_max (clipping/randbet), e.g. 0.1")
    p.add_argument(
        "--bit-error-rate",
        type=float,
        default=0.01,
        help="randbet training bit error rate (default 0.01)",
    )
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    p.add_argument("--lr", type=float, default=0.05, help="initial learning rate (default 0.05)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed for initialisation, order and patterns"
    )
    p.add_argument("--train-limit", type=int, help="use only the first N training examples")
    p.add_argument("--test-limit", type=int, help="report error on the first N test examples")
    p.add_argument("--out", required=True, help="checkpoint path (.safetensors)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    _add_data_options(p)
    _add_device_option(p)
    p.set_defaults(handler=cmd_train)


# --------------------------------------------------------------------------- evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from bitrobust.checkpoint import load_checkpoint
    from bitrobust.data import load_dataset
    from bitrobust.evaluate import evaluate_fault_models
    from bitrobust.faults import RandomBitErrors

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    checkpoint = load_checkpoint(args.checkpoint, device)
    dataset = args.dataset or checkpoint.architecture.dataset
    test_set = load_dataset(dataset, "test", args.data_dir)
    images, labels = test_set.tensors
    if args.limit is not None:
        images, labels = images[: args.limit], labels[: args.limit]
    expected = (checkpoint.architecture.in_channels, checkpoint.architecture.image_size)
    if (images.shape[1], images.shape[-1]) != expected:
        raise BitrobustError(
            f"dataset '{dataset}' has {images.shape[1]}x{images.shape[-1]}px images with "
            f"{images.shape[1]} channel(s), but the checkpoint expects {expected[1]}px, "
            f"{expected[0]} channel(s)"
        )
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
    report = evaluate_fault_models(
        checkpoint.model,
        checkpoint.scheme,
        images,
        labels,
        fault_models,
        patterns=args.patterns,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=not args.json,
    )
    for (zero_to_one, one_to_zero), row in zip(pairs, report["results"]):
        row["bit_error_rate"] = (zero_to_one + one_to_zero) / 2
        row["zero_to_one"] = zero_to_one
        row["one_to_zero"] = one_to_zero
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
    _emit(payload, args.json, "\n".join(lines))
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
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
        type=_rates,
        help="comma-separated bit error rates in [0, 1], same rate for 0→1 and 1→0 flips",
    )
    p.add_argument("--zero-to-one-rates", type=_rates, help="per-rate 0→1 flip probabilities")
    p.add_argument("--one-to-zero-rates", type=_rates, help="per-rate 1→0 flip probabilities")
    p.add_argument("--patterns", type=int, default=10, help="fault patterns per rate (default 10)")
    p.add_argument(
        "--seed", type=int, default=0, help="first pattern seed; patterns use seed..seed+N-1"
    )
    p.add_argument("--limit", type=int, help="evaluate on the first N test examples only")
    p.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    _add_data_options(p)
    _add_device_option(p)
    p.set_defaults(handler=cmd_evaluate)


# --------------------------------------------------------------------------- demo / reproduce


def cmd_demo(args: argparse.Namespace) -> int:
    from bitrobust.experiments.demo import run_demo

    result = run_demo(args.out_dir, args.data_dir)
    payload = {k: v for k, v in result.items() if k != "table"}
    _emit(
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
        "8x8 digits bundled with scikit-learn. Results are cached in --out-dir.",
    )
    p.add_argument(
        "--out-dir", default="bitrobust-demo", help="output folder (default bitrobust-demo)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    _add_data_options(p)
    p.set_defaults(handler=cmd_demo)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from bitrobust.experiments import stutz2021

    out_dir = args.out_dir or f"reproduce-{args.study}{'-quick' if args.quick else ''}"
    command = "bitrobust " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    summary = stutz2021.reproduce(out_dir, args.quick, args.data_dir, command, args.device)
    _emit(
        {"out_dir": out_dir, "ordering": summary["ordering"], "seconds": summary["seconds"]},
        args.json,
        "\n".join(summary["ordering"]) + f"\n\nreport: {out_dir}/stutz2021.md",
    )
    return 0


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="reproduce a paper's experiment (stutz2021)",
        description="Reproduce a paper's experiment: stutz2021 trains Normal, RQuant, Clipping "
        "(w_max 0.1, 0.05) and RandBET models at 8 and 4 bit on MNIST and Fashion-MNIST and "
        "writes a Markdown table and a plot of RErr vs bit error rate. Resumable: finished "
        "models are cached in the output folder.",
    )
    p.add_argument("study", choices=["stutz2021"], help="which experiment")
    p.add_argument("--quick", action="store_true", help="small settings (under 15 min on 2 cores)")
    p.add_argument("--out-dir", help="output folder (default reproduce-STUDY[-quick])")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    _add_data_options(p)
    _add_device_option(p)
    p.set_defaults(handler=cmd_reproduce)


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    from bitrobust import __version__

    parser = argparse.ArgumentParser(
        prog="bitrobust",
        description="Measure and improve how neural networks survive bit errors and hardware "
        "faults in energy-efficient accelerators.",
    )
    parser.add_argument("--version", action="version", version=f"bitrobust {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_evaluate(sub)
    _add_demo(sub)
    _add_reproduce(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # list-valued options validate while parsing
        if not getattr(args, "handler", None):
            parser.print_help(sys.stderr)
            return 2
        return args.handler(args)
    except BitrobustError as exc:
        print(f"bitrobust: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bitrobust: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
