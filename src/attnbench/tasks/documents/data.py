"""Documents for the hierarchical-attention benchmark: a synthetic review generator and a JSONL reader.

The synthetic reviews
=====================

A document is a short review of one item, several sentences long (the scale says how many). Its
label (one of five verdicts, :data:`CLASSES`) is decided by **one label-bearing sentence**: the
reviewer's own verdict now, a first-person sentence ("i found the soup really dull", "in short ,
my own rating of the phone is weak", "the curry is superb , i think") with one or two **label
words** of the verdict's class (:data:`LABEL_WORDS`, 16 per class, drawn Zipf-like so some are
rare). The generator records the index of that sentence (``gold_sentence``) and the positions of
its label words (``gold_words``).

Every other sentence is a distractor, and the distractors share the vocabulary of the verdict:

* *opinion distractors* (60 % of them) carry label words too, of a class drawn uniformly from all
  five (so the true class as often as any other), in frames built from the same words as the
  verdicts and often differing from one only by a word or two: someone else's judgement ("my
  friend found the soup really dreadful", "the curry is superb , my sister thinks"), the
  reviewer's past opinion or expectation ("in the past i would call the soup superb", "i found
  the soup dull at first", "i expected the soup to be brilliant"), hearsay ("i was told ...");
* *neutral distractors* tell the visit with the same nouns and function words ("i ordered the
  soup with a side of rice").

Any sentence may start with a discourse opener ("overall ,", "honestly ,", "in short ,") and carry a
filler word ("um", "well") at a random place. So counting label words does not find the label
(under half of the documents, see the manifest's ``label_word_majority_accuracy``); a model has
to find the one sentence that is the reviewer's present verdict, from a few cue words that may
sit before or after the label word, and read its label words. Nothing else marks the
label-bearing sentence: the same nouns and openers, about the same length, and its position is
uniform over the document.

Real data: JSON lines
=====================

One JSON object per line with ``text`` (a string) and ``label`` (a string or an integer; integers
become their decimal string), and optionally ``gold_sentence`` (0-based index of the label-bearing
sentence after splitting, enables the sentence-attention hit rate). Blank lines are skipped; gzip
is detected. Sentences are split by one simple rule, :func:`split_sentences`: a sentence ends at a
line break, or at a run of ``.``, ``!`` or ``?`` that is followed by whitespace or the end of the
text; empty sentences are dropped. Words are :func:`tokenize`'s: runs of letters, digits and
underscores (with inner apostrophes kept: ``don't``), and each other non-space character as its own
token, so ``"great, really."`` gives ``great , really .`` (lowercased when asked).
"""
from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ...errors import DataError
from ..common import read_utf8_lines

CLASSES: tuple[str, ...] = ("awful", "poor", "average", "good", "excellent")
LABEL_WORDS: dict[str, tuple[str, ...]] = {   # most frequent first (Zipf: the k-th is drawn with weight 1/k)
    "awful": ("terrible", "awful", "dreadful", "appalling", "horrid", "abysmal", "atrocious", "dire", "ghastly",
              "hideous", "vile", "woeful", "wretched", "lousy", "horrendous", "pathetic"),
    "poor": ("disappointing", "poor", "mediocre", "weak", "dull", "bland", "shoddy", "lacklustre", "underwhelming",
             "flat", "tired", "sloppy", "subpar", "tepid", "forgettable", "clumsy"),
    "average": ("average", "ordinary", "okay", "decent", "passable", "adequate", "fair", "unremarkable", "middling",
                "acceptable", "standard", "typical", "reasonable", "tolerable", "modest", "serviceable"),
    "good": ("good", "nice", "pleasant", "solid", "enjoyable", "lovely", "satisfying", "likeable", "charming",
             "fine", "tasty", "fun", "appealing", "agreeable", "sound", "worthwhile"),
    "excellent": ("excellent", "superb", "brilliant", "outstanding", "perfect", "wonderful", "fantastic", "flawless",
                  "exceptional", "stunning", "magnificent", "sublime", "terrific", "marvellous", "phenomenal",
                  "exquisite"),
}
ITEMS = ("soup", "pasta", "curry", "burger", "salad", "dessert", "coffee", "service", "room", "hotel", "film",
         "album", "concert", "novel", "phone", "laptop", "camera", "game", "tour", "show", "pizza", "bakery",
         "museum", "spa", "bike", "tablet", "musical", "podcast", "sushi", "brunch")
