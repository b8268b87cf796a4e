"""Luong et al. (2015) local attention: monotonic (local-m) and predictive (local-p).

Both restrict the alignment to a window ``|s - p_t| <= D`` around an aligned
position ``p_t``; weights outside the window (and on padding) are exactly 0.
They assume padding masks (real positions form a prefix of each row).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Attention, masked_softmax, register
from .scores import GeneralAttention, _require_same_dim

__all__ = ["LocalMonotonicAttention", "LocalPredictiveAttention"]

# From this many key positions on (and when the window covers at most a quarter of them) the
# scores are computed only for the 2D + 1 keys of each query's window, gathered, instead of for
# every key under a band mask: time and memory grow linearly with the length. The returned weights
# are still the interface's dense [B, Tq, Tk] (zeros outside the window, one scatter). Below the
# threshold the dense band is faster (fewer, larger kernels).
BAND_MIN_KEYS = 128


def _use_band(tk: int, window: int) -> bool:
    return tk >= BAND_MIN_KEYS and tk >= 4 * (2 * window + 1)


def _gather_rows(x: Tensor, idx: Tensor) -> Tensor:
    """``x[b, idx[b, t, j]]`` for ``x`` ``[B, T, D]`` and ``idx`` ``[B, Tq, K]`` -> ``[B, Tq, K, D]``."""
    b, t, d = x.shape
    flat = (idx + torch.arange(b, device=idx.device).view(b, 1, 1) * t).reshape(-1)
    return x.reshape(b * t, d).index_select(0, flat).view(*idx.shape, d)


def _band_attend(q: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, idx: Tensor,
                 allowed: Tensor, bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Softmax of ``q . keys[idx] (+ bias)`` over the window entries ``allowed``; the context and
    the weights scattered back to dense ``[B, Tq, Tk]``. ``idx`` ``[B, Tq, K]`` may hold
    out-of-range positions (clamped here; they must be False in ``allowed``)."""
    tk = keys.shape[1]
    idx = idx.clamp(0, tk - 1)
    if mask is not None:
        allowed = allowed & torch.gather(mask, 1, idx.reshape(idx.shape[0], -1)).view_as(idx)
    scores = torch.einsum("btd,btkd->btk", q, _gather_rows(keys, idx))
    if bias is not None:
        scores = scores + bias
    w = masked_softmax(scores, allowed)                                  # [B, Tq, K]
    context = torch.einsum("btk,btkd->btd", w, _gather_rows(values, idx))
    dense = w.new_zeros(w.shape[0], w.shape[1], tk).scatter_add_(2, idx, w)  # masked entries add 0
    return context, dense


def _last_real_position(mask: Tensor | None, batch: int, tk: int, device: torch.device) -> Tensor:
    """Index of the last real key position per example ``[B]`` (0 for an empty row)."""
    if mask is None:
        return torch.full((batch,), tk - 1, dtype=torch.long, device=device)
    idx = torch.arange(tk, device=device).expand(batch, tk)
    return torch.where(mask, idx, torch.full_like(idx, -1)).max(dim=-1).values.clamp(min=0)


@register("local_m")
class LocalMonotonicAttention(GeneralAttention):
    """Luong local-m: ``p_t = t`` (the query's time index, clamped to the last
    real key position), general score ``q^T W k``, softmax restricted to the
    window ``|s - p_t| <= D`` (option ``window`` = D).

    The centres of the last call are kept in ``last_centres`` ``[B, Tq]``.
    """

    ordered = True          # a window around the query's time index
    scaling = "linear"      # 2D + 1 keys per query
    description = "Luong local-m (2015): p_t = t, general score q^T W k, softmax over |s - p_t| <= D"

    def __init__(self, query_dim: int, key_dim: int, value_dim: int, window: int = 4) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        if window < 0:
            raise ValueError(f"window must be >= 0, got {window}")
        self.window = int(window)
        self.last_centres: Tensor | None = None

    def attend(
        self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, positions: Tensor
    ) -> tuple[Tensor, Tensor]:
        b, tk = keys.shape[0], keys.shape[1]
        last = _last_real_position(mask, b, tk, keys.device)
        centres = torch.minimum(positions.clamp(min=0), last.unsqueeze(1))  # [B, Tq]
        self.last_centres = centres.detach()
        if _use_band(tk, self.window):
            idx = centres.unsqueeze(-1) + torch.arange(-self.window, self.window + 1, device=keys.device)
            return _band_attend(self.w(query), keys, values, mask, idx, (idx >= 0) & (idx < tk))
        s = torch.arange(tk, device=keys.device)
        allowed = (s.view(1, 1, tk) - centres.unsqueeze(-1)).abs() <= self.window  # [B, Tq, Tk]
        if mask is not None:
            allowed = allowed & mask.unsqueeze(1)
        weights = masked_softmax(self.score(query, keys), allowed)
        return torch.bmm(weights, values), weights


