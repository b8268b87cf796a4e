"""Stochastic hard attention trained with REINFORCE (Xu et al., 2015, section 4.1)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import masked_softmax, register
from .scores import AdditiveAttention

__all__ = ["ReinforceHardAttention"]


@register("hard_reinforce")
class ReinforceHardAttention(AdditiveAttention):
    """Hard attention whose location is a sample of the additive-score distribution.

    ``weights`` are the location probabilities alpha (they sum to 1); the context is the value
    at one location: sampled from alpha in training, the most probable one in eval. The
    sample's log-probability and the distribution's entropy come from :meth:`sample`, for the
    REINFORCE estimator (the context itself carries no gradient to the scores; the captioner uses them
    with a moving-average baseline). Through the generic ``forward`` a score-function surrogate gives the
    scores a gradient (see :meth:`attend`). Options:
    ``attn_dim``, ``chunk_size``.
    """

    sampled = True
    reinforce = True  # the caller adds the policy-gradient term from `sample` / `choose`
    description = "Hard attention (Xu et al., 2015): location sampled from additive-score softmax, REINFORCE"

    def sample(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None = None
               ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """2-D query [B, Dq] -> (context [B, Dv], alpha [B, Tk], log p(location) [B], entropy [B])."""
        scores = self.score(query.unsqueeze(1), keys).squeeze(1)
        return self.choose(scores, values, mask)

    def choose(self, scores: Tensor, values: Tensor, mask: Tensor | None = None
               ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The same from scores already computed (a caller that caches the key projections): scores
        [B, Tk] (one query per row) or [B, Tq, Tk] (every query of a sequence at once, values and mask
        shared by the row's queries) -> context [B, (Tq,) Dv], alpha, log p(location), entropy."""
        many = scores.dim() == 3
        if many and mask is not None:
            mask = mask.unsqueeze(1)
        alpha = masked_softmax(scores, mask)
        real = alpha.detach().sum(-1) > 0                      # a row with no unmasked position chooses nothing
        pick = torch.where(real.unsqueeze(-1), alpha.detach().float(), torch.ones_like(alpha, dtype=torch.float))
        if self.training:
            index = torch.multinomial(pick.reshape(-1, pick.shape[-1]), 1).reshape(pick.shape[:-1])
        else:
            index = pick.argmax(dim=-1)
        # values[b, index[b, ...]]: one gather, no per-query copy of the values
        flat = index.reshape(index.shape[0], -1, 1).expand(-1, -1, values.shape[-1])
        context = torch.gather(values, 1, flat).reshape(*index.shape, values.shape[-1])
        context = context * real.unsqueeze(-1).to(values.dtype)
        log_alpha = torch.log(alpha.clamp_min(1e-12))
        chosen = torch.gather(log_alpha, -1, index.unsqueeze(-1)).squeeze(-1)
        log_prob = torch.where(real, chosen, torch.zeros_like(chosen))
        entropy = -(alpha * log_alpha).sum(-1)
        return context, alpha, log_prob, entropy

    def attend(self, query, keys, values, mask, positions):
        # every query at once: the additive scores [B, Tq, Tk] (chunked by chunk_size like `additive`),
        # never a per-query copy of the keys and values
        context, alpha, log_prob, _ = self.choose(self.score(query, keys), values, mask)
        if self.training:
            # Called through the generic interface, no caller collects the log-probabilities: a score-function
            # surrogate ("magic box", Foerster et al. 2018) keeps the forward value and gives the scores the
            # gradient (dL/dcontext . a_s) * grad log p(s), REINFORCE with the local signal as the reward.
            context = context * (1.0 + log_prob - log_prob.detach()).unsqueeze(-1)
        return context, alpha
