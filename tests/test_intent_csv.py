"""The intent task's CSV reader for real data sets: column-name options (BANKING77's text,category),
one file per split with the validation split carved from train (seeded, stratified), and errors that
name the file, the line and the missing column; nothing written when reading fails."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from attnbench import cli, paths
from attnbench.config import REPO_ROOT, ParamsError
from attnbench.validation import load_params, validate
from attnbench.tasks.intent.data import IntentDataError, read_csv, read_csv_files

from .conftest import write_params

LABELS = ("card_arrival", "exchange_rate", "lost_card")


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def _banking(tmp_path, name="train.csv", per_label=10, header="text,category", extra=""):
    """A BANKING77-shaped file: columns text,category, texts with commas quoted."""
    rows = [header]
    for label in LABELS:
        for i in range(per_label):
            rows.append(f'"where is my {label.replace("_", " ")}, number {i}?",{label}{extra}')
    return _write(tmp_path / name, "\n".join(rows) + "\n")


def test_column_options_read_banking77_shaped_files(tmp_path):
    train = _banking(tmp_path, "train.csv")
    test = _banking(tmp_path, "test.csv", per_label=3)
    out = read_csv_files({"train": train, "test": test}, text_column="text", label_column="category", seed=0,
                         val_fraction=0.2)
    assert [len(out[s]) for s in ("train", "val", "test")] == [24, 6, 9]
    assert out["test"][0].tokens == ("where", "is", "my", "card", "arrival", ",", "number", "0", "?")
    assert out["test"][0].label == "card_arrival"
    # the same names in another case and order, among other columns
    _write(tmp_path / "other.csv", "ID,Category,Text\n1,a,hello there\n2,b,bye now\n")
    again = read_csv_files({"train": tmp_path / "other.csv", "valid": tmp_path / "other.csv",
                            "test": tmp_path / "other.csv"}, text_column="text", label_column="category")
    assert [(u.text, u.label) for u in again["train"]] == [("hello there", "a"), ("bye now", "b")]
    # the one-file reader takes the options too
    single = _write(tmp_path / "single.csv", "utterance,intent\n" + "".join(f"text {i},{'xy'[i % 2]}\n" for i in range(20)))
    split = read_csv(single, text_column="utterance", label_column="intent", seed=0)
    assert sum(len(v) for v in split.values()) == 20


def test_valid_is_carved_from_train_seeded_and_stratified(tmp_path):
    train = _banking(tmp_path, "train.csv", per_label=20)
    test = _banking(tmp_path, "test.csv", per_label=2)
    files = {"train": train, "test": test}
    kw = {"text_column": "text", "label_column": "category", "val_fraction": 0.1}
    a = read_csv_files(files, seed=0, **kw)
    b = read_csv_files(files, seed=0, **kw)
    c = read_csv_files(files, seed=5, **kw)
    assert a == b and a["val"] != c["val"]
    assert len(a["val"]) == 6 and len(a["train"]) == 54
    assert Counter(u.label for u in a["val"]) == {label: 2 for label in LABELS}   # stratified
    everything = sorted(u.text for u in a["train"] + a["val"])
    assert everything == sorted(u.text for u in read_csv_files({"train": train, "valid": train, "test": test},
                                                                **kw)["train"])
    assert not {u.text for u in a["train"]} & {u.text for u in a["val"]}
    # a given valid file is used as is; a missing test split is carved like valid
    given = read_csv_files({"train": train, "valid": test, "test": test}, seed=0, **kw)
    assert len(given["train"]) == 60 and given["val"] == given["test"]
    no_test = read_csv_files({"train": train}, seed=0, test_fraction=0.2, **kw)
    assert [len(no_test[s]) for s in ("train", "val", "test")] == [42, 6, 12]


@pytest.mark.parametrize("files, kw, needles", [
    ({"train": "train.csv", "test": "test.csv"}, {"label_column": "intent"},
     ["train.csv", "line 1", "missing column 'intent'", "data.label_column", "found: text,category"]),
    ({"train": "train.csv", "test": "test.csv"}, {"text_column": "utterance", "label_column": "category"},
     ["train.csv", "line 1", "missing column 'utterance'", "data.text_column"]),
    ({"train": "train.csv", "test": "nolabel.csv"}, {"label_column": "category"},
     ["nolabel.csv", "line 1", "missing column 'category'"]),
    ({"train": "train.csv", "test": "unknown.csv"}, {"label_column": "category"},
     ["unknown.csv", "line 3", "'refund'", "train split"]),
    ({"train": "train.csv", "valid": "empty_text.csv", "test": "test.csv"}, {"label_column": "category"},
     ["empty_text.csv", "line 2", "empty text", "'text'"]),
    ({"train": "train.csv", "test": "latin1.csv"}, {"label_column": "category"},
     ["latin1.csv", "line 2", "invalid UTF-8"]),
    ({"train": "train.csv", "test": "missing.csv"}, {"label_column": "category"}, ["missing.csv", "file not found"]),
    ({"train": "single.csv", "test": "test.csv"}, {"label_column": "category"},
     ["single.csv", "line 2", "'lonely'", "at least 2", "valid file"]),
])
def test_errors_name_the_file_line_and_column(tmp_path, files, kw, needles):
    _banking(tmp_path, "train.csv")
    _banking(tmp_path, "test.csv", per_label=2)
    _write(tmp_path / "nolabel.csv", "text,intent\nhello,card_arrival\n")
    _write(tmp_path / "unknown.csv", "text,category\nhello,card_arrival\nmoney back,refund\n")
    _write(tmp_path / "empty_text.csv", 'text,category\n"  ",card_arrival\n')
    (tmp_path / "latin1.csv").write_bytes("text,category\ncaf\xe9,card_arrival\n".encode("latin-1"))
    _write(tmp_path / "single.csv", "text,category\nalone,lonely\n" + "".join(f"t {i},x\n" for i in range(9)))
    with pytest.raises(IntentDataError) as err:
        read_csv_files({k: tmp_path / v for k, v in files.items()}, **kw)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


# ---- params and the prepare step ---------------------------------------------------------------

def _params(tmp_path, **data) -> dict:
    p = load_params(REPO_ROOT / "params.yaml")
    p["scale"], p["threads"] = "smoke", 1
    t = p["tasks"]["intent"]
    t["runs"] = {"tfidf": t["runs"]["tfidf"], "mean-pool": t["runs"]["mean-pool"]}
    t["data"] = {"source": "csv", "min_count": 1, **data}
    p["tasks"] = {"intent": t}
    return p


@pytest.mark.parametrize("data, needles", [
    ({"files": {"train": "nope.csv", "test": "nope.csv"}}, ["tasks.intent.data.files.train", "nope.csv", "text,label"]),
    ({"files": {"train": "train.csv", "test": "nope.csv"}, "label_column": "category"},
     ["tasks.intent.data.files.test", "'nope.csv'", "text,category"]),
    ({"files": {"train": "train.csv", "dev": "train.csv"}}, ["tasks.intent.data.files", "'dev'"]),
    ({"files": {"train": "train.csv"}, "path": "train.csv"}, ["tasks.intent.data", "'path' and 'files'"]),
    ({}, ["tasks.intent.data.path", "files"]),
    ({"files": {"train": "train.csv"}, "text_column": ""}, ["tasks.intent.data.text_column"]),
])
def test_params_errors_name_the_key(tmp_path, monkeypatch, data, needles):
    monkeypatch.chdir(tmp_path)
    _banking(tmp_path, "train.csv")
    with pytest.raises(ParamsError) as err:
        validate(_params(tmp_path, **data))
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_text_column_is_only_for_csv(tmp_path):
    p = _params(tmp_path)
    p["tasks"]["intent"]["data"] = {"source": "synthetic", "text_column": "text"}
    with pytest.raises(ParamsError, match=r"tasks.intent.data.text_column: not allowed for source 'synthetic'"):
        validate(p)


def test_prepare_train_evaluate_from_split_files(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _banking(tmp_path, "train.csv", per_label=20)
    _banking(tmp_path, "test.csv", per_label=4)
    path = write_params(tmp_path / "params.yaml", _params(
        tmp_path, files={"train": "train.csv", "test": "test.csv"}, text_column="text", label_column="category"))
    assert cli.main(["-q", "--params", str(path), "prepare", "--task", "intent"]) == 0
    manifest = json.loads((paths.prepared_dir("intent", "synthetic") / "manifest.json").read_text())
    assert manifest["utterances"] == {"train": 54, "valid": 6, "test": 12} and manifest["labels"] == 3
    for step in ("train", "evaluate"):
        assert cli.main(["-q", "--params", str(path), step, "--task", "intent", "--run", "tfidf", "--seed", "0"]) == 0
    metrics = json.loads((paths.run_dir("intent", "synthetic", "tfidf", 0) / "metrics.json").read_text())
    assert metrics["accuracy"] == 1.0 and metrics["test_utterances"] == 12 and metrics["subset_accuracy"] is None


def test_bad_file_stops_prepare_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _banking(tmp_path, "train.csv", per_label=20)
    _write(tmp_path / "test.csv", "text,category\nok,card_arrival\n,lost_card\n")
    path = write_params(tmp_path / "params.yaml", _params(
        tmp_path, files={"train": "train.csv", "test": "test.csv"}, label_column="category"))
    assert cli.main(["-q", "--params", str(path), "prepare", "--task", "intent"]) == 1
    err = capsys.readouterr().err
    assert "test.csv, line 3: empty text" in err
    assert not paths.prepared_dir("intent", "synthetic").exists()
