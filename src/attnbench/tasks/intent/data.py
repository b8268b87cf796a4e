r"""The synthetic chatbot-intent corpus: short user utterances whose label is carried by a few
keyword tokens, which the generator records (gold keywords).

Intents
=======

24 intents in four domains (banking, travel, assistant, food). Most intents are an *action* and an
*object*, and both vocabularies are shared between intents: ``book`` a ``flight`` / ``hotel`` /
``table``, ``cancel`` a ``flight`` / ``alarm`` / ``order``, ``show`` the ``balance`` /
``transactions``. No (action, object) pair belongs to two intents (checked on import), so an
utterance's action keyword and object keyword together decide its label; either alone does not.
Four intents are decided by one keyword (``weather``, ``recipe``, ``calories``, lost/stolen card).

An utterance
============

``[greeting] [chit-chat clause] [confuser] <request pattern with keywords and a slot phrase>
[confuser] [closing]``, with filler words (``um``, ``like``, ``you know`` ...) inserted at random
places and typos (a dropped, doubled, swapped or replaced letter) in words of four letters or more.
Slot phrases (``to paris``, ``for two people``, ``tomorrow`` ...) come from the intent's domain, with
some shared across domains, so they hint at the domain but not at the intent. Only the action and
object (or the single keyword) tokens are gold keywords; a typo does not change which positions
they are.

A share ``confuser_rate`` of the utterances also names *another* intent, preferably one sharing a
keyword with the true one, in a clause that is not the request: negated or dismissed before it
(``i do not want to cancel the flight , book a hotel``, ``not the alarm , ...``) or as context
after it (``book a hotel for my flight``, ``... but not the delivery``). A bag of words then holds
two complete keyword pairs; word order and the scope of ``not`` / ``for my`` decide. The
confuser's keyword positions are recorded too (``distractors``), never as gold keywords.

Lengths: ``min_len <= len <= max_len`` tokens; the number of fillers is drawn so that lengths spread
over that range (short commands to rambling requests), which dilutes the keywords among
uninformative tokens.

Everything is drawn from one ``random.Random(seed)``: the same seed gives the same corpus.

Real data (the readers below): a CLINC150-shaped JSON file, or CSV: one file, or one file per split.

JSON (CLINC150's ``data_full.json`` shape)::

    {"train": [["what is my balance", "balance"], ...], "val": [...], "test": [...]}

Other top-level keys (CLINC150's ``oos_train`` / ``oos_val`` / ``oos_test`` ...) are ignored.

CSV: a header row with a text and a label column, named ``text`` and ``label`` unless the
``text_column`` / ``label_column`` options say otherwise (BANKING77: ``text,category``); names match
case-insensitively, in any order, other columns are ignored. One file (:func:`read_csv`) may have a
``split`` column with ``train`` / ``val`` / ``test`` (``valid`` and ``validation`` are accepted for
``val``); without it the rows are split by a seeded stratified split (scikit-learn's
``train_test_split``), so every label keeps its share in each split. Or one file per split
(:func:`read_csv_files`: ``train`` and ``test``, ``valid`` optional): a missing valid (or test) split
is carved from the training file, seeded and stratified, ``val_fraction`` (``test_fraction``) of it.

Text is lower-cased and tokenised into words and single punctuation marks
(``[\w']+|[^\w\s]``). Every problem raises :class:`IntentDataError` naming the file and the
entry (JSON: ``val[12]``, 0-based like the file's list) or the line (CSV, 1-based, header = line 1):
invalid UTF-8 or JSON, a missing split key or column, an entry that is not ``[text, label]``, an
empty text or label, a label in val/test that train does not have (named with its own file and
line), a label with too few rows to split. Nothing is written when reading fails.
"""
from __future__ import annotations

import csv
import io
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ...errors import DataError, not_utf8

__all__ = ["Utterance", "INTENTS", "DOMAINS", "LABELS", "generate", "generate_splits", "generate_unlabelled",
           "add_typo", "write_jsonl", "read_jsonl", "label_of"]


@dataclass(frozen=True)
class Utterance:
    """Tokens, the intent label and the 0-based positions of its gold keyword tokens (None: unknown)."""

    tokens: tuple[str, ...]
    label: str
    keywords: tuple[int, ...] | None = None
    typo_in_keyword: bool = False
    distractors: tuple[int, ...] = ()  # positions of another intent's keywords (a confuser clause)
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


