"""Memory fault models: (quantized model layout, seed) -> fault pattern on the stored bits.

A :class:`FaultModel` is a small, pure object with one job, :meth:`FaultModel.sample`, and a
``name`` that encodes all its parameters (campaign trial ids are built from it). A
:class:`FaultPattern` is a set of XOR masks on the codes; applying it never mutates the
quantized model. Fault models compose with ``+``: ``a + b`` applies ``b`` on top of ``a``.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from bitrobust.bits import (
    SORTED_BELOW,
    candidate_flips,
    dense_mask,
    flip_candidates,
    flip_mask,
    merge_flips,
    popcount,
    sorted_distinct,
    stable_seed,
    uniform_draws,
)
from bitrobust.errors import BitrobustError, check_rate
from bitrobust.quant import QuantizedModel


class SparseMask(NamedTuple):
    """A mask kept sparse: the mask byte ``values[i]`` at flat index ``index[i]`` (sorted,
    distinct), zero elsewhere; the dense mask has ``shape`` and lives on ``device``."""

    index: torch.Tensor
    values: torch.Tensor
    shape: torch.Size
    device: torch.device


class SparseMasks(Mapping[str, torch.Tensor]):
    """XOR masks by parameter name, each a tensor or a :class:`SparseMask`. A sparse one becomes
    a dense tensor only when it is looked up (then kept), so a pattern of a few flips in a
    large model never costs O(size) unless asked to."""

    def __init__(self, masks: Mapping[str, torch.Tensor | SparseMask]) -> None:
        self._masks = dict(masks)

    def sparse(self, name: str) -> SparseMask | None:
        """The mask of ``name`` if it is still sparse, else None."""
        mask = self._masks[name]
        return mask if isinstance(mask, SparseMask) else None

    def __getitem__(self, name: str) -> torch.Tensor:
        mask = self._masks[name]
        if isinstance(mask, SparseMask):
            dense = dense_mask(mask.shape.numel(), mask.index, mask.values)
            mask = self._masks[name] = dense.reshape(mask.shape).to(mask.device)
        return mask

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def __contains__(self, name: object) -> bool:
        return name in self._masks


SPARSE_MIN_CODES = 2**16
"""A sampled mask of at least this many codes stays sparse (:class:`SparseMasks`) when the
largest rate is below :data:`~bitrobust.bits.SORTED_BELOW`: its candidates come sorted, so
merging the flips (O(flips)) costs less than clearing a dense mask (O(codes)). Chosen by
measurement (``benchmarks/bench_sparse_sampling.py``)."""


@dataclass(frozen=True, eq=False)
class FaultPattern:
    """One sampled fault pattern.

    ``masks``: parameter name -> uint8 XOR mask on that parameter's codes (names may be a
    subset); a :class:`SparseMasks` keeps some of them sparse. ``touched``: optionally, for a
    masked name, the flat indices of its nonzero mask entries (sparse samplers know them), so
    that faulty weights cost O(flips) to decode. ``datapath``: per-layer faults of an emulated
    accelerator's datapath, layer name -> the fault its layers understand (see
    :mod:`bitrobust.hw`); empty for memory-only faults.
    """

    masks: Mapping[str, torch.Tensor] = field(default_factory=dict)
    touched: Mapping[str, torch.Tensor] = field(default_factory=dict)
    datapath: Mapping[str, Any] = field(default_factory=dict)

    def _sparse(self, name: str) -> SparseMask | None:
        return self.masks.sparse(name) if isinstance(self.masks, SparseMasks) else None

    def _check(self, qmodel: QuantizedModel, name: str) -> None:
        """The mask of ``name`` fits ``qmodel``'s codes (without making a sparse mask dense)."""
        if name not in qmodel.tensors:
            raise BitrobustError(f"fault pattern names unknown parameter {name!r}")
        qt, sparse = qmodel.tensors[name], self._sparse(name)
        if sparse is None:
            mask = self.masks[name]
            shape, dtype, bytes_ = mask.shape, mask.dtype, mask
        else:
            shape, dtype, bytes_ = sparse.shape, sparse.values.dtype, sparse.values
        if shape != qt.codes.shape or dtype != torch.uint8:
            raise ValueError(
                f"mask for {name!r} must be uint8 of shape {tuple(qt.codes.shape)}, "
                f"got {dtype} {tuple(shape)}"
            )
        if qt.protected_mask and bool((bytes_ & qt.protected_mask).any()):
            raise ValueError(f"mask for {name!r} flips protected bits")

    def _checked_mask(self, qmodel: QuantizedModel, name: str) -> torch.Tensor:
        self._check(qmodel, name)
        return self.masks[name].to(qmodel.tensors[name].codes.device)

    def apply(self, qmodel: QuantizedModel) -> QuantizedModel:
        """A new quantized model with ``codes ^ mask`` for every masked parameter."""
        new_codes = {}
        for name in self.masks:
            mask = self._checked_mask(qmodel, name)
            new_codes[name] = qmodel.tensors[name].codes ^ mask
        return qmodel.with_codes(new_codes)

    def _flipped_values(
        self, qmodel: QuantizedModel, name: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The touched flat indices of ``name`` and the faulty weights there (decoded)."""
        qt, sparse = qmodel.tensors[name], self._sparse(name)
        device = qt.codes.device
        if sparse is not None:
            index, flips = sparse.index.to(device), sparse.values.to(device)
        else:
            index = self.touched[name].to(device)
            flips = self.masks[name].to(device).reshape(-1).index_select(0, index)
        codes = qt.codes.reshape(-1).index_select(0, index)
        return index, qt.decode(codes.bitwise_xor_(flips))

    def _decoded(self, qmodel: QuantizedModel, name: str) -> torch.Tensor:
        """All faulty weights of ``name`` from its dense mask (checked already)."""
        qt = qmodel.tensors[name]
        return qt.decode(qt.codes ^ self.masks[name].to(qt.codes.device))

    def _is_sparse(self, name: str) -> bool:
        return name in self.touched or self._sparse(name) is not None

    def parameters(self, qmodel: QuantizedModel) -> dict[str, torch.Tensor]:
        """The faulty float parameters, equal to ``self.apply(qmodel).dequantized()``.

        Starts from the clean weights and decodes only the flipped codes where their indices
        are known (``touched``); unflipped tensors are the shared clean ones (read only).
        """
        parameters = dict(qmodel.clean_parameters())
        for name in self.masks:
            self._check(qmodel, name)
            qt = qmodel.tensors[name]
            if not self._is_sparse(name):
                parameters[name] = self._decoded(qmodel, name)
                continue
            index, values = self._flipped_values(qmodel, name)
            if len(index) == 0:
                continue
            flat = parameters[name].reshape(-1).clone()
            flat.index_copy_(0, index, values)  # repeated indices: equal values
            parameters[name] = flat.reshape(qt.codes.shape)
        return parameters

    def write_into(
        self, qmodel: QuantizedModel, weights: MutableMapping[str, torch.Tensor]
    ) -> Callable[[], None]:
        """Write this pattern's faulty values into ``weights`` in place and return the function
        that puts the previous values back.

        ``weights`` holds ``qmodel``'s clean dequantized tensors (a copy of
        :meth:`~bitrobust.quant.QuantizedModel.clean_parameters`, or a module's parameters):
        contiguous, shaped like the codes. Where the flipped indices are known (``touched``)
        both ways cost O(flips), with no copy of the weights: for loops that run many patterns
        through one set of weights, large models at low rates above all. Call the returned
        function before writing the next pattern.
        """
        for name in self.masks:  # every check before the first write
            self._check(qmodel, name)
            shape = qmodel.tensors[name].codes.shape
            if name not in weights or weights[name].shape != shape:
                got = tuple(weights[name].shape) if name in weights else "nothing"
                raise ValueError(f"weights[{name!r}] must have shape {tuple(shape)}, got {got}")
        undo: list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]] = []
        with torch.no_grad():
            for name in self.masks:
                flat = weights[name].view(-1)
                if not self._is_sparse(name):
                    undo.append((flat, None, flat.clone()))
                    flat.copy_(self._decoded(qmodel, name).reshape(-1))
                    continue
                index, values = self._flipped_values(qmodel, name)
                if len(index) == 0:
                    continue
                undo.append((flat, index, flat.index_select(0, index)))
                flat.index_copy_(0, index, values.to(flat.dtype))

        def restore() -> None:
            with torch.no_grad():
                for flat, index, previous in reversed(undo):
                    if index is None:
                        flat.copy_(previous)
                    else:
                        flat.index_copy_(0, index, previous)
            undo.clear()

        return restore

    def num_flips(self) -> int:
        """Total number of flipped bits (counted where the mask is nonzero when known)."""
        total = 0
        for name in self.masks:
            sparse = self._sparse(name)
            if sparse is not None:
                total += int(popcount(sparse.values).sum())
                continue
            mask = self.masks[name]
            if name in self.touched:
                index = sorted_distinct(self.touched[name].cpu()).to(mask.device)
                total += int(popcount(mask.reshape(-1)[index]).sum())
            else:
                total += int(popcount(mask).sum())
        return total

    def combine(self, other: FaultPattern) -> FaultPattern:
        """The pattern of applying ``self`` and then ``other`` (masks XOR, datapath faults of
        ``other`` added; a layer may hold one datapath fault)."""
        masks = dict(self.masks)
        for name, mask in other.masks.items():
            masks[name] = masks[name] ^ mask if name in masks else mask
        touched = {}
        for name in masks:  # sparse only where every part that masks the name is sparse
            parts = [part.touched.get(name) for part in (self, other) if name in part.masks]
            if all(indices is not None for indices in parts):
                touched[name] = sorted_distinct(torch.cat(parts))  # type: ignore[arg-type]
        clash = sorted(set(self.datapath) & set(other.datapath))
        if clash:
            raise BitrobustError(f"two datapath faults on layer(s) {', '.join(clash)}")
        return FaultPattern(masks, touched, {**self.datapath, **other.datapath})


@dataclass(frozen=True, eq=False)
class FaultTarget:
    """What a fault model samples a pattern for: the stored codes (``qmodel``) and, for a
    model deployed on an emulated accelerator, its datapath layout (``datapath``: the PE array
    and each layer's GEMM shape, see :class:`bitrobust.hw.accelerator.AcceleratorLayout`)."""

    qmodel: QuantizedModel
    datapath: Any = None


def as_target(target: QuantizedModel | FaultTarget) -> FaultTarget:
    """A :class:`FaultTarget` for a quantized model (memory only) or the target itself."""
    if isinstance(target, FaultTarget):
        return target
    if isinstance(target, QuantizedModel):
        return FaultTarget(target)
    raise TypeError(f"expected a QuantizedModel or FaultTarget, got {type(target).__name__}")


class FaultModel(ABC):
    """(target, seed) -> :class:`FaultPattern`. Pure: same inputs, same pattern.

    The one contract of every fault source: a ``name`` that encodes every parameter (trial ids
    are built from it), :meth:`sample`, and composition with ``+``. The target is a
    :class:`~bitrobust.quant.QuantizedModel` (memory faults) or a :class:`FaultTarget`, which
    adds the datapath layout that processing-element faults need.
    """

    @property
    @abstractmethod
    def name(self) -> str:
        """Encodes every parameter; used as trial id."""

    @abstractmethod
    def sample(self, target: QuantizedModel | FaultTarget, seed: int) -> FaultPattern:
        """The fault pattern for this target and seed."""

    def __call__(self, target: QuantizedModel | FaultTarget, seed: int) -> QuantizedModel:
        """The faulty stored codes (memory faults only; datapath faults act in a trial)."""
        qmodel = as_target(target).qmodel
        return self.sample(target, seed).apply(qmodel)

    def __add__(self, other: FaultModel) -> FaultModel:
        if not isinstance(other, FaultModel):
            return NotImplemented
        return ComposedFaults(self, other)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.name == other.name  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.name))

    def __repr__(self) -> str:
        return self.name


