"""Parallel corpora for the translation benchmark: a synthetic language pair and file readers.

The synthetic pair ("English" -> "Verbal", a made-up verb-final language)
========================================================================

Source grammar (real English words, ~240 word types)::

    Sentence  -> Clause (Conj Clause)*                 Conj -> and | but | while
    Clause    -> NP Verb [NP] [PP] [Adverb]             (object iff the verb is transitive)
    NP        -> Det Adj{0,2} Noun [PP] [RelClause]     (PP / RelClause only on clause-level NPs)
    PP        -> Prep NP'                               (NP' = Det Adj{0,2} Noun, no nesting)
    RelClause -> that Verb [NP']                        (verb agrees with the head noun)

Nouns are singular or plural ("dog" / "dogs"), verbs are present or past and
agree with their subject ("chases" / "chase" / "chased"); determiners agree in
number ("a dog", "these dogs").  Only ``that`` introduces relative clauses
and verbs are strictly transitive or intransitive, so a source string has a
single translation: its one structural ambiguity, a PP right after an object
(attached to the object or to the clause), is translated identically either way.

Target rules (each is a *local* reordering, within a phrase or a clause):

* Lexicon: every source *lemma* has one fixed pseudo-word (generated once
  from :data:`LEXICON_SEED`, identical for every corpus seed), so a source
  word always translates to the same target tokens (:data:`TARGET_LEXICON`).
* One-to-many: a plural noun becomes ``noun ta`` and a past-tense verb
  becomes ``verb ka`` (both tokens link to the one source word).
* Dropped word: ``the`` has no translation; it is simply unaligned.
* Adjectives follow the noun (order kept): ``Det Adj1 Adj2 N`` -> ``Det N Adj1 Adj2``.
* Postpositions: ``Prep NP`` -> ``NP Prep``.
* Verb-final clauses: ``S V O PP Adv`` -> ``S O PP Adv V``; relative clauses
  likewise: ``that V O`` -> ``that O V``.  Clauses and conjunctions keep their order.

Example (gold links are ``src-tgt``, 0-based; ``the`` (source 0, 8, 17) is unaligned)::

    src:   the big dogs that saw a cat chased the small bird in my red house quickly and the king sleeps
    tgt:   zigi ta bavo toso moze nigura mibisos ka puziza gemomo zupo gefu ruro pugi karor motepa ka
           nagal zebu lugegi
    gloss: dog PL big that a cat see PAST bird small my house red in quickly chase PAST and king sleep
    align: 2-0 2-1 1-2 3-3 5-4 6-5 4-6 4-7 10-8 9-9 12-10 14-11 13-12 11-13 15-14 7-15 7-16
           16-17 18-18 19-19

(The exact pseudo-words are whatever :data:`TARGET_LEXICON` holds; the test
suite pins a few of them so the lexicon cannot drift silently.)

Source lengths of :func:`generate_pairs` are spread evenly over
``[min_len, max_len]`` (each length gets ``n / span`` pairs, shuffled); a
sentence of the requested length is grown from a minimal skeleton by random
expansions (adjective, adverb, object, prepositional phrase, relative clause,
extra clause).  Target length is about 1.04x the source length on average;
it is at most 5/3 of it (reached only by short sentences such as "some dogs
slept" -> 3 + 2 tokens); above 10 source tokens the ratio stays below ~1.5.

File formats
============

:func:`read_parallel` reads two line-aligned files, or a single TSV file
(``source<TAB>target`` per line), gzip-compressed or not (detected by the
magic bytes), strict UTF-8, whitespace tokenisation, with optional gold
alignments in Pharaoh format (``0-0 1-2 ...``).  :func:`write_pairs_jsonl` /
:func:`read_pairs_jsonl` store pairs one JSON object per line.  Every problem
with a file raises :class:`CorpusError` naming the file and the 1-based line.
"""

from __future__ import annotations

from ...errors import DataError
import bisect
import gzip
import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..common import read_utf8_lines

__all__ = [
    "Pair",
    "CorpusError",
    "generate_pairs",
    "generate_splits",
    "read_parallel",
    "length_bucket",
    "bucket_labels",
    "write_pairs_jsonl",
    "read_pairs_jsonl",
    "NounPhrase",
    "PrepPhrase",
    "Predicate",
    "Clause",
    "Sentence",
    "realize",
    "SOURCE_VOCAB",
    "TARGET_LEXICON",
    "PLURAL_MARKER",
    "PAST_MARKER",
    "LEXICON_SEED",
]


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class Pair:
    """One sentence pair with optional gold word alignment.

    ``align`` holds ``(src_index, tgt_index)`` links (0-based), sorted by target
    index then source index, or ``None`` when no alignment is known.  ``ref`` is
    the raw (untokenised, not lowercased) target line when the pipeline tokenised
    the corpus itself: detokenised output is scored against it.
    """

    src: tuple[str, ...]
    tgt: tuple[str, ...]
    align: tuple[tuple[int, int], ...] | None = None
    ref: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.src, tuple):
            object.__setattr__(self, "src", tuple(self.src))
        if not isinstance(self.tgt, tuple):
            object.__setattr__(self, "tgt", tuple(self.tgt))
        align = self.align
        if align is not None and not (isinstance(align, tuple) and all(type(a) is tuple for a in align)):
            object.__setattr__(self, "align", tuple((int(i), int(j)) for i, j in align))


