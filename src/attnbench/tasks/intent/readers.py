"""Real intent data: a CLINC150-shaped JSON file, or CSV: one file, or one file per split.

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
(``[\\w']+|[^\\w\\s]``). Every problem raises :class:`IntentDataError` naming the file and the
entry (JSON: ``val[12]``, 0-based like the file's list) or the line (CSV, 1-based, header = line 1):
invalid UTF-8 or JSON, a missing split key or column, an entry that is not ``[text, label]``, an
empty text or label, a label in val/test that train does not have (named with its own file and
line), a label with too few rows to split. Nothing is written when reading fails.
"""
from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from pathlib import Path

from ...errors import DataError, not_utf8
from .corpus import Utterance

__all__ = ["IntentDataError", "tokenize", "read_clinc_json", "read_csv", "read_csv_files", "SPLITS"]

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
