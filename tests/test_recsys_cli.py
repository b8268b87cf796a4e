"""recsys end to end through the CLI in tmp_path: tiny synthetic runs (rating and click), a libsvm
corpus, a bad file, determinism of metrics.json, and the report section rendered from the results."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from attnbench import cli, paths
from attnbench.config import REPO_ROOT, for_dataset
from attnbench.validation import load_params
from attnbench.report import render_report
from attnbench.report.aggregate import aggregate

from .conftest import write_params

XSS = "<script>alert(1)</script>"


def _tiny(target: str = "rating", runs=("linear", "fm", "afm")) -> dict:
    p = load_params(REPO_ROOT / "params.yaml", {"scale": "smoke"})
    p["tasks"] = {"recsys": p["tasks"]["recsys"]}
    t = p["tasks"]["recsys"]
    t["data"]["target"] = target
    t["data"]["synthetic"] = {"fields": {"user": 30, "item": 40, "hour": 6, "device": 3}, "factors": 4,
                              "strong_pairs": 2, "noise": 0.3}
    t["scales"]["smoke"] = {"train_size": 600, "valid_size": 100, "test_size": 150, "epochs": 2}
    t["train"]["batch_size"] = 128
    t["models"]["linear"]["alphas"] = [1.0, 10.0]
    for model in ("fm", "afm", "nfm"):
        t["models"][model]["k"] = 4
    t["eval"]["samples"] = 5
    t["runs"] = {r: t["runs"][r] for r in runs}
    return p


def _run(path, *runs, prepare=True):
    steps = [["prepare", "--task", "recsys"]] if prepare else []
    for run in runs:
        steps += [["train", "--task", "recsys", "--run", run, "--seed", "0"],
                  ["evaluate", "--task", "recsys", "--run", run, "--seed", "0"]]
    for argv in steps:
        assert cli.main(["-q", "--params", str(path), *argv]) == 0, argv


def _metrics(run: str) -> dict:
    return json.loads((paths.run_dir("recsys", "synthetic", run, 0) / "metrics.json").read_text())


def test_synthetic_rating_runs_metrics_exports_determinism_and_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = _tiny()
    path = write_params(tmp_path / "params.yaml", params)
    _run(path, "linear", "fm", "afm")
    manifest = json.loads((paths.prepared_dir("recsys", "synthetic") / "manifest.json").read_text())
    assert manifest["ground_truth"] and manifest["pairs"] == 6 and len(manifest["strong_pairs"]) == 2
    lin, fm, afm = _metrics("linear"), _metrics("fm"), _metrics("afm")
    for m in (lin, fm, afm):
        assert m["target"] == "rating" and m["rmse"] > 0 and m["logloss"] is None and m["auc"] is None
        assert m["oracle_rmse"] == manifest["oracle"]["rmse"]
    assert lin["pair_spearman"] is None and lin["interaction_spearman"] is None
    assert fm["pair_spearman"] is None and fm["interaction_spearman"] is not None
    assert afm["has_attention"] and -1 <= afm["pair_spearman"] <= 1 and 0 <= afm["strong_pair_recall"] <= 1
    assert 0 < afm["attention_entropy"] <= 1
    info = json.loads((paths.run_dir("recsys", "synthetic", "linear", 0) / "train_info.json").read_text())
    assert info["epochs_trained"] == 1 and info["parameters"] == lin["parameters"]
    with np.load(paths.run_dir("recsys", "synthetic", "afm", 0) / "attention.npz", allow_pickle=False) as z:
        assert [str(f) for f in z["fields"]] == ["user", "item", "hour", "device"]
        assert z["importance"].shape == z["attention_mean"].shape == (6,) and z["strong"].sum() == 2
        assert z["attention_examples"].shape == (64, 6)
        np.testing.assert_allclose(z["attention_examples"].sum(1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(z["attention_mean"].sum(), 1.0, rtol=1e-5)
    with np.load(paths.run_dir("recsys", "synthetic", "fm", 0) / "attention.npz", allow_pickle=False) as z:
        assert np.isnan(z["attention_mean"]).all() and np.isfinite(z["contribution_std"]).all()
    with np.load(paths.run_dir("recsys", "synthetic", "afm", 0) / "items.npz") as z:   # what RMSE scored, per example
        rmse = float(np.sqrt(np.mean((z["target"].astype(float) - z["prediction"].astype(float)) ** 2)))
        assert rmse == pytest.approx(afm["rmse"], rel=1e-4)
    samples = (paths.run_dir("recsys", "synthetic", "afm", 0) / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 5 and "top_pair" in json.loads(samples[0]) and "user=user" in json.loads(samples[0])["features"]

    # determinism: retraining and re-evaluating from scratch gives a byte-identical metrics.json
    first = (paths.run_dir("recsys", "synthetic", "afm", 0) / "metrics.json").read_bytes()
    for folder in (paths.run_dir("recsys", "synthetic", "afm", 0), paths.state_dir("recsys", "synthetic", "afm", 0)):
        for f in folder.iterdir():
            f.unlink()
    _run(path, "afm", prepare=False)
    assert (paths.run_dir("recsys", "synthetic", "afm", 0) / "metrics.json").read_bytes() == first

    # the report section: leaderboard, claim C7 with its computed verdict, pair matrices, escaped and inline
    aggregate(for_dataset(params, "recsys", "synthetic"), "recsys")
    out = paths.report_html()
    render_report(params, out)
    html = out.read_text(encoding="utf-8")
    section = html[html.index('<section id="recsys">'):html.index('<section id="provenance">')]
    for run in ("linear", "fm", "afm"):
        assert f'data-sort="{run}"' in section
    assert "<td>C7</td>" in section and re.search(
        r'class="badge na">inconclusive \(smoke scale\)<', section)   # at smoke scale, whatever the figures
    assert f"{afm['rmse']:.3f}" in section and "0.3102" in section and "different data" in section
    assert "Field-pair attention beside the true importance" in section
    images = re.findall(r'<img\b[^>]*\bsrc="([^"]*)"', section)
    assert len(images) >= 3 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "hour×device" in section or "hour × device" in section


def test_click_target_reports_logloss_and_auc(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_params(tmp_path / "params.yaml", _tiny("click", runs=("linear", "nfm")))
    _run(path, "linear", "nfm")
    manifest = json.loads((paths.prepared_dir("recsys", "synthetic") / "manifest.json").read_text())
    assert 0.3 < manifest["click_rate"]["train"] < 0.7 and "auc" in manifest["oracle"]
    for run in ("linear", "nfm"):
        m = _metrics(run)
        assert m["target"] == "click" and 0 < m["logloss"] < 1.5 and 0 <= m["auc"] <= 1 and 0 <= m["rmse"] <= 1


def test_libsvm_files_end_to_end_and_escaped_in_the_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for split, n in (("train", 300), ("valid", 60), ("test", 80)):
        lines = []
        for _ in range(n):
            u, i, t = rng.integers(0, 20), rng.integers(20, 50), rng.integers(50, 60)
            label = 1 if (u + i + t) % 3 else -1
            lines.append(f"{label} {u}:1 {i}:1 {t}:1")
        (tmp_path / f"{split}.libfm").write_text("\n".join(lines) + "\n")
    params = _tiny("rating", runs=("fm", "afm"))
    params["tasks"]["recsys"]["data"] = {"source": "files", "target": "rating", "files": {
        "format": "libsvm", "train": "train.libfm", "valid": "valid.libfm", "test": "test.libfm",
        "field_names": ["user", XSS, "tag"]}}
    path = write_params(tmp_path / "params.yaml", params)
    _run(path, "fm", "afm")
    manifest = json.loads((paths.prepared_dir("recsys", "synthetic") / "manifest.json").read_text())
    assert manifest["source"] == "files" and not manifest["ground_truth"] and manifest["pairs"] == 3
    afm = _metrics("afm")
    assert afm["pair_spearman"] is None and afm["interaction_spearman"] is None and afm["rmse"] > 0
    aggregate(for_dataset(params, "recsys", "synthetic"), "recsys")
    render_report(params, paths.report_html())
    html = paths.report_html().read_text(encoding="utf-8")
    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "no true pair importances" in html
    # the analysis notebook runs on data without a ground truth too (the synthetic path runs in the pipeline test)
    assert cli.main(["-q", "--params", str(path), "notebook", "--task", "recsys"]) == 0
    nb = json.loads(paths.notebook("recsys", "synthetic").read_text(encoding="utf-8"))
    assert not [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert "no run exported pair scores with a ground truth" in json.dumps(nb)
    assert XSS not in paths.notebook("recsys", "synthetic", "html").read_text(encoding="utf-8")


@pytest.mark.parametrize("fmt", ["libsvm", "csv"])
def test_bad_file_stops_prepare_naming_file_and_line(fmt, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if fmt == "libsvm":
        good, bad = "1 0:1 5:1\n", "1 0:1 5:1\n1 1:1 6:1\n0 0:1 5:1 7:1\n"
    else:
        good, bad = "user,item,rating\nu,i,3\n", "user,item,rating\nu,i,3\nu,j,many\n"
    (tmp_path / f"good.{fmt}").write_text(good)
    (tmp_path / f"bad.{fmt}").write_text(bad)
    params = _tiny(runs=("fm",))
    params["tasks"]["recsys"]["data"] = {"source": "files", "target": "rating", "files": {
        "format": fmt, "train": f"good.{fmt}", "valid": f"good.{fmt}", "test": f"bad.{fmt}",
        **({"target_column": "rating"} if fmt == "csv" else {})}}
    path = write_params(tmp_path / "params.yaml", params)
    assert cli.main(["--params", str(path), "prepare", "--task", "recsys"]) == 1
    err = capsys.readouterr().err
    assert f"attnbench: error: bad.{fmt}, line 3" in err
    assert ("3 features, expected 2" in err) if fmt == "libsvm" else ("'many'" in err and "not a number" in err)
    assert not (tmp_path / "data").exists()


def _entry(run, model, rmse, std=None, attention="none"):
    return {"run": run, "model": model, "attention": attention, "mean": {"rmse": rmse},
            "rmse": {"mean": rmse, "std": std}}


@pytest.mark.parametrize("afm,fm,std,verdict", [
    (0.90, 1.00, None, "supported"),          # 10% gain >= half the paper's ~8.5%
    (0.97, 1.00, None, "partly supported"),   # 3%
    (0.90, 1.00, 0.06, "partly supported"),   # 10%, but within the seeds' spread (0.06 + 0.06)
    (1.01, 1.00, None, "not supported"),
    (1.60, 1.70, None, "inconclusive"),       # neither beats the linear model (1.5)
])
def test_c7_verdict_is_computed_from_the_metrics(afm, fm, std, verdict):
    from attnbench.tasks.recsys.report import _claims

    runs = [_entry("linear", "linear", 1.5), _entry("fm", "fm", fm, std), _entry("afm", "afm", afm, std, "afm"),
            _entry("afm-none", "afm", 0.5, None, "none")]  # AFM without attention is not the claim's AFM
    (claim,) = _claims(runs, "rating")
    assert claim["id"] == "C7" and claim["verdict"] == verdict
    assert "different data" in claim["paper"] and "8.4%" in claim["paper"] and "8.7%" in claim["paper"]
    if verdict != "inconclusive":
        assert f"{afm:.4f}" in claim["evidence"] and f"{fm:.4f}" in claim["evidence"]
    assert _claims(runs[:2], "rating")[0]["verdict"] == "not measurable"
