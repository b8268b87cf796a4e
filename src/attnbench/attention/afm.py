"""The attention network of Attentional Factorization Machines (Xiao et al., 2017).

AFM pools the pairwise interaction vectors ``(v_i ⊙ v_j) x_i x_j`` of a feature vector with::

    a'_ij = hᵀ ReLU(W (v_i ⊙ v_j) + b)          # one hidden layer of `attn_dim` units
    a_ij  = softmax over the pairs (i, j) of a'_ij
    out   = Σ a_ij (v_i ⊙ v_j)

In the registry's terms the pair vectors are the keys (and the values), ``h`` is a learned query
in the hidden space, and the caller's ``query`` is not read: pooling needs none (pass any tensor of
``query_dim``; with a 3-D query every query step gets the same weights, as ``none`` does).
The paper's L2 penalty on the attention net's ``W`` is ``l2_penalty()``; the caller adds it to its loss.
"""

from __future__ import annotations

from torch import Tensor, nn

from .base import Attention, register

__all__ = ["AFMAttention"]


@register("afm")
class AFMAttention(Attention):
    """AFM attention pooling: ``score(k) = hᵀ ReLU(W k + b)``, softmax over the keys.

    Option: ``attn_dim`` (the paper's attention factor t, the hidden layer's width).
    """

    decoder_step = False
    forms = frozenset({"pairs"})

    description = "AFM attention net (Xiao et al., 2017): score = h^T ReLU(W k + b) per key, query-free pooling"

    def __init__(self, query_dim: int, key_dim: int, value_dim: int, attn_dim: int = 16) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        if int(attn_dim) < 1:
            raise ValueError(f"attn_dim must be a positive int, got {attn_dim}")
        self.w = nn.Linear(key_dim, int(attn_dim))        # W and b
        self.h = nn.Linear(int(attn_dim), 1, bias=False)  # the learned query h

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        s = self.h(self.w(keys).relu()).squeeze(-1)  # [B, Tk]
        return s.unsqueeze(1).expand(-1, query.shape[1], -1)

    def l2_penalty(self) -> Tensor:
        """``‖W‖²``: the paper regularises the attention net's weight matrix (not b, not h)."""
        return self.w.weight.pow(2).sum()
