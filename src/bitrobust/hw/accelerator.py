"""Accelerator geometries (which PE computes each MAC) and permanent stuck-at faults in PEs.

A layer's GEMM multiplies activations by W[K×M] (K inputs, M outputs; see
:mod:`bitrobust.hw.emulate`). An :class:`Accelerator` maps each weight position (k, m) to the
processing element that computes every product with that weight, for every input:

- :class:`SystolicArray` (TPU-like, weight stationary, N×N): W is tiled onto the array, so
  W[k, m] sits in PE (k mod N, m mod N), id ``(k mod N)·N + (m mod N)``. Partial sums run down a
  column through N rows (one tile of k) and are then added exactly in the accumulators.
- :class:`GPUArray` (U multiplier units, round robin): the MACs of a layer, flattened output
  major, go to the units in turn: MAC (k, m) → unit ``(m·K + k) mod U``, the same for every
  input row (the schedule repeats for each row). A thread's partial sum runs over all K.

:class:`PEFaults` is a :class:`~bitrobust.faults.FaultModel` like every other fault source: a
seeded random fraction of PEs gets bit b of its product (or of its partial-sum output) stuck at
0 or 1. It samples from a model deployed on an accelerator (its
:class:`~bitrobust.faults.FaultTarget` carries an :class:`AcceleratorLayout`), and its pattern
holds one :class:`~bitrobust.hw.emulate.LayerFault` per affected layer; so it composes with
memory faults: ``RandomBitErrors(p) + PEFaults(...)``. The faulty PEs for a seed are the first
⌊rate·PEs⌉ of one seeded permutation (:class:`FaultMap`), so a lower rate's PEs are a subset of
a higher rate's and every bit position and stuck-at value sees the same PEs.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from bitrobust.bits import stable_seed
from bitrobust.errors import BitrobustError, check_rate
from bitrobust.faults import FaultModel, FaultPattern, FaultTarget, as_target
from bitrobust.hw.emulate import ACCUMULATOR_BITS, PRODUCT_BITS, SITES, LayerFault, check_bit
from bitrobust.quant import QuantizedModel

ARRAYS = ("tpu", "gpu")


class Accelerator(ABC):
    """Where each MAC of a GEMM runs: ``pe_index(K, M)`` gives a PE id per weight position."""

    @property
    @abstractmethod
    def num_pes(self) -> int: ...

    @property
    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    def pe_index(self, K: int, M: int) -> torch.Tensor:
        """PE id (int64, K×M) of the MAC that multiplies by W[k, m]."""

    @abstractmethod
    def segment(self, K: int) -> int:
        """How many consecutive k a partial sum passes through before it is stored."""


def _check_positive(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BitrobustError(f"{name} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class SystolicArray(Accelerator):
    """N×N weight-stationary systolic array: W[k, m] in PE (k mod N, m mod N)."""

    size: int = 16

    def __post_init__(self) -> None:
        _check_positive(self.size, "array size")

    @property
    def num_pes(self) -> int:
        return self.size * self.size

    @property
    def name(self) -> str:
        return f"tpu{self.size}"

    def pe_index(self, K: int, M: int) -> torch.Tensor:
        rows = torch.arange(K) % self.size
        cols = torch.arange(M) % self.size
        return rows[:, None] * self.size + cols[None, :]

    def segment(self, K: int) -> int:
        return self.size


@dataclass(frozen=True)
class GPUArray(Accelerator):
    """U multiplier units served round robin: MAC (k, m) on unit (m·K + k) mod U."""

    units: int = 256

    def __post_init__(self) -> None:
        _check_positive(self.units, "number of units")

    @property
    def num_pes(self) -> int:
        return self.units

    @property
    def name(self) -> str:
        return f"gpu{self.units}"

    def pe_index(self, K: int, M: int) -> torch.Tensor:
        k = torch.arange(K)[:, None]
        m = torch.arange(M)[None, :]
        return (m * K + k) % self.units

    def segment(self, K: int) -> int:
        return K


def make_accelerator(kind: str, size: int) -> Accelerator:
    """``tpu`` → :class:`SystolicArray` (size N), ``gpu`` → :class:`GPUArray` (size = units)."""
    if kind == "tpu":
        return SystolicArray(size)
    if kind == "gpu":
        return GPUArray(size)
    raise BitrobustError(f"unknown array {kind!r}; choose from: {', '.join(ARRAYS)}")


@dataclass(frozen=True, eq=False)
class FaultMap:
    """Faulty PEs of one accelerator with their stuck-at bit: one sampled pattern.

    ``faulty`` is a bool tensor over PE ids. ``layer`` (a module name of the converted model)
    restricts the faults to that layer's MACs; None means every layer.
    """

    accelerator: Accelerator
    faulty: torch.Tensor
    bit: int
    stuck_at: int
    site: str = "product"
    layer: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.faulty.dtype != torch.bool or self.faulty.shape != (self.accelerator.num_pes,):
            raise ValueError(f"faulty must be bool of shape ({self.accelerator.num_pes},)")
        if self.site not in SITES:
            raise BitrobustError(f"fault site must be one of {', '.join(SITES)}, got {self.site!r}")
        check_bit(self.bit, PRODUCT_BITS if self.site == "product" else ACCUMULATOR_BITS)
        if self.stuck_at not in (0, 1):
            raise BitrobustError(f"stuck-at value must be 0 or 1, got {self.stuck_at!r}")

    @property
    def num_faulty(self) -> int:
        return int(self.faulty.sum())

    def mask(self, K: int, M: int) -> torch.Tensor:
        """Which MACs of a K×M GEMM run on a faulty PE (bool, K×M)."""
        return self.faulty[self.accelerator.pe_index(K, M)]

    def layer_fault(self, layer: str, K: int, M: int) -> LayerFault | None:
        """The faults layer ``layer`` (K×M) sees, or None if none of its MACs are faulty."""
        if self.layer is not None and self.layer != layer:
            return None
        mask = self.mask(K, M)
        if not bool(mask.any()):
            return None
        return LayerFault(
            mask=mask,
            bit=self.bit,
            stuck_at=self.stuck_at,
            site=self.site,
            segment=self.accelerator.segment(K),
        )


@dataclass(frozen=True, eq=False)
class AcceleratorLayout:
    """Where a deployed model's GEMMs run: the PE array and each emulated layer's K×M shape
    (module name → (K, M)), in forward order. What PE faults need to be sampled."""

    accelerator: Accelerator
    layers: Mapping[str, tuple[int, int]]


@dataclass(frozen=True, eq=False)
class PEFaults(FaultModel):
    """Fault model: bit ``bit`` stuck at ``stuck_at`` in a fraction ``rate`` of the PEs.

    ``site`` is ``"product"`` (bit 0..15 of the 16-bit product) or ``"accumulator"`` (bit 0..31
    of the int32 partial sum the PE outputs); ``layer`` optionally confines the faults to one
    layer's MACs (layer-wise analysis).
    """

    rate: float
    bit: int
    stuck_at: int
    site: str = "product"
    layer: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", check_rate(self.rate, "fault rate"))
        if self.site not in SITES:
            raise BitrobustError(f"fault site must be one of {', '.join(SITES)}, got {self.site!r}")
        check_bit(self.bit, PRODUCT_BITS if self.site == "product" else ACCUMULATOR_BITS)
        if isinstance(self.stuck_at, bool) or self.stuck_at not in (0, 1):
            raise BitrobustError(f"stuck-at value must be 0 or 1, got {self.stuck_at!r}")

    @property
    def name(self) -> str:
        """All parameters, e.g. ``pe-sa1-b14-product-r0.3`` (+ ``-layer<name>``)."""
        name = f"pe-sa{self.stuck_at}-b{self.bit}-{self.site}-r{self.rate!r}"
        return name if self.layer is None else f"{name}-layer{self.layer}"

    def sample(self, target: QuantizedModel | FaultTarget, seed: int) -> FaultPattern:
        """The datapath faults of a deployed model for ``seed``: each layer's MACs on the
        faulty PEs of :meth:`fault_map`."""
        layout = as_target(target).datapath
        if not isinstance(layout, AcceleratorLayout):
            raise BitrobustError(
                f"{self.name} needs a model deployed on an emulated accelerator "
                "(bitrobust.hw.deploy.deploy), not a model layout without a PE array"
            )
        if self.layer is not None and self.layer not in layout.layers:
            raise BitrobustError(
                f"no emulated layer named {self.layer!r}; layers: {', '.join(layout.layers)}"
            )
        fault_map = self.fault_map(layout.accelerator, seed)
        datapath = {}
        for name, (K, M) in layout.layers.items():
            fault = fault_map.layer_fault(name, K, M)
            if fault is not None:
                datapath[name] = fault
        return FaultPattern(datapath=datapath)

    def fault_map(self, accelerator: Accelerator, seed: int) -> FaultMap:
        """The faulty PEs for ``seed``: the first ⌊rate·PEs⌉ PEs of a seeded permutation."""
        return FaultMap(
            accelerator=accelerator,
            faulty=faulty_pes(accelerator.num_pes, self.rate, seed),
            bit=self.bit,
            stuck_at=self.stuck_at,
            site=self.site,
            layer=self.layer,
            seed=seed,
        )


def faulty_pes(num_pes: int, rate: float, seed: int) -> torch.Tensor:
    """Bool mask of ⌊rate·num_pes⌉ PEs, drawn by a permutation that depends on the seed and
    the number of PEs only (nested across rates)."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(stable_seed("pe-faults", num_pes, int(seed)))
    order = torch.randperm(num_pes, generator=generator)
    count = math.floor(check_rate(rate, "fault rate") * num_pes + 0.5)
    faulty = torch.zeros(num_pes, dtype=torch.bool)
    faulty[order[:count]] = True
    return faulty