class CorpusError(DataError):
    """A corpus file is malformed; the message names the file and the 1-based line."""


# --------------------------------------------------------------------------- vocabulary

NOUNS: tuple[str, ...] = (
    "dog", "cat", "bird", "horse", "farmer", "teacher", "doctor", "king", "queen", "girl",
    "boy", "student", "baker", "pilot", "singer", "writer", "painter", "sailor", "soldier",
    "friend", "neighbor", "monkey", "rabbit", "tiger", "dragon", "robot", "house", "garden",
    "river", "forest", "table", "window", "book", "letter", "song", "car", "boat", "road",
    "mountain", "village",
)  # all with regular plural "-s"
ADJECTIVES: tuple[str, ...] = (
    "big", "small", "new", "young", "red", "green", "blue", "happy", "sad", "tall", "short",
    "quiet", "loud", "brave", "clever", "lazy", "busy", "famous", "gentle", "hungry", "tired",
    "strange", "rich", "poor", "friendly", "dark", "bright", "kind", "wild", "proud",
)
# lemma -> (3rd person singular present, plural present, past)
TRANSITIVE_VERBS: dict[str, tuple[str, str, str]] = {
    "see": ("sees", "see", "saw"), "chase": ("chases", "chase", "chased"),
    "follow": ("follows", "follow", "followed"), "help": ("helps", "help", "helped"),
    "watch": ("watches", "watch", "watched"), "visit": ("visits", "visit", "visited"),
    "find": ("finds", "find", "found"), "like": ("likes", "like", "liked"),
    "love": ("loves", "love", "loved"), "call": ("calls", "call", "called"),
    "paint": ("paints", "paint", "painted"), "carry": ("carries", "carry", "carried"),
    "push": ("pushes", "push", "pushed"), "pull": ("pulls", "pull", "pulled"),
    "remember": ("remembers", "remember", "remembered"), "greet": ("greets", "greet", "greeted"),
    "teach": ("teaches", "teach", "taught"), "build": ("builds", "build", "built"),
    "know": ("knows", "know", "knew"), "catch": ("catches", "catch", "caught"),
}
INTRANSITIVE_VERBS: dict[str, tuple[str, str, str]] = {
    "sleep": ("sleeps", "sleep", "slept"), "run": ("runs", "run", "ran"),
    "sing": ("sings", "sing", "sang"), "dance": ("dances", "dance", "danced"),
    "laugh": ("laughs", "laugh", "laughed"), "smile": ("smiles", "smile", "smiled"),
    "wait": ("waits", "wait", "waited"), "walk": ("walks", "walk", "walked"),
    "swim": ("swims", "swim", "swam"), "jump": ("jumps", "jump", "jumped"),
    "cry": ("cries", "cry", "cried"), "arrive": ("arrives", "arrive", "arrived"),
}
ADVERBS: tuple[str, ...] = (
    "quickly", "slowly", "quietly", "loudly", "happily", "sadly", "carefully", "suddenly",
    "often", "rarely", "always", "never", "yesterday", "today", "again", "together",
)
PREPOSITIONS: tuple[str, ...] = ("in", "on", "near", "behind", "under", "with", "from", "beside")
# determiner -> sampling weight, by number
SINGULAR_DETS: dict[str, float] = {
    "the": 4.0, "a": 2.0, "every": 0.5, "this": 1.0, "my": 0.7, "your": 0.5, "our": 0.5,
}
PLURAL_DETS: dict[str, float] = {
    "the": 4.0, "some": 1.5, "many": 1.0, "these": 1.0, "my": 0.7, "your": 0.5, "our": 0.5,
}
CONJUNCTIONS: tuple[str, ...] = ("and", "but", "while")
RELATIVIZER = "that"
DROPPED_WORD = "the"
PLURAL_MARKER = "ta"
PAST_MARKER = "ka"
LEXICON_SEED = 20240917
MAX_ADJECTIVES = 2


def _lemmas() -> list[str]:
    """All source lemmas that get a target pseudo-word, in a fixed order."""
    dets = [d for d in dict.fromkeys([*SINGULAR_DETS, *PLURAL_DETS]) if d != DROPPED_WORD]
    return [*NOUNS, *ADJECTIVES, *TRANSITIVE_VERBS, *INTRANSITIVE_VERBS, *ADVERBS,
            *PREPOSITIONS, *dets, *CONJUNCTIONS, RELATIVIZER]


