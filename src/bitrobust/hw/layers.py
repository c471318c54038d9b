"""Linear and Conv2d layers that run their products through a multiplier's table.

Both operands are 8-bit affine-quantized, per tensor (TFLite/TFApprox style, not the memory
layouts of :mod:`bitrobust.quant`, because here the raw code is the multiplier's operand):

- unsigned multiplier: asymmetric uint8, x ≈ scale·(code − zero), the range widened to contain
  0 so that 0 is exact (ReLU outputs then have zero point 0);
- signed multiplier: symmetric int8, x ≈ scale·code, codes −127..127 (zero point 0).

Weights are quantized once (:meth:`EmulatedLayer.requantize`) with the affine schemes of
:mod:`bitrobust.quant` (``uint8-affine`` or ``int8-symmetric``, by the multiplier's signedness)
and kept in GEMM layout as the buffer ``weight_codes`` (K×M, uint8 patterns), where the PE
mapping of :mod:`bitrobust.hw.accelerator` is defined. A trial substitutes faulty codes for
that buffer (``functional_call``), and a layer's datapath fault is an argument of the forward
pass: :func:`datapath_faults` makes a {layer name: LayerFault} mapping active for the calls in
its ``with`` block; no fault is stored on the module.

Activations are quantized on every call with the layer's input range: the calibrated
``act_range`` (see :func:`bitrobust.hw.convert.calibrate`, the float model's min/max over
calibration data), or, before calibration, the current batch's min/max (then one example's
result depends on its batch). The int32 accumulation is
``Σ (a − z_a)(w − z_w)`` from :func:`~bitrobust.hw.emulate.integer_gemm`; the output is
``scale_a·scale_w·acc + bias`` with the bias added in float.

Gradients: with grad enabled the forward value is the emulated one and the gradient that of the
float layer (straight-through), so a faulty accelerator can be fine-tuned in the loop.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import nn

from bitrobust.errors import BitrobustError
from bitrobust.hw.emulate import LayerFault, integer_gemm
from bitrobust.hw.tables import Multiplier
from bitrobust.quant import (
    QuantizedTensor,
    QuantScheme,
    affine_qparams,
    operand_values,
    quantize,
    quantize_codes,
)

_ACTIVE_FAULTS: ContextVar[Mapping[str, LayerFault] | None] = ContextVar(
    "datapath_faults", default=None
)


@contextmanager
def datapath_faults(faults: Mapping[str, LayerFault]) -> Iterator[None]:
    """Make ``faults`` (emulated layer name → its fault) act on the forward passes run inside
    the ``with`` block, in this thread or task only."""
    token = _ACTIVE_FAULTS.set(dict(faults))
    try:
        yield
    finally:
        _ACTIVE_FAULTS.reset(token)


def weight_scheme(multiplier: Multiplier) -> QuantScheme:
    """The operand format of the multiplier's weights: int8 symmetric or uint8 affine."""
    return QuantScheme.preset("int8-symmetric" if multiplier.signed else "uint8-affine")


