"""The load task's headline metric: MAPE where the target stays away from zero, MASE otherwise.

MAPE divides by the target, so it is only a fair headline when the target keeps one sign and stays
away from zero; near zero a small absolute error becomes a huge percentage (the guard in
`attnbench.metrics.guarded_mape` then has to drop targets, and what is left is no longer the whole
test set). MASE (Hyndman & Koehler 2006, the M4 competition's scale-free error) divides the test MAE
by the in-sample MAE of the seasonal naive forecast on the training split, so it is defined whatever
the target's level or sign: below 1, a run beats "same hour one season ago" as it did in training.

The rule, computed from the training split only (never from the test targets):

    MAPE  when the training target never changes sign (all >= 0 or all <= 0) and at most
          `eval.headline_max_share` (default 1 %) of its values lie below `eval.mape_floor` x its
          mean |value| (the targets the MAPE guard would leave out; 0 = not a single one),
    MASE  otherwise.

`eval.headline: mape | mase` overrides the rule; `auto` (the default) applies it. The season of the
MASE scale is `data.season`, the lag of the benchmark's own seasonal naive run (M4 uses the series'
seasonal period; for hourly load with a weekly cycle that is the 168 h week the baseline uses).
"""
from __future__ import annotations

import math

import numpy as np

HEADLINES = ("mape", "mase")
MAX_SHARE = 0.01          # default of eval.headline_max_share
LABELS = {"mape": "MAPE", "mase": "MASE"}


def mase_scale(train_target: np.ndarray, season: int) -> float:
    """The in-sample MAE of the seasonal naive forecast y[t - season] over the training split: mean
    |y[t] - y[t - season]| over the steps t >= season where both values exist; nan when none does or
    when it is 0 (a series that repeats exactly has no scale)."""
    y = np.asarray(train_target, dtype=np.float64).ravel()
    if season < 1 or len(y) <= season:
        return float("nan")
    diff = np.abs(y[season:] - y[:-season])
    diff = diff[np.isfinite(diff)]
    if not len(diff):
        return float("nan")
    scale = float(diff.mean())
    return scale if scale > 0 else float("nan")


def mase(mae: float, scale: float) -> float:
    """MASE of a test MAE against the in-sample seasonal naive scale (nan without a scale)."""
    return float(mae) / scale if math.isfinite(scale) and scale > 0 else float("nan")


def choose(train_target: np.ndarray, season: int, mape_floor: float, max_share: float = MAX_SHARE,
           forced: str = "auto") -> dict:
    """The headline metric of a series and why (see the module docstring), with the training-split
    statistics the rule read and the MASE scale: what the manifest records and evaluate applies."""
    y = np.asarray(train_target, dtype=np.float64).ravel()
    y = y[np.isfinite(y)]
    abs_mean = float(np.abs(y).mean()) if len(y) else float("nan")
    floor = float(mape_floor) * abs_mean
    below = float((np.abs(y) < floor).mean()) if len(y) else float("nan")
    changes_sign = bool(len(y) and (y > 0).any() and (y < 0).any())
    scale = mase_scale(train_target, season)
    stats = (f"training split: min {np.min(y):.4g}, max {np.max(y):.4g}, {100 * below:.3g} % of the values below "
             f"the MAPE floor {floor:.4g} (= eval.mape_floor {mape_floor:g} x mean |target| {abs_mean:.4g})"
             if len(y) else "training split: no observed target")
    if forced in HEADLINES:
        metric, reason = forced, f"set by eval.headline ({stats})"
    elif not len(y):
        metric, reason = "mase", stats
    elif changes_sign:
        metric, reason = "mase", f"the target changes sign ({stats}): a percentage error is not defined across zero"
    elif below > max_share:
        metric, reason = "mase", (f"the target comes near zero ({stats}; MAPE needs at most {100 * max_share:g} %): "
                                  "a percentage error would be dominated or censored there")
    else:
        metric, reason = "mape", (f"the target keeps one sign and stays away from zero ({stats}; MAPE needs at most "
                                  f"{100 * max_share:g} %)")
    return {"metric": metric, "reason": reason, "rule": "auto" if forced not in HEADLINES else "forced",
            "changes_sign": changes_sign, "near_zero_share": below, "near_zero_floor": floor,
            "max_share": float(max_share), "train_min": float(np.min(y)) if len(y) else None,
            "train_max": float(np.max(y)) if len(y) else None, "season": int(season),
            "mase_scale": scale if math.isfinite(scale) else None}


def settings(eval_cfg: dict) -> tuple[str, float]:
    """(eval.headline, eval.headline_max_share) with their defaults (params written before they existed)."""
    return str(eval_cfg.get("headline", "auto")), float(eval_cfg.get("headline_max_share", MAX_SHARE))
