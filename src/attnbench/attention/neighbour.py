"""Leave-one-out local attention: what a step's neighbours say about it."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Attention, masked_softmax, register

__all__ = ["NeighbourAttention"]


@register("neighbour")
class NeighbourAttention(Attention):
    """Local attention over the neighbours of a query's position, leaving the position itself out.

    ``score(q_t, k_s) = (W_q q_t) . (W_k k_s) / sqrt(A)`` over the keys with ``0 < |s - p_t| <=
    window`` (``p_t`` = the query's position, ``positions`` or ``arange(Tq)``). Used as
    self-attention over a sequence, the context is an estimate of each step from its neighbours
    alone, so a step that disagrees with it stands out (the anomaly mask of the load forecaster
    builds on this). When no other real key lies in the window, the query's own position is
    allowed, and failing that every real key, so the weights always sum to 1 over real keys.

    Options: ``window`` (steps on each side), ``attn_dim`` (A).
    """

    decoder_step = False  # each step attends its own neighbours, no outside query
    ordered = True        # the neighbours of a position

    description = "Leave-one-out local attention: softmax over keys 0 < |s - t| <= window of (W_q q).(W_k k)/sqrt(A)"

    def __init__(self, query_dim: int, key_dim: int, value_dim: int, window: int = 6, attn_dim: int = 32) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        if int(window) < 1:
            raise ValueError(f"neighbour attention: window must be >= 1, got {window}")
        self.window = int(window)
        self.attn_dim = int(attn_dim)
        self.w_q = nn.Linear(query_dim, self.attn_dim)
        self.w_k = nn.Linear(key_dim, self.attn_dim, bias=False)

    def attend(
        self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, positions: Tensor
    ) -> tuple[Tensor, Tensor]:
        # dense [B, Tq, Tk] scores with a band mask: at windows of a few hundred steps this is faster
        # on a CPU than gathering the 2 * window + 1 neighbours of each query
        scores = torch.bmm(self.w_q(query), self.w_k(keys).transpose(1, 2)) / math.sqrt(self.attn_dim)
        weights = masked_softmax(scores, self.allowed(keys.shape[1], mask, positions))
        return torch.bmm(weights, values), weights

    def allowed(self, n_keys: int, mask: Tensor | None, positions: Tensor) -> Tensor:
        """Which keys each query may attend to: ``[B, Tq, Tk]``, or ``[1, Tq, Tk]`` (broadcast over the
        batch) when there is no key mask and every row of ``positions`` is the same, as in self-attention
        over unpadded windows: the mask is then built once per call, not once per example."""
        if mask is None and (positions.shape[0] == 1 or bool((positions == positions[:1]).all())):
            positions = positions[:1]
        offset = torch.arange(n_keys, device=positions.device).view(1, 1, -1) - positions.unsqueeze(-1)
        band = offset.abs() <= self.window                          # [B or 1, Tq, Tk]
        real = torch.ones_like(band) if mask is None else mask.unsqueeze(1).expand_as(band)
        allowed = band & (offset != 0) & real
        allowed = torch.where(allowed.any(-1, keepdim=True), allowed, band & real)
        return torch.where(allowed.any(-1, keepdim=True), allowed, real)
