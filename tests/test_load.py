"""Load forecasting: the generator's ground truth, the anomaly injector, the MAPE guard, the models'
attention properties, and runs through the CLI (closed-form baselines, feature attention, the
anomaly mask), determinism and the report section."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from attnbench import cli, paths
from attnbench.attention import build
from attnbench.config import ParamsError, for_dataset
from attnbench.validation import load_params, validate
from attnbench.metrics import forecast_scores, guarded_mape, mask_roc_auc, smape
from attnbench.models.forecaster import AnomalyMask, FeatureAttention, RecurrentForecaster, SeasonalNaive
from attnbench.tasks.load.data import KINDS, NOISE, corrupt, generate

from .conftest import load_params as repo_params
from .conftest import write_params


def tiny(runs: list[str] | None = None) -> dict:
    """The repo's params, load only, shrunk: 70 days, a 48-step window, small models, 1-2 epochs."""
    p = repo_params()
    p["scale"], p["device"], p["seeds"] = "smoke", "cpu", [0]
    section = p["tasks"]["load"]
    p["tasks"] = {"load": section}
    section["data"].update({"window": 48, "horizon": 12, "season": 24})
    section["scales"]["smoke"] = {"days": 70, "train_stride": 3, "epochs": 2}
    section["eval"]["stride"] = 3
    small = {"dim": 8, "hidden": 16, "head_hidden": 16, "dropout": 0.0}
    for model in ("gru", "feature_attn"):
        section["models"][model] = dict(small)
    section["models"]["anomaly_mask"] = {**small, "train_corruption": 0.5, "mask_loss": 0.5}
    section["models"]["transformer"] = {"d_model": 8, "heads": 2, "layers": 1, "ffn_dim": 16, "head_hidden": 16,
                                        "patch": 4, "dropout": 0.0}
    if runs is not None:
        section["runs"] = {r: section["runs"][r] for r in runs}
    return p


def _run(path, *runs: str, prepare: bool = True) -> None:
    steps = [["prepare", "--task", "load"]] if prepare else []
    for run in runs:
        steps += [["train", "--task", "load", "--run", run, "--seed", "0"],
                  ["evaluate", "--task", "load", "--run", run, "--seed", "0"]]
    for argv in steps:
        assert cli.main(["-q", "--params", str(path), *argv]) == 0, argv


def _metrics(run: str) -> dict:
    return json.loads((paths.run_dir("load", "synthetic", run, 0) / "metrics.json").read_text())


# ---------------------------------------------------------------------------------------- generator
def test_generator_ground_truth():
    s = generate(400, seed=3)
    assert len(s.time) == len(s.load) == 400 * 24 and s.features.shape == (400 * 24, len(s.feature_names))
    assert (s.time[1] - s.time[0]).seconds == 3600 and s.time[0].day_of_week == 0
    assert np.isfinite(s.load).all() and (s.load > 0).all()
    # the irrelevant features are exactly the noise ones, and the load does not depend on them
    assert [n for n, bad in zip(s.feature_names, s.irrelevant) if bad] == list(NOISE)
    assert s.truth["irrelevant_features"] == list(NOISE)
    daily = s.load.reshape(-1, 24).mean(1)
    for name in NOISE:
        col = s.features[:, s.feature_names.index(name)].reshape(-1, 24).mean(1)
        assert abs(np.corrcoef(col, daily)[0, 1]) < 0.2, name
    # holidays look like rest days: lower than the same weekdays that are not holidays
    hol = s.features[:, s.feature_names.index("holiday")] > 0
    workday = s.time.day_of_week < 5
    assert hol.sum() >= 24 * 6 and s.truth["holidays"]
    assert s.load[hol & workday].mean() < 0.95 * s.load[~hol & workday].mean()
    # weekly cycle: weekends below workdays; non-linear temperature response: cold and hot days above mild days
    assert s.load[~workday].mean() < 0.95 * s.load[workday & ~hol].mean()
    temp = s.features[:, 0].reshape(-1, 24).mean(1)
    mild = daily[(temp > 14) & (temp < 19)].mean()
    assert daily[temp < 5].mean() > 1.1 * mild and daily[temp > 24].mean() > 1.03 * mild
    # deterministic in the seed
    again = generate(400, seed=3)
    assert np.array_equal(again.load, s.load) and np.array_equal(again.features, s.features)
    assert not np.array_equal(generate(400, seed=4).load, s.load)


