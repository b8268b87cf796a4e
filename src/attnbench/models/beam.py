"""Batched beam search shared by the decoders (translation's RNN and Transformer, the captioner).

All inputs of a batch and all their hypotheses advance in one decoder step per word: input b owns the K = beam_size
rows b*K .. b*K+K-1 of the decoder batch, and a row whose score is -inf is empty. At every step each input keeps its
K best one-word extensions; those that end in EOS leave the beam, which then shrinks (as in Xu et al.'s captioning
code: an input with k finished hypotheses keeps K - k running ones), so the search of an input ends when K of its
hypotheses have finished, or at max_len, where those still running finish as they are.

The answer of each input is its best finished hypothesis by the length-normalised score (the earliest finished on a
tie). Running hypotheses all have the same length, so the normalisation changes only that final choice, not which
extensions stay in the beam. Normalisations (`norm`, exponent `alpha`; |Y| counts the generated words, EOS included):
  gnmt:  log p(Y) / ((5 + |Y|) / 6)^alpha       (Wu et al. 2016, GNMT, eq. 14, without the coverage term)
  power: log p(Y) / |Y|^alpha                    (alpha = 1: the plain per-word average, OpenNMT-py's `avg`)
alpha = 0 ranks by the total log-probability in both.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

NORMS = ("gnmt", "power")

# step(tokens [N], state, t) -> (logits [N, V], state, extra [N, L] | None), N = batch x beam_size; every tensor of
# `state` has the N rows in dim 0 (the search re-orders them when hypotheses change rows)
Step = Callable[[Tensor, tuple, int], tuple]


def length_penalty(length: int, alpha: float, norm: str = "gnmt") -> float:
    """The divisor of a hypothesis' log-probability with `length` words (EOS included)."""
    if norm == "gnmt":
        return ((5.0 + length) / 6.0) ** alpha
    if norm == "power":
        return float(length) ** alpha
    raise ValueError(f"length normalisation must be one of {', '.join(NORMS)}, got {norm!r}")


def expand(x: Tensor, beam_size: int) -> Tensor:
    """Rows [B, ...] -> [B*K, ...], each input's row repeated for its K hypotheses."""
    return x.repeat_interleave(beam_size, 0)


