"""Global (soft) attention mechanisms defined by a score function.

Each class computes unnormalised scores ``[B, Tq, Tk]`` fully batched; the
base class turns them into masked-softmax weights and a weighted sum of the
values.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from .base import Attention, masked_softmax, register

__all__ = [
    "AdditiveAttention",
    "ConcatAttention",
    "CosineAttention",
    "DotAttention",
    "GeneralAttention",
    "KeyValueAttention",
    "LocationAttention",
    "NoAttention",
    "ScaledDotAttention",
]


def _require_same_dim(name: str, query_dim: int, key_dim: int) -> None:
    if query_dim != key_dim:
        raise ValueError(
            f"{name} attention requires query_dim == key_dim, got query_dim={query_dim}, "
            f"key_dim={key_dim}"
        )


# Above this many elements of the [B, Tq, Tk, A] intermediate (16 MiB in float32), additive and
# concat scores are computed in query chunks with recomputation in backward (see _ChunkedTanhScores),
# each chunk about the size of the [B, Tq, Tk] scores, so the peak memory stays within a small
# multiple of a dot-product score's.
AUTO_CHUNK_ELEMENTS = 1 << 22


class _ChunkedTanhScores(torch.autograd.Function):
    """``v^T tanh(q_proj[:, i] + k_proj[:, j])`` computed ``chunk`` query steps at a time.

    Forward keeps only the ``[B, Tq, Tk]`` scores; backward recomputes each chunk's tanh, so
    neither pass holds more than one ``[B, chunk, Tk, A]`` block (plain autograd would keep the
    whole ``[B, Tq, Tk, A]`` tanh for backward even when the forward is chunked). The forward
    values are those of the unchunked expression (the same operations on the same elements).
    """

    @staticmethod
    def forward(ctx, q_proj: Tensor, k_proj: Tensor, weight: Tensor, chunk: int) -> Tensor:
        ctx.save_for_backward(q_proj, k_proj, weight)
        ctx.chunk = chunk
        k = k_proj.unsqueeze(1)
        return torch.cat([F.linear(torch.tanh(qc.unsqueeze(2) + k), weight).squeeze(-1)
                          for qc in q_proj.split(chunk, dim=1)], dim=1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        q_proj, k_proj, weight = ctx.saved_tensors
        k = k_proj.unsqueeze(1)
        w = weight.view(-1)  # [A]
        grad_q, grad_k, grad_w = [], torch.zeros_like(k_proj), torch.zeros_like(w)
        for qc, gc in zip(q_proj.split(ctx.chunk, dim=1), grad.split(ctx.chunk, dim=1)):
            h = torch.tanh(qc.unsqueeze(2) + k)                      # [B, c, Tk, A]
            grad_w += torch.einsum("bct,bcta->a", gc, h)
            pre = (1 - h * h).mul_(gc.unsqueeze(-1)).mul_(w)          # d score / d (q + k)
            grad_q.append(pre.sum(dim=2))
            grad_k += pre.sum(dim=1)
        return torch.cat(grad_q, dim=1), grad_k, grad_w.view_as(weight), None


def _tanh_scores(q_proj: Tensor, k_proj: Tensor, v: nn.Linear, chunk_size: int | None) -> Tensor:
    """``v^T tanh(q_proj[:, i] + k_proj[:, j])`` for all (i, j) -> ``[B, Tq, Tk]``.

    Broadcasts to ``[B, Tq, Tk, A]``. With ``chunk_size`` (or, when it is None, automatically once
    that intermediate exceeds ``AUTO_CHUNK_ELEMENTS``, ``Tq // A`` steps) the query steps are processed
    ``chunk_size`` at a time in forward and again in backward, which caps the memory of that
    intermediate at one chunk for a ~1.3x longer backward.
    """
    b, tq, a = q_proj.shape
    tk = k_proj.shape[1]
    if chunk_size is None and b * tq * tk * a > AUTO_CHUNK_ELEMENTS:
        chunk_size = max(1, tq // a)
    if chunk_size is None or chunk_size >= tq:
        return v(torch.tanh(q_proj.unsqueeze(2) + k_proj.unsqueeze(1))).squeeze(-1)
    if v.bias is not None:
        raise ValueError("chunked tanh scores need a bias-free v")
    return _ChunkedTanhScores.apply(q_proj, k_proj, v.weight, int(chunk_size))


def _check_chunk(chunk_size: int | None) -> int | None:
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size}")
    return None if chunk_size is None else int(chunk_size)


@register("none")
class NoAttention(Attention):
    """No-attention baseline: a fixed, query-independent context.

    context = masked mean of the values (uniform weights over real positions),
    identical at every decoding step.
    """

    produces_alignment = False
    attends = False
    description = "No attention: fixed context = mean of the encoder values (query-independent)"

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return query.new_zeros(query.shape[0], query.shape[1], keys.shape[1])


@register("dot")
class DotAttention(Attention):
    """Luong et al. (2015) dot score: ``score(q, k) = q . k``."""

    forms = frozenset({"sequence", "map"})  # also the non-local block of a feature map

    equal_dims = True  # compares q and k directly
    description = "Luong dot (2015): score = q . k"

    def __init__(self, query_dim: int, key_dim: int, value_dim: int) -> None:
        _require_same_dim("dot", query_dim, key_dim)
        super().__init__(query_dim, key_dim, value_dim)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query, keys.transpose(1, 2))


@register("scaled_dot")
class ScaledDotAttention(Attention):
    """Vaswani et al. (2017) scaled dot product: ``score(q, k) = q . k / sqrt(d)``."""

    forms = frozenset({"sequence", "map"})  # also the non-local block of a feature map

    equal_dims = True  # compares q and k directly
    description = "Scaled dot-product (Vaswani et al., 2017): score = q . k / sqrt(d)"

    def __init__(self, query_dim: int, key_dim: int, value_dim: int) -> None:
        _require_same_dim("scaled_dot", query_dim, key_dim)
        super().__init__(query_dim, key_dim, value_dim)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query, keys.transpose(1, 2)) / math.sqrt(self.key_dim)


@register("general")
class GeneralAttention(Attention):
    """Luong et al. (2015) general (bilinear) score: ``score(q, k) = q^T W k``.

    ``W`` is stored as ``self.w = Linear(Dq -> Dk, bias=False)`` applied to the
    query, i.e. ``score = (W q) . k`` (cheap for step-by-step decoding).
    """

    description = "Luong general / bilinear (2015): score = q^T W k"

    def __init__(self, query_dim: int, key_dim: int, value_dim: int) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        self.w = nn.Linear(query_dim, key_dim, bias=False)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(self.w(query), keys.transpose(1, 2))


@register("additive")
class AdditiveAttention(Attention):
    """Bahdanau et al. (2015) additive score: ``score(q, k) = v^T tanh(W_q q + W_k k)``.

    Options: ``attn_dim`` (A), ``chunk_size`` (process query steps in chunks
    of this size to cap the ``[B, Tq, Tk, A]`` intermediate).
    """

    description = "Bahdanau additive (2015): score = v^T tanh(W_q q + W_k k)"
    caches_keys = True  # W_k k computed once per memory (project_keys), then read by every query step

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        value_dim: int,
        attn_dim: int = 64,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        self.chunk_size = _check_chunk(chunk_size)
        self.w_q = nn.Linear(query_dim, attn_dim, bias=False)
        self.w_k = nn.Linear(key_dim, attn_dim, bias=True)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return _tanh_scores(self.w_q(query), self.w_k(keys), self.v, self.chunk_size)

    def project_keys(self, keys: Tensor) -> Tensor:
        """``W_k k`` ``[B, Tk, A]``: what does not change between the query steps over one memory."""
        return self.w_k(keys)

    def projected_scores(self, query: Tensor, projected: Tensor) -> Tensor:
        """Scores ``[B, Tk]`` of a 2-D query ``[B, Dq]`` against keys already projected by `project_keys`."""
        return self.v(torch.tanh(self.w_q(query).unsqueeze(1) + projected)).squeeze(-1)


@register("concat")
class ConcatAttention(Attention):
    """Luong et al. (2015) concat score: ``score(q, k) = v^T tanh(W [q; k])``.

    ``W`` is one ``Linear(Dq + Dk -> A, bias=False)`` (``self.w``) applied to
    the concatenation.  Since ``W [q; k] = W[:, :Dq] q + W[:, Dq:] k`` is the
    same linear map, it is evaluated by splitting ``W``'s columns, which avoids
    materialising the ``[B, Tq, Tk, Dq + Dk]`` concatenation.
    Options: ``attn_dim`` (A), ``chunk_size`` (as in ``additive``).
    """

    description = "Luong concat (2015): score = v^T tanh(W [q; k])"

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        value_dim: int,
        attn_dim: int = 64,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        self.chunk_size = _check_chunk(chunk_size)
        self.w = nn.Linear(query_dim + key_dim, attn_dim, bias=False)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        w_q, w_k = self.w.weight.split([self.query_dim, self.key_dim], dim=1)
        return _tanh_scores(F.linear(query, w_q), F.linear(keys, w_k), self.v, self.chunk_size)


@register("cosine")
class CosineAttention(Attention):
    """Cosine-similarity score with a learnable temperature.

    ``score(q, k) = g * cos(q, k)`` with ``g = exp(log_scale) > 0`` initialised
    to ``init_scale`` (10), as in content-based addressing of Neural Turing
    Machines (Graves et al., 2014) / cosine attention (Luo et al., 2018).
    """

    equal_dims = True  # compares q and k directly
    description = "Cosine (Graves et al., 2014): score = g * cos(q, k), learnable g > 0 (init 10)"

    def __init__(
        self, query_dim: int, key_dim: int, value_dim: int, init_scale: float = 10.0
    ) -> None:
        _require_same_dim("cosine", query_dim, key_dim)
        super().__init__(query_dim, key_dim, value_dim)
        if init_scale <= 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale}")
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        cos = torch.bmm(F.normalize(query, dim=-1), F.normalize(keys, dim=-1).transpose(1, 2))
        return self.log_scale.exp() * cos


@register("location")
class LocationAttention(Attention):
    """Luong et al. (2015) location-based: ``a_t = softmax(W_a q_t)``.

    The scores depend on the query alone: ``W_a: Dq -> max_len`` (no bias),
    truncated to the first ``Tk`` entries.  ``Tk > max_len`` raises ValueError.
    """

    description = "Luong location (2015): a = softmax(W_a q), scores from the query only"

    def __init__(self, query_dim: int, key_dim: int, value_dim: int, max_len: int = 128) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        self.max_len = int(max_len)
        self.w_a = nn.Linear(query_dim, self.max_len, bias=False)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        tk = keys.shape[1]
        if tk > self.max_len:
            raise ValueError(
                f"location attention: key length Tk={tk} exceeds max_len={self.max_len}"
            )
        return self.w_a(query)[..., :tk]


@register("key_value")
class KeyValueAttention(Attention):
    """Key-value attention with separate projections (Daniluk et al., 2017; Vaswani et al., 2017).

    ``score = (W_q q) . (W_k k) / sqrt(A)``, ``context = sum_s a_s W_v v_s``.
    Options: ``attn_dim`` (A), ``value_proj_dim`` (default ``value_dim``),
    which is the ``output_dim``.
    """

    description = "Key-value (Daniluk et al., 2017): score = (W_q q).(W_k k)/sqrt(A), context = sum a W_v v"

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        value_dim: int,
        attn_dim: int = 64,
        value_proj_dim: int | None = None,
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        self.attn_dim = int(attn_dim)
        self.output_dim = int(value_dim if value_proj_dim is None else value_proj_dim)
        self.w_q = nn.Linear(query_dim, self.attn_dim)
        self.w_k = nn.Linear(key_dim, self.attn_dim)
        self.w_v = nn.Linear(value_dim, self.output_dim)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(self.w_q(query), self.w_k(keys).transpose(1, 2)) / math.sqrt(self.attn_dim)

    def attend(
        self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, positions: Tensor
    ) -> tuple[Tensor, Tensor]:
        weights = masked_softmax(self.score(query, keys), None if mask is None else mask.unsqueeze(1))
        return torch.bmm(weights, self.w_v(values)), weights
