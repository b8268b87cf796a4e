"""Recommendation data: the embedded synthetic generator and the libsvm-style / CSV readers.

Every source ends as the same thing: per split, a matrix of categorical values (one column per
field, one row per interaction) and a target (a rating, or a 0/1 click). `encode` then maps each
field's values to global feature indices (index 0 of each field's range is "unseen in training").

Synthetic data (`generate`): fields of different cardinalities (user, item, context fields) with
skewed popularity; the true model is a factorization machine whose field pairs interact with
different weights r_fg, only a few strongly:

    z = Σ_f w_f[x_f] + Σ_{f<g} r_fg <u_f[x_f], u_g[x_g]>        (u ~ N(0, k^-1/2): <u, u'> has variance 1)
    rating = b + z + ε, ε ~ N(0, noise²);    click ~ Bernoulli(sigmoid(z − median z))

`strong_pairs` pairs get r ~ U(0.6, 1.0); every other pair gets a weak weight, log-uniform in
[0.03, 0.3]. The strong pairs are drawn at random, except that with `user_item_strong` (the default
of params.yaml) the first two fields, the user and the item, are always one of them: personal taste,
the collaborative-filtering signal every recommendation data set has (the AFM paper's data sets are
Frappe, users × apps in context, and MovieLens, users × movies × tags). r_fg is each pair's true importance; the generator also records the
empirical spread of each pair's term (its contribution's standard deviation) and the noise-free
prediction of the true model (the oracle) of every split.

Real data: `read_libsvm` reads the AFM authors' Frappe / MovieLens-tag files (libFM format,
`label idx:1 idx:1 ...`, the i-th feature of a line belonging to field i); `read_csv` a CSV of
categorical columns and a numeric target column. Malformed lines, non-numeric targets and
inconsistent field counts raise `RecsysDataError` naming the file and the line.
"""
from __future__ import annotations

import csv
import gzip
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ...errors import DataError, not_utf8

SPLITS = ("train", "valid", "test")
POPULARITY_EXPONENT = 0.6       # value v of a field drawn with probability ∝ 1 / (rank + 1)^0.6
STRONG_RANGE = (0.6, 1.0)       # importance of the strongly interacting pairs
WEAK_RANGE = (0.03, 0.3)        # importance of the others (log-uniform)
LINEAR_STD = 0.5                # per-feature first-order weights
RATING_BIAS = 3.0               # global mean of the synthetic rating
UNSEEN = "<unseen>"


class RecsysDataError(DataError):
    """A recommendation data file is malformed; the message names the file, the line and what was expected."""


@dataclass
class Split:
    values: list[list[str]] | np.ndarray   # [N, F] raw categorical values (str), or int codes (synthetic)
    target: np.ndarray                     # [N] float64
    oracle: np.ndarray | None = None       # [N] noise-free true score (synthetic only)


@dataclass
class Raw:
    """One data source, before encoding: field names, splits, and the ground truth when known."""

    fields: list[str]
    splits: dict[str, Split]
    target: str                                       # rating | click
    importance: np.ndarray | None = None              # [P] true pair importance r_fg (pair order of np.triu_indices)
    contribution_std: np.ndarray | None = None        # [P] empirical std of each pair's true term (train split)
    strong: np.ndarray | None = None                  # [P] bool: the strongly interacting pairs
    cardinalities: list[int] | None = None            # synthetic: each field's number of values
    info: dict = field(default_factory=dict)


