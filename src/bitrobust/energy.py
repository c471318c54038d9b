"""Supply voltage ↔ bit error rate ↔ energy, and the lowest voltage a model tolerates.

Voltages are normalized to V_min, the lowest error-free voltage (1.0). Lowering the voltage
saves energy per SRAM access but makes cells fail (Stutz et al. §1.8):

- :class:`EnergyModel`: energy per access relative to V_min; default (V/V_min)², or a table.
- :class:`VoltageErrorCurve` (from :mod:`bitrobust.faults.sram`): p(V), by default the §1.8
  table, or measured from a chip with ``VoltageErrorCurve.from_chip``.
- :func:`find_operating_point`: walks a voltage grid downwards and returns the lowest voltage V
  such that at V *and every grid voltage above it* the model's RErr statistic over a set of
  chips (mean by default, or max = worst chip) exceeds the baseline Err by at most ``budget``.
  Requiring the whole run above V keeps the choice safe when noise makes RErr non-monotone;
  for a monotone RErr curve it is simply the lowest admissible voltage. The evaluation is an
  injected function, so the search can be tested on a known error curve.
- :func:`sram_evaluator` and :func:`random_errors_evaluator` build that function for a real
  model: RErr over chips × placements, or over i.i.d. patterns at p(V).

Errors, budgets and rates are fractions here (budget 0.01 = 1 percentage point).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from bitrobust.errors import BitrobustError
from bitrobust.evaluate import QuantizedDeployment, clean_run, run_trial
from bitrobust.faults import FaultModel, ProfiledSRAM, RandomBitErrors, SRAMChip
from bitrobust.faults.sram import VoltageErrorCurve
from bitrobust.quant import QuantScheme
from bitrobust.stats import summarize

__all__ = [
    "DEFAULT_VOLTAGES",
    "EnergyModel",
    "OperatingPoint",
    "VoltageErrorCurve",
    "energy_per_access",
    "energy_saving",
    "find_operating_point",
    "random_errors_evaluator",
    "sram_evaluator",
    "chip_rates",
]

DEFAULT_VOLTAGES: tuple[float, ...] = tuple(round(0.80 + 0.01 * i, 2) for i in range(21))
"""0.80, 0.81, ..., 1.00: the default search grid (p from about 6.5 % down to 0)."""

STATISTICS = ("mean", "max")

Evaluation = float | Sequence[float] | Mapping[str, Any]


def _square(voltage: float) -> float:
    return voltage * voltage


@dataclass(frozen=True)
class EnergyModel:
    """Energy per SRAM access relative to an access at V_min, as a function of V/V_min."""

    function: Callable[[float], float] = _square
    name: str = "quadratic"

    @classmethod
    def quadratic(cls) -> EnergyModel:
        """(V/V_min)²: dynamic energy C·V² (the poster's curve)."""
        return cls()

    @classmethod
    def from_table(cls, voltages: Sequence[float], energies: Sequence[float]) -> EnergyModel:
        """Piecewise-linear through measured (voltage, relative energy) points."""
        xs = np.asarray(voltages, dtype=np.float64)
        ys = np.asarray(energies, dtype=np.float64)
        if xs.ndim != 1 or xs.shape != ys.shape or len(xs) < 2:
            raise BitrobustError("an energy table needs two or more (voltage, energy) points")
        if not (np.all(np.diff(xs) > 0) and np.all(np.isfinite(ys)) and np.all(ys >= 0)):
            raise BitrobustError("energy table voltages must increase and energies be >= 0")
        if np.any(np.diff(ys) < 0):
            raise BitrobustError("energy per access must not fall as the voltage rises")

        def interpolate(voltage: float) -> float:
            if not xs[0] - 1e-9 <= voltage <= xs[-1] + 1e-9:
                raise BitrobustError(
                    f"voltage {voltage:g} is outside the energy table [{xs[0]:g}, {xs[-1]:g}]"
                )
            return float(np.interp(voltage, xs, ys))

        return cls(interpolate, "table")

    def __call__(self, voltage: float) -> float:
        return float(self.function(float(voltage)))


def energy_per_access(voltage: float, model: EnergyModel | None = None) -> float:
    """Energy per access at ``voltage`` relative to V_min (default (V/V_min)²)."""
    return (model or EnergyModel())(voltage)


def energy_saving(voltage: float, model: EnergyModel | None = None) -> float:
    """1 − relative energy: the fraction of access energy saved at ``voltage``."""
    return 1.0 - energy_per_access(voltage, model)


@dataclass
class OperatingPoint:
    """Result of :func:`find_operating_point`.

    ``row`` is the chosen voltage's row (None when no voltage meets the budget); ``best`` is
    the chosen row, or else the row closest to the budget. ``rows`` holds every evaluated
    voltage in increasing order.
    """

    met: bool
    row: dict[str, Any] | None
    best: dict[str, Any]
    rows: list[dict[str, Any]]
    budget: float
    baseline_err: float
    statistic: str
    message: str = ""
    energy_model: str = field(default="quadratic")

    @property
    def voltage(self) -> float | None:
        return None if self.row is None else self.row["voltage"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the operating point's fields at top level (None if not met)."""
        chosen = self.row or {}
        return {
            "met": self.met,
            "voltage": chosen.get("voltage"),
            "bit_error_rate": chosen.get("bit_error_rate"),
            "energy": chosen.get("energy"),
            "energy_saving": chosen.get("energy_saving"),
            "rerr": chosen.get("rerr"),
            "budget": self.budget,
            "baseline_err": self.baseline_err,
            "statistic": self.statistic,
            "energy_model": self.energy_model,
            "message": self.message,
            "best": self.best,
            "rows": self.rows,
        }


def find_operating_point(
    evaluate: Callable[[float], Evaluation],
    voltages: Sequence[float],
    budget: float,
    baseline_err: float,
    *,
    statistic: str = "mean",
    energy: EnergyModel | None = None,
    stop_early: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> OperatingPoint:
    """The lowest grid voltage whose RErr stays within ``budget`` of ``baseline_err``.

    ``evaluate(voltage)`` returns the RErr values over the chips (one number, a sequence, or a
    mapping with key ``"rerr"`` plus extra fields such as ``bit_error_rate`` that are copied
    into the row). ``statistic`` ("mean" or "max") reduces them. Voltages are evaluated from
    the highest down; the answer is the lowest V such that V and every higher grid voltage
    satisfy ``statistic(RErr) − baseline_err <= budget``. With ``stop_early`` the walk stops at
    the first violation (cheaper; the rows below are then not evaluated).
    """
    if statistic not in STATISTICS:
        raise BitrobustError(f"unknown statistic {statistic!r} (choose from: mean, max)")
    if not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget >= 0):
        raise BitrobustError(f"the error budget must be a number >= 0, got {budget!r}")
    if not 0.0 <= baseline_err <= 1.0:
        raise BitrobustError(f"the baseline error must be in [0, 1], got {baseline_err!r}")
    grid = sorted({float(v) for v in voltages}, reverse=True)
    if not grid:
        raise BitrobustError("give at least one voltage to search")
    energy = energy or EnergyModel()
    rows: list[dict[str, Any]] = []
    chosen: dict[str, Any] | None = None
    contiguous = True
    for voltage in grid:
        row = _row(voltage, evaluate(voltage), statistic, energy, baseline_err, budget)
        rows.append(row)
        if progress is not None:
            progress(row)
        if row["admissible"] and contiguous:
            chosen = row
        elif not row["admissible"]:
            contiguous = False
            if stop_early:
                break
    best = chosen or min(rows, key=lambda r: (r["excess"], -r["voltage"]))
    what = f"{statistic} RErr within {100 * budget:g} points of Err {100 * baseline_err:.2f} %"
    if chosen is not None:
        message = (
            f"lowest voltage with {what}: V = {chosen['voltage']:g} V_min, RErr "
            f"{100 * chosen['rerr']:.2f} %, energy saving {100 * chosen['energy_saving']:.1f} %"
        )
    else:
        message = (
            f"no voltage in [{grid[-1]:g}, {grid[0]:g}] keeps the {what}; best found: "
            f"V = {best['voltage']:g} with RErr {100 * best['rerr']:.2f} % "
            f"({100 * best['excess']:+.2f} points)"
        )
    return OperatingPoint(
        met=chosen is not None,
        row=chosen,
        best=best,
        rows=sorted(rows, key=lambda r: r["voltage"]),
        budget=float(budget),
        baseline_err=float(baseline_err),
        statistic=statistic,
        message=message,
        energy_model=energy.name,
    )


def _row(
    voltage: float,
    result: Evaluation,
    statistic: str,
    energy: EnergyModel,
    baseline_err: float,
    budget: float,
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    values: Any = result
    if isinstance(result, Mapping):
        if "rerr" not in result:
            raise ValueError("an evaluation mapping needs a 'rerr' entry")
        extra = {k: v for k, v in result.items() if k != "rerr"}
        values = result["rerr"]
    values = [float(values)] if isinstance(values, (int, float)) else [float(v) for v in values]
    if not values:
        raise ValueError(f"no RErr values at voltage {voltage:g}")
    summary = summarize(values)
    value = summary.mean if statistic == "mean" else summary.max
    relative = energy(voltage)
    return {
        "voltage": voltage,
        **extra,
        "energy": relative,
        "energy_saving": 1.0 - relative,
        "rerr": value,
        **{f"rerr_{key}": figure for key, figure in summary.to_json(interval=False).items()},
        "patterns": summary.n,
        "excess": value - baseline_err,
        "admissible": value - baseline_err <= budget + 1e-12,
    }


def _evaluator(
    model: nn.Module,
    scheme: QuantScheme,
    images: torch.Tensor,
    labels: torch.Tensor,
    fault_models: Callable[[float], Sequence[FaultModel]],
    describe: Callable[[float], dict[str, Any]],
    patterns: int,
    seed: int,
    batch_size: int,
) -> tuple[float, Callable[[float], dict[str, Any]]]:
    if patterns < 1:
        raise BitrobustError(f"patterns must be >= 1, got {patterns}")
    deployment = QuantizedDeployment(model, scheme)
    data = (images, labels)
    clean = clean_run(deployment, data, batch_size)
    err = clean.err

    def evaluate(voltage: float) -> dict[str, Any]:
        values = [
            run_trial(deployment, faults, seed + k, data, clean, batch_size).rerr
            for faults in fault_models(voltage)
            for k in range(patterns)
        ]
        return {"rerr": values, **describe(voltage)}

    return err, evaluate


def sram_evaluator(
    model: nn.Module,
    scheme: QuantScheme,
    images: torch.Tensor,
    labels: torch.Tensor,
    chips: Sequence[SRAMChip],
    *,
    placements: int = 1,
    placement: str = "random",
    seed: int = 0,
    batch_size: int = 1000,
) -> tuple[float, Callable[[float], dict[str, Any]]]:
    """(clean Err, evaluate) for ``find_operating_point`` on profiled chips.

    ``evaluate(V)`` gives RErr for every chip × placement (seeds ``seed`` .. ``seed +
    placements − 1``), and the chips' mean ``bit_error_rate``, ``failing_cells``,
    ``zero_to_one`` and ``one_to_zero`` at V.
    """
    if not chips:
        raise BitrobustError("give at least one chip")

    def describe(voltage: float) -> dict[str, Any]:
        return chip_rates(chips, voltage)

    return _evaluator(
        model,
        scheme,
        images,
        labels,
        lambda v: [ProfiledSRAM(chip, v, placement=placement) for chip in chips],
        describe,
        placements,
        seed,
        batch_size,
    )


def chip_rates(chips: Sequence[SRAMChip], voltage: float) -> dict[str, float]:
    """The chips' mean ``bit_error_rate``, ``failing_cells``, ``zero_to_one`` and
    ``one_to_zero`` at ``voltage``."""
    rates = [chip.rates_table([voltage])[0] for chip in chips]
    keys = ("bit_error_rate", "failing_cells", "zero_to_one", "one_to_zero")
    return {key: statistics.fmean(r[key] for r in rates) for key in keys}


def random_errors_evaluator(
    model: nn.Module,
    scheme: QuantScheme,
    images: torch.Tensor,
    labels: torch.Tensor,
    curve: VoltageErrorCurve | None = None,
    *,
    patterns: int = 5,
    seed: int = 0,
    batch_size: int = 1000,
) -> tuple[float, Callable[[float], dict[str, Any]]]:
    """(clean Err, evaluate) for i.i.d. random bit errors at p(V) (the paper's energy plot).

    Each of the ``patterns`` seeds plays one chip; every stored bit flips with p(V).
    """
    curve = curve or VoltageErrorCurve.default()
    return _evaluator(
        model,
        scheme,
        images,
        labels,
        lambda v: [RandomBitErrors(curve.rate(v))],
        lambda v: {"bit_error_rate": curve.rate(v)},
        patterns,
        seed,
        batch_size,
    )
