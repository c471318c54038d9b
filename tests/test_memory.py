"""Memory layout: every stored bit has exactly one cell; packing, tiling, placements, inverse."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bitrobust.errors import BitrobustError
from bitrobust.faults.memory import (
    MemoryGeometry,
    Placement,
    cell_index,
    cell_to_word,
    model_cells,
    stored_bit_cells,
    word_cells,
    word_ranges,
)
from bitrobust.quant import QuantizedModel, QuantScheme, quantize


@st.composite
def layouts(draw):
    bits = draw(st.integers(2, 8))
    geometry = MemoryGeometry(
        arrays=draw(st.integers(1, 4)),
        rows=draw(st.integers(1, 6)),
        columns=draw(st.integers(bits, 40)),
    )
    offset = draw(st.integers(0, 3 * geometry.capacity(bits)))
    order = draw(st.permutations(range(geometry.arrays))) if draw(st.booleans()) else None
    placement = Placement(offset=offset, order=None if order is None else tuple(order))
    return bits, geometry, placement


@settings(max_examples=150, deadline=None)
@given(layouts())
def test_a_full_memory_maps_every_stored_bit_to_exactly_one_cell(layout):
    bits, geometry, placement = layout
    capacity = geometry.capacity(bits)
    cells = stored_bit_cells(0, capacity, bits, geometry, placement)
    assert cells.shape == (capacity, bits)
    flat = cells.reshape(-1)
    assert int(flat.min()) >= 0 and int(flat.max()) < geometry.cells
    assert flat.unique().numel() == flat.numel()  # injective: no two stored bits share a cell
    used_columns = geometry.words_per_row(bits) * bits
    assert flat.numel() == geometry.arrays * geometry.rows * used_columns


@settings(max_examples=150, deadline=None)
@given(layouts(), st.data())
def test_inverse_recovers_word_and_bit_and_larger_models_tile(layout, data):
    bits, geometry, placement = layout
    capacity = geometry.capacity(bits)
    words = torch.tensor(data.draw(st.lists(st.integers(0, 5 * capacity), min_size=1)))
    array, row, column = word_cells(words, bits, geometry, placement)
    word, bit = cell_to_word(array, row, column, bits, geometry, placement)
    assert torch.equal(word, (words % capacity).unsqueeze(-1).expand_as(word))
    assert torch.equal(bit, torch.arange(bits).expand_as(bit))
    tiled = word_cells(words + capacity, bits, geometry, placement)
    assert all(torch.equal(a, b) for a, b in zip(tiled, (array, row, column)))


def test_packing_is_row_wise_with_bit_b_in_column_slot_times_m_plus_b():
    geometry = MemoryGeometry()  # 32 arrays of 512 x 64
    assert geometry.words_per_row(8) == 8 and geometry.words_per_row(4) == 16
    assert geometry.words_per_row(3) == 21  # 64 mod 3 = 1 column unused
    array, row, column = word_cells(torch.tensor([0, 9, 8 * 512, 8 * 512 * 32]), 8, geometry)
    assert column[0].tolist() == list(range(8)) and column[1].tolist() == list(range(8, 16))
    assert (array[:, 0].tolist(), row[:, 0].tolist()) == ([0, 0, 1, 0], [0, 1, 0, 0])
    _, _, column4 = word_cells(torch.tensor([15]), 4, geometry)
    assert column4[0].tolist() == [60, 61, 62, 63]


def test_unused_columns_hold_no_word():
    geometry = MemoryGeometry(arrays=1, rows=2, columns=10)
    word, bit = cell_to_word(
        torch.tensor([0, 0]), torch.tensor([0, 1]), torch.tensor([9, 2]), 3, geometry
    )
    assert word.tolist() == [-1, 3] and bit.tolist() == [-1, 2]


def test_placement_offset_and_order_move_words():
    geometry = MemoryGeometry(arrays=3, rows=2, columns=16)
    plain = word_cells(torch.tensor([0]), 8, geometry)
    shifted = word_cells(torch.tensor([0]), 8, geometry, Placement(offset=5))
    assert (int(plain[0][0, 0]), int(plain[1][0, 0])) == (0, 0)
    assert (int(shifted[0][0, 0]), int(shifted[1][0, 0]), int(shifted[2][0, 0])) == (1, 0, 8)
    permuted = word_cells(torch.tensor([0]), 8, geometry, Placement(offset=5, order=(2, 0, 1)))
    assert int(permuted[0][0, 0]) == 0  # virtual array 1 -> chip array order[1] = 0


def test_placement_from_seed_is_deterministic_and_varies():
    geometry = MemoryGeometry()
    first = Placement.from_seed(3, geometry, 8)
    assert first == Placement.from_seed(3, geometry, 8)
    assert sorted(first.order) == list(range(32))
    assert len({Placement.from_seed(s, geometry, 8) for s in range(10)}) == 10
    assert Placement.from_seed(3, geometry, 8, permute=False).order is None


def test_model_cells_follow_named_parameter_order_contiguously():
    scheme = QuantScheme.preset("rquant", bits=4)
    generator = torch.Generator().manual_seed(0)
    tensors = {
        name: quantize(torch.randn(shape, generator=generator), scheme)
        for name, shape in (("a.weight", (3, 5)), ("a.bias", (3,)), ("b.weight", (7,)))
    }
    qmodel = QuantizedModel(tensors=tensors, scheme=scheme)
    assert word_ranges(qmodel) == {"a.weight": (0, 15), "a.bias": (15, 3), "b.weight": (18, 7)}
    geometry = MemoryGeometry(arrays=2, rows=4, columns=12)  # 3 words per row, capacity 24
    placement = Placement(offset=4, order=(1, 0))
    cells = model_cells(qmodel, geometry, placement)
    assert cells["a.weight"].shape == (3, 5, 4) and cells["b.weight"].shape == (7, 4)
    expected = stored_bit_cells(0, 25, 4, geometry, placement)
    stream = torch.cat([cells[name].reshape(-1, 4) for name in tensors])
    assert torch.equal(stream, expected)
    # 25 words on a 24-word memory: the last word tiles onto the first word's cells
    assert torch.equal(stream[24], stream[0])


def test_cell_index_is_row_major():
    geometry = MemoryGeometry(arrays=2, rows=3, columns=4)
    index = cell_index(torch.tensor(1), torch.tensor(2), torch.tensor(3), geometry)
    assert int(index) == geometry.cells - 1


def test_bad_geometry_and_placement_are_user_errors():
    with pytest.raises(BitrobustError, match="cannot hold"):
        MemoryGeometry(columns=4).words_per_row(8)
    with pytest.raises(BitrobustError, match="positive integer"):
        MemoryGeometry(rows=0)
    with pytest.raises(BitrobustError, match="permutation"):
        word_cells(torch.tensor([0]), 8, MemoryGeometry(arrays=2), Placement(order=(0, 0)))
