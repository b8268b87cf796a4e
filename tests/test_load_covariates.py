"""Load: known-in-advance versus observed-only covariates, and the DLinear baseline.

An observed-only feature (say another load of the same transformer) is known up to the forecast
origin and never after it: replacing its values over the horizon must leave every forecast of every
model and baseline exactly as it was, while replacing them inside the input window must not (for
the models that read exogenous inputs). The same feature declared known must move the forecasts,
so the check can fail."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from attnbench import cli, paths, tasks
from attnbench.config import ParamsError, resolve_run
from attnbench.validation import validate
from attnbench.models.forecaster import DLinearForecaster, moving_average_matrix
from attnbench.tasks.load.data import CALENDAR, declared_features, read_csv

from .conftest import write_params
from .test_load import tiny

WINDOW, HORIZON = 48, 12
ALL_RUNS = ("seasonal-naive", "ridge", "dlinear", "gru", "gru-attention", "feature-attention", "anomaly-mask",
            "transformer")


def _csv(path, hours: int = 24 * 60) -> None:
    """Hourly load driven by a known temperature (at the same step) and by an observed feeder load
    one and two steps earlier, so that a fitted linear model leans on the feeder's lags."""
    rng = np.random.default_rng(5)
    t = pd.date_range("2023-01-02", periods=hours, freq="h")
    temp = 10 + 6 * np.sin(2 * np.pi * np.arange(hours) / 24) + rng.normal(0, 1, hours)
    feeder = np.convolve(rng.normal(0, 20, hours + 10), np.ones(6) / 6, mode="same")[:hours]
    load = (500 + 80 * np.sin(2 * np.pi * (t.hour.to_numpy() - 6) / 24) - 4 * temp
            + 0.8 * np.roll(feeder, 1) + 0.5 * np.roll(feeder, 2) + rng.normal(0, 2, hours))
    pd.DataFrame({"time": t.strftime("%Y-%m-%d %H:%M"), "load": load.round(3), "temp": temp.round(3),
                  "feeder": feeder.round(3)}).to_csv(path, index=False)


def _params(tmp_path, features) -> dict:
    p = tiny()
    d = p["tasks"]["load"]["data"]
    d["source"] = "csv"
    d["csv"] = {"path": str(tmp_path / "load.csv"), "timestamp": "time", "target": "load", "features": features}
    return p


def _prepared(tmp_path, monkeypatch, features):
    monkeypatch.chdir(tmp_path)
    _csv(tmp_path / "load.csv")
    params = validate(_params(tmp_path, features))
    path = write_params(tmp_path / "params.yaml", params)
    assert cli.main(["-q", "--params", str(path), "prepare", "--task", "load"]) == 0
    return params


def _model(params, run: str, tmp_path):
    """(task, data, model) of a run: closed-form runs fitted through the task's own fit, the networks
    at their (seeded) initial weights, which suffices for a property of the architecture."""
    task = tasks.get("load")
    cfg = resolve_run(params, "load", run, 0)
    data = task.load(paths.prepared_dir("load", "synthetic"), cfg)
    if cfg["model"] in ("seasonal_naive", "ridge", "dlinear"):
        run_dir = tmp_path / "runs" / run
        run_dir.mkdir(parents=True, exist_ok=True)
        task.fit(data, cfg, run_dir, tmp_path / "state" / run, torch.device("cpu"))
        model = task.load_trained(data, cfg, run_dir, torch.device("cpu"))
    else:
        torch.manual_seed(0)
        model = task.build_model(cfg, data).eval()
    return task, data, model


def _forecasts(task, data, model, origins) -> list[np.ndarray]:
    out = []
    for corrupted in (False, True):
        for o in origins:   # one origin at a time: one window's horizon is a later window's input
            pred, _, _ = task.predict(model, data, np.array([o]), torch.device("cpu"), corrupted=corrupted)
            out.append(pred)
    return out


def _replace(data, column: int, steps: np.ndarray, rng: np.random.Generator) -> None:
    """Put noise into one feature column at `steps` of both the clean and the corrupted copy."""
    noise = torch.from_numpy(rng.normal(0.0, 3.0, len(steps)).astype(np.float32))
    for series in (data.series, data.corrupted):
        series[torch.from_numpy(steps), column] = noise