def test_corrupt_records_every_anomaly_and_leaves_the_rest():
    rng = np.random.default_rng(0)
    values = 500 + 100 * np.sin(np.arange(5000) / 7.0) + rng.normal(0, 5, 5000)
    bad, kind = corrupt(values, np.random.default_rng(1), rate=0.05, scale=50.0, start=1000)
    assert (kind[:1000] == 0).all() and np.array_equal(bad[:1000], values[:1000])
    assert np.array_equal(bad[kind == 0], values[kind == 0])
    assert abs((kind[1000:] > 0).mean() - 0.05) < 0.01
    assert set(np.unique(kind[kind > 0])) == set(KINDS)
    assert (bad[kind == 2] == 0).all()                                              # drop-outs to zero
    assert (bad[kind == 1] - values[kind == 1] >= 3 * 50.0 - 1e-9).all()            # spikes: +3..6 sigma
    stuck = np.flatnonzero(kind == 3)
    assert (bad[stuck] == bad[stuck - 1]).all()                                     # stuck: repeats the previous reading
    for code, (_, lo, hi) in KINDS.items():                                         # run lengths as documented
        runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], kind == code, [0]]).astype(int))))[::2]
        assert runs.min() >= lo and runs.max() <= hi


# ---------------------------------------------------------------------------------------- metrics
def test_mape_guard_excludes_and_counts_near_zero_targets():
    from sklearn.metrics import mean_absolute_percentage_error

    y = np.array([100.0, 0.0, 200.0, 1e-9, 50.0])
    p = np.array([110.0, 5.0, 180.0, 3.0, 50.0])
    mape, excluded = guarded_mape(y, p, floor=1.0)
    assert excluded == 2 and math.isfinite(mape)
    keep = np.abs(y) >= 1.0
    assert mape == pytest.approx(100 * mean_absolute_percentage_error(y[keep], p[keep]))
    assert mape == pytest.approx(100 * np.mean([0.1, 0.1, 0.0]))
    assert mean_absolute_percentage_error(y, p) > 1e6  # what the guard protects against
    assert math.isnan(guarded_mape(np.zeros(3), np.ones(3), floor=0.5)[0])
    assert guarded_mape(np.zeros(3), np.ones(3), floor=0.5)[1] == 3
    assert smape([0.0, 100.0], [0.0, 100.0]) == 0.0 and smape([100.0], [300.0]) == pytest.approx(100.0)
    s = forecast_scores(np.array([[100.0, 0.0], [200.0, 100.0]]), np.array([[90.0, 1.0], [220.0, 100.0]]), 1.0)
    assert s["mape_excluded"] == 1 and s["mape"] == pytest.approx(100 * (0.1 + 0.1 + 0.0) / 3)
    assert s["mape_by_step"] == pytest.approx({"1": 10.0, "2": 0.0}) and set(s["rmse_by_step"]) == {"1", "2"}
    assert s["mae"] == pytest.approx((10 + 1 + 20 + 0) / 4)
    assert mask_roc_auc([True, False, False], [0.1, 0.9, 0.8]) == 1.0 and mask_roc_auc([False, False], [1, 1]) is None


# ---------------------------------------------------------------------------------------- models
def test_model_properties():
    torch.manual_seed(0)
    b, t, h, f = 3, 48, 12, 5
    x, z = torch.randn(b, t, 1 + f), torch.randn(b, h, f)
    naive, _ = SeasonalNaive(t, h, 24)(x, z)
    assert torch.equal(naive, x[:, 24:36, 0])
    fa = FeatureAttention(f, 8, 10, "additive", {"attn_dim": 8})
    ctx, w = fa(z, torch.randn(b, h, 10))
    assert ctx.shape == (b, h, 8) and w.shape == (b, h, f)
    torch.testing.assert_close(w.sum(-1), torch.ones(b, h))
    mask = AnomalyMask(8, "neighbour", {"window": 3})
    out, m = mask(torch.randn(b, t, 8))
    assert out.shape == (b, t, 8) and m.shape == (b, t) and ((m > 0) & (m < 1)).all()
    for option, key, shape in (("temporal", "temporal_weights", (b, h, t)), ("feature", "feature_weights", (b, h, f)),
                               ("mask", "mask", (b, t)), (None, None, None)):
        kind = {option: {"temporal": "general", "feature": "additive", "mask": "neighbour"}[option]} if option else {}
        pred, extras = RecurrentForecaster(f, t, h, dim=8, hidden=16, head_hidden=16, **kind)(x, z)
        assert pred.shape == (b, h)
        assert (extras[key].shape == shape and len(extras) == 1) if key else not extras


