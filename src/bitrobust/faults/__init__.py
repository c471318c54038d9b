"""Memory fault models: (quantized model layout, seed) -> fault pattern on the stored bits.

- :mod:`bitrobust.faults.core`: :class:`FaultPattern`, the :class:`FaultModel` interface,
  :class:`RandomBitErrors` (i.i.d., separate 0→1 and 1→0 rates) and :class:`ComposedFaults`
  (``a + b``).
- :mod:`bitrobust.faults.memory`: where each stored bit lives in SRAM arrays (word layout,
  seeded placements).
- :mod:`bitrobust.faults.sram`: low-voltage SRAM chips (per-cell fail voltage and fail value),
  synthetic chips, the chip file format, :class:`VoltageErrorCurve` and :class:`ProfiledSRAM`.
"""

from bitrobust.faults.core import (
    ComposedFaults,
    FaultModel,
    FaultPattern,
    FaultTarget,
    RandomBitErrors,
    StuckAtCells,
    as_target,
)
from bitrobust.faults.sram import (
    CHIP_FORMAT,
    PLACEMENTS,
    ProfiledSRAM,
    SRAMChip,
    VoltageErrorCurve,
    load_chip,
    make_chip,
    save_chip,
)

__all__ = [
    "CHIP_FORMAT",
    "PLACEMENTS",
    "ComposedFaults",
    "FaultModel",
    "FaultPattern",
    "FaultTarget",
    "ProfiledSRAM",
    "RandomBitErrors",
    "SRAMChip",
    "StuckAtCells",
    "VoltageErrorCurve",
    "as_target",
    "load_chip",
    "make_chip",
    "save_chip",
]