class EmulatedLayer(nn.Module):
    """Shared machinery of :class:`EmulatedLinear` and :class:`EmulatedConv2d`."""

    weight_codes: torch.Tensor
    act_range: torch.Tensor

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, multiplier: Multiplier):
        super().__init__()
        self.multiplier = multiplier
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), False)
        self.register_buffer("weight_codes", torch.empty(0, dtype=torch.uint8))
        self.register_buffer("act_range", torch.full((2,), math.nan, device=weight.device))
        self.weight_scale = 1.0
        self.weight_zero = 0
        self.layer_name = ""
        self.accelerator: object | None = None  # set by to_accelerator (PE mapping)
        self.calibrating = False
        self.requantize()

    # -- weights ----------------------------------------------------------------------------
    def gemm_weight(self) -> torch.Tensor:
        """The float weight as the K×M matrix of the layer's GEMM."""
        return self.weight.detach().reshape(self.weight.shape[0], -1).t()

    @property
    def gemm_shape(self) -> tuple[int, int]:
        K, M = self.weight[0].numel(), self.weight.shape[0]
        return K, M

    def requantize(self) -> None:
        """Quantize the float weight to ``weight_codes`` (K×M) with a per-tensor range."""
        stored = quantize(self.weight, weight_scheme(self.multiplier))
        self.weight_scale, self.weight_zero = float(stored.scale), stored.zero_point
        self.weight_codes = self.gemm_codes(stored.codes)

    def stored_weight(self) -> QuantizedTensor:
        """The weight as stored in the accelerator's memory, the current ``weight_codes`` in
        the parameter's layout (M × ...), with :func:`weight_scheme`: what memory faults hit."""
        codes = self.weight_codes.t().reshape(self.weight.shape)
        weight = self.weight.detach()
        return QuantizedTensor(
            codes=codes,
            scheme=weight_scheme(self.multiplier),
            scale=torch.tensor(self.weight_scale, dtype=torch.float64, device=codes.device),
            low=weight.min().reshape(()) if weight.numel() else weight.new_zeros(()),
            high=weight.max().reshape(()) if weight.numel() else weight.new_zeros(()),
            zero_point=self.weight_zero,
        )

    def gemm_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Stored codes (the parameter's layout) → the K×M GEMM layout of ``weight_codes``."""
        return codes.reshape(codes.shape[0], -1).t().contiguous()

    def set_weight_codes(self, codes: torch.Tensor) -> None:
        """Replace the stored weight patterns (K×M uint8), e.g. after a fault-aware remapping."""
        if codes.dtype != torch.uint8 or tuple(codes.shape) != self.gemm_shape:
            raise ValueError(f"weight codes must be uint8 of shape {self.gemm_shape}")
        self.weight_codes = codes.to(self.weight_codes.device).contiguous()

    def weight_values(self) -> torch.Tensor:
        """Integer weight values minus zero point (int32, K×M): what the codes stand for."""
        return operand_values(self.weight_codes, self.multiplier.signed) - self.weight_zero

    # -- calibration -----------------------------------------------------------------------
    def reset_range(self) -> None:
        self.act_range = torch.full_like(self.act_range, math.nan)

    def _observe(self, x: torch.Tensor) -> None:
        low, high = float(x.min()), float(x.max())
        old_low, old_high = (float(v) for v in self.act_range)
        if not math.isnan(old_low):
            low, high = min(low, old_low), max(high, old_high)
        self.act_range = torch.tensor([low, high], device=self.act_range.device)

    def input_qparams(self, x: torch.Tensor) -> tuple[float, int]:
        low, high = (float(v) for v in self.act_range)
        if math.isnan(low):
            low, high = float(x.min()), float(x.max())
        return affine_qparams(low, high, self.multiplier.signed)

    # -- forward -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            self._observe(x.detach())
            return self.float_forward(x)
        scale, zero = self.input_qparams(x)
        codes = quantize_codes(x.detach(), scale, zero, self.multiplier.signed)
        rows = self.activation_rows(codes, zero)
        fault = (_ACTIVE_FAULTS.get() or {}).get(self.layer_name)
        if fault is not None and tuple(fault.mask.shape) != self.gemm_shape:
            raise ValueError(f"fault mask {tuple(fault.mask.shape)} != GEMM {self.gemm_shape}")
        if fault is not None and fault.mask.device != rows.device:
            fault = dataclasses.replace(fault, mask=fault.mask.to(rows.device))
        sums = self.activation_sums(codes, zero) if self.weight_zero != 0 else None
        acc = integer_gemm(
            rows, self.weight_codes, self.multiplier, zero, self.weight_zero, fault, sums
        )
        out = self.output_from_rows(acc.to(torch.float32) * (scale * self.weight_scale), x)
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            reference = self.float_forward(x)
            out = out + (reference - reference.detach())
        return out

    def activation_rows(self, codes: torch.Tensor, zero: int) -> torch.Tensor:
        """Input codes → GEMM rows (R×K uint8)."""
        raise NotImplementedError

    def activation_sums(self, codes: torch.Tensor, zero: int) -> torch.Tensor | None:
        """Each GEMM row's sum of operand values (R, int32), where cheaper than summing the
        rows; None: :func:`integer_gemm` sums the rows."""
        return None

    def output_from_rows(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """GEMM output (R×M float) → layer output with bias."""
        raise NotImplementedError

    def float_forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        K, M = self.gemm_shape
        return f"K={K}, M={M}, multiplier={self.multiplier.name}"


class EmulatedLinear(EmulatedLayer):
    """``nn.Linear`` on the emulated integer datapath."""

    @classmethod
    def from_linear(cls, linear: nn.Linear, multiplier: Multiplier) -> EmulatedLinear:
        return cls(linear.weight, linear.bias, multiplier)

    def activation_rows(self, codes: torch.Tensor, zero: int) -> torch.Tensor:
        return codes.reshape(-1, codes.shape[-1])

    def output_from_rows(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = out.reshape(*x.shape[:-1], out.shape[-1])
        return out if self.bias is None else out + self.bias

    def float_forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class EmulatedConv2d(EmulatedLayer):
    """``nn.Conv2d`` (groups 1, zero padding) as im2col + emulated GEMM.

    Padding is applied to the *codes* with the zero point's code, so a padded position is the
    value 0, as in the float convolution.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        multiplier: Multiplier,
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
    ):
        super().__init__(weight, bias, multiplier)
        self.stride, self.padding, self.dilation = stride, padding, dilation

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, multiplier: Multiplier, name: str = "") -> EmulatedConv2d:
        where = f"layer '{name}' " if name else ""
        if conv.groups != 1:
            raise BitrobustError(f"{where}is a grouped convolution; the emulator needs groups=1")
        if conv.padding_mode != "zeros":
            raise BitrobustError(f"{where}pads with '{conv.padding_mode}'; only zeros is emulated")
        padding = conv.padding
        if isinstance(padding, str):
            if padding != "valid":
                raise BitrobustError(f"{where}uses padding='{padding}'; give explicit padding")
            padding = (0, 0)
        return cls(
            conv.weight,
            conv.bias,
            multiplier,
            tuple(conv.stride),
            tuple(padding),
            tuple(conv.dilation),
        )

    def activation_rows(self, codes: torch.Tensor, zero: int) -> torch.Tensor:
        if codes.ndim != 4:
            raise BitrobustError(f"Conv2d input must be (N, C, H, W), got {tuple(codes.shape)}")
        (kh, kw), (ph, pw) = tuple(self.weight.shape[2:]), self.padding
        (sh, sw), (dh, dw) = self.stride, self.dilation
        planes = F.pad(codes, (pw, pw, ph, ph), value=zero & 0xFF) if ph or pw else codes
        oh, ow = self.output_size(codes.shape[2], codes.shape[3])
        # im2col on the uint8 codes, one strided copy per kernel offset: rows in F.unfold's
        # (C, kh, kw) order
        source = planes.permute(0, 2, 3, 1)  # (N, H, W, C), a view
        shape = (codes.shape[0], oh, ow, codes.shape[1], kh, kw)
        rows = torch.empty(shape, dtype=torch.uint8, device=codes.device)
        for i in range(kh):
            for j in range(kw):
                top, left = i * dh, j * dw
                rows[..., i, j] = source[
                    :, top : top + sh * (oh - 1) + 1 : sh, left : left + sw * (ow - 1) + 1 : sw
                ]
        return rows.view(-1, codes.shape[1] * kh * kw)

    def activation_sums(self, codes: torch.Tensor, zero: int) -> torch.Tensor | None:
        """The window sums in float (a box sum, or a convolution with a ones kernel): exact
        while every sum fits float32's 24-bit mantissa, and far cheaper than summing the
        overlapping rows."""
        kernel_size = self.weight.shape[1] * self.weight.shape[2] * self.weight.shape[3]
        if codes.ndim != 4 or 255 * kernel_size >= 2**24:
            return None
        values = codes.view(torch.int8) if self.multiplier.signed else codes
        planes = values.to(torch.float32)
        ph, pw = self.padding
        if ph or pw:  # padded with the zero point's code, as the rows
            pad_value = float(torch.tensor(zero & 0xFF, dtype=torch.uint8).view(values.dtype))
            planes = F.pad(planes, (pw, pw, ph, ph), value=pad_value)
        if self.dilation == (1, 1):  # channels first, then a box sum: cheaper than the conv
            planes, kernel = planes.sum(1, keepdim=True), tuple(self.weight.shape[2:])
            sums = F.avg_pool2d(planes, kernel, self.stride, divisor_override=1)
        else:
            ones = planes.new_ones((1, *self.weight.shape[1:]))
            sums = F.conv2d(planes, ones, stride=self.stride, dilation=self.dilation)
        return sums.reshape(-1).to(torch.int32)  # (N, 1, OH, OW): the rows' order

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size of the output for an input of ``height`` × ``width``."""
        kernel = self.weight.shape[2:]
        return tuple(  # type: ignore[return-value]
            (size + 2 * pad - dil * (k - 1) - 1) // step + 1
            for size, pad, dil, k, step in zip(
                (height, width), self.padding, self.dilation, kernel, self.stride
            )
        )

    def output_from_rows(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        height, width = self.output_size(x.shape[2], x.shape[3])
        out = out.view(x.shape[0], height * width, -1).transpose(1, 2)
        out = out.reshape(x.shape[0], -1, height, width)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)

    def float_forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}"
        )
