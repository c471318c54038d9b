"""8×8-bit multipliers as 256×256 product tables: the :class:`Multiplier` and its error metrics.

A :class:`Multiplier` is a table ``T[a, b]`` indexed by the raw 8-bit operand patterns, the
*activation* ``a`` first and the *weight* ``b`` second (tables need not be symmetric), holding
the 16-bit product: 0..65535 for unsigned circuits, −32768..32767 for signed ones (operand
value = the int8 two's complement of the pattern). Everything the emulator does with a
multiplier goes through this table, so a built-in design (:mod:`.families`), an EvoApprox
circuit or a user's file (:mod:`.catalogue`) and a C model (:mod:`.ccompile`) are handled alike.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bitrobust.errors import BitrobustError

SIZE = 256
TABLE_SHAPE = (SIZE, SIZE)
PRODUCT_BITS = 16


def operand_values(signed: bool) -> np.ndarray:
    """The integer value of each operand pattern 0..255 (int64): itself, or its int8 value."""
    patterns = np.arange(SIZE, dtype=np.int64)
    return np.where(patterns >= 128, patterns - SIZE, patterns) if signed else patterns


def exact_table(signed: bool) -> np.ndarray:
    """``value(a) * value(b)`` for all pattern pairs, int32 (256, 256)."""
    values = operand_values(signed)
    return np.outer(values, values).astype(np.int32)


@dataclass(frozen=True, eq=False)
class Multiplier:
    """A 256×256 product table ``T[activation, weight]`` with its signedness and provenance.

    ``table`` is validated and stored as a read-only int32 array; a signed table given as
    16-bit patterns (values 0..65535) is reinterpreted as int16. ``power_mw`` and ``area_um2``
    are published synthesis figures when known (EvoApprox: PDK45).
    """

    name: str
    table: np.ndarray
    signed: bool
    source: str = "built-in"
    power_mw: float | None = None
    area_um2: float | None = None
    _cache: dict[Any, torch.Tensor] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for label, value in (("power", self.power_mw), ("area", self.area_um2)):
            check_figure(value, f"multiplier {self.name!r}: {label}")
        table = check_table(self.table, self.signed, what=f"multiplier {self.name!r}")
        table.setflags(write=False)
        object.__setattr__(self, "table", table)

    @property
    def kind(self) -> str:
        return "signed" if self.signed else "unsigned"

    def is_exact(self) -> bool:
        return bool(np.array_equal(self.table, exact_table(self.signed)))

    def is_symmetric(self) -> bool:
        return bool(np.array_equal(self.table, self.table.T))

    def multiply(self, a: int, b: int) -> int:
        """The table's product for operand *values* ``a`` (activation) and ``b`` (weight)."""
        return int(self.table[a & 0xFF, b & 0xFF])

    def metrics(self) -> dict[str, float]:
        """Error metrics over all 65,536 operand pairs, as EvoApproxLib defines them.

        error = table − exact product; ``mae``, ``wce`` (worst case), ``mse``, ``bias`` (mean
        signed error), ``ep_percent`` (share of pairs with an error), ``mre_percent`` and
        ``wcre_percent`` (|error| / |exact| over pairs whose exact product is not 0), and
        ``mae_percent``/``wce_percent`` relative to 2^16.
        """
        error = self.table.astype(np.int64) - exact_table(self.signed)
        absolute = np.abs(error)
        exact = np.abs(exact_table(self.signed)).astype(np.float64)
        nonzero = exact != 0
        relative = absolute[nonzero] / exact[nonzero]
        mae = float(absolute.mean())
        wce = int(absolute.max())
        return {
            "mae": mae,
            "wce": wce,
            "mse": float((error.astype(np.float64) ** 2).mean()),
            "bias": float(error.mean()),
            "ep_percent": 100.0 * float(np.count_nonzero(error)) / error.size,
            "mre_percent": 100.0 * float(relative.mean()),
            "wcre_percent": 100.0 * float(relative.max()),
            "mae_percent": 100.0 * mae / 2**PRODUCT_BITS,
            "wce_percent": 100.0 * wce / 2**PRODUCT_BITS,
        }

    def flat_table(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The table as a flat int32 tensor (index a·256 + b), cached per device."""
        key = ("flat", str(device))
        if key not in self._cache:
            self._cache[key] = torch.from_numpy(self.table.reshape(-1).copy()).to(device)
        return self._cache[key]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as ``.npy`` (int32) and a ``.json`` sidecar with name and metrics."""
        path = Path(path).with_suffix(".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.ascontiguousarray(self.table))
        meta = {
            "name": self.name,
            "signed": self.signed,
            "source": self.source,
            "power_mw": self.power_mw,
            "area_um2": self.area_um2,
            "metrics": self.metrics(),
        }
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
        return path


def check_figure(value: object, what: str) -> float | None:
    """Return a power or area figure if it is None or a finite number >= 0, else raise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BitrobustError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise BitrobustError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_table(table: object, signed: bool, what: str = "product table") -> np.ndarray:
    """Validate a product table and return it as a fresh int32 (256, 256) array."""
    array = np.asarray(table)
    if array.shape != TABLE_SHAPE:
        raise BitrobustError(
            f"{what}: a product table must have shape (256, 256), got {array.shape}"
        )
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise BitrobustError(f"{what}: a product table must hold integers, got dtype {array.dtype}")
    values = array.astype(np.int64)
    low, high = int(values.min()), int(values.max())
    if signed:
        if low >= 0 and high <= 0xFFFF:  # 16-bit patterns: read as int16
            values = (values + 0x8000) % 0x10000 - 0x8000
        elif low < -0x8000 or high > 0x7FFF:
            raise BitrobustError(
                f"{what}: signed products must fit 16 bits (-32768..32767), got {low}..{high}"
            )
    elif low < 0 or high > 0xFFFF:
        raise BitrobustError(
            f"{what}: unsigned products must fit 16 bits (0..65535), got {low}..{high}"
        )
    return np.ascontiguousarray(values.astype(np.int32))


def infer_signed(name: str, signed: bool | None, table: np.ndarray | None = None) -> bool:
    """Signedness: explicit if given, else from an EvoApprox-style name (``mul8s_``/``mul8u_``),
    else signed when the table holds negative products, else unsigned."""
    if signed is not None:
        return bool(signed)
    lowered = name.lower()
    if "mul8s" in lowered or re.search(r"8s(_|$)", lowered):
        return True
    if "mul8u" in lowered or re.search(r"8u(_|$)", lowered):
        return False
    return bool(table is not None and np.asarray(table).min() < 0)
