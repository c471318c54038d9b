"""Helpers shared by the command modules: option parsers, output, common options.

Bad input is refused with one :class:`BitrobustError` line before any work starts: option types
(:func:`int_type`, :func:`float_type`) check while arguments are parsed, without importing torch;
:func:`resolve_device`, :func:`check_output_dir` and :func:`check_output_file` run first in a
command's handler.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bitrobust.errors import BitrobustError

MAX_PATTERNS = 1_000_000
"""Most fault patterns (or placements) per rate a command accepts: one pattern is a pass over
the test set, so more would run for days."""

Progress = Callable[[int, int, str], None]
"""A progress callback: ``(done, total, message)``."""


def int_type(option: str, minimum: int = 1, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number in [minimum, maximum] (a one-line error naming
    ``option`` otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
            raise BitrobustError(f"{option} must be a whole number {bounds}, got {text!r}")
        return value

    return parse


def float_type(
    option: str, minimum: float | None = None, maximum: float | None = None
) -> Callable[[str], float]:
    """An argparse ``type``: a finite number in [minimum, maximum] (either bound optional)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        low_ok = minimum is None or value >= minimum
        high_ok = maximum is None or value <= maximum
        if not (math.isfinite(value) and low_ok and high_ok):
            if minimum is not None and maximum is not None:
                bounds = f" in [{minimum:g}, {maximum:g}]"
            elif minimum is not None:
                bounds = f" >= {minimum:g}"
            elif maximum is not None:
                bounds = f" <= {maximum:g}"
            else:
                bounds = ""
            raise BitrobustError(f"{option} must be a finite number{bounds}, got {text!r}")
        return value

    return parse


