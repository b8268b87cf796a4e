"""Scores of the project notes' intent classifier: self-attention with a transformed key, and a
location-based score computed from each token alone.

Both are ordinary registry mechanisms (``forward(query, keys, values, mask) -> (context,
weights)``); a classifier uses them for pooling by passing the token vectors as query, keys and
values (self-attention) and averaging the per-token contexts.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Attention, register

__all__ = ["SelfDotAttention", "TokenLocationAttention", "ACTIVATIONS"]

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "none": None}


def _activation(name: str, mechanism: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"{mechanism}: act {name!r} is not allowed; expected one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


@register("self_dot")
class SelfDotAttention(Attention):
    """The self-attention of the project notes (chatbot intent classification).

    ``Q = V = X`` (the token embeddings), ``K = act(W X + b)``, ``weights = softmax(K . Q)`` over
    the tokens, ``output = weights V``. As a general mechanism: ``score(q, k) = q . act(W k + b)``
    with ``W: Dk -> Dq``; with a self-attention call (query = keys = values = X) each token's output
    is a weighted sum of the token embeddings, and a classifier pools (averages) those outputs.

    Options: ``act`` (tanh | relu | sigmoid | none; with none the bias is dropped, since a
    key-independent term ``q . b`` cancels in the softmax), ``temperature`` (scores are divided by it).
    """

    decoder_step = False  # pools a sequence with itself as the query (the notes' Q = V = X)

    description = "Self-attention of the notes: Q = V = X, K = act(W X + b), weights = softmax(K . Q)"

    def __init__(self, query_dim: int, key_dim: int, value_dim: int, act: str = "tanh",
                 temperature: float = 1.0) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        self.act_name = str(act)
        self.act = _activation(self.act_name, "self_dot")
        if not temperature > 0:
            raise ValueError(f"self_dot: temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.w = nn.Linear(key_dim, query_dim, bias=self.act is not None)

    def keys_of(self, keys: Tensor) -> Tensor:
        """``K = act(W keys + b)`` ``[B, Tk, Dq]``."""
        k = self.w(keys)
        return k if self.act is None else self.act(k)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(query, self.keys_of(keys).transpose(1, 2)) / self.temperature


@register("token_location")
class TokenLocationAttention(Attention):
    """Location-based score from each token alone (the project notes; after Luong et al. 2015).

    ``score_j = act(w^T k_j + b)``: one learned direction scores every token by itself, without
    comparing it to a query, and ``weights = softmax(score)`` over the tokens — the same weights
    for every query step. Options: ``act`` (tanh | relu | sigmoid | none; with none the bias is
    dropped, it cancels in the softmax), ``scale`` (multiplies the score: a bounded activation
    such as tanh caps the contrast between tokens at ``exp(2 * scale)``).
    """

    decoder_step = False  # scores each token alone (location-based pooling), no query

    description = "Location-based score from each token alone: score_j = scale * act(w^T k_j + b), query-independent"

    def __init__(self, query_dim: int, key_dim: int, value_dim: int, act: str = "tanh",
                 scale: float = 1.0) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        self.act_name = str(act)
        self.act = _activation(self.act_name, "token_location")
        self.scale = float(scale)
        self.w = nn.Linear(key_dim, 1, bias=self.act is not None)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        s = self.w(keys).squeeze(-1)  # [B, Tk]
        if self.act is not None:
            s = self.act(s)
        return (self.scale * s).unsqueeze(1).expand(query.shape[0], query.shape[1], keys.shape[1])