SAMPLER_VERSION = 2
"""The random bit error sampler a :class:`RandomBitErrors` uses unless told otherwise.

1: one uniform draw per stored bit (:func:`~bitrobust.bits.uniform_draws`), O(all bits); the
committed results made before version 0.2 used it. 2: only the draws below the rate
(:func:`~bitrobust.bits.flip_candidates`), O(flips). Both are i.i.d. per bit with the same
distribution, nested across rates and deterministic; the same seed gives different patterns."""


class RandomBitErrors(FaultModel):
    """I.i.d. random bit errors (Stutz et al. §1.4), with separate 0→1 and 1→0 rates.

    Every stored bit conceptually gets one uniform draw from ``stable_seed(seed, parameter
    name)`` and flips if the draw is below the rate for its current value. So a tensor's
    pattern depends only on the seed and its own name, and for one seed the flips at a lower
    rate are a subset of those at a higher rate. Protected bits (m..7 for m < 8) never flip.

    ``layers`` limits the errors to parameters whose name is, or starts with, one of the given
    module names (``"fc1"`` covers ``fc1.weight`` and ``fc1.bias``); ``bits`` to bit positions
    of the m-bit value, 0 the LSB and negative counting from the MSB (``bits=[-1]``: MSB only,
    as in Stutz et al.'s official code). A restricted pattern is the unrestricted one for the
    same seed with the other flips removed. ``sampler`` picks the sampler version
    (:data:`SAMPLER_VERSION`); it is part of the name.
    """

    def __init__(
        self,
        bit_error_rate: float | None = None,
        *,
        zero_to_one: float | None = None,
        one_to_zero: float | None = None,
        layers: Collection[str] | None = None,
        bits: Collection[int] | None = None,
        sampler: int = SAMPLER_VERSION,
    ) -> None:
        if bit_error_rate is None and zero_to_one is None and one_to_zero is None:
            raise BitrobustError("give bit_error_rate, or zero_to_one and/or one_to_zero")
        base = 0.0 if bit_error_rate is None else check_rate(bit_error_rate, "bit_error_rate")
        self._zero_to_one = base if zero_to_one is None else check_rate(zero_to_one, "zero_to_one")
        self._one_to_zero = base if one_to_zero is None else check_rate(one_to_zero, "one_to_zero")
        self.layers = _check_names(layers)
        self.bits = _check_bit_positions(bits)
        if sampler not in (1, 2):
            raise BitrobustError(f"unknown random bit error sampler {sampler!r} (known: 1, 2)")
        self.sampler = sampler

    @property
    def zero_to_one(self) -> float:
        return self._zero_to_one

    @property
    def one_to_zero(self) -> float:
        return self._one_to_zero

    @property
    def bit_error_rate(self) -> float:
        """The expected fraction of stored bits that flip when 0s and 1s are equally common:
        (p01 + p10) / 2, which is p for symmetric errors."""
        return (self._zero_to_one + self._one_to_zero) / 2

    @property
    def name(self) -> str:
        parts = [f"p01={self._zero_to_one!r}", f"p10={self._one_to_zero!r}"]
        if self.layers is not None:
            parts.append("layers=" + "|".join(self.layers))
        if self.bits is not None:
            parts.append("bits=" + "|".join(map(str, self.bits)))
        parts.append(f"sampler={self.sampler}")
        return f"random_bit_errors({','.join(parts)})"

    def at_rates(self, zero_to_one: float, one_to_zero: float) -> RandomBitErrors:
        """The same fault model (restrictions, sampler) at other rates."""
        return RandomBitErrors(
            zero_to_one=zero_to_one,
            one_to_zero=one_to_zero,
            layers=self.layers,
            bits=self.bits,
            sampler=self.sampler,
        )

    def covers(self, name: str) -> bool:
        """Whether parameter ``name`` is in the layers this model faults."""
        if self.layers is None:
            return True
        return any(name == layer or name.startswith(layer + ".") for layer in self.layers)

    def allowed_bits(self, value_bits: int) -> int:
        """Mask of the code bits this model may flip in a ``value_bits``-wide value."""
        if self.bits is None:
            return 0xFF
        mask = 0
        for bit in self.bits:
            position = bit + value_bits if bit < 0 else bit
            if 0 <= position < value_bits:
                mask |= 1 << position
        return mask

    def sample(self, target: QuantizedModel | FaultTarget, seed: int) -> FaultPattern:
        return self.sample_rates(target, seed, [self])[0]

    def sample_rates(
        self,
        target: QuantizedModel | FaultTarget,
        seed: int,
        models: Sequence[RandomBitErrors],
    ) -> list[FaultPattern]:
        """The patterns of several rates of this model for one seed, from one draw.

        Each equals ``model.sample(qmodel, seed)``; the candidate flips are drawn once at the
        largest rate and thresholded for each (sampler 2), which is what makes a sweep cheap.
        """
        _check_seed(seed)
        qmodel = as_target(target).qmodel
        for model in models:
            if model.at_rates(0, 0) != self.at_rates(0, 0):
                raise BitrobustError(f"{model.name} differs from {self.name} in more than rates")
        patterns: list[dict[str, torch.Tensor | SparseMask]] = [{} for _ in models]
        touched: list[dict[str, torch.Tensor]] = [{} for _ in models]
        top = max((max(m.zero_to_one, m.one_to_zero) for m in models), default=0.0)
        for name, qt in qmodel.tensors.items():
            if not self.covers(name):
                continue
            value_bits = 8 - bin(qt.protected_mask).count("1")
            allowed = self.allowed_bits(value_bits) & (0xFF ^ qt.protected_mask)
            codes = qt.codes
            if top == 0.0 or allowed == 0:
                for masks, where in zip(patterns, touched):
                    masks[name] = torch.zeros_like(codes)
                    where[name] = torch.empty(0, dtype=torch.int64)
                continue
            if self.sampler == 1:
                draws = uniform_draws(codes.shape, stable_seed(seed, name), codes.device)
                for model, masks in zip(models, patterns):
                    mask = flip_mask(
                        codes, draws, model.zero_to_one, model.one_to_zero, qt.protected_mask
                    )
                    masks[name] = mask & allowed
                continue
            positions, uniforms = flip_candidates(
                codes.numel() * value_bits, top, stable_seed("sampler-2", seed, name)
            )
            for model, masks, where in zip(models, patterns, touched):
                index, values = candidate_flips(
                    codes, value_bits, positions, uniforms,
                    model.zero_to_one, model.one_to_zero, allowed,
                )  # fmt: skip
                if top < SORTED_BELOW and codes.numel() >= SPARSE_MIN_CODES:
                    index, values = merge_flips(index, values)
                    masks[name] = SparseMask(index, values, codes.shape, codes.device)
                else:
                    mask = dense_mask(codes.numel(), index, values)
                    masks[name] = mask.reshape(codes.shape).to(codes.device)
                where[name] = index
        return [FaultPattern(SparseMasks(masks), where) for masks, where in zip(patterns, touched)]


