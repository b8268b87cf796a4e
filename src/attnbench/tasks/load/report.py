"""The load-forecasting section: leaderboard (clean and corrupted test inputs side by side), the headline
metric by horizon step, a week of test forecasts against actuals, the feature-attention heatmap (horizon
step × feature), the anomaly mask under a corrupted input window, and claims C9 and C10 with
verdicts computed from the metrics.

The headline metric is the dataset's: MAPE or MASE, as the rule of `tasks/load/headline.py` chose from
the training split (each metrics.json records it under `headline`; the manifest says why). The
leaderboard sorts by it, the horizon figure draws it, and claims C9 and C10 are decided on it.

Everything read from the run folders is returned as plain strings and numbers; the template
(autoescaped) is the only place they become HTML.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ... import paths
from ...tasks.load.headline import LABELS
from ...report import aggregate as agg
from ...report import noise
from . import plots
from ...report.sections import (LEAD_COLUMNS, base_context, best_run, cell, claim, collect_runs, finite, first_int, fmt,
                                int_cell, lead_cells, leaderboard, load_npz, read_jsonl, read_manifest, results_context,
                                run_file)

WEEK_DAYS = 7
HALF = 0.5          # C10: the masked model's MAPE rise must be below HALF x the unmasked one's
MIN_AUC = 0.9       # C10: mask ROC-AUC above this
# metrics.json / summary columns of the leaderboard and their decimals
METRICS = {"mape": 2, "mape_corrupted": 2, "mape_rise": 2, "mase": 3, "mase_corrupted": 3, "mase_rise": 3, "smape": 2, "smape_corrupted": 2, "mae": 1,
           "mae_corrupted": 1, "rmse": 1, "rmse_corrupted": 1, "mask_auc": 3, "irrelevant_attention": 3,
           "uniform_share": 3, "parameters": 0, "train_seconds": 1}

PAPERS = {
    "C9": ("Per-horizon feature attention helps multi-step load forecasting",
           "project notes (load)",
           "no published figure: the notes describe a learned mask over features for each output step"),
    "C10": ("An attention mask after the feature mapping makes the forecaster robust to anomalous inputs",
            "project notes (load)",
            "no published figure: the notes describe masking anomalous inputs right after the feature mapping"),
}


def _steps(table: pd.DataFrame, key: str) -> list[int]:
    prefix = f"{key}_by_step_"
    return sorted(int(c[len(prefix):]) for c in table.columns if c.startswith(prefix) and c[len(prefix):].isdigit())


class Headline:
    """How the section names, formats and compares the dataset's headline metric (MAPE in %, MASE a ratio)."""

    def __init__(self, key: str, reason: str = "", forced: bool = False) -> None:
        self.key, self.reason, self.forced = key, reason, forced
        self.label = LABELS.get(key, key.upper())
        self.percent = key == "mape"

    def value(self, v: float) -> str:
        """A value as the evidence quotes it: MAPE '4.91%', MASE '0.571'."""
        return f"{v:.2f}%" if self.percent else f"{v:.3f}"

    def diff(self, v: float) -> str:
        """A difference: MAPE '+0.12 points', MASE '+0.012'."""
        return f"{v:+.2f} points" if self.percent else f"{v:+.3f}"

    def spread(self, v: float) -> str:
        return f"{v:.2f} points" if self.percent else f"{v:.3f}"


def headline_of(table: pd.DataFrame, task: str, dataset: str) -> Headline:
    """The headline the evaluations used (metrics.json `headline`), else the one the manifest records,
    else MAPE (results from before the rule existed); with the manifest's reason."""
    ok = table[table["status"] == "ok"] if "status" in table else table
    manifest = read_manifest(task, dataset).get("headline") or {}
    chosen = [str(v) for v in ok["headline"].dropna().unique()] if "headline" in ok else []
    key = chosen[0] if len(chosen) == 1 else manifest.get("metric", "mape")
    if key not in LABELS:
        key = "mape"
    same = manifest.get("metric") == key
    return Headline(key, manifest.get("reason", "") if same else "", same and manifest.get("rule") == "forced")