ADVERBS = ("really", "truly", "quite", "rather", "very", "pretty", "simply", "fairly")
PLACES = ("window", "door", "bar", "kitchen", "stage", "entrance", "counter", "garden", "lobby", "station")
SIDES = ("rice", "bread", "fries", "salad", "beans", "chips", "soup", "tea")
DAYS = ("monday", "tuesday", "friday", "saturday", "sunday", "weekend", "holiday", "birthday")
TIMES = ("noon", "six", "seven", "eight", "nine", "midnight")
NUMBERS = ("two", "three", "five", "ten", "twenty", "forty")
OTHERS = ("my friend", "my sister", "my brother", "the waiter", "the manager", "a critic", "my neighbour",
          "our guide", "a colleague", "my partner", "the staff", "my kids")
OPENERS = ("overall ,", "all in all ,", "in the end ,", "to sum up ,", "in short ,", "honestly ,", "frankly ,",
           "well ,", "so ,", "anyway ,")
PAST = ("in the past", "last year", "before the visit", "at first", "years ago", "back then")
FILLERS = ("well", "um", "like", "anyway", "though", "still", "again", "just")

# Slots: {w}/{w2} label words (of the document's class in the verdict, of a random class in an
# opinion distractor); {item}, {adv}, {other}, {past}, ...: fillers every sentence kind shares.
# Verdicts: the reviewer's own judgement now (first person, no hearsay, no past, no expectation).
VERDICTS: tuple[str, ...] = (
    "i found the {item} {adv} {w}",
    "i would call the {item} {w}",
    "i think the {item} is {adv} {w}",
    "my verdict on the {item} : {w}",
    "for me the {item} was {w} and {w2}",
    "i rate the {item} as {w}",
    "i would say the {item} is {w} , {adv} {w2}",
    "my own rating of the {item} is {w}",
    "the {item} is {w} , i think",
    "having tried it myself , the {item} was {w}",
)
# Opinion distractors: someone else's judgement, the reviewer's past one or expectation, hearsay.
OPINIONS: tuple[str, ...] = (
    "{other} found the {item} {adv} {w}",
    "{other} would call the {item} {w}",
    "{other} thinks the {item} is {adv} {w}",
    "{other} gave the {item} a {w} rating",
    "for {other} the {item} was {w} and {w2}",
    "{past} i found the {item} {adv} {w}",
    "{past} i would call the {item} {w}",
    "{past} i thought the {item} was {w}",
    "i expected the {item} to be {w}",
    "i was told the {item} is {adv} {w}",
    "the reviews say the {item} is {w}",
    "people kept saying the {item} would be {w}",
    "the {item} next door looked {w}",
    "{other} would say the {item} is {w} , {adv} {w2}",
    "{past} my rating of the {item} was {w}",
    "i found the {item} {adv} {w} at first",
    "i found the {item} {w} {past}",
    "the {item} is {w} , {other} thinks",
    "my rating of the {item} was {w} {past}",
    "i would call the {item} {w} , says {other}",
)
NEUTRALS: tuple[str, ...] = (
    "we arrived at {time} and sat near the {place}",
    "i ordered the {item} with a side of {side}",
    "the {item} took about {num} minutes to arrive",
    "{other} and i came here on a {day}",
    "there was a long queue near the {place}",
    "i paid {num} dollars for the {item}",
    "we booked the {item} a week before the {day}",
    "the {item} was next to the {place}",
    "{other} picked the {item} for me",
    "i came back on {day} with {other}",
    "{past} i tried the {item} with {other}",
    "i think we stayed about {num} hours",
)
LABEL_SLOTS = ("w", "w2")
_POOLS = {"item": ITEMS, "adv": ADVERBS, "place": PLACES, "side": SIDES, "day": DAYS, "time": TIMES,
          "num": NUMBERS, "other": OTHERS, "past": PAST}