@torch.no_grad()
def beam_search(step: Step, state: tuple, batch: int, beam_size: int, max_len: int, *, bos: int, eos: int,
                pad: int = 0, alpha: float = 0.0, norm: str = "gnmt", stop_early: bool = True,
                device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """Beam search of `batch` inputs whose decoder state (already expanded to batch*beam_size rows) is `state`.

    Returns, per input, its best hypothesis: tokens [B, T] (the words, EOS included when it ended; `pad` after),
    steps [B] (its number of words, EOS included), ended [B] (whether it emitted EOS), score [B] (its total
    log-probability), normalised [B] (the score it was chosen by) and extras [B, T, L] | None (the step's `extra`,
    e.g. attention weights, of each of its words; zeros after); T = the longest answer. `stop_early` stops when
    no hypothesis is left running (one read of the device per step: worth it on a CPU, see seq2seq.stops_early)."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    length_penalty(1, alpha, norm)                          # an unknown norm fails before any decoding
    B, K, dev = batch, beam_size, torch.device(device)
    rank = torch.arange(K, device=dev)
    base = (torch.arange(B, device=dev) * K).unsqueeze(1)
    arange_b = torch.arange(B, device=dev)
    budget = torch.full((B, 1), K, dtype=torch.long, device=dev)   # beam width left: K minus finished ones
    token = torch.full((B * K,), bos, dtype=torch.long, device=dev)
    tokens = torch.zeros((B, K, 0), dtype=torch.long, device=dev)  # the running hypotheses' words so far
    extras = None                                                  # and their extras [B, K, t, L]
    score = ninf = best = None

    def keep_best(raw: Tensor, words: Tensor, maps: Tensor | None, steps: int, ended: bool) -> None:
        """Make each input's best of `raw` [B, K] (by normalised score, first on ties) its answer where it beats
        the one held."""
        scores = raw / length_penalty(steps, alpha, norm)
        j = scores.argmax(1)
        s = scores.gather(1, j.unsqueeze(1)).squeeze(1)
        better = s > best["normalised"]
        best["normalised"] = torch.where(better, s, best["normalised"])
        best["score"] = torch.where(better, raw.gather(1, j.unsqueeze(1)).squeeze(1), best["score"])
        best["steps"] = torch.where(better, steps, best["steps"])
        best["ended"] = torch.where(better, ended, best["ended"])
        n = words.shape[-1]
        best["tokens"][:, :n] = torch.where(better.unsqueeze(1), words[arange_b, j], best["tokens"][:, :n])
        if maps is not None:
            if best["extras"] is None:
                best["extras"] = maps.new_zeros((B, max_len, maps.shape[-1]))
            best["extras"][:, :n] = torch.where(better[:, None, None], maps[arange_b, j], best["extras"][:, :n])

    for t in range(max_len):
        logits, state, extra = step(token, state, t)
        logp = logits.log_softmax(-1) if logits.dtype == torch.float64 else logits.float().log_softmax(-1)
        if score is None:   # scores in the log-probabilities' precision (float32, or float64 for a double model)
            ninf = torch.tensor(float("-inf"), dtype=logp.dtype, device=dev)
            score = torch.full((B, K), float("-inf"), dtype=logp.dtype, device=dev)
            score[:, 0] = 0.0                                          # one live hypothesis per input to start
            best = {"normalised": torch.full((B,), float("-inf"), dtype=logp.dtype, device=dev),
                    "score": torch.full((B,), float("-inf"), dtype=logp.dtype, device=dev),
                    "tokens": torch.full((B, max_len), pad, dtype=torch.long, device=dev),
                    "steps": torch.zeros(B, dtype=torch.long, device=dev),
                    "ended": torch.zeros(B, dtype=torch.bool, device=dev),
                    "extras": None}
        V = logp.shape[-1]
        total = (score.unsqueeze(-1) + logp.view(B, K, V)).view(B, K * V)
        top, idx = total.topk(K, dim=1)                        # each input's K best extensions, best first
        parent, word = idx // V, idx % V
        valid = (rank < budget) & torch.isfinite(top)          # an input with k finished keeps only K - k
        ends = valid & (word == eos)
        words = torch.cat([tokens.gather(1, parent.unsqueeze(-1).expand(-1, -1, t)), word.unsqueeze(-1)], 2)
        maps = None
        if extra is not None:
            L = extra.shape[-1]
            step_maps = extra.to(logp.dtype).view(B, K, 1, L)
            maps = step_maps if extras is None else torch.cat([extras, step_maps], 2)
            maps = maps.gather(1, parent[..., None, None].expand(-1, -1, t + 1, L))
        keep_best(torch.where(ends, top, ninf), words, maps, t + 1, True)
        budget = budget - ends.sum(1, keepdim=True)
        # the extensions that go on fill the first rows of their input's beam, best first
        goes_on = valid & (word != eos)
        order = torch.sort((~goes_on).int(), dim=1, stable=True).indices
        score = torch.where(goes_on.gather(1, order), top.gather(1, order), ninf)
        parent = parent.gather(1, order)
        tokens = words.gather(1, order.unsqueeze(-1).expand(-1, -1, t + 1))
        if maps is not None:
            extras = maps.gather(1, order[..., None, None].expand(-1, -1, t + 1, maps.shape[-1]))
        rows = (base + parent).flatten()
        state = tuple(s[rows] for s in state)
        token = tokens[:, :, -1].flatten()
        if stop_early and not bool(torch.isfinite(score).any()):
            break
    else:   # max_len reached: the hypotheses still running finish as they are
        if max_len:
            keep_best(score, tokens, extras, max_len, False)

    if best is None:
        raise ValueError("max_len must be >= 1")
    T = int(best["steps"].max()) if B else 0
    past = torch.arange(T, device=dev).unsqueeze(0) >= best["steps"].unsqueeze(1)
    best["tokens"] = best["tokens"][:, :T].masked_fill(past, pad)
    if best["extras"] is not None:
        best["extras"] = best["extras"][:, :T].masked_fill(past.unsqueeze(-1), 0.0)
    return best
