"""The load task's validation protocol (train.validation): a fixed subsample of validation windows that
covers every hour of the day, and the validation error it scores (MAPE by default; MSE / MAE of the
standardised target)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from attnbench import paths
from attnbench.config import ParamsError
from attnbench.validation import validate
from attnbench.tasks.load import LoadForecasting, hourly_subsample, validation_settings

from .conftest import write_params
from .test_load import _run, tiny


def test_hourly_subsample_is_fixed_even_and_covers_every_hour():
    origins = np.arange(1000, 1000 + 24 * 30)                      # 30 days of hourly origins
    hours = np.asarray(pd.date_range("2020-01-01 07:00", periods=len(origins), freq="h").hour)
    picked = hourly_subsample(origins, hours, 240)
    assert np.array_equal(picked, hourly_subsample(origins, hours, 240))   # no random draw
    assert len(picked) == 240 and np.all(np.diff(picked) > 0)
    per_hour = pd.Series(hours[picked - 1000]).value_counts()
    assert set(per_hour.index) == set(range(24)) and (per_hour == 10).all()
    # spread over the whole split, first and last day of each hour included
    assert picked[0] - 1000 < 24 and picked[-1] - 1000 >= 24 * 29
    # an hour with fewer origins than asked keeps them all; n below 24 still keeps one per hour
    assert len(hourly_subsample(origins, hours, 24 * 100)) == len(origins)
    assert len(hourly_subsample(origins, hours, 5)) == 24


def test_validation_defaults_keep_every_window_and_mape():
    assert validation_settings({"train": {}}) == ("mape", None)
    assert validation_settings({"train": {"validation": {"metric": "mse", "windows": 480}}}) == ("mse", 480)
    p = tiny()
    p["tasks"]["load"]["train"]["validation"] = {"metric": "rmse"}
    with pytest.raises(ParamsError, match=r"tasks\.load\.train\.validation\.metric: value 'rmse' is not allowed"):
        validate(p)
    p = tiny()
    p["tasks"]["load"]["train"]["validation"] = {"windows": 10}
    with pytest.raises(ParamsError, match=r"tasks\.load\.train\.validation\.windows: value 10 is not allowed"):
        validate(p)


def test_valid_error_metrics():
    class D:
        valid_metric, scale, valid_floor = "mse", 2.0, 0.01
    actual, pred = np.array([[10.0, 20.0]]), np.array([[12.0, 20.0]])
    assert LoadForecasting.valid_error(D, actual, pred) == pytest.approx(0.5)       # ((2 / 2) ** 2 + 0) / 2
    D.valid_metric = "mae"
    assert LoadForecasting.valid_error(D, actual, pred) == pytest.approx(0.5)
    D.valid_metric = "mape"
    assert LoadForecasting.valid_error(D, actual, pred) == pytest.approx(10.0)


def test_training_validates_on_the_subsample(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = tiny(["ridge", "gru"])
    params["tasks"]["load"]["train"]["validation"] = {"metric": "mse", "windows": 48}
    params["tasks"]["load"]["train"]["schedule"] = {"kind": "cosine", "warmup_fraction": 0.1, "min_lr_ratio": 0.1}
    path = write_params(tmp_path / "params.yaml", params)
    _run(path, "ridge", "gru")
    from attnbench.config import resolve_run
    from attnbench.validation import load_params
    from attnbench.tasks.load import Data
    cfg = resolve_run(load_params(path), "load", "gru", 0)
    data = Data(tmp_path / "data/prepared/load/synthetic", cfg)
    assert len(data.valid_origins) == 48 < len(data.origins["valid"])
    assert set(np.asarray(data.time[data.valid_origins].hour)) == set(range(24))
    info = json.loads((paths.run_dir("load", "synthetic", "gru", 0) / "train_info.json").read_text())
    assert info["valid_metric"] == "valid_neg_mse_48_windows"
    # the best epoch's score is minus the standardised MSE of the subsample's forecasts
    import torch

    from attnbench.training import load_trained
    task = LoadForecasting()
    model = load_trained(task, data, cfg, paths.run_dir("load", "synthetic", "gru", 0), torch.device("cpu"))
    pred, actual, _ = task.predict(model, data, data.valid_origins, torch.device("cpu"))
    assert info["best_valid"] == pytest.approx(-np.mean(((pred - actual) / data.scale) ** 2), rel=1e-5)
    log = (paths.run_dir("load", "synthetic", "gru", 0) / "train_log.csv").read_text().splitlines()
    assert len(log) == 3                                                            # header + 2 epochs