class DocumentError(DataError):
    """A documents file is malformed; the message names the file and the 1-based line."""


@dataclass(frozen=True)
class Document:
    """A tokenised document: sentences of words, its label and, when known, its gold annotation."""

    sentences: tuple[tuple[str, ...], ...]
    label: str
    gold_sentence: int | None = None           # index of the label-bearing sentence
    gold_words: tuple[int, ...] | None = None  # positions of the deciding words in that sentence

    @property
    def n_words(self) -> int:
        return sum(len(s) for s in self.sentences)

    def text(self) -> str:
        return " . ".join(" ".join(s) for s in self.sentences) + " ."

    def to_record(self) -> dict:
        return {"sentences": [list(s) for s in self.sentences], "label": self.label,
                "gold_sentence": self.gold_sentence,
                "gold_words": None if self.gold_words is None else list(self.gold_words)}


# --------------------------------------------------------------------------- generator


def _fill(template: str, rng: random.Random, label_class: str | None) -> tuple[list[str], list[int]]:
    """Tokens of one template with its slots filled, and the positions of its label words."""
    tokens: list[str] = []
    gold: list[int] = []
    words = LABEL_WORDS[label_class] if label_class else ()
    first = None
    for part in template.split():
        if part.startswith("{") and part.endswith("}"):
            slot = part[1:-1]
            if slot in LABEL_SLOTS:
                choices = [w for w in words if w != first]
                word = rng.choices(choices, weights=[1.0 / (k + 1) for k in range(len(choices))])[0]
                first = first or word
                gold.append(len(tokens))
                tokens.append(word)
            else:
                tokens.extend(rng.choice(_POOLS[slot]).split())
        else:
            tokens.append(part)
    return tokens, gold


