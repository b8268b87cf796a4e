"""Load: the headline metric chosen by a rule from the training split (MAPE or MASE), MASE itself, the
day-ahead-at-a-fixed-hour protocol (`eval.origin_hour`), the univariate ETTh2 entry, and the
synthetic default's existing metrics left exactly as they were before any of this existed."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnbench import cli, paths, tasks
from attnbench.config import ParamsError, for_dataset, resolve_run
from attnbench.validation import check_dataset, validate
from attnbench.tasks.load import headline as hl

from .conftest import load_params as repo_params
from .conftest import write_params
from .test_load import _metrics, _run, tiny

BEFORE = Path(__file__).parent / "data" / "load_smoke_before"   # metrics.json from the code before MASE (ef79c1b)


# ---------------------------------------------------------------------------------------- MASE
def test_mase_on_a_hand_computed_series():
    train = np.array([1.0, 2.0, 3.0, 5.0, 4.0, 6.0])
    # season 2: |3-1|, |5-2|, |4-3|, |6-5| = 2, 3, 1, 1 -> in-sample seasonal naive MAE 7/4
    assert hl.mase_scale(train, 2) == pytest.approx(1.75)
    assert hl.mase(0.875, 1.75) == pytest.approx(0.5)
    # season 1: 1, 1, 2, 1, 2 -> 7/5
    assert hl.mase_scale(train, 1) == pytest.approx(1.4)
    # a missing value drops the pairs it is in: |3-1|, |6-5| (5 missing) -> 1.5
    gappy = train.copy()
    gappy[3] = np.nan
    assert hl.mase_scale(gappy, 2) == pytest.approx(1.5)
    # no scale: a series no longer than its season, or one that repeats exactly
    assert math.isnan(hl.mase_scale(train, 6)) and math.isnan(hl.mase_scale(np.tile([1.0, 2.0], 5), 2))
    assert math.isnan(hl.mase(1.0, float("nan")))


# ---------------------------------------------------------------------------------------- the rule
def test_rule_mape_far_from_zero_mase_across_or_near_zero():
    t = np.arange(24 * 30)
    far = 1000 + 300 * np.sin(2 * np.pi * t / 24)
    crossing = 5 * np.sin(2 * np.pi * t / 24) + 1                 # changes sign
    touching = np.abs(50 * np.sin(2 * np.pi * t / 48))            # never negative, but comes to zero often
    assert hl.choose(far, 24, 0.01)["metric"] == "mape"
    r = hl.choose(crossing, 24, 0.01)
    assert r["metric"] == "mase" and r["changes_sign"] and "changes sign" in r["reason"]
    r = hl.choose(touching, 24, 0.01)
    assert not r["changes_sign"] and r["near_zero_share"] >= 0.01
    assert r["metric"] == "mase" and "near zero" in r["reason"]
    # the share threshold is a setting; a negative series far from zero keeps MAPE
    assert hl.choose(touching, 24, 0.01, max_share=0.5)["metric"] == "mape"
    assert hl.choose(-far, 24, 0.01)["metric"] == "mape"
    # max_share 0: a single value below the floor is one too many (ETTh2's training split has one zero)
    one_zero = far.copy()
    one_zero[5] = 0.0
    assert hl.choose(one_zero, 24, 0.01)["metric"] == "mape"
    assert hl.choose(one_zero, 24, 0.01, max_share=0.0)["metric"] == "mase"
    assert hl.choose(far, 24, 0.01, max_share=0.0)["metric"] == "mape"
    # eval.headline forces either one
    assert hl.choose(far, 24, 0.01, forced="mase")["metric"] == "mase"
    assert hl.choose(crossing, 24, 0.01, forced="mape")["rule"] == "forced"


def _crossing_csv(path: Path, hours: int = 24 * 70) -> None:
    """An hourly series around zero (a temperature, say): daily cycle plus noise, both signs."""
    rng = np.random.default_rng(3)
    t = pd.date_range("2023-01-02", periods=hours, freq="h")
    y = 2 + 8 * np.sin(2 * np.pi * (t.hour.to_numpy() - 9) / 24) + rng.normal(0, 1, hours)
    pd.DataFrame({"time": t.strftime("%Y-%m-%d %H:%M"), "temp": y.round(3)}).to_csv(path, index=False)


def test_series_crossing_zero_gets_mase_in_manifest_metrics_and_leaderboard(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _crossing_csv(tmp_path / "temp.csv")
    params = tiny(["seasonal-naive", "ridge", "dlinear"])
    d = params["tasks"]["load"]["data"]
    d["source"] = "csv"
    d["csv"] = {"path": str(tmp_path / "temp.csv"), "timestamp": "time", "target": "temp"}
    path = write_params(tmp_path / "params.yaml", validate(params))
    _run(path, "seasonal-naive", "ridge", "dlinear")

    manifest = json.loads((paths.prepared_dir("load", "synthetic") / "manifest.json").read_text())
    rule = manifest["headline"]
    assert rule["metric"] == "mase" and rule["changes_sign"] is True and "changes sign" in rule["reason"]
    with np.load(paths.prepared_dir("load", "synthetic") / "series.npz") as z:
        train = z["load"][slice(*manifest["splits"]["train"]["steps"])]
    assert rule["mase_scale"] == pytest.approx(np.mean(np.abs(train[24:] - train[:-24])))   # season 24

    runs = {r: _metrics(r) for r in ("seasonal-naive", "ridge", "dlinear")}
    for m in runs.values():
        assert m["headline"] == "mase" and m["mase_scale"] == pytest.approx(rule["mase_scale"], abs=1e-4)
        assert m["mase"] == pytest.approx(m["mae"] / rule["mase_scale"], abs=2e-4)
        assert m["mase_by_step"]["1"] == pytest.approx(m["mae_by_step"]["1"] / rule["mase_scale"], abs=2e-4)
        assert m["mase_rise"] == pytest.approx(m["mase_corrupted"] - m["mase"], abs=2e-4)

    # the section: headline MASE, leaderboard sorted by it, its column first
    from attnbench.report.aggregate import aggregate
    from attnbench.tasks.load import report as section

    view = for_dataset(validate(params), "load", "synthetic")
    aggregate(view, "load")
    ctx = section.context(view, "load", out_dir=tmp_path / "reports")
    assert ctx["headline"] == "mase" and "changes sign" in ctx["headline_reason"]
    labels = [c["label"] for c in ctx["leaderboard"]["columns"]]
    assert labels[3:5] == ["MASE clean", "MASE corrupted"] and "MAPE clean (%)" in labels
    order = [row["run"] for row in ctx["leaderboard"]["rows"]]
    assert order == sorted(runs, key=lambda r: runs[r]["mase"])
    assert ctx["best"] == order[0]


def test_manifest_records_mape_for_the_synthetic_series(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_params(tmp_path / "params.yaml", tiny(["seasonal-naive"]))
    assert cli.main(["-q", "--params", str(path), "prepare", "--task", "load"]) == 0
    rule = json.loads((paths.prepared_dir("load", "synthetic") / "manifest.json").read_text())["headline"]
    assert rule["metric"] == "mape" and rule["rule"] == "auto" and not rule["changes_sign"]
    assert rule["near_zero_share"] == 0.0 and "stays away from zero" in rule["reason"]


# ---------------------------------------------------------------------------------------- synthetic unchanged
def test_synthetic_default_existing_metrics_unchanged(tmp_path, monkeypatch):
    """The repo's synthetic default at smoke scale, two closed-form runs: every key metrics.json had before
    the headline rule existed has the same value, byte for byte; MASE and the headline are added."""
    monkeypatch.chdir(tmp_path)
    p = repo_params()
    p["scale"], p["device"], p["seeds"] = "smoke", "cpu", [0]
    section = p["tasks"]["load"]
    p["tasks"] = {"load": section}
    section["runs"] = {r: section["runs"][r] for r in ("seasonal-naive", "ridge")}
    path = write_params(tmp_path / "params.yaml", p)
    _run(path, "seasonal-naive", "ridge")
    for run in ("seasonal-naive", "ridge"):
        before = json.loads((BEFORE / f"{run}.json").read_text())
        after = _metrics(run)
        changed = [k for k in before if json.dumps(before[k], sort_keys=True) != json.dumps(after.get(k), sort_keys=True)]
        assert not changed, (run, changed)
        assert after["headline"] == "mape" and 0 < after["mase"] < 2 and set(after) - set(before) >= {"mase", "mase_by_step"}


# ---------------------------------------------------------------------------------------- protocols
def test_origin_hour_sets_the_day_ahead_forecast_hour(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = tiny(["ridge"])
    params["tasks"]["load"]["eval"]["stride"] = 24
    path = write_params(tmp_path / "params.yaml", validate(params))
    assert cli.main(["-q", "--params", str(path), "prepare", "--task", "load"]) == 0
    task = tasks.get("load")
    hours = {}
    for hour in (0, 6, 17):
        params["tasks"]["load"]["eval"]["origin_hour"] = hour
        cfg = resolve_run(validate(params), "load", "ridge", 0)
        data = task.load(paths.prepared_dir("load", "synthetic"), cfg)
        test = data.origins["test"]
        hours[hour] = set(data.time[test].hour)
        assert len(test) > 3 and np.all(np.diff(test) == 24)
        assert np.array_equal(data.origins["train"], task.load(paths.prepared_dir("load", "synthetic"),
                                                                resolve_run(validate(tiny(["ridge"])), "load", "ridge", 0)).origins["train"])
    assert hours == {0: {0}, 6: {6}, 17: {17}}
    params["tasks"]["load"]["eval"]["origin_hour"] = 24
    with pytest.raises(ParamsError, match=r"origin_hour"):
        validate(params)


def test_etth2_univariate_entry_validates_without_covariates(tmp_path):
    p = validate(repo_params())
    options = p["tasks"]["load"]["dataset_options"]
    assert "etth2-univariate" in options and "etth2-univariate" not in p["tasks"]["load"]["datasets"]
    uni, cov = options["etth2-univariate"]["data"], options["etth2"]["data"]
    assert "features" not in uni["csv"] and cov["csv"]["features"]["observed"]
    assert {k: v for k, v in uni["csv"].items()} == {k: v for k, v in cov["csv"].items() if k != "features"}
    check_dataset(p, "load", "etth2-univariate")          # the task's own checks accept it