def _per_run(params: dict, task: str, table: pd.DataFrame, h: Headline) -> list[dict]:
    steps = _steps(table, h.key)
    runs = collect_runs(params, task, table, METRICS)
    for entry in runs:
        ok = entry["ok"]
        for kind in (h.key, f"{h.key}_corrupted"):
            entry[f"{kind}_steps"] = {s: cell(ok[f"{kind}_by_step_{s}"] if f"{kind}_by_step_{s}" in ok else [])["mean"]
                                      for s in steps}
    return runs


def _by_model(runs: list[dict], model: str, h: Headline, attention: str | None = None,
              exclude: str | None = None) -> dict | None:
    """The first run of `model` (with that attention, or without `exclude`) that has results."""
    for r in runs:
        if r["model"] != model or not finite(r["mean"][h.key]):
            continue
        if attention is not None and r["attention"] != attention:
            continue
        if exclude is not None and r["attention"] == exclude:
            continue
        return r
    return None


MAPE_COLUMNS = [("MAPE clean (%)", "mean absolute percentage error on the clean test inputs (lower is better)", True),
                ("MAPE corrupted (%)", "the same forecasts made from the corrupted copy of the test inputs", True),
                ("rise", "MAPE corrupted − MAPE clean (percentage points)", True)]
MASE_COLUMNS = [("MASE clean", ("mean absolute scaled error on the clean test inputs: MAE over the in-sample MAE of the "
                                "seasonal naive forecast on the training split (lower is better; below 1 beats it)"), True),
                ("MASE corrupted", "the same forecasts made from the corrupted copy of the test inputs", True),
                ("MASE rise", "MASE corrupted − MASE clean", True)]


def _leaderboard(runs: list[dict], best: dict | None, h: Headline) -> dict:
    first, second = (MAPE_COLUMNS, MASE_COLUMNS) if h.percent else (MASE_COLUMNS, MAPE_COLUMNS)
    columns = [*LEAD_COLUMNS, *first, *second[:2],
               ("sMAPE clean (%)", "symmetric MAPE, clean inputs", True),
               ("sMAPE corrupted (%)", "symmetric MAPE, corrupted inputs", True),
               ("MAE clean", "mean absolute error (load units), clean inputs", True),
               ("MAE corrupted", "mean absolute error (load units), corrupted inputs", True),
               ("RMSE clean", "root mean squared error, clean inputs", True),
               ("RMSE corrupted", "root mean squared error, corrupted inputs", True),
               ("mask ROC-AUC", "ROC-AUC of 1 − mask weight against the true anomaly positions (anomaly-mask runs)", True),
               ("irrelevant attention", "feature-attention mass on the generator's irrelevant features (uniform share in "
                                        "brackets)", True),
               ("parameters", "trainable parameters (closed-form baselines: 0)", True),
               ("training time (s)", "training (or fitting) wall time from train_info.json", True)]

    def cells(r):
        irrelevant = dict(r["irrelevant_attention"])
        if irrelevant["mean"] is not None and finite(r["mean"]["uniform_share"]):
            irrelevant["text"] += f" ({r['mean']['uniform_share']:.2f})"
        other = "mase" if h.percent else "mape"
        return [*lead_cells(r), r[h.key], r[f"{h.key}_corrupted"], _signed_cell(r[f"{h.key}_rise"]), r[other],
                r[f"{other}_corrupted"], r["smape"], r["smape_corrupted"], r["mae"], r["mae_corrupted"], r["rmse"],
                r["rmse_corrupted"], r["mask_auc"], irrelevant, int_cell(r["parameters"]), r["train_seconds"]]

    return leaderboard(runs, best, columns, cells, h.key, lower_is_better=True)


def _signed_cell(c: dict) -> dict:
    return c if c["mean"] is None else {**c, "text": ("+" if c["mean"] >= 0 else "") + c["text"]}


def _horizon(runs: list[dict], reference: dict | None, h: Headline) -> str | None:
    rows = []
    for r in runs:
        for kind, label in ((h.key, "clean"), (f"{h.key}_corrupted", "corrupted")):
            for _, row in r["ok"].iterrows():
                for step in r[f"{kind}_steps"]:
                    column = f"{kind}_by_step_{step}"
                    if column in row and finite(row[column]):
                        rows.append({"run": r["run"], "seed": int(row["seed"]), "step": step, "value": float(row[column]),
                                     "inputs": label})
    if not rows:
        return None
    ylabel = "MAPE (%), test set" if h.percent else f"{h.label}, test set"
    return plots.horizon_lines(pd.DataFrame(rows), reference["run"] if reference else None, ylabel)


