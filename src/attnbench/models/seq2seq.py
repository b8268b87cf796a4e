"""Bi-GRU encoder–decoder that takes any attention mechanism from the registry.

One architecture for every score function, so differences come from the attention alone. The
decoder is Luong et al.'s (2015) global/local design: the GRU state h_t queries the encoder memory,
and the attentional state h~_t = tanh(W_c [c_t; h_t]) predicts the next word. Without input feeding
(the default) the query is the decoder's own state, so teacher-forced training runs the GRU over the
whole target at once and attends for all steps in one batched call. With `input_feed=True` (Luong
et al. 2015 §3.3, OpenNMT-py's default) the previous step's h~_{t-1} (zeros at the first step) is
concatenated to the word embedding as the GRU's input, so the decoder sees its past alignment
decisions; training then steps through the target. Greedy decoding and beam search (models.beam)
step in both cases.

`none` is the fixed-context baseline (Bahdanau's RNNencdec, Cho et al. 2014): its context is the
same summary of the source at every step.

Options where OpenNMT-py's RNN differs (defaults: this project's original design):
* `cell`: gru (default) or lstm, for the encoder and the decoder;
* `memory`: projected (default: the attention reads tanh(W [h_fwd; h_bwd]), in the decoder's size) or raw
  (the bidirectional encoder's states as they are, 2 x encoder_hidden wide, as OpenNMT-py attends);
* `init`, the decoder's initial state from the encoder's final states [h_fwd; h_bwd]: bridge (default:
  tanh(W [h_fwd; h_bwd]); an LSTM's cell state gets its own W), final (the concatenation as it is, as
  OpenNMT-py without `bridge`; needs 2 x encoder_hidden = hidden) or zeros.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..attention import Needs, build
from . import beam

PAD, UNK, BOS, EOS = 0, 1, 2, 3
CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}
MEMORIES = ("projected", "raw")
INITS = ("bridge", "final", "zeros")


class RNNSeq2Seq(nn.Module):
    # the decoder's GRU state queries the encoder memory one step at a time (none: the fixed-context baseline)
    attention_needs = Needs(decoder_step=True, attends=None)
    feature_states = True       # `features` gives the states before the output layer (training maps real words only)
    weights_on_request = False  # forward always returns the attention weights

    def __init__(self, src_vocab: int, tgt_vocab: int, *, emb_dim: int, hidden: int, dropout: float,
                 attention: str, attention_options: dict | None = None, input_feed: bool = False,
                 encoder_hidden: int | None = None, param_init: float = 0.0, cell: str = "gru",
                 memory: str = "projected", init: str = "bridge") -> None:
        """`encoder_hidden`: the encoder RNN's size per direction (default `hidden`); with the projected memory and
        the bridge its 2 x encoder_hidden states are mapped into the decoder's `hidden`. `param_init` > 0: every
        parameter drawn from U(-param_init, param_init), as OpenNMT-py's `param_init` (0: torch's per-layer
        defaults, N(0, 1) embeddings among them). `cell`, `memory`, `init`: see the module's notes."""
        super().__init__()
        for name, value, allowed in (("cell", cell, tuple(CELLS)), ("memory", memory, MEMORIES), ("init", init, INITS)):
            if value not in allowed:
                raise ValueError(f"rnn option {name}: value {value!r} is not allowed; expected one of: {', '.join(allowed)}")
        self.input_feed = bool(input_feed)
        self.hidden = hidden
        self.lstm, self.raw_memory, self.init = cell == "lstm", memory == "raw", init
        enc = int(encoder_hidden or hidden)
        if init == "final" and 2 * enc != hidden:
            raise ValueError(f"rnn option init: 'final' passes the encoder's final states [h_fwd; h_bwd] ({2 * enc} wide) "
                             f"to the decoder as they are; expected 2 x encoder_hidden = hidden ({hidden})")
        rnn = CELLS[cell]
        self.src_emb = nn.Embedding(src_vocab, emb_dim, padding_idx=PAD)
        self.encoder = rnn(emb_dim, enc, batch_first=True, bidirectional=True)
        if not self.raw_memory:
            self.memory_proj = nn.Linear(2 * enc, hidden)   # keys = values: encoder states in decoder space
        if init == "bridge":
            self.init_proj = nn.Linear(2 * enc, hidden)     # decoder's initial state from both final states
            if self.lstm:
                self.init_proj_c = nn.Linear(2 * enc, hidden)   # ... and its initial cell state
        self.tgt_emb = nn.Embedding(tgt_vocab, emb_dim, padding_idx=PAD)
        # with input feeding the RNN reads [E y_{t-1}; h~_{t-1}]
        self.decoder = rnn(emb_dim + (hidden if self.input_feed else 0), hidden, batch_first=True)
        mem = 2 * enc if self.raw_memory else hidden
        self.attention = build(attention, hidden, mem, mem, **(attention_options or {}))
        self.combine = nn.Linear(hidden + self.attention.output_dim, hidden)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, tgt_vocab)
        if param_init > 0:
            for p in self.parameters():
                nn.init.uniform_(p, -param_init, param_init)
            with torch.no_grad():   # padding embeds to zeros, as nn.Embedding's padding_idx promises
                self.src_emb.weight[PAD].zero_()
                self.tgt_emb.weight[PAD].zero_()

    @property
    def produces_alignment(self) -> bool:
        """Whether the attention weights align target with source words (its mechanism's capability)."""
        return self.attention.produces_alignment

    def encode(self, src: torch.Tensor, src_len: torch.Tensor):
        emb = self.drop(self.src_emb(src))
        packed = pack_padded_sequence(emb, src_len.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.encoder(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        memory = out if self.raw_memory else torch.tanh(self.memory_proj(out))
        if self.lstm:   # the decoder's state is (h, c)
            return memory, src != PAD, (self._initial(final[0], "init_proj"), self._initial(final[1], "init_proj_c"))
        return memory, src != PAD, self._initial(final, "init_proj")

    def _initial(self, final: torch.Tensor, bridge: str) -> torch.Tensor:
        """The decoder's first state [1, N, H] from the encoder's final states [2, N, enc] (`init`)."""
        both = torch.cat([final[0], final[1]], dim=-1)
        if self.init == "zeros":
            return both.new_zeros((1, both.size(0), self.hidden))
        if self.init == "final":
            return both.unsqueeze(0)
        return torch.tanh(getattr(self, bridge)(both)).unsqueeze(0)

    def forward(self, src, src_len, tgt_in):
        """Teacher forcing: logits [B, Tt, V] and attention weights [B, Tt, Ts]."""
        states, weights = self.features(src, src_len, tgt_in)
        return self.out(states), weights

    def features(self, src, src_len, tgt_in):
        """Teacher forcing up to the output layer: the attentional states h~ after dropout [B, Tt, H] (what
        `self.out` maps to logits) and the attention weights [B, Tt, Ts]. Training applies the output layer
        once, to the states of real target words only (Translation.loss), rather than to every padded
        position; with input feeding it also runs once for all steps instead of once per step."""
        memory, mask, h0 = self.encode(src, src_len)
        emb = self.drop(self.tgt_emb(tgt_in))
        if self.input_feed:   # each step reads the previous one's attentional state: step through the target
            h, feed = h0, emb.new_zeros(src.size(0), self.hidden)
            states, weights = [], []
            # split once: slicing emb per step would make backward write a zero gradient of all of emb per step;
            # the steps' positions too, rather than a new tensor per step
            steps = torch.arange(tgt_in.size(1), device=src.device).split(1)
            for emb_t, position in zip(emb.split(1, dim=1), steps):
                h, feed, w = self._feed_state(emb_t, h, feed, memory, mask, position)
                states.append(feed)
                weights.append(w)
            return torch.stack(states, dim=1), torch.cat(weights, dim=1)
        dec_out, _ = self.decoder(emb, h0)
        positions = torch.arange(tgt_in.size(1), device=src.device)
        return self._attend(dec_out, memory, mask, positions)

    def _attend(self, dec_out, memory, mask, positions):
        """Attentional states h~ after dropout and the weights, for decoder states dec_out [N, T, H]."""
        context, weights = self.attention(dec_out, memory, memory, mask, positions=positions)
        return self.drop(torch.tanh(self.combine(torch.cat([context, dec_out], dim=-1)))), weights

    def _feed_state(self, emb, h, feed, memory, mask, position: torch.Tensor):
        """One input-feeding step on embeddings [N, 1, E] at `position` ([1]): (h, h~_t after dropout [N, H],
        weights [N, 1, Ts])."""
        dec_out, h = self.decoder(torch.cat([emb, feed.unsqueeze(1)], dim=-1), h)
        h_tilde, weights = self._attend(dec_out, memory, mask, position)
        return h, h_tilde.squeeze(1), weights

    def decode_step(self, token, h, feed, memory, mask, t: int):
        """One decoding step from the previous words token [N, 1] and state h [1, N, H] (an LSTM's: (h, c)) (feed
        [N, H]: the previous h~ with input feeding, else None): (logits [N, 1, V], h, feed, weights [N, 1, Ts])."""
        if self.input_feed:
            h, feed, w = self._feed_state(self.tgt_emb(token), h, feed, memory, mask,
                                          torch.tensor([t], device=token.device))
            return self.out(feed).unsqueeze(1), h, feed, w
        dec_out, h = self.decoder(self.tgt_emb(token), h)
        states, w = self._attend(dec_out, memory, mask, torch.tensor([t], device=token.device))
        return self.out(states), h, None, w

    def _initial_feed(self, memory):
        return memory.new_zeros(memory.size(0), self.hidden) if self.input_feed else None

    @torch.no_grad()
    def greedy(self, src, src_len, max_len: int, stop_early: bool | None = None):
        """Greedy decoding: tokens [B, T] (EOS then PAD) and weights [B, T, Ts]. See `stops_early` for when
        it stops before max_len; the result is the same either way."""
        memory, mask, h = self.encode(src, src_len)
        feed = self._initial_feed(memory)
        batch = src.size(0)
        token = torch.full((batch, 1), BOS, dtype=torch.long, device=src.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
        stop_early = stops_early(src.device) if stop_early is None else stop_early
        tokens, weights = [], []
        for t in range(max_len):
            logits, h, feed, w = self.decode_step(token, h, feed, memory, mask, t)
            token = logits.argmax(-1)
            token = token.masked_fill(finished.unsqueeze(1), PAD)
            tokens.append(token)
            weights.append(w)
            finished |= token.squeeze(1) == EOS
            if stop_early and bool(finished.all()):
                break
        tokens, weights = torch.cat(tokens, dim=1), torch.cat(weights, dim=1)
        keep = decoded_length(tokens, finished)
        return tokens[:, :keep], weights[:, :keep]

    @torch.no_grad()
    def beam_search(self, src, src_len, beam_size: int, max_len: int, *, alpha: float = 0.0, norm: str = "gnmt",
                    stop_early: bool | None = None):
        """Batched beam search (models.beam): the best hypothesis of each sentence as tokens [B, T] (EOS then PAD,
        as `greedy` returns them; no EOS when it ran to max_len) and the attention weights [B, T, Ts] of its words
        (zeros after them); hypotheses ending in EOS leave the beam; length normalisation `norm` with exponent
        `alpha`. beam_size 1 returns what `greedy` returns."""
        memory, mask, h = self.encode(src, src_len)
        memory, mask = beam.expand(memory, beam_size), beam.expand(mask, beam_size)
        # the search re-orders rows in dim 0: the state as [B*K, H] tensors, (h,) or an LSTM's (h, c), then the feed
        hs = tuple(beam.expand(x[0], beam_size) for x in (h if self.lstm else (h,)))
        n = len(hs)
        state = hs if not self.input_feed else hs + (self._initial_feed(memory),)

        def step(token, state, t):
            h = tuple(x.unsqueeze(0) for x in state[:n])
            feed = state[n] if self.input_feed else None
            logits, h, feed, w = self.decode_step(token.unsqueeze(1), h if self.lstm else h[0], feed, memory, mask, t)
            hs = tuple(x[0] for x in (h if self.lstm else (h,)))
            return logits.squeeze(1), hs if feed is None else hs + (feed,), w.squeeze(1)

        stop_early = stops_early(src.device) if stop_early is None else stop_early
        best = beam.beam_search(step, state, src.size(0), beam_size, max_len, bos=BOS, eos=EOS, pad=PAD, alpha=alpha,
                                norm=norm, stop_early=stop_early, device=src.device)
        return best["tokens"], best["extras"]


def stops_early(device: torch.device) -> bool:
    """Whether greedy decoding checks after every token that the whole batch has emitted EOS. On the CPU the
    check is free and saves the remaining steps; on a GPU reading `finished.all()` makes the host wait for the
    device at every token, so there the decoder runs to max_len and trims once at the end."""
    return device.type == "cpu"


def decoded_length(tokens: torch.Tensor, finished: torch.Tensor) -> int:
    """Columns of greedy output [B, T] up to the step at which the last sequence emitted EOS (all T when some
    sequence never did): what decoding with an early stop returns. One read of the device."""
    if not bool(finished.all()):
        return tokens.size(1)
    return int((tokens == EOS).int().argmax(1).max()) + 1
