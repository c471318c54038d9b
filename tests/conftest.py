"""Shared test setup: datasets come from ../shared/data unless BITROBUST_DATA_DIR says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import bitrobust.data

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if "BITROBUST_DATA_DIR" not in os.environ and _SHARED.is_dir():
    os.environ["BITROBUST_DATA_DIR"] = str(_SHARED)


@pytest.fixture
def data_dir() -> Path:
    path = Path(os.environ.get("BITROBUST_DATA_DIR", _SHARED))
    if not (path / "mnist").is_dir():
        pytest.skip(f"MNIST not found under {path}")
    return path


@pytest.fixture
def evoapprox_dir() -> Path:
    """``<data-dir>/evoapprox``, where the EvoApprox tables are (may be missing)."""
    return bitrobust.data.evoapprox_dir()


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine waiting threads cost a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
