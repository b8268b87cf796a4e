"""Transformer encoder–decoder (Vaswani et al. 2017), small enough to read top to bottom.

Multi-head scaled dot-product attention from the registry, sinusoidal positions, position-wise
feed-forward layers and layer norm. Layer norm sits before each sub-layer (pre-LN, Xiong et al.
2020) rather than after it as in the paper: it trains stably at these small sizes without warm-up.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..attention import build
from . import beam
from .seq2seq import BOS, EOS, PAD, decoded_length, stops_early


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return table


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, ffn_dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(d_model, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d_model))


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = build("multihead", d_model, d_model, d_model, num_heads=heads, dropout=dropout)
        self.ffn = FeedForward(d_model, ffn_dim, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask):
        h = self.norm1(x)
        x = x + self.drop(self.self_attn(h, h, h, mask, need_weights=False)[0])
        return x + self.drop(self.ffn(self.norm2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = build("multihead", d_model, d_model, d_model, num_heads=heads, dropout=dropout)
        self.cross_attn = build("multihead", d_model, d_model, d_model, num_heads=heads, dropout=dropout)
        self.ffn = FeedForward(d_model, ffn_dim, dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(3))
        self.drop = nn.Dropout(dropout)

    def forward(self, y, tgt_mask, memory, src_mask, need_weights: bool = False):
        h = self.norms[0](y)
        y = y + self.drop(self.self_attn(h, h, h, tgt_mask, causal=True, need_weights=False)[0])
        context, weights = self.cross_attn(self.norms[1](y), memory, memory, src_mask, need_weights=need_weights)
        y = y + self.drop(context)
        return y + self.drop(self.ffn(self.norms[2](y))), weights


class TransformerSeq2Seq(nn.Module):
    def __init__(self, src_vocab: int, tgt_vocab: int, *, d_model: int, heads: int, enc_layers: int, dec_layers: int,
                 ffn_dim: int, dropout: float, max_len: int = 512, attention: str = "multihead",
                 attention_options: dict | None = None) -> None:
        super().__init__()
        if attention != "multihead":
            raise ValueError(f"the Transformer uses multi-head attention; got attention {attention!r}")
        self.scale = math.sqrt(d_model)
        self.src_emb = nn.Embedding(src_vocab, d_model, padding_idx=PAD)
        self.tgt_emb = nn.Embedding(tgt_vocab, d_model, padding_idx=PAD)
        self.register_buffer("positions", sinusoidal_positions(max_len, d_model), persistent=False)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, heads, ffn_dim, dropout) for _ in range(enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(d_model, heads, ffn_dim, dropout) for _ in range(dec_layers))
        self.enc_norm, self.dec_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, tgt_vocab)
        for emb in (self.src_emb, self.tgt_emb):  # unit-scale tokens after the sqrt(d) factor, as in the paper
            nn.init.normal_(emb.weight, std=d_model ** -0.5)
            nn.init.zeros_(emb.weight[PAD])

    def _embed(self, emb: nn.Embedding, tokens: torch.Tensor) -> torch.Tensor:
        return self.drop(emb(tokens) * self.scale + self.positions[: tokens.size(1)])

    def encode(self, src, src_len=None):
        mask = src != PAD
        x = self._embed(self.src_emb, src)
        for layer in self.encoder:
            x = layer(x, mask)
        return self.enc_norm(x), mask

    def decode(self, tgt_in, memory, src_mask, need_weights: bool = False):
        y = self._embed(self.tgt_emb, tgt_in)
        weights = None
        for i, layer in enumerate(self.decoder):
            last = i == len(self.decoder) - 1
            y, w = layer(y, tgt_in != PAD, memory, src_mask, need_weights=need_weights and last)
            weights = w if last else weights
        return self.out(self.dec_norm(y)), weights

    def forward(self, src, src_len, tgt_in, need_weights: bool = False):
        """Teacher forcing: logits [B, Tt, V] and the last layer's head-averaged cross-attention."""
        memory, mask = self.encode(src)
        return self.decode(tgt_in, memory, mask, need_weights=need_weights)

    @torch.no_grad()
    def greedy(self, src, src_len, max_len: int, stop_early: bool | None = None):
        memory, mask = self.encode(src)
        batch = src.size(0)
        ys = torch.full((batch, 1), BOS, dtype=torch.long, device=src.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
        stop_early = stops_early(src.device) if stop_early is None else stop_early
        for _ in range(max_len):
            logits, _ = self.decode(ys, memory, mask)
            token = logits[:, -1].argmax(-1).masked_fill(finished, PAD)
            ys = torch.cat([ys, token.unsqueeze(1)], dim=1)
            finished |= token == EOS
            if stop_early and bool(finished.all()):
                break
        ys = ys[:, :1 + decoded_length(ys[:, 1:], finished)]
        _, weights = self.decode(ys[:, :-1], memory, mask, need_weights=True)
        return ys[:, 1:], weights

    @torch.no_grad()
    def beam_search(self, src, src_len, beam_size: int, max_len: int, *, alpha: float = 0.0, norm: str = "gnmt",
                    stop_early: bool | None = None):
        """Batched beam search (models.beam), returned as `greedy` returns its output: tokens [B, T] and the last
        layer's cross-attention [B, T, Ts] of the chosen words (one teacher-forced pass over them). No key/value
        cache: each step re-reads the hypothesis' prefix, as `greedy` does."""
        memory, mask = self.encode(src)
        memory, mask = beam.expand(memory, beam_size), beam.expand(mask, beam_size)
        prefix = torch.zeros((src.size(0) * beam_size, 0), dtype=torch.long, device=src.device)

        def step(token, state, t):
            ys = torch.cat([state[0], token.unsqueeze(1)], dim=1)
            logits, _ = self.decode(ys, memory, mask)
            return logits[:, -1], (ys,), None

        stop_early = stops_early(src.device) if stop_early is None else stop_early
        best = beam.beam_search(step, (prefix,), src.size(0), beam_size, max_len, bos=BOS, eos=EOS, pad=PAD,
                                alpha=alpha, norm=norm, stop_early=stop_early, device=src.device)
        tokens = best["tokens"]
        ys = torch.cat([torch.full_like(tokens[:, :1], BOS), tokens[:, :-1]], dim=1)
        _, weights = self.decode(ys, memory[::beam_size], mask[::beam_size], need_weights=True)
        return tokens, weights
