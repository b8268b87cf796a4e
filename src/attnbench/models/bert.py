"""A small BERT (Devlin et al. 2019): a Transformer encoder over one utterance with a [CLS] token,
and the masked-language-model head and masking it is pre-trained with.

The encoder layers are those of :mod:`attnbench.models.transformer` (pre-LN, multi-head attention
from the registry); :class:`TextEncoder` adds a [CLS] token in front, sinusoidal positions and,
when asked, keeps every layer's per-head attention maps. :func:`mask_tokens` is BERT's masking
(15% of the real tokens; of those 80% become [MASK], 10% a random token, 10% stay), drawn from a
``torch.Generator`` only, so pre-training is deterministic.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from ..attention import build
from .transformer import EncoderLayer, sinusoidal_positions

PAD, UNK, CLS, MASK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<cls>", "<mask>")


class TextEncoder(nn.Module):
    """[CLS] + tokens -> contextual vectors ``[B, 1 + T, d]`` (position 0 is [CLS])."""

    def __init__(self, vocab: int, *, dim: int, heads: int, layers: int, ffn_dim: int, dropout: float,
                 max_len: int, attention_options: dict | None = None, attention: str = "multihead") -> None:
        super().__init__()
        self.scale = math.sqrt(dim)
        self.embed = nn.Embedding(vocab, dim, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, std=dim ** -0.5)  # unit-scale after the sqrt(d) factor
        with torch.no_grad():
            self.embed.weight[PAD].zero_()
        self.register_buffer("positions", sinusoidal_positions(max_len + 1, dim), persistent=False)
        opts = {"dropout": dropout, **(attention_options or {})}
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, ffn_dim, dropout, attention) for _ in range(layers))
        if set(opts) != {"dropout"} or opts["dropout"] != dropout:  # the run's options reach the mechanism
            for layer in self.layers:
                layer.self_attn = build(attention, dim, dim, dim, num_heads=heads, **opts)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, need_weights: bool = False):
        """tokens ``[B, T]`` (PAD = 0) -> (states ``[B, 1 + T, d]``, mask ``[B, 1 + T]``,
        per-layer head weights ``[B, L, H, 1 + T, 1 + T]`` or None)."""
        cls = torch.full((tokens.size(0), 1), CLS, dtype=tokens.dtype, device=tokens.device)
        tokens = torch.cat([cls, tokens], dim=1)
        mask = tokens != PAD
        x = self.drop(self.embed(tokens) * self.scale + self.positions[: tokens.size(1)])
        maps = []
        for layer in self.layers:
            if need_weights:
                h = layer.norm1(x)
                context, _ = layer.self_attn(h, h, h, mask, need_weights=True)
                maps.append(layer.self_attn.last_head_weights)
                x = x + layer.drop(context)
                x = x + layer.drop(layer.ffn(layer.norm2(x)))
            else:
                x = layer(x, mask)
        return self.norm(x), mask, (torch.stack(maps, dim=1) if need_weights else None)


class MLMHead(nn.Module):
    """BERT's prediction head: dense + GELU + layer norm, then the (tied) token embeddings."""

    def __init__(self, embed: nn.Embedding) -> None:
        super().__init__()
        dim = embed.embedding_dim
        self.dense = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.embed = embed  # tied: the same Parameter, saved once in the state dict
        self.bias = nn.Parameter(torch.zeros(embed.num_embeddings))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(F.gelu(self.dense(states))), self.embed.weight, self.bias)


def mask_tokens(tokens: torch.Tensor, vocab: int, prob: float, generator: torch.Generator):
    """BERT masking of the real tokens of ``tokens`` ``[B, T]``: (inputs, targets with -100 where
    nothing is predicted). At least one token per non-empty row is chosen."""
    real = tokens != PAD
    draw = torch.rand(tokens.shape, generator=generator)
    chosen = (draw < prob) & real
    # rows where nothing was drawn predict their least-drawn real token
    empty = ~chosen.any(dim=1) & real.any(dim=1)
    if empty.any():
        first = draw.masked_fill(~real, 2.0).argmin(dim=1)
        chosen[empty, first[empty]] = True
    action = torch.rand(tokens.shape, generator=generator)
    random_ids = torch.randint(len(SPECIALS), max(vocab, len(SPECIALS) + 1), tokens.shape, generator=generator)
    inputs = tokens.clone()
    inputs[chosen & (action < 0.8)] = MASK
    swap = chosen & (action >= 0.8) & (action < 0.9)
    inputs[swap] = random_ids[swap]
    targets = tokens.masked_fill(~chosen, -100)
    return inputs, targets