def _source_forms() -> dict[str, tuple[str, str]]:
    """Every source word -> (lemma, inflection) with inflection in {'', 'plural', 'past'}."""
    forms: dict[str, tuple[str, str]] = {DROPPED_WORD: (DROPPED_WORD, "")}
    for lemma in _lemmas():
        forms[lemma] = (lemma, "")
    for noun in NOUNS:
        forms[noun + "s"] = (noun, "plural")
    for table in (TRANSITIVE_VERBS, INTRANSITIVE_VERBS):
        for lemma, (sg, pl, past) in table.items():
            forms[sg] = (lemma, "")
            forms[pl] = (lemma, "")
            forms[past] = (lemma, "past")
    return forms


def _pseudo_words(n: int, seed: int, forbidden: set[str]) -> list[str]:
    """``n`` distinct pronounceable CV(C) pseudo-words of 2-3 syllables."""
    rng = random.Random(seed)
    consonants, vowels, codas = "bdfgklmnprstvz", "aeiou", "nrsl"
    words: list[str] = []
    seen = set(forbidden)
    while len(words) < n:
        n_syll = 2 if rng.random() < 0.7 else 3
        word = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(n_syll))
        if rng.random() < 0.3:
            word += rng.choice(codas)
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _build_lexicon() -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """Return (lemma -> target stem, source word -> target tokens)."""
    forms = _source_forms()
    lemmas = _lemmas()
    n_forms = (1 + len(lemmas) + len(NOUNS)
               + sum(len(set(v)) for v in TRANSITIVE_VERBS.values())
               + sum(len(set(v)) for v in INTRANSITIVE_VERBS.values())
               - len(TRANSITIVE_VERBS) - len(INTRANSITIVE_VERBS))
    if len(forms) != n_forms:  # pragma: no cover - guards edits of the word lists
        raise AssertionError("source word lists contain a duplicate word form")
    stems = dict(zip(lemmas, _pseudo_words(len(lemmas), LEXICON_SEED,
                                           set(forms) | {PLURAL_MARKER, PAST_MARKER})))
    lexicon: dict[str, tuple[str, ...]] = {}
    for word, (lemma, inflection) in forms.items():
        if lemma == DROPPED_WORD:
            lexicon[word] = ()
        elif inflection == "plural":
            lexicon[word] = (stems[lemma], PLURAL_MARKER)
        elif inflection == "past":
            lexicon[word] = (stems[lemma], PAST_MARKER)
        else:
            lexicon[word] = (stems[lemma],)
    return stems, lexicon


TARGET_STEMS, TARGET_LEXICON = _build_lexicon()
"""``TARGET_STEMS``: lemma -> pseudo-word; ``TARGET_LEXICON``: source word -> target tokens."""
SOURCE_VOCAB: frozenset[str] = frozenset(TARGET_LEXICON)


# --------------------------------------------------------------------------- grammar trees


@dataclass
class NounPhrase:
    """``Det Adj* Noun [PP] [RelClause]``; ``noun`` is the singular lemma."""

    noun: str
    det: str = "the"
    plural: bool = False
    adjs: list[str] = field(default_factory=list)
    pp: PrepPhrase | None = None
    rel: Predicate | None = None
    depth: int = 0  # 0: clause-level NP (may take PP / relative clause); 1: nested NP


@dataclass
class PrepPhrase:
    """``Prep NP`` (target: ``NP Prep``)."""

    prep: str
    np: NounPhrase


@dataclass
class Predicate:
    """Verb (lemma) with optional object, PP and adverb; ``is_rel`` for relative clauses."""

    verb: str
    past: bool = False
    obj: NounPhrase | None = None
    pp: PrepPhrase | None = None
    adv: str | None = None
    is_rel: bool = False


@dataclass
class Clause:
    """``Subject Predicate``."""

    subj: NounPhrase
    pred: Predicate


@dataclass
class Sentence:
    """Clauses joined by conjunctions (``len(conjs) == len(clauses) - 1``)."""

    clauses: list[Clause]
    conjs: list[str] = field(default_factory=list)


_NOUN_SET = frozenset(NOUNS)
_ADJ_SET = frozenset(ADJECTIVES)


class _Tok:
    """A source word and its target tokens; identity links the two sides."""

    __slots__ = ("word", "targets", "pos")

    def __init__(self, word: str) -> None:
        self.word = word
        self.targets = TARGET_LEXICON[word]
        self.pos = -1  # source position, set once the source side is assembled


_Span = tuple[list[_Tok], list[_Tok]]  # (source order, target order)


