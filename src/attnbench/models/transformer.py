"""Transformer encoder–decoder (Vaswani et al. 2017), small enough to read top to bottom.

Multi-head scaled dot-product attention from the registry, sinusoidal positions, position-wise
feed-forward layers and layer norm. Layer norm sits before each sub-layer (pre-LN, Xiong et al.
2020) rather than after it as in the paper: it trains stably at these small sizes without warm-up.

Options (off by default, so existing runs are unchanged):
* `tie_embeddings`: the output layer's weight is the target embedding matrix (Press & Wolf 2017), one
  Parameter for both, as in the paper and fairseq's `share_decoder_input_output_embed`.
* `kv_cache`: greedy decoding and beam search keep each decoder layer's self-attention keys and values
  of the words so far, and the cross-attention's projection of the encoder memory, so that a step
  reads only its new word instead of re-running the decoder over the whole prefix. The outputs equal
  those of the full recomputation up to float rounding (tests/test_transformer_recipe.py).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..attention import Needs, build, get_class
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


def _layer_attention(name: str, d_model: int, heads: int, dropout: float):
    """The block's attention: a mechanism that is a multi-head layer (`heads`), refused otherwise."""
    if not get_class(name).heads:
        raise ValueError(f"a Transformer block needs a multi-head layer (a mechanism with `heads`); got {name!r}")
    return build(name, d_model, d_model, d_model, num_heads=heads, dropout=dropout)


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, ffn_dim: int, dropout: float, attention: str = "multihead") -> None:
        super().__init__()
        self.self_attn = _layer_attention(attention, d_model, heads, dropout)
        self.ffn = FeedForward(d_model, ffn_dim, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask):
        h = self.norm1(x)
        x = x + self.drop(self.self_attn(h, h, h, mask, need_weights=False)[0])
        return x + self.drop(self.ffn(self.norm2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, ffn_dim: int, dropout: float, attention: str = "multihead") -> None:
        super().__init__()
        self.self_attn = _layer_attention(attention, d_model, heads, dropout)
        self.cross_attn = _layer_attention(attention, d_model, heads, dropout)
        self.ffn = FeedForward(d_model, ffn_dim, dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(3))
        self.drop = nn.Dropout(dropout)

    def forward(self, y, tgt_mask, memory, src_mask, need_weights: bool = False):
        h = self.norms[0](y)
        y = y + self.drop(self.self_attn(h, h, h, tgt_mask, causal=True, need_weights=False)[0])
        context, weights = self.cross_attn(self.norms[1](y), memory, memory, src_mask, need_weights=need_weights)
        y = y + self.drop(context)
        return y + self.drop(self.ffn(self.norms[2](y))), weights

    def step(self, y, k, v, keep, memory_kv, src_mask):
        """`forward` for one new position y [N, 1, d], given this layer's self-attention keys and values of the
        earlier positions k, v [N, H, t, d_h], which positions so far (this one included) are words rather than
        padding (keep [N, t + 1]) and the cross-attention's keys and values of the memory (memory_kv):
        (the position's output [N, 1, d], k and v with its own keys and values appended)."""
        h = self.norms[0](y)
        q, k_new, v_new = self.self_attn.project_heads(h, h, h)
        k, v = torch.cat([k, k_new], dim=2), torch.cat([v, v_new], dim=2)
        y = y + self.drop(self.self_attn.attend_heads(q, k, v, keep))
        q = self.cross_attn.query_heads(self.norms[1](y))
        y = y + self.drop(self.cross_attn.attend_heads(q, *memory_kv, src_mask))
        return y + self.drop(self.ffn(self.norms[2](y))), k, v


class TransformerSeq2Seq(nn.Module):
    attention_needs = Needs(forms=None, heads=True)
    produces_alignment = True   # the last decoder layer's cross-attention weighs the source words
    feature_states = False      # forward gives the logits of every position
    weights_on_request = True   # forward returns its attention weights only with need_weights=True

    def __init__(self, src_vocab: int, tgt_vocab: int, *, d_model: int, heads: int, enc_layers: int, dec_layers: int,
                 ffn_dim: int, dropout: float, max_len: int = 512, attention: str = "multihead",
                 attention_options: dict | None = None, tie_embeddings: bool = False, kv_cache: bool = False) -> None:
        super().__init__()
        self.scale = math.sqrt(d_model)
        self.src_emb = nn.Embedding(src_vocab, d_model, padding_idx=PAD)
        self.tgt_emb = nn.Embedding(tgt_vocab, d_model, padding_idx=PAD)
        self.register_buffer("positions", sinusoidal_positions(max_len, d_model), persistent=False)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, heads, ffn_dim, dropout, attention) for _ in range(enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(d_model, heads, ffn_dim, dropout, attention) for _ in range(dec_layers))
        self.enc_norm, self.dec_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, tgt_vocab)
        for emb in (self.src_emb, self.tgt_emb):  # unit-scale tokens after the sqrt(d) factor, as in the paper
            nn.init.normal_(emb.weight, std=d_model ** -0.5)
            nn.init.zeros_(emb.weight[PAD])
        if tie_embeddings:   # one Parameter: logits = h E^T + b
            self.out.weight = self.tgt_emb.weight
        self.kv_cache = bool(kv_cache)

    def _positions(self, length: int) -> torch.Tensor:
        """The first `length` rows of the position table, which grows when a longer input comes (translating a
        user's sentence: the table is sized to the prepared data, and it is not saved with the weights)."""
        if length > self.positions.size(0):
            self.positions = sinusoidal_positions(length, self.positions.size(1)).to(self.positions)
        return self.positions[:length]

    def _embed(self, emb: nn.Embedding, tokens: torch.Tensor) -> torch.Tensor:
        return self.drop(emb(tokens) * self.scale + self._positions(tokens.size(1)))

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

    # ---- incremental decoding (kv_cache) -------------------------------------------------------------
    def _empty_cache(self, memory) -> tuple:
        """The decoder state before the first word: (keep [N, 0], then k, v [N, H, 0, d_h] of every layer)."""
        attn = self.decoder[0].self_attn
        empty = memory.new_zeros((memory.size(0), attn.num_heads, 0, attn.head_dim))
        keep = torch.zeros((memory.size(0), 0), dtype=torch.bool, device=memory.device)
        return (keep,) + (empty, empty) * len(self.decoder)

    def _step(self, token, t: int, state: tuple, memory_kv: list, src_mask):
        """The next-word logits [N, V] after word `token` [N] at position t, and the state with it."""
        keep = torch.cat([state[0], (token != PAD).unsqueeze(1)], dim=1)
        y = self.drop(self.tgt_emb(token).unsqueeze(1) * self.scale + self._positions(t + 1)[t:])
        new = [keep]
        for i, layer in enumerate(self.decoder):
            y, k, v = layer.step(y, state[1 + 2 * i], state[2 + 2 * i], keep, memory_kv[i], src_mask)
            new += [k, v]
        return self.out(self.dec_norm(y[:, 0])), tuple(new)

    def _memory_kv(self, memory) -> list:
        return [layer.cross_attn.memory_heads(memory) for layer in self.decoder]

    @torch.no_grad()
    def greedy(self, src, src_len, max_len: int, stop_early: bool | None = None, cache: bool | None = None):
        """Greedy decoding: tokens [B, T] and the last layer's cross-attention [B, T, Ts] of the chosen words (one
        teacher-forced pass over them). `cache` (default: the model's `kv_cache`): incremental decoding."""
        memory, mask = self.encode(src)
        batch = src.size(0)
        ys = torch.full((batch, 1), BOS, dtype=torch.long, device=src.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
        stop_early = stops_early(src.device) if stop_early is None else stop_early
        cache = self.kv_cache if cache is None else cache
        if cache:
            state, memory_kv = self._empty_cache(memory), self._memory_kv(memory)
        for t in range(max_len):
            if cache:
                last, state = self._step(ys[:, -1], t, state, memory_kv, mask)
            else:
                last = self.decode(ys, memory, mask)[0][:, -1]
            token = last.argmax(-1).masked_fill(finished, PAD)
            ys = torch.cat([ys, token.unsqueeze(1)], dim=1)
            finished |= token == EOS
            if stop_early and bool(finished.all()):
                break
        ys = ys[:, :1 + decoded_length(ys[:, 1:], finished)]
        _, weights = self.decode(ys[:, :-1], memory, mask, need_weights=True)
        return ys[:, 1:], weights

    @torch.no_grad()
    def beam_search(self, src, src_len, beam_size: int, max_len: int, *, alpha: float = 0.0, norm: str = "gnmt",
                    stop_early: bool | None = None, cache: bool | None = None):
        """Batched beam search (models.beam; length normalisation `norm` with exponent `alpha`, as the RNN's),
        returned as `greedy` returns its output: tokens [B, T] and the last layer's cross-attention [B, T, Ts] of
        the chosen words (one teacher-forced pass over them). Without `cache` (default: the model's `kv_cache`)
        each step re-reads the hypothesis' prefix; with it the search re-orders the cached keys and values with
        the hypotheses."""
        memory, mask = self.encode(src)
        memory, mask = beam.expand(memory, beam_size), beam.expand(mask, beam_size)
        cache = self.kv_cache if cache is None else cache
        if cache:
            memory_kv = self._memory_kv(memory)

            def step(token, state, t):
                logits, state = self._step(token, t, state, memory_kv, mask)
                return logits, state, None

            state = self._empty_cache(memory)
        else:
            def step(token, state, t):
                ys = torch.cat([state[0], token.unsqueeze(1)], dim=1)
                logits, _ = self.decode(ys, memory, mask)
                return logits[:, -1], (ys,), None

            state = (torch.zeros((src.size(0) * beam_size, 0), dtype=torch.long, device=src.device),)

        stop_early = stops_early(src.device) if stop_early is None else stop_early
        best = beam.beam_search(step, state, src.size(0), beam_size, max_len, bos=BOS, eos=EOS, pad=PAD,
                                alpha=alpha, norm=norm, stop_early=stop_early, device=src.device)
        tokens = best["tokens"]
        ys = torch.cat([torch.full_like(tokens[:, :1], BOS), tokens[:, :-1]], dim=1)
        _, weights = self.decode(ys, memory[::beam_size], mask[::beam_size], need_weights=True)
        return tokens, weights