def _read_samples(task: str, r: dict | None) -> list[dict]:
    if r is None or not r["seeds"]:
        return []
    return [item for item in read_jsonl(run_file(task, r, "samples.jsonl")) if {"origin", "actual", "forecast"} <= set(item)]


def _week(task: str, best: dict | None, reference: dict | None, others: list[dict]) -> dict:
    """Seven consecutive day-ahead forecasts from the first Monday of the test period."""
    main = _read_samples(task, best)
    if len(main) < 2:
        return {"image": None, "note": "no day-ahead test forecasts exported (samples.jsonl)"}
    start = next((i for i, s in enumerate(main) if pd.Timestamp(s["origin"]).day_of_week == 0), 0)
    days = main[start:start + WEEK_DAYS]
    origins = [d["origin"] for d in days]
    horizon = len(days[0]["actual"])
    stamps = [str(pd.Timestamp(o) + pd.Timedelta(hours=h)) for o in origins for h in range(horizon)]
    actual = [v for d in days for v in d["actual"]]
    forecasts: dict[str, list[float]] = {}
    for r in [best, *others, reference]:
        if r is None or r["run"] in forecasts:
            continue
        items = {s["origin"]: s for s in (main if r is best else _read_samples(task, r))}
        if all(o in items for o in origins):
            forecasts[r["run"]] = [v for o in origins for v in items[o]["forecast"]]
    image = plots.forecast_week(stamps, actual, forecasts, reference["run"] if reference else None, "load")
    return {"image": image, "first": origins[0][:10], "last": origins[-1][:10], "runs": list(forecasts), "note": ""}


def _feature_attention(task: str, runs: list[dict]) -> dict:
    figures = []
    for r in runs:
        if r["model"] != "feature_attn" or not r["seeds"]:
            continue
        seed = min(r["seeds"])
        z = load_npz(run_file(task, r, "attention.npz", seed))
        if not z or "feature_weights" not in z:
            continue
        names = [str(f) for f in z["feature_names"]]
        irrelevant = [bool(b) for b in z["irrelevant"]] if "irrelevant" in z else None
        weights = z["feature_weights"]
        top = [names[i] for i in np.argsort(-weights.mean(axis=0))[:3]]
        figures.append({"run": r["run"], "seed": seed, "top": ", ".join(top),
                        "image": plots.feature_heatmap(weights, names, irrelevant, f"{r['run']} (seed {seed})")})
    return {"figures": figures, "note": "" if figures else "no feature-attention run has exported its weights yet"}


def _mask(task: str, runs: list[dict], plain: dict | None) -> dict:
    masked = next((r for r in runs if r["model"] == "anomaly_mask" and r["seeds"]), None)
    source = masked or plain or next((r for r in runs if r["seeds"]), None)
    if source is None:
        return {"image": None, "note": "no run has results yet"}
    z = load_npz(run_file(task, source, "attention.npz"))
    if not z or "example_input" not in z:
        return {"image": None, "note": f"{source['run']}: attention.npz missing or without the example window"}
    forecasts = {}
    for r in (plain, masked):
        if r is None or not r["seeds"]:
            continue
        other = z if r is source else load_npz(run_file(task, r, "attention.npz"))
        if other and "example_forecast_corrupted" in other and \
                [str(t) for t in other.get("example_time", [])] == [str(t) for t in z["example_time"]]:
            forecasts[r["run"]] = other["example_forecast_corrupted"]
    kinds = z["example_kind"]
    counts = {label: int((kinds == code).sum()) for code, (label, _) in plots.ANOMALY_COLOURS.items()}
    image = plots.anomaly_mask([str(t) for t in z["example_time"]], z["example_input"], z["example_clean"], kinds,
                               z.get("example_mask"), forecasts, z.get("example_actual"))
    return {"image": image, "run": masked["run"] if masked else None, "first": str(z["example_time"][0])[:16],
            "counts": ", ".join(f"{n} {k} step{'s' if n != 1 else ''}" for k, n in counts.items() if n),
            "forecast_runs": list(forecasts), "note": "" if masked else "no anomaly-mask run has results yet"}


