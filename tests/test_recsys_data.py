"""recsys data: the synthetic generator's ground truth, and the libsvm / CSV readers' bad inputs."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from attnbench.tasks.recsys.data import (
    RATING_BIAS,
    STRONG_RANGE,
    WEAK_RANGE,
    RecsysDataError,
    encode,
    generate,
    pair_index,
    pair_names,
    read_csv,
    read_files,
    read_libsvm,
)

FIELDS = {"user": 60, "item": 80, "hour": 24, "weekday": 7, "device": 4}
SIZES = {"train": 4000, "valid": 500, "test": 1000}


def _gen(target="rating", seed=7, **kw):
    args = dict(factors=4, strong_pairs=3, noise=0.4, target=target, seed=seed)
    args.update(kw)
    return generate(SIZES, FIELDS, **args)


def test_generator_is_seeded_and_records_its_ground_truth():
    a, b, c = _gen(), _gen(), _gen(seed=8)
    for split in SIZES:
        np.testing.assert_array_equal(a.splits[split].values, b.splits[split].values)
        np.testing.assert_array_equal(a.splits[split].target, b.splits[split].target)
        assert a.splits[split].values.shape == (SIZES[split], len(FIELDS))
        assert (a.splits[split].values < np.array(list(FIELDS.values()))).all()
    assert not np.array_equal(a.splits["train"].target, c.splits["train"].target)
    n_pairs = len(FIELDS) * (len(FIELDS) - 1) // 2
    assert a.importance.shape == a.strong.shape == a.contribution_std.shape == (n_pairs,)
    assert a.strong.sum() == 3
    strong, weak = a.importance[a.strong], a.importance[~a.strong]
    assert (strong >= STRONG_RANGE[0]).all() and (strong <= STRONG_RANGE[1]).all()
    assert (weak >= WEAK_RANGE[0]).all() and (weak <= WEAK_RANGE[1]).all()
    # the truly strong pairs move the score more than any weak one
    assert a.contribution_std[a.strong].min() > a.contribution_std[~a.strong].max()
    assert pair_names(list(FIELDS))[0] == "user×item" and len(pair_names(list(FIELDS))) == n_pairs


def test_rating_is_the_true_fm_plus_the_recorded_noise():
    raw = _gen(noise=0.4)
    test = raw.splits["test"]
    residual = test.target - test.oracle
    assert abs(residual.mean()) < 0.05 and abs(residual.std() - 0.4) < 0.03
    assert abs(test.oracle.mean() - RATING_BIAS) < 1.0
    # a model that ignores the pairs is far worse than the oracle: interactions matter
    assert np.std(test.target) > 2 * residual.std()


def test_click_target_is_binary_balanced_and_follows_the_oracle():
    raw = _gen(target="click")
    y, p = raw.splits["train"].target, raw.splits["train"].oracle
    assert set(np.unique(y)) == {0.0, 1.0}
    assert 0.35 < y.mean() < 0.65
    assert ((p > 0) & (p < 1)).all()
    assert y[p > 0.8].mean() > 0.75 and y[p < 0.2].mean() < 0.25
    # same features and ground truth as the rating target: only the label differs
    rating = _gen(target="rating")
    np.testing.assert_array_equal(rating.splits["train"].values, raw.splits["train"].values)
    np.testing.assert_array_equal(rating.importance, raw.importance)


def test_encode_gives_global_indices_per_field():
    raw = _gen()
    enc = encode(raw)
    x = enc.x["train"]
    assert x.shape == (SIZES["train"], len(FIELDS))
    for f in range(len(FIELDS)):
        assert (x[:, f] >= enc.offsets[f] + 1).all() and (x[:, f] < enc.offsets[f] + enc.sizes[f]).all()
    assert enc.sizes.tolist() == [c + 1 for c in FIELDS.values()]  # + the "unseen" slot
    rows, cols = pair_index(len(FIELDS))
    assert list(zip(rows[:2], cols[:2])) == [(0, 1), (0, 2)]


# ----------------------------------------------------------------------------- libsvm reader
def test_libsvm_reads_frappe_style_lines_and_gzip(tmp_path):
    text = "1 0:1 10:1 20:1\n-1 1:1 11:1 20:1\n\n1 0:1 12:1 21:1\n"
    (tmp_path / "a.libfm").write_text(text)
    with gzip.open(tmp_path / "b.libfm.gz", "wt") as fh:
        fh.write(text)
    for name in ("a.libfm", "b.libfm.gz"):
        split = read_libsvm(tmp_path / name, "rating")
        assert split.values == [["0", "10", "20"], ["1", "11", "20"], ["0", "12", "21"]]
        assert split.target.tolist() == [1.0, -1.0, 1.0]
    assert read_libsvm(tmp_path / "a.libfm", "click").target.tolist() == [1.0, 0.0, 1.0]


BAD_LIBSVM = {
    "non-numeric target": ("1 0:1 5:1\nyes 0:1 5:1\n", "rating", ["line 2", "target 'yes'", "not a number"]),
    "item without colon": ("1 0:1 5:1\n1 0:1 5\n", "rating", ["line 2", "item 2", "'5'", "idx:1"]),
    "non-integer index": ("1 0:1 5:1\n1 a:1 5:1\n", "rating", ["line 2", "'a:1'", "non-negative integer"]),
    "non-numeric value": ("1 0:1 5:x\n", "rating", ["line 1", "'5:x'", "non-numeric value"]),
    "value other than 1": ("1 0:1 5:0.5\n", "rating", ["line 1", "'5:0.5'", "one-hot"]),
    "inconsistent field count": ("1 0:1 5:1 9:1\n1 0:1 5:1 9:1\n0 1:1 6:1\n", "rating", ["line 3", "2 features", "expected 3"]),
    "label without features": ("1 0:1 5:1\n1\n", "rating", ["line 2", "without features"]),
    "click label out of range": ("1 0:1 5:1\n2 0:1 5:1\n", "click", ["line 2", "'2'", "click"]),
    "infinite target": ("inf 0:1 5:1\n", "rating", ["line 1", "finite"]),
    "empty file": ("\n\n", "rating", ["no data line"]),
}


@pytest.mark.parametrize("case", sorted(BAD_LIBSVM))
def test_libsvm_bad_inputs_name_file_and_line(case, tmp_path):
    text, target, fragments = BAD_LIBSVM[case]
    path = tmp_path / "bad.libfm"
    path.write_text(text)
    with pytest.raises(RecsysDataError) as err:
        read_libsvm(path, target)
    msg = str(err.value)
    assert str(path) in msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} missing from: {msg}"


def test_libsvm_undecodable_bytes_and_field_count_across_files(tmp_path):
    (tmp_path / "bytes.libfm").write_bytes(b"1 0:1 5:1\n1 0:1 \xff5:1\n")
    with pytest.raises(RecsysDataError, match=r"bytes\.libfm, line 2: invalid UTF-8: byte 0xff at byte offset 6 of the line"):
        read_libsvm(tmp_path / "bytes.libfm", "rating")
    (tmp_path / "train.libfm").write_text("1 0:1 5:1 9:1\n")
    (tmp_path / "valid.libfm").write_text("1 0:1 5:1 9:1\n")
    (tmp_path / "test.libfm").write_text("1 0:1 5:1 9:1\n0 0:1 5:1\n")
    spec = {"format": "libsvm", **{s: str(tmp_path / f"{s}.libfm") for s in ("train", "valid", "test")}}
    with pytest.raises(RecsysDataError) as err:
        read_files(spec, "rating")
    assert "test.libfm, line 2: 2 features, expected 3" in str(err.value) and "training file" in str(err.value)
    (tmp_path / "test.libfm").write_text("1 0:1 5:1 9:1\n")
    raw = read_files({**spec, "field_names": ["user", "item", "tag"]}, "rating")
    assert raw.fields == ["user", "item", "tag"] and raw.importance is None
    with pytest.raises(RecsysDataError, match="names 2 fields"):
        read_files({**spec, "field_names": ["user", "item"]}, "rating")


# ----------------------------------------------------------------------------- CSV reader
def test_csv_reads_categorical_columns_and_unseen_values(tmp_path):
    (tmp_path / "train.csv").write_text("user,item,city,rating\nu1,i1,paris,4\nu2,i1,rome,3.5\nu1,i2,paris,1\n")
    (tmp_path / "valid.csv").write_text("user,item,city,rating\nu1,i2,rome,2\n")
    (tmp_path / "test.csv").write_text("user,item,city,rating\nu9,i1,oslo,5\n")
    fields, split = read_csv(tmp_path / "train.csv", "rating", "rating")
    assert fields == ["user", "item", "city"] and split.target.tolist() == [4.0, 3.5, 1.0]
    fields, split = read_csv(tmp_path / "train.csv", "rating", "rating", ["item", "user"])
    assert fields == ["item", "user"] and split.values[0] == ["i1", "u1"]
    spec = {"format": "csv", "target_column": "rating", **{s: str(tmp_path / f"{s}.csv") for s in ("train", "valid", "test")}}
    enc = encode(read_files(spec, "rating"))
    assert enc.vocab["user"] == ["<unseen>", "u1", "u2"]
    assert enc.x["test"][0, 0] == enc.offsets[0] and enc.x["test"][0, 2] == enc.offsets[2]  # unseen -> slot 0
    assert enc.unseen["test"] == pytest.approx(2 / 3, abs=1e-5)


BAD_CSV = {
    "no target column": ("user,item,score\nu1,i1,3\n", ["line 1", "no target column 'rating'", "score"]),
    "non-numeric target": ("user,item,rating\nu1,i1,3\nu2,i2,good\n", ["line 3", "'good'", "column 'rating'", "not a number"]),
    "too few cells": ("user,item,rating\nu1,i1,3\nu2,5\n", ["line 3", "2 columns, expected 3"]),
    "too many cells": ("user,item,rating\nu1,i1,3,x\n", ["line 2", "4 columns, expected 3"]),
    "missing field column": ("user,rating\nu1,3\n", ["line 1", "no field column 'item'"]),
    "header only": ("user,item,rating\n", ["no data row"]),
    "duplicated column": ("user,user,rating\nu1,u2,3\n", ["line 1", "'user' appears twice"]),
    "empty file": ("", ["empty file"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_csv_bad_inputs_name_file_and_line(case, tmp_path):
    text, fragments = BAD_CSV[case]
    path = tmp_path / "bad.csv"
    path.write_text(text)
    fields = ["user", "item"] if case == "missing field column" else None
    with pytest.raises(RecsysDataError) as err:
        read_csv(path, "rating", "rating", fields)
    msg = str(err.value)
    assert str(path) in msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} missing from: {msg}"