def pair_index(n_fields: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the field pairs f < g, in the order every model and export uses."""
    return np.triu_indices(n_fields, k=1)


def pair_names(fields: list[str]) -> list[str]:
    rows, cols = pair_index(len(fields))
    return [f"{fields[i]}×{fields[j]}" for i, j in zip(rows, cols)]


# ---------------------------------------------------------------------------------------- generator
def _popularity(rng: np.random.Generator, n: int) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** POPULARITY_EXPONENT
    return rng.permutation(p / p.sum())


def generate(sizes: dict[str, int], fields: dict[str, int], *, factors: int, strong_pairs: int, noise: float,
             target: str, seed: int, user_item_strong: bool = False) -> Raw:
    """Seeded synthetic interactions; same arguments => the same arrays."""
    names, cards = list(fields), [int(c) for c in fields.values()]
    n_fields = len(names)
    rows, cols = pair_index(n_fields)
    n_pairs = len(rows)
    if not 0 <= strong_pairs <= n_pairs:
        raise ValueError(f"strong_pairs={strong_pairs} is not in [0, {n_pairs}] for {n_fields} fields")
    rng = np.random.default_rng(seed)
    popularity = [_popularity(rng, c) for c in cards]
    w = [rng.normal(0.0, LINEAR_STD, c) for c in cards]
    u = [rng.normal(0.0, factors ** -0.25, (c, factors)) for c in cards]
    order = rng.permutation(n_pairs)
    if user_item_strong and strong_pairs:  # pair 0 is fields 0 × 1: the user × item pair first
        order = np.concatenate([[0], order[order != 0]])
    importance = np.empty(n_pairs)
    importance[order[:strong_pairs]] = rng.uniform(*STRONG_RANGE, strong_pairs)
    importance[order[strong_pairs:]] = np.exp(rng.uniform(np.log(WEAK_RANGE[0]), np.log(WEAK_RANGE[1]),
                                                          n_pairs - strong_pairs))
    strong = np.zeros(n_pairs, dtype=bool)
    strong[order[:strong_pairs]] = True

    def draw(n: int, stream: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.stack([stream.choice(c, size=n, p=p) for c, p in zip(cards, popularity)], axis=1)
        linear = sum(w[f][x[:, f]] for f in range(n_fields))
        terms = np.stack([importance[p] * np.einsum("nk,nk->n", u[rows[p]][x[:, rows[p]]], u[cols[p]][x[:, cols[p]]])
                          for p in range(n_pairs)], axis=1) if n_pairs else np.zeros((n, 0))
        return x, linear + terms.sum(axis=1), terms

    # the click threshold comes from its own stream, so it does not depend on the split sizes
    _, z_ref, _ = draw(20_000, np.random.default_rng([seed, 1]))
    threshold = float(np.median(z_ref))
    splits, contribution_std = {}, None
    for i, split in enumerate(SPLITS):
        stream = np.random.default_rng([seed, 2, i])
        x, z, terms = draw(int(sizes[split]), stream)
        if split == "train":
            contribution_std = terms.std(axis=0)
        if target == "rating":
            oracle = RATING_BIAS + z
            y = oracle + stream.normal(0.0, noise, len(z))
        else:
            oracle = 1.0 / (1.0 + np.exp(-(z - threshold)))
            y = (stream.random(len(z)) < oracle).astype(np.float64)
        splits[split] = Split(values=x, target=y.astype(np.float64), oracle=oracle)
    info = {"factors": factors, "strong_pairs": strong_pairs, "user_item_strong": bool(user_item_strong), "noise": noise if target == "rating" else None,
            "click_threshold": threshold if target == "click" else None, "popularity_exponent": POPULARITY_EXPONENT,
            "strong_range": list(STRONG_RANGE), "weak_range": list(WEAK_RANGE), "linear_std": LINEAR_STD}
    return Raw(fields=names, splits=splits, target=target, importance=importance, contribution_std=contribution_std,
               strong=strong, cardinalities=cards, info=info)


# ---------------------------------------------------------------------------------------- readers
def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, decoded line without its newline); gzip by the .gz suffix; bad UTF-8 names the line."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                try:
                    yield number, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    raise RecsysDataError(f"{path}, {not_utf8(exc, number)}") from None
    except (OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise RecsysDataError(f"{path}: file not found") from None
        raise RecsysDataError(f"{path}: cannot be read ({exc})") from None


def _label(text: str, path: Path, number: int, target: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RecsysDataError(f"{path}, line {number}: target {text!r}{where} is not a number; "
                              f"expected a numeric {'rating' if target == 'rating' else 'click label (0/1 or -1/1)'}") from None
    if not math.isfinite(value):
        raise RecsysDataError(f"{path}, line {number}: target {text!r}{where} is not a finite number")
    if target == "click":
        if value not in (-1.0, 0.0, 1.0):
            raise RecsysDataError(f"{path}, line {number}: click target {text!r}{where} is not a click label; "
                                  "expected 1 (click) or 0 / -1 (no click)")
        value = 1.0 if value > 0 else 0.0
    return value


def read_libsvm(path: str | Path, target: str, n_fields: int | None = None) -> Split:
    """A libFM-format file: `label idx:1 idx:1 ...`, one feature per field, in field order.

    `n_fields` (the count of the first split read) is enforced on every line when given.
    Feature values must be 1: the format carries one-hot categorical fields here.
    """
    path = Path(path)
    values: list[list[str]] = []
    labels: list[float] = []
    first_line = None
    for number, line in _lines(path):
        parts = line.split()
        if not parts:
            continue  # blank lines (a trailing newline) carry nothing
        labels.append(_label(parts[0], path, number, target, ""))
        row = []
        for position, item in enumerate(parts[1:], start=1):
            idx, sep, val = item.partition(":")
            if not sep or not idx or not val:
                raise RecsysDataError(f"{path}, line {number}: item {position} {item!r} is malformed; expected idx:1")
            if not idx.isdigit():
                raise RecsysDataError(f"{path}, line {number}: item {position} {item!r} has a feature index that is "
                                      "not a non-negative integer; expected idx:1")
            try:
                one = float(val)
            except ValueError:
                raise RecsysDataError(f"{path}, line {number}: item {position} {item!r} has a non-numeric value; "
                                      "expected idx:1") from None
            if one != 1.0:
                raise RecsysDataError(f"{path}, line {number}: item {position} {item!r} has value {val}; this reader "
                                      "takes one-hot categorical fields, expected idx:1")
            row.append(str(int(idx)))
        if not row:
            raise RecsysDataError(f"{path}, line {number}: a label without features; expected `label idx:1 idx:1 ...`")
        if n_fields is None:
            n_fields, first_line = len(row), number
        elif len(row) != n_fields:
            where = f"line {first_line} of this file" if first_line else "the training file"
            raise RecsysDataError(f"{path}, line {number}: {len(row)} features, expected {n_fields} "
                                  f"(one per field, as on {where})")
        values.append(row)
    if not values:
        raise RecsysDataError(f"{path}: no data line; expected `label idx:1 idx:1 ...` lines")
    return Split(values=values, target=np.asarray(labels, dtype=np.float64))


def read_csv(path: str | Path, target: str, target_column: str, field_columns: list[str] | None = None) -> tuple[list[str], Split]:
    """A CSV with a header: categorical columns (`field_columns`, default every other column) and a
    numeric `target_column`. Returns (field names, split)."""
    path = Path(path)
    lines = _lines(path)
    numbers: list[int] = []

    def text():
        for number, line in lines:
            numbers.append(number)
            yield line

    reader = csv.reader(text(), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise RecsysDataError(f"{path}, line {numbers[-1] if numbers else 1}: malformed CSV ({exc})") from None
    if header is None:
        raise RecsysDataError(f"{path}: empty file; expected a header line naming the columns")
    header = [h.strip() for h in header]
    if target_column not in header:
        raise RecsysDataError(f"{path}, line 1: no target column {target_column!r}; the header has: {', '.join(header)}")
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise RecsysDataError(f"{path}, line 1: column {dup!r} appears twice in the header")
    fields = list(field_columns) if field_columns else [h for h in header if h != target_column]
    missing = [f for f in fields if f not in header]
    if missing:
        raise RecsysDataError(f"{path}, line 1: no field column {missing[0]!r}; the header has: {', '.join(header)}")
    if target_column in fields:
        raise RecsysDataError(f"{path}: column {target_column!r} is the target and cannot also be a field")
    if not fields:
        raise RecsysDataError(f"{path}, line 1: no categorical column besides the target {target_column!r}")
    t_at, f_at = header.index(target_column), [header.index(f) for f in fields]
    values: list[list[str]] = []
    labels: list[float] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise RecsysDataError(f"{path}, line {numbers[-1]}: malformed CSV ({exc})") from None
        number = numbers[-1]
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise RecsysDataError(f"{path}, line {number}: {len(row)} columns, expected {len(header)} as in the header")
        labels.append(_label(row[t_at].strip(), path, number, target, f" in column {target_column!r}"))
        values.append([row[i].strip() for i in f_at])
    if not values:
        raise RecsysDataError(f"{path}: no data row after the header")
    return fields, Split(values=values, target=np.asarray(labels, dtype=np.float64))


def read_files(spec: dict, target: str) -> Raw:
    """The three split files named in params (`data.files`), in libsvm or CSV format."""
    fmt = spec["format"]
    splits: dict[str, Split] = {}
    if fmt == "libsvm":
        n_fields = None
        for split in SPLITS:
            splits[split] = read_libsvm(spec[split], target, n_fields)
            n_fields = len(splits[split].values[0])
        names = list(spec.get("field_names") or [f"f{i}" for i in range(n_fields)])
        if len(names) != n_fields:
            raise RecsysDataError(f"{spec['train']}: lines have {n_fields} features but data.files.field_names "
                                  f"names {len(names)} fields")
    else:
        names = None
        for split in SPLITS:
            fields, splits[split] = read_csv(spec[split], target, spec["target_column"], spec.get("field_columns"))
            if names is None:
                names = fields
            elif fields != names:
                raise RecsysDataError(f"{spec[split]}, line 1: field columns {fields} differ from the training file's {names}")
    if len(names) < 2:
        raise RecsysDataError(f"{spec['train']}: {len(names)} field; pairwise interactions need at least 2 fields")
    return Raw(fields=list(names), splits=splits, target=target, info={"format": fmt})


# ---------------------------------------------------------------------------------------- encoding
@dataclass
class Encoded:
    x: dict[str, np.ndarray]          # split -> [N, F] int64 global feature indices
    y: dict[str, np.ndarray]          # split -> [N] float32
    offsets: np.ndarray               # [F] first global index of each field
    sizes: np.ndarray                 # [F] features per field (index 0 of each range: unseen)
    vocab: dict[str, list[str]]       # field -> its values, by local index
    unseen: dict[str, float]          # split -> share of (example, field) values unseen in training


def encode(raw: Raw) -> Encoded:
    """Global feature indices; each field's values sorted by training frequency, unseen ones at 0."""
    n_fields = len(raw.fields)
    vocab: dict[str, list[str]] = {}
    tables = []
    train = raw.splits["train"].values
    for f, name in enumerate(raw.fields):
        if raw.cardinalities is not None:  # synthetic: codes 0..c-1 -> "<field><code>" at c + 1
            items = [f"{name}{c}" for c in range(raw.cardinalities[f])]
            tables.append(None)
        else:
            counts: dict[str, int] = {}
            for row in train:
                counts[row[f]] = counts.get(row[f], 0) + 1
            items = sorted(counts, key=lambda v: (-counts[v], v))
            tables.append({v: i + 1 for i, v in enumerate(items)})
        vocab[name] = [UNSEEN] + items
    sizes = np.array([len(vocab[n]) for n in raw.fields], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    xs, ys, unseen = {}, {}, {}
    for split, data in raw.splits.items():
        if raw.cardinalities is not None:
            local = np.asarray(data.values, dtype=np.int64) + 1
        else:
            local = np.array([[tables[f].get(row[f], 0) for f in range(n_fields)] for row in data.values],
                             dtype=np.int64).reshape(len(data.values), n_fields)
        unseen[split] = round(float((local == 0).mean()), 6)
        xs[split] = local + offsets[None, :]
        ys[split] = data.target.astype(np.float32)
    return Encoded(x=xs, y=ys, offsets=offsets, sizes=sizes, vocab=vocab, unseen=unseen)
