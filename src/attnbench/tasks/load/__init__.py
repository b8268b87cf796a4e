"""Load: multi-step electric load forecasting with feature attention and anomaly-masking attention.

An input window (168 h by default) of the load and its exogenous features gives a forecast for each
of the next 24 hours. Features are known in advance (calendar, holiday, a weather forecast: their
values at the forecast steps are used) or observed only (used up to the forecast origin, never over
the horizon); `Data.windows` is the one place that cuts them, so no model or baseline can see an
observed-only feature after the origin. Runs: seasonal naive (same hour last week), ridge
regression (scikit-learn; load lags, observed-only features' lags, known features over the horizon)
and DLinear (moving-average trend + remainder of the load window, each mapped linearly to the
horizon) fitted in closed form; a GRU without and with temporal attention over its states; per-horizon
feature attention; an anomaly-masking attention layer after the feature mapping (trained with
corruption applied to its inputs); a Transformer encoder over time.

Data: the embedded synthetic series (data.py; it marks its irrelevant noise features) or a CSV
(data.py's reader). Splits are chronological; scaling statistics come from the training split only. A
corrupted copy of the test inputs (spikes, drop-outs to zero, stuck values; targets never touched)
has its gold anomaly positions recorded.

Metrics, overall and per horizon step, on clean and on corrupted test inputs: MAPE (scikit-learn;
guard: targets with |y| below `eval.mape_floor` x the training split's mean |y| are excluded and
counted in `mape_excluded`, never divided by), sMAPE, MAE, RMSE (scikit-learn), and MAE and MSE of the
standardised target (`mae_scaled`, `mse_scaled`: errors divided by the training split's standard
deviation, as the ETT benchmarks report them); the feature
attention's mass on the irrelevant features; ROC-AUC (scikit-learn) of 1 - mask weight against the
gold anomaly positions.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ... import attention
from ... import io as aio
from ...errors import ParamsError
from ...metrics import forecast_scores, mask_roc_auc
from ...models.forecaster import (AnomalyMask, DLinearForecaster, FeatureAttention, RecurrentForecaster,
                                  RidgeForecaster, SeasonalNaive, TransformerForecaster)
from .. import register
from ..common import check_mechanism, mechanism_option, round_floats, write_items
from ..base import Task
from . import headline as hl
from .data import KINDS, Series, corrupt, generate, read_csv

SPLITS = ("train", "valid", "test")
NEURAL = ("gru", "feature_attn", "anomaly_mask", "transformer")
CLOSED_FORM = ("seasonal_naive", "ridge", "dlinear")
# each model and the part of it that takes the run's mechanism, whose `attention_needs` the run must meet
TAKES_MECHANISM = {"seasonal_naive": SeasonalNaive, "ridge": RidgeForecaster, "dlinear": DLinearForecaster,
                   "gru": RecurrentForecaster, "feature_attn": FeatureAttention, "anomaly_mask": AnomalyMask,
                   "transformer": TransformerForecaster}
EVAL_BATCH = 512
VALID_MAPE_FLOOR = 0.01   # the MAPE guard of the validation metric (fixed: training must not depend on eval settings)


def split_bounds(n: int, valid_fraction: float, test_fraction: float) -> dict[str, tuple[int, int]]:
    """Chronological [start, end) of each split's target steps."""
    n_test = int(round(n * test_fraction))
    n_valid = int(round(n * valid_fraction))
    n_train = n - n_valid - n_test
    return {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n_train + n_valid, n)}


def window_origins(start: int, end: int, window: int, horizon: int, usable: np.ndarray, stride: int = 1,
                   phase: int = 0) -> tuple[np.ndarray, int]:
    """Origins o (input [o - window, o), targets [o, o + horizon) inside [start, end)) on the stride
    grid `o % stride == phase % stride`, keeping only windows whose every step is usable; also
    returns the number of grid windows skipped for touching a missing step."""
    first = max(start, window)
    candidates = np.arange(first, end - horizon + 1)
    candidates = candidates[(candidates - phase) % stride == 0]
    if not len(candidates):
        return candidates.astype(np.int64), 0
    bad = np.concatenate([[0], np.cumsum(~usable)])
    ok = bad[candidates + horizon] - bad[candidates - window] == 0
    return candidates[ok].astype(np.int64), int((~ok).sum())


VALID_METRICS = ("mape", "mse", "mae")