@register("local_p")
class LocalPredictiveAttention(Attention):
    """Luong local-p: predicted centre ``p_t = S_b * sigmoid(v_p^T tanh(W_p q_t))``.

    ``S_b`` = number of real positions of example b minus 1, so ``p_t`` lies in
    ``[0, S_b]``.  With ``sigma = D / 2`` (option ``window`` = D >= 1)::

        a_t(s) ∝ exp(score(q_t, k_s)) * exp(-(s - p_t)^2 / (2 sigma^2)),  |s - p_t| <= D

    renormalised over the in-window real positions (a masked softmax of
    ``score - (s - p_t)^2 / (2 sigma^2)``), exactly 0 elsewhere.  The Gaussian
    term is differentiable in ``p_t``, so gradient reaches ``W_p`` and ``v_p``.
    Options: ``score`` ('general' = ``q^T W k`` or 'dot'), ``predictor_dim``
    (hidden size of ``W_p``).  ``last_centres`` holds the detached predicted
    centres of the last call (``[B]`` for a 2-D query, else ``[B, Tq]``).
    """

    ordered = True          # a window around a predicted position
    scaling = "linear"      # 2D + 1 keys per query
    description = (
        "Luong local-p (2015): p_t = S sigmoid(v_p^T tanh(W_p q)), "
        "a ∝ exp(q^T W k) exp(-(s-p_t)^2 / 2 sigma^2) on |s - p_t| <= D"
    )

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        value_dim: int,
        window: int = 4,
        score: str = "general",
        predictor_dim: int = 64,
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        if window < 1:
            raise ValueError(f"local_p window must be >= 1 (sigma = window / 2), got {window}")
        if score not in ("general", "dot"):
            raise ValueError(f"local_p score must be 'general' or 'dot', got {score!r}")
        if score == "dot":
            _require_same_dim("local_p (score='dot')", query_dim, key_dim)
        self.window = int(window)
        self.sigma = self.window / 2.0
        self.score_kind = score
        self.w = nn.Linear(query_dim, key_dim, bias=False) if score == "general" else None
        self.w_p = nn.Linear(query_dim, predictor_dim, bias=False)
        self.v_p = nn.Linear(predictor_dim, 1, bias=False)
        self.last_centres: Tensor | None = None

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        q = self.w(query) if self.w is not None else query
        return torch.bmm(q, keys.transpose(1, 2))

    def predict_centres(self, query: Tensor, mask: Tensor | None, tk: int) -> Tensor:
        """``p_t`` for a 3-D query -> ``[B, Tq]`` (differentiable)."""
        if mask is None:
            length = torch.full((query.shape[0],), tk, device=query.device)
        else:
            length = mask.sum(dim=-1)
        s_b = (length - 1).clamp(min=0).to(query.dtype)
        frac = torch.sigmoid(self.v_p(torch.tanh(self.w_p(query)))).squeeze(-1)
        return s_b.unsqueeze(1) * frac

    def attend(
        self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, positions: Tensor
    ) -> tuple[Tensor, Tensor]:
        tk = keys.shape[1]
        centres = self.predict_centres(query, mask, tk)  # [B, Tq]
        self.last_centres = centres.detach()
        if _use_band(tk, self.window):
            # every s with |s - p_t| <= D lies in floor(p_t - D) .. floor(p_t - D) + 2D + 1
            start = torch.floor(centres.detach() - self.window).long()
            idx = start.unsqueeze(-1) + torch.arange(2 * self.window + 2, device=keys.device)
            dist = idx.to(query.dtype) - centres.unsqueeze(-1)  # [B, Tq, K], differentiable in p_t
            allowed = (dist.abs() <= self.window) & (idx >= 0) & (idx < tk)
            q = self.w(query) if self.w is not None else query
            return _band_attend(q, keys, values, mask, idx, allowed, -dist.pow(2) / (2.0 * self.sigma**2))
        s = torch.arange(tk, device=keys.device, dtype=query.dtype)
        dist = s.view(1, 1, tk) - centres.unsqueeze(-1)  # [B, Tq, Tk]
        allowed = dist.abs() <= self.window
        if mask is not None:
            allowed = allowed & mask.unsqueeze(1)
        scores = self.score(query, keys) - dist.pow(2) / (2.0 * self.sigma**2)
        weights = masked_softmax(scores, allowed)
        return torch.bmm(weights, values), weights

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor | None = None,
        *,
        positions: int | Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        out = super().forward(query, keys, values, mask, positions=positions)
        if query.dim() == 2 and self.last_centres is not None:
            self.last_centres = self.last_centres.squeeze(1)
        return out