def _render_np(np: NounPhrase) -> _Span:
    dets = PLURAL_DETS if np.plural else SINGULAR_DETS
    if np.noun not in _NOUN_SET or np.det not in dets or not _ADJ_SET.issuperset(np.adjs):
        raise ValueError(f"invalid noun phrase: {np}")
    det, noun = _Tok(np.det), _Tok(np.noun + "s" if np.plural else np.noun)
    adjs = [_Tok(a) for a in np.adjs]
    src, tgt = [det, *adjs, noun], [det, noun, *adjs]
    if np.pp is not None:
        pp_src, pp_tgt = _render_pp(np.pp)
        src += pp_src
        tgt += pp_tgt
    if np.rel is not None:
        rel_src, rel_tgt = _render_predicate(np.rel, np.plural)
        src += rel_src
        tgt += rel_tgt
    return src, tgt


def _render_pp(pp: PrepPhrase) -> _Span:
    if pp.prep not in PREPOSITIONS:
        raise ValueError(f"unknown preposition {pp.prep!r}")
    prep = _Tok(pp.prep)
    np_src, np_tgt = _render_np(pp.np)
    return [prep, *np_src], [*np_tgt, prep]


def _verb_form(pred: Predicate, plural_subject: bool) -> str:
    table = TRANSITIVE_VERBS if pred.verb in TRANSITIVE_VERBS else INTRANSITIVE_VERBS
    if pred.verb not in table:
        raise ValueError(f"unknown verb {pred.verb!r}")
    if (pred.verb in TRANSITIVE_VERBS) != (pred.obj is not None):
        raise ValueError(f"verb {pred.verb!r}: object must be given iff the verb is transitive")
    sg, pl, past = table[pred.verb]
    return past if pred.past else (pl if plural_subject else sg)


def _render_predicate(pred: Predicate, plural_subject: bool) -> _Span:
    """Main clause predicate ``V O PP Adv`` -> ``O PP Adv V``; relative ``that V O`` -> ``that O V``."""
    verb = _Tok(_verb_form(pred, plural_subject))
    src: list[_Tok] = [verb]
    tgt: list[_Tok] = []
    if pred.is_rel:
        if pred.pp is not None or pred.adv is not None:
            raise ValueError("relative clauses take no PP and no adverb")
        that = _Tok(RELATIVIZER)
        src.insert(0, that)
        tgt.append(that)
    for part in (pred.obj, pred.pp):
        if part is not None:
            p_src, p_tgt = _render_np(part) if isinstance(part, NounPhrase) else _render_pp(part)
            src += p_src
            tgt += p_tgt
    if pred.adv is not None:
        if pred.adv not in ADVERBS:
            raise ValueError(f"unknown adverb {pred.adv!r}")
        adv = _Tok(pred.adv)
        src.append(adv)
        tgt.append(adv)
    tgt.append(verb)
    return src, tgt


def realize(sentence: Sentence) -> Pair:
    """Render a grammar tree into a source/target pair with its gold alignment.

    Raises ValueError for trees the grammar cannot produce (unknown words,
    determiner/number disagreement, missing object of a transitive verb, ...).
    """
    if not sentence.clauses or len(sentence.conjs) != len(sentence.clauses) - 1:
        raise ValueError("a sentence needs >= 1 clause and len(clauses) - 1 conjunctions")
    src: list[_Tok] = []
    tgt: list[_Tok] = []
    for k, clause in enumerate(sentence.clauses):
        if k:
            if sentence.conjs[k - 1] not in CONJUNCTIONS:
                raise ValueError(f"unknown conjunction {sentence.conjs[k - 1]!r}")
            conj = _Tok(sentence.conjs[k - 1])
            src.append(conj)
            tgt.append(conj)
        s_src, s_tgt = _render_np(clause.subj)
        p_src, p_tgt = _render_predicate(clause.pred, clause.subj.plural)
        src += s_src + p_src
        tgt += s_tgt + p_tgt
    for i, tok in enumerate(src):
        tok.pos = i
    tgt_words: list[str] = []
    links: list[tuple[int, int]] = []
    for tok in tgt:
        for word in tok.targets:
            links.append((tok.pos, len(tgt_words)))
            tgt_words.append(word)
    return Pair(tuple([t.word for t in src]), tuple(tgt_words), tuple(links))


# --------------------------------------------------------------------------- sampling

_P_PLURAL = 0.3
_P_PAST = 0.5
# expansion -> (token cost, sampling weight)
_EXPANSIONS: dict[str, tuple[int, float]] = {
    "adj": (1, 3.0),      # one more adjective on any NP
    "adv": (1, 1.0),      # adverb at the end of a main clause
    "obj": (2, 2.5),      # intransitive -> transitive verb with a `Det N` object
    "rel": (2, 1.0),      # `that V` relative clause on a clause-level NP
    "pp": (3, 1.2),       # `Prep Det N` on a main clause
    "np_pp": (3, 1.0),    # `Prep Det N` on a clause-level NP
    "clause": (4, 0.3),   # `Conj Det N V` extra clause
}


