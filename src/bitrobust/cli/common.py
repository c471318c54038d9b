"""Helpers shared by the command modules: option parsers, output, common options."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bitrobust.errors import BitrobustError


def parse_rates(text: str) -> list[float]:
    """Parse a comma-separated list of rates in [0, 1]."""
    from bitrobust.errors import check_rate

    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise BitrobustError(f"expected a comma-separated list of rates, got {text!r}")
    return [check_rate(item, "bit error rate") for item in items]


def parse_option(text: str) -> tuple[str, Any]:
    """Parse KEY=VALUE, VALUE as JSON when possible (``hidden=[256,256]``, ``width=16``)."""
    if "=" not in text:
        raise BitrobustError(f"--model-option expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def emit(payload: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(payload))
    else:
        print(text)


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        help="folder with the dataset files (default: $BITROBUST_DATA_DIR, else "
        "~/.cache/bitrobust/data; missing files are downloaded when online)",
    )


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", help="torch device, e.g. cpu or cuda (default: cuda when available)"
    )


def load_checkpoint_and_test_set(args: argparse.Namespace) -> tuple[Any, str, Any, Any]:
    """Checkpoint, dataset name and its test images and labels (first ``--limit``).

    Reads ``args.checkpoint``, ``args.dataset`` (default: the checkpoint's), ``args.data_dir``,
    ``args.device`` (default: cuda when available) and ``args.limit``; the images must have the
    shape the checkpoint's architecture expects.
    """
    import torch

    from bitrobust.checkpoint import load_checkpoint
    from bitrobust.data import load_dataset, subset

    limit = getattr(args, "limit", None)
    if limit is not None and limit < 1:
        raise BitrobustError(f"--limit must be >= 1, got {limit}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    checkpoint = load_checkpoint(args.checkpoint, device)
    dataset = args.dataset or checkpoint.architecture.dataset
    images, labels = subset(load_dataset(dataset, "test", args.data_dir), limit).tensors
    expected = (checkpoint.architecture.in_channels, checkpoint.architecture.image_size)
    if (images.shape[1], images.shape[-1]) != expected:
        raise BitrobustError(
            f"dataset '{dataset}' has {images.shape[-1]}px images with {images.shape[1]} "
            f"channel(s), but the checkpoint expects {expected[1]}px, {expected[0]} channel(s)"
        )
    return checkpoint, dataset, images, labels
