"""Every real-data reader against the same bad inputs (issue 11): an empty file, the wrong encoding
(latin-1 bytes, UTF-16), wrong columns, mismatched lengths and NaN / missing values. Each must stop
with a DataError naming the file and the line, row or entry, and what was expected.

Per-task tests go further into each format (test_cli.py, test_intent.py, test_documents.py,
test_load_reader.py, test_recsys_data.py); this matrix makes sure no reader misses a fault kind.
Where a fault kind has no meaning for a format, its case is skipped with the reason.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from attnbench.errors import DataError
from attnbench.tasks.documents.data import read_documents_jsonl
from attnbench.tasks.intent.data import read_clinc_json, read_csv as read_intent_csv
from attnbench.tasks.load.data import read_csv as read_load_csv
from attnbench.tasks.recsys.data import read_csv as read_recsys_csv, read_libsvm
from attnbench.tasks.translation.data import read_parallel

UTF16 = "a b\nc d\n".encode("utf-16")  # starts with the BOM ff fe: invalid as UTF-8 at byte 0


def _clinc(train_rows: list, **extra) -> bytes:
    rows = {"train": train_rows, "val": [["hi there", "greet"]], "test": [["hello", "greet"]], **extra}
    # one entry per line, so that a decoding error has a line to name
    return ("{\n" + ",\n".join(f'"{k}": [\n' + ",\n".join(json.dumps(r) if not isinstance(r, str) else r for r in v)
                               + "\n]" for k, v in rows.items()) + "\n}\n").encode()


DOC = json.dumps({"text": "The film was good. I liked it.", "label": "pos"})
LOAD_HEAD = b"time,load\n2022-01-01 00:00,1.5\n"

# reader id -> (file name, how to read it)
READERS: dict[str, tuple[str, Callable[[Path], object]]] = {
    "translation-files": ("train.src", lambda p: read_parallel(p, p.with_name("train.tgt"))),
    "translation-tsv": ("train.tsv", lambda p: read_parallel(p, alignments=p.with_name("train.align")
                                                           if p.with_name("train.align").exists() else None)),
    "intent-json": ("clinc.json", read_clinc_json),
    "intent-csv": ("intents.csv", lambda p: read_intent_csv(p, seed=0)),
    "documents-jsonl": ("docs.jsonl", read_documents_jsonl),
    "load-csv": ("load.csv", lambda p: read_load_csv({"path": str(p), "timestamp": "time", "target": "load"})),
    "recsys-libsvm": ("train.libfm", lambda p: read_libsvm(p, "rating")),
    "recsys-csv": ("train.csv", lambda p: read_recsys_csv(p, "rating", "rating")),
}

GOOD_TGT = {"train.tgt": b"A B\nC D\n"}

# (reader, fault) -> (main file bytes, other files, fragments the message must contain besides the file name)
# or a string: the reason the fault does not apply to that format.
CASES: dict[tuple[str, str], tuple[bytes, dict, list[str]] | str] = {
    # translation, two line-aligned files
    ("translation-files", "empty-file"): (b"\n\n", GOOD_TGT, ["empty file"]),
    ("translation-files", "latin-1-bytes"): ("a b\ncaf\xe9 d\n".encode("latin-1"), GOOD_TGT, ["line 2", "UTF-8"]),
    ("translation-files", "utf-16"): (UTF16, GOOD_TGT, ["line 1", "UTF-8"]),
    ("translation-files", "wrong-columns"): "two line-aligned files have no columns (the TSV case covers a row "
                                            "with the wrong number of fields)",
    ("translation-files", "mismatched-lengths"): (b"a b\nc d\ne f\n", GOOD_TGT,
                                                  ["train.tgt", "3 lines", "2 lines", "line 3"]),
    ("translation-files", "nan-or-missing"): (b"a b\nc d\ne f\n", {"train.tgt": b"A B\n \nE F\n"},
                                              ["train.tgt", "line 2", "empty target side"]),
    # translation, one TSV file (+ Pharaoh alignments for the length case)
    ("translation-tsv", "empty-file"): (b"", {}, ["empty file"]),
    ("translation-tsv", "latin-1-bytes"): ("a b\tA B\nc\xe9 d\tC D\n".encode("latin-1"), {}, ["line 2", "UTF-8"]),
    ("translation-tsv", "utf-16"): ("a b\tA B\n".encode("utf-16"), {}, ["line 1", "UTF-8"]),
    ("translation-tsv", "wrong-columns"): (b"a b\tA B\nc d\tC D\textra\n", {}, ["line 2", "exactly one tab", "found 2"]),
    ("translation-tsv", "mismatched-lengths"): (b"a b\tA B\nc d\tC D\n", {"train.align": b"0-0 1-1\n"},
                                                ["train.align", "1 line", "2 sentence pairs", "line 2"]),
    ("translation-tsv", "nan-or-missing"): (b"a b\tA B\nc d\t \n", {}, ["line 2", "empty target side"]),
    # intent, CLINC150-shaped JSON
    ("intent-json", "empty-file"): (b"", {}, ["line 1", "empty file", "train, val, test"]),
    ("intent-json", "latin-1-bytes"): (_clinc([["hello", "greet"], '["caf\u00e9 time", "greet"]']).decode()
                                       .encode("latin-1"), {}, ["line 4", "UTF-8"]),
    ("intent-json", "utf-16"): (_clinc([["hello", "greet"]]).decode().encode("utf-16"), {}, ["line 1", "UTF-8"]),
    ("intent-json", "wrong-columns"): (b'{"train": [["hello", "greet"]], "val": [["hi", "greet"]], "tests": []}', {},
                                       ["missing key 'test'", "expected keys train, val, test"]),
    ("intent-json", "mismatched-lengths"): (_clinc([["hello", "greet"], ["hi there"]]), {},
                                            ["train[1]", "[text, label] pair"]),
    ("intent-json", "nan-or-missing"): (_clinc([["hello", "greet"], '["hi there", NaN]']), {},
                                        ["train[1]", "[text, label] pair of strings", "NaN"]),
    # intent, text,label CSV
    ("intent-csv", "empty-file"): (b"", {}, ["empty file", "text,label"]),
    ("intent-csv", "latin-1-bytes"): ("text,label\nhello,greet\ncaf\xe9 time,greet\n".encode("latin-1"), {},
                                      ["line 3", "UTF-8"]),
    ("intent-csv", "utf-16"): ("text,label\nhello,greet\n".encode("utf-16"), {}, ["line 1", "UTF-8"]),
    ("intent-csv", "wrong-columns"): (b"utterance,label\nhello,greet\n", {}, ["line 1", "missing column 'text'"]),
    ("intent-csv", "mismatched-lengths"): (b"text,label\nhello,greet\nhi there\n", {},
                                           ["line 3", "1 field(s), expected 2"]),
    # labels are strings, so a literal 'NaN' label is a label; a missing one is an empty cell
    ("intent-csv", "nan-or-missing"): (b"text,label\nhello,greet\nhi there,\n", {}, ["line 3", "empty label"]),
    # documents, JSON lines
    ("documents-jsonl", "empty-file"): (b"\n", {}, ["empty file"]),
    ("documents-jsonl", "latin-1-bytes"): (f"{DOC}\n{DOC}\n".replace("film", "caf\u00e9").encode("latin-1"), {},
                                           ["line 1", "UTF-8"]),
    ("documents-jsonl", "utf-16"): (f"{DOC}\n".encode("utf-16"), {}, ["line 1", "UTF-8"]),
    ("documents-jsonl", "wrong-columns"): (f'{DOC}\n{{"body": "Good.", "label": "pos"}}\n'.encode(), {},
                                           ["line 2", "missing key 'text'"]),
    # the gold sentence index must fit the document's sentence count
    ("documents-jsonl", "mismatched-lengths"): (
        f'{DOC}\n{json.dumps({"text": "Good. Fine.", "label": "pos", "gold_sentence": 5})}\n'.encode(), {},
        ["line 2", "'gold_sentence'", "0..1", "2 sentences"]),
    ("documents-jsonl", "nan-or-missing"): (f'{DOC}\n{{"text": "Good.", "label": NaN}}\n'.encode(), {},
                                            ["line 2", "'label' must be a string or an integer", "NaN"]),
    # load forecasting CSV
    ("load-csv", "empty-file"): (b"", {}, ["empty"]),
    ("load-csv", "latin-1-bytes"): (LOAD_HEAD + "2022-01-01 01:00,2\xe9\n".encode("latin-1"), {}, ["line 3", "UTF-8"]),
    ("load-csv", "utf-16"): (LOAD_HEAD.decode().encode("utf-16"), {}, ["line 1", "UTF-8"]),
    ("load-csv", "wrong-columns"): (b"time,lod\n2022-01-01 00:00,1\n", {}, ["line 1", "column 'load' not found", "'lod'"]),
    ("load-csv", "mismatched-lengths"): (LOAD_HEAD + b"2022-01-01 01:00\n2022-01-01 02:00,3\n", {},
                                         ["line 3", "1 fields, expected 2"]),
    # empty / 'nan' cells are missing values by the documented policy (test below); infinity is refused
    ("load-csv", "nan-or-missing"): (LOAD_HEAD + b"2022-01-01 01:00,inf\n", {}, ["line 3", "column 'load'", "finite"]),
    # recsys, libFM lines
    ("recsys-libsvm", "empty-file"): (b"\n", {}, ["no data line"]),
    ("recsys-libsvm", "latin-1-bytes"): ("4 0:1 5:1\n3 1:1 6:1 \xe9\n".encode("latin-1"), {}, ["line 2", "UTF-8"]),
    ("recsys-libsvm", "utf-16"): ("4 0:1 5:1\n".encode("utf-16"), {}, ["line 1", "UTF-8"]),
    ("recsys-libsvm", "wrong-columns"): (b"4 0:1 5:1\n3 1:1 6\n", {}, ["line 2", "item 2", "expected idx:1"]),
    ("recsys-libsvm", "mismatched-lengths"): (b"4 0:1 5:1 9:1\n3 1:1 6:1\n", {},
                                              ["line 2", "2 features, expected 3", "line 1"]),
    ("recsys-libsvm", "nan-or-missing"): (b"4 0:1 5:1\nnan 1:1 6:1\n", {}, ["line 2", "'nan'", "not a finite number"]),
    # recsys, CSV with a header
    ("recsys-csv", "empty-file"): (b"", {}, ["empty file", "header"]),
    ("recsys-csv", "latin-1-bytes"): ("user,item,rating\nu1,i1,4\nu\xe9,i2,3\n".encode("latin-1"), {},
                                      ["line 3", "UTF-8"]),
    ("recsys-csv", "utf-16"): ("user,item,rating\nu1,i1,4\n".encode("utf-16"), {}, ["line 1", "UTF-8"]),
    ("recsys-csv", "wrong-columns"): (b"user,item,score\nu1,i1,4\n", {}, ["line 1", "no target column 'rating'"]),
    ("recsys-csv", "mismatched-lengths"): (b"user,item,rating\nu1,i1,4\nu2,3\n", {},
                                           ["line 3", "2 columns, expected 3"]),
    ("recsys-csv", "nan-or-missing"): (b"user,item,rating\nu1,i1,4\nu2,i2,NaN\n", {},
                                       ["line 3", "'NaN'", "not a finite number"]),
}
FAULTS = ("empty-file", "latin-1-bytes", "utf-16", "wrong-columns", "mismatched-lengths", "nan-or-missing")


def _params():
    for reader in READERS:
        for fault in FAULTS:
            case = CASES[(reader, fault)]
            marks = [pytest.mark.skip(reason=f"does not apply: {case}")] if isinstance(case, str) else []
            yield pytest.param(reader, fault, id=f"{reader}-{fault}", marks=marks)


def test_every_reader_has_every_fault_kind():
    assert set(CASES) == {(r, f) for r in READERS for f in FAULTS}


@pytest.mark.parametrize("reader,fault", list(_params()))
def test_reader_fault_names_the_file_and_the_line(reader, fault, tmp_path):
    content, others, expected = CASES[(reader, fault)]
    name, read = READERS[reader]
    path = tmp_path / name
    path.write_bytes(content)
    for other, data in others.items():
        (tmp_path / other).write_bytes(data)
    with pytest.raises(DataError) as err:
        read(path)
    message = str(err.value)
    named = [str(tmp_path / n) for n in (name, *others)]
    assert any(n in message for n in named), f"no file named in: {message}"
    for fragment in expected:
        assert fragment in message, f"{fragment!r} missing from: {message}"


def test_load_reader_counts_empty_and_nan_cells_as_missing_values(tmp_path):
    """The load CSV's documented policy: an empty or 'nan' cell is a missing value (windows touching
    it are skipped and counted), not an error; a non-number is an error (above and test_load_reader)."""
    path = tmp_path / "load.csv"
    path.write_bytes(LOAD_HEAD + b"2022-01-01 01:00,nan\n2022-01-01 02:00,\n2022-01-01 03:00,4\n")
    series = read_load_csv({"path": str(path), "timestamp": "time", "target": "load"})
    assert np.isnan(series.load[1:3]).all() and series.load[3] == 4.0
    assert series.truth["empty_cells"] == 2 and series.truth["missing_steps"] == 0
