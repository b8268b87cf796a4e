"""The load task's CSV reader: the documented policy (sorting, duplicates, gaps, formats) and bad
inputs, each stopping `prepare` with the file and the line or column named and nothing written."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from attnbench import cli
from attnbench.tasks.load.data import SeriesFileError, read_csv

from .conftest import write_params
from .test_load import tiny

SPEC = {"timestamp": "time", "target": "load"}


def _frame(hours: int = 24 * 40, start: str = "2022-03-01") -> pd.DataFrame:
    t = pd.date_range(start, periods=hours, freq="h")
    rng = np.random.default_rng(0)
    load = 800 + 150 * np.sin(2 * np.pi * t.hour / 24) + rng.normal(0, 10, hours)
    return pd.DataFrame({"time": t.strftime("%d.%m.%Y %H:%M"), "load": load.round(2),
                         "temp": (10 + 5 * np.cos(2 * np.pi * t.hour / 24)).round(2)})


def test_policy_sorted_duplicates_dropped_gaps_skipped(tmp_path):
    frame = _frame()
    messy = frame.drop(index=range(300, 305)).sample(frac=1.0, random_state=1)  # a 5-hour gap, shuffled
    messy = pd.concat([messy, frame.iloc[[10, 11, 12]].assign(load=-1.0)])      # later duplicates: dropped
    path = tmp_path / "load.csv.gz"
    with gzip.open(path, "wt") as fh:
        messy.to_csv(fh, index=False)
    s = read_csv({**SPEC, "path": str(path), "features": ["temp"], "format": "%d.%m.%Y %H:%M"})
    assert s.truth["duplicates_dropped"] == 3 and s.truth["missing_steps"] == 5 and s.truth["unsorted_rows"] > 0
    assert len(s.time) == 24 * 40 and s.time.is_monotonic_increasing
    assert np.isnan(s.load[300:305]).all() and not np.isnan(np.delete(s.load, range(300, 305))).any()
    assert (s.load[10:13] == frame["load"].to_numpy()[10:13]).all()              # the first row of a duplicate kept
    assert s.feature_names[0] == "temp" and "hour_sin" in s.feature_names and not any(s.irrelevant)


def test_prepare_from_csv_counts_skipped_windows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frame = _frame().drop(index=range(500, 503))
    frame.to_csv(tmp_path / "load.csv", index=False)
    params = tiny(["seasonal-naive"])
    params["tasks"]["load"]["data"].update({"source": "csv", "csv": {**SPEC, "path": "load.csv", "features": ["temp"],
                                                                      "format": "%d.%m.%Y %H:%M"}})
    path = write_params(tmp_path / "params.yaml", params)
    for argv in (["prepare", "--task", "load"], ["train", "--task", "load", "--run", "seasonal-naive", "--seed", "0"],
                 ["evaluate", "--task", "load", "--run", "seasonal-naive", "--seed", "0"]):
        assert cli.main(["-q", "--params", str(path), *argv]) == 0
    manifest = json.loads((tmp_path / "data/prepared/load/synthetic/manifest.json").read_text())
    assert manifest["source"] == "csv" and manifest["missing_steps"] == 3
    assert manifest["ground_truth"]["missing_steps"] == 3
    skipped = sum(s["windows_skipped_missing"] for s in manifest["splits"].values())
    assert skipped == 48 + 12 + 3 - 1                       # every window whose span touches the gap
    assert manifest["irrelevant_features"] == []
    metrics = json.loads((tmp_path / "data/results/load/synthetic/seasonal-naive/seed0/metrics.json").read_text())
    assert metrics["irrelevant_attention"] is None and metrics["mape"] > 0


BAD = {
    "missing column": (b"time,lod\n2022-01-01 00:00,1\n", {}, ["load.csv", "column 'load' not found", "'lod'"]),
    "non-numeric value": (b"time,load\n2022-01-01 00:00,1\n\n2022-01-01 01:00,12O\n", {},
                          ["load.csv", "line 4", "column 'load'", "'12O'", "not a number"]),
    "non-numeric feature": (b"time,load,temp\n2022-01-01 00:00,1,3\n2022-01-01 01:00,2,warm\n", {"features": ["temp"]},
                            ["load.csv", "line 3", "column 'temp'", "'warm'"]),
    "bad timestamp": (b"time,load\n2022-01-01 00:00,1\n2022-13-45 01:00,2\n", {"format": "%Y-%m-%d %H:%M"},
                      ["load.csv", "line 3", "column 'time'", "2022-13-45 01:00", "%Y-%m-%d %H:%M"]),
    "empty file": (b"", {}, ["load.csv", "empty"]),
    "header only": (b"time,load\n", {}, ["load.csv", "no data rows"]),
    "too short": (b"time,load\n" + b"".join(f"2022-01-01 {h:02d}:00,{h}\n".encode() for h in range(24)), {},
                  ["load.csv", "too short", "24 steps", "at least"]),
    "off the grid": (b"time,load\n2022-01-01 00:00,1\n2022-01-01 00:30,2\n", {},
                     ["load.csv", "2022-01-01 00:30:00", "not on the grid"]),
    "not utf-8": (b"time,load\n2022-01-01 00:00,\xff\n", {}, ["load.csv", "UTF-8"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_csv_is_named_and_nothing_is_prepared(case, tmp_path, monkeypatch, capsys):
    content, extra, expected = BAD[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "load.csv").write_bytes(content)
    params = tiny(["seasonal-naive"])
    params["tasks"]["load"]["data"].update({"source": "csv", "csv": {**SPEC, "path": "load.csv", **extra}})
    path = write_params(tmp_path / "params.yaml", params)
    assert cli.main(["--params", str(path), "prepare", "--task", "load"]) == 1
    err = capsys.readouterr().err
    assert "attnbench: error:" in err
    for fragment in expected:
        assert fragment in err, f"{fragment!r} missing from: {err}"
    assert not (tmp_path / "data").exists()


def test_reader_errors_are_data_errors(tmp_path):
    with pytest.raises(SeriesFileError, match="nope.csv: file not found"):
        read_csv({**SPEC, "path": str(tmp_path / "nope.csv")})
