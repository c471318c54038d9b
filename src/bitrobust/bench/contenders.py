"""Weight bit-error injectors: bitrobust, the peer tools in their closest mode, and a bare limit.

Every injector turns a seed into one random bit-error pattern at rate ``p`` on 8-bit quantized
weights and returns the faulty float weights (parameter name -> tensor); ``clean()`` returns the
fault-free weights in the same representation, so a test can check that each does the same work
(about ``1 - (1 - p)^8`` of the weights change). What each actually does:

- ``bitrobust``: ``RandomBitErrors(p).sample(qmodel, seed).write_into(qmodel, weights)``
  into one reused set of weights, after restoring the previous pattern's (both O(flips)); all
  trainable parameters (weights and biases), rquant codes, one Bernoulli(p) per stored bit.
- ``limit``: the bare vectorised reference on the same codes: a binomial flip count per tensor,
  uniform bit positions (with replacement: a repeated position cancels), XOR masks accumulated
  with ``np.bitwise_xor.at``, and only the touched weights decoded, through a 256-entry table
  of rquant's dequantization, into one reused set of float weights after restoring the
  previous pattern's touched weights (O(flips), as bitrobust). From p = 5 % on, one float32
  draw per bit packed into masks (``np.packbits``) instead of positions.
- ``pytorchfi`` (0.6.0): has no weight bit-flip model, only ``declare_weight_fi`` with a value or a
  per-weight function. Its closest mode: the same binomial count and positions, handed over as
  index lists with a function that re-quantizes the weight to its rquant code, flips the bit and
  dequantizes, called once per fault by pytorchfi's Python loop on a deep copy of the model
  (which holds the rquant-dequantized weights). Weights of Linear/Conv2d only: pytorchfi cannot
  fault biases (0.1 % of the MLP's parameters).
- ``mrfi`` (2.1.0): its weight injector in integer mode, run by one forward pass of one image:
  per layer, restore the float weight, ``SymmericQuantization`` to int8 (max-abs range, codes
  −127..127, two's complement), ``RandomPositionByRate`` at the per-value rate ``-8 ln(1 - p)``
  (a Poisson count of positions drawn with replacement, so that ``1 - (1 - p)^8`` of the
  weights are chosen), ``IntRandomBitFlip`` (one random bit per chosen value), dequantize in
  place; weights and biases. Its generators are torch's and numpy's global ones (seeded per
  pattern here). Same expected number of changed weights, never two
  flips in one weight, and MRFI's own symmetric quantizer instead of rquant.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from bitrobust.faults import RandomBitErrors
from bitrobust.quant import QuantizedModel, QuantScheme

BITS = 8
SCHEME_NAME = "rquant"
DENSE_LIMIT_FROM = 0.05
"""From this rate the limit draws one float32 per bit (exact, and cheaper than positions: a
repeated position cancels, about p/2 of the flips, which is negligible only at low rates)."""
PEER_TOOLS = ("pytorchfi", "mrfi")
NOTES = {
    "bitrobust": "rquant codes of all trainable parameters, one Bernoulli(p) per stored bit; "
    "written into one reused set of weights, the previous pattern restored (O(flips))",
    "limit": "numpy: binomial count + uniform bit positions (from p = 5 %: one float32 draw per "
    "bit, packed), XOR into the rquant codes, decode the touched weights by table into one "
    "reused set of weights, the previous pattern restored (O(flips))",
    "pytorchfi": "declare_weight_fi with a per-weight int8 flip function, Python loop per "
    "fault, deep copy; weights only (no bias faults)",
    "mrfi": "int8 SymmericQuantization + RandomPositionByRate(-8 ln(1-p)) + IntRandomBitFlip "
    "on weights and biases, run by a 1-image forward; at most one flip per weight",
}

Weights = dict[str, torch.Tensor]


def scheme() -> QuantScheme:
    """The 8-bit rquant scheme every injector works on."""
    return QuantScheme.preset(SCHEME_NAME, bits=BITS)


def missing_tool(name: str) -> str | None:
    """Why peer tool ``name`` cannot run here (not installed, fails to import), or None."""
    try:
        importlib.import_module("pytorchfi.core" if name == "pytorchfi" else name)
    except Exception as exc:  # a broken install fails with anything, not only ImportError
        return f"{name} is not importable ({type(exc).__name__}: {exc})"
    return None


def tool_version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


class Injector:
    """seed -> faulty float weights of one random bit-error pattern at rate ``p``."""

    def __call__(self, seed: int) -> Weights:
        raise NotImplementedError

    def clean(self) -> Weights:
        raise NotImplementedError


class BitrobustInjector(Injector):
    """One reused set of weights: the previous pattern's values restored, this one's written,
    both in O(flips) (``FaultPattern.write_into``); valid until the next call."""

    def __init__(self, qmodel: QuantizedModel, p: float) -> None:
        self.qmodel, self.faults = qmodel, RandomBitErrors(p)
        self.weights = {name: value.clone() for name, value in qmodel.clean_parameters().items()}
        self.restore: Callable[[], None] = lambda: None

    def __call__(self, seed: int) -> Weights:
        self.restore()
        self.restore = self.faults.sample(self.qmodel, seed).write_into(self.qmodel, self.weights)
        return self.weights

    def clean(self) -> Weights:
        return self.qmodel.dequantized()


class LimitInjector(Injector):
    """The bare reference: flip the drawn bits and decode only the weights they touch."""

    def __init__(self, qmodel: QuantizedModel, p: float) -> None:
        self.p = p
        self.tensors = {}
        for name, qt in qmodel.tensors.items():
            if qt.scheme.symmetric or not qt.scheme.unsigned or qt.scheme.bits != BITS:
                raise ValueError("the limit reference decodes 8-bit rquant codes only")
            table = self._dequantize(np.arange(2**BITS), float(qt.scale), qt.low, qt.high)
            codes = qt.codes.numpy().reshape(-1)
            self.tensors[name] = (codes, table[codes], table, qt.shape)
        self.weights = {name: clean.copy() for name, (_, clean, _, _) in self.tensors.items()}
        self.touched: dict[str, np.ndarray] = {}

    @staticmethod
    def _dequantize(codes: np.ndarray, scale: float, low: torch.Tensor, high: torch.Tensor):
        """rquant's decoding of every code (a 256-entry table), in float32 as bitrobust."""
        values = torch.from_numpy(codes - 2 ** (BITS - 1)).to(torch.float32) * scale
        u = torch.clamp(values, -1.0, 1.0)
        return torch.clamp((u + 1) / 2 * (high - low) + low, min=low, max=high).numpy()

    def __call__(self, seed: int) -> Weights:
        rng = np.random.default_rng(seed)
        out = {}
        for name, (codes, clean, table, shape) in self.tensors.items():
            weights = self.weights[name]
            if name in self.touched:  # the previous pattern's weights back to clean
                weights[self.touched[name]] = clean[self.touched[name]]
            if self.p >= DENSE_LIMIT_FROM:  # one draw per bit, packed into XOR masks
                bits = rng.random((codes.size, BITS), dtype=np.float32) < self.p
                masks = np.packbits(bits, axis=1, bitorder="little").reshape(-1)
                index = np.flatnonzero(masks)
            else:
                stored_bits = codes.size * BITS
                positions = rng.integers(0, stored_bits, rng.binomial(stored_bits, self.p))
                index = positions // BITS  # repeated indices: XOR-accumulate on a scatter copy
                masks = np.zeros(codes.size, np.uint8)
                np.bitwise_xor.at(masks, index, (1 << (positions % BITS)).astype(np.uint8))
            weights[index] = table[codes[index] ^ masks[index]]
            self.touched[name] = index
            out[name] = torch.from_numpy(weights).view(shape)
        return out

    def clean(self) -> Weights:
        return {
            name: torch.from_numpy(clean.copy()).view(shape)
            for name, (_, clean, _, shape) in self.tensors.items()
        }