def test_neighbour_attention_leaves_the_step_out():
    attn = build("neighbour", 6, 6, 6, window=2)
    x = torch.randn(2, 10, 6)
    _, w = attn(x, x, x)
    assert torch.all(torch.diagonal(w, dim1=1, dim2=2) == 0)
    far = (torch.arange(10).view(1, -1) - torch.arange(10).view(-1, 1)).abs() > 2
    assert torch.all(w[:, far] == 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 10))
    # with padding: steps past the last real key still attend over real keys only
    mask = torch.arange(10).unsqueeze(0) < torch.tensor([[10], [3]])
    _, w = attn(x, x, x, mask)
    assert torch.all(w[1, :, 3:] == 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 10))


def test_neighbour_attention_builds_one_mask_for_a_batch_of_unpadded_windows():
    attn = build("neighbour", 6, 6, 6, window=2)
    x = torch.randn(3, 9, 6, requires_grad=True)
    # no key mask and the same positions in every row: one [1, Tq, Tk] mask, broadcast over the batch
    assert attn.allowed(9, None, torch.arange(9).expand(3, 9)).shape == (1, 9, 9)
    # positions that differ between rows, or a key mask: one mask per example, as before
    shifted = torch.stack([torch.arange(9), torch.arange(9), torch.arange(9) + 1])
    assert attn.allowed(9, None, shifted).shape == (3, 9, 9)
    every = torch.ones(3, 9, dtype=torch.bool)
    assert attn.allowed(9, every, torch.arange(9).expand(3, 9)).shape == (3, 9, 9)
    # the shared mask gives exactly what the per-example one gives (an all-true key mask takes that path)
    shared, w_shared = attn(x, x, x)
    each, w_each = attn(x, x, x, every)
    assert torch.equal(shared, each) and torch.equal(w_shared, w_each)
    g_shared, = torch.autograd.grad(shared.sum(), x)
    g_each, = torch.autograd.grad(each.sum(), x)
    assert torch.equal(g_shared, g_each)


def test_check_params_names_the_key():
    p = tiny()
    p["tasks"]["load"]["data"]["season"] = 200
    with pytest.raises(ParamsError, match=r"tasks\.load\.data\.season: value 200"):
        validate(p)
    p = tiny()
    p["tasks"]["load"]["runs"]["bad"] = {"model": "feature_attn", "attention": "none"}
    with pytest.raises(ParamsError, match=r"tasks\.load\.runs\.bad\.attention"):
        validate(p)
    p = tiny()
    p["tasks"]["load"]["eval"]["stride"] = 5
    with pytest.raises(ParamsError, match=r"tasks\.load\.eval\.stride: value 5"):
        validate(p)


