"""Memory fault models: (quantized model layout, seed) -> fault pattern on the stored bits.

A :class:`FaultModel` is a small, pure object with one job, :meth:`FaultModel.sample`, and a
``name`` that encodes all its parameters (campaign trial ids are built from it). A
:class:`FaultPattern` is a set of XOR masks on the codes; applying it never mutates the
quantized model. Fault models compose with ``+``: ``a + b`` applies ``b`` on top of ``a``.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from bitrobust.bits import flip_mask, popcount, stable_seed, uniform_draws
from bitrobust.errors import BitrobustError, check_rate
from bitrobust.quant import QuantizedModel


@dataclass(frozen=True, eq=False)
class FaultPattern:
    """Parameter name -> uint8 XOR mask on that parameter's codes (names may be a subset)."""

    masks: Mapping[str, torch.Tensor]

    def apply(self, qmodel: QuantizedModel) -> QuantizedModel:
        """A new quantized model with ``codes ^ mask`` for every masked parameter."""
        new_codes = {}
        for name, mask in self.masks.items():
            if name not in qmodel.tensors:
                raise BitrobustError(f"fault pattern names unknown parameter {name!r}")
            qt = qmodel.tensors[name]
            if mask.shape != qt.codes.shape or mask.dtype != torch.uint8:
                raise ValueError(
                    f"mask for {name!r} must be uint8 of shape {tuple(qt.codes.shape)}, "
                    f"got {mask.dtype} {tuple(mask.shape)}"
                )
            if bool((mask & qt.protected_mask).any()):
                raise ValueError(f"mask for {name!r} flips protected bits")
            new_codes[name] = qt.codes ^ mask.to(qt.codes.device)
        return qmodel.with_codes(new_codes)

    def num_flips(self) -> int:
        """Total number of flipped bits."""
        return sum(int(popcount(mask).sum()) for mask in self.masks.values())

    def combine(self, other: FaultPattern) -> FaultPattern:
        """The pattern of applying ``self`` and then ``other`` (masks XOR)."""
        masks = dict(self.masks)
        for name, mask in other.masks.items():
            masks[name] = masks[name] ^ mask if name in masks else mask
        return FaultPattern(masks)


class FaultModel(ABC):
    """(quantized model layout, seed) -> :class:`FaultPattern`. Pure: same inputs, same pattern."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Encodes every parameter; used as trial id."""

    @abstractmethod
    def sample(self, qmodel: QuantizedModel, seed: int) -> FaultPattern:
        """The fault pattern for this model layout and seed."""

    def __call__(self, qmodel: QuantizedModel, seed: int) -> QuantizedModel:
        return self.sample(qmodel, seed).apply(qmodel)

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


class RandomBitErrors(FaultModel):
    """I.i.d. random bit errors (Stutz et al. §1.4), with separate 0→1 and 1→0 rates.

    Every stored bit gets one uniform draw from ``stable_seed(seed, parameter name)`` and flips
    if the draw is below the rate for its current value. So a tensor's pattern depends only on
    the seed and its own name, and for one seed the flips at a lower rate are a subset of those
    at a higher rate. Protected bits (m..7 for m < 8) never flip.
    """

    def __init__(
        self,
        bit_error_rate: float | None = None,
        *,
        zero_to_one: float | None = None,
        one_to_zero: float | None = None,
    ) -> None:
        if bit_error_rate is None and zero_to_one is None and one_to_zero is None:
            raise BitrobustError("give bit_error_rate, or zero_to_one and/or one_to_zero")
        base = 0.0 if bit_error_rate is None else check_rate(bit_error_rate, "bit_error_rate")
        self._zero_to_one = base if zero_to_one is None else check_rate(zero_to_one, "zero_to_one")
        self._one_to_zero = base if one_to_zero is None else check_rate(one_to_zero, "one_to_zero")

    @property
    def zero_to_one(self) -> float:
        return self._zero_to_one

    @property
    def one_to_zero(self) -> float:
        return self._one_to_zero

    @property
    def name(self) -> str:
        return f"random_bit_errors(p01={self._zero_to_one!r},p10={self._one_to_zero!r})"

    def sample(self, qmodel: QuantizedModel, seed: int) -> FaultPattern:
        _check_seed(seed)
        masks = {}
        for name, qt in qmodel.tensors.items():
            if self._zero_to_one == 0.0 and self._one_to_zero == 0.0:
                masks[name] = torch.zeros_like(qt.codes)
                continue
            draws = uniform_draws(qt.codes.shape, stable_seed(seed, name), device=qt.codes.device)
            masks[name] = flip_mask(
                qt.codes, draws, self._zero_to_one, self._one_to_zero, qt.protected_mask
            )
        return FaultPattern(masks)


class ComposedFaults(FaultModel):
    """Fault models applied one after the other; each sees the codes its predecessors left.

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

    def sample(self, qmodel: QuantizedModel, seed: int) -> FaultPattern:
        _check_seed(seed)
        pattern = FaultPattern({})
        current = qmodel
        for index, model in enumerate(self.models):
            step = model.sample(current, stable_seed(seed, index))
            current = step.apply(current)
            pattern = pattern.combine(step)
        return pattern


def _check_seed(seed: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise BitrobustError(f"seed must be an integer, got {seed!r}")