def _decorate(tokens: list[str], gold: list[int], rng: random.Random, opener: float, filler: float) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Maybe an opener in front ("overall ,", "honestly ,") and a filler word ("um", "well") inside."""
    if rng.random() < opener:
        head = rng.choice(OPENERS).split()
        tokens, gold = head + tokens, [g + len(head) for g in gold]
    if rng.random() < filler and len(tokens) > 2:
        at = rng.randrange(1, len(tokens))
        tokens = tokens[:at] + [rng.choice(FILLERS)] + tokens[at:]
        gold = [g + (g >= at) for g in gold]
    return tuple(tokens), tuple(gold)


def generate_document(rng: random.Random, min_sentences: int, max_sentences: int, *,
                      opinion_share: float = 0.6) -> Document:
    """One synthetic review (see the module docstring); the class is drawn uniformly, the verdict's
    position uniformly, each distractor is an opinion with probability `opinion_share`."""
    if not 2 <= min_sentences <= max_sentences:
        raise ValueError(f"need 2 <= min_sentences <= max_sentences, got {min_sentences}, {max_sentences}")
    label = rng.choice(CLASSES)
    n = rng.randint(min_sentences, max_sentences)
    gold_index = rng.randrange(n)
    sentences: list[tuple[str, ...]] = []
    gold_words: tuple[int, ...] = ()
    for i in range(n):
        if i == gold_index:
            tokens, gold = _fill(rng.choice(VERDICTS), rng, label)
            sentence, gold_words = _decorate(tokens, gold, rng, opener=0.5, filler=0.3)
        elif rng.random() < opinion_share:
            tokens, gold = _fill(rng.choice(OPINIONS), rng, rng.choice(CLASSES))
            sentence, _ = _decorate(tokens, gold, rng, opener=0.3, filler=0.3)
        else:
            tokens, gold = _fill(rng.choice(NEUTRALS), rng, None)
            sentence, _ = _decorate(tokens, gold, rng, opener=0.2, filler=0.3)
        sentences.append(sentence)
    return Document(tuple(sentences), label, gold_index, gold_words)


def generate_documents(n: int, seed: int | str, min_sentences: int, max_sentences: int) -> list[Document]:
    rng = random.Random(seed)
    return [generate_document(rng, min_sentences, max_sentences) for _ in range(int(n))]


def generate_splits(sizes: dict[str, int], seed: int, min_sentences: int, max_sentences: int) -> dict[str, list[Document]]:
    """Named splits, each from its own RNG stream (a split does not change when another's size does);
    documents of the evaluation splits never appear in train."""
    out: dict[str, list[Document]] = {}
    seen: set[tuple] = set()
    for name in [s for s in sizes if s != "train"] + (["train"] if "train" in sizes else []):
        rng = random.Random(f"attnbench.documents:{int(seed)}:{name}")
        docs = []
        while len(docs) < int(sizes[name]):
            doc = generate_document(rng, min_sentences, max_sentences)
            if doc.sentences in seen:
                continue
            seen.add(doc.sentences)
            docs.append(doc)
        out[name] = docs
    return {name: out[name] for name in sizes}


def label_word_counts(doc: Document) -> dict[str, int]:
    """How often each class's label words occur in `doc` (the bag-of-words view of a document)."""
    lookup = {w: c for c, words in LABEL_WORDS.items() for w in words}
    counts = {c: 0 for c in CLASSES}
    for sentence in doc.sentences:
        for token in sentence:
            if token in lookup:
                counts[lookup[token]] += 1
    return counts


# --------------------------------------------------------------------------- splitting rule

_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]", re.UNICODE)
_WORD = re.compile(r"\w")


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`: split at line breaks and after a run of ``.``/``!``/``?`` that is followed by
    whitespace or the end of the text (the punctuation stays with its sentence); blank ones dropped."""
    out = []
    for line in text.splitlines():
        start = 0
        for match in _SENTENCE_END.finditer(line):
            out.append(line[start:match.end()])
            start = match.end()
        out.append(line[start:])
    return [s.strip() for s in out if s.strip()]


def tokenize(sentence: str, lowercase: bool = False) -> tuple[str, ...]:
    """Words (letters, digits, underscores, inner apostrophes) and single punctuation characters."""
    return tuple(_TOKEN.findall(sentence.lower() if lowercase else sentence))


def document_from_text(text: str, label: str, *, lowercase: bool = False, gold_sentence: int | None = None) -> Document:
    sentences = tuple(t for t in (tokenize(s, lowercase) for s in split_sentences(text)) if t)
    return Document(sentences, label, gold_sentence, None)


# --------------------------------------------------------------------------- reading files

def _read_lines(path: Path) -> list[str]:
    """Decoded lines of a (possibly gzipped) UTF-8 file; an unreadable file or undecodable line is named."""
    try:
        return read_utf8_lines(path, DocumentError)
    except FileNotFoundError:
        raise DocumentError(f"{path}: file not found") from None
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read ({exc.strerror})") from None


def _label(value: object, path: Path, lineno: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DocumentError(f"{path}, line {lineno}: 'label' must be a string or an integer, got "
                            f"{type(value).__name__} {json.dumps(value)[:40]}")
    label = str(value).strip()
    if not label:
        raise DocumentError(f"{path}, line {lineno}: 'label' is empty")
    return label


def read_documents_jsonl(path: str | Path, *, lowercase: bool = False) -> list[Document]:
    """Documents of a JSON-lines file with ``text`` and ``label`` (see the module docstring)."""
    path = Path(path)
    docs = []
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DocumentError(f"{path}, line {lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise DocumentError(f"{path}, line {lineno}: expected a JSON object with 'text' and 'label', "
                                f"got {type(record).__name__}")
        missing = [k for k in ("text", "label") if k not in record]
        if missing:
            raise DocumentError(f"{path}, line {lineno}: missing key {missing[0]!r} (each line needs 'text' and 'label')")
        text = record["text"]
        if not isinstance(text, str):
            raise DocumentError(f"{path}, line {lineno}: 'text' must be a string, got {type(text).__name__}")
        label = _label(record["label"], path, lineno)
        doc = document_from_text(text, label, lowercase=lowercase)
        if not any(_WORD.match(t) for sentence in doc.sentences for t in sentence):
            raise DocumentError(f"{path}, line {lineno}: empty text (no word, only blanks or punctuation)")
        gold = record.get("gold_sentence")
        if gold is not None:
            if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(doc.sentences):
                raise DocumentError(f"{path}, line {lineno}: 'gold_sentence' must be an integer in 0..{len(doc.sentences) - 1} "
                                    f"(the text splits into {len(doc.sentences)} sentences), got {json.dumps(gold)}")
            doc = Document(doc.sentences, label, gold, None)
        docs.append(doc)
    if not docs:
        raise DocumentError(f"{path}: empty file (no JSON line)")
    return docs


def truncate(doc: Document, max_sentences: int, max_words: int) -> Document:
    """The first `max_sentences` sentences and the first `max_words` words of each; gold annotation kept
    where it survives (a gold sentence cut off becomes unknown)."""
    sentences = tuple(s[:max_words] for s in doc.sentences[:max_sentences])
    gold = doc.gold_sentence if doc.gold_sentence is not None and doc.gold_sentence < len(sentences) else None
    words = None
    if gold is not None and doc.gold_words is not None:
        words = tuple(i for i in doc.gold_words if i < max_words)
    return Document(sentences, doc.label, gold, words)


# --------------------------------------------------------------------------- prepared splits


def to_jsonl(docs: Iterable[Document]) -> str:
    return "".join(json.dumps(d.to_record(), ensure_ascii=False) + "\n" for d in docs)


def read_prepared(path: str | Path) -> list[Document]:
    """Documents of a prepared split (written by `prepare`; one record per line)."""
    path = Path(path)
    docs = []
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            words = r.get("gold_words")
            docs.append(Document(tuple(tuple(s) for s in r["sentences"]), str(r["label"]), r.get("gold_sentence"),
                                 None if words is None else tuple(words)))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DocumentError(f"{path}, line {lineno}: not a prepared document ({exc}); run `attnbench prepare` again") from None
    return docs


def stratified_split(docs: Sequence[Document], n_out: int, seed: int, what: str) -> tuple[list[Document], list[Document]]:
    """(rest, held out): `n_out` documents held out by a seeded split that keeps each label's share
    (scikit-learn); labels with a single document stay in `rest`."""
    from sklearn.model_selection import train_test_split

    if n_out <= 0:
        return list(docs), []
    labels = [d.label for d in docs]
    counts = Counter(labels)
    single = [i for i in range(len(docs)) if counts[labels[i]] < 2]
    multi = [i for i in range(len(docs)) if counts[labels[i]] >= 2]
    n_labels = len({labels[i] for i in multi})
    if len(multi) - n_out < n_labels or n_out < n_labels:
        raise DocumentError(f"cannot carve a {what} split of {n_out} documents out of {len(docs)} training documents "
                            f"with {len(counts)} labels (each label needs a document on both sides); give a {what} "
                            "file, more documents or another split fraction")
    keep, held = train_test_split(multi, test_size=n_out, random_state=seed, stratify=[labels[i] for i in multi])
    return [docs[i] for i in sorted(keep + single)], [docs[i] for i in sorted(held)]
