"""Utterance classifiers: an encoder (embeddings, LSTM or Transformer), a pooling that turns its
token vectors into one vector (mean, max, last state, [CLS], or a registry attention mechanism),
and a linear layer over the intents.

Every forward pass can also return what the model "looks at" per token (``weights``, ``[B, T]``,
summing to 1 over the real tokens) for the keyword analysis:

- attention pooling: the mechanism's weights (self-attention: the weights averaged over the query
  tokens; external attention: its softmax over the tokens averaged over the memory slots);
- max pooling: saliency, the share of vector dimensions whose maximum comes from each token;
- Transformer with [CLS] pooling: the last layer's [CLS] attention row, heads averaged, [CLS]
  itself left out and the rest renormalised;
- mean pooling and the LSTM's last state: none (None).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ..attention import NO_ATTENTION, Needs, build
from .bert import PAD, MLMHead, TextEncoder

ENCODERS = ("embedding", "lstm", "transformer")
POOLINGS = {"embedding": ("mean", "max", "attention"), "lstm": ("last", "mean", "max"),
            "transformer": ("cls", "mean", "attention")}


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def _renormalise(w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    w = w.masked_fill(~mask, 0.0)
    return w / w.sum(-1, keepdim=True).clamp_min(1e-12)


class IntentClassifier(nn.Module):
    @staticmethod
    def attention_needs(encoder: str, pooling: str, query: str = "self") -> Needs:
        """What the run's mechanism must be for this encoder and pooling: the Transformer encoder's layers (a
        multi-head layer; its pooling mechanism is `pool_attention`), an attention pooling's single attention over
        the tokens (with a learned query: weights over the tokens, which pool them), or none (the other poolings
        have no attention)."""
        if encoder == "transformer":
            return Needs(forms=None, heads=True)
        if pooling == "attention":
            return Needs(heads=False, alignment=True if query == "learned" else None)
        return NO_ATTENTION

    def __init__(self, vocab: int, n_classes: int, *, encoder: str, pooling: str, dim: int, dropout: float = 0.1,
                 hidden: int | None = None, heads: int = 4, layers: int = 2, ffn_dim: int = 128,
                 query: str = "self", residual: bool = False, pool_attention: str | None = None,
                 pool_options: dict | None = None,
                 mlm: dict | None = None, max_len: int = 64, attention: str | None = None,
                 attention_options: dict | None = None) -> None:
        super().__init__()
        if encoder not in ENCODERS or pooling not in POOLINGS[encoder]:
            raise ValueError(f"encoder {encoder!r} with pooling {pooling!r} is not supported; "
                             f"expected one of {POOLINGS}")
        self.encoder_kind, self.pooling, self.query_kind = encoder, pooling, query
        # attention pooling plus the token mean (a residual block): self-attention averages x + context,
        # a learned query adds mean(x) to its context
        self.residual = bool(residual)
        self.drop = nn.Dropout(dropout)
        attention_options = dict(attention_options or {})
        if encoder == "transformer":
            self.encoder = TextEncoder(vocab, dim=dim, heads=heads, layers=layers, ffn_dim=ffn_dim, dropout=dropout,
                                       max_len=max_len, attention_options=attention_options,
                                       attention=attention or "multihead")
            out = dim
            mech_name, mech_opts = pool_attention or "additive", dict(pool_options or {})
        else:
            self.embed = nn.Embedding(vocab, dim, padding_idx=PAD)
            out = dim
            if encoder == "lstm":
                out = hidden or dim
                self.lstm = nn.LSTM(dim, out, batch_first=True)
            mech_name, mech_opts = attention or "none", attention_options
        self.mechanism = None
        if pooling == "attention":
            self.mechanism = build(mech_name, out, out, out, **mech_opts)
            if query == "learned":
                self.query = nn.Parameter(torch.randn(out) / out ** 0.5)
            if self.residual and self.mechanism.output_dim != out:
                raise ValueError("residual: needs a pooling mechanism whose output size equals its input size "
                                 f"({self.mechanism.output_dim} != {out})")
            out = self.mechanism.output_dim
        self.out = nn.Linear(out, n_classes)
        self.mlm_head = None
        if mlm is not None:
            if encoder != "transformer":
                raise ValueError("masked-LM pre-training needs the transformer encoder")
            self.mlm_head = MLMHead(self.encoder.embed)
            # pre-training's masked-LM accuracy on the valid and test texts (-1: not pre-trained)
            self.register_buffer("mlm_accuracy", torch.full((2,), -1.0))

    # ---- encoders --------------------------------------------------------------------
    def encode(self, tokens: torch.Tensor, need_weights: bool = False):
        """(token vectors [B, T, d], mask [B, T], [CLS] vector or None, head maps or None)."""
        mask = tokens != PAD
        if self.encoder_kind == "transformer":
            states, full_mask, maps = self.encoder(tokens, need_weights=need_weights)
            return states[:, 1:], full_mask[:, 1:], states[:, 0], maps
        x = self.drop(self.embed(tokens))
        if self.encoder_kind == "lstm":
            lengths = mask.sum(1).clamp_min(1).cpu()
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, (h, _) = self.lstm(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=tokens.size(1))
            return out, mask, h[-1], None
        return x, mask, None, None

    # ---- pooling ---------------------------------------------------------------------
    def pool(self, x, mask, first, maps, need_weights: bool):
        weights = None
        if self.pooling == "mean":
            pooled = _masked_mean(x, mask)
        elif self.pooling == "max":
            filled = x.masked_fill(~mask.unsqueeze(-1), torch.finfo(x.dtype).min)
            pooled, where = filled.max(dim=1)  # [B, d]
            if need_weights:
                counts = torch.zeros(x.shape[:2], dtype=x.dtype, device=x.device)
                counts.scatter_add_(1, where, torch.ones_like(where, dtype=x.dtype))
                weights = counts / x.size(-1)
        elif self.pooling in ("last", "cls"):
            pooled = first
            if self.pooling == "cls" and need_weights and maps is not None:
                weights = _renormalise(maps[:, -1].mean(1)[:, 0, 1:], mask)
        else:
            mech = self.mechanism
            if self.query_kind == "learned":
                q = self.query.expand(x.size(0), -1)
                pooled, weights = mech(q, x, x, mask)
                if self.residual:
                    pooled = pooled + _masked_mean(x, mask)
            else:
                context, w = mech(x, x, x, mask)  # self-attention: every token queries the others
                pooled = _masked_mean(x + context if self.residual else context, mask)
                if mech.weights_over == "slots":  # not over the tokens: what it weighs per token instead
                    weights = mech.token_weights(x, mask)
                else:
                    weights = _masked_mean(w, mask)
        return pooled, weights

    def forward(self, tokens: torch.Tensor, need_weights: bool = False):
        """logits ``[B, classes]`` and {'weights': [B, T] or None, 'heads': [B, L, H, 1+T, 1+T] or None}."""
        x, mask, first, maps = self.encode(tokens, need_weights=need_weights and self.encoder_kind == "transformer")
        pooled, weights = self.pool(x, mask, first, maps, need_weights)
        logits = self.out(self.drop(pooled))
        if weights is not None:
            weights = _renormalise(weights.float(), mask)
        return logits, {"weights": weights, "heads": maps}

    def mlm_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Masked-LM logits ``[B, T, vocab]`` of the tokens (after [CLS])."""
        states, _, _ = self.encoder(tokens)
        return self.mlm_head(states[:, 1:])
