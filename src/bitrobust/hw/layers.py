"""Linear and Conv2d layers that run their products through a multiplier's table.

Both operands are 8-bit affine-quantized, per tensor (TFLite/TFApprox style, not the memory
layouts of :mod:`bitrobust.quant`, because here the raw code is the multiplier's operand):

- unsigned multiplier: asymmetric uint8, x ≈ scale·(code − zero), the range widened to contain
  0 so that 0 is exact (ReLU outputs then have zero point 0);
- signed multiplier: symmetric int8, x ≈ scale·code, codes −127..127 (zero point 0).

Weights are quantized once (:meth:`EmulatedLayer.requantize`) and kept in GEMM layout
``weight_codes`` (K×M, uint8 patterns), where the PE mapping of
:mod:`bitrobust.hw.accelerator` is defined; a mitigation may overwrite them with
:meth:`EmulatedLayer.set_weight_codes`. Activations are quantized on every call with the
layer's input range: the calibrated ``act_range`` (see :func:`bitrobust.hw.convert.calibrate`,
the float model's min/max over calibration data), or, before calibration, the current batch's
min/max (then one example's result depends on its batch). The int32 accumulation is
``Σ (a − z_a)(w − z_w)`` from :func:`~bitrobust.hw.emulate.integer_gemm`; the output is
``scale_a·scale_w·acc + bias`` with the bias added in float.

Gradients: with grad enabled the forward value is the emulated one and the gradient that of the
float layer (straight-through), so a faulty accelerator can be fine-tuned in the loop.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from bitrobust.errors import BitrobustError
from bitrobust.hw.emulate import LayerFault, integer_gemm
from bitrobust.hw.multiplier import Multiplier


def affine_qparams(low: float, high: float, signed: bool) -> tuple[float, int]:
    """(scale, zero point) for values in [low, high]: symmetric int8 or asymmetric uint8."""
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
    """Affine codes of ``x`` as uint8 operand patterns (two's complement when ``signed``)."""
    q = torch.round(x / scale) + zero
    if signed:
        return (torch.clamp(q, -127, 127).to(torch.int16) & 0xFF).to(torch.uint8)
    return torch.clamp(q, 0, 255).to(torch.uint8)


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
        self.fault: LayerFault | None = None
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
        weight = self.gemm_weight()
        signed = self.multiplier.signed
        scale, zero = affine_qparams(float(weight.min()), float(weight.max()), signed)
        self.weight_scale, self.weight_zero = scale, zero
        self.weight_codes = quantize_codes(weight, scale, zero, signed).contiguous()

    def set_weight_codes(self, codes: torch.Tensor) -> None:
        """Replace the stored weight patterns (K×M uint8), e.g. after a fault-aware remapping."""
        if codes.dtype != torch.uint8 or tuple(codes.shape) != self.gemm_shape:
            raise ValueError(f"weight codes must be uint8 of shape {self.gemm_shape}")
        self.weight_codes = codes.to(self.weight_codes.device).contiguous()

    def weight_values(self) -> torch.Tensor:
        """Integer weight values minus zero point (int32, K×M): what the codes stand for."""
        from bitrobust.hw.emulate import decode

        return decode(self.weight_codes, self.multiplier.signed) - self.weight_zero

    # -- faults and calibration ------------------------------------------------------------
    def set_fault(self, fault: LayerFault | None) -> None:
        if fault is not None and tuple(fault.mask.shape) != self.gemm_shape:
            raise ValueError(f"fault mask {tuple(fault.mask.shape)} != GEMM {self.gemm_shape}")
        self.fault = fault

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
        fault = self.fault
        if fault is not None and fault.mask.device != rows.device:
            fault = dataclasses.replace(fault, mask=fault.mask.to(rows.device))
        acc = integer_gemm(rows, self.weight_codes, self.multiplier, zero, self.weight_zero, fault)
        out = self.output_from_rows(acc.to(torch.float32) * (scale * self.weight_scale), x)
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            reference = self.float_forward(x)
            out = out + (reference - reference.detach())
        return out

    def activation_rows(self, codes: torch.Tensor, zero: int) -> torch.Tensor:
        """Input codes → GEMM rows (R×K uint8)."""
        raise NotImplementedError

    def output_from_rows(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """GEMM output (R×M float) → layer output with bias."""
        raise NotImplementedError

    def float_forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        K, M = self.gemm_shape
        fault = "" if self.fault is None else f", faulty MACs={int(self.fault.mask.sum())}"
        return f"K={K}, M={M}, multiplier={self.multiplier.name}{fault}"


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
        kernel = tuple(self.weight.shape[2:])
        ph, pw = self.padding
        planes = codes.to(torch.float32)
        if ph or pw:
            planes = F.pad(planes, (pw, pw, ph, ph), value=float(zero & 0xFF))
        columns = F.unfold(planes, kernel, dilation=self.dilation, stride=self.stride)
        return columns.transpose(1, 2).reshape(-1, columns.shape[1]).to(torch.uint8)

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