def _changes(params, run, tmp_path, where: str) -> bool:
    """Whether noise in the feeder column (inside the input windows or over the horizons) changes
    any forecast of `run` on a few test origins."""
    task, data, model = _model(params, run, tmp_path)
    column = 1 + data.feature_names.index("feeder")
    origins = data.origins["test"][[0, len(data.origins["test"]) // 2, -1]]
    before = _forecasts(task, data, model, origins)
    rng = np.random.default_rng(11)
    for o in origins:
        steps = np.arange(o, o + HORIZON) if where == "horizon" else np.arange(o - WINDOW, o)
        _replace(data, column, steps, rng)
    after = _forecasts(task, data, model, origins)
    return not all(np.array_equal(a, b) for a, b in zip(before, after))


def test_observed_only_feature_never_reaches_a_forecast_through_the_horizon(tmp_path, monkeypatch):
    params = _prepared(tmp_path, monkeypatch, {"known": ["temp"], "observed": ["feeder"]})
    manifest = json.loads((tmp_path / "data/prepared/load/synthetic/manifest.json").read_text())
    assert manifest["observed_features"] == ["feeder"] and manifest["known_features"] == ["temp", *CALENDAR]
    assert set(params["tasks"]["load"]["runs"]) == set(ALL_RUNS)
    for run in ALL_RUNS:
        assert not _changes(params, run, tmp_path, "horizon"), f"{run}: an observed-only feature leaked from the horizon"
    # inside the input window it is an input of every model that reads exogenous features
    for run in ("ridge", "gru", "gru-attention", "feature-attention", "anomaly-mask", "transformer"):
        assert _changes(params, run, tmp_path, "window"), f"{run}: the observed feature's past is not used"
    # the univariate baselines read the load alone
    for run in ("seasonal-naive", "dlinear"):
        assert not _changes(params, run, tmp_path, "window"), run


def test_the_same_feature_declared_known_does_reach_the_forecasts(tmp_path, monkeypatch):
    params = _prepared(tmp_path, monkeypatch, {"known": ["temp", "feeder"]})
    for run in ("ridge", "gru", "feature-attention", "transformer"):
        assert _changes(params, run, tmp_path, "horizon"), run


def test_known_features_only_over_the_horizon(tmp_path, monkeypatch):
    params = _prepared(tmp_path, monkeypatch, ["feeder", "temp"])     # a plain list: observed-only
    _, data, model = _model(params, "ridge", tmp_path)
    assert data.known_names == list(CALENDAR)
    x, z, _ = data.windows(data.origins["test"][:4])
    assert x.shape[2] == 1 + 2 + len(CALENDAR) and z.shape[2] == len(CALENDAR)
    # ridge: load lags, both observed features' lags, the calendar over the horizon
    assert model.coef.shape == (HORIZON, WINDOW + 2 * WINDOW + HORIZON * len(CALENDAR))


def test_synthetic_features_are_all_known(tmp_path, monkeypatch):
    """The synthetic default keeps feeding every feature over the horizon (its results unchanged)."""
    monkeypatch.chdir(tmp_path)
    path = write_params(tmp_path / "params.yaml", tiny())
    assert cli.main(["-q", "--params", str(path), "prepare", "--task", "load"]) == 0
    task = tasks.get("load")
    data = task.load(paths.prepared_dir("load", "synthetic"), resolve_run(validate(tiny()), "load", "gru", 0))
    assert data.known.all() and data.known_names == data.feature_names
    origins = data.origins["test"][:3]
    _, z, _ = data.windows(origins)
    o = torch.as_tensor(origins).unsqueeze(1)
    assert torch.equal(z, data.series[o + torch.arange(HORIZON)][:, :, 1:])


def test_report_names_the_roles(tmp_path, monkeypatch):
    from attnbench.report import render_report

    monkeypatch.chdir(tmp_path)
    params = validate(_params(tmp_path, {"known": ["temp"], "observed": ["feeder"]}))
    render_report(params, paths.report_html())
    html = paths.report_html().read_text()
    assert "the calendar features, temp." in html and "never after it): feeder." in html


def test_declared_features_and_the_reader(tmp_path):
    assert declared_features(["a", "b"]) == (["a", "b"], [False, False])
    assert declared_features({"known": ["k"], "observed": ["o"]}) == (["k", "o"], [True, False])
    assert declared_features({"observed": ["o"]}) == (["o"], [False])
    assert declared_features(None) == ([], [])
    _csv(tmp_path / "load.csv", hours=200)
    s = read_csv({"path": str(tmp_path / "load.csv"), "timestamp": "time", "target": "load",
                  "features": {"known": ["temp"], "observed": ["feeder"]}})
    assert s.feature_names == ["temp", "feeder", *CALENDAR]
    assert s.known == [True, False, *[True] * len(CALENDAR)]


def test_params_errors_name_the_key(tmp_path):
    p = _params(tmp_path, {"known": ["temp", "feeder"], "observed": ["feeder"]})
    with pytest.raises(ParamsError, match=r"tasks\.load\.data\.csv\.features\.observed: value 'feeder' is not "
                                          r"allowed: it is also declared under tasks\.load\.data\.csv\.features\.known"):
        validate(p)
    p = _params(tmp_path, {"known": ["temp"], "future": ["feeder"]})
    with pytest.raises(ParamsError, match=r"tasks\.load\.data\.csv\.features: unknown key 'future'; allowed keys: "
                                          r"known, observed"):
        validate(p)
    p = _params(tmp_path, "feeder")
    with pytest.raises(ParamsError, match=r"tasks\.load\.data\.csv\.features: value 'feeder' is not allowed"):
        validate(p)
    p = tiny()
    p["tasks"]["load"]["models"]["dlinear"]["kernel"] = 24
    with pytest.raises(ParamsError, match=r"tasks\.load\.models\.dlinear\.kernel: value 24 is not allowed"):
        validate(p)
    p = tiny()
    p["tasks"]["load"]["runs"]["dlinear"]["attention"] = "additive"
    with pytest.raises(ParamsError, match=r"tasks\.load\.runs\.dlinear\.attention: value 'additive'"):
        validate(p)


# ---------------------------------------------------------------------------------------- DLinear
def test_moving_average_matches_dlinears_padded_average_pool():
    x = torch.randn(3, 40, dtype=torch.float64)
    k = 7
    padded = torch.cat([x[:, :1].repeat(1, (k - 1) // 2), x, x[:, -1:].repeat(1, (k - 1) // 2)], dim=1)
    reference = torch.nn.functional.avg_pool1d(padded.unsqueeze(1), k, stride=1).squeeze(1)
    torch.testing.assert_close(x @ moving_average_matrix(40, k).T, reference)
    with pytest.raises(ValueError, match="odd"):
        moving_average_matrix(40, 4)
    model = DLinearForecaster(40, 5, k)
    design = model.design(x.float().unsqueeze(-1))
    torch.testing.assert_close(design[:, :40] + design[:, 40:], x)   # trend + remainder = the window


def test_dlinear_fits_a_series_exactly_linear_in_its_window(tmp_path, monkeypatch):
    """Two sinusoids of unrelated periods plus a linear trend obey a linear recurrence of order 6, so
    every future step is an exact linear function of a 48-step window: DLinear's forecasts must be
    exact (to float32 storage), where the seasonal naive forecast is not."""
    monkeypatch.chdir(tmp_path)
    n = 24 * 60
    step = np.arange(n)
    load = 1000 + 0.05 * step + 120 * np.sin(2 * np.pi * step / 24 + 0.3) + 45 * np.sin(2 * np.pi * step / 37.3)
    t = pd.date_range("2023-01-02", periods=n, freq="h")
    pd.DataFrame({"time": t.strftime("%Y-%m-%d %H:%M"), "load": load}).to_csv(tmp_path / "lin.csv", index=False)
    p = tiny(["seasonal-naive", "dlinear"])
    d = p["tasks"]["load"]["data"]
    d["source"], d["csv"] = "csv", {"path": str(tmp_path / "lin.csv"), "timestamp": "time", "target": "load"}
    p["tasks"]["load"]["models"]["dlinear"] = {"kernel": 25, "alphas": [1e-9, 1.0]}
    path = write_params(tmp_path / "params.yaml", p)
    for argv in (["prepare", "--task", "load"],
                 *[[step_, "--task", "load", "--run", run, "--seed", "0"]
                   for run in ("seasonal-naive", "dlinear") for step_ in ("train", "evaluate")]):
        assert cli.main(["-q", "--params", str(path), *argv]) == 0, argv
    metrics = {r: json.loads((paths.run_dir("load", "synthetic", r, 0) / "metrics.json").read_text())
               for r in ("seasonal-naive", "dlinear")}
    assert metrics["dlinear"]["mape"] < 1e-3, metrics["dlinear"]["mape"]          # percent
    assert metrics["dlinear"]["mae_scaled"] < 1e-4
    assert metrics["seasonal-naive"]["mape"] > 1.0
    state = torch.load(paths.run_dir("load", "synthetic", "dlinear", 0) / "model.pt", weights_only=True)
    assert float(state["model"]["alpha"]) == 1e-9                                   # chosen on validation
