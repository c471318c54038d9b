"""Energy model, voltage-error curve, operating-point search, evaluators and the study helper."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bitrobust.checkpoint import Checkpoint
from bitrobust.energy import (
    DEFAULT_VOLTAGES,
    EnergyModel,
    VoltageErrorCurve,
    energy_per_access,
    energy_saving,
    find_operating_point,
    random_errors_evaluator,
    sram_evaluator,
)
from bitrobust.errors import BitrobustError
from bitrobust.experiments.sram_energy import run_sram_energy, savings_table, voltage_table
from bitrobust.faults import make_chip
from bitrobust.models.architecture import Architecture
from bitrobust.quant import QuantScheme

CURVE = VoltageErrorCurve.default()
SMALL = {"arrays": 2, "rows": 32, "columns": 64}


@settings(max_examples=100, deadline=None)
@given(st.floats(0.5, 1.2), st.floats(0.5, 1.2))
def test_energy_saving_is_monotone_in_voltage(v1, v2):
    low, high = min(v1, v2), max(v1, v2)
    assert energy_saving(low) >= energy_saving(high)
    assert energy_per_access(low) <= energy_per_access(high)
    table = EnergyModel.from_table([0.5, 0.8, 1.0, 1.2], [0.3, 0.62, 1.0, 1.5])
    assert energy_saving(low, table) >= energy_saving(high, table)


def test_default_energy_is_quadratic_and_tables_interpolate():
    assert energy_per_access(1.0) == 1.0 and energy_saving(1.0) == 0.0
    assert energy_saving(0.9) == pytest.approx(0.19)  # the paper: ~20 % at V ~ 0.89-0.9
    assert energy_per_access(0.84) == pytest.approx(0.7056)  # poster: ~0.70 at 0.84
    table = EnergyModel.from_table([0.8, 1.0], [0.6, 1.0])
    assert table(0.9) == pytest.approx(0.8) and table.name == "table"
    with pytest.raises(BitrobustError, match="outside the energy table"):
        table(0.7)
    with pytest.raises(BitrobustError, match="must not fall"):
        EnergyModel.from_table([0.8, 1.0], [1.0, 0.6])


def test_default_curve_passes_through_the_papers_table():
    for voltage, rate in zip(CURVE.voltages, CURVE.rates):
        assert CURVE.rate(voltage) == pytest.approx(rate, rel=1e-9, abs=1e-15)
    assert CURVE.voltage_range == (0.76, 1.0)
    grid = np.linspace(0.76, 1.0, 241)
    rates = CURVE.rates_at(grid)
    assert np.all(np.diff(rates) <= 0) and rates[-1] == 0.0
    # between table points the interpolation is geometric (log-linear)
    assert CURVE.rate(0.81) == pytest.approx(math.sqrt(0.065 * 0.025))


@settings(max_examples=100, deadline=None)
@given(st.floats(1e-7, 0.19))
def test_curve_inverse_gives_the_voltage_where_p_equals_u(u):
    voltage = float(CURVE.fail_voltages(np.array([u]))[0])
    assert 0.76 <= voltage <= 1.0
    assert CURVE.rate(voltage) == pytest.approx(u, rel=1e-6)


def test_curve_inverse_outside_the_range_and_bad_curves():
    assert CURVE.fail_voltages(np.array([0.5]))[0] == -np.inf  # never fails in range
    with pytest.raises(BitrobustError, match="outside the range"):
        CURVE.rate(0.7)
    with pytest.raises(BitrobustError, match="must not grow"):
        VoltageErrorCurve((0.8, 0.9), (0.01, 0.02))
    with pytest.raises(BitrobustError, match="strictly increasing"):
        VoltageErrorCurve((0.9, 0.8), (0.02, 0.01))


def test_curve_fitted_from_a_chip_follows_the_chip():
    chip = make_chip(2, arrays=8, rows=128, columns=64)
    fitted = VoltageErrorCurve.from_chip(chip)
    assert fitted.voltage_range == chip.voltage_range and fitted.name.startswith("chip:")
    for voltage in (0.8, 0.85, 0.9):
        assert fitted.rate(voltage) == pytest.approx(chip.bit_error_rate(voltage), rel=0.05)


def _known_model(slope: float, err: float = 0.05):
    """A 'model' whose RErr is err + slope · p(V) on the paper's curve."""
    calls = []

    def evaluate(voltage):
        calls.append(voltage)
        return {"rerr": err + slope * CURVE.rate(voltage), "bit_error_rate": CURVE.rate(voltage)}

    return evaluate, calls


@settings(max_examples=60, deadline=None)
@given(st.floats(0.0, 0.2), st.floats(0.5, 20.0))
def test_search_returns_the_lowest_admissible_voltage_of_a_known_error_curve(budget, slope):
    evaluate, _ = _known_model(slope)
    point = find_operating_point(evaluate, DEFAULT_VOLTAGES, budget, 0.05)
    expected = min(v for v in DEFAULT_VOLTAGES if slope * CURVE.rate(v) <= budget + 1e-12)
    assert point.met and point.voltage == expected
    assert point.row["energy_saving"] == pytest.approx(1 - expected**2)
    assert point.row["bit_error_rate"] == CURVE.rate(expected)
    assert [r["voltage"] for r in point.rows] == sorted(DEFAULT_VOLTAGES)


