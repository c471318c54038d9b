"""Low-voltage SRAM: per-cell chip maps, synthetic chips, and the fault patterns they cause.

Below V_min, the lowest error-free supply voltage, some SRAM cells can no longer hold their
value. Voltages here are normalized to V_min (1.0 = error-free). Following Stutz et al. §1.7,
a *chip* is a map over its bit cells:

- ``fail_voltage``: the cell fails at every voltage strictly below this value. Lower voltage
  therefore always means a superset of failing cells (persistence). 0 means "does not fail in
  the profiled range", +inf "fails at every voltage".
- ``fail_value``: what a failing cell reads (0 or 1): it is stuck, so it only corrupts a stored
  bit that differs from it. A stored 0 flips on a failing stuck-at-1 cell, a stored 1 on a
  failing stuck-at-0 cell; this is why 0→1 and 1→0 rates differ.

At a voltage, a fraction ``failing_cells`` of the cells fails (what profiling with both data
values measures); a stored 0 flips with probability ``zero_to_one`` (failing and stuck at 1)
and a stored 1 with ``one_to_zero``, so ``failing_cells = zero_to_one + one_to_zero``. The
chip's **bit error rate** has the meaning it has everywhere in bitrobust: the probability that
a stored bit flips, for 0s and 1s equally common, ``(zero_to_one + one_to_zero) / 2`` — half
the failing cells, since a stuck cell only flips the bits that differ from its value. So
``RandomBitErrors(chip.bit_error_rate(V))`` flips as many bits as the chip does on balanced data.

Chip file format (``.npz``, read with ``allow_pickle=False``):

- ``fail_voltage``: float array (arrays, rows, columns), normalized to V_min, no NaN, >= 0;
- ``fail_value``: integer or bool array of the same shape, values 0/1;
- ``voltage_range`` (optional): [v_low, v_high], the profiled range; evaluating outside it is an
  error (default [0, 1]);
- ``format`` (optional): the string ``"bitrobust-sram-chip/1"``; ``label`` (optional): a name.

A ``.npy`` file holds one float array of shape (2, arrays, rows, columns): ``[0]`` is
``fail_voltage``, ``[1]`` ``fail_value``; its profiled range is [0, 1].

Weights are laid out in the chip's arrays by :mod:`bitrobust.faults.memory`; when the model
needs more arrays than the chip has, the chip's arrays are reused (tiled). A
:class:`ProfiledSRAM`'s seed picks the placement (offset and array order), so several
placements of one model on one chip can be averaged.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from bitrobust.bits import bit_planes, pack_bits, stable_seed
from bitrobust.errors import BitrobustError
from bitrobust.faults.core import FaultModel, FaultPattern, FaultTarget, _check_seed, as_target
from bitrobust.faults.memory import MemoryGeometry, Placement, model_cells
from bitrobust.quant import QuantizedModel

CHIP_FORMAT = "bitrobust-sram-chip/1"
PLACEMENTS = ("random", "offset", "linear")

# Stutz et al. §1.8: bit error rate vs V/V_min, read from the poster (ranges -> midpoints).
STUTZ2021_VOLTAGES = (0.76, 0.78, 0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.95, 0.965, 1.0)
STUTZ2021_RATES = (0.20, 0.12, 0.065, 0.025, 0.011, 0.004, 0.001, 0.0004, 1e-5, 1e-6, 0.0)


@dataclass(frozen=True)
class VoltageErrorCurve:
    """Bit error rate p(V) through table points, interpolated in log space.

    ``voltages`` increase strictly; ``rates`` (fractions) must not increase. Between two positive
    points log p is linear in V; towards a point with p = 0 (V_min) p falls linearly. Outside
    ``[voltages[0], voltages[-1]]`` the curve is undefined and queries raise.
    """

    voltages: tuple[float, ...] = STUTZ2021_VOLTAGES
    rates: tuple[float, ...] = STUTZ2021_RATES
    name: str = "stutz2021"

    def __post_init__(self) -> None:
        v = np.asarray(self.voltages, dtype=np.float64)
        p = np.asarray(self.rates, dtype=np.float64)
        if v.ndim != 1 or v.shape != p.shape or len(v) < 2:
            raise BitrobustError("a voltage-error curve needs two or more (voltage, rate) points")
        if not (np.all(np.isfinite(v)) and np.all(np.diff(v) > 0)):
            raise BitrobustError("curve voltages must be finite and strictly increasing")
        if not (np.all((p >= 0) & (p <= 1)) and np.all(np.diff(p) <= 0)):
            raise BitrobustError("curve rates must be in [0, 1] and must not grow with voltage")
        object.__setattr__(self, "voltages", tuple(float(x) for x in v))
        object.__setattr__(self, "rates", tuple(float(x) for x in p))

    @classmethod
    def default(cls) -> VoltageErrorCurve:
        """The curve of Stutz et al. §1.8 (poster Figure 1, read by eye)."""
        return cls()

    @classmethod
    def from_chip(cls, chip: SRAMChip, step: float = 0.005) -> VoltageErrorCurve:
        """The chip's measured bit error rate (half its failing cells) on a grid of ``step``
        over its profiled range."""
        low, high = chip.voltage_range
        count = max(2, math.ceil((high - low) / step) + 1)
        grid = np.linspace(low, high, count)
        return cls(tuple(grid), tuple(chip.bit_error_rates(grid)), name=f"chip:{chip.id}")

    @property
    def voltage_range(self) -> tuple[float, float]:
        return self.voltages[0], self.voltages[-1]

    def check_voltages(self, voltages: np.ndarray | Sequence[float] | float) -> np.ndarray:
        """``voltages`` as float64; BitrobustError if any lies outside the curve's range."""
        values = np.asarray(voltages, dtype=np.float64)
        low, high = self.voltage_range
        bad = values[~((values >= low - 1e-9) & (values <= high + 1e-9))]
        if bad.size:
            raise BitrobustError(
                f"voltage {float(bad.flat[0]):g} is outside the range [{low:g}, {high:g}] "
                f"of the voltage-error curve '{self.name}'"
            )
        return np.clip(values, low, high)

    def rate(self, voltage: float) -> float:
        """p(V) as a fraction."""
        return float(self.rates_at(voltage))

    def rates_at(self, voltages: np.ndarray | Sequence[float] | float) -> np.ndarray:
        """p(V) for every voltage (float64 array of the same shape)."""
        v = self.check_voltages(voltages)
        xs, ps = np.asarray(self.voltages), np.asarray(self.rates)
        i = np.clip(np.searchsorted(xs, v, side="right") - 1, 0, len(xs) - 2)
        v0, v1, p0, p1 = xs[i], xs[i + 1], ps[i], ps[i + 1]
        t = (v - v0) / (v1 - v0)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.exp(np.log(p0) + t * (np.log(p1) - np.log(p0)))
        return np.where((p0 > 0) & (p1 > 0), logs, p0 + t * (p1 - p0))

    def fail_voltages(self, draws: np.ndarray) -> np.ndarray:
        """Inverse of p: the voltage below which a cell with uniform draw u fails (u < p(V)).

        -inf where u >= p(v_low) (never fails in range), +inf where u < p(v_high).
        """
        u = np.asarray(draws, dtype=np.float64)
        xs, ps = np.asarray(self.voltages), np.asarray(self.rates)
        j = np.searchsorted(-ps, -u, side="left")  # first point with p <= u
        i = np.clip(j - 1, 0, len(xs) - 2)
        v0, v1, p0, p1 = xs[i], xs[i + 1], ps[i], ps[i + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            t_log = (np.log(u) - np.log(p0)) / (np.log(p1) - np.log(p0))
            t_lin = (p0 - u) / (p0 - p1)
        t = np.where(p1 > 0, t_log, t_lin)
        inside = v0 + np.clip(t, 0.0, 1.0) * (v1 - v0)
        return np.where(j == 0, -np.inf, np.where(j >= len(xs), np.inf, inside))


@dataclass(frozen=True, eq=False)
class SRAMChip:
    """A chip map: per-cell fail voltage (float32) and fail value (uint8), both (A, R, C)."""

    fail_voltage: torch.Tensor
    fail_value: torch.Tensor
    voltage_range: tuple[float, float] = (0.0, 1.0)
    label: str = "chip"

    def __post_init__(self) -> None:
        fv, val = _checked_maps(self.fail_voltage, self.fail_value, "chip map")
        low, high = _checked_range(self.voltage_range, "chip map")
        object.__setattr__(self, "fail_voltage", fv)
        object.__setattr__(self, "fail_value", val)
        object.__setattr__(self, "voltage_range", (low, high))

    @property
    def geometry(self) -> MemoryGeometry:
        arrays, rows, columns = self.fail_voltage.shape
        return MemoryGeometry(arrays=arrays, rows=rows, columns=columns)

    @cached_property
    def id(self) -> str:
        """``label-hash``: the label and 8 hex digits of a hash of the maps and range."""
        digest = hashlib.blake2b(digest_size=4)
        digest.update(repr((tuple(self.fail_voltage.shape), self.voltage_range)).encode())
        digest.update(self.fail_voltage.numpy().tobytes())
        digest.update(self.fail_value.numpy().tobytes())
        return f"{self.label}-{digest.hexdigest()}"

    def check_voltage(self, voltage: float) -> float:
        """``voltage`` as a float; BitrobustError unless it is in the profiled range."""
        try:
            value = float(voltage)
        except (TypeError, ValueError):
            raise BitrobustError(f"voltage must be a number, got {voltage!r}") from None
        low, high = self.voltage_range
        if not (math.isfinite(value) and low - 1e-9 <= value <= high + 1e-9):
            raise BitrobustError(
                f"voltage {value:g} is outside the profiled range [{low:g}, {high:g}] of "
                f"chip {self.id}"
            )
        return value

    def faulty(self, voltage: float) -> torch.Tensor:
        """Bool map (A, R, C) of the cells that fail at ``voltage``."""
        v = torch.tensor(self.check_voltage(voltage), dtype=torch.float32)
        return self.fail_voltage > v

    @cached_property
    def _sorted_fail_voltages(self) -> tuple[np.ndarray, np.ndarray]:
        fv = self.fail_voltage.numpy()
        ones = self.fail_value.numpy().astype(bool)
        return np.sort(fv[~ones], axis=None), np.sort(fv[ones], axis=None)

    def flip_rates(
        self, voltages: np.ndarray | Sequence[float] | float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(zero_to_one, one_to_zero) at each voltage: failing cells stuck at 1, resp. at 0."""
        values = np.asarray(voltages, dtype=np.float64)
        for value in values.flat:
            self.check_voltage(value)
        at = values.astype(np.float32)
        stuck0, stuck1 = self._sorted_fail_voltages
        cells = self.fail_voltage.numel()
        one_to_zero = (stuck0.size - np.searchsorted(stuck0, at, side="right")) / cells
        zero_to_one = (stuck1.size - np.searchsorted(stuck1, at, side="right")) / cells
        return zero_to_one, one_to_zero

    def failing_cells(self, voltages: np.ndarray | Sequence[float] | float) -> np.ndarray:
        """Fraction of failing cells at each voltage (zero_to_one + one_to_zero)."""
        zero_to_one, one_to_zero = self.flip_rates(voltages)
        return zero_to_one + one_to_zero

    def bit_error_rates(self, voltages: np.ndarray | Sequence[float] | float) -> np.ndarray:
        """Probability that a stored bit flips at each voltage, for balanced data:
        (zero_to_one + one_to_zero) / 2, half the failing cells."""
        return self.failing_cells(voltages) / 2

    def bit_error_rate(self, voltage: float) -> float:
        """:meth:`bit_error_rates` at one voltage."""
        return float(self.bit_error_rates(voltage))

    def rates_table(self, voltages: Sequence[float]) -> list[dict[str, float]]:
        """Rows ``{voltage, bit_error_rate, failing_cells, zero_to_one, one_to_zero}``."""
        zero_to_one, one_to_zero = self.flip_rates(voltages)
        return [
            {
                "voltage": float(v),
                "bit_error_rate": float(a + b) / 2,
                "failing_cells": float(a + b),
                "zero_to_one": float(a),
                "one_to_zero": float(b),
            }
            for v, a, b in zip(voltages, zero_to_one, one_to_zero)
        ]


def _checked_maps(
    fail_voltage: object, fail_value: object, where: str
) -> tuple[torch.Tensor, torch.Tensor]:
    fv = torch.as_tensor(
        np.asarray(fail_voltage) if not torch.is_tensor(fail_voltage) else fail_voltage
    )
    val = torch.as_tensor(np.asarray(fail_value) if not torch.is_tensor(fail_value) else fail_value)
    if fv.ndim != 3 or min(fv.shape, default=0) < 1:
        raise BitrobustError(
            f"{where}: fail_voltage must have shape (arrays, rows, columns), got {tuple(fv.shape)}"
        )
    if tuple(val.shape) != tuple(fv.shape):
        raise BitrobustError(
            f"{where}: fail_value has shape {tuple(val.shape)} but fail_voltage has "
            f"{tuple(fv.shape)}"
        )
    if not fv.is_floating_point():
        raise BitrobustError(f"{where}: fail_voltage must be floating point, got {fv.dtype}")
    fv = fv.detach().to("cpu", torch.float32).contiguous()
    if bool(torch.isnan(fv).any()) or bool((fv < 0).any()):
        raise BitrobustError(f"{where}: fail_voltage must be >= 0 and not NaN")
    if val.is_complex():
        raise BitrobustError(f"{where}: fail_value must hold 0/1, got {val.dtype}")
    val = val.detach().cpu()
    if not bool(((val == 0) | (val == 1)).all()):
        raise BitrobustError(f"{where}: fail_value must hold only 0 and 1")
    return fv, val.to(torch.uint8).contiguous()


def _checked_range(voltage_range: object, where: str) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in np.asarray(voltage_range, dtype=np.float64).reshape(-1))
    except (TypeError, ValueError):
        raise BitrobustError(f"{where}: voltage_range must be [v_low, v_high]") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high):
        raise BitrobustError(
            f"{where}: voltage_range must satisfy 0 <= v_low < v_high, got [{low:g}, {high:g}]"
        )
    return low, high


CALIBRATIONS: tuple[str, ...] = ("failing_cells", "bit_error_rate")
"""What a synthetic chip's curve p(V) is the rate of: failing cells (each fails below its
voltage; bitrobust before 0.3, and the default) or flipped stored bits, as the paper defines its
bit error rate (then 2·p(V) of the cells fail, capped at 1: a stuck cell flips only the stored
bits that differ from its value, half of them on balanced data)."""


def calibrated_curve(curve: VoltageErrorCurve, calibration: str) -> VoltageErrorCurve:
    """The failing-cell curve of a chip whose ``calibration`` rate follows ``curve``."""
    if calibration not in CALIBRATIONS:
        raise BitrobustError(
            f"unknown chip calibration {calibration!r} (known: {', '.join(CALIBRATIONS)})"
        )
    if calibration == "failing_cells":
        return curve
    rates = tuple(min(1.0, 2 * rate) for rate in curve.rates)
    return VoltageErrorCurve(curve.voltages, rates, name=f"{curve.name}-bit-error-rate")


def make_chip(
    seed: int,
    arrays: int = 32,
    rows: int = 512,
    columns: int = 64,
    *,
    curve: VoltageErrorCurve | None = None,
    calibration: str = "failing_cells",
    row_correlation: float = 0.05,
    column_correlation: float = 0.15,
    stuck_at_one: float = 0.6,
    value_correlation: float = 0.3,
) -> SRAMChip:
    """A synthetic chip whose expected p(V) follows ``curve`` (default §1.8), spatially clustered.

    Each cell gets a latent normal ``z = a·e_cell + sqrt(row_correlation)·e_row +
    sqrt(column_correlation)·e_column`` (row and column effects per array, a² = 1 − the two
    correlations) and ``u = Φ(z)``, uniform per cell but clustered along rows and columns; the
    cell fails where ``u < p(V)``, i.e. below ``curve``'s inverse at u. Fail values are 1 with
    probability ``stuck_at_one``, with a per-column latent effect of weight ``value_correlation``.
    The profiled range is the curve's range. Same seed and arguments, same chip.

    ``calibration`` (:data:`CALIBRATIONS`): ``"failing_cells"`` makes p(V) the fraction of failing
    cells (the chip's ``bit_error_rate`` is then about p/2); ``"bit_error_rate"`` makes p(V) the
    rate of flipped stored bits on balanced data, the paper's definition (2·p of the cells fail).
    """
    curve = calibrated_curve(curve or VoltageErrorCurve.default(), calibration)
    geometry = MemoryGeometry(arrays=arrays, rows=rows, columns=columns)
    for name, value in (
        ("row_correlation", row_correlation),
        ("column_correlation", column_correlation),
        ("value_correlation", value_correlation),
    ):
        if not 0.0 <= value < 1.0:
            raise BitrobustError(f"{name} must be in [0, 1), got {value!r}")
    if row_correlation + column_correlation >= 1.0:
        raise BitrobustError("row_correlation + column_correlation must be below 1")
    if not 0.0 <= stuck_at_one <= 1.0:
        raise BitrobustError(f"stuck_at_one must be in [0, 1], got {stuck_at_one!r}")
    _check_seed(seed)

    generator = torch.Generator().manual_seed(stable_seed("sram-chip", int(seed)))
    shape = (geometry.arrays, geometry.rows, geometry.columns)

    def normal(*size: int) -> torch.Tensor:
        return torch.randn(size, generator=generator, dtype=torch.float64)

    cell_weight = math.sqrt(1.0 - row_correlation - column_correlation)
    latent = (
        cell_weight * normal(*shape)
        + math.sqrt(row_correlation) * normal(arrays, rows, 1)
        + math.sqrt(column_correlation) * normal(arrays, 1, columns)
    )
    draws = torch.special.ndtr(latent).numpy()
    fail_voltage = curve.fail_voltages(draws)
    fail_voltage = np.where(np.isneginf(fail_voltage), 0.0, fail_voltage)

    value_latent = math.sqrt(value_correlation) * normal(arrays, 1, columns) + math.sqrt(
        1.0 - value_correlation
    ) * normal(*shape)
    threshold = torch.special.ndtri(torch.tensor(stuck_at_one, dtype=torch.float64))
    fail_value = (value_latent < threshold).to(torch.uint8)
    return SRAMChip(
        fail_voltage=torch.from_numpy(fail_voltage.astype(np.float32)),
        fail_value=fail_value,
        voltage_range=curve.voltage_range,
        label=f"synthetic{int(seed)}" + ("" if calibration == "failing_cells" else "-ber"),
    )


def save_chip(chip: SRAMChip, path: str | os.PathLike[str]) -> Path:
    """Write ``chip`` as ``.npz`` (compressed, with range and label) or ``.npy`` (by suffix)."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    fail_voltage = chip.fail_voltage.numpy()
    fail_value = chip.fail_value.numpy()
    if path.suffix == ".npy":
        if chip.voltage_range != (0.0, 1.0):
            raise BitrobustError(
                f"a .npy chip file cannot record the profiled range {chip.voltage_range}; use .npz"
            )
        np.save(path, np.stack([fail_voltage, fail_value.astype(np.float32)]))
        return path
    if path.suffix != ".npz":
        raise BitrobustError(f"chip files end in .npz or .npy, got {path.name}")
    with open(path, "wb") as handle:  # np.savez would append .npz to a str path
        np.savez_compressed(
            handle,
            format=np.array(CHIP_FORMAT),
            fail_voltage=fail_voltage,
            fail_value=fail_value,
            voltage_range=np.array(chip.voltage_range, dtype=np.float64),
            label=np.array(chip.label),
        )
    return path


def load_chip(path: str | os.PathLike[str]) -> SRAMChip:
    """Read a chip map (format in the module docstring); BitrobustError naming file and problem."""
    path = Path(path)
    where = f"chip map {path}"
    if not path.is_file():
        raise BitrobustError(f"{where} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for corrupt files
        raise BitrobustError(f"{where} is not a readable .npz/.npy file ({exc})") from None
    if isinstance(loaded, np.ndarray):
        if loaded.ndim != 4 or loaded.shape[0] != 2:
            raise BitrobustError(
                f"{where}: a .npy chip map must have shape (2, arrays, rows, columns), "
                f"got {loaded.shape}"
            )
        if not np.issubdtype(loaded.dtype, np.floating):
            raise BitrobustError(f"{where}: a .npy chip map must be floating point")
        fail_voltage, fail_value = loaded[0], loaded[1]
        return _chip_from_arrays(fail_voltage, fail_value, (0.0, 1.0), path.stem, where)
    with loaded:
        missing = [key for key in ("fail_voltage", "fail_value") if key not in loaded.files]
        if missing:
            raise BitrobustError(f"{where}: missing array(s) {', '.join(missing)}")
        if "format" in loaded.files and str(loaded["format"]) != CHIP_FORMAT:
            raise BitrobustError(
                f"{where}: unknown format {str(loaded['format'])!r} (expected {CHIP_FORMAT!r})"
            )
        voltage_range = loaded["voltage_range"] if "voltage_range" in loaded.files else (0.0, 1.0)
        label = str(loaded["label"]) if "label" in loaded.files else path.stem
        return _chip_from_arrays(
            loaded["fail_voltage"], loaded["fail_value"], voltage_range, label, where
        )


def _chip_from_arrays(
    fail_voltage: np.ndarray,
    fail_value: np.ndarray,
    voltage_range: object,
    label: str,
    where: str,
) -> SRAMChip:
    if fail_voltage.dtype.kind != "f":
        raise BitrobustError(
            f"{where}: fail_voltage must be floating point, got {fail_voltage.dtype}"
        )
    if fail_value.dtype.kind not in "biuf":
        raise BitrobustError(f"{where}: fail_value must be 0/1 numbers, got {fail_value.dtype}")
    if not np.all(np.isin(fail_value, (0, 1))):
        raise BitrobustError(f"{where}: fail_value must hold only 0 and 1")
    fv, val = _checked_maps(fail_voltage, fail_value.astype(np.uint8), where)
    low, high = _checked_range(voltage_range, where)
    return SRAMChip(fail_voltage=fv, fail_value=val, voltage_range=(low, high), label=label)


class ProfiledSRAM(FaultModel):
    """Stuck cells of ``chip`` at ``voltage`` as a fault pattern on the stored weights.

    Bit b of a weight flips iff its cell fails at ``voltage`` and the stored bit differs from the
    cell's fail value. The seed picks the placement (:mod:`bitrobust.faults.memory`): ``"random"``
    draws an offset and an array order per seed, ``"offset"`` only an offset, ``"linear"`` uses
    the identity placement for every seed. For one seed the flips at a lower voltage are a
    superset of those at a higher one. Protected bits (m < 8) are not stored and never flip.
    """

    def __init__(self, chip: SRAMChip, voltage: float, *, placement: str = "random") -> None:
        if placement not in PLACEMENTS:
            raise BitrobustError(
                f"unknown placement {placement!r} (choose from: {', '.join(PLACEMENTS)})"
            )
        self.chip = chip
        self.voltage = chip.check_voltage(voltage)
        self.placement = placement

    @property
    def name(self) -> str:
        return f"profiled_sram(chip={self.chip.id},v={self.voltage!r},placement={self.placement})"

    @property
    def bit_error_rate(self) -> float:
        """The chip's bit error rate at this voltage (half its failing cells)."""
        return self.chip.bit_error_rate(self.voltage)

    @property
    def failing_cells(self) -> float:
        """Fraction of the chip's cells that fail at this voltage."""
        return float(self.chip.failing_cells(self.voltage))

    def placement_for(self, qmodel: QuantizedModel, seed: int) -> Placement:
        """The placement of ``qmodel``'s words on the chip for ``seed``."""
        _check_seed(seed)
        if self.placement == "linear":
            return Placement()
        bits = qmodel.scheme.bits
        return Placement.from_seed(
            seed, self.chip.geometry, bits, permute=self.placement == "random"
        )

    def sample(self, target: QuantizedModel | FaultTarget, seed: int) -> FaultPattern:
        qmodel = as_target(target).qmodel
        placement = self.placement_for(qmodel, seed)
        bits = qmodel.scheme.bits
        fail_voltage = self.chip.fail_voltage.reshape(-1)
        fail_value = self.chip.fail_value.reshape(-1)
        voltage = torch.tensor(self.voltage, dtype=torch.float32)
        masks = {}
        for name, cells in model_cells(qmodel, self.chip.geometry, placement).items():
            codes = qmodel.tensors[name].codes
            stored = bit_planes(codes.cpu())[..., :bits]
            # the cell fails at this voltage and holds the other value than the stored bit
            flips = (fail_voltage[cells] > voltage) & (fail_value[cells] != stored)
            planes = torch.zeros((*codes.shape, 8), dtype=torch.bool)
            planes[..., :bits] = flips
            masks[name] = pack_bits(planes).to(codes.device)
        return FaultPattern(masks)
