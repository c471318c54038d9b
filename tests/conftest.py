"""Shared test setup: datasets come from ../shared/data unless BITROBUST_DATA_DIR says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if "BITROBUST_DATA_DIR" not in os.environ and _SHARED.is_dir():
    os.environ["BITROBUST_DATA_DIR"] = str(_SHARED)

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def data_dir() -> Path:
    path = Path(os.environ.get("BITROBUST_DATA_DIR", _SHARED))
    if not (path / "mnist").is_dir():
        pytest.skip(f"MNIST not found under {path}")
    return path