class StuckAtCells(FaultModel):
    """Permanently stuck memory cells (e.g. manufacturing defects or wear-out), independent of
    the supply voltage: each stored bit's cell is stuck with probability ``rate``, at 1 with
    probability ``stuck_at_one`` and else at 0. A stuck cell changes the stored bit only when
    it holds the other value, so a stored 0 flips with probability ``rate · stuck_at_one`` and a
    stored 1 with ``rate · (1 − stuck_at_one)``: :class:`RandomBitErrors` with those rates,
    drawn from their own seed stream. ``layers`` and ``bits`` restrict the cells as there.
    """

    def __init__(
        self,
        rate: float,
        stuck_at_one: float = 0.5,
        *,
        layers: Collection[str] | None = None,
        bits: Collection[int] | None = None,
    ) -> None:
        self.rate = check_rate(rate, "stuck cell rate")
        self.stuck_at_one = check_rate(stuck_at_one, "stuck_at_one")
        self._errors = RandomBitErrors(
            zero_to_one=self.rate * self.stuck_at_one,
            one_to_zero=self.rate * (1 - self.stuck_at_one),
            layers=layers,
            bits=bits,
        )

    @property
    def bit_error_rate(self) -> float:
        """The probability that a stored bit flips for balanced data: half the stuck cells."""
        return self.rate / 2

    @property
    def name(self) -> str:
        parts = [f"rate={self.rate!r}", f"one={self.stuck_at_one!r}"]
        if self._errors.layers is not None:
            parts.append("layers=" + "|".join(self._errors.layers))
        if self._errors.bits is not None:
            parts.append("bits=" + "|".join(map(str, self._errors.bits)))
        return f"stuck_at_cells({','.join(parts)},sampler={self._errors.sampler})"

    def sample(self, target: QuantizedModel | FaultTarget, seed: int) -> FaultPattern:
        _check_seed(seed)
        return self._errors.sample(target, stable_seed("stuck-at-cells", seed))


