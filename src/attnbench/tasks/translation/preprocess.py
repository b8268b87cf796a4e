"""Preprocessing declared in the data spec: tokenisation, lowercasing, vocabulary thresholds, detokenisation.

Real corpora usually come as raw text (Multi30k: one sentence a line). ``tasks.translation.data`` says what
``prepare`` does to them::

    tokenize: moses            # none (whitespace split, the default) | moses (sacremoses, per language)
    lang: {source: en, target: fr}   # the Moses tokeniser's and detokeniser's language per side
    lowercase: true            # applied to the raw line before tokenising (as OpenNMT's Multi30k recipes do)
    vocab: {min_freq: 2, max_size: null}          # both sides ...
    vocab: {min_freq: 2, target: {min_freq: 3}}   # ... or one side overriding the shared values

With ``tokenize: moses`` the raw target line of every pair is kept beside its tokens, and evaluation
detokenises the hypotheses (sacremoses) and scores them with sacreBLEU against those raw references,
case-insensitively when the data were lowercased. The synthetic corpus is already tokenised; for it
every option keeps its no-op default.

sacremoses is imported only when Moses tokenisation is asked for.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

TOKENIZERS = ("none", "moses")
SIDES = ("source", "target")

Tokenizer = Callable[[str], tuple[str, ...]]
Detokenizer = Callable[[Sequence[str]], str]


def settings(data: dict) -> dict[str, Any]:
    """The preprocessing part of a data spec with its defaults filled in (what the manifest records)."""
    lang = data.get("lang") or {}
    return {"tokenize": data.get("tokenize", "none"), "lowercase": bool(data.get("lowercase", False)),
            "lang": {side: lang.get(side) for side in SIDES}}


def vocab_limits(data: dict, side: str) -> dict[str, Any]:
    """``{'min_freq': int, 'max_size': int | None}`` for one side: the side's own values over the shared ones.

    The defaults (``min_freq`` 1, no ``max_size``) keep every training token type."""
    spec = data.get("vocab") or {}
    own = spec.get(side) or {}
    min_freq = own.get("min_freq", spec.get("min_freq", 1))
    max_size = own.get("max_size", spec.get("max_size"))
    return {"min_freq": int(min_freq), "max_size": None if max_size is None else int(max_size)}


def tokenizer(kind: str, lang: str | None, lowercase: bool) -> Tokenizer:
    """A function from one raw line to its tokens: lowercased first if asked, then whitespace- or Moses-split."""
    if kind == "none":
        if lowercase:
            return lambda text: tuple(text.lower().split())
        return lambda text: tuple(text.split())
    if kind == "moses":
        from sacremoses import MosesTokenizer

        moses = MosesTokenizer(lang=lang or "en")

        def tokenize(text: str) -> tuple[str, ...]:
            text = text.strip()
            if lowercase:
                text = text.lower()
            # escape=False: keep & < > ' " as they are (no &amp; entities in the vocabulary or the output)
            return tuple(moses.tokenize(text, escape=False)) if text else ()

        return tokenize
    raise ValueError(f"unknown tokenizer {kind!r}; expected one of: {', '.join(TOKENIZERS)}")


def detokenizer(kind: str, lang: str | None) -> Detokenizer:
    """The inverse of :func:`tokenizer` as far as it goes: joins tokens back into text."""
    if kind == "none":
        return lambda tokens: " ".join(tokens)
    if kind == "moses":
        from sacremoses import MosesDetokenizer

        moses = MosesDetokenizer(lang=lang or "en")
        # unescape=False: the tokens were never escaped (tokenize(escape=False)), so nothing is to be undone
        return lambda tokens: moses.detokenize(list(tokens), unescape=False)
    raise ValueError(f"unknown tokenizer {kind!r}; expected one of: {', '.join(TOKENIZERS)}")


def kept_types(sentences: Iterable[Sequence[str]], min_freq: int = 1,
               max_size: int | None = None) -> tuple[list[str], dict[str, int]]:
    """Token types of ``sentences`` that enter the vocabulary, most frequent first (ties alphabetical),
    and what the thresholds cut.

    A type is kept when it occurs at least ``min_freq`` times and is among the ``max_size`` most frequent
    of those (specials are not counted in ``max_size``). Returns (types, {'types': all types seen,
    'kept': types kept, 'below_min_freq': cut by min_freq, 'over_max_size': cut by max_size}).
    """
    if min_freq < 1:
        raise ValueError(f"min_freq must be >= 1, got {min_freq}")
    if max_size is not None and max_size < 1:
        raise ValueError(f"max_size must be >= 1 or None, got {max_size}")
    counts = Counter(tok for s in sentences for tok in s)
    ranked = sorted(counts, key=lambda t: (-counts[t], t))
    frequent = [t for t in ranked if counts[t] >= min_freq]
    kept = frequent if max_size is None else frequent[:max_size]
    return kept, {"types": len(ranked), "kept": len(kept), "below_min_freq": len(ranked) - len(frequent),
                  "over_max_size": len(frequent) - len(kept)}


def unk_counts(sentences: Iterable[Sequence[str]], vocabulary: set[str] | dict[str, int]) -> dict[str, Any]:
    """How much of ``sentences`` falls outside ``vocabulary`` (so becomes ``<unk>``): token types and tokens."""
    tokens = unk_tokens = 0
    unk_types: set[str] = set()
    for sentence in sentences:
        for tok in sentence:
            tokens += 1
            if tok not in vocabulary:
                unk_tokens += 1
                unk_types.add(tok)
    return {"tokens": tokens, "unk_tokens": unk_tokens, "unk_types": len(unk_types),
            "unk_rate": round(unk_tokens / tokens, 6) if tokens else 0.0}
