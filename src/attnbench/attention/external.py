"""External attention (Guo et al., 2021)."""

from __future__ import annotations

from torch import Tensor, nn

from .base import Attention, masked_softmax, register

__all__ = ["ExternalAttention"]


@register("external")
class ExternalAttention(Attention):
    """External attention: Guo et al. (2021), "Beyond Self-attention: External
    Attention using Two Linear Layers for Visual Tasks".

    Two small learnable memories replace keys and values::

        A = M_k(query)                  # [B, Tq, S], Linear(Dq -> S, no bias)
        A = softmax over the token axis Tq (dim 1)
        A = A / sum_S A                 # l1-normalise over the memory slots
        context = M_v(A)                # [B, Tq, Dq], Linear(S -> Dq, no bias)

    Exceptions to the common contract (hence ``produces_alignment = False``):

    * ``keys`` and ``values`` are ignored; ``output_dim`` is ``query_dim``.
    * The returned weights are ``[B, Tq, S]`` (``[B, S]`` for a 2-D query):
      over memory slots, not key positions; each real token's row sums to 1.
    * ``mask`` refers to the *query* tokens (self-attention use, Tq == Tk):
      masked tokens are excluded from the softmax over tokens and get
      all-zero weights.  A mask whose length differs from Tq (a key mask for
      cross-attention, which this mechanism does not use) is ignored.
    * With a 2-D query (one token) the softmax over tokens is trivially 1, so
      the context is query-independent.

    Option: ``memory_size`` (S).
    """

    decoder_step = False  # query-independent: its weights are over memory slots
    forms = frozenset({"sequence", "map"})
    weights_over = "slots"
    scaling = "linear"    # S memory slots per token

    produces_alignment = False
    description = "External attention (Guo et al., 2021): A = norm(M_k q), context = M_v A"

    def __init__(
        self, query_dim: int, key_dim: int, value_dim: int, memory_size: int = 64
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        self.memory_size = int(memory_size)
        self.output_dim = query_dim
        self.m_k = nn.Linear(query_dim, self.memory_size, bias=False)
        self.m_v = nn.Linear(self.memory_size, query_dim, bias=False)

    def attend(
        self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None, positions: Tensor
    ) -> tuple[Tensor, Tensor]:
        token_mask = mask.unsqueeze(-1) if mask is not None and mask.shape[1] == query.shape[1] else None
        attn = masked_softmax(self.m_k(query), token_mask, dim=1)  # over tokens
        attn = attn / attn.sum(dim=-1, keepdim=True).clamp_min(1e-9)  # l1 over memory slots
        return self.m_v(attn), attn

    def token_weights(self, query: Tensor, mask: Tensor) -> Tensor:
        """What a self-attention call over ``query`` ``[B, T, Dq]`` weighs per token ``[B, T]``: its softmax over
        the tokens averaged over the memory slots (its own weights are over the slots, not the tokens)."""
        return masked_softmax(self.m_k(query), mask.unsqueeze(-1), dim=1).mean(-1)