def _pick(rng: random.Random, seq: Sequence):
    """Uniform choice (faster than ``rng.choice``; stable across Python versions)."""
    return seq[int(rng.random() * len(seq))]


class _Weighted:
    """Items with weights, sampled by bisection on the cumulative weights."""

    def __init__(self, weights: dict) -> None:
        self.items = list(weights)
        self.cum = [sum(list(weights.values())[: k + 1]) for k in range(len(weights))]

    def sample(self, rng: random.Random):
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.cum[-1])]


_SINGULAR_DET_SAMPLER = _Weighted(SINGULAR_DETS)
_PLURAL_DET_SAMPLER = _Weighted(PLURAL_DETS)
# expansions affordable with 1, 2, 3 and >= 4 remaining tokens
_EXPANSION_SAMPLERS = {
    budget: _Weighted({op: w for op, (cost, w) in _EXPANSIONS.items() if cost <= budget})
    for budget in (1, 2, 3, 4)
}
_INTRANSITIVE = tuple(INTRANSITIVE_VERBS)
_TRANSITIVE = tuple(TRANSITIVE_VERBS)


class _Grower:
    """Grows a minimal sentence skeleton to an exact source length by random expansions."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.sentence = Sentence([], [])
        self.nps: list[NounPhrase] = []
        self.preds: list[Predicate] = []
        self.length = 0
        self.max_clauses = 6

    # -- constructors (each keeps self.length in sync)
    def _new_np(self, depth: int) -> NounPhrase:
        rng = self.rng
        plural = rng.random() < _P_PLURAL
        det = (_PLURAL_DET_SAMPLER if plural else _SINGULAR_DET_SAMPLER).sample(rng)
        np = NounPhrase(_pick(rng, NOUNS), det, plural, depth=depth)
        self.nps.append(np)
        self.length += 2
        return np

    def _new_predicate(self, is_rel: bool) -> Predicate:
        pred = Predicate(_pick(self.rng, _INTRANSITIVE),
                         past=self.rng.random() < _P_PAST, is_rel=is_rel)
        self.preds.append(pred)
        self.length += 2 if is_rel else 1
        return pred

    def add_clause(self) -> None:
        if self.sentence.clauses:
            self.sentence.conjs.append(_pick(self.rng, CONJUNCTIONS))
            self.length += 1
        self.sentence.clauses.append(Clause(self._new_np(0), self._new_predicate(False)))

    # -- expansions
    def _pool(self, op: str) -> list:
        """The nodes an expansion may apply to."""
        if op in ("adj", "rel", "np_pp"):
            return self.nps
        if op in ("adv", "obj", "pp"):
            return self.preds
        return [None]  # "clause" applies to the sentence

    def _applicable(self, op: str, node) -> bool:
        if op == "adj":
            return len(node.adjs) < MAX_ADJECTIVES
        if op == "adv":
            return not node.is_rel and node.adv is None
        if op == "obj":
            return node.obj is None
        if op == "pp":
            return not node.is_rel and node.pp is None
        if op in ("rel", "np_pp"):
            return node.depth == 0 and (node.rel if op == "rel" else node.pp) is None
        return len(self.sentence.clauses) < self.max_clauses

    def _apply(self, op: str, node) -> None:
        rng = self.rng
        if op == "adj":
            adj = _pick(rng, ADJECTIVES)
            while adj in node.adjs:
                adj = _pick(rng, ADJECTIVES)
            node.adjs.append(adj)
            self.length += 1
        elif op == "adv":
            node.adv = _pick(rng, ADVERBS)
            self.length += 1
        elif op == "obj":
            node.verb = _pick(rng, _TRANSITIVE)
            node.obj = self._new_np(1 if node.is_rel else 0)
        elif op == "rel":
            node.rel = self._new_predicate(True)
        elif op in ("pp", "np_pp"):
            prep = _pick(rng, PREPOSITIONS)
            node.pp = PrepPhrase(prep, self._new_np(1))
            self.length += 1
        else:
            self.add_clause()

    def _step(self, remaining: int) -> bool:
        """Apply one random expansion costing at most ``remaining`` tokens."""
        sampler = _EXPANSION_SAMPLERS[min(remaining, 4)]
        for _ in range(12):  # cheap random trials first
            op = sampler.sample(self.rng)
            node = _pick(self.rng, self._pool(op))
            if self._applicable(op, node):
                self._apply(op, node)
                return True
        options = [(op, node) for op in sampler.items for node in self._pool(op) if self._applicable(op, node)]
        if not options:
            return False
        self._apply(*_pick(self.rng, options))
        return True

    def grow(self, length: int) -> Sentence | None:
        """Return a sentence of exactly ``length`` source tokens, or None if stuck."""
        self.max_clauses = max(6, length // 8)
        n_clauses = round(length / self.rng.uniform(8.0, 16.0))
        for _ in range(min(max(1, n_clauses), (length + 1) // 4)):
            self.add_clause()
        while self.length < length:
            if not self._step(length - self.length):
                return None
        return self.sentence


def _sample_sentence(rng: random.Random, length: int) -> Sentence:
    for _ in range(100):
        sentence = _Grower(rng).grow(length)
        if sentence is not None:
            return sentence
    raise ValueError(f"cannot generate a sentence of {length} tokens")  # pragma: no cover


def _check_lengths(min_len: int, max_len: int) -> None:
    if min_len < 3:
        raise ValueError(f"min_len must be >= 3 (the shortest sentence is 'Det N V'), got {min_len}")
    if max_len < min_len:
        raise ValueError(f"max_len ({max_len}) must be >= min_len ({min_len})")
    if max_len > 300:
        raise ValueError(f"max_len must be <= 300, got {max_len}")


def _generate(rng: random.Random, n: int, min_len: int, max_len: int,
              exclude: set[tuple[str, ...]] | None) -> list[Pair]:
    """``n`` pairs with source lengths cycled evenly over [min_len, max_len].

    With ``exclude`` given, sources already in it are re-drawn (same length)
    and every accepted source is added to it.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    _check_lengths(min_len, max_len)
    span = max_len - min_len + 1
    lengths = [min_len + i % span for i in range(n)]
    rng.shuffle(lengths)
    pairs = []
    for length in lengths:
        for _ in range(1000):
            pair = realize(_sample_sentence(rng, length))
            if exclude is None or pair.src not in exclude:
                break
        else:
            raise ValueError(f"ran out of distinct sentences of length {length}; "
                             "ask for fewer pairs or a wider length range")
        if exclude is not None:
            exclude.add(pair.src)
        pairs.append(pair)
    return pairs