# --------------------------------------------------------------------------- the intents

VERB = "verb"    # "{A} {det} {O}": an action keyword and an object keyword
STATE = "state"  # "my {O} is {A}": an object and a state keyword (lost card)
SINGLE = "single"  # one keyword decides

# intent: (domain, kind, actions, objects)
INTENTS: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    # banking
    "check_balance": ("banking", VERB, ("check", "show", "see"), ("balance",)),
    "transfer_money": ("banking", VERB, ("transfer", "send", "move"), ("money", "funds", "cash")),
    "report_lost_card": ("banking", STATE, ("lost", "stolen", "missing"), ("card", "wallet")),
    "activate_card": ("banking", VERB, ("activate", "enable", "unlock"), ("card",)),
    "pay_bill": ("banking", VERB, ("pay", "settle"), ("bill", "invoice")),
    "recent_transactions": ("banking", VERB, ("show", "list", "see"), ("transactions", "payments", "purchases")),
    # travel
    "book_flight": ("travel", VERB, ("book", "reserve", "get"), ("flight", "plane", "ticket")),
    "cancel_flight": ("travel", VERB, ("cancel", "drop", "scrap"), ("flight", "plane", "ticket")),
    "flight_status": ("travel", VERB, ("track", "check", "locate"), ("flight", "plane")),
    "book_hotel": ("travel", VERB, ("book", "reserve", "get"), ("hotel", "room")),
    "cancel_hotel": ("travel", VERB, ("cancel", "drop", "scrap"), ("hotel", "room")),
    "rent_car": ("travel", VERB, ("rent", "hire", "get"), ("car", "vehicle")),
    # assistant
    "set_alarm": ("assistant", VERB, ("set", "create", "add"), ("alarm",)),
    "cancel_alarm": ("assistant", VERB, ("cancel", "delete", "remove"), ("alarm",)),
    "set_reminder": ("assistant", VERB, ("set", "create", "add"), ("reminder", "note")),
    "delete_reminder": ("assistant", VERB, ("cancel", "delete", "remove"), ("reminder", "note")),
    "play_music": ("assistant", VERB, ("play", "start", "queue"), ("music", "song", "playlist")),
    "weather": ("assistant", SINGLE, ("weather", "forecast", "temperature"), ()),
    # food
    "order_food": ("food", VERB, ("order", "get", "deliver"), ("pizza", "sushi", "burger", "food")),
    "book_table": ("food", VERB, ("book", "reserve", "get"), ("table",)),
    "cancel_order": ("food", VERB, ("cancel", "drop", "scrap"), ("order", "delivery")),
    "track_order": ("food", VERB, ("track", "check", "locate"), ("order", "delivery")),
    "find_recipe": ("food", SINGLE, ("recipe", "recipes", "cook"), ()),
    "calories": ("food", SINGLE, ("calories", "nutrition", "protein"), ()),
}
LABELS: tuple[str, ...] = tuple(sorted(INTENTS))
DOMAINS: tuple[str, ...] = ("banking", "travel", "assistant", "food")


def _check_unique_pairs() -> dict[tuple[str, str], str]:
    """Every (action, object) pair, and every single keyword, names exactly one intent."""
    owner: dict[tuple[str, str], str] = {}
    for intent, (_, kind, actions, objects) in INTENTS.items():
        for a in actions:
            for o in objects or ("",):
                key = (a, o)
                if key in owner:
                    raise AssertionError(f"keyword pair {key} belongs to {owner[key]} and {intent}")
                owner[key] = intent
    singles = {a for _, kind, actions, _ in INTENTS.values() if kind == SINGLE for a in actions}
    others = {w for _, kind, actions, objects in INTENTS.values() if kind != SINGLE for w in (*actions, *objects)}
    if singles & others:
        raise AssertionError(f"single keywords also used by other intents: {sorted(singles & others)}")
    return owner


_PAIRS = _check_unique_pairs()


def label_of(action: str, obj: str = "") -> str | None:
    """The intent an (action, object) keyword pair (or a single keyword) decides, if any."""
    return _PAIRS.get((action, obj))