def quantized_copy(model: nn.Module, qmodel: QuantizedModel) -> nn.Module:
    """A copy of ``model`` holding the rquant-dequantized weights (the fault-free stored ones)."""
    copied = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, value in qmodel.dequantized().items():
            copied.get_parameter(name).copy_(value)
    return copied


class PytorchfiInjector(Injector):
    def __init__(
        self, model: nn.Module, qmodel: QuantizedModel, p: float, input_shape: list[int]
    ) -> None:
        from pytorchfi.core import fault_injection

        self.p = p
        self.base = quantized_copy(model, qmodel)
        self.pfi = fault_injection(
            self.base, 1, input_shape=input_shape, layer_types=[nn.Linear, nn.Conv2d]
        )
        self.layers = [  # in pytorchfi's layer order: modules() order of the injected types
            (name, qmodel.tensors[f"{name}.weight"])
            for name, module in self.base.named_modules()
            if isinstance(module, (nn.Linear, nn.Conv2d))
        ]

    def __call__(self, seed: int) -> Weights:
        generator = torch.Generator().manual_seed(seed)
        layer_num, dims, flips = [], [[], [], [], []], []
        for index, (_, qt) in enumerate(self.layers):
            stored_bits = qt.codes.numel() * BITS
            count = int(
                torch.binomial(
                    torch.tensor(float(stored_bits)), torch.tensor(self.p), generator=generator
                )
            )
            positions = torch.randint(0, stored_bits, (count,), generator=generator)
            where = torch.unravel_index(positions // BITS, qt.shape)
            layer_num += [index] * count
            for axis in range(4):
                dims[axis] += where[axis].tolist() if axis < len(where) else [None] * count
            step = (float(qt.scale), float(qt.low), float(qt.high))
            flips += [(step, bit) for bit in (positions % BITS).tolist()]
        order = iter(flips)

        def flip_bit(weight: torch.Tensor, index: tuple) -> float:
            (scale, low, high), bit = next(order)
            u = 2 * (weight[index].item() - low) / (high - low) - 1
            code = min(max(round(u / scale) + 2 ** (BITS - 1), 0), 2**BITS - 1) ^ (1 << bit)
            u = min(max((code - 2 ** (BITS - 1)) * scale, -1.0), 1.0)
            return min(max((u + 1) / 2 * (high - low) + low, low), high)

        corrupted = self.pfi.declare_weight_fi(
            function=flip_bit, layer_num=layer_num, k=dims[0], dim1=dims[1], dim2=dims[2],
            dim3=dims[3],
        )  # fmt: skip
        return {name: param.detach() for name, param in corrupted.named_parameters()}

    def clean(self) -> Weights:
        return {name: param.detach().clone() for name, param in self.base.named_parameters()}


MRFI_CONFIG = """
faultinject:
  - type: weight
    name: [weight, bias]
    quantization:
      method: SymmericQuantization
      dynamic_range: auto
      bit_width: {bits}
    enabled: True
    selector:
      method: RandomPositionByRate
      poisson: True
      rate: {rate!r}
    error_mode:
      method: IntRandomBitFlip
      bit_width: {bits}
    module_type: [Linear, Conv2d]
"""


class MrfiInjector(Injector):
    def __init__(self, model: nn.Module, p: float, input_shape: list[int]) -> None:
        from mrfi import MRFI, EasyConfig

        # MRFI's rate is per value: a Poisson count of positions drawn with replacement, one
        # flipped bit each. This rate makes the expected fraction of changed weights
        # 1 - exp(-rate) = 1 - (1 - p)^8, that of independent bit errors at p.
        rate = -BITS * math.log1p(-p)
        config = EasyConfig.load_string(MRFI_CONFIG.format(bits=BITS, rate=rate))
        self.fi_model = MRFI(copy.deepcopy(model).eval(), config)
        self.probe = torch.zeros(1, *input_shape)

    def __call__(self, seed: int) -> Weights:
        torch.manual_seed(seed)  # MRFI draws positions and bits from torch's global generator,
        np.random.seed(seed % 2**32)  # and the Poisson counts (scipy.stats) from numpy's
        self.fi_model(self.probe)
        return {name: param.detach() for name, param in self.fi_model.model.named_parameters()}

    def clean(self) -> Weights:
        with self.fi_model.golden_run():
            self.fi_model(self.probe)
        return {
            name: param.detach().clone() for name, param in self.fi_model.model.named_parameters()
        }


def make_injector(
    contender: str, model: nn.Module, qmodel: QuantizedModel, p: float, input_shape: list[int]
) -> Injector:
    """The injector of ``contender`` (``bitrobust``, ``limit``, ``pytorchfi`` or ``mrfi``)."""
    makers: dict[str, Callable[[], Injector]] = {
        "bitrobust": lambda: BitrobustInjector(qmodel, p),
        "limit": lambda: LimitInjector(qmodel, p),
        "pytorchfi": lambda: PytorchfiInjector(model, qmodel, p, input_shape),
        "mrfi": lambda: MrfiInjector(model, p, input_shape),
    }
    return makers[contender]()
