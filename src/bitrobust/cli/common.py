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