def generate_pairs(n: int, seed: int, *, min_len: int = 3, max_len: int = 50) -> list[Pair]:
    """Generate ``n`` synthetic pairs (see the module docstring) with gold alignments.

    Deterministic for a seed; source lengths are spread evenly over
    ``[min_len, max_len]``.  Sources may repeat (use :func:`generate_splits`
    for disjoint, duplicate-free splits).
    """
    return _generate(random.Random(int(seed)), n, min_len, max_len, exclude=None)


def generate_splits(sizes: dict[str, int], seed: int, *, min_len: int = 3,
                    max_len: int = 50) -> dict[str, list[Pair]]:
    """Generate named splits, e.g. ``{'train': 10000, 'valid': 500, 'test': 1000}``.

    Each split draws from its own RNG stream (derived from ``seed`` and the
    split name), so a split does not change when another split's size does.
    Source sentences are unique across *and* within splits: splits other than
    ``'train'`` are generated first (in the given order), then ``'train'``
    avoids all of them.  Lengths are uniform over ``[min_len, max_len]`` in
    every split, so every length bucket of the evaluation splits is populated.
    """
    order = [name for name in sizes if name != "train"] + (["train"] if "train" in sizes else [])
    seen: set[tuple[str, ...]] = set()
    out: dict[str, list[Pair]] = {}
    for name in order:
        rng = random.Random(f"attnbench.translation:{int(seed)}:{name}")
        out[name] = _generate(rng, int(sizes[name]), min_len, max_len, exclude=seen)
    return {name: out[name] for name in sizes}


# --------------------------------------------------------------------------- length buckets


def _check_edges(edges: Sequence[int]) -> None:
    if not edges or any(int(e) < 1 for e in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"bucket edges must be positive and strictly increasing, got {tuple(edges)}")


def bucket_labels(edges: Sequence[int] = (10, 20, 30, 40)) -> list[str]:
    """All labels :func:`length_bucket` can return, shortest bucket first."""
    _check_edges(edges)
    lows = [1, *(e + 1 for e in edges)]
    return [f"{lo}-{hi}" for lo, hi in zip(lows, edges)] + [f"{edges[-1] + 1}+"]


def length_bucket(n_tokens: int, edges: Sequence[int] = (10, 20, 30, 40)) -> str:
    """Label of the length bucket of ``n_tokens``: '1-10', '11-20', ..., '41+'.

    Bucket ``k`` holds lengths in ``(edges[k-1], edges[k]]``; 0 falls into the first bucket.
    """
    if n_tokens < 0:
        raise ValueError(f"n_tokens must be >= 0, got {n_tokens}")
    labels = bucket_labels(edges)
    for label, edge in zip(labels, edges):
        if n_tokens <= edge:
            return label
    return labels[-1]


