"""``bitrobust train``: quantization-aware training with a hardening method.

Defaults depend on the model (:meth:`bitrobust.train.TrainConfig.defaults_for`). Ordinary
models: SGD, lr 0.05, batch 128, weight decay 5e-4, 8-bit weights (``--bits``, ``--quant``).
Binarized models (bnn-mlp, vgg3, vgg7; their weights are 1-bit signs, so ``--bits``/``--quant``
do not apply): Adam, lr 1e-3, batch 256, no weight decay, as in the reference BNN code.

Every option is checked before any training starts (bad numbers while parsing; the model,
scheme, training settings and ``--out`` in the handler, before the data is loaded). Progress goes
to stderr: a bar on a terminal, else one line per epoch (epoch, loss, seconds).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bitrobust.cli.common import (
    add_data_options,
    add_device_option,
    emit,
    float_type,
    int_type,
    parse_option,
)
from bitrobust.errors import BitrobustError


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from bitrobust.bnn import is_binarized
    from bitrobust.checkpoint import save_checkpoint
    from bitrobust.data import dataset_info, load_splits, subset
    from bitrobust.evaluate import error_rate, predict
    from bitrobust.models.architecture import Architecture
    from bitrobust.quant import BINARY, QuantizedModel, QuantScheme
    from bitrobust.train import TrainConfig, train
    from bitrobust.train.progress import TrainingPrinter

    info = dataset_info(args.dataset)
    architecture = Architecture.for_dataset(args.model, info.name, args.model_option or [])
    torch.manual_seed(args.seed)
    model = architecture.build()
    if is_binarized(model):
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
        scheme = QuantScheme.preset(
            quant, bits=8 if args.bits is None else args.bits, w_max=args.w_max
        )
    if args.epochs < 1:
        raise BitrobustError(f"--epochs must be a whole number >= 1, got {args.epochs}")
    config = TrainConfig.defaults_for(
        model,
        method=args.method,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        optimizer=args.optimizer,
        w_max=args.w_max,
        bit_error_rate=args.bit_error_rate,
        zero_to_one_rate=args.zero_to_one_rate,
        one_to_zero_rate=args.one_to_zero_rate,
        loss=args.loss,
        hinge_b=args.hinge_b,
        label_smoothing=args.label_smoothing,
        fixed_pattern_seed=args.fixed_pattern_seed,
        seed=args.seed,
        progress=not args.no_progress,
    )
    out = check_checkpoint_path(args.out)
    train_set, test_set = load_splits(args.dataset, args.data_dir)
    train_set = subset(train_set, args.train_limit)
    test_set = subset(test_set, args.test_limit)
    print(
        f"training {args.model} on {args.dataset} ({len(train_set)} examples), "
        f"method {args.method}, {scheme.name}",
        file=sys.stderr,
    )
    printer = TrainingPrinter(sys.stderr)
    if args.no_progress:
        printer.bar = printer.lines = False
    history = train(
        model,
        scheme,
        train_set,
        config,
        device=args.device,
        on_epoch=printer.on_epoch,
        on_step=printer.on_step,
    )
    path = save_checkpoint(
        out, model, architecture, scheme, {**config.to_dict(), "loss_history": history.loss}
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


def check_checkpoint_path(text: str) -> Path:
    """Refuse, before training, an ``--out`` that could not be written afterwards: empty, a
    folder, in a folder that does not exist, or not writable (a real probe file is created and
    removed in the folder; an existing file must be writable)."""
    if not text.strip():
        raise BitrobustError("--out is empty; give a checkpoint path such as model.safetensors")
    path = Path(text)
    if path.is_dir():
        raise BitrobustError(f"--out {path} is a folder; give a checkpoint file inside it")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise BitrobustError(f"--out {path}: folder {folder} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".bitrobust-probe-"):
            pass
    except OSError as exc:
        raise BitrobustError(
            f"--out {path}: folder {folder} is not writable ({exc.strerror})"
        ) from None
    if path.exists() and not os.access(path, os.W_OK):
        raise BitrobustError(f"--out {path} is read-only")
    return path


def positive_float(option: str) -> Callable[[str], float]:
    """An argparse ``type``: a finite number > 0."""
    finite = float_type(option, minimum=0.0)

    def parse(text: str) -> float:
        value = finite(text) if text.strip() else finite("nan")
        if value <= 0:
            raise BitrobustError(f"{option} must be a finite number > 0, got {text!r}")
        return value

    return parse


def below_one(option: str) -> Callable[[str], float]:
    """An argparse ``type``: a finite number in [0, 1)."""
    fraction = float_type(option, 0.0, 1.0)

    def parse(text: str) -> float:
        value = fraction(text)
        if value >= 1:
            raise BitrobustError(f"{option} must be a finite number in [0, 1), got {text!r}")
        return value

    return parse


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
    p.add_argument(
        "--w-max",
        type=positive_float("--w-max"),
        help="clipping bound w_max (clipping/randbet), e.g. 0.1",
    )
    p.add_argument(
        "--bit-error-rate",
        type=float_type("--bit-error-rate", 0.0, 1.0),
        default=0.01,
        help="randbet/bitflip training bit error rate (default 0.01)",
    )
    p.add_argument(
        "--zero-to-one-rate",
        type=float_type("--zero-to-one-rate", 0.0, 1.0),
        help="bitflip: rate of -1→+1 flips (code 0→1; default --bit-error-rate)",
    )
    p.add_argument(
        "--one-to-zero-rate",
        type=float_type("--one-to-zero-rate", 0.0, 1.0),
        help="bitflip: rate of +1→-1 flips (code 1→0; default --bit-error-rate)",
    )
    p.add_argument(
        "--loss",
        choices=LOSSES,
        default="cross_entropy",
        help="cross_entropy (default) or hinge: the modified hinge loss (margin maximization)",
    )
    p.add_argument(
        "--hinge-b",
        type=positive_float("--hinge-b"),
        default=128.0,
        help="margin b of the hinge loss (default 128)",
    )
    p.add_argument(
        "--label-smoothing",
        type=below_one("--label-smoothing"),
        help="cross_entropy: label smoothing in [0, 1) (default 0: none); Stutz et al. find it "
        "undoes the robustness that weight clipping brings",
    )
    p.add_argument(
        "--fixed-pattern-seed",
        type=int_type("--fixed-pattern-seed", minimum=0),
        metavar="SEED",
        help="randbet: train on one fixed bit error pattern, the one random_bit_errors "
        "(sampler 2) gives for SEED at --bit-error-rate, instead of a fresh one every step",
    )
    p.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        help="sgd (Nesterov) or adam (default: adam for binarized models, else sgd)",
    )
    p.add_argument(
        "--weight-decay",
        type=float_type("--weight-decay", minimum=0.0),
        help="weight decay (default: 0 for binarized models, else 5e-4)",
    )
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    p.add_argument(
        "--batch-size",
        type=int_type("--batch-size"),
        help="batch size (default 128; 256 for binarized models)",
    )
    p.add_argument(
        "--lr",
        type=positive_float("--lr"),
        help="initial learning rate (default 0.05; 1e-3 for binarized models)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed for initialisation, order and patterns"
    )
    p.add_argument(
        "--train-limit",
        type=int_type("--train-limit"),
        help="use only the first N training examples",
    )
    p.add_argument(
        "--test-limit",
        type=int_type("--test-limit"),
        help="report error on the first N test examples",
    )
    p.add_argument("--out", required=True, help="checkpoint path (.safetensors)")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress on stderr (default: a bar on a terminal, else one line per epoch)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_data_options(p)
    add_device_option(p)
    p.set_defaults(handler=cmd_train)