# --------------------------------------------------------------------------- patterns and fillers

PATTERNS = {
    VERB: (
        "{A} {det} {O}", "{A} {det} {O} {S}", "{A} {O} {S}", "i want to {A} {det} {O} {S}",
        "i need to {A} {det} {O}", "can you {A} {det} {O} {S}", "could you please {A} {det} {O}",
        "help me {A} {det} {O} {S}", "{det} {O} {S} , {A} it", "i would like to {A} {det} {O} {S}",
        "is it possible to {A} {det} {O} {S}", "how do i {A} {det} {O}", "please {A} {det} {O} {S}",
        "{S} i need you to {A} {det} {O}", "would you {A} {det} {O} for me {S}",
    ),
    STATE: (
        "my {O} is {A}", "i think my {O} was {A} {S}", "{A} {O}", "help my {O} got {A}",
        "{S} my {O} went {A}", "i have a {A} {O}", "what do i do about a {A} {O}", "report a {A} {O} {S}",
    ),
    SINGLE: (
        "what is the {A} {S}", "{A} {S}", "tell me the {A} {S}", "i want to know the {A} {S}",
        "give me the {A} {S}", "can you check the {A} {S}", "any {A} {S}", "show me the {A} {S}",
    ),
}
DETERMINERS = ("a", "the", "my", "this", "that", "our")
SLOTS = {
    "banking": ("from my savings account", "to my checking account", "for 200 dollars", "on my visa",
                "this month", "to my mom", "before friday", "for the rent", "from last week", "today"),
    "travel": ("to paris", "from london", "for next friday", "tomorrow morning", "for two people",
               "near the airport", "in rome", "for the weekend", "to new york", "on monday"),
    "assistant": ("for 7 am", "tomorrow", "in the kitchen", "by taylor swift", "in berlin", "this weekend",
                  "for my meeting", "at noon", "in the living room", "on monday"),
    "food": ("from the italian place", "for dinner", "with extra cheese", "for four people", "tonight",
             "for lunch", "near the office", "for two people", "with rice", "this weekend"),
}
GREETINGS = ("hey", "hi", "hello", "ok so", "excuse me", "good morning", "yo", "hi there", "so")
CHITCHAT = ("it has been a long day", "my friend told me to ask", "sorry to bother you", "i am in a hurry",
            "i forgot how this works", "this app is great", "not sure if you can help", "quick question",
            "i tried this before", "my phone is almost dead")
FILLERS = ("um", "uh", "like", "actually", "basically", "just", "really", "you know", "i mean", "kind of",
           "maybe", "honestly", "well", "right")
CLOSINGS = ("please", "thanks", "thank you", "asap", "right now", "if you can", "thanks a lot", "quickly",
            "cheers", "when you have time")
# confusers: another intent's keywords in a role that is not the request (negated, dismissed, or
# the purpose of the request), so bag-of-words evidence points at two intents and only the
# context (word order, negation scope) tells which one is asked for. (before the request?, pattern)
CONFUSERS = (
    (True, "i do not want to {A} {det} {O} ,"), (True, "no need to {A} {det} {O} ,"),
    (True, "forget about the {O} ,"), (True, "not the {O} ,"), (True, "never mind the {O} ,"),
    (False, "for my {O}"), (False, "and do not {A} {det} {O}"), (False, "but not the {O}"),
)
_KEYBOARD = "qwertyuiopasdfghjklzxcvbnm"


def add_typo(word: str, rng: random.Random) -> str:
    """One typo: drop, double, swap two neighbours or replace a letter (words of 4+ letters only)."""
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    op = rng.randrange(4)
    if op == 0:
        out = word[:i] + word[i + 1:]
    elif op == 1:
        out = word[:i] + word[i] + word[i:]
    elif op == 2:
        out = word[:i] + word[i + 1] + word[i] + word[i + 2:]
    else:
        out = word[:i] + rng.choice(_KEYBOARD.replace(word[i], "")) + word[i + 1:]
    return out if out != word else word[:i] + word[i] + word[i:]


# --------------------------------------------------------------------------- generation

