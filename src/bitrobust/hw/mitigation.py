"""Mitigating permanent PE faults: FaL-reTune, fault-aware pruning (FAP) and FAP + retraining.

:func:`mitigate` takes a deployed model (:class:`~bitrobust.hw.deploy.AcceleratorDeployment`)
and a sampled fault pattern, and returns a *new* deployment and pattern: the deployment's module
is copied and the copy changed (weight codes, biases), the datapath faults are passed to the
forward passes that need them and, for bypassing FAP, come back marked ``bypass``. Nothing the
caller holds is modified. The helpers below (:func:`map_weights`, :func:`prune_faulty`,
:func:`retune`) work on a layer or module the caller owns, with the faults as an argument. They
are *reconstructions*: the FaL-reTune algorithm text (Siddique & Hoque 2023) was not available,
see ``papers.md`` §2.3.

- ``fap`` (Zhang et al., VTS'18): every weight on a faulty PE is pruned. With ``bypass=True``
  (the default, the hardware meaning of pruning) the faulty PEs are bypassed: their MACs add
  nothing, so a stuck bit no longer shows (:class:`~bitrobust.hw.emulate.LayerFault` ``bypass``).
  With ``bypass=False`` the weight is only set to its zero-point code; on a product stuck-at
  fault the PE then still adds a wrong product (e.g. 2^b for stuck-at-1 at bit b), so this is
  the weaker, software-only pruning.
- ``fap-t``: FAP, then the remaining weights are fine-tuned through the faulty accelerator
  (straight-through gradient, pruned weights frozen at 0).
- ``falretune``: (1) weight mapping: each weight code ``q_w`` on a faulty PE is replaced by

      q* = argmin_q' Σ_a h(a) · | F(a, q') − z_a·q' − (T(a, q_w) − z_a·q_w) |

  where T is the multiplier's table, F the faulty table (the stuck bit forced), z_a the
  layer's activation zero point and h the histogram of the layer's input codes over the
  calibration examples, collected on the fault-free accelerator. The z_a terms make the
  objective the MAC's contribution to ``Σ (a − z_a)(w − z_w)`` (they vanish for signed
  multipliers and ReLU inputs); the candidate codes are all codes the layer's quantizer can
  produce (0..255 unsigned, −127..127 signed), and the original code is kept unless another is
  strictly better. With ``compensate_bias`` (default; an addition of this reconstruction, not
  in papers.md) the mean signed residual error of the mapped faulty MACs of each output, over
  the same histogram, is then subtracted from that output's bias: a high stuck-at-1 bit adds an
  almost constant 2^b to every product, which no weight code can undo but the bias can. Since
  the bias then absorbs each MAC's mean error, the default ``objective="centered"`` scores a
  code by the error around its mean, Σ_a h(a)·|e(a, q') − ē(q')|, instead of the plain
  ``objective="absolute"`` formula above (papers.md's). On an MNIST MLP (16×16 array, 50 %
  faulty PEs, bit 14 stuck at 1, exact multiplier) the mapping alone restores 79 % accuracy with
  the centered objective and bias compensation, 10 % with the absolute one, from 10 %.
  Limitation: with an unsigned multiplier, weight codes sit around their zero point (≈128),
  so products a·q are large and a high stuck-at-1 bit is set for some activations and not
  others; no code makes that error constant. Where the layer's inputs are ReLU outputs (most
  codes 0) the mapping still works, but on a first layer fed normalized pixels it cannot:
  Fashion-MNIST MLP, bit 14 stuck at 1 in 50 % of the PEs of one layer, mapping only, 22 %
  accuracy in the first layer vs 87 % and 86 % in the hidden and output layers (fault free
  89 %; bypassing FAP 88 %, 88 %, 83 %; zero-code FAP 10 % everywhere).
  Faults on the partial sum (site ``accumulator``) have no product to match:
  the mapping step leaves those weights unchanged. (2) retuning: all other weights and the
  biases are fine-tuned through the faulty forward pass, mapped weights frozen, for a few epochs
  at a small learning rate (SGD with momentum), the weight quantization grid (scale, zero point)
  kept fixed. (3) guard (``guard=True``): the accuracy on the retuning examples of the faulty
  model before mitigation, after mapping and after retuning is compared, and the best is kept
  (ties go to the later stage). FaL-reTune therefore never does worse than no mitigation *on the
  retuning examples*; on held-out data it usually, but not provably, does not either.

The retuning examples are the first ``examples`` of the training images given.

:func:`retrain` is the same retuning with no fault at all: approximation-aware retraining, which
turns a model quantized for a multiplier into an AxDNN fine-tuned for it (straight-through
gradient through the multiplier's table), before any fault is known.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bitrobust.errors import BitrobustError
from bitrobust.evaluate import accuracy
from bitrobust.faults import FaultPattern
from bitrobust.hw.convert import emulated_layers
from bitrobust.hw.deploy import AcceleratorDeployment
from bitrobust.hw.emulate import PRODUCT_BITS, LayerFault, decode, force_bit
from bitrobust.hw.layers import EmulatedLayer, affine_qparams, datapath_faults, quantize_codes
from bitrobust.hw.tables import SIZE
from bitrobust.train import Batches, FrozenWeights, fit

METHODS = ("none", "fap", "fap-t", "falretune")
OBJECTIVES = ("absolute", "centered")


@dataclass(frozen=True)
class MitigationConfig:
    """How to mitigate: ``method`` (``fap``, ``fap-t``, ``falretune``; ``none`` does nothing),
    the retuning schedule (``epochs``, ``lr``, ``batch_size``, ``momentum``, ``examples`` from
    the training images), ``bypass`` (FAP: bypass the faulty PEs rather than write zero codes),
    ``guard`` (FaL-reTune: keep the best of before/mapped/retuned on the retuning examples),
    ``compensate_bias`` (FaL-reTune: absorb the mapped MACs' mean residual error in the bias),
    ``objective`` (FaL-reTune's mapping: ``absolute`` or ``centered``, see the module docstring)
    and the shuffling ``seed``."""

    method: str = "falretune"
    epochs: int = 2
    lr: float = 0.005
    examples: int = 2000
    batch_size: int = 128
    momentum: float = 0.9
    bypass: bool = True
    guard: bool = True
    compensate_bias: bool = True
    objective: str = "centered"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BitrobustError(
                f"unknown mitigation {self.method!r} (known: {', '.join(METHODS)})"
            )
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise BitrobustError(f"retune epochs must be an integer >= 0, got {self.epochs!r}")
        if not (self.lr >= 0 and math.isfinite(self.lr)):
            raise BitrobustError(f"retune learning rate must be >= 0, got {self.lr!r}")
        if self.objective not in OBJECTIVES:
            raise BitrobustError(
                f"unknown mapping objective {self.objective!r} (known: {', '.join(OBJECTIVES)})"
            )
        if self.examples < 1 or self.batch_size < 1:
            raise BitrobustError("retune examples and batch size must be at least 1")

    @property
    def retunes(self) -> bool:
        return self.method in ("fap-t", "falretune") and self.epochs > 0


def candidate_codes(signed: bool) -> torch.Tensor:
    """Weight codes the layer's quantizer can produce (uint8 patterns as int64)."""
    codes = torch.arange(SIZE)
    return codes[codes != 128] if signed else codes


@torch.no_grad()
def activation_histograms(model: nn.Module, images: torch.Tensor, batch_size: int = 500):
    """Per emulated layer: counts (float64, 256) of its input codes (GEMM rows, padding
    included) over ``images``, on the model as it is (call it fault free)."""
    layers = emulated_layers(model)
    counts = {name: torch.zeros(SIZE, dtype=torch.float64) for name in layers}
    handles = []
    for name, layer in layers.items():

        def hook(module: EmulatedLayer, inputs: tuple[torch.Tensor, ...], name: str = name):
            x = inputs[0]
            scale, zero = module.input_qparams(x)
            codes = quantize_codes(x.detach(), scale, zero, module.multiplier.signed)
            rows = module.activation_rows(codes, zero)
            counts[name] += (
                torch.bincount(rows.reshape(-1).to(torch.int64), minlength=SIZE)
                .to(torch.float64)
                .cpu()
            )

        handles.append(layer.register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    device = next(iter(model.parameters())).device
    try:
        for start in range(0, len(images), batch_size):
            model(images[start : start + batch_size].to(device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return counts


def mapping_costs(
    layer: EmulatedLayer, histogram: torch.Tensor, bit: int, stuck_at: int
) -> torch.Tensor:
    """C[q_w, q'] = Σ_a h(a)·|F(a, q') − z_a·v(q') − T(a, q_w) + z_a·v(q_w)| (float64, 256×256)
    with v the decoded weight value; columns of codes the quantizer cannot produce are +inf."""
    return _mapping_terms(layer, histogram, bit, stuck_at, "absolute")


def centered_costs(
    layer: EmulatedLayer, histogram: torch.Tensor, bit: int, stuck_at: int
) -> torch.Tensor:
    """Like :func:`mapping_costs` with each error measured from its histogram mean,
    Σ_a h(a)·|e(a) − ē|: the error left once the mean is absorbed in the bias."""
    return _mapping_terms(layer, histogram, bit, stuck_at, "centered")


def mapping_bias(
    layer: EmulatedLayer, histogram: torch.Tensor, bit: int, stuck_at: int
) -> torch.Tensor:
    """E[q_w, q'] = Σ_a h(a)·(F(a, q') − z_a·v(q') − T(a, q_w) + z_a·v(q_w)) / Σ_a h(a): the
    mean signed error a MAC with intended code q_w makes when it holds q' (float64, 256×256)."""
    return _mapping_terms(layer, histogram, bit, stuck_at, "mean")


def _mapping_terms(
    layer: EmulatedLayer, histogram: torch.Tensor, bit: int, stuck_at: int, kind: str
) -> torch.Tensor:
    multiplier = layer.multiplier
    signed = multiplier.signed
    table = torch.from_numpy(multiplier.table.astype("int64"))
    faulty = force_bit(table, bit, stuck_at, PRODUCT_BITS, signed)
    low, high = (float(v) for v in layer.act_range)
    if math.isnan(low):
        raise BitrobustError("FaL-reTune's mapping needs calibrated activation ranges")
    _, act_zero = affine_qparams(low, high, signed)
    values = decode(torch.arange(SIZE, dtype=torch.uint8), signed).to(torch.int64)
    support = torch.nonzero(histogram > 0).flatten()
    weights = histogram[support]  # (A,)
    target = (table[support] - act_zero * values).to(torch.float64)  # (A, 256) by q_w
    actual = (faulty[support] - act_zero * values).to(torch.float64)  # (A, 256) by q'
    costs = torch.empty((SIZE, SIZE), dtype=torch.float64)
    for start in range(0, SIZE, 32):
        diff = actual[:, None, :] - target[:, start : start + 32, None]  # (A, 32, 256)
        if kind == "mean":
            diff = diff / weights.sum().clamp_min(1e-300)
        elif kind == "centered":
            mean = torch.einsum("a,aqp->qp", weights, diff) / weights.sum().clamp_min(1e-300)
            diff = (diff - mean).abs()
        else:
            diff = diff.abs()
        costs[start : start + 32] = torch.einsum("a,aqp->qp", weights, diff)
    if kind == "mean":
        return costs
    allowed = torch.zeros(SIZE, dtype=torch.bool)
    allowed[candidate_codes(signed)] = True
    costs[:, ~allowed] = math.inf
    return costs


def best_codes(costs: torch.Tensor) -> torch.Tensor:
    """For each code q_w (0..255): argmin_q' C[q_w, q'], q_w itself unless strictly beaten."""
    best = costs.argmin(dim=1)
    own = torch.arange(SIZE)
    keep = costs[own, best] >= costs[own, own]
    return torch.where(keep, own, best)


def map_weights(
    layer: EmulatedLayer,
    fault: LayerFault | None,
    histogram: torch.Tensor,
    compensate_bias: bool = False,
    objective: str = "absolute",
) -> int:
    """FaL-reTune's mapping step on one layer (product faults only); returns codes changed.

    With ``compensate_bias`` the mean signed error that the mapped faulty MACs of each output
    still make over the histogram (:func:`mapping_bias`) is subtracted from the layer's bias.
    """
    if fault is None or fault.site != "product" or fault.bypass:
        return 0
    if objective not in OBJECTIVES:
        raise BitrobustError(f"unknown mapping objective {objective!r}")
    costs = (centered_costs if objective == "centered" else mapping_costs)(
        layer, histogram, fault.bit, fault.stuck_at
    )
    mapping = best_codes(costs)
    codes = layer.weight_codes.to(torch.int64)
    mask = fault.mask.to(codes.device)
    mapped = torch.where(mask, mapping.to(codes.device)[codes], codes)
    if compensate_bias and layer.bias is not None:
        errors = mapping_bias(layer, histogram, fault.bit, fault.stuck_at)
        per_mac = errors[codes.cpu(), mapped.cpu()].to(codes.device)  # (K, M)
        residual = torch.where(mask, per_mac, torch.zeros_like(per_mac)).sum(dim=0)
        act_scale, _ = affine_qparams(*(float(v) for v in layer.act_range), layer.multiplier.signed)
        shift = (residual * (act_scale * layer.weight_scale)).to(layer.bias.dtype)
        layer.bias.data -= shift.to(layer.bias.device)
    layer.set_weight_codes(mapped.to(torch.uint8))
    _sync_float_weight(layer, mask)
    return int((mapped != codes).sum())


def _sync_float_weight(layer: EmulatedLayer, mask: torch.Tensor) -> None:
    """Set the float weight at ``mask`` to what its (new) code stands for."""
    values = layer.weight_values().to(torch.float32) * layer.weight_scale
    gemm = layer.weight.data.reshape(layer.weight.shape[0], -1).t()  # a view (K, M)
    gemm[mask] = values[mask].to(gemm.dtype)


# -- pruning --------------------------------------------------------------------------------
def prune_faulty(
    layer: EmulatedLayer, fault: LayerFault | None, bypass: bool = True
) -> tuple[int, LayerFault | None]:
    """FAP on one layer: weights on faulty PEs → the zero-point code (value 0), and with
    ``bypass`` the faulty PEs are skipped. Returns the number of pruned weights and the fault
    as it now acts (marked ``bypass``, or unchanged)."""
    if fault is None:
        return 0, None
    mask = fault.mask.to(layer.weight_codes.device)
    zero_code = layer.weight_zero & 0xFF
    codes = torch.where(mask, torch.full_like(layer.weight_codes, zero_code), layer.weight_codes)
    layer.set_weight_codes(codes)
    _sync_float_weight(layer, mask)
    return int(mask.sum()), dataclasses.replace(fault, bypass=True) if bypass else fault


# -- retuning -------------------------------------------------------------------------------
def frozen_masks(faults: Mapping[str, LayerFault]) -> dict[str, torch.Tensor]:
    """Per emulated layer with faults: its faulty MACs (K×M), whose weights retuning keeps."""
    return {name: fault.mask for name, fault in faults.items()}


def _requantize_fixed(layer: EmulatedLayer, frozen: torch.Tensor | None) -> None:
    """Codes of the current float weight on the layer's fixed grid, frozen MACs untouched."""
    codes = quantize_codes(
        layer.gemm_weight(), layer.weight_scale, layer.weight_zero, layer.multiplier.signed
    )
    if frozen is not None:
        codes = torch.where(frozen.to(codes.device), layer.weight_codes, codes)
    layer.set_weight_codes(codes)


@dataclass(frozen=True)
class RetrainConfig:
    """Approximation-aware retraining (:func:`retrain`): ``epochs`` of SGD with momentum at
    ``lr`` on the first ``examples`` training images, in batches of ``batch_size`` shuffled by
    ``seed``."""

    epochs: int = 2
    lr: float = 0.005
    examples: int = 2000
    batch_size: int = 128
    momentum: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise BitrobustError(f"retrain epochs must be an integer >= 1, got {self.epochs!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise BitrobustError(f"retrain learning rate must be > 0, got {self.lr!r}")
        if self.examples < 1 or self.batch_size < 1:
            raise BitrobustError("retrain examples and batch size must be at least 1")


def retune(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: MitigationConfig | RetrainConfig,
    frozen: dict[str, torch.Tensor] | None = None,
) -> list[float]:
    """Fine-tune the weights and biases through the (faulty) emulated forward pass with a
    straight-through gradient; weights at ``frozen`` MACs (per layer, K×M) keep their codes.
    Returns the mean loss per epoch. The loop is :func:`bitrobust.train.fit`."""
    layers = emulated_layers(model)
    frozen = frozen or {}
    params = []
    for layer in layers.values():
        layer.weight.requires_grad_(True)
        params.append(layer.weight)
        if layer.bias is not None:
            layer.bias.requires_grad_(True)
            params.append(layer.bias)
    masks = {
        f"{name}.weight": frozen[name].t().reshape(layer.weight.shape).to(layer.weight.device)
        for name, layer in layers.items()
        if name in frozen
    }

    def requantize(model: nn.Module) -> None:
        for name, layer in layers.items():
            _requantize_fixed(layer, frozen.get(name))

    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    device = next(iter(model.parameters())).device
    batches = Batches(images, labels, config.batch_size, config.seed, device)
    was_training = model.training
    model.eval()  # running statistics and dropout as at inference; gradients still flow
    try:
        history = fit(model, batches, FrozenWeights(masks, requantize), optimizer, config.epochs)
    finally:
        for layer in layers.values():
            layer.weight.requires_grad_(False)
            if layer.bias is not None:
                layer.bias.requires_grad_(False)
        model.train(was_training)
    return history.loss


def retrain(
    deployment: AcceleratorDeployment,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: RetrainConfig,
) -> AcceleratorDeployment:
    """Approximation-aware retraining: a copy of ``deployment`` fine-tuned through its own
    fault-free forward pass (the multiplier's table, straight-through gradient) on the first
    ``config.examples`` of ``images``, weight grid and activation ranges kept. What an AxDNN is
    before faults: the model adapted to its approximate multiplier."""
    model = copy.deepcopy(deployment.module)
    count = config.examples
    with datapath_faults({}):
        retune(model, images[:count], labels[:count], config)
    return AcceleratorDeployment(model, deployment.accelerator)


# -- the methods ----------------------------------------------------------------------------
def fault_aware_pruning(
    model: nn.Module, faults: Mapping[str, LayerFault], bypass: bool = True
) -> tuple[int, dict[str, LayerFault]]:
    """FAP on every faulty layer of ``model`` (changed in place); returns the number of pruned
    weights and the faults as they now act."""
    layers = emulated_layers(model)
    pruned, after = 0, {}
    for name, fault in faults.items():
        count, now = prune_faulty(layers[name], fault, bypass)
        pruned += count
        if now is not None:
            after[name] = now
    return pruned, after


@dataclass(frozen=True, eq=False)
class Mitigated:
    """A mitigation's result: the new deployment, the pattern as it now acts (datapath faults
    bypassed where the hardware routes around them; memory faults unchanged, as they hit what
    is stored) and a JSON-ready summary."""

    deployment: AcceleratorDeployment
    pattern: FaultPattern
    summary: dict[str, Any]


def mitigate(
    deployment: AcceleratorDeployment,
    pattern: FaultPattern,
    config: MitigationConfig,
    images: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
) -> Mitigated:
    """Apply ``config.method`` against the datapath faults of ``pattern`` on a copy of the
    ``deployment`` (an :class:`~bitrobust.hw.deploy.AcceleratorDeployment`).

    ``images``/``labels``: training examples (the first ``config.examples`` are used) for the
    activation histograms (on the fault-free accelerator) and retuning.
    """
    summary: dict[str, Any] = {"method": config.method}
    if config.method == "none":
        return Mitigated(deployment, pattern, summary)
    needs_data = config.retunes or config.method == "falretune"
    if needs_data and (images is None or labels is None):
        raise BitrobustError(f"mitigation {config.method!r} needs training images and labels")
    if images is not None:
        images = images[: config.examples]
        labels = None if labels is None else labels[: config.examples]
    model = copy.deepcopy(deployment.module)
    faults = dict(pattern.datapath)
    if config.method in ("fap", "fap-t"):
        summary["pruned_weights"], faults = fault_aware_pruning(model, faults, config.bypass)
        summary["bypass"] = config.bypass
        if config.retunes:
            assert images is not None and labels is not None
            with datapath_faults(faults):
                summary["retune_loss"] = retune(model, images, labels, config, frozen_masks(faults))
    else:
        assert images is not None and labels is not None
        model = _falretune(model, faults, config, images, labels, summary)
    mitigated = AcceleratorDeployment(model, deployment.accelerator)
    return Mitigated(mitigated, dataclasses.replace(pattern, datapath=faults), summary)


def _falretune(
    model: nn.Module,
    faults: dict[str, LayerFault],
    config: MitigationConfig,
    images: torch.Tensor,
    labels: torch.Tensor,
    summary: dict[str, Any],
) -> nn.Module:
    """FaL-reTune on ``model`` (owned by the caller); returns the model kept by the guard."""
    layers = emulated_layers(model)
    histograms = activation_histograms(model, images)  # no faults active: fault free

    def faulty_accuracy(candidate: nn.Module) -> float:
        with datapath_faults(faults):
            return accuracy(candidate, images, labels)

    stages: list[tuple[str, float, nn.Module]] = []
    if config.guard:
        stages.append(("none", faulty_accuracy(model), copy.deepcopy(model)))
    summary["mapped_weights"] = sum(
        map_weights(
            layer, faults.get(name), histograms[name], config.compensate_bias, config.objective
        )
        for name, layer in layers.items()
    )
    if config.guard:
        stages.append(("mapped", faulty_accuracy(model), copy.deepcopy(model)))
    if config.retunes:
        with datapath_faults(faults):
            summary["retune_loss"] = retune(model, images, labels, config, frozen_masks(faults))
        if config.guard:
            stages.append(("retuned", faulty_accuracy(model), model))
    if not config.guard:
        return model
    best = max(range(len(stages)), key=lambda i: (stages[i][1], i))
    summary["kept"] = stages[best][0]
    summary["retune_accuracy"] = {stage: value for stage, value, _ in stages}
    return stages[best][2]


__all__ = [
    "METHODS",
    "MitigationConfig",
    "activation_histograms",
    "best_codes",
    "candidate_codes",
    "fault_aware_pruning",
    "map_weights",
    "mapping_bias",
    "mapping_costs",
    "Mitigated",
    "mitigate",
    "prune_faulty",
    "RetrainConfig",
    "retrain",
    "retune",
]
