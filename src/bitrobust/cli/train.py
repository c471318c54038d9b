"""``bitrobust train``: quantization-aware training with a hardening method.

Defaults depend on the model. Ordinary models: SGD, lr 0.05, batch 128, weight decay 5e-4, 8-bit
weights (``--bits``, ``--quant``). Binarized models (bnn-mlp, vgg3, vgg7; their weights are 1-bit
signs, so ``--bits``/``--quant`` do not apply): Adam, lr 1e-3, batch 256, no weight decay, as in
the reference BNN code.
"""

from __future__ import annotations

import argparse
import sys

from bitrobust.cli.common import (
    add_data_options,
    add_device_option,
    emit,
    parse_option,
)
from bitrobust.errors import BitrobustError


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from bitrobust.bnn import is_binarized
    from bitrobust.checkpoint import Architecture, save_checkpoint
    from bitrobust.data import dataset_info, load_splits, subset
    from bitrobust.evaluate import error_rate, predict
    from bitrobust.quant import BINARY, QuantizedModel, QuantScheme
    from bitrobust.train import TrainConfig, train

    info = dataset_info(args.dataset)
    architecture = Architecture.for_dataset(args.model, info.name, args.model_option or [])
    torch.manual_seed(args.seed)
    model = architecture.build()
    binarized = is_binarized(model)
    if binarized:
        if args.bits is not None or args.quant is not None:
            raise BitrobustError(
                f"model '{args.model}' stores 1-bit (sign) weights; --bits and --quant do not apply"
            )
        scheme = BINARY
    else:
        if args.method == "bitflip":
            raise BitrobustError(
                f"--method bitflip flips binary weights; model '{args.model}' has none "
                "(use bnn-mlp, vgg3 or vgg7, or randbet for multi-bit weights)"
            )
        quant = args.quant or (
            "normal" if args.method == "normal" and args.w_max is None else "rquant"
        )
        scheme = QuantScheme.preset(quant, bits=_pick(args.bits, 8), w_max=args.w_max)
    defaults = BINARIZED_DEFAULTS if binarized else DEFAULTS
    config = TrainConfig(
        method=args.method,
        epochs=args.epochs,
        batch_size=_pick(args.batch_size, defaults["batch_size"]),
        lr=_pick(args.lr, defaults["lr"]),
        weight_decay=_pick(args.weight_decay, defaults["weight_decay"]),
        optimizer=_pick(args.optimizer, defaults["optimizer"]),
        w_max=args.w_max,
        bit_error_rate=args.bit_error_rate,
        zero_to_one_rate=args.zero_to_one_rate,
        one_to_zero_rate=args.one_to_zero_rate,
        loss=args.loss,
        hinge_b=args.hinge_b,
        seed=args.seed,
        progress=not args.no_progress,
    )
    train_set, test_set = load_splits(args.dataset, args.data_dir)
    train_set = subset(train_set, args.train_limit)
    test_set = subset(test_set, args.test_limit)
    print(
        f"training {args.model} on {args.dataset} ({len(train_set)} examples), "
        f"method {args.method}, {scheme.name}",
        file=sys.stderr,
    )
    history = train(model, scheme, train_set, config, device=args.device)
    path = save_checkpoint(
        args.out, model, architecture, scheme, {**config.to_dict(), "loss_history": history.loss}
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
        "loss": config.loss,
        "optimizer": config.optimizer,
        "quantization": scheme.name,
        "err": err,
        "test_examples": len(labels),
        "final_loss": history.loss[-1] if history.loss else None,
    }
    emit(payload, args.json, f"saved {path}; quantized test error {100 * err:.2f} %")
    return 0


#: Training defaults of ordinary (multi-bit) and binarized models; explicit options win.
DEFAULTS = {"optimizer": "sgd", "lr": 0.05, "batch_size": 128, "weight_decay": 5e-4}
BINARIZED_DEFAULTS = {"optimizer": "adam", "lr": 1e-3, "batch_size": 256, "weight_decay": 0.0}


def _pick(value, default):
    return default if value is None else value


def register(sub: argparse._SubParsersAction) -> None:
    from bitrobust.names import LOSSES, OPTIMIZERS, QUANT_PRESETS, TRAIN_METHODS

    p = sub.add_parser(
        "train",
        help="train a quantization-aware (optionally hardened) model",
        description="Train a model with quantization-aware training and save a checkpoint "
        "(safetensors with architecture, quantization scheme and training record).",
    )
    p.add_argument("--dataset", default="mnist", help="mnist, fashion-mnist, cifar10 or digits")
    p.add_argument(
        "--model",
        default="mlp",
        help="mlp, lenet5, simplenet, resnet20, or a binarized bnn-mlp, vgg3, vgg7",
    )
    p.add_argument(
        "--model-option",
        action="append",
        type=parse_option,
        metavar="KEY=VALUE",
        help="model option, repeatable, e.g. hidden=[256,256] or width=16",
    )
    p.add_argument(
        "--bits",
        type=int,
        help="bits per stored weight, 2..8 (default 8; not for binarized models)",
    )
    p.add_argument(
        "--quant",
        choices=QUANT_PRESETS,
        help="quantization scheme (default: rquant, or normal for --method normal without --w-max)",
    )
    p.add_argument(
        "--method",
        choices=TRAIN_METHODS,
        default="normal",
        help="normal: quantization-aware training; clipping: project parameters to ±w_max; "
        "randbet: clipping + random bit error training; bitflip: random sign flips of the "
        "binary weights on every forward pass (binarized models)",
    )
    p.add_argument("--w-max", type=float, help="clipping bound w_max (clipping/randbet), e.g. 0.1")
    p.add_argument(
        "--bit-error-rate",
        type=float,
        default=0.01,
        help="randbet/bitflip training bit error rate (default 0.01)",
    )
    p.add_argument(
        "--zero-to-one-rate",
        type=float,
        help="bitflip: rate of -1→+1 flips (code 0→1; default --bit-error-rate)",
    )
    p.add_argument(
        "--one-to-zero-rate",
        type=float,
        help="bitflip: rate of +1→-1 flips (code 1→0; default --bit-error-rate)",
    )
    p.add_argument(
        "--loss",
        choices=LOSSES,
        default="cross_entropy",
        help="cross_entropy (default) or hinge: the modified hinge loss (margin maximization)",
    )
    p.add_argument(
        "--hinge-b", type=float, default=128.0, help="margin b of the hinge loss (default 128)"
    )
    p.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        help="sgd (Nesterov) or adam (default: adam for binarized models, else sgd)",
    )
    p.add_argument(
        "--weight-decay",
        type=float,
        help="weight decay (default: 0 for binarized models, else 5e-4)",
    )
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    p.add_argument(
        "--batch-size", type=int, help="batch size (default 128; 256 for binarized models)"
    )
    p.add_argument(
        "--lr", type=float, help="initial learning rate (default 0.05; 1e-3 for binarized models)"
    )
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
