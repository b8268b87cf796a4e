"""Stochastic hard attention trained with the Gumbel-softmax straight-through estimator."""

from __future__ import annotations

import torch
from torch import Tensor
import torch.nn.functional as F

from .base import masked_softmax, register
from .scores import GeneralAttention

__all__ = ["HardAttention"]


@register("hard")
class HardAttention(GeneralAttention):
    """Hard attention (Xu et al., 2015): the context is one chosen value vector.

    Scores are Luong's general ``q^T W k``.  In training the position is
    sampled with Gumbel-softmax straight-through (Jang et al., 2017; Maddison
    et al., 2017): the forward weights are the one-hot of
    ``argmax(score + g)``, ``g ~ Gumbel(0, 1)``, while the backward pass uses
    the gradient of ``softmax((score + g) / tau)``.  In eval the weights are
    the one-hot of ``argmax(score)``.  Masked positions are never chosen; a
    row with no real position gets all-zero weights.  Option: ``tau``.
    """

    sampled = True  # one key per query in training (straight-through gradient)
    description = "Hard attention (Xu et al., 2015) via Gumbel-softmax straight-through; score q^T W k"

    def __init__(self, query_dim: int, key_dim: int, value_dim: int, tau: float = 1.0) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.tau = float(tau)

    def attend(
        self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, positions: Tensor
    ) -> tuple[Tensor, Tensor]:
        scores = self.score(query, keys)  # [B, Tq, Tk]
        allowed = None if mask is None else mask.unsqueeze(1)
        if self.training:
            gumbel = -torch.empty_like(scores).exponential_().log()
            soft = masked_softmax((scores + gumbel) / self.tau, allowed)
            index = soft.argmax(dim=-1)  # masked entries are exactly 0, a real one is > 0
        else:
            soft = None
            fill = torch.finfo(scores.dtype).min
            masked = scores if allowed is None else scores.masked_fill(~allowed, fill)
            index = masked.argmax(dim=-1)
        hard = F.one_hot(index, scores.shape[-1]).to(scores.dtype)
        if allowed is not None:
            hard = hard.masked_fill(~allowed, 0.0)  # empty rows: no position at all
        # Straight-through: forward value is exactly `hard`, gradient is that of `soft`.
        weights = hard if soft is None else hard + (soft - soft.detach())
        return torch.bmm(weights, values), weights
