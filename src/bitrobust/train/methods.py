"""Training methods: small objects that say what one step of the loop (:mod:`.loop`) sees and
does around its forward/backward pass.

A method has four hooks, called by :func:`~bitrobust.train.loop.fit` in this order:

- ``start(model, scheme)``: once, before the first step (checks, initial projection);
- ``parameters_for_step(model, step)``: the parameters of this step's forward pass, passed to
  ``torch.func.functional_call`` (an empty dict: the module's own parameters);
- ``after_backward(model, images, labels, loss_fn, loss, step)``: adjust the gradients of the
  clean pass (RandBET's second pass, frozen weights); returns a perturbed loss or None;
- ``after_step(model)``: after the optimizer step (projection, re-quantization).

The methods (string names in :data:`bitrobust.names.TRAIN_METHODS`, :func:`method_from_name`):

- :class:`Normal`: quantization-aware training; the stored parameters are still projected to
  ±1, as in the reference code (the paper's Normal/RQuant models).
- :class:`Clipping`: the stored parameters are projected to [-w_max, w_max] after every step.
- :class:`RandBET`: clipping plus a second pass per step on the quantized weights with a fresh
  random bit error pattern; its gradient is clamped to ±0.05 and averaged with the clean one. A
  loss threshold curriculum switches the perturbed pass on and off (Stutz et al. §1.5). The
  step's codes are quantized once, for the clean pass, and reused: only the flipped elements
  are decoded again. With ``fixed_pattern_seed`` every step uses one and the same pattern
  instead (the paper's ablation: training on one chip's errors), the pattern that
  ``RandomBitErrors(bit_error_rate, sampler=2)`` gives for that seed.
- :class:`BitFlipTraining`: bit flip injection training of binarized networks (BFIT): the one
  pass of every step sees the binary weights with a fresh pattern of sign flips.
- :class:`FrozenWeights`: plain training of the module's own forward pass with some weights kept
  (their gradients zeroed), e.g. the fine-tuning through an emulated faulty accelerator.

Which parameters are quantized (and projected) is decided per parameter by
:func:`bitrobust.quant.parameter_schemes`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import torch
from torch import nn
from torch.func import functional_call

from bitrobust.bits import dense_mask, sparse_flip_mask, sparse_flips, stable_seed
from bitrobust.bnn.training import random_sign_flips
from bitrobust.errors import BitrobustError
from bitrobust.faults import FaultModel, FaultPattern, RandomBitErrors
from bitrobust.quant import (
    BINARY,
    QuantizedModel,
    QuantizedTensor,
    QuantScheme,
    fake_quantize,
    parameter_schemes,
    quantize,
    straight_through,
)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def project_parameters(
    model: nn.Module, bound: float, names: Collection[str] | None = None
) -> None:
    """Clamp trainable parameters in place to [-bound, bound] (the paper's BoxProjection): all of
    them, or those in ``names`` (the quantized ones, as the methods do)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad and (names is None or name in names):
                param.clamp_(-bound, bound)


def quantized_parameters(model: nn.Module, scheme: QuantScheme) -> dict[str, torch.Tensor]:
    """The model's quantized parameters, each fake-quantized with its own scheme
    (:func:`~bitrobust.quant.parameter_schemes`; straight-through gradient)."""
    params = dict(model.named_parameters())
    return {
        name: fake_quantize(params[name], param_scheme)
        for name, param_scheme in parameter_schemes(model, scheme).items()
    }


def flipped_parameters(
    params: dict[str, torch.Tensor],
    binary: Collection[str],
    rates: tuple[float, float],
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """``params`` with random sign flips on the binary ones (``binary`` names) at
    (−1→+1, +1→−1) ``rates``; a fresh pattern on every call, straight-through gradient."""
    return {
        name: random_sign_flips(value, *rates, generator) if name in binary else value
        for name, value in params.items()
    }


def perturbed_parameters(
    model: nn.Module, scheme: QuantScheme, bit_error_rate: float, seed: int, bound: float
) -> dict[str, torch.Tensor]:
    """Weights with a fresh random bit error pattern, projected; straight-through gradient.
    (The reference form of what :class:`RandBET` computes incrementally.)"""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        qmodel = QuantizedModel.from_module(model, scheme)
        masks = {
            name: sparse_flip_mask(qt.shape, qt.scheme.bits, bit_error_rate, generator)
            for name, qt in qmodel.tensors.items()
        }
        faulty = FaultPattern(masks).apply(qmodel).dequantized()
    params = dict(model.named_parameters())
    return {
        name: params[name] + (faulty[name].clamp(-bound, bound) - params[name]).detach()
        for name in faulty
    }


FIXED_PATTERN_SAMPLER = 2
"""The random bit error sampler of RandBET's fixed pattern: pinned, so that a recorded
``fixed_pattern_seed`` keeps naming the same flips if the default sampler changes."""


def fixed_pattern_faults(bit_error_rate: float) -> RandomBitErrors:
    """The fault model whose pattern for a seed RandBET trains on with ``fixed_pattern_seed``:
    evaluating a trained model with it and that seed (a campaign fault entry with ``seed``)
    tests it on the very bit errors it was trained on."""
    return RandomBitErrors(bit_error_rate, sampler=FIXED_PATTERN_SAMPLER)


class Normal:
    """Quantization-aware training; stored parameters projected to ±``bound`` after each step."""

    name = "normal"

    def __init__(self, bound: float = 1.0) -> None:
        self.bound = bound
        self.schemes: dict[str, QuantScheme] = {}

    def start(self, model: nn.Module, scheme: QuantScheme) -> None:
        self.schemes = parameter_schemes(model, scheme)
        project_parameters(model, self.bound, self.schemes)

    def parameters_for_step(self, model: nn.Module, step: int) -> dict[str, torch.Tensor]:
        params = dict(model.named_parameters())
        return {name: fake_quantize(params[name], s) for name, s in self.schemes.items()}

    def after_backward(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        loss_fn: LossFn,
        loss: float,
        step: int,
    ) -> float | None:
        return None

    def after_step(self, model: nn.Module) -> None:
        project_parameters(model, self.bound, self.schemes)


class Clipping(Normal):
    """Weight clipping: stored parameters projected to [-w_max, w_max] after every step."""

    name = "clipping"

    def __init__(self, w_max: float) -> None:
        super().__init__(bound=w_max)


class RandBET(Clipping):
    """Clipping plus random bit error training (Stutz et al.): each step with the perturbed pass
    switched on also runs the quantized weights with a fresh bit error pattern at
    ``bit_error_rate``; its gradient, clamped to ±``grad_clip``, is averaged with the clean one.
    The curriculum: the perturbed pass runs on the next step iff the clean loss is below
    1.15·τ and the mean of clean and perturbed loss at most τ (``curriculum_threshold``).
    ``fixed_pattern_seed``: every perturbed pass uses the one pattern of that seed
    (:func:`fixed_pattern_faults`) instead of a fresh one, like a single chip's errors."""

    name = "randbet"

    def __init__(
        self,
        w_max: float,
        bit_error_rate: float,
        seed: int = 0,
        grad_clip: float = 0.05,
        curriculum_threshold: float = 1.75,
        fixed_pattern_seed: int | None = None,
    ) -> None:
        super().__init__(w_max)
        self.bit_error_rate = bit_error_rate
        self.seed = seed
        self.grad_clip = grad_clip
        self.curriculum_threshold = curriculum_threshold
        self.fixed_pattern_seed = fixed_pattern_seed
        self.perturb = False  # the curriculum's "population": starts off
        self.scheme: QuantScheme | None = None
        self._quantized: dict[str, tuple[QuantizedTensor, torch.Tensor]] = {}
        self._fixed_flips: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None

    def start(self, model: nn.Module, scheme: QuantScheme) -> None:
        self.scheme = scheme
        self._fixed_flips = None
        super().start(model, scheme)

    def parameters_for_step(self, model: nn.Module, step: int) -> dict[str, torch.Tensor]:
        """The fake-quantized parameters; their codes and values are kept for this step's
        perturbed pass (the weights do not change in between)."""
        params = dict(model.named_parameters())
        result, self._quantized = {}, {}
        for name, scheme in self.schemes.items():
            param = params[name]
            quantized = quantize(param, scheme)
            if scheme.binary:
                result[name] = fake_quantize(param, scheme)
                values = result[name].detach()
            else:
                values = quantized.dequantize().to(param.dtype)
                result[name] = values + (param - param.detach())
            self._quantized[name] = (quantized, values)
        return result

    def flip_masks(self, step: int) -> dict[str, torch.Tensor]:
        """Parameter name -> flat uint8 XOR mask of this step's bit errors on its codes: a fresh
        pattern seeded by ``seed`` and ``step``, or the one fixed pattern of
        ``fixed_pattern_seed``. Call after :meth:`parameters_for_step`."""
        return {
            name: dense_mask(self._quantized[name][0].codes.numel(), index, values)
            for name, (index, values) in self.flips(step).items()
        }

    def flips(self, step: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`flip_masks` kept sparse: name -> (sorted flat code indices, mask bytes)."""
        if self.fixed_pattern_seed is not None:
            if self._fixed_flips is None:  # value independent (symmetric rate): sample once
                masks = self._sample_fixed_masks(self.fixed_pattern_seed)
                self._fixed_flips = {
                    name: (index, mask.index_select(0, index))
                    for name, mask in masks.items()
                    for index in [torch.nonzero(mask).squeeze(1)]
                }
            return self._fixed_flips
        generator = torch.Generator().manual_seed(stable_seed("randbet", self.seed, step))
        return {
            name: sparse_flips(
                quantized.shape, quantized.scheme.bits, self.bit_error_rate, generator
            )
            for name, (quantized, _) in self._quantized.items()
        }

    def _sample_fixed_masks(self, seed: int) -> dict[str, torch.Tensor]:
        """The masks that evaluation with ``RandomBitErrors(bit_error_rate, sampler=2)`` and
        ``seed`` gives on this step's codes; at one symmetric rate they depend only on the
        seed, the parameter names and the code shapes and widths, not on the weights."""
        assert self.scheme is not None, "start() first"
        codes = QuantizedModel({name: q for name, (q, _) in self._quantized.items()}, self.scheme)
        pattern = fixed_pattern_faults(self.bit_error_rate).sample(codes, seed)
        return {name: mask.reshape(-1) for name, mask in pattern.masks.items()}

    def perturbed_values(self, model: nn.Module, step: int) -> dict[str, torch.Tensor]:
        """This step's weights with its bit error pattern (:meth:`flip_masks`), clamped to
        ±w_max: the clean values with only the flipped elements decoded again.
        Call after :meth:`parameters_for_step`; the result carries no gradient."""
        flips_by_name = self.flips(step)
        params = dict(model.named_parameters())
        perturbed = {}
        for name, (quantized, values) in self._quantized.items():
            param = params[name].detach()
            flipped, flips = flips_by_name[name]
            flips, flipped = flips.to(values.device), flipped.to(values.device)
            codes = quantized.codes.reshape(-1)[flipped] ^ flips
            faulty = quantized.decode(codes).to(values.dtype)
            # Dequantized values lie in [low, high]: clamp only when that exceeds ±w_max.
            if float(quantized.low) < -self.bound or float(quantized.high) > self.bound:
                values, faulty = (
                    values.clamp(-self.bound, self.bound),
                    faulty.clamp_(-self.bound, self.bound),
                )
            # param + (faulty - param), as the reference form: not always exactly faulty
            delta = values - param
            delta.view(-1)[flipped] = faulty - param.reshape(-1)[flipped]
            perturbed[name] = delta.add_(param)
        return perturbed

    def after_backward(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        loss_fn: LossFn,
        loss: float,
        step: int,
    ) -> float | None:
        perturbed_loss = None
        if self.perturb:
            perturbed_loss = self._perturbed_pass(model, images, labels, loss_fn, step)
        tau = self.curriculum_threshold
        mean = (loss + (perturbed_loss or 0.0)) / 2
        self.perturb = loss < 1.15 * tau and mean <= tau
        return perturbed_loss

    def _perturbed_pass(self, model, images, labels, loss_fn: LossFn, step: int) -> float:
        """Add the clamped perturbed gradient to the clean one and average the two."""
        perturbed = {
            name: value.requires_grad_()
            for name, value in self.perturbed_values(model, step).items()
        }
        # Running statistics (batch norm) must not learn from the perturbed pass: give it copies.
        buffers = {name: buf.clone() for name, buf in model.named_buffers()}
        loss = loss_fn(functional_call(model, {**perturbed, **buffers}, (images,)), labels)
        names = list(perturbed)
        grads = torch.autograd.grad(loss, [perturbed[n] for n in names], allow_unused=True)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, grad in zip(names, grads):
                param = params[name]
                if param.grad is None:
                    param.grad = torch.zeros_like(param)
                if grad is not None:
                    param.grad.add_(grad.clamp_(-self.grad_clip, self.grad_clip))
                param.grad.div_(2.0)
        return loss.item()


class BitFlipTraining(Normal):
    """Bit flip injection training of binarized networks (Buschjäger et al., BFIT): every
    forward pass sees the binary weights with a fresh pattern of sign flips, −1→+1 at
    ``zero_to_one`` and +1→−1 at ``one_to_zero`` (the binary code's 0→1 and 1→0);
    straight-through gradient. Weights projected to ±``bound``.

    ``faults`` trains against any fault model of the one contract instead (e.g.
    :class:`~bitrobust.faults.StuckAtCells`, or a chip's :class:`~bitrobust.faults.ProfiledSRAM`):
    step ``s`` uses its pattern for seed ``stable_seed("bitflip", seed, s)`` on the step's
    1-bit codes. Without it, the flips come from one fast generator with the same distribution
    as :class:`~bitrobust.faults.RandomBitErrors` at those rates."""

    name = "bitflip"

    def __init__(
        self,
        zero_to_one: float,
        one_to_zero: float,
        seed: int = 0,
        bound: float = 1.0,
        faults: FaultModel | None = None,
    ) -> None:
        super().__init__(bound)
        self.rates = (zero_to_one, one_to_zero)
        self.faults = faults
        self.seed = seed
        self.binary: set[str] = set()
        self.generator: torch.Generator | None = None

    def start(self, model: nn.Module, scheme: QuantScheme) -> None:
        schemes = parameter_schemes(model, scheme)
        self.binary = {name for name, param_scheme in schemes.items() if param_scheme.binary}
        if not self.binary:
            raise BitrobustError(
                "method 'bitflip' flips binary weights, and this model has none "
                "(use a binarized model such as bnn-mlp, or randbet for multi-bit weights)"
            )
        device = next(iter(model.parameters())).device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(stable_seed("bitflip", self.seed))
        super().start(model, scheme)

    def parameters_for_step(self, model: nn.Module, step: int) -> dict[str, torch.Tensor]:
        params = super().parameters_for_step(model, step)
        assert self.generator is not None, "start() first"
        if self.faults is None:
            return flipped_parameters(params, self.binary, self.rates, self.generator)
        codes = QuantizedModel(
            {name: quantize(params[name], BINARY) for name in self.binary}, BINARY
        )
        pattern = self.faults.sample(codes, stable_seed("bitflip", self.seed, step))
        faulty = pattern.parameters(codes)
        return {
            name: straight_through(value, faulty[name].to(value.dtype))
            if name in self.binary
            else value
            for name, value in params.items()
        }


class FrozenWeights:
    """Plain training of the module's own forward pass (it quantizes, if at all, by itself)
    with the elements at ``masks`` (parameter name -> bool tensor of its shape) kept: their
    gradients are zeroed before each optimizer step. ``refresh(model)``, when given, runs after
    every step, e.g. to re-quantize an emulated accelerator's weight codes.

    Zeroing the gradient keeps a weight only for optimizers without weight decay whose update
    is 0 on a zero gradient from the start (plain SGD, momentum included)."""

    name = "frozen"

    def __init__(
        self,
        masks: dict[str, torch.Tensor],
        refresh: Callable[[nn.Module], None] | None = None,
    ) -> None:
        self.masks = masks
        self.refresh = refresh

    def start(self, model: nn.Module, scheme: QuantScheme | None) -> None:
        params = dict(model.named_parameters())
        unknown = sorted(set(self.masks) - set(params))
        if unknown:
            raise BitrobustError(f"no parameter named: {', '.join(unknown)}")

    def parameters_for_step(self, model: nn.Module, step: int) -> dict[str, torch.Tensor]:
        return {}

    def after_backward(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        loss_fn: LossFn,
        loss: float,
        step: int,
    ) -> float | None:
        params = dict(model.named_parameters())
        for name, mask in self.masks.items():
            grad = params[name].grad
            if grad is not None:
                grad[mask] = 0.0
        return None

    def after_step(self, model: nn.Module) -> None:
        if self.refresh is not None:
            with torch.no_grad():
                self.refresh(model)


def method_from_name(name: str, config) -> Normal:
    """The method object for a name of :data:`~bitrobust.names.TRAIN_METHODS`, with the
    settings of ``config`` (a :class:`~bitrobust.train.config.TrainConfig`)."""
    if name == "normal":
        return Normal(config.projection_bound)
    if name == "clipping":
        return Clipping(config.projection_bound)
    if name == "randbet":
        return RandBET(
            config.projection_bound,
            config.bit_error_rate,
            seed=config.seed,
            grad_clip=config.perturbed_grad_clip,
            curriculum_threshold=config.curriculum_threshold,
            fixed_pattern_seed=config.fixed_pattern_seed,
        )
    if name == "bitflip":
        return BitFlipTraining(*config.flip_rates, seed=config.seed, bound=config.projection_bound)
    raise BitrobustError(f"unknown training method '{name}' (known: {', '.join(METHODS)})")


METHODS: dict[str, type[Normal]] = {
    "normal": Normal,
    "clipping": Clipping,
    "randbet": RandBET,
    "bitflip": BitFlipTraining,
}
"""The registered methods by name: the names of :data:`bitrobust.names.TRAIN_METHODS`."""
