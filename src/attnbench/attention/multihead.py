"""Multi-head scaled dot-product attention (Vaswani et al., 2017)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from .base import Attention, masked_softmax, register, resolve_positions

__all__ = ["MultiHeadAttention"]


@register("multihead")
class MultiHeadAttention(Attention):
    """Multi-head attention, ``MultiHead(Q, K, V) = Concat(head_1..head_H) W_O`` with
    ``head_i = softmax(Q W_Q^i (K W_K^i)^T / sqrt(d_h)) V W_V^i``.

    ``query_dim`` is the embedding size E (= ``output_dim``); ``key_dim`` and
    ``value_dim`` may differ (like ``kdim``/``vdim`` of ``nn.MultiheadAttention``).
    Parameters: ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` (``nn.Linear``).
    With ``need_weights=False`` the context is computed with ``F.scaled_dot_product_attention``;
    with ``need_weights=True`` from the explicit weights (computed once, used for both).

    Extra forward keywords: ``causal`` (query step t only sees key positions
    ``s <= positions[t]``; with default positions that is the usual
    ``s <= t`` mask; combined with the key mask) and ``need_weights``
    (default True: also return the head-averaged weights ``[B, Tq, Tk]``,
    computed explicitly, before dropout, and keep the per-head weights in
    ``last_head_weights`` ``[B, H, Tq, Tk]``; False: weights are None).
    A query row with no visible key gets a zero attention output (so the
    context is ``out_proj``'s bias) and zero weights instead of NaN.
    """

    decoder_step = False  # a whole layer (the Transformer's), not one decoder step
    heads = True

    description = "Multi-head scaled dot-product (Vaswani et al., 2017): softmax(QK^T/sqrt(d_h))V per head"

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        value_dim: int,
        num_heads: int = 4,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        if query_dim % num_heads != 0:
            raise ValueError(
                f"multihead: query_dim (embed dim) {query_dim} is not divisible by num_heads={num_heads}"
            )
        self.num_heads = int(num_heads)
        self.head_dim = query_dim // num_heads
        self.dropout = float(dropout)
        self.output_dim = query_dim
        self.q_proj = nn.Linear(query_dim, query_dim, bias=bias)
        self.k_proj = nn.Linear(key_dim, query_dim, bias=bias)
        self.v_proj = nn.Linear(value_dim, query_dim, bias=bias)
        self.out_proj = nn.Linear(query_dim, query_dim, bias=bias)
        self.last_head_weights: Tensor | None = None

    def _split_heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, T, d_h]

    def forward(  # type: ignore[override]
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor | None = None,
        *,
        positions: int | Tensor | None = None,
        causal: bool = False,
        need_weights: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        q3, single = self._as_3d(query)
        mask = self._check_mask(mask, keys)
        b, tq, tk = q3.shape[0], q3.shape[1], keys.shape[1]
        q, k, v = (self._split_heads(t) for t in self._project(q3, keys, values))

        # allowed: bool [B, 1, Tq, Tk] (True = may attend) or None for "everything".
        allowed: Tensor | None = None
        is_causal = False
        if mask is not None:
            allowed = mask.view(b, 1, 1, tk).expand(b, 1, tq, tk)
        if causal:
            if mask is None and positions is None and not single:
                is_causal = True  # SDPA's top-left causal mask == s <= arange(Tq)
            else:
                pos = resolve_positions(positions, b, tq, single, q3.device)
                s = torch.arange(tk, device=q3.device)
                visible = (s.view(1, 1, tk) <= pos.unsqueeze(-1)).unsqueeze(1)
                allowed = visible if allowed is None else allowed & visible

        weights: Tensor | None = None
        if need_weights:
            # The weights are returned, so compute them once and reuse them for the context (as
            # nn.MultiheadAttention does) instead of running SDPA and the scores a second time.
            if is_causal:
                allowed = torch.ones(tq, tk, dtype=torch.bool, device=q3.device).tril()
            # scale the [B, H, Tq, d_h] query, not the [B, H, Tq, Tk] scores: one pass over T * d_h
            scores = torch.matmul(q * math.sqrt(1.0 / self.head_dim), k.transpose(-2, -1))
            head_weights = masked_softmax(scores, allowed)  # [B, H, Tq, Tk]; empty rows all zero
            self.last_head_weights = head_weights.detach()
            weights = head_weights.mean(dim=1)
            p = self.dropout if self.training else 0.0
            out = torch.matmul(F.dropout(head_weights, p) if p > 0 else head_weights, v)
        else:
            sdpa_mask = None
            has_any: Tensor | None = None
            if allowed is not None:
                has_any = allowed.any(dim=-1, keepdim=True)  # [B, 1, Tq, 1]
                sdpa_mask = allowed | ~has_any  # keep empty rows finite, zeroed below
            out = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=sdpa_mask,
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=is_causal,
            )
            if has_any is not None:
                out = out.masked_fill(~has_any, 0.0)
        context = self.out_proj(out.transpose(1, 2).reshape(b, tq, self.output_dim))
        return self._restore(context, weights, single)

    # ---- incremental decoding: keys and values projected once, then read at every step ----------------
    def project_heads(self, query: Tensor, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The projections of ``forward`` split into heads, ``[B, H, T, d_h]`` each: a decoder step
        passes its new position as all three (self-attention) and appends k, v to its cache."""
        return tuple(self._split_heads(t) for t in self._project(query, keys, values))  # type: ignore[return-value]

    def query_heads(self, query: Tensor) -> Tensor:
        """The queries of ``forward`` for another tensor's keys (cross-attention), ``[B, H, Tq, d_h]``."""
        return self._split_heads(self.q_proj(query))

    def memory_heads(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of a fixed memory (the encoder's output, for cross-attention), ``[B, H, Tk, d_h]``."""
        return self._split_heads(self.k_proj(memory)), self._split_heads(self.v_proj(memory))

    def attend_heads(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
        """``forward``'s context (``need_weights=False``) from projected heads: queries ``[B, H, Tq, d_h]`` over
        keys and values ``[B, H, Tk, d_h]``, each query seeing every key that ``mask`` ``[B, Tk]`` allows (a
        decoder step's keys are its prefix, so no causal mask is needed). Returns ``[B, Tq, E]``."""
        b, tq, tk = q.shape[0], q.shape[2], k.shape[2]
        sdpa_mask = has_any = None
        if mask is not None:
            allowed = mask.view(b, 1, 1, tk).expand(b, 1, tq, tk)
            has_any = allowed.any(dim=-1, keepdim=True)
            sdpa_mask = allowed | ~has_any
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=sdpa_mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        if has_any is not None:
            out = out.masked_fill(~has_any, 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(b, tq, self.output_dim))

    def _project(self, query: Tensor, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``q_proj(query), k_proj(keys), v_proj(values)``; self-attention (one tensor for all three)
        runs the three projections as one packed matrix product, like ``nn.MultiheadAttention``."""
        if query is keys and keys is values and self.key_dim == self.value_dim == self.query_dim:
            projs = (self.q_proj, self.k_proj, self.v_proj)
            weight = torch.cat([p.weight for p in projs])
            bias = None if self.q_proj.bias is None else torch.cat([p.bias for p in projs])
            return F.linear(query, weight, bias).chunk(3, dim=-1)
        return self.q_proj(query), self.k_proj(keys), self.v_proj(values)

    @torch.no_grad()
    def load_from_torch_mha(self, mha: nn.MultiheadAttention) -> "MultiHeadAttention":
        """Copy the weights of an ``nn.MultiheadAttention`` (packed or separate projections)."""
        if mha.embed_dim != self.query_dim or mha.num_heads != self.num_heads:
            raise ValueError(
                f"nn.MultiheadAttention(embed_dim={mha.embed_dim}, num_heads={mha.num_heads}) does "
                f"not match embed_dim={self.query_dim}, num_heads={self.num_heads}"
            )
        if mha.kdim != self.key_dim or mha.vdim != self.value_dim:
            raise ValueError(
                f"kdim/vdim {mha.kdim}/{mha.vdim} do not match key_dim/value_dim "
                f"{self.key_dim}/{self.value_dim}"
            )
        if mha.bias_k is not None or mha.bias_v is not None:
            raise ValueError("add_bias_kv=True is not supported")
        if mha.in_proj_weight is not None:
            w_q, w_k, w_v = mha.in_proj_weight.chunk(3, dim=0)
        else:
            w_q, w_k, w_v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
        for proj, w in ((self.q_proj, w_q), (self.k_proj, w_k), (self.v_proj, w_v)):
            proj.weight.copy_(w)
        has_bias = mha.in_proj_bias is not None
        if has_bias != (self.q_proj.bias is not None):
            raise ValueError("bias setting differs between the two modules")
        if has_bias:
            for proj, bias in zip((self.q_proj, self.k_proj, self.v_proj), mha.in_proj_bias.chunk(3)):
                proj.bias.copy_(bias)
            self.out_proj.bias.copy_(mha.out_proj.bias)
        self.out_proj.weight.copy_(mha.out_proj.weight)
        return self