def _realise(intent: str, rng: random.Random, pattern: str | None = None) -> tuple[list[str], list[int]]:
    """The request part (or, with `pattern`, a confuser clause): tokens and the keyword positions."""
    domain, kind, actions, objects = INTENTS[intent]
    pattern = pattern or rng.choice(PATTERNS[kind])
    values = {"A": rng.choice(actions), "O": rng.choice(objects) if objects else "",
              "det": rng.choice(DETERMINERS), "S": rng.choice(SLOTS[domain]) if rng.random() < 0.8 else ""}
    tokens, keys = [], []
    for part in pattern.split():
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            words = values[name].split()
            if name in ("A", "O"):
                keys += range(len(tokens), len(tokens) + len(words))
            tokens += words
        else:
            tokens.append(part)
    return tokens, keys


def _confuser(intent: str, rng: random.Random) -> tuple[bool, list[str], list[int]]:
    """A clause naming another intent that shares a keyword with `intent`, so that a bag of words
    sees a second complete keyword pair: (goes before the request, tokens, its keyword positions).
    A clause with the object alone takes a rival that shares the action but not the object
    ("book a hotel for my flight" holds book + flight); one with both takes a rival sharing either."""
    _, kind, actions, objects = INTENTS[intent]
    before, pattern = rng.choice(CONFUSERS)
    verbs = [o for o in LABELS if o != intent and INTENTS[o][1] == VERB and not set(INTENTS[o][3]) & set(objects)]
    if "{A}" in pattern:
        rivals = [o for o in LABELS if o != intent and INTENTS[o][1] == VERB
                  and (set(INTENTS[o][2]) & set(actions) or set(INTENTS[o][3]) & set(objects))]
    else:
        rivals = [o for o in verbs if set(INTENTS[o][2]) & set(actions)]
    tokens, keys = _realise(rng.choice(rivals or verbs), rng, pattern)
    return before, tokens, keys


def _one(intent: str, rng: random.Random, min_len: int, max_len: int, typo_rate: float,
         confuser_rate: float = 0.0) -> Utterance:
    core, keys = _realise(intent, rng)
    pieces: list[tuple[list[str], list[int], list[int]]] = [(core, keys, [])]
    if rng.random() < confuser_rate:
        before, words, dkeys = _confuser(intent, rng)
        if len(core) + len(words) <= max_len:
            pieces.insert(0, (words, [], dkeys)) if before else pieces.append((words, [], dkeys))
    used = sum(len(p[0]) for p in pieces)
    target = rng.randint(max(min_len, used), max(max_len, used))

    def room() -> int:
        return target - sum(len(p[0]) for p in pieces)

    # framing: greeting / chit-chat before the request, a closing after it (when they fit)
    for choices, where, p in ((CHITCHAT, 0, 0.35), (GREETINGS, 0, 0.5), (CLOSINGS, None, 0.5)):
        words = rng.choice(choices).split()
        if rng.random() < p and len(words) <= room():
            pieces.insert(0, (words, [], [])) if where == 0 else pieces.append((words, [], []))
    tokens, gold, distract = [], [], []
    for words, k, d in pieces:
        gold += [len(tokens) + i for i in k]
        distract += [len(tokens) + i for i in d]
        tokens += words
    # fillers at random places until the drawn length is reached
    while len(tokens) < target:
        words = rng.choice(FILLERS).split()
        if len(tokens) + len(words) > target:
            words = words[:1]
        at = rng.randint(0, len(tokens))
        tokens[at:at] = words
        gold = [g + len(words) if g >= at else g for g in gold]
        distract = [g + len(words) if g >= at else g for g in distract]
    # typos (keywords keep their positions)
    typo_kw = False
    for i, tok in enumerate(tokens):
        if rng.random() < typo_rate:
            new = add_typo(tok, rng)
            if new != tok and i in gold:
                typo_kw = True
            tokens[i] = new
    domain = INTENTS[intent][0]
    return Utterance(tuple(tokens), intent, tuple(sorted(gold)), typo_kw, tuple(sorted(distract)), {"domain": domain})


