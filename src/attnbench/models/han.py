"""Hierarchical attention networks (Yang et al., 2016) and a flat attention baseline.

    words ──embed──> bi-GRU (per sentence) ──pool──> sentence vectors
          ──> bi-GRU (over the sentences) ──pool──> document vector ──linear──> class scores

`pool` is, per level, either attention from the registry with a **learned context vector** as its
query (HAN: with `additive`, score = vᵀ tanh(W_k h + b + W_q u), u learned, which is Yang et al.'s
word and sentence attention uᵀ tanh(W h + b) with the context vector folded into v and the bias),
or plain averaging / max-pooling over the real positions (HAN-mean / HAN-max).

`FlatAttention` reads the whole document as one word sequence: one bi-GRU and one attention (the
same learned-query pooling) over all its words, with no notion of sentences.

Both models take a padded batch `words [B, S, L]` (token ids, 0 = padding), `word_len [B, S]`
(0 for padding sentences) and return (logits [B, C], word weights [B, S, L], sentence weights [B, S]).
HAN's word weights sum to 1 within each sentence; the flat model's sum to 1 over the document and
its sentence weights are the sums of its word weights per sentence. Max-pooling reports, per
position, the share of the pooled dimensions it supplied (a saliency-style weight); averaging
reports uniform weights.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..attention import Needs, build

POOLINGS = ("attention", "mean", "max")


def run_gru(gru: nn.GRU, x: Tensor, lengths: Tensor) -> Tensor:
    """A bi-GRU over padded sequences x [N, T, D] of `lengths` (all >= 1): states [N, T, 2H], 0 on padding."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = gru(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    return out


class Pool(nn.Module):
    """Reduce states [N, T, D] over T (mask [N, T]) to [N, D'] and per-position weights [N, T]."""

    # a learned context vector queries the positions: weights over them (an alignment); none: mean or max pooling
    attention_needs = Needs(alignment=True, optional=True)

    def __init__(self, dim: int, pooling: str, attention: str, attention_options: dict) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.output_dim = dim
        self.attention = None
        if pooling == "attention":
            self.attention = build(attention, dim, dim, dim, **attention_options)
            self.context = nn.Parameter(torch.randn(dim) * dim ** -0.5)   # the learned context vector u
            self.output_dim = self.attention.output_dim

    def forward(self, states: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        m = mask.unsqueeze(-1)
        if self.pooling == "attention":
            query = self.context.expand(states.size(0), -1)
            return self.attention(query, states, states, mask)
        count = mask.sum(1, keepdim=True).clamp(min=1)
        if self.pooling == "mean":
            return (states * m).sum(1) / count, mask.float() / count
        filled = states.masked_fill(~m, torch.finfo(states.dtype).min)
        pooled, where = filled.max(1)                                    # [N, D], argmax position per dim
        pooled = pooled.masked_fill(~mask.any(1, keepdim=True), 0.0)     # rows without a position
        share = torch.zeros_like(states[..., 0]).scatter_add_(1, where, torch.ones_like(pooled)) / states.size(-1)
        return pooled, share * mask


class HAN(nn.Module):
    """Word encoder + word pooling -> sentence encoder + sentence pooling -> softmax layer."""

    attention_needs = Pool.attention_needs

    def __init__(self, vocab_size: int, n_classes: int, emb_dim: int = 64, word_hidden: int = 32,
                 sent_hidden: int = 32, dropout: float = 0.1, *, pooling: str = "attention",
                 attention: str = "additive", attention_options: dict | None = None) -> None:
        super().__init__()
        opts = dict(attention_options or {})
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.word_gru = nn.GRU(emb_dim, word_hidden, batch_first=True, bidirectional=True)
        self.word_pool = Pool(2 * word_hidden, pooling, attention, opts)
        self.sent_gru = nn.GRU(self.word_pool.output_dim, sent_hidden, batch_first=True, bidirectional=True)
        self.sent_pool = Pool(2 * sent_hidden, pooling, attention, opts)
        self.out = nn.Linear(self.sent_pool.output_dim, n_classes)

    def forward(self, words: Tensor, word_len: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, S, L = words.shape
        real = word_len > 0                                               # [B, S] real sentences
        sent_len = real.sum(1)
        flat = words[real]                                                # [N, L] the real sentences only
        lengths = word_len[real]
        states = run_gru(self.word_gru, self.drop(self.embed(flat)), lengths)
        word_mask = torch.arange(L, device=words.device) < lengths.unsqueeze(1)
        sent_vec, word_w = self.word_pool(states, word_mask)              # [N, D], [N, L]
        sentences = sent_vec.new_zeros(B, S, sent_vec.size(-1))
        sentences[real] = sent_vec
        word_weights = word_w.new_zeros(B, S, L)
        word_weights[real] = word_w
        sent_states = run_gru(self.sent_gru, sentences, sent_len.clamp(min=1))
        doc, sent_w = self.sent_pool(sent_states, real)
        return self.out(self.drop(doc)), word_weights, sent_w

    @property
    def pooling(self) -> str:
        """How the document is pooled: 'attention', 'mean' or 'max' (both levels pool alike)."""
        return self.sent_pool.pooling


class FlatAttention(nn.Module):
    """One bi-GRU over all words of the document and one pooling (attention) over all of them."""

    attention_needs = Pool.attention_needs

    def __init__(self, vocab_size: int, n_classes: int, emb_dim: int = 64, hidden: int = 32, dropout: float = 0.1, *,
                 pooling: str = "attention", attention: str = "additive", attention_options: dict | None = None) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.gru = nn.GRU(emb_dim, hidden, batch_first=True, bidirectional=True)
        self.pool = Pool(2 * hidden, pooling, attention, dict(attention_options or {}))
        self.out = nn.Linear(self.pool.output_dim, n_classes)

    def forward(self, words: Tensor, word_len: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, S, L = words.shape
        token_mask = (torch.arange(L, device=words.device) < word_len.unsqueeze(-1)).view(B, S * L)
        n_tokens = token_mask.sum(1)
        T = int(n_tokens.max())
        # the real tokens of each document first, in reading order (a stable sort keeps sentence/word order)
        index = torch.sort((~token_mask).to(torch.int8), dim=1, stable=True).indices[:, :T]
        tokens = words.view(B, S * L).gather(1, index)
        mask = torch.arange(T, device=words.device) < n_tokens.unsqueeze(1)
        states = run_gru(self.gru, self.drop(self.embed(tokens)), n_tokens.clamp(min=1))
        doc, w = self.pool(states, mask)
        word_weights = w.new_zeros(B, S * L).scatter(1, index, w * mask).view(B, S, L)
        return self.out(self.drop(doc)), word_weights, word_weights.sum(-1)

    @property
    def pooling(self) -> str:
        """How the document is pooled: 'attention', 'mean' or 'max'."""
        return self.pool.pooling
