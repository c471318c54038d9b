"""Where every stored weight bit lives in SRAM: (array, row, column) for each (word, bit).

Profiled bit errors are a property of memory *cells*, so a chip map only becomes a fault pattern
once each stored bit has an address. The layout follows Stutz et al. §1.7 (weights mapped
linearly, m-bit words packed row-wise, the profiled arrays tiled, several random offsets):

1. **Word stream.** The codes of a :class:`~bitrobust.quant.QuantizedModel` form one stream of
   m-bit words: the parameters in ``qmodel.tensors`` order (= ``named_parameters`` order), each
   flattened row-major. Word ``w`` is element ``w - start`` of the parameter whose range holds it.
2. **Rows.** A row of C columns holds ``floor(C / m)`` words (8 for m = 8 and C = 64, 16 for
   m = 4); bit b (0 = LSB) of the word in slot s sits in column ``s·m + b``. A word never
   straddles two rows, so for m that does not divide C the last ``C mod m`` columns stay unused.
   Protected bits (m..7) are not stored and therefore can never fail.
3. **Arrays.** Rows fill array 0 (R rows), then array 1, ...: a chip of A arrays holds
   ``K = A·R·floor(C/m)`` words.
4. **Placement.** A :class:`Placement` shifts the stream by ``offset`` words and permutes the
   arrays: word ``w`` goes to position ``(w + offset) mod K`` of the chip, whose array index
   ``v`` is then mapped to chip array ``order[v]``. The ``mod K`` is the tiling: a model larger
   than the chip reuses the chip's arrays from the start, as the paper tiles its 32 profiled
   512×64 arrays over the weight memory; word ``w`` and word ``w + K`` then share cells.

Everything here is a pure function of integers, so the mapping is deterministic and can be
inverted (:func:`cell_to_word`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from bitrobust.bits import stable_seed
from bitrobust.errors import BitrobustError, check_bits
from bitrobust.quant import QuantizedModel


@dataclass(frozen=True)
class MemoryGeometry:
    """``arrays`` SRAM arrays of ``rows`` × ``columns`` bit cells (default: 32 of 512×64)."""

    arrays: int = 32
    rows: int = 512
    columns: int = 64

    def __post_init__(self) -> None:
        for field in ("arrays", "rows", "columns"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BitrobustError(f"memory {field} must be a positive integer, got {value!r}")

    @property
    def cells(self) -> int:
        """Number of bit cells, A·R·C."""
        return self.arrays * self.rows * self.columns

    def words_per_row(self, bits: int) -> int:
        """How many m-bit words one row holds: ``floor(columns / bits)``."""
        check_bits(bits)
        if self.columns < bits:
            raise BitrobustError(f"a row of {self.columns} columns cannot hold a {bits}-bit word")
        return self.columns // bits

    def capacity(self, bits: int) -> int:
        """Number of m-bit words the whole memory holds (K); larger models tile over it."""
        return self.arrays * self.rows * self.words_per_row(bits)


@dataclass(frozen=True)
class Placement:
    """Where the word stream starts and how arrays are ordered (identity by default).

    ``offset`` (in words) shifts the stream; ``order`` is a permutation of the chip's arrays
    (``None``: array v is chip array v).
    """

    offset: int = 0
    order: tuple[int, ...] | None = None

    @classmethod
    def from_seed(
        cls, seed: int, geometry: MemoryGeometry, bits: int, *, permute: bool = True
    ) -> Placement:
        """A random offset in [0, K) and (if ``permute``) a random array order, from ``seed``."""
        generator = torch.Generator().manual_seed(stable_seed("sram-placement", int(seed)))
        offset = int(torch.randint(geometry.capacity(bits), (1,), generator=generator))
        order = None
        if permute:
            order = tuple(int(i) for i in torch.randperm(geometry.arrays, generator=generator))
        return cls(offset=offset, order=order)

    def check(self, geometry: MemoryGeometry) -> None:
        """Raise unless ``order`` is a permutation of the geometry's arrays."""
        if self.offset < 0:
            raise BitrobustError(f"placement offset must be >= 0, got {self.offset}")
        if self.order is not None and sorted(self.order) != list(range(geometry.arrays)):
            raise BitrobustError(
                f"placement order must be a permutation of 0..{geometry.arrays - 1}"
            )


