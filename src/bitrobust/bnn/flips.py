"""Logits of a binarized network with one neuron's output negated: the core of flip importance.

:func:`flipped_logits_function` gives, for a block, a function of its batch output that
returns the logits with each neuron of a group flipped (one copy of the batch per neuron). It
computes exactly what running the flipped copies through the rest of the network computes, at
a fraction of the cost, because the network's pre-activations are integer sums of ±1 terms,
exact in float32, so changes can be added to clean values without any rounding:

- The next binarized layer's pre-activation changes by −2·o_j·w_j when output o_j of neuron j
  is negated (:func:`flipped_pre_activation`): a rank-one change for a linear layer, a
  one-channel convolution for a conv layer.
- A linear block → linear block → output layer network takes a shortcut
  (:func:`_two_valued_start`): each next pre-activation moves by exactly ±2, so the next block's
  output takes one of two precomputed values, and one matrix product gives a whole group.
- Any other shape falls back to running flipped copies through the rest of the network.

The max-pool and sign activation run in cheaper forms with the same values (max is exact;
sign(hardtanh(y)) = +1 iff y > 0). tests/test_bnn_metrics.py compares every path with
brute-force flips.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from bitrobust.bnn.layers import (
    BinarizedBlock,
    BinarizedConv2d,
    BinarizedLinear,
    BinarizedNetwork,
    SignActivation,
)

FlippedLogits = Callable[[torch.Tensor], torch.Tensor]
"""Given the indices of a group of G neurons, the logits (G, N, classes) with each neuron's
output negated for all N examples of the batch (one copy per neuron)."""

Start = Callable[[torch.Tensor], FlippedLogits]
"""Given a block's output on a batch, the :data:`FlippedLogits` of that batch (what every
group shares is computed once)."""

BinarizedLayer = BinarizedLinear | BinarizedConv2d


@dataclass(frozen=True)
class FlippedTail:
    """What runs on a binarized layer's output: the rest of its block (if in one), then the
    stages ``rest``."""

    block: BinarizedBlock | None
    rest: nn.Sequential

    def __call__(self, pre_activation: torch.Tensor) -> torch.Tensor:
        return self.rest(self.activate(pre_activation))

    def activate(self, pre_activation: torch.Tensor) -> torch.Tensor:
        """The block's ±1 output for its layer's output (unchanged without a block)."""
        if self.block is None:
            return pre_activation
        x = self.block.norm(_max_pool(self.block.pool, pre_activation))
        if isinstance(self.block.activation, SignActivation):
            return torch.where(x > 0, 1.0, -1.0).to(x.dtype)
        return self.block.activation(x)


@dataclass(frozen=True)
class NextLayer:
    """A binarized layer after some reshapes (a flatten), and what runs on its output."""

    reshape: nn.Sequential
    layer: BinarizedLayer
    tail: FlippedTail


def flipped_logits_function(network: BinarizedNetwork, index: int) -> Start:
    """For block ``index`` of ``network``: the :data:`Start` of its flipped logits (see the
    module docstring for the paths)."""
    stages = list(network.layers)
    following = next_layer(stages, index + 1)
    block = stages[index]
    if following is None or not isinstance(block.activation, SignActivation):  # not ±1 outputs
        rest = nn.Sequential(*stages[index + 1 :])
        return lambda output: partial(_recomputed_logits, rest, output)
    output_layer = _output_layer_after(following)
    if output_layer is not None:
        return _two_valued_start(following, output_layer)
    return _incremental_start(following)


def next_layer(stages: list[nn.Module], position: int) -> NextLayer | None:
    """The first binarized layer from ``position`` on, if only a plain flatten comes before it
    and the change of a flip can be added to its output (no grouped or odd-padded conv)."""
    reshapes = []
    if position < len(stages) and isinstance(stages[position], nn.Flatten):
        flatten = stages[position]
        if (flatten.start_dim, flatten.end_dim) != (1, -1):
            return None
        reshapes.append(flatten)
        position += 1
    if position >= len(stages):
        return None
    stage = stages[position]
    rest = nn.Sequential(*stages[position + 1 :])
    if isinstance(stage, BinarizedBlock):
        layer, block = stage.layer, stage
    elif isinstance(stage, (BinarizedLinear, BinarizedConv2d)):
        layer, block = stage, None
    else:
        return None
    if isinstance(layer, BinarizedConv2d) and (
        reshapes
        or layer.groups != 1
        or isinstance(layer.padding, str)
        or layer.padding_mode != "zeros"
    ):
        return None
    return NextLayer(nn.Sequential(*reshapes), layer, FlippedTail(block, rest))


def _output_layer_after(following: NextLayer) -> NextLayer | None:
    """For a linear block fed directly: the linear layer (not in a block) right after it."""
    if len(following.reshape) or not isinstance(following.layer, BinarizedLinear):
        return None
    if following.tail.block is None:
        return None
    after = next_layer(list(following.tail.rest), 0)
    if after is None or len(after.reshape) or after.tail.block is not None:
        return None
    return after if isinstance(after.layer, BinarizedLinear) else None


# -- the paths -------------------------------------------------------------------------------


def _recomputed_logits(rest: nn.Module, output: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """:data:`FlippedLogits` by running flipped copies of ``output`` through ``rest``."""
    copies = output.unsqueeze(0).repeat((len(group),) + (1,) * output.dim())
    rows = torch.arange(len(group), device=output.device)
    copies[rows, :, group] = -copies[rows, :, group]
    return rest(copies.flatten(0, 1)).view(len(group), len(output), -1)


def _incremental_start(following: NextLayer) -> Start:
    """Clean output of the next layer (once per batch) plus each flip's change; then the
    rest of the network."""

    def start(output: torch.Tensor) -> FlippedLogits:
        clean = following.layer(following.reshape(output))
        return partial(_incremental_logits, following, output, clean)

    return start


def _incremental_logits(
    following: NextLayer, output: torch.Tensor, clean: torch.Tensor, group: torch.Tensor
) -> torch.Tensor:
    changed = flipped_pre_activation(following.layer, output, clean, group)
    return following.tail(changed.flatten(0, 1)).view(len(group), len(output), -1)


def _two_valued_start(following: NextLayer, output_layer: NextLayer) -> Start:
    """Linear block → linear block → output layer: one flip moves each pre-activation a of the
    next block by +2 or −2 (the sign of −o_j·w_ij), so each of its outputs is the block's
    output at a + 2 or at a − 2, computed once per batch. The output layer's change is then a
    product with the 0/1 matrix of the negative weights: one matrix product per group."""
    layer, tail = following.layer, following.tail
    negative = layer.weight <= 0  # binarized to −1

    def start(output: torch.Tensor) -> FlippedLogits:
        weight = _signs(output_layer.layer.weight).to(output.dtype)
        pre = layer(output)
        clean = tail.activate(pre)
        up = tail.activate(pre + 2) - clean  # the output change where a flip adds 2
        down = tail.activate(pre - 2) - clean  # where it subtracts 2
        logits = output_layer.layer(clean)
        if_plus = logits + down @ weight.t()  # o_j = +1: a rises where w_ij = −1
        if_minus = logits + up @ weight.t()  # o_j = −1: a rises where w_ij = +1
        spread = (up - down).unsqueeze(1) * weight.unsqueeze(0)  # (N, classes, width)
        values = (if_plus, if_minus, spread)
        return partial(_two_valued_logits, negative, output_layer.tail, output, values)

    return start


def _two_valued_logits(
    negative: torch.Tensor,
    tail: FlippedTail,
    output: torch.Tensor,
    values: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    group: torch.Tensor,
) -> torch.Tensor:
    if_plus, if_minus, spread = values
    size, classes, width = spread.shape
    rises = negative[:, group].to(spread.dtype)  # (width, G): where a flip of +1 adds 2
    extra = (spread.view(-1, width) @ rises).view(size, classes, len(group))
    positive = (output[:, group] > 0).unsqueeze(1)  # (N, 1, G)
    logits = torch.where(positive, if_plus.unsqueeze(2) + extra, if_minus.unsqueeze(2) - extra)
    return tail(logits.permute(2, 0, 1).flatten(0, 1)).view(len(group), size, -1)


# -- changes of a binarized layer's output ---------------------------------------------------


def flipped_pre_activation(
    layer: BinarizedLayer, output: torch.Tensor, clean: torch.Tensor, group: torch.Tensor
) -> torch.Tensor:
    """(G, N, …): ``layer``'s output ``clean`` on its ±1 input ``output`` after negating one
    neuron of ``group`` (a feature, or a channel at all its positions): clean − 2·o_j·w_j."""
    weight = torch.where(layer.weight > 0, -2.0, 2.0).to(output.dtype)  # −2 · the ±1 weights
    flipped = output[:, group]  # (N, G) or (N, G, H, W)
    count = len(group)
    if isinstance(layer, BinarizedConv2d):  # the flipped channels' maps, convolved as a batch
        kernel = layer.kernel_size
        patches = F.unfold(flipped, kernel, layer.dilation, layer.padding, layer.stride)
        patches = patches.view(len(output), count, kernel[0] * kernel[1], -1)
        patches = patches.permute(1, 2, 0, 3).flatten(2)  # (G, k·k, N·positions)
        kernels = weight[:, group].transpose(0, 1).flatten(2)  # (G, C_out, k·k)
        change = torch.bmm(kernels, patches).view(count, -1, len(output), *clean.shape[2:])
        return clean.unsqueeze(0) + change.transpose(1, 2)
    if output.dim() == 2:
        return torch.addcmul(
            clean.unsqueeze(0), flipped.t().unsqueeze(2), weight[:, group].t().unsqueeze(1)
        )
    # a linear layer after flattening (N, C, H, W): channel j feeds columns j·H·W … (j+1)·H·W − 1
    columns = weight.view(weight.shape[0], output.shape[1], -1)[:, group].permute(1, 2, 0)
    start = clean.unsqueeze(0).expand(count, *clean.shape)
    return torch.baddbmm(start, flipped.flatten(2).transpose(0, 1), columns)


def _signs(weight: torch.Tensor) -> torch.Tensor:
    """The binarized (±1) weights, as :func:`bitrobust.bnn.layers.binarize` gives them."""
    return torch.where(weight.detach() > 0, 1.0, -1.0)


def _max_pool(pool: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``pool(x)``; a plain 2×2 max-pool as the maximum of four strided views (faster on CPU
    for the large batches of flipped copies, and the same values)."""
    plain = (
        isinstance(pool, nn.MaxPool2d)
        and pool.kernel_size in (2, (2, 2))
        and pool.stride in (2, (2, 2))
        and pool.padding in (0, (0, 0))
        and pool.dilation in (1, (1, 1))
        and not pool.ceil_mode
        and not pool.return_indices
    )
    if not plain:
        return pool(x)
    height, width = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :height, :width]
    top = torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2])
    return torch.maximum(top, torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


__all__ = ["FlippedLogits", "FlippedTail", "flipped_logits_function", "flipped_pre_activation"]
