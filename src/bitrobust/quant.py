"""Fixed-point weight quantization with the bit layouts of Stutz et al. (MLSys'21, §1.2).

A float tensor becomes integer codes (the bytes as stored in memory) plus what dequantizes
them. Memory faults flip bits of the codes; :meth:`QuantizedTensor.dequantize` clamps like the
paper, so a flipped code can never leave the tensor's range. Schemes (ε = 0.001, m bits,
L = 2^(m−1) − 1):

- symmetric per-layer: q_max = min(max|w| + ε, w_max), Δ = q_max / L;
- symmetric global (fixed range): q_max = w_max (default 1), Δ = (q_max + ε) / L;
- asymmetric per-layer: clamp w to ±w_max, map [min, max] to u ∈ [−1, 1] and quantize u with
  the fixed range q_max = 1 (Δ = 1.001 / L); dequantization inverts the map.

Codes are ``uint8``: offset binary (0 ↦ 2^(m−1)) when ``unsigned``, else the m-bit two's
complement pattern. Bits m..7 are never used ("protected"). Truncation, as the paper's integer
cast, is applied to the stored integer: toward zero for two's complement, and so toward −∞
for offset binary (the cast happens after adding 2^(m−1)).

The :data:`BINARY` scheme stores the weights of binarized networks as 1-bit codes: bit 0 is 1
for +1 (w > 0) and 0 for −1, bits 1..7 are protected, and a bit flip is a sign change.

Which parameters are stored, and with which scheme, is decided per parameter by
:func:`parameter_schemes`: a module may declare a ``quantization_scheme`` for the parameters
it holds (binarized layers declare :data:`BINARY`; a binarized network declares ``None`` so that
its batch norm stays float, outside the faulty memory).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bitrobust import bits as _bits
from bitrobust.errors import BitrobustError, check_bits
from bitrobust.names import QUANT_PRESETS

EPSILON = 0.001
"""Added to the range so that the largest weight maps strictly inside it (paper's ε)."""

PRESETS = QUANT_PRESETS

_FLAGS = ("per_layer", "symmetric", "unsigned", "rounding", "binary", "affine")
BINARY_NAME = "binary"
_NAME_RE = re.compile(
    r"q(?P<bits>\d+)-(?P<range>perlayer|global)-(?P<sym>sym|asym|affine)-(?P<unsigned>unsigned|signed)"
    r"-(?P<round>round|trunc)(?:-wmax(?P<w_max>.+))?"
)


@dataclass(frozen=True)
class QuantScheme:
    """How floats become stored codes: bit width, range, symmetry, layout and rounding.

    ``w_max`` caps the per-layer range (the paper's clipped adaptive quantization) or, for the
    global scheme, is the fixed range q_max (``None`` becomes 1.0).

    ``affine=True`` is the operand format of an 8-bit multiplier (TFLite/TFApprox style, per
    tensor): unsigned asymmetric uint8, w ≈ Δ·(code − zero point) with the range widened to
    contain 0 so that 0 is exact; or signed symmetric int8, w ≈ Δ·code with codes −127..127
    in two's complement. Every bit is used, and decoding does not clamp: the code is the
    multiplier's operand as it is. Presets ``uint8-affine`` and ``int8-symmetric``.

    ``binary=True`` (only with ``bits=1`` and the other fields at their defaults; use
    :data:`BINARY`) stores the sign of each weight in one bit and dequantizes to ±1. Multi-bit
    schemes need ``bits`` in 2..8.
    """

    bits: int = 8
    per_layer: bool = True
    symmetric: bool = True
    unsigned: bool = True
    rounding: bool = True
    w_max: float | None = None
    binary: bool = False
    affine: bool = False

    def __post_init__(self) -> None:
        for flag in _FLAGS:
            if not isinstance(getattr(self, flag), bool):
                raise BitrobustError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        if self.affine:
            if (self.bits, self.per_layer, self.rounding, self.binary) != (8, True, True, False):
                raise BitrobustError(
                    "an affine scheme is the 8-bit operand format of a multiplier: it needs "
                    "bits=8, per_layer, rounding and not binary"
                )
            if self.symmetric == self.unsigned:
                raise BitrobustError(
                    "an affine scheme is either unsigned and asymmetric (uint8 with a zero "
                    "point) or signed and symmetric (int8)"
                )
        if self.binary:
            layout = (self.per_layer, self.symmetric, self.unsigned, self.rounding, self.w_max)
            if self.bits != 1 or layout != (True, True, True, True, None):
                raise BitrobustError(
                    "a binary scheme stores one sign bit per weight: it needs bits=1 and no "
                    "range, layout or rounding options (use bitrobust.quant.BINARY)"
                )
            return
        check_bits(self.bits)
        if not self.per_layer and not self.symmetric:
            raise BitrobustError("asymmetric quantization needs per_layer=True")
        w_max = self.w_max
        if w_max is None and not self.per_layer:
            w_max = 1.0
        if w_max is not None:
            w_max = _check_w_max(w_max)
        object.__setattr__(self, "w_max", w_max)

    @property
    def name(self) -> str:
        """Every field in one string, e.g. ``q8-perlayer-asym-unsigned-round-wmax0.1``, or
        ``binary``."""
        if self.binary:
            return BINARY_NAME
        parts = [
            f"q{self.bits}",
            "perlayer" if self.per_layer else "global",
            "affine" if self.affine else "sym" if self.symmetric else "asym",
            "unsigned" if self.unsigned else "signed",
            "round" if self.rounding else "trunc",
        ]
        if self.w_max is not None:
            parts.append(f"wmax{self.w_max!r}")
        return "-".join(parts)

    @classmethod
    def from_name(cls, name: str) -> QuantScheme:
        """Parse a string made by :attr:`name`."""
        if name == BINARY_NAME:
            return cls(bits=1, binary=True)
        match = _NAME_RE.fullmatch(name) if isinstance(name, str) else None
        if match is None:
            raise BitrobustError(
                f"not a quantization scheme name: {name!r} "
                "(expected e.g. 'q8-perlayer-asym-unsigned-round-wmax0.1')"
            )
        w_max = match["w_max"]
        try:
            w_max = None if w_max is None else float(w_max)
        except ValueError:
            raise BitrobustError(f"bad w_max in scheme name {name!r}") from None
        affine = match["sym"] == "affine"
        return cls(
            bits=int(match["bits"]),
            per_layer=match["range"] == "perlayer",
            symmetric=match["sym"] == "sym" or (affine and match["unsigned"] == "signed"),
            affine=affine,
            unsigned=match["unsigned"] == "unsigned",
            rounding=match["round"] == "round",
            w_max=w_max,
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantScheme:
        """Inverse of :meth:`to_dict`; missing fields take their defaults, unknown ones raise."""
        if not isinstance(d, Mapping):
            raise BitrobustError(f"a quantization scheme must be a mapping, got {type(d).__name__}")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise BitrobustError(
                f"unknown quantization scheme field(s): {', '.join(map(str, unknown))} "
                f"(known: {', '.join(sorted(known))})"
            )
        return cls(**d)

    @classmethod
    def preset(cls, name: str, bits: int = 8, w_max: float | None = None) -> QuantScheme:
        """A named scheme from the paper.

        ``rquant``: per-layer, asymmetric, unsigned, rounded (robust quantization);
        ``normal``: global fixed range q_max = w_max or 1, symmetric, unsigned, truncated;
        ``perlayer``, ``perlayer-asym``, ``perlayer-asym-unsigned``: the poster's ablation
        ladder (per-layer symmetric signed truncated, then + asymmetric, then + unsigned;
        + rounding is ``rquant``). Binarized weights are not a preset: see :data:`BINARY`.
        """
        check_bits(bits)
        common = {"bits": bits, "w_max": w_max}
        if name == "rquant":
            return cls(per_layer=True, symmetric=False, unsigned=True, rounding=True, **common)
        if name == "normal":
            return cls(per_layer=False, symmetric=True, unsigned=True, rounding=False, **common)
        if name == "perlayer":
            return cls(per_layer=True, symmetric=True, unsigned=False, rounding=False, **common)
        if name == "perlayer-asym":
            return cls(per_layer=True, symmetric=False, unsigned=False, rounding=False, **common)
        if name == "perlayer-asym-unsigned":
            return cls(per_layer=True, symmetric=False, unsigned=True, rounding=False, **common)
        if name in ("uint8-affine", "int8-symmetric"):
            if bits != 8:
                raise BitrobustError(f"preset {name!r} is 8-bit, got bits={bits}")
            signed = name == "int8-symmetric"
            return cls(symmetric=signed, unsigned=not signed, affine=True, **common)
        raise BitrobustError(
            f"unknown quantization preset {name!r} (choose from: {', '.join(PRESETS)})"
        )

    @property
    def levels(self) -> int:
        """L = 2^(m−1) − 1, the largest magnitude of a code's integer value (1 if binary)."""
        return 1 if self.binary else 2 ** (self.bits - 1) - 1

    @property
    def protected_mask(self) -> int:
        """Code bits that are never used nor flipped (bits m..7; bits 1..7 if binary)."""
        return 0xFE if self.binary else _bits.protected_mask(self.bits)


BINARY = QuantScheme(bits=1, binary=True)
"""1-bit sign codes of binarized networks: code 1 ↦ +1 (w > 0), code 0 ↦ −1; bits 1..7 protected."""


def _check_w_max(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BitrobustError(f"w_max must be a positive number or null, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise BitrobustError(f"w_max must be a positive finite number, got {value!r}")
    return float(value)  # type: ignore[arg-type]


DECODE_BY_TABLE_ABOVE = 1024
""":meth:`QuantizedTensor.decode` looks more codes than this up in a table (measured: a table
costs about as much as decoding a thousand codes directly)."""


@dataclass(frozen=True, eq=False)
class QuantizedTensor:
    """Stored codes of one tensor and what dequantizes them.

    ``scale`` is Δ (of u ∈ [−1, 1] for asymmetric schemes); ``low`` and ``high`` are the ends
    of the dequantization clamp (±q_max, or the tensor's [min, max] for asymmetric schemes).
    """

    codes: torch.Tensor
    scheme: QuantScheme
    scale: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    zero_point: int = 0
    """The code of 0 in affine unsigned schemes (0 otherwise)."""

    def __post_init__(self) -> None:
        if self.codes.dtype != torch.uint8:
            raise TypeError(f"codes must be uint8, got {self.codes.dtype}")

    @property
    def protected_mask(self) -> int:
        """Bits that are never flipped: bits m..7, e.g. 0xF0 for m = 4."""
        return self.scheme.protected_mask

    @property
    def shape(self) -> torch.Size:
        return self.codes.shape

    @property
    def step(self) -> torch.Tensor:
        """Δ in weight units: the spacing of representable weights (0-dim float32)."""
        if self.scheme.binary:
            return 2 * self.scale
        if self.scheme.symmetric or self.scheme.affine:
            return self.scale
        return self.scale * (self.high - self.low) / 2

    def integer_values(self) -> torch.Tensor:
        """The signed integer each code stands for (int32): in [−2^(m−1), 2^(m−1) − 1].

        Bits m..7 are ignored; two's complement codes are sign-extended from bit m−1 and
        offset-binary codes have 2^(m−1) subtracted. Binary codes stand for −1 and +1.
        """
        return _decode(self.codes, self.scheme, self.zero_point)

    def dequantize(self) -> torch.Tensor:
        """Float32 weights: integer value times Δ, clamped to [low, high] as in the paper."""
        return self.decode(self.codes)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Float32 weights that ``codes`` (any shape, e.g. a few faulty codes of this tensor)
        stand for under this tensor's scheme, scale and range: the one decode.

        Many codes are looked up in a 256-entry table of :meth:`_decode_values` (the same
        numbers, elementwise, in one gather instead of eight passes)."""
        if codes.numel() <= DECODE_BY_TABLE_ABOVE:
            return self._decode_values(codes)
        table = self.__dict__.get("_table")
        if table is None or table.device != codes.device:
            every_code = torch.arange(256, dtype=torch.uint8, device=codes.device)
            table = self._decode_values(every_code)
            object.__setattr__(self, "_table", table)
        index = codes.reshape(-1).to(torch.int32)
        return table.index_select(0, index).reshape(codes.shape)

    def _decode_values(self, codes: torch.Tensor) -> torch.Tensor:
        if self.scheme.affine:  # the operand as the multiplier sees it: no clamp
            return (_decode(codes, self.scheme, self.zero_point) * self.scale).to(torch.float32)
        values = _decode(codes, self.scheme).to(torch.float32) * self.scale
        if self.scheme.symmetric:
            return torch.clamp(values, min=self.low, max=self.high)
        u = torch.clamp(values, min=-1.0, max=1.0)
        weights = (u + 1) / 2 * (self.high - self.low) + self.low
        return torch.clamp(weights, min=self.low, max=self.high)

    def with_codes(self, codes: torch.Tensor) -> QuantizedTensor:
        """The same tensor with other codes (for example after bit flips)."""
        if codes.shape != self.codes.shape:
            raise ValueError(f"codes shape {tuple(codes.shape)} != {tuple(self.codes.shape)}")
        new = dataclasses.replace(self, codes=codes)
        if "_table" in self.__dict__:  # the same scheme, scale and range: the same table
            object.__setattr__(new, "_table", self.__dict__["_table"])
        return new


def quantize(tensor: torch.Tensor, scheme: QuantScheme) -> QuantizedTensor:
    """Quantize a float tensor to codes with ``scheme`` (no gradient; on the tensor's device)."""
    weights = tensor.detach().to(torch.float32)
    levels = scheme.levels
    device = weights.device
    if scheme.binary:
        one = torch.ones((), dtype=torch.float32, device=device)
        return QuantizedTensor(
            codes=(weights > 0).to(torch.uint8), scheme=scheme, scale=one, low=-one, high=one
        )

    def scalar(value: float | torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(value, dtype=torch.float32, device=device).reshape(())

    if scheme.affine:
        if scheme.w_max is not None:
            weights = torch.clamp(weights, min=-scheme.w_max, max=scheme.w_max)
        low = float(weights.min()) if weights.numel() else 0.0
        high = float(weights.max()) if weights.numel() else 0.0
        scale, zero = affine_qparams(low, high, signed=not scheme.unsigned)
        return QuantizedTensor(
            codes=quantize_codes(weights, scale, zero, signed=not scheme.unsigned),
            scheme=scheme,
            scale=torch.tensor(scale, dtype=torch.float64, device=device),
            low=scalar(low),
            high=scalar(high),
            zero_point=zero,
        )

    if scheme.symmetric:
        if scheme.per_layer:
            max_abs = weights.abs().amax() if weights.numel() else scalar(0.0)
            q_max = scalar(max_abs + EPSILON)
            if scheme.w_max is not None:
                q_max = torch.clamp(q_max, max=scheme.w_max)
            delta = q_max / levels
        else:
            q_max = scalar(scheme.w_max)
            delta = scalar((scheme.w_max + EPSILON) / levels)
        low, high = -q_max, q_max
        scaled = torch.clamp(weights, min=low, max=high) / delta
    else:
        if scheme.w_max is not None:
            weights = torch.clamp(weights, min=-scheme.w_max, max=scheme.w_max)
        if weights.numel():
            low, high = scalar(weights.amin()), scalar(weights.amax())
        else:
            low = high = scalar(0.0)
        span = high - low
        # max == min: every code decodes to that constant; map the tensor to u = 0.
        safe_span = torch.where(span > 0, span, torch.ones_like(span))
        u = torch.where(span > 0, 2 * (weights - low) / safe_span - 1, torch.zeros_like(weights))
        delta = scalar((1 + EPSILON) / levels)
        scaled = torch.clamp(u, min=-1.0, max=1.0) / delta
    codes = _encode(scaled, scheme)
    return QuantizedTensor(codes=codes, scheme=scheme, scale=delta, low=low, high=high)


class _StraightThrough(torch.autograd.Function):
    """Forward: ``value``; backward: the incoming gradient goes to ``x`` unchanged."""

    @staticmethod
    def forward(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return value

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def straight_through(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass with the identity gradient to ``x``: one op, where
    ``x + (value - x).detach()`` would take three passes over the tensor."""
    return _StraightThrough.apply(x, value.detach())


def fake_quantize(tensor: torch.Tensor, scheme: QuantScheme) -> torch.Tensor:
    """Quantize-dequantize in the forward pass with a straight-through (identity) gradient.

    Written as ``q + (tensor - tensor.detach())`` rather than ``tensor + (q - tensor).detach()``:
    same gradient, but the forward value is exactly ``q`` (x − x is exactly 0 in floating point).
    Binary schemes take a shortcut with the same values: ±1 straight from the sign test.
    """
    if scheme.binary:
        return straight_through(tensor, torch.where(tensor > 0, 1.0, -1.0).to(tensor.dtype))
    quantized = quantize(tensor, scheme).dequantize().to(tensor.dtype)
    return quantized + (tensor - tensor.detach())


def _encode(scaled: torch.Tensor, scheme: QuantScheme) -> torch.Tensor:
    """Real values in units of Δ -> uint8 codes in the scheme's layout."""
    half = 2 ** (scheme.bits - 1)
    to_int = torch.round if scheme.rounding else torch.trunc
    if scheme.unsigned:
        shifted = torch.clamp(scaled + half, min=0, max=2 * half - 1)
        return to_int(shifted).to(torch.uint8)
    values = torch.clamp(to_int(scaled), min=-scheme.levels, max=scheme.levels).to(torch.int16)
    return (values & _bits.value_mask(scheme.bits)).to(torch.uint8)


def affine_qparams(low: float, high: float, signed: bool) -> tuple[float, int]:
    """(Δ, zero point) of the affine 8-bit formats for values in [low, high]: symmetric int8
    (Δ = max|x| / 127, zero 0) or asymmetric uint8 (range widened to contain 0, Δ = span / 255,
    zero = round(−low / Δ)). Python floats, so that emulated layers compute with exactly these."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise BitrobustError(f"cannot quantize a tensor with range [{low}, {high}]")
    if signed:
        magnitude = max(abs(low), abs(high))
        return (magnitude / 127 if magnitude > 0 else 1.0), 0
    low, high = min(low, 0.0), max(high, 0.0)
    span = high - low
    if span <= 0:
        return 1.0, 0
    scale = span / 255
    return scale, int(min(255, max(0, round(-low / scale))))


def quantize_codes(x: torch.Tensor, scale: float, zero: int, signed: bool) -> torch.Tensor:
    """Affine codes of ``x``: uint8 operand patterns (int8 two's complement when ``signed``)."""
    q = torch.round(x / scale) + zero
    if signed:
        return (torch.clamp(q, -127, 127).to(torch.int16) & 0xFF).to(torch.uint8)
    return torch.clamp(q, 0, 255).to(torch.uint8)


def operand_values(codes: torch.Tensor, signed: bool) -> torch.Tensor:
    """8-bit operand patterns -> int32: two's complement (−128..127) when ``signed``, else
    0..255."""
    values = codes.to(torch.int32)
    return torch.where(values >= 128, values - 256, values) if signed else values


def _decode(codes: torch.Tensor, scheme: QuantScheme, zero_point: int = 0) -> torch.Tensor:
    """uint8 codes -> int32 integer values (bits m..7 ignored; affine: operand − zero point)."""
    if scheme.binary:
        return (codes & 1).to(torch.int32) * 2 - 1
    if scheme.affine:
        return operand_values(codes, signed=not scheme.unsigned) - zero_point
    half = 2 ** (scheme.bits - 1)
    values = (codes & _bits.value_mask(scheme.bits)).to(torch.int32)
    if scheme.unsigned:
        return values - half
    return values - ((values >> (scheme.bits - 1)) & 1) * (2 * half)


def parameter_schemes(module: nn.Module, scheme: QuantScheme) -> dict[str, QuantScheme]:
    """Parameter name -> the scheme it is stored with, in ``named_parameters()`` order.

    Parameters missing from the result are not stored in the (faulty) weight memory: they stay
    float and are never quantized, faulted or projected. The rule: a module may declare a
    ``quantization_scheme`` attribute, a :class:`QuantScheme` or ``None`` (keep float), which
    applies to the parameters of that module and of its submodules; the nearest declaration
    above a parameter wins, and without one the model-level ``scheme`` applies. So a model
    that declares nothing is quantized entirely with ``scheme``, frozen parameters
    (``requires_grad=False``) included: they are stored in the same memory. A binarized network
    declares ``None`` at its root and :data:`BINARY` on its binarized layers.
    """
    declared: dict[str, QuantScheme | None] = {}
    for prefix, sub in module.named_modules():
        if hasattr(sub, "quantization_scheme"):
            value = sub.quantization_scheme
            if value is not None and not isinstance(value, QuantScheme):
                raise TypeError(
                    f"{type(sub).__name__}.quantization_scheme must be a QuantScheme or None, "
                    f"got {value!r}"
                )
            declared[prefix] = value
    schemes = {}
    for name, _ in module.named_parameters():
        owner = name.rpartition(".")[0]
        chosen: QuantScheme | None = scheme
        while True:
            if owner in declared:
                chosen = declared[owner]
                break
            if not owner:
                break
            owner = owner.rpartition(".")[0]
        if chosen is not None:
            schemes[name] = chosen
    return schemes


@dataclass(frozen=True, eq=False)
class QuantizedModel:
    """Codes for the stored parameters of a module, by parameter name, in ``named_parameters()``
    order: every parameter unless the module chooses otherwise
    (:func:`parameter_schemes`). Buffers (e.g. batch-norm statistics) are not quantized.
    ``scheme`` is the model-level scheme; each tensor carries its own. Immutable:
    :meth:`with_codes` returns a new object."""

    tensors: dict[str, QuantizedTensor]
    scheme: QuantScheme

    @classmethod
    def from_module(cls, module: nn.Module, scheme: QuantScheme) -> QuantizedModel:
        """Quantize each stored parameter of ``module`` with its own range and scheme
        (``scheme`` unless the module declares another, see :func:`parameter_schemes`)."""
        params = dict(module.named_parameters())
        tensors = {
            name: quantize(params[name], param_scheme)
            for name, param_scheme in parameter_schemes(module, scheme).items()
        }
        return cls(tensors=tensors, scheme=scheme)

    def dequantized(self) -> dict[str, torch.Tensor]:
        """Parameter name -> float32 weights, e.g. for ``torch.func.functional_call``."""
        return {name: qt.dequantize() for name, qt in self.tensors.items()}

    def clean_parameters(self) -> Mapping[str, torch.Tensor]:
        """:meth:`dequantized`, computed once and shared (read only): faulty parameters start
        from it and recompute only the weights whose codes changed."""
        cached = self.__dict__.get("_clean_parameters")
        if cached is None:
            cached = self.dequantized()
            object.__setattr__(self, "_clean_parameters", cached)
        return cached

    def codes(self) -> dict[str, torch.Tensor]:
        """Parameter name -> uint8 codes."""
        return {name: qt.codes for name, qt in self.tensors.items()}

    def with_codes(self, codes: Mapping[str, torch.Tensor]) -> QuantizedModel:
        """A new model with the given codes replaced (names not given keep theirs)."""
        unknown = sorted(set(codes) - set(self.tensors))
        if unknown:
            raise BitrobustError(f"no quantized parameter named: {', '.join(unknown)}")
        tensors = {
            name: qt.with_codes(codes[name]) if name in codes else qt
            for name, qt in self.tensors.items()
        }
        return dataclasses.replace(self, tensors=tensors)

    def num_bits(self) -> int:
        """Total number of stored, unprotected bits (m per weight of an m-bit tensor)."""
        return sum(qt.codes.numel() * qt.scheme.bits for qt in self.tensors.values())

    def num_weights(self) -> int:
        """Total number of quantized values."""
        return sum(qt.codes.numel() for qt in self.tensors.values())


def quantize_model(module: nn.Module, scheme: QuantScheme) -> QuantizedModel:
    """Same as :meth:`QuantizedModel.from_module`."""
    return QuantizedModel.from_module(module, scheme)
