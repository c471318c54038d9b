"""Training aids for binarized networks: bit flip injection and the modified hinge loss.

- :func:`random_sign_flips` is bit flip injection training (BFIT, papers.md §3.2): a fresh
  pattern of sign flips on the binarized weights on every forward pass, with separate rates for
  −1→+1 (the code's 0→1) and +1→−1 (1→0), and an identity gradient through the injection. It
  has the distribution of :class:`~bitrobust.faults.RandomBitErrors` on :data:`BINARY` codes
  but draws one number per weight instead of one per stored byte bit, which keeps training fast.
- :func:`modified_hinge_loss` is the margin-maximizing loss of the DATE 2021 companion paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bitrobust.errors import BitrobustError, check_rate
from bitrobust.quant import straight_through


def random_sign_flips(
    weights: torch.Tensor,
    minus_to_plus: float,
    plus_to_minus: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``weights`` (±1 values) with each −1 flipped to +1 with probability ``minus_to_plus`` and
    each +1 flipped to −1 with probability ``plus_to_minus``; straight-through gradient.

    ``generator`` must live on the weights' device. A weight counts as +1 when it is > 0, as in
    :data:`~bitrobust.quant.BINARY`.
    """
    p_up = check_rate(minus_to_plus, "minus_to_plus")
    p_down = check_rate(plus_to_minus, "plus_to_minus")
    if p_up == 0.0 and p_down == 0.0:
        return weights
    draws = torch.rand(weights.shape, generator=generator, device=weights.device)
    values = weights.detach()
    if p_up == p_down:
        flips = draws < p_up
    else:
        flips = draws < torch.where(values > 0, p_down, p_up).to(draws.dtype)
    return straight_through(weights, torch.where(flips, -values, values))


def modified_hinge_loss(outputs: torch.Tensor, labels: torch.Tensor, b: float) -> torch.Tensor:
    """Mean over examples and classes of max(0, b − y·ŷ) / b, with y = +1 for the true class and
    −1 for the others: it keeps pushing every output past ±b, widening the margins."""
    if not b > 0:
        raise BitrobustError(f"the hinge loss parameter b must be positive, got {b}")
    targets = 2 * F.one_hot(labels, outputs.shape[1]).to(outputs.dtype) - 1
    return torch.clamp(b - targets * outputs, min=0).mean() / b
