"""Profiled SRAM chips: persistence, stuck-at flips, per-direction rates, files, synthetic chips."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bitrobust.bits import bit_planes
from bitrobust.errors import BitrobustError
from bitrobust.faults import (
    ComposedFaults,
    FaultModel,
    FaultPattern,
    ProfiledSRAM,
    RandomBitErrors,
    SRAMChip,
    VoltageErrorCurve,
    load_chip,
    make_chip,
    save_chip,
)
from bitrobust.faults.memory import MemoryGeometry, model_cells
from bitrobust.quant import QuantizedModel, QuantScheme, quantize

SMALL = {"arrays": 4, "rows": 64, "columns": 64}  # 16384 cells


@pytest.fixture(scope="module")
def chip() -> SRAMChip:
    return make_chip(7, **SMALL)


def _qmodel(bits: int = 8, **shapes: tuple[int, ...]) -> QuantizedModel:
    scheme = QuantScheme.preset("rquant", bits=bits)
    generator = torch.Generator().manual_seed(1)
    tensors = {
        name: quantize(torch.randn(shape, generator=generator), scheme)
        for name, shape in shapes.items()
    }
    return QuantizedModel(tensors=tensors, scheme=scheme)


def _random_codes_model(words: int, bits: int = 8) -> QuantizedModel:
    """A model whose codes are uniform random bytes (masked to m bits): balanced 0s and 1s."""
    base = _qmodel(bits, w=(words,))
    generator = torch.Generator().manual_seed(2)
    codes = torch.randint(0, 2**bits, (words,), generator=generator, dtype=torch.uint8)
    return base.with_codes({"w": codes})


@settings(max_examples=40, deadline=None)
@given(st.floats(0.76, 1.0), st.floats(0.76, 1.0), st.integers(0, 2**31), st.sampled_from([4, 8]))
def test_lower_voltage_fails_a_superset_of_cells_and_flips_a_superset_of_bits(
    chip, v1, v2, seed, bits
):
    low, high = min(v1, v2), max(v1, v2)
    assert not bool((chip.faulty(high) & ~chip.faulty(low)).any())
    qmodel = _qmodel(bits, a=(40, 30), b=(500,))
    at_low = ProfiledSRAM(chip, low).sample(qmodel, seed)
    at_high = ProfiledSRAM(chip, high).sample(qmodel, seed)
    for name, mask in at_high.masks.items():
        assert int((mask & ~at_low.masks[name]).sum()) == 0


def test_a_bit_flips_iff_its_cell_fails_and_holds_the_other_value():
    # one array, one row of 16 columns: two 8-bit words, bit b of word w in column 8w + b
    fail_voltage = torch.tensor([[[0.9, 0.0, 0.95, 0.0, 0.0, 0.0, 0.0, 0.85] + [0.9] * 8]])
    fail_value = torch.tensor([[[1, 1, 0, 1, 1, 1, 1, 1] + [0, 1] * 4]], dtype=torch.uint8)
    chip = SRAMChip(fail_voltage, fail_value, voltage_range=(0.8, 1.0), label="hand")
    codes = torch.tensor([0b1000_0101, 0b1111_0000], dtype=torch.uint8)
    qmodel = _qmodel(8, w=(2,)).with_codes({"w": codes})
    mask = ProfiledSRAM(chip, 0.88, placement="linear").sample(qmodel, 0).masks["w"]
    # word 0 at 0.88: cells 0 (stuck 1, stored 1: no flip), 2 (stuck 0, stored 1: flip), 7
    # (fail voltage 0.85 is below 0.88: works). Word 1: every cell fails, reads 0b1010_1010.
    assert mask.tolist() == [0b0000_0100, 0b1111_0000 ^ 0b1010_1010]  # reads its stuck bits
    assert ProfiledSRAM(chip, 0.95, placement="linear").sample(qmodel, 0).num_flips() == 0
    assert chip.failing_cells(0.88) == pytest.approx(10 / 16)
    assert chip.bit_error_rate(0.88) == pytest.approx(10 / 32)
    assert chip.flip_rates(0.88)[0] == pytest.approx(5 / 16)  # failing and stuck at 1


def test_flips_match_the_map_under_a_random_placement(chip):
    qmodel = _qmodel(8, a=(64, 40), b=(900,))
    faults = ProfiledSRAM(chip, 0.82)
    pattern = faults.sample(qmodel, seed=5)
    cells = model_cells(qmodel, chip.geometry, faults.placement_for(qmodel, 5))
    failing = chip.faulty(0.82).reshape(-1)
    value = chip.fail_value.reshape(-1)
    for name, qt in qmodel.tensors.items():
        stored = bit_planes(qt.codes)
        expected = failing[cells[name]] & (value[cells[name]] != stored)
        assert torch.equal(bit_planes(pattern.masks[name]).bool(), expected)


def _within_binomial(count: int, trials: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - trials * p) <= sigmas * math.sqrt(trials * p * (1 - p)) + 1


@pytest.mark.parametrize("stuck_at_one", [0.6, 0.9])
def test_per_direction_rates_follow_the_map(stuck_at_one):
    chip = make_chip(3, **SMALL, stuck_at_one=stuck_at_one)
    voltage = 0.8
    zero_to_one, one_to_zero = (float(r) for r in chip.flip_rates(voltage))
    assert zero_to_one + one_to_zero == pytest.approx(float(chip.failing_cells(voltage)))
    assert zero_to_one > one_to_zero  # biased towards stuck-at-1
    qmodel = _random_codes_model(MemoryGeometry(**SMALL).capacity(8))  # one bit per cell
    totals = {"zeros": 0, "ones": 0, "up": 0, "down": 0}
    for seed in range(3):
        pattern = ProfiledSRAM(chip, voltage).sample(qmodel, seed)
        stored = bit_planes(qmodel.tensors["w"].codes).bool()
        flips = bit_planes(pattern.masks["w"]).bool()
        totals["zeros"] += int((~stored).sum())
        totals["ones"] += int(stored.sum())
        totals["up"] += int((flips & ~stored).sum())
        totals["down"] += int((flips & stored).sum())
    # a stored 0 flips with probability zero_to_one, a stored 1 with one_to_zero
    assert _within_binomial(totals["up"], totals["zeros"], zero_to_one, sigmas=6)
    assert _within_binomial(totals["down"], totals["ones"], one_to_zero, sigmas=6)


def test_protected_bits_are_not_stored_and_never_flip():
    everything_fails = SRAMChip(torch.full((2, 8, 64), math.inf), torch.ones(2, 8, 64))
    qmodel = _qmodel(4, w=(300,)).with_codes({"w": torch.zeros(300, dtype=torch.uint8)})
    pattern = ProfiledSRAM(everything_fails, 0.5).sample(qmodel, 0)
    assert bool((pattern.masks["w"] == 0x0F).all())  # every used bit flips to 1, no other
    faulty = pattern.apply(qmodel)
    assert int((faulty.tensors["w"].codes & 0xF0).sum()) == 0


def test_seeds_choose_placements_and_patterns_are_reproducible(chip):
    qmodel = _qmodel(8, w=(2000,))
    faults = ProfiledSRAM(chip, 0.84)
    first = faults.sample(qmodel, 1).masks["w"]
    assert torch.equal(first, ProfiledSRAM(chip, 0.84).sample(qmodel, 1).masks["w"])
    assert not torch.equal(first, faults.sample(qmodel, 2).masks["w"])
    linear = ProfiledSRAM(chip, 0.84, placement="linear")
    assert torch.equal(linear.sample(qmodel, 1).masks["w"], linear.sample(qmodel, 2).masks["w"])


def test_a_model_larger_than_the_chip_reuses_its_arrays():
    tiny = make_chip(0, arrays=1, rows=4, columns=16)  # 8 words
    codes = torch.arange(8, dtype=torch.uint8).repeat(3)
    qmodel = _qmodel(8, w=(24,)).with_codes({"w": codes})
    mask = ProfiledSRAM(tiny, 0.76).sample(qmodel, 4).masks["w"]
    assert mask.reshape(3, 8).unique(dim=0).shape[0] == 1  # same cells, same codes, same flips


def test_name_encodes_chip_voltage_and_placement(chip):
    faults = ProfiledSRAM(chip, 0.85, placement="offset")
    assert faults.name == f"profiled_sram(chip={chip.id},v=0.85,placement=offset)"
    assert faults == ProfiledSRAM(chip, 0.85, placement="offset") != ProfiledSRAM(chip, 0.86)
    assert isinstance(faults, FaultModel)
    assert faults.bit_error_rate == chip.bit_error_rate(0.85)


def test_composes_with_random_bit_errors(chip):
    qmodel = _qmodel(8, w=(3000,))
    both = RandomBitErrors(0.001) + ProfiledSRAM(chip, 0.84)
    assert isinstance(both, ComposedFaults) and "profiled_sram" in both.name
    pattern = both.sample(qmodel, 0)
    assert isinstance(pattern, FaultPattern) and pattern.num_flips() > 0


def test_voltages_outside_the_profiled_range_are_user_errors(chip):
    with pytest.raises(BitrobustError, match=r"outside the profiled range \[0.76, 1\]"):
        ProfiledSRAM(chip, 0.7)
    with pytest.raises(BitrobustError, match="outside"):
        chip.bit_error_rates([0.8, 1.2])
    with pytest.raises(BitrobustError, match="placement"):
        ProfiledSRAM(chip, 0.8, placement="diagonal")


def test_synthetic_chip_follows_the_papers_voltage_curve():
    chip = make_chip(0)  # the paper's geometry: 32 arrays of 512 x 64
    assert chip.geometry == MemoryGeometry(32, 512, 64)
    assert chip.voltage_range == (0.76, 1.0)
    voltages = [0.78, 0.80, 0.82, 0.84, 0.86, 0.88, 0.90]
    # the synthetic chips follow the curve in failing cells (issue: calibrate to flipped bits)
    ratio = chip.failing_cells(voltages) / VoltageErrorCurve.default().rates_at(voltages)
    assert np.all(np.abs(ratio - 1) < 0.2), ratio
    assert chip.bit_error_rate(1.0) == 0.0
    assert torch.equal(make_chip(0).fail_voltage, chip.fail_voltage)  # seeded
    assert make_chip(1).id != chip.id


def test_synthetic_chip_has_spatial_structure_and_a_stuck_at_one_bias():
    chip = make_chip(1, arrays=8, rows=256, columns=64)
    failing = chip.faulty(0.84).float()
    p = float(failing.mean())
    per_column = failing.sum(dim=1)  # failing cells per (array, column)
    assert float(per_column.var()) > 3 * 256 * p * (1 - p)  # clustered along columns
    uncorrelated = make_chip(1, arrays=8, rows=256, columns=64, column_correlation=0.0)
    flat = uncorrelated.faulty(0.84).float()
    q = float(flat.mean())
    assert float(flat.sum(dim=1).var()) < 2 * 256 * q * (1 - q)
    assert float(chip.fail_value.float().mean()) == pytest.approx(0.6, abs=0.05)
    value_columns = chip.fail_value.float().mean(dim=1)
    assert float(value_columns.var()) > 3 * 0.24 / 256  # fail values cluster by column


def test_bad_chip_parameters_are_user_errors():
    with pytest.raises(BitrobustError, match="below 1"):
        make_chip(0, **SMALL, row_correlation=0.5, column_correlation=0.5)
    with pytest.raises(BitrobustError, match="stuck_at_one"):
        make_chip(0, **SMALL, stuck_at_one=1.5)


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_chip_files_round_trip(tmp_path, chip, suffix):
    if suffix == ".npy":
        chip = SRAMChip(chip.fail_voltage, chip.fail_value, label="plain")
    path = save_chip(chip, tmp_path / f"c{suffix}")
    loaded = load_chip(path)
    assert torch.equal(loaded.fail_voltage, chip.fail_voltage)
    assert torch.equal(loaded.fail_value, chip.fail_value)
    assert loaded.voltage_range == chip.voltage_range
    if suffix == ".npz":
        assert loaded.id == chip.id


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "arrays,needle",
    [
        ({"fail_voltage": np.zeros((4, 8), np.float32)}, "missing array(s) fail_value"),
        (
            {"fail_voltage": np.zeros((4, 8), np.float32), "fail_value": np.zeros((4, 8))},
            "shape (arrays, rows, columns)",
        ),
        (
            {"fail_voltage": np.zeros((1, 4, 8), np.float32), "fail_value": np.zeros((1, 4, 9))},
            "fail_value has shape (1, 4, 9)",
        ),
        (
            {"fail_voltage": np.zeros((1, 4, 8), np.float32), "fail_value": np.full((1, 4, 8), 2)},
            "only 0 and 1",
        ),
        (
            {"fail_voltage": np.full((1, 4, 8), np.nan), "fail_value": np.zeros((1, 4, 8))},
            "not NaN",
        ),
        (
            {"fail_voltage": np.zeros((1, 4, 8), np.int32), "fail_value": np.zeros((1, 4, 8))},
            "floating point",
        ),
        (
            {
                "fail_voltage": np.zeros((1, 4, 8)),
                "fail_value": np.zeros((1, 4, 8)),
                "voltage_range": np.array([0.9, 0.8]),
            },
            "v_low < v_high",
        ),
        (
            {
                "fail_voltage": np.zeros((1, 4, 8)),
                "fail_value": np.zeros((1, 4, 8)),
                "format": np.array("other/2"),
            },
            "unknown format",
        ),
    ],
)
def test_schema_errors_name_the_file_and_the_problem(tmp_path, arrays, needle):
    path = _write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(BitrobustError) as info:
        load_chip(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_unreadable_and_missing_chip_files(tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"definitely not numpy")
    with pytest.raises(BitrobustError, match="not a readable"):
        load_chip(corrupt)
    with pytest.raises(BitrobustError, match="does not exist"):
        load_chip(tmp_path / "nothing.npz")
    npy = tmp_path / "wrong.npy"
    np.save(npy, np.zeros((3, 1, 4, 8), np.float32))
    with pytest.raises(BitrobustError, match=r"shape \(2, arrays, rows, columns\)"):
        load_chip(npy)


def test_old_imports_keep_working():
    from bitrobust.faults import ComposedFaults as C  # noqa: N817
    from bitrobust.faults import FaultModel as F  # noqa: N817
    from bitrobust.faults import RandomBitErrors as R  # noqa: N817
    from bitrobust.faults.core import RandomBitErrors as core_random

    assert C is ComposedFaults and F is FaultModel and R is RandomBitErrors is core_random


def test_bit_error_rate_means_the_same_for_chips_and_random_bit_errors(chip):
    """The probability that a stored bit flips: a chip at ``bit_error_rate(V)`` flips as many
    bits of balanced data as ``RandomBitErrors`` at that rate (half its failing cells)."""
    qmodel = _random_codes_model(2048)  # 16384 bits: the chip's size
    for voltage in (0.78, 0.82):
        rate = chip.bit_error_rate(voltage)
        assert rate == pytest.approx(float(chip.failing_cells(voltage)) / 2)
        assert ProfiledSRAM(chip, voltage).bit_error_rate == rate
        chip_flips = [ProfiledSRAM(chip, voltage).sample(qmodel, s).num_flips() for s in range(8)]
        random_flips = [RandomBitErrors(rate).sample(qmodel, s).num_flips() for s in range(8)]
        expected = rate * qmodel.num_bits()
        for flips in (chip_flips, random_flips):
            mean = sum(flips) / len(flips)
            assert abs(mean - expected) < 0.15 * expected + 10, (voltage, mean, expected)


def test_a_chip_calibrated_to_the_bit_error_rate_flips_p_of_the_bits():
    """p(V) as the paper's bit error rate: twice the cells fail, and stored bits flip with
    about p(V) (they flip with about p(V)/2 under the default failing-cell calibration)."""
    from bitrobust.faults import VoltageErrorCurve, make_chip

    curve = VoltageErrorCurve.default()
    cells = make_chip(3, 8, 256, 64)
    bits = make_chip(3, 8, 256, 64, calibration="bit_error_rate")
    assert bits.label.endswith("-ber") and bits.id != cells.id
    for voltage in (0.80, 0.84, 0.88):
        p = curve.rate(voltage)
        assert abs(cells.failing_cells(voltage) / p - 1) < 0.15
        assert abs(bits.failing_cells(voltage) / (2 * p) - 1) < 0.15
        assert abs(bits.bit_error_rate(voltage) / p - 1) < 0.15
    assert bits.failing_cells(0.76) <= 1.0
    with pytest.raises(BitrobustError, match="unknown chip calibration"):
        make_chip(3, 2, 8, 8, calibration="cells")
