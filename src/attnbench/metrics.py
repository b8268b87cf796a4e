"""Thin wrappers over the field's standard metric libraries, plus the attention-quality scores.

BLEU and chrF come from sacreBLEU (its signature is kept beside every score); the rest is the
alignment error rate of Och & Ney (2003), which no standard library ships in a usable form.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from sacrebleu.metrics import BLEU, CHRF


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, str]:
    """sacreBLEU corpus BLEU (default 13a tokenisation) and its signature."""
    bleu = BLEU()
    score = bleu.corpus_score(list(hypotheses), [list(references)])
    return round(score.score, 4), str(bleu.get_signature())


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, str]:
    chrf = CHRF()
    score = chrf.corpus_score(list(hypotheses), [list(references)])
    return round(score.score, 4), str(chrf.get_signature())


def alignment_error_rate(predicted: Iterable[set[tuple[int, int]]], sure: Iterable[set[tuple[int, int]]],
                         possible: Iterable[set[tuple[int, int]]] | None = None) -> float:
    """AER = 1 - (|A∩S| + |A∩P|) / (|A| + |S|), summed over the corpus; P defaults to S (S ⊆ P)."""
    predicted, sure = list(predicted), list(sure)
    possible = sure if possible is None else list(possible)
    a_s = a_p = n_a = n_s = 0
    for a, s, p in zip(predicted, sure, possible, strict=True):
        p = p | s
        a_s += len(a & s)
        a_p += len(a & p)
        n_a += len(a)
        n_s += len(s)
    if n_a + n_s == 0:
        return float("nan")
    return 1.0 - (a_s + a_p) / (n_a + n_s)


def argmax_alignment(weights: np.ndarray, n_src: int, n_tgt: int) -> set[tuple[int, int]]:
    """Link each target token to its most-attended source token: {(src, tgt)}."""
    w = np.asarray(weights)[:n_tgt, :n_src]
    return {(int(s), t) for t, s in enumerate(w.argmax(axis=1))}