def _beats_naive(runs: list[dict], naive: dict | None, h: Headline) -> list[dict]:
    if naive is None:
        return []
    out = []
    for r in runs:
        if r is naive or r["model"] == "seasonal_naive" or not finite(r["mean"][h.key]):
            continue
        out.append({"run": r["run"], "value": h.value(r["mean"][h.key]).replace("%", " %"),
                    "beats": r["mean"][h.key] < naive["mean"][h.key]})
    return out


def _claims(runs: list[dict], naive: dict | None, plain: dict | None, h: Headline) -> list[dict]:
    """C9 and C10, decided on the dataset's headline metric `h` (MAPE or MASE)."""
    out = []
    k = h.key
    feat = _by_model(runs, "feature_attn", h)
    masked = _by_model(runs, "anomaly_mask", h)
    weak = lambda *rs: naive is not None and all(r["mean"][k] >= naive["mean"][k] for r in rs)  # noqa: E731

    # C9: feature attention vs the GRU without it, overall and per horizon step
    if feat is None or plain is None:
        out.append(_claim("C9", "not measurable", "needs a feature_attn run and a plain gru run (attention none) with results"))
    elif weak(feat, plain):
        out.append(_claim("C9", "inconclusive", f"neither {feat['run']} nor {plain['run']} beats the seasonal naive forecast "
                                                f"({h.value(naive['mean'][k])} {h.label}): too little training"))
    else:
        a, b = feat["mean"][k], plain["mean"][k]
        fs, ps = feat[f"{k}_steps"], plain[f"{k}_steps"]
        steps = [s for s in fs if finite(fs[s]) and finite(ps.get(s))]
        wins = sum(fs[s] < ps[s] for s in steps)
        evidence = (f"clean test {h.label} {feat['run']} {h.value(a)} vs {plain['run']} {h.value(b)} ({h.diff(a - b)}, "
                    f"{100 * (a - b) / b:+.1f}% relative); lower at {wins} of {len(steps)} horizon steps")
        if finite(feat["mean"]["irrelevant_attention"]) and finite(feat["mean"]["uniform_share"]):
            evidence += (f"; attention on the irrelevant features {feat['mean']['irrelevant_attention']:.3f} vs a uniform "
                         f"share of {feat['mean']['uniform_share']:.3f}")
        spread = [r[k]["std"] for r in (feat, plain) if r[k]["std"] is not None]
        test = noise.compare_runs(feat, plain, k, higher_is_better=False)
        evidence += (f"; seed-to-seed spread (std) {h.spread(max(spread))}" if spread else
                     "; one seed only: differences of a few tenths of a point are within the seed-to-seed spread "
                     "(run several seeds to see it)" if h.percent else
                     "; one seed only: small differences are within the seed-to-seed spread (run several seeds to see it)")
        evidence += noise.paren(test, "; overall: ")
        # overall: lower beyond seed noise (Welch's t-test; one seed: the means decide); a gap within noise is a tie
        overall, most = noise.holds(test), bool(steps) and wins > len(steps) / 2
        verdict = noise.verdict([overall, most])
        out.append(_claim("C9", verdict, evidence))

    # C10: MAPE rise on corrupted inputs, masked vs unmasked, and the mask's ROC-AUC
    if masked is None or plain is None:
        out.append(_claim("C10", "not measurable", "needs an anomaly_mask run and a plain gru run with results"))
    elif weak(masked, plain):
        out.append(_claim("C10", "inconclusive", f"neither {masked['run']} nor {plain['run']} beats the seasonal naive "
                                                  f"forecast ({h.value(naive['mean'][k])} {h.label}): too little training"))
    else:
        rm, rp = masked["mean"][f"{k}_rise"], plain["mean"][f"{k}_rise"]
        auc = masked["mean"]["mask_auc"]
        evidence = (f"{h.label} from clean to corrupted inputs: {masked['run']} {h.value(masked['mean'][k])} → "
                    f"{h.value(masked['mean'][f'{k}_corrupted'])} ({h.diff(rm)}), {plain['run']} "
                    f"{h.value(plain['mean'][k])} → {h.value(plain['mean'][f'{k}_corrupted'])} ({h.diff(rp)})")
        robust: bool | None = False
        if finite(rm) and finite(rp) and rp > 0:
            # the masked rises against HALF x the unmasked ones, seed by seed: below beyond seed noise (Welch's
            # t-test; one seed: the means decide); within noise is a tie, neither robust nor refuted
            test = noise.compare(noise.values(masked, f"{k}_rise"), noise.values(plain, f"{k}_rise", HALF),
                                 higher_is_better=False)
            robust = noise.holds(test)
            evidence += f"; rise ratio {rm / rp:.2f} (needs < {HALF:g}{noise.paren(test)})"
        located = finite(auc) and auc > MIN_AUC
        evidence += f"; mask ROC-AUC {fmt(auc, 3)} (needs > {MIN_AUC:g})"
        verdict = noise.verdict([robust, located])
        out.append(_claim("C10", verdict, evidence))
    return out


