"""``bitrobust train``: quantization-aware training with a hardening method."""

from __future__ import annotations

import argparse
import sys

from bitrobust.cli.common import (
    add_data_options,
    add_device_option,
    emit,
    parse_option,
)


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from bitrobust.checkpoint import Architecture, save_checkpoint
    from bitrobust.data import dataset_info, load_splits, subset
    from bitrobust.evaluate import error_rate, predict
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
    train_set = subset(train_set, args.train_limit)
    test_set = subset(test_set, args.test_limit)
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
    emit(payload, args.json, f"saved {path}; quantized test error {100 * err:.2f} %")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
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
        type=parse_option,
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
    add_data_options(p)
    add_device_option(p)
    p.set_defaults(handler=cmd_train)