# ---------------------------------------------------------------------------------------- end to end
def test_cli_runs_baselines_feature_attention_and_mask(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = tiny(["seasonal-naive", "ridge", "feature-attention", "anomaly-mask"])
    path = write_params(tmp_path / "params.yaml", params)
    _run(path, "seasonal-naive", "ridge", "feature-attention", "anomaly-mask")

    manifest = json.loads((tmp_path / "data/prepared/load/synthetic/manifest.json").read_text())
    assert manifest["irrelevant_features"] == list(NOISE) and manifest["anomalies"]["targets_corrupted"] is False
    assert manifest["splits"]["train"]["steps"][1] == manifest["splits"]["valid"]["steps"][0]
    assert manifest["splits"]["valid"]["steps"][1] == manifest["splits"]["test"]["steps"][0]
    with np.load(tmp_path / "data/prepared/load/synthetic/series.npz") as z:
        kind, load, bad = z["anomaly_kind"], z["load"], z["load_corrupted"]
        test_start = manifest["splits"]["test"]["steps"][0]
        assert (kind[: test_start - 48] == 0).all() and (kind > 0).any()          # only the test inputs
        assert np.array_equal(load[kind == 0], bad[kind == 0])
        # scaling statistics come from the training split only
        train = slice(*manifest["splits"]["train"]["steps"])
        assert manifest["scaling"]["mean"]["load"] == pytest.approx(load[train].mean())

    naive, ridge, feat, masked = (_metrics(r) for r in ("seasonal-naive", "ridge", "feature-attention", "anomaly-mask"))
    for m in (naive, ridge, feat, masked):
        assert set(m["mape_by_step"]) == {str(h) for h in range(1, 13)}
        assert m["mape_corrupted"] > 0 and m["mape_excluded"] == 0 and m["test_windows"] > 10
    assert ridge["mape"] < naive["mape"]                                           # a fitted model beats naive
    assert 0 < feat["irrelevant_attention"] < 1 and feat["uniform_share"] == pytest.approx(3 / 12)
    assert feat["mask_auc"] is None and masked["irrelevant_attention"] is None
    assert 0.5 < masked["mask_auc"] <= 1.0 and set(masked["mask_auc_by_kind"]) == {"spike", "dropout", "stuck"}
    info = json.loads((paths.run_dir("load", "synthetic", "ridge", 0) / "train_info.json").read_text())
    assert info["epochs_trained"] == 0 and info["parameters"] == 0
    with np.load(paths.run_dir("load", "synthetic", "feature-attention", 0) / "attention.npz") as z:
        assert z["feature_weights"].shape == (12, 12)
        assert z["example_input"].shape == (48,) and z["example_kind"].any()
    with np.load(paths.run_dir("load", "synthetic", "anomaly-mask", 0) / "attention.npz") as z:
        assert z["example_mask"].shape == (48,) and z["day_mask"].shape == z["day_kind"].shape
    with np.load(paths.run_dir("load", "synthetic", "ridge", 0) / "items.npz") as z:   # per test origin
        assert z["ape"].shape == z["ape_corrupted"].shape == z["ae"].shape
        assert float(np.nanmean(z["ape"])) == pytest.approx(ridge["mape"], rel=0.02)   # equal weights: no floor here
    lines = (paths.run_dir("load", "synthetic", "ridge", 0) / "samples.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["origin"].endswith("T00:00:00") and len(first["forecast"]) == 12

    # the report section renders every run, the claims and the figures, escaped and self-contained
    from attnbench.report import render_report
    from attnbench.report.aggregate import aggregate

    params = load_params(path)
    aggregate(for_dataset(params, "load", "synthetic"), "load")
    render_report(params, paths.report_html())
    html = paths.report_html().read_text()
    for run in params["tasks"]["load"]["runs"]:
        assert run in html
    assert "<td>C9</td>" in html and "<td>C10</td>" in html
    assert "not measurable" in html                                                 # no plain GRU run here
    assert html.count("data:image/png;base64,") >= 4
    assert "MAPE clean (%)" in html and "MAPE corrupted (%)" in html


def test_same_seed_gives_identical_metrics(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = tiny(["anomaly-mask"])
    params["tasks"]["load"]["scales"]["smoke"]["epochs"] = 1
    path = write_params(tmp_path / "params.yaml", params)
    _run(path, "anomaly-mask")
    first = (paths.run_dir("load", "synthetic", "anomaly-mask", 0) / "metrics.json").read_bytes()
    import shutil

    shutil.rmtree(paths.RESULTS)
    shutil.rmtree(paths.STATE)
    _run(path, "anomaly-mask", prepare=False)
    assert (paths.run_dir("load", "synthetic", "anomaly-mask", 0) / "metrics.json").read_bytes() == first


def test_report_section_without_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from attnbench.report import render_report

    params = validate(tiny())
    render_report(params, paths.report_html())
    html = paths.report_html().read_text()
    assert "Load forecasting" in html and "No results yet" in html