def test_search_requires_every_higher_voltage_to_meet_the_budget():
    rerr = {1.0: 0.05, 0.95: 0.05, 0.9: 0.08, 0.85: 0.055, 0.8: 0.2}  # noisy dip at 0.85
    point = find_operating_point(rerr.__getitem__, list(rerr), 0.01, 0.05)
    assert point.voltage == 0.95


def test_search_statistic_mean_or_worst_chip_and_early_stop():
    values = {1.0: [0.05, 0.05], 0.9: [0.05, 0.07], 0.8: [0.2, 0.2], 0.7: [0.5, 0.5]}
    mean = find_operating_point(values.__getitem__, list(values), 0.011, 0.05)
    worst = find_operating_point(values.__getitem__, list(values), 0.011, 0.05, statistic="max")
    assert (mean.voltage, worst.voltage) == (0.9, 1.0)
    assert mean.row["rerr_min"] == 0.05 and mean.row["rerr_max"] == 0.07
    evaluate, calls = _known_model(10.0)
    find_operating_point(evaluate, DEFAULT_VOLTAGES, 0.001, 0.05, stop_early=True)
    assert len(calls) < len(DEFAULT_VOLTAGES) and calls == sorted(calls, reverse=True)


def test_search_without_an_admissible_voltage_reports_the_best_found():
    evaluate, _ = _known_model(10.0)
    point = find_operating_point(evaluate, [0.8, 0.82, 0.84], 0.01, 0.05)
    assert not point.met and point.voltage is None
    assert point.best["voltage"] == 0.84  # smallest excess
    assert "no voltage" in point.message and "best found: V = 0.84" in point.message
    payload = point.to_dict()
    assert payload["met"] is False and payload["voltage"] is None and payload["best"]
    with pytest.raises(BitrobustError, match="budget"):
        find_operating_point(evaluate, [0.9], -0.01, 0.05)
    with pytest.raises(BitrobustError, match="statistic"):
        find_operating_point(evaluate, [0.9], 0.01, 0.05, statistic="median")


def _tiny_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()


def _data(model: nn.Module, count: int = 200):
    images = torch.rand(count, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        labels = model(images).argmax(dim=1)
    labels[::10] = (labels[::10] + 1) % 4  # Err = 10 %
    return images, labels


def test_sram_evaluator_on_a_real_model_matches_the_search():
    model = _tiny_model(0)
    images, labels = _data(model)
    chips = [make_chip(k, **SMALL) for k in range(2)]
    scheme = QuantScheme.preset("rquant", bits=8)
    err, evaluate = sram_evaluator(model, scheme, images, labels, chips, placements=2)
    assert err == pytest.approx(0.1)
    clean = evaluate(1.0)
    assert clean["rerr"] == [err] * 4 and clean["bit_error_rate"] == 0.0
    voltages = [0.78, 0.82, 0.86, 0.9, 0.95, 1.0]
    point = find_operating_point(evaluate, voltages, 0.02, err)
    assert point.met
    rows = {row["voltage"]: row for row in point.rows}
    above = [v for v in voltages if v >= point.voltage]
    assert all(rows[v]["rerr"] - err <= 0.02 + 1e-12 for v in above)
    below = [v for v in voltages if v < point.voltage]
    if below:
        assert rows[max(below)]["rerr"] - err > 0.02
    assert rows[0.78]["rerr_mean"] >= err


def test_random_errors_evaluator_uses_the_curve():
    model = _tiny_model(1)
    images, labels = _data(model, 100)
    err, evaluate = random_errors_evaluator(
        model, QuantScheme.preset("rquant"), images, labels, patterns=3
    )
    row = evaluate(0.8)
    assert len(row["rerr"]) == 3 and row["bit_error_rate"] == pytest.approx(0.065)
    assert min(row["rerr"]) >= err


def _checkpoint(seed: int) -> Checkpoint:
    architecture = Architecture("custom", "none", 1, 4, 4)
    return Checkpoint(_tiny_model(seed), architecture, QuantScheme.preset("rquant"), {})


def test_sram_energy_study_finds_savings_per_model_and_budget():
    reference = _checkpoint(0)
    images, labels = _data(reference.model, 150)
    result = run_sram_energy(
        [("normal", reference), ("other", _checkpoint(3))],
        images,
        labels,
        chips=[make_chip(0, **SMALL)],
        voltages=(0.8, 0.9, 0.95, 1.0),
        budgets=(0.01, 1.0),
    )
    assert result["reference"] == "normal" and result["reference_err"] == pytest.approx(0.1)
    assert len(result["rows"]) == 8 and len(result["savings"]) == 4
    by_key = {(s["model"], s["budget"]): s for s in result["savings"]}
    assert by_key["normal", 1.0]["voltage"] == 0.8 and by_key["normal", 1.0]["met"]
    assert by_key["normal", 1.0]["energy_saving"] == pytest.approx(0.36)
    assert by_key["normal", 0.01]["met"]  # at V = 1.0 RErr = Err: always admissible
    table = savings_table(result)
    assert "| normal" in table and "energy saving (%)" in table
    assert "V=0.8" in voltage_table(result)
    with pytest.raises(BitrobustError, match="reference"):
        run_sram_energy([("a", reference)], images, labels, chips=1, reference="b")