# --------------------------------------------------------------------------- file reading

_LINK = re.compile(r"([0-9]+)-([0-9]+)")


def _read_lines(path: Path, *, drop_trailing_blank: bool = True) -> list[str]:
    """Decoded lines of a (possibly gzipped) UTF-8 file, without line terminators.

    The final newline never yields an extra line; with ``drop_trailing_blank``
    all whitespace-only lines at the end of the file are dropped too.
    """
    lines = read_utf8_lines(path, CorpusError)
    if drop_trailing_blank:
        while lines and not lines[-1].strip():
            lines.pop()
    return lines


def _lines(n: int) -> str:
    return f"{n} line" if n == 1 else f"{n} lines"


def _nonempty_lines(path: Path) -> list[str]:
    lines = _read_lines(path)
    if not lines:
        raise CorpusError(f"{path}: empty file (no non-blank lines)")
    return lines


def _whitespace(lowercase: bool) -> Callable[[str], Sequence[str]]:
    return (lambda text: text.lower().split()) if lowercase else str.split


def _tokens(text: str, path: Path, lineno: int, side: str,
            tokenize: Callable[[str], Sequence[str]]) -> tuple[str, ...]:
    tokens = tokenize(text)
    if not tokens:
        raise CorpusError(f"{path}, line {lineno}: empty {side} side")
    return tuple(tokens)


def _raw_sides(source: Path, target: Path | None) -> list[tuple[int, str, str]]:
    """(1-based line, source text, target text) per line, from two files or one TSV file."""
    src_lines = _nonempty_lines(source)
    if target is None:
        sides = []
        for lineno, line in enumerate(src_lines, 1):
            n_tabs = line.count("\t")
            if n_tabs != 1:
                raise CorpusError(f"{source}, line {lineno}: expected exactly one tab between "
                                  f"source and target, found {n_tabs}")
            src_text, tgt_text = line.split("\t")
            sides.append((lineno, src_text, tgt_text))
        return sides
    tgt_lines = _nonempty_lines(target)
    if len(src_lines) != len(tgt_lines):
        raise CorpusError(f"line count mismatch: {source} has {_lines(len(src_lines))} but {target} "
                          f"has {_lines(len(tgt_lines))} (first unmatched line: "
                          f"line {min(len(src_lines), len(tgt_lines)) + 1})")
    return [(lineno, s, t) for lineno, (s, t) in enumerate(zip(src_lines, tgt_lines), 1)]


def _parse_alignment(line: str, path: Path, lineno: int, src_len: int,
                     tgt_len: int) -> tuple[tuple[int, int], ...]:
    """Parse one Pharaoh line ('0-0 1-2 ...') and check the indices against the sentence."""
    links = set()
    for item in line.split():
        match = _LINK.fullmatch(item)
        if match is None:
            raise CorpusError(f"{path}, line {lineno}: malformed alignment link {item!r} "
                              "(expected 'i-j' with 0-based source index i and target index j)")
        i, j = int(match.group(1)), int(match.group(2))
        if i >= src_len:
            raise CorpusError(f"{path}, line {lineno}: link {item!r}: source index {i} out of range "
                              f"for a source sentence of length {src_len}")
        if j >= tgt_len:
            raise CorpusError(f"{path}, line {lineno}: link {item!r}: target index {j} out of range "
                              f"for a target sentence of length {tgt_len}")
        links.add((i, j))
    return tuple(sorted(links, key=lambda link: (link[1], link[0])))


def _read_alignments(path: Path, sides: list, source: Path) -> list[tuple[tuple[int, int], ...]]:
    lines = _read_lines(path, drop_trailing_blank=False)
    while len(lines) > len(sides) and not lines[-1].strip():  # tolerate extra blank lines at EOF
        lines.pop()
    if len(lines) != len(sides):
        raise CorpusError(f"line count mismatch: alignments {path} has {_lines(len(lines))} but "
                          f"{source} has {len(sides)} sentence pairs (first unmatched line: "
                          f"line {min(len(lines), len(sides)) + 1})")
    return [_parse_alignment(line, path, lineno, len(src), len(tgt))
            for lineno, (line, (src, tgt)) in enumerate(zip(lines, sides), 1)]