def _check_names(names: Collection[str] | None) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, str):
        names = [names]
    checked = tuple(names)
    if not checked or not all(isinstance(name, str) and name for name in checked):
        raise BitrobustError(f"layers must be non-empty layer names, got {names!r}")
    return checked


def _check_bit_positions(bits: Collection[int] | None) -> tuple[int, ...] | None:
    if bits is None:
        return None
    checked = tuple(bits)
    for bit in checked:
        if isinstance(bit, bool) or not isinstance(bit, numbers.Integral) or not -8 <= bit <= 7:
            raise BitrobustError(
                f"bit positions are integers in -8..7 (0 the LSB, -1 the MSB), got {bit!r}"
            )
    if not checked:
        raise BitrobustError("bits must name at least one bit position")
    return tuple(int(bit) for bit in checked)


class ComposedFaults(FaultModel):
    """Fault models applied one after the other; each sees the codes its predecessors left,
    and datapath faults add up (at most one per layer).

    Component i samples with ``stable_seed(seed, i)`` so that equal components do not draw
    identical patterns.
    """

    def __init__(self, *models: FaultModel) -> None:
        flat: list[FaultModel] = []
        for model in models:
            flat.extend(model.models if isinstance(model, ComposedFaults) else [model])
        if not flat:
            raise BitrobustError("compose at least one fault model")
        self.models: tuple[FaultModel, ...] = tuple(flat)

    @property
    def name(self) -> str:
        return "+".join(model.name for model in self.models)

    def sample(self, target: QuantizedModel | FaultTarget, seed: int) -> FaultPattern:
        _check_seed(seed)
        pattern = FaultPattern({})
        current = as_target(target)
        for index, model in enumerate(self.models):
            step = model.sample(current, stable_seed(seed, index))
            if step.masks:
                current = FaultTarget(step.apply(current.qmodel), current.datapath)
            pattern = pattern.combine(step)
        return pattern


def _check_seed(seed: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise BitrobustError(f"seed must be an integer, got {seed!r}")