def generate(n: int, seed: int, min_len: int = 3, max_len: int = 24, typo_rate: float = 0.04,
             confuser_rate: float = 0.0, intents: Sequence[str] = LABELS) -> list[Utterance]:
    """`n` utterances, intents balanced (round-robin, then shuffled)."""
    if n < 1:
        return []
    rng = random.Random(seed)
    labels = [intents[i % len(intents)] for i in range(n)]
    rng.shuffle(labels)
    return [_one(label, rng, min_len, max_len, typo_rate, confuser_rate) for label in labels]


def generate_splits(sizes: dict[str, int], seed: int, **options) -> dict[str, list[Utterance]]:
    """Independent draws per split (each split from its own seed derived from `seed`); `options`
    are those of :func:`generate` (min_len, max_len, typo_rate, confuser_rate)."""
    return {split: generate(n, seed * 1000 + i, **options) for i, (split, n) in enumerate(sizes.items())}


def generate_unlabelled(n: int, seed: int, **options) -> list[str]:
    """Extra utterance texts (no labels kept) for masked-LM pre-training."""
    return [u.text for u in generate(n, seed * 1000 + 99, **options)]


# --------------------------------------------------------------------------- storage

def write_jsonl(utterances: Iterable[Utterance], path: Path) -> None:
    from ... import io as aio

    lines = [json.dumps({"tokens": list(u.tokens), "label": u.label,
                         "keywords": None if u.keywords is None else list(u.keywords),
                         "typo_in_keyword": u.typo_in_keyword, "distractors": list(u.distractors)},
                        ensure_ascii=False) for u in utterances]
    aio.write_text(path, "".join(line + "\n" for line in lines))


def read_jsonl(path: Path) -> list[Utterance]:
    out = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            out.append(Utterance(tuple(item["tokens"]), str(item["label"]),
                                 None if item.get("keywords") is None else tuple(int(k) for k in item["keywords"]),
                                 bool(item.get("typo_in_keyword", False)),
                                 tuple(int(k) for k in item.get("distractors") or ())))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}, line {lineno}: not a prepared utterance ({type(exc).__name__}: {exc}); "
                            "run `attnbench prepare --task intent` again") from None
    return out


# ---- real data ------------------------------------------------------------------------------

__all__ += ["IntentDataError", "tokenize", "read_clinc_json", "read_csv", "read_csv_files", "SPLITS"]

SPLITS = ("train", "val", "test")
_TOKEN = re.compile(r"[\w']+|[^\w\s]")
_SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}


class IntentDataError(DataError):
    """A malformed intent data file; the message names the file and the entry or line."""


def tokenize(text: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(text.lower()))


def _read_text(path: Path) -> str:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise IntentDataError(f"{path}: file not found") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IntentDataError(f"{path}, {not_utf8(exc)}") from None


def _check_labels(path: Path | dict[str, Path], splits: dict[str, list[tuple[Utterance, str]]]) -> None:
    """Every val/test label occurs in train; `path` is the one file, or each split's file."""
    known = {u.label for u, _ in splits["train"]}
    for split in ("val", "test"):
        for u, where in splits[split]:
            if u.label not in known:
                where_file = path[split] if isinstance(path, dict) else path
                raise IntentDataError(f"{where_file}, {where}: label {u.label!r} does not occur in the train split; "
                                      f"expected one of the {len(known)} train labels")