def validation_settings(cfg: dict) -> tuple[str, int | None]:
    """(metric, windows) of `train.validation`; absent: ("mape", None), every validation window's MAPE."""
    v = cfg.get("train", {}).get("validation") or {}
    windows = v.get("windows", "all")
    return v.get("metric", "mape"), None if windows == "all" else int(windows)


def hourly_subsample(origins: np.ndarray, hours: np.ndarray, n: int) -> np.ndarray:
    """A fixed subsample of `origins` covering every hour of the day: n // 24 origins (all of them when
    an hour has fewer) at each hour `hours` names, evenly spaced in time. No random draw: the same
    windows every epoch, run and seed."""
    per_hour = max(1, n // 24)
    keep = []
    for h in range(24):
        at = origins[hours == h]
        if len(at) > per_hour:
            at = at[np.round(np.linspace(0, len(at) - 1, per_hour)).astype(np.int64)]
        keep.append(at)
    return np.sort(np.concatenate(keep)).astype(np.int64)


class Data:
    """The prepared series as tensors, the split origins and the gold anomaly positions."""

    def __init__(self, prepared: Path, cfg: dict) -> None:
        prepared = Path(prepared)
        self.manifest = aio.read_json(prepared / "manifest.json")
        with np.load(prepared / "series.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        d = cfg["data"]
        self.window, self.horizon, self.season = d["window"], d["horizon"], d["season"]
        self.time = pd.DatetimeIndex(arrays["time"].astype("datetime64[s]"))
        self.load = arrays["load"]                                    # raw, NaN where missing
        self.kind = arrays["anomaly_kind"]                            # gold kinds of the corrupted copy
        self.feature_names = [str(s) for s in arrays["feature_names"]]
        self.irrelevant = arrays["irrelevant"].astype(bool)
        # known in advance (used over the horizon) vs observed-only; data prepared before the roles
        # existed declared every feature known
        self.known = arrays["known"].astype(bool) if "known" in arrays else np.ones(len(self.feature_names), bool)
        self.known_index = torch.from_numpy(np.flatnonzero(self.known) + 1)          # columns of `series`
        self.observed_index = [int(i) for i in np.flatnonzero(~self.known)]          # among the F features
        self.known_names = [n for n, k in zip(self.feature_names, self.known) if k]
        self.mean, self.std = arrays["mean"], arrays["std"]           # [1 + F], from the training split
        raw = np.column_stack([self.load, arrays["features"]])
        usable = ~np.isnan(raw).any(axis=1)
        scaled = np.nan_to_num((raw - self.mean) / self.std)
        self.series = torch.from_numpy(scaled.astype(np.float32))
        corrupted = scaled.copy()
        corrupted[:, 0] = np.nan_to_num((arrays["load_corrupted"] - self.mean[0]) / self.std[0])
        self.corrupted = torch.from_numpy(corrupted.astype(np.float32))
        self.scale = float(self.std[0])
        self.mape_floor = float(cfg["eval"]["mape_floor"]) * float(self.manifest["target_abs_mean"])
        # the headline rule on the training split, under this evaluation's settings (prepare recorded
        # the same choice in the manifest; recomputed here so a changed eval section cannot leave it stale)
        train_steps = slice(*self.manifest["splits"]["train"]["steps"])
        forced, max_share = hl.settings(cfg["eval"])
        self.headline = hl.choose(self.load[train_steps], self.season, cfg["eval"]["mape_floor"], max_share, forced)
        self.mase_scale = hl.mase_scale(self.load[train_steps], self.season)
        self.valid_floor = VALID_MAPE_FLOOR * float(self.manifest["target_abs_mean"])
        bounds = {s: tuple(self.manifest["splits"][s]["steps"]) for s in SPLITS}
        # validation windows at every step: early stopping must not depend on the evaluation settings
        stride = {"train": cfg["size"]["train_stride"], "valid": 1, "test": cfg["eval"]["stride"]}
        # origin grids: training windows from midnight on; test origins from `eval.origin_hour` on (with
        # stride 24: one day-ahead forecast a day, made at that hour)
        phase = {s: self.first_at(0) for s in SPLITS}
        phase["test"] = self.first_at(int(cfg["eval"].get("origin_hour", 0)))
        self.origins = {s: window_origins(*bounds[s], self.window, self.horizon, usable, stride[s], phase[s])[0]
                        for s in SPLITS}
        # the windows validation scores (train.validation.windows): every one, or a fixed subsample by hour of day
        self.valid_metric, valid_windows = validation_settings(cfg)
        self.valid_origins = self.origins["valid"]
        if valid_windows is not None and valid_windows < len(self.valid_origins):
            hours = np.asarray(self.time[self.valid_origins].hour)
            self.valid_origins = hourly_subsample(self.valid_origins, hours, valid_windows)
        every = window_origins(*bounds["test"], self.window, self.horizon, usable)[0]
        at_midnight = (self.time[every].hour == 0) & (self.time[every].minute == 0)
        self.day_origins = every[np.asarray(at_midnight, dtype=bool)]          # day-ahead forecasts
        self.offsets = torch.arange(-self.window, 0)
        self.targets = torch.arange(0, self.horizon)

    def first_at(self, hour: int) -> int:
        """The first step at `hour`:00 (0 when the series has none)."""
        at = np.flatnonzero((self.time.hour == hour) & (self.time.minute == 0))
        return int(at[0]) if len(at) else 0

    def windows(self, origins: np.ndarray, corrupted: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x [B, T, 1+F], z [B, H, K], y [B, H]) of the windows at `origins` (scaled; y always clean).

        x: the load and every feature up to the origin; z: the K known-in-advance features at the
        target steps. An observed-only feature's values at or after the origin go nowhere."""
        o = torch.as_tensor(origins, dtype=torch.long).unsqueeze(1)
        source = self.corrupted if corrupted else self.series
        x = source[o + self.offsets]
        future = self.series[o + self.targets]
        z = future[:, :, 1:] if self.known.all() else future[:, :, self.known_index]
        return x, z, future[:, :, 0]

    def corrupt_windows(self, x: torch.Tensor, origins: np.ndarray, rng: np.random.Generator,
                        rate: float) -> torch.Tensor:
        """Inject anomalies into the load channel of x (in place); return the gold mask [B, T]."""
        gold = np.zeros((len(origins), self.window), dtype=bool)
        for i, o in enumerate(origins):
            raw = self.load[o - self.window:o]
            bad, kind = corrupt(raw, rng, rate, self.scale)
            x[i, :, 0] = torch.from_numpy(((bad - self.mean[0]) / self.std[0]).astype(np.float32))
            gold[i] = kind > 0
        return torch.from_numpy(gold)

    def unscale(self, y: torch.Tensor | np.ndarray) -> np.ndarray:
        y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y
        return y.astype(np.float64) * self.std[0] + self.mean[0]


class LoadForecasting(Task):
    name = "load"
    valid_metric = "valid_neg_mape"
    headline = "mape"
    higher_is_better = False   # MAPE is an error: lower is better
    metric_columns = ("mape", "mape_corrupted", "mape_rise", "mase", "mase_corrupted", "smape", "mae", "rmse",
                      "mask_auc", "irrelevant_attention")

    # ---- parameters and data ------------------------------------------------------------
    def check_params(self, section: dict, origin: str) -> None:
        d = section["data"]
        if not d["horizon"] <= d["season"] <= d["window"]:
            raise ParamsError(f"{origin}: tasks.load.data.season: value {d['season']!r} is not allowed; expected "
                              f"horizon ({d['horizon']}) <= season <= window ({d['window']}), so that the seasonal "
                              "naive forecast reads inside the input window")
        if d["valid_fraction"] + d["test_fraction"] >= 0.9:
            raise ParamsError(f"{origin}: tasks.load.data.test_fraction: value {d['test_fraction']!r} is not allowed; "
                              "expected valid_fraction + test_fraction < 0.9 (the rest is the training split)")
        if d["source"] == "csv" and "csv" not in d:
            raise ParamsError(f"{origin}: tasks.load.data: missing key 'csv' (required with source: csv)")
        features = d.get("csv", {}).get("features")
        if isinstance(features, dict):
            both = [f for f in features.get("known") or [] if f in (features.get("observed") or [])]
            if both:
                raise ParamsError(f"{origin}: tasks.load.data.csv.features.observed: value {both[0]!r} is not allowed: "
                                  "it is also declared under tasks.load.data.csv.features.known; expected each "
                                  "feature under one of known (its values at the forecast steps are available at "
                                  "the forecast origin) or observed (they are not)")
        kernel = section["models"].get("dlinear", {}).get("kernel", 1)
        if kernel % 2 == 0 or kernel > d["window"]:
            raise ParamsError(f"{origin}: tasks.load.models.dlinear.kernel: value {kernel!r} is not allowed; expected an "
                              f"odd number of steps <= data.window ({d['window']}) (a centred moving average)")
        if 24 % section["eval"]["stride"]:
            raise ParamsError(f"{origin}: tasks.load.eval.stride: value {section['eval']['stride']!r} is not allowed; "
                              "expected a divisor of 24 (1, 2, 3, 4, 6, 8, 12 or 24)")
        patch = section["models"].get("transformer", {}).get("patch", 1)
        if d["window"] % patch:
            raise ParamsError(f"{origin}: tasks.load.models.transformer.patch: value {patch!r} is not allowed; expected a "
                              f"divisor of data.window ({d['window']})")
        for run, spec in section["runs"].items():
            model, mech = spec["model"], spec["attention"]
            if model not in section["models"]:
                raise ParamsError(f"{origin}: tasks.load.runs.{run}.model: value {model!r} is not allowed: it has no entry "
                                  f"under tasks.load.models; expected one of: {', '.join(section['models'])}")
            part = TAKES_MECHANISM[model]
            check_mechanism(f"{origin}: tasks.load.runs.{run}", model, mech, part.attention_needs)
            limit = mechanism_option(mech, spec.get("options", {}), "max_len")
            if getattr(part, "keys", None) == "window" and limit is not None and limit < d["window"]:
                raise ParamsError(f"{origin}: tasks.load.runs.{run}.options.max_len: value {limit} is too small: {mech} "
                                  f"attention scores at most max_len positions, and model {model!r} gives it the "
                                  f"{d['window']} steps of the input window; expected >= {d['window']}")

    def prepare(self, params: dict, out_dir: Path) -> dict:
        section = params["tasks"]["load"]
        d, size = section["data"], section["scales"][params["scale"]]
        window, horizon = d["window"], d["horizon"]
        if d["source"] == "synthetic":
            series = generate(size["days"], seed=d["seed"])
        else:
            spare = 1.0 - d["valid_fraction"] - d["test_fraction"]
            need = int(np.ceil((window + horizon) / min(spare, d["valid_fraction"], d["test_fraction"]))) + 1
            series = read_csv(d["csv"], min_steps=need)
        n = len(series.time)
        bounds = split_bounds(n, d["valid_fraction"], d["test_fraction"])
        raw = np.column_stack([series.load, series.features])
        train = raw[slice(*bounds["train"])]
        mean = np.nanmean(train, axis=0)
        std = np.nanstd(train, axis=0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        usable = ~np.isnan(raw).any(axis=1)
        windows, skipped = {}, {}
        for s in SPLITS:
            origins, skip = window_origins(*bounds[s], window, horizon, usable)
            windows[s], skipped[s] = len(origins), skip
        for s in SPLITS:
            if windows[s] == 0:
                where = d["csv"]["path"] if d["source"] == "csv" else "the synthetic series"
                raise ParamsError(f"{where}: the {s} split ({bounds[s][1] - bounds[s][0]} steps) holds no complete window "
                                  f"of {window} input + {horizon} target steps without a missing step; expected a "
                                  "longer series (or smaller window/horizon, other split fractions)")
        # the corrupted copy of the test inputs (the window before the first test target onwards)
        rng = np.random.default_rng([d["seed"], 1])
        test_inputs = max(bounds["test"][0] - window, 0)
        corrupted, kind = corrupt(series.load, rng, d["corruption_rate"], float(std[0]), start=test_inputs)
        events = {}
        for code, (label, _, _) in KINDS.items():
            steps = kind == code
            events[label] = {"events": int((np.diff(np.concatenate([[0], steps.astype(int)])) == 1).sum()),
                             "steps": int(steps.sum())}
        out_dir.mkdir(parents=True, exist_ok=True)
        with aio.atomic_path(out_dir / "series.npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, time=series.time.to_numpy().astype("datetime64[s]"), load=series.load,
                                load_corrupted=corrupted, anomaly_kind=kind, features=series.features,
                                feature_names=np.array(series.feature_names), irrelevant=np.array(series.irrelevant),
                                known=np.array(series.known, dtype=bool), mean=mean, std=std)
        stamp = lambda i: series.time[i].isoformat()  # noqa: E731
        forced, max_share = hl.settings(section["eval"])
        manifest = {
            "task": "load", "source": d["source"], "scale": params["scale"], "steps": n,
            "start": stamp(0), "end": stamp(n - 1), "window": window, "horizon": horizon, "season": d["season"],
            "splits": {s: {"steps": list(bounds[s]), "first_target": stamp(bounds[s][0]),
                           "last_target": stamp(bounds[s][1] - 1), "windows": windows[s],
                           "windows_skipped_missing": skipped[s]} for s in SPLITS},
            "features": series.feature_names,
            "known_features": [f for f, k in zip(series.feature_names, series.known) if k],
            "observed_features": [f for f, k in zip(series.feature_names, series.known) if not k],
            "irrelevant_features": [f for f, bad in zip(series.feature_names, series.irrelevant) if bad],
            "scaling": {"from": "train split", "mean": dict(zip(["load", *series.feature_names], map(float, mean))),
                        "std": dict(zip(["load", *series.feature_names], map(float, std)))},
            "target_abs_mean": float(np.nanmean(np.abs(train[:, 0]))),
            "headline": hl.choose(train[:, 0], d["season"], section["eval"]["mape_floor"], max_share, forced),
            "missing_steps": int((~usable).sum()),
            "anomalies": {"rate": d["corruption_rate"], "span": [stamp(test_inputs), stamp(n - 1)],
                          "corrupted_steps": int((kind > 0).sum()), "by_kind": events,
                          "targets_corrupted": False},
            "ground_truth": series.truth,
        }
        aio.write_json(out_dir / "manifest.json", manifest)
        return manifest

    def load(self, prepared: Path, cfg: dict) -> Data:
        return Data(Path(prepared), cfg)

    # ---- models and training ----------------------------------------------------------
    def build_model(self, cfg: dict, data: Data) -> nn.Module:
        kind, opts, mech = cfg["model"], dict(cfg["model_options"]), cfg["attention"]
        f, k = len(data.feature_names), len(data.known_names)
        shape = (f, data.window, data.horizon)
        if kind == "seasonal_naive":
            return SeasonalNaive(data.window, data.horizon, data.season)
        if kind == "ridge":
            return RidgeForecaster(data.window, data.horizon, f, observed=data.observed_index, n_known=k)
        if kind == "dlinear":
            return DLinearForecaster(data.window, data.horizon, int(opts["kernel"]))
        if kind == "transformer":
            return TransformerForecaster(*shape, **opts, n_known=k, attention=mech)
        torch_opts = {key: v for key, v in opts.items() if key not in ("train_corruption", "mask_loss")}
        torch_opts["n_known"] = k
        mech_opts = cfg["attention_options"]
        if kind == "gru":
            return RecurrentForecaster(*shape, **torch_opts, temporal=mech if attention.get_class(mech).attends else None,
                                       attention_options=mech_opts)
        if kind == "feature_attn":
            return RecurrentForecaster(*shape, **torch_opts, feature=mech, attention_options=mech_opts)
        if kind == "anomaly_mask":
            model = RecurrentForecaster(*shape, **torch_opts, mask=mech, attention_options=mech_opts)
            model._mask_loss = float(opts["mask_loss"])  # weight of the mask's BCE on the training corruption
            return model
        raise ValueError(f"unknown load model {kind!r}")

    def fit(self, data: Data, cfg: dict, run_dir: Path, state_dir: Path, device: torch.device) -> dict:
        if cfg["model"] not in CLOSED_FORM:
            return super().fit(data, cfg, run_dir, state_dir, device)
        from ...training import save_trained, seed_everything

        t0 = time.perf_counter()
        seed_everything(cfg["seed"])
        model = self.build_model(cfg, data)
        if cfg["model"] == "ridge":
            self._fit_linear(model, data, cfg, model.design)
        elif cfg["model"] == "dlinear":
            self._fit_linear(model, data, cfg, lambda x, z: model.design(x))
        model = model.to(device).eval()
        best = float(self.validate(model, data, cfg, device))
        return save_trained(model, cfg, run_dir, [], device=device, best_epoch=0, best_valid=best,
                            train_seconds=time.perf_counter() - t0)

    def _fit_linear(self, model: RidgeForecaster | DLinearForecaster, data: Data, cfg: dict, features) -> None:
        """scikit-learn Ridge on the model's design `features(x, z)` (ridge: [load window; observed-only
        features' windows; known features at the target steps]; dlinear: [trend; remainder] of the load
        window), one output per horizon step; alpha chosen on the validation error (train.validation)."""
        from sklearn.linear_model import Ridge

        def design(origins):
            x, z, y = data.windows(origins)
            return features(x, z).double().numpy(), y.double().numpy()

        xt, yt = design(data.origins["train"])
        xv, yv = design(data.valid_origins)
        best = None
        for alpha in cfg["model_options"]["alphas"]:
            reg = Ridge(alpha=float(alpha), solver="cholesky").fit(xt, yt)
            score = self.valid_error(data, data.unscale(yv), data.unscale(reg.predict(xv)))
            if best is None or score < best[0]:
                best = (score, float(alpha), reg)
        _, alpha, reg = best
        model.coef.copy_(torch.from_numpy(np.asarray(reg.coef_, dtype=np.float64)))
        model.intercept.copy_(torch.from_numpy(np.asarray(reg.intercept_, dtype=np.float64)))
        model.alpha.fill_(alpha)

    def batches(self, data: Data, cfg: dict, generator: torch.Generator):
        size = cfg["train"]["batch_size"]
        origins = data.origins["train"]
        perm = torch.randperm(len(origins), generator=generator).numpy()
        corruption = cfg["model_options"].get("train_corruption", 0.0) if cfg["model"] == "anomaly_mask" else 0.0
        rng = np.random.default_rng(int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator)))
        rate = cfg["data"]["corruption_rate"]
        for start in range(0, len(perm), size):
            index = origins[perm[start:start + size]]
            x, z, y = data.windows(index)
            batch = {"x": x, "z": z, "y": y}
            if corruption > 0:
                picked = rng.random(len(index)) < corruption
                gold = torch.zeros(x.shape[:2], dtype=torch.bool)
                if picked.any():
                    rows = torch.from_numpy(np.flatnonzero(picked))
                    sub = x[rows]
                    gold[rows] = data.corrupt_windows(sub, index[picked], rng, rate)
                    x[rows] = sub
                batch["gold"] = gold
            yield batch

    def loss(self, model: nn.Module, batch: dict, device: torch.device):
        x, z, y = (batch[k].to(device, non_blocking=True) for k in ("x", "z", "y"))
        pred, extras = model(x, z)
        loss = nn.functional.mse_loss(pred.float(), y)
        weight = getattr(model, "_mask_loss", None)
        if "gold" in batch and "mask" in extras and weight:
            trusted = (~batch["gold"].to(device)).float()
            m = extras["mask"].float().clamp(1e-6, 1 - 1e-6)
            loss = loss + weight * nn.functional.binary_cross_entropy(m, trusted)
        return loss, int(x.shape[0])

    # ---- evaluation -------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model: nn.Module, data: Data, origins: np.ndarray, device: torch.device,
                corrupted: bool = False, keep: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray, dict]:
        """(forecast [N, H], actual [N, H]) in raw units, and the requested extras concatenated."""
        if not len(origins):
            empty = np.zeros((0, data.horizon))
            return empty, empty.copy(), {}
        preds, actual, extras = [], [], {k: [] for k in keep}
        for start in range(0, len(origins), EVAL_BATCH):
            x, z, y = data.windows(origins[start:start + EVAL_BATCH], corrupted)
            pred, ex = model(x.to(device), z.to(device))
            preds.append(data.unscale(pred.float()))
            actual.append(data.unscale(y))
            for k in keep:
                if k in ex:
                    extras[k].append(ex[k].float().cpu().numpy())
        out = {k: np.concatenate(v) for k, v in extras.items() if v}
        return np.concatenate(preds), np.concatenate(actual), out

    def valid_metric_name(self, cfg: dict) -> str:
        metric, windows = validation_settings(cfg)
        return f"valid_neg_{metric}" if windows is None else f"valid_neg_{metric}_{windows}_windows"

    @torch.no_grad()
    def validate(self, model: nn.Module, data: Data, cfg: dict, device: torch.device) -> float:
        pred, actual, _ = self.predict(model, data, data.valid_origins, device)
        return -self.valid_error(data, actual, pred)

    @staticmethod
    def valid_error(data: Data, actual: np.ndarray, pred: np.ndarray) -> float:
        """The validation error (train.validation.metric) of raw-unit forecasts: MAPE (%, the fixed guard
        VALID_MAPE_FLOOR), or the MSE / MAE of the standardised target (mse: the loss the networks train on)."""
        if data.valid_metric == "mape":
            return float(forecast_scores(actual, pred, data.valid_floor, per_step=False)["mape"])
        err = (np.asarray(pred, dtype=np.float64) - actual) / data.scale
        return float(np.mean(err ** 2) if data.valid_metric == "mse" else np.mean(np.abs(err)))

    @staticmethod
    def origin_errors(actual: np.ndarray, pred: np.ndarray, pred_c: np.ndarray, data: Data) -> dict[str, np.ndarray]:
        """Per test forecast origin, the errors the headline metrics average, on clean and corrupted inputs:
        `ape` (mean absolute percentage error over the horizon, %, targets under the MAPE floor left out:
        NaN when all are) and `ase` (mean absolute error over the horizon in MASE units, i.e. divided by the
        in-sample seasonal naive MAE, when the dataset has that scale; else the raw MAE). A forecast
        comparison's loss series (Diebold-Mariano)."""
        actual = np.asarray(actual, dtype=np.float64)
        out = {}
        scale = float(getattr(data, "mase_scale", None) or 1.0)
        for name, p in (("", pred), ("_corrupted", pred_c)):
            err = np.abs(np.asarray(p, dtype=np.float64) - actual)
            keep = np.abs(actual) >= data.mape_floor
            ape = np.where(keep, 100.0 * err / np.where(keep, np.abs(actual), 1.0), np.nan)
            with np.errstate(invalid="ignore"):
                counted = keep.sum(axis=1)
                out[f"ape{name}"] = np.where(counted > 0, np.nansum(ape, axis=1) / np.maximum(counted, 1),
                                             np.nan).astype(np.float32)
            out[f"ae{name}"] = (err.mean(axis=1) / scale).astype(np.float32)
        return out

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: Data, cfg: dict, device: torch.device, out_dir: Path) -> dict:
        origins = data.origins["test"]
        keep = ("feature_weights", "temporal_weights", "mask")
        pred, actual, extras = self.predict(model, data, origins, device, keep=keep)
        pred_c, _, extras_c = self.predict(model, data, origins, device, corrupted=True, keep=("mask",))
        clean = forecast_scores(actual, pred, data.mape_floor)
        dirty = forecast_scores(actual, pred_c, data.mape_floor)
        write_items(out_dir, **self.origin_errors(actual, pred, pred_c, data))
        metrics: dict[str, Any] = {}
        for key in ("mape", "smape", "mae", "rmse"):
            metrics[key] = clean[key]
            metrics[f"{key}_corrupted"] = dirty[key]
        metrics["mape_rise"] = dirty["mape"] - clean["mape"]
        for key in ("mape", "smape", "mae", "rmse"):
            metrics[f"{key}_by_step"] = clean[f"{key}_by_step"]
            metrics[f"{key}_corrupted_by_step"] = dirty[f"{key}_by_step"]
        # the ETT benchmarks' MAE and MSE: errors of the target standardised with the training split's statistics
        metrics["mae_scaled"] = clean["mae"] / data.scale
        metrics["mse_scaled"] = (clean["rmse"] / data.scale) ** 2
        metrics["mape_excluded"] = clean["mape_excluded"]
        metrics["mape_floor"] = data.mape_floor

        # feature attention: mass on the irrelevant features (vs their share under uniform weights)
        metrics["irrelevant_attention"] = metrics["uniform_share"] = None
        metrics["feature_attention"] = None
        mean_fw = None
        if "feature_weights" in extras:
            fw = extras["feature_weights"]                                     # [N, H, K]: known features only
            mean_fw = fw.mean(axis=0)
            metrics["feature_attention"] = dict(zip(data.known_names, map(float, fw.mean(axis=(0, 1)))))
            irrelevant = data.irrelevant[data.known]
            if irrelevant.any():
                metrics["irrelevant_attention"] = float(fw[..., irrelevant].sum(-1).mean())
                metrics["uniform_share"] = float(irrelevant.mean())

        # anomaly mask: ROC-AUC of (1 - weight) against the gold positions of the corrupted inputs
        gold = data.kind[origins[:, None] + np.arange(-data.window, 0)]          # [N, T]
        metrics["mask_auc"] = metrics["mask_auc_by_kind"] = None
        metrics["mask_weight_clean"] = metrics["mask_weight_anomalous"] = None
        if "mask" in extras_c:
            m = extras_c["mask"]
            metrics["mask_auc"] = mask_roc_auc(gold > 0, m)
            metrics["mask_auc_by_kind"] = {label: mask_roc_auc(gold[(gold == 0) | (gold == code)] > 0,
                                                               m[(gold == 0) | (gold == code)])
                                           for code, (label, _, _) in KINDS.items()}
            metrics["mask_weight_clean"] = float(m[gold == 0].mean())
            metrics["mask_weight_anomalous"] = float(m[gold > 0].mean()) if (gold > 0).any() else None
            if "mask" in extras:
                metrics["mask_weight_clean_inputs"] = float(extras["mask"].mean())
        metrics["test_windows"] = int(len(origins))
        # MASE (clean, corrupted, per step): the MAE over the in-sample seasonal naive MAE of the training
        # split; and the headline the rule chose for this series (see headline.py)
        scale = data.mase_scale
        metrics["mase"] = hl.mase(clean["mae"], scale)
        metrics["mase_corrupted"] = hl.mase(dirty["mae"], scale)
        metrics["mase_rise"] = metrics["mase_corrupted"] - metrics["mase"]
        metrics["mase_by_step"] = {h: hl.mase(v, scale) for h, v in clean["mae_by_step"].items()}
        metrics["mase_corrupted_by_step"] = {h: hl.mase(v, scale) for h, v in dirty["mae_by_step"].items()}
        metrics["mase_scale"] = scale
        metrics["headline"] = data.headline["metric"]
        metrics["test_origin_hour"] = int(cfg["eval"].get("origin_hour", 0)) if cfg["eval"]["stride"] > 1 else None
        metrics["test_windows_with_anomalies"] = int((gold > 0).any(axis=1).sum())
        metrics["test_anomalous_input_share"] = float((gold > 0).mean())

        self._export(model, data, device, out_dir, mean_fw, extras.get("temporal_weights"))
        return round_floats(metrics, 4)

    # ---- exports for the report -------------------------------------------------------
    @staticmethod
    def example_origin(data: Data) -> int:
        """The same corrupted test window for every run: the first day-ahead window whose input holds
        the most anomaly kinds (then the most anomalous steps)."""
        best, key = None, None
        for o in data.day_origins:
            k = data.kind[o - data.window:o]
            score = (len(set(k[k > 0].tolist())), int((k > 0).sum()))
            if key is None or score > key:
                best, key = int(o), score
        return best if best is not None else int(data.origins["test"][0])

    def _export(self, model, data: Data, device, out_dir: Path, feature_weights, temporal_weights) -> None:
        # the features the per-horizon feature attention weighs: the known ones
        arrays: dict[str, np.ndarray] = {"feature_names": np.array(data.known_names),
                                         "irrelevant": data.irrelevant[data.known].copy()}
        if not data.known.all():
            arrays["observed_features"] = np.array([n for n, k in zip(data.feature_names, data.known) if not k])
        if feature_weights is not None:
            arrays["feature_weights"] = feature_weights.astype(np.float32)
        if temporal_weights is not None:
            arrays["temporal_weights"] = temporal_weights.mean(axis=0).astype(np.float32)
        o = self.example_origin(data)
        span = np.arange(o - data.window, o)
        pred, actual, _ = self.predict(model, data, np.array([o]), device)
        pred_c, _, ex = self.predict(model, data, np.array([o]), device, corrupted=True, keep=("mask",))
        corrupted_load = data.corrupted[span, 0].numpy().astype(np.float64) * data.std[0] + data.mean[0]
        arrays.update({
            "example_time": np.array([t.isoformat() for t in data.time[o - data.window:o + data.horizon]]),
            "example_input": corrupted_load.astype(np.float32), "example_clean": data.load[span].astype(np.float32),
            "example_kind": data.kind[span].astype(np.int8), "example_actual": actual[0].astype(np.float32),
            "example_forecast": pred[0].astype(np.float32), "example_forecast_corrupted": pred_c[0].astype(np.float32),
        })
        days = data.day_origins
        if "mask" in ex:
            arrays["example_mask"] = ex["mask"][0].astype(np.float32)
        if "mask" in ex and len(days):
            _, _, ex_days = self.predict(model, data, days, device, corrupted=True, keep=("mask",))
            arrays["day_mask"] = ex_days["mask"].astype(np.float16)
            arrays["day_kind"] = data.kind[days[:, None] + np.arange(-data.window, 0)].astype(np.int8)
        with aio.atomic_path(out_dir / "attention.npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        # day-ahead forecasts (origin at midnight) over the test period, clean and corrupted inputs
        pred, actual, _ = self.predict(model, data, days, device)
        pred_c, _, _ = self.predict(model, data, days, device, corrupted=True)
        lines = []
        for i, o in enumerate(days):
            k = data.kind[o - data.window:o]
            lines.append(json.dumps({"origin": data.time[o].isoformat(), "actual": np.round(actual[i], 2).tolist(),
                                     "forecast": np.round(pred[i], 2).tolist(),
                                     "forecast_corrupted": np.round(pred_c[i], 2).tolist(),
                                     "anomalous_inputs": int((k > 0).sum())}))
        aio.write_text(out_dir / "samples.jsonl", "\n".join(lines) + "\n" if lines else "")


register(LoadForecasting())