def _claim(cid: str, verdict: str, evidence: str) -> dict:
    return claim(cid, PAPERS[cid], verdict, evidence)


def _covariates(data: dict) -> dict:
    """The declared roles of the exogenous features: known in advance vs observed only."""
    if data["source"] != "csv":
        return {"known": [], "observed": []}
    from .data import declared_features

    names, known = declared_features(data["csv"].get("features"))
    return {"known": [n for n, k in zip(names, known) if k], "observed": [n for n, k in zip(names, known) if not k]}


def context(params: dict, task: str = "load", out_dir: Path | str = paths.REPORTS) -> dict:
    """Everything load.html.j2 shows, as plain values (strings escaped by the template)."""
    out_dir = Path(out_dir)
    table = agg.collect(params, task)
    section = params["tasks"][task]
    base = {**base_context(task, "Load forecasting", table, out_dir),
            "window": section["data"]["window"], "horizon": section["data"]["horizon"],
            "season": section["data"]["season"], "source": section["data"]["source"],
            "corruption_rate": section["data"]["corruption_rate"], "mape_floor": section["eval"]["mape_floor"],
            **_covariates(section["data"])}
    if not base["has_results"]:
        return base
    h = headline_of(table, task, params["dataset"])
    runs = _per_run(params, task, table, h)
    scored = [r for r in runs if finite(r["mean"][h.key])]
    best = best_run(runs, h.key, lower_is_better=True)
    naive = _by_model(runs, "seasonal_naive", h)
    plain = _by_model(runs, "gru", h, attention="none")
    learned = [r for r in scored if r["model"] != "seasonal_naive" and r is not best]
    ok = table[table["status"] == "ok"]
    excluded = int(ok["mape_excluded"].fillna(0).max()) if "mape_excluded" in ok else 0
    feats = [r for r in runs if finite(r["mean"]["irrelevant_attention"]) and finite(r["mean"]["uniform_share"])]
    return {
        **base,
        **results_context(params, task, table, out_dir),
        "headline": h.key, "headline_label": h.label, "headline_reason": h.reason,
        "headline_forced": h.forced,
        "leaderboard": _leaderboard(runs, best, h),
        "best": best["run"] if best else None,
        "reference": naive["run"] if naive else None,
        "horizon_image": _horizon(runs, naive, h),
        "week": _week(task, best, naive, [r for r in (plain,) if r is not None and r is not best]),
        "features": _feature_attention(task, runs),
        "mask": _mask(task, runs, plain),
        "claims": _claims(runs, naive, plain, h),
        "beats_naive": _beats_naive(runs, naive, h),
        "irrelevant": [{"run": r["run"], "mass": f"{r['mean']['irrelevant_attention']:.3f}",
                        "uniform": f"{r['mean']['uniform_share']:.3f}",
                        "below": r["mean"]["irrelevant_attention"] < r["mean"]["uniform_share"]} for r in feats],
        "mape_excluded": excluded,
        "test_windows": first_int(ok, "test_windows"),
        "n_learned": len(learned),
    }