def resolve_device(text: str | None) -> str:
    """The torch device to run on: ``text`` if it names a usable device, else cuda when
    available, else cpu. An unknown or unavailable device is a one-line error."""
    import torch

    if text is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise BitrobustError(
            f"--device {text!r} is not a torch device; use e.g. cpu, cuda, cuda:1 or mps"
        ) from None
    if device.type == "meta":
        raise BitrobustError("--device meta holds no data; use e.g. cpu or cuda")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = " (this torch is a CPU-only build)" if torch.version.cuda is None else ""
            raise BitrobustError(f"--device {text}: no CUDA GPU is available{build}; use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BitrobustError(
                f"--device {text}: there are only {torch.cuda.device_count()} CUDA device(s)"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise BitrobustError(f"--device {text}: no MPS (Apple GPU) device is available; use cpu")
    if device.type != "cpu":
        try:
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError, ValueError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            raise BitrobustError(
                f"--device {text} is not available on this machine ({reason})"
            ) from None
    return str(device)


def check_device(text: str | None) -> str | None:
    """``text`` validated as by :func:`resolve_device`, or None (the callee's default)."""
    return None if text is None else resolve_device(text)


def _first_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(path: str | os.PathLike[str], option: str) -> Path:
    """Refuse an output folder that is a file or cannot be created or written."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise BitrobustError(f"{option} {folder} exists and is not a folder")
    existing = _first_existing(folder)
    if not existing.is_dir():
        raise BitrobustError(f"{option} {folder} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BitrobustError(f"{option} {folder} cannot be written: {existing} is read-only")
    return folder


def check_output_file(path: str | os.PathLike[str], option: str) -> Path:
    """Refuse an output file that is a folder, is read-only, or whose folder cannot be made."""
    file = Path(path)
    if file.is_dir():
        raise BitrobustError(f"{option} {file} is a folder, not a file")
    if file.exists() and not os.access(file, os.W_OK):
        raise BitrobustError(f"{option} {file} is read-only")
    check_output_dir(file.absolute().parent, option + " folder")
    return file


def progress_printer(
    enabled: bool,
    label: str,
    interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    stream: Any = None,
) -> Progress:
    """A progress callback that prints ``label: done/total, elapsed, ETA`` lines on stderr.

    Prints at most once per ``interval`` seconds and always when ``done == total``; the
    estimate extrapolates the time per item so far. Disabled, it does nothing.
    """
    started = clock()
    last = -math.inf

    def report(done: int, total: int, message: str = "") -> None:
        nonlocal last
        if not enabled:
            return
        now = clock()
        if done < total and now - last < interval:
            return
        last = now
        elapsed = now - started
        line = f"{label}: {done}/{total}, elapsed {_duration(elapsed)}"
        if 0 < done < total:
            line += f", ETA {_duration(elapsed / done * (total - done))}"
        if message:
            line += f" ({message})"
        print(line, file=stream or sys.stderr, flush=True)

    return report


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def parse_rates(text: str, what: str = "bit error rate") -> list[float]:
    """Parse a comma-separated list of rates in [0, 1] (``what`` names them in errors)."""
    from bitrobust.errors import check_rate

    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise BitrobustError(f"expected a comma-separated list of rates, got {text!r}")
    return [check_rate(item, what) for item in items]


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


def check_dataset_name(name: str | None) -> None:
    """Refuse an unknown ``--dataset`` name (no file is read)."""
    if name is not None:
        from bitrobust.data import dataset_info

        dataset_info(name)


def load_checkpoint_arg(args: argparse.Namespace) -> Any:
    """``args.checkpoint`` loaded on ``args.device`` (default: cuda when available), after
    checking ``--device`` and that ``--dataset`` exists and has the images the checkpoint takes."""
    from bitrobust.checkpoint import load_checkpoint
    from bitrobust.data import dataset_info

    device = resolve_device(getattr(args, "device", None))
    check_dataset_name(getattr(args, "dataset", None))
    checkpoint = load_checkpoint(args.checkpoint, device)
    architecture = checkpoint.architecture
    dataset = getattr(args, "dataset", None) or architecture.dataset
    info = dataset_info(dataset)
    expected = (architecture.in_channels, architecture.image_size)
    if (info.in_channels, info.image_size) != expected:
        raise BitrobustError(
            f"dataset '{info.name}' has {info.image_size}px images with {info.in_channels} "
            f"channel(s), but checkpoint {args.checkpoint} expects {expected[1]}px, "
            f"{expected[0]} channel(s)"
        )
    if info.num_classes != architecture.num_classes:
        raise BitrobustError(
            f"dataset '{info.name}' has {info.num_classes} classes, but checkpoint "
            f"{args.checkpoint} predicts {architecture.num_classes}"
        )
    return checkpoint


def load_test_set(args: argparse.Namespace, checkpoint: Any) -> tuple[str, Any, Any]:
    """Dataset name and its test images and labels (first ``args.limit``) for ``checkpoint``."""
    from bitrobust.data import load_dataset, subset

    limit = getattr(args, "limit", None)
    if limit is not None and limit < 1:
        raise BitrobustError(f"--limit must be >= 1, got {limit}")
    dataset = getattr(args, "dataset", None) or checkpoint.architecture.dataset
    images, labels = subset(load_dataset(dataset, "test", args.data_dir), limit).tensors
    expected = (checkpoint.architecture.in_channels, checkpoint.architecture.image_size)
    if (images.shape[1], images.shape[-1]) != expected:
        raise BitrobustError(
            f"dataset '{dataset}' has {images.shape[-1]}px images with {images.shape[1]} "
            f"channel(s), but the checkpoint expects {expected[1]}px, {expected[0]} channel(s)"
        )
    return dataset, images, labels


def load_checkpoint_and_test_set(args: argparse.Namespace) -> tuple[Any, str, Any, Any]:
    """Checkpoint, dataset name and its test images and labels (first ``--limit``).

    Reads ``args.checkpoint``, ``args.dataset`` (default: the checkpoint's), ``args.data_dir``,
    ``args.device`` (default: cuda when available) and ``args.limit``; the images must have the
    shape the checkpoint's architecture expects.
    """
    checkpoint = load_checkpoint_arg(args)
    dataset, images, labels = load_test_set(args, checkpoint)
    return checkpoint, dataset, images, labels