def read_clinc_json(path: str | Path) -> dict[str, list[Utterance]]:
    """The train/val/test lists of a CLINC150-shaped JSON file."""
    path = Path(path)
    text = _read_text(path)
    if not text.strip():
        raise IntentDataError(f"{path}, line 1: empty file; expected a JSON object with keys train, val, test")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IntentDataError(f"{path}, line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise IntentDataError(f"{path}: expected a JSON object with keys train, val, test; got a {type(data).__name__}")
    out: dict[str, list[tuple[Utterance, str]]] = {}
    for split in SPLITS:
        if split not in data:
            raise IntentDataError(f"{path}: missing key {split!r}; expected keys train, val, test "
                                  f"(found: {', '.join(map(str, data)) or 'none'})")
        rows = data[split]
        if not isinstance(rows, list) or not rows:
            raise IntentDataError(f"{path}: {split}: expected a non-empty list of [text, label] pairs")
        items = []
        for i, row in enumerate(rows):
            where = f"{split}[{i}]"
            if not (isinstance(row, list) and len(row) == 2 and all(isinstance(x, str) for x in row)):
                raise IntentDataError(f"{path}, {where}: expected a [text, label] pair of strings, got {json.dumps(row)[:80]}")
            tokens, label = tokenize(row[0]), row[1].strip()
            if not tokens:
                raise IntentDataError(f"{path}, {where}: empty text")
            if not label:
                raise IntentDataError(f"{path}, {where}: empty label")
            items.append((Utterance(tokens, label), where))
        out[split] = items
    _check_labels(path, out)
    return {split: [u for u, _ in items] for split, items in out.items()}


def _read_csv_rows(path: Path, text_column: str, label_column: str, split_column: str | None
                   ) -> tuple[list[tuple[Utterance, str, str | None]], bool]:
    """The rows of one CSV file as (utterance, 'line N', split or None), and whether it has a split column."""
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        while header is not None and not any(h.strip() for h in header):
            header = next(reader, None)
    except csv.Error as exc:
        raise IntentDataError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from None
    wanted = [text_column, label_column]
    if header is None:
        raise IntentDataError(f"{path}: empty file; expected a header row with columns {','.join(wanted)}")
    names = [h.strip().lower() for h in header]
    for c, option in ((text_column, "text_column"), (label_column, "label_column")):
        if c.strip().lower() not in names:
            raise IntentDataError(f"{path}, line {reader.line_num}: missing column {c!r} (data.{option}); expected a "
                                  f"header with columns {','.join(wanted)}{' (and optionally split)' if split_column else ''}, "
                                  f"found: {','.join(header)}")
    col = {"text": names.index(text_column.strip().lower()), "label": names.index(label_column.strip().lower())}
    if split_column and split_column in names:
        col["split"] = names.index(split_column)
    rows: list[tuple[Utterance, str, str | None]] = []
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            where = f"line {line}"
            if len(row) <= max(col.values()):
                raise IntentDataError(f"{path}, {where}: {len(row)} field(s), expected {len(names)} (header: {','.join(header)})")
            tokens, label = tokenize(row[col["text"]]), row[col["label"]].strip()
            if not tokens:
                raise IntentDataError(f"{path}, {where}: empty text (column {header[col['text']].strip()!r})")
            if not label:
                raise IntentDataError(f"{path}, {where}: empty label (column {header[col['label']].strip()!r})")
            split = None
            if "split" in col:
                raw = row[col["split"]].strip().lower()
                if raw not in _SPLIT_NAMES:
                    raise IntentDataError(f"{path}, {where}: split {row[col['split']]!r} is not allowed; "
                                          "expected train, val or test")
                split = _SPLIT_NAMES[raw]
            rows.append((Utterance(tokens, label), where, split))
    except csv.Error as exc:
        raise IntentDataError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from None
    if not rows:
        raise IntentDataError(f"{path}: no data rows after the header")
    return rows, "split" in col


def read_csv(path: str | Path, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2,
             text_column: str = "text", label_column: str = "label") -> dict[str, list[Utterance]]:
    """The rows of a `text,label[,split]` CSV, split by its `split` column or a seeded stratified split."""
    path = Path(path)
    rows, has_split = _read_csv_rows(path, text_column, label_column, "split")
    if has_split:
        out = {s: [(u, w) for u, w, sp in rows if sp == s] for s in SPLITS}
        for s in SPLITS:
            if not out[s]:
                raise IntentDataError(f"{path}: the split column names no {s!r} row; expected rows of train, val and test")
        _check_labels(path, out)
        return {s: [u for u, _ in items] for s, items in out.items()}
    return _stratified(path, [(u, w) for u, w, _ in rows], seed, val_fraction, test_fraction)


FILE_SPLITS = {"train": "train", "valid": "val", "test": "test"}   # data.files keys -> split names


def read_csv_files(files: dict[str, str | Path], *, seed: int = 0, val_fraction: float = 0.1,
                   test_fraction: float = 0.2, text_column: str = "text", label_column: str = "label"
                   ) -> dict[str, list[Utterance]]:
    """One CSV file per split (`files`: train, and optionally valid and test). A missing split is carved from
    the training file, seeded and stratified: test first (`test_fraction` of it), then valid (`val_fraction`)."""
    unknown = sorted(set(files) - set(FILE_SPLITS))
    if unknown or "train" not in files:
        raise IntentDataError(f"data.files: expected keys train, valid, test (train required), got: {', '.join(files)}")
    paths = {FILE_SPLITS[k]: Path(v) for k, v in files.items()}
    read: dict[str, list[tuple[Utterance, str]]] = {}
    for split, path in paths.items():   # every file is read (and checked) before anything is carved or written
        rows, _ = _read_csv_rows(path, text_column, label_column, None)
        read[split] = [(u, w) for u, w, _ in rows]
    train = read["train"]
    total = len(train)
    for split, fraction in (("test", test_fraction), ("val", val_fraction)):
        if split not in read:
            what = "valid" if split == "val" else split   # as data.files names it
            train, read[split] = _carve(paths["train"], train, max(1, round(fraction * total)), seed, what)
    read["train"] = train
    _check_labels({s: paths.get(s, paths["train"]) for s in SPLITS}, read)
    return {s: [u for u, _ in read[s]] for s in SPLITS}


def _carve(path: Path, rows: list[tuple[Utterance, str]], n_out: int, seed: int, what: str
           ) -> tuple[list[tuple[Utterance, str]], list[tuple[Utterance, str]]]:
    """(rest, carved): `n_out` rows drawn stratified by label (seeded), both in file order."""
    from sklearn.model_selection import train_test_split

    counts = Counter(u.label for u, _ in rows)
    few = [label for label, n in counts.items() if n < 2]
    if few:
        first = next(w for u, w in rows if u.label == few[0])
        raise IntentDataError(f"{path}, {first}: label {few[0]!r} has 1 row; carving a stratified {what} split from "
                              f"this file needs at least 2 per label (or give a {what} file)")
    n_out = max(n_out, len(counts))
    if n_out + len(counts) > len(rows):
        raise IntentDataError(f"{path}: {len(rows)} rows for {len(counts)} labels are too few to carve a stratified "
                              f"{what} split of {n_out} rows; add rows or give a {what} file")
    index = list(range(len(rows)))
    try:
        rest, out = train_test_split(index, test_size=n_out, random_state=seed + (0 if what == "test" else 1),
                                     stratify=[u.label for u, _ in rows])
    except ValueError as exc:
        raise IntentDataError(f"{path}: cannot carve a stratified {what} split ({exc}); add rows or give a "
                              f"{what} file") from None
    return [rows[i] for i in sorted(rest)], [rows[i] for i in sorted(out)]


def _stratified(path: Path, rows: list[tuple[Utterance, str]], seed: int, val_fraction: float,
                test_fraction: float) -> dict[str, list[Utterance]]:
    from sklearn.model_selection import train_test_split

    counts = Counter(u.label for u, _ in rows)
    few = sorted((n, label) for label, n in counts.items() if n < 3)
    if few:
        n, label = few[0]
        first = next(w for u, w in rows if u.label == label)
        raise IntentDataError(f"{path}, {first}: label {label!r} has {n} row(s); a stratified train/val/test split "
                              "needs at least 3 per label (or give a split column)")
    index = list(range(len(rows)))
    labels = [u.label for u, _ in rows]
    n_test = max(int(round(test_fraction * len(rows))), len(counts))
    n_val = max(int(round(val_fraction * len(rows))), len(counts))
    if n_test + n_val + len(counts) > len(rows):
        raise IntentDataError(f"{path}: {len(rows)} rows for {len(counts)} labels are too few for a stratified "
                              "train/val/test split (needs every label in each split); add rows or a split column")
    try:
        rest, test = train_test_split(index, test_size=n_test, random_state=seed, stratify=labels)
        train, val = train_test_split(rest, test_size=n_val, random_state=seed + 1, stratify=[labels[i] for i in rest])
    except ValueError as exc:  # scikit-learn's own check of the class counts
        raise IntentDataError(f"{path}: cannot split {len(rows)} rows of {len(counts)} labels stratified ({exc}); "
                              "add rows or a split column") from None
    return {"train": [rows[i][0] for i in sorted(train)], "val": [rows[i][0] for i in sorted(val)],
            "test": [rows[i][0] for i in sorted(test)]}