def read_parallel(source: str | Path, target: str | Path | None = None, *,
                  alignments: str | Path | None = None, lowercase: bool = False,
                  max_len: int | None = None,
                  tokenizers: tuple[Callable[[str], Sequence[str]], Callable[[str], Sequence[str]]] | None = None,
                  keep_raw: bool = False) -> list[Pair]:
    """Read a parallel corpus into :class:`Pair` objects.

    ``source`` and ``target`` are line-aligned files; with ``target=None``,
    ``source`` is a TSV file of ``source<TAB>target`` lines.  Files may be
    gzip-compressed (detected by magic bytes, whatever the suffix); text must
    be valid UTF-8; tokens are whitespace-separated.  ``alignments`` is an
    optional line-aligned Pharaoh file (``i-j`` source-target links, as
    written by fast_align / GIZA++); a blank line means "no links".
    ``lowercase`` lowercases all tokens.  ``tokenizers`` (source, target)
    replace the whitespace split (and ``lowercase``): each maps a raw line to its
    tokens (see ``preprocess.tokenizer``).  ``keep_raw`` keeps each raw target
    line, stripped, as ``Pair.ref``.  ``max_len`` drops (silently, after
    validating them) pairs whose source has more than ``max_len`` tokens; the
    pipeline's ``prepare`` does not use it (it drops long *training* pairs only,
    and counts them).

    Raises CorpusError (file and 1-based line in the message) on: empty file,
    line-count mismatch, invalid UTF-8, TSV line without exactly one tab,
    empty source or target side, and alignment lines that are malformed or
    index outside their sentence.  Line numbers count from the start of the
    (decompressed) file.
    """
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    source = Path(source)
    tgt_path = source if target is None else Path(target)
    tok_src, tok_tgt = tokenizers or (_whitespace(lowercase),) * 2
    raw = _raw_sides(source, None if target is None else Path(target))
    sides = [(_tokens(s, source, lineno, "source", tok_src), _tokens(t, tgt_path, lineno, "target", tok_tgt))
             for lineno, s, t in raw]
    if alignments is not None:
        aligns: list = _read_alignments(Path(alignments), sides, source)
    else:
        aligns = [None] * len(sides)
    refs = [t.strip() for _, _, t in raw] if keep_raw else [None] * len(sides)
    return [Pair(src, tgt, align, ref) for (src, tgt), align, ref in zip(sides, aligns, refs)
            if max_len is None or len(src) <= max_len]


# --------------------------------------------------------------------------- JSON lines


def write_pairs_jsonl(pairs: Iterable[Pair], path: str | Path) -> None:
    """Write one JSON object per line: ``{"src": [...], "tgt": [...], "align": [[i, j], ...] | null}``,
    plus ``"ref": "raw target line"`` for pairs that carry one.

    A ``.gz`` suffix writes gzip; parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8", newline="\n") as handle:
        for pair in pairs:
            record = {"src": list(pair.src), "tgt": list(pair.tgt),
                      "align": None if pair.align is None else [list(link) for link in pair.align]}
            if pair.ref is not None:  # only corpora the pipeline tokenised carry one
                record["ref"] = pair.ref
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _token_list(record: dict, key: str, path: Path, lineno: int) -> tuple[str, ...]:
    value = record.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise CorpusError(f"{path}, line {lineno}: {key!r} must be a non-empty list of strings")
    return tuple(value)


def _record_to_pair(record: object, path: Path, lineno: int) -> Pair:
    if not isinstance(record, dict):
        raise CorpusError(f"{path}, line {lineno}: expected a JSON object")
    src = _token_list(record, "src", path, lineno)
    tgt = _token_list(record, "tgt", path, lineno)
    ref = record.get("ref")
    if ref is not None and not isinstance(ref, str):
        raise CorpusError(f"{path}, line {lineno}: 'ref' must be a string (the raw target line) or absent")
    raw = record.get("align")
    if raw is None:
        return Pair(src, tgt, None, ref)
    if not isinstance(raw, list):
        raise CorpusError(f"{path}, line {lineno}: 'align' must be a list of [i, j] or null")
    links = []
    n_src, n_tgt = len(src), len(tgt)
    for link in raw:
        # the common case first, cheaply (every job reads every link at start-up); `type(x) is int` excludes bool
        if type(link) is list and len(link) == 2:
            i, j = link
            if type(i) is int and type(j) is int and 0 <= i < n_src and 0 <= j < n_tgt:
                links.append((i, j))
                continue
        if (not isinstance(link, list) or len(link) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in link)):
            raise CorpusError(f"{path}, line {lineno}: malformed alignment link {link!r}")
        if link[0] >= len(src) or link[1] >= len(tgt):
            raise CorpusError(f"{path}, line {lineno}: link {link!r} out of range for sentence "
                              f"lengths {len(src)} (source) and {len(tgt)} (target)")
        links.append((link[0], link[1]))
    return Pair(src, tgt, tuple(links), ref)


def read_pairs_jsonl(path: str | Path) -> list[Pair]:
    """Read pairs written by :func:`write_pairs_jsonl` (gzip detected; blank lines skipped)."""
    path = Path(path)
    pairs = []
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}, line {lineno}: invalid JSON ({exc.msg})") from None
        pairs.append(_record_to_pair(record, path, lineno))
    return pairs