def word_cells(
    words: torch.Tensor, bits: int, geometry: MemoryGeometry, placement: Placement | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(array, row, column) of every stored bit of the words with indices ``words``.

    Returns three int64 tensors of shape ``(*words.shape, bits)``; entry ``[..., b]`` is the cell
    holding bit b of that word.
    """
    placement = placement or Placement()
    placement.check(geometry)
    per_row = geometry.words_per_row(bits)
    position = (words.to(torch.int64) + placement.offset) % geometry.capacity(bits)
    row_global, slot = position // per_row, position % per_row
    array, row = row_global // geometry.rows, row_global % geometry.rows
    if placement.order is not None:
        array = torch.tensor(placement.order, dtype=torch.int64)[array]
    bit = torch.arange(bits, dtype=torch.int64)
    column = slot.unsqueeze(-1) * bits + bit
    shape = column.shape
    return array.unsqueeze(-1).expand(shape), row.unsqueeze(-1).expand(shape), column


def cell_index(
    array: torch.Tensor, row: torch.Tensor, column: torch.Tensor, geometry: MemoryGeometry
) -> torch.Tensor:
    """Flat index of cells into a row-major (arrays, rows, columns) map."""
    return (array * geometry.rows + row) * geometry.columns + column


def stored_bit_cells(
    start: int,
    count: int,
    bits: int,
    geometry: MemoryGeometry,
    placement: Placement | None = None,
) -> torch.Tensor:
    """Flat cell index (int64, shape ``(count, bits)``) of words ``start .. start + count - 1``."""
    words = torch.arange(start, start + count, dtype=torch.int64)
    return cell_index(*word_cells(words, bits, geometry, placement), geometry)


def cell_to_word(
    array: torch.Tensor,
    row: torch.Tensor,
    column: torch.Tensor,
    bits: int,
    geometry: MemoryGeometry,
    placement: Placement | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`word_cells`: the word in [0, K) and bit stored in each cell.

    Cells in unused columns (beyond ``floor(C/m)·m``) give word and bit −1. With tiling, words
    ``w + K``, ``w + 2K``, ... share the cell of the returned word ``w``.
    """
    placement = placement or Placement()
    placement.check(geometry)
    per_row = geometry.words_per_row(bits)
    array = array.to(torch.int64)
    if placement.order is not None:
        inverse = torch.empty(geometry.arrays, dtype=torch.int64)
        inverse[torch.tensor(placement.order, dtype=torch.int64)] = torch.arange(geometry.arrays)
        array = inverse[array]
    slot, bit = column.to(torch.int64) // bits, column.to(torch.int64) % bits
    position = (array * geometry.rows + row.to(torch.int64)) * per_row + slot
    capacity = geometry.capacity(bits)
    word = (position - placement.offset) % capacity
    unused = slot >= per_row
    return torch.where(unused, -1, word), torch.where(unused, -1, bit)


def word_ranges(qmodel: QuantizedModel) -> dict[str, tuple[int, int]]:
    """Parameter name -> (first word, number of words) in the model's word stream."""
    ranges, start = {}, 0
    for name, qt in qmodel.tensors.items():
        ranges[name] = (start, qt.codes.numel())
        start += qt.codes.numel()
    return ranges


def model_cells(
    qmodel: QuantizedModel,
    geometry: MemoryGeometry,
    placement: Placement | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Parameter name -> flat cell index of every stored bit, shape ``(*codes.shape, m)``."""
    bits = qmodel.scheme.bits
    mixed = sorted(name for name, qt in qmodel.tensors.items() if qt.scheme.bits != bits)
    if mixed:
        raise BitrobustError(
            f"the memory layout packs {bits}-bit words, but {', '.join(mixed[:3])} "
            "use another bit width (mixed widths are not supported)"
        )
    cells = {}
    for name, (start, count) in word_ranges(qmodel).items():
        if names is not None and name not in names:
            continue
        shape = qmodel.tensors[name].codes.shape
        cells[name] = stored_bit_cells(start, count, bits, geometry, placement).reshape(
            *shape, bits
        )
    return cells
