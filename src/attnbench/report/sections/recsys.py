"""The recsys section: leaderboard, claim C7 (AFM vs FM RMSE), the field-pair attention matrix
beside the true importance matrix, attention against the true importances, training curves and
sample predictions.

Everything read from the run folders is returned as plain strings and numbers; the template
(autoescaped) is the only place they become HTML.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ... import io as aio
from ... import paths
from .. import aggregate as agg
from .. import plots
from . import cell, devices, finite, fmt, notebook_link, problems, relpath, run_status, status_counts

SAMPLE_ROWS = 10
SPEARMAN_BAR = 0.6        # the task's acceptance bar for "the attention ranks the pairs like the truth"
SUPPORT_SHARE = 0.5       # C7 is "supported" when AFM's gain is at least half the paper's relative gain

# Xiao et al. 2017, Table 2 (test RMSE, k = 256): (data, AFM, LibFM)
PAPER_RMSE = (("Frappe", 0.3102, 0.3385), ("MovieLens-tag", 0.4325, 0.4735))
C7 = ("Attention over pairwise interactions improves FM by about 8–9% relative RMSE", "Xiao et al. 2017 (AFM), Table 2")
METRICS = ("rmse", "mae", "logloss", "auc", "pair_spearman", "strong_pair_recall", "interaction_spearman",
           "interaction_strong_recall", "attention_entropy", "parameters", "train_seconds")


def _paper_gains() -> list[tuple[str, float, float, float]]:
    return [(name, afm, fm, (fm - afm) / fm) for name, afm, fm in PAPER_RMSE]


def _per_run(params: dict, task: str, table: pd.DataFrame) -> list[dict]:
    runs = []
    for run, spec in params["tasks"][task]["runs"].items():
        rows = table[table["run"] == run]
        ok = rows[rows["status"] == "ok"]
        status, reason = run_status(rows)
        entry = {"run": run, "model": spec["model"], "attention": spec["attention"], "status": status, "reason": reason,
                 "rows": rows, "ok": ok, "seeds": [int(s) for s in ok["seed"]]}
        for column in METRICS:
            entry[column] = cell(ok[column] if column in ok else [], 3)
        entry["train_max_rss_mb"] = cell(rows["train_max_rss_mb"] if "train_max_rss_mb" in rows else [], 0)
        entry["attention_entropy"] = cell(ok["attention_entropy"] if "attention_entropy" in ok else [], 5)
        entry["mean"] = {c: entry[c]["mean"] for c in METRICS}
        runs.append(entry)
    return runs


def _sort_metric(target: str) -> str:
    return "rmse" if target == "rating" else "logloss"


def _best(runs: list[dict], metric: str) -> dict | None:
    scored = [r for r in runs if finite(r["mean"][metric])]
    return min(scored, key=lambda r: r["mean"][metric]) if scored else None


def _leaderboard(runs: list[dict], best: dict | None, target: str) -> dict:
    has_memory = any(r["train_max_rss_mb"]["n"] for r in runs)
    columns = [("run", "", False), ("model", "", False), ("attention", "attention mechanism", False),
               ("RMSE", "root mean squared error on the test set (lower is better)"
                + ("; of the click probability" if target == "click" else ""), True)]
    if target == "click":
        columns += [("log-loss", "binary cross-entropy of the click probability (lower is better)", True),
                    ("ROC-AUC", "area under the ROC curve of the click probability (higher is better)", True)]
    else:
        columns.append(("MAE", "mean absolute error on the test set (lower is better)", True))
    columns += [("pair Spearman", "Spearman correlation between the mean attention per field pair and the pairs' true "
                                  "importances (attention runs, synthetic data)", True),
                ("strong-pair recall", "share of the truly strong pairs among the most-attended pairs", True),
                ("interaction Spearman", "Spearman correlation between the spread of each pair's term in the score "
                                         "and the true importances (FM and AFM)", True),
                ("parameters", "trainable parameters", True),
                ("training time (s)", "training wall time from train_info.json", True)]
    if has_memory:
        columns.append(("peak memory (MB)", "max RSS of the training job (Snakemake benchmark)", True))
    columns += [("seeds", "seeds with results / seeds in the grid", True), ("status", "", False)]
    metric = _sort_metric(target)

    def key(r):
        return (0, r["mean"][metric]) if finite(r["mean"][metric]) else (1, 0.0)

    out = []
    for r in sorted(runs, key=key):
        cells = [{"text": r["run"], "sort": r["run"]}, {"text": r["model"], "sort": r["model"]},
                 {"text": r["attention"], "sort": r["attention"]}, r["rmse"]]
        cells += [r["logloss"], r["auc"]] if target == "click" else [r["mae"]]
        params_cell = r["parameters"] if r["parameters"]["mean"] is None else \
            {**r["parameters"], "text": f"{int(round(r['parameters']['mean'])):,}"}
        cells += [r["pair_spearman"], r["strong_pair_recall"], r["interaction_spearman"], params_cell,
                  cell(r["ok"]["train_seconds"] if "train_seconds" in r["ok"] else [], 1)]
        if has_memory:
            cells.append(cell(r["rows"]["train_max_rss_mb"], 0))
        cells.append({"text": f"{len(r['seeds'])}/{len(r['rows'])}", "sort": str(len(r["seeds"]))})
        cells.append({"text": r["status"], "sort": r["status"], "title": r["reason"]})
        out.append({"run": r["run"], "best": best is not None and r["run"] == best["run"], "status": r["status"],
                    "reason": r["reason"], "cells": cells})
    return {"columns": [{"label": c[0], "title": c[1], "numeric": c[2]} for c in columns], "rows": out}


def _claim(verdict: str, evidence: str) -> dict:
    css = {"supported": "good", "partly supported": "mid", "not supported": "bad"}.get(verdict, "na")
    gains = _paper_gains()
    paper = "; ".join(f"{name}: AFM {afm:.4f} vs LibFM {fm:.4f} test RMSE ({g:.1%} relative)" for name, afm, fm, g in gains)
    return {"id": "C7", "claim": C7[0], "source": C7[1], "paper": paper + " — different data (real, k = 256)",
            "verdict": verdict, "evidence": evidence, "css": css}


def _claims(runs: list[dict], target: str) -> list[dict]:
    """C7 from the metrics: the best AFM run (with attention) against the best FM run, by RMSE."""
    fms = [r for r in runs if r["model"] == "fm" and finite(r["mean"]["rmse"])]
    afms = [r for r in runs if r["model"] == "afm" and r["attention"] != "none" and finite(r["mean"]["rmse"])]
    if not fms or not afms:
        return [_claim("not measurable", "needs an FM run and an AFM run with attention, both with results")]
    fm = min(fms, key=lambda r: r["mean"]["rmse"])
    afm = min(afms, key=lambda r: r["mean"]["rmse"])
    a, f = afm["mean"]["rmse"], fm["mean"]["rmse"]
    linear = [r for r in runs if r["model"] == "linear" and finite(r["mean"]["rmse"])]
    if linear and min(a, f) >= min(r["mean"]["rmse"] for r in linear):
        lin = min(r["mean"]["rmse"] for r in linear)
        return [_claim("inconclusive", f"neither {afm['run']} (RMSE {a:.4f}) nor {fm['run']} ({f:.4f}) beats the linear model "
                                       f"without interactions ({lin:.4f}): too little training to compare them (smoke scale?)")]
    gain = (f - a) / f
    paper = float(np.mean([g for *_, g in _paper_gains()]))
    evidence = (f"{afm['run']} RMSE {a:.4f} vs {fm['run']} {f:.4f}: {gain:+.1%} relative "
                f"(paper ≈ {paper:.1%}; 'supported' needs ≥ {SUPPORT_SHARE * paper:.1%})")
    if target == "click":
        evidence += "; click target: RMSE of the predicted click probability"
    spread = (afm["rmse"]["std"] or 0.0) + (fm["rmse"]["std"] or 0.0)
    if spread:
        evidence += f"; seeds' spread (sum of std) {spread:.4f}"
    if gain <= 0:
        verdict = "not supported"
    elif gain >= SUPPORT_SHARE * paper and (f - a) > spread:
        verdict = "supported"
    else:
        verdict = "partly supported"
    return [_claim(verdict, evidence)]


def _load_npz(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None


def _exports(task: str, runs: list[dict]) -> list[dict]:
    out = []
    for r in runs:
        if not r["seeds"]:
            continue
        seed = min(r["seeds"])
        z = _load_npz(paths.run_dir(task, r["run"], seed) / "attention.npz")
        if z is not None:
            out.append({"run": r["run"], "seed": seed, "model": r["model"], "attention": r["attention"], "z": z,
                        "row": r["ok"][r["ok"]["seed"] == seed].iloc[0]})
    return out


def _pair_section(exports: list[dict]) -> dict:
    """The pair matrices (truth, each attention run's mean attention, FM's interaction spread),
    the scatter of learned scores against the truth, and the per-pair table."""
    if not exports:
        return {"matrices": None, "scatter": None, "table": [], "note": "no run has exported its pair statistics yet"}
    ref = exports[0]["z"]
    fields = [str(f) for f in ref["fields"]]
    rows, cols = np.triu_indices(len(fields), k=1)
    names = [f"{fields[i]} × {fields[j]}" for i, j in zip(rows, cols)]
    truth = ref["importance"].astype(float)
    has_truth = bool(np.isfinite(truth).any())
    strong = ref["strong"].astype(bool) if has_truth else None
    panels = []
    if has_truth:
        panels.append({"title": "true importance r_fg (generator)", "values": truth, "label": "pair weight r_fg",
                       "strong": strong})
    attn_runs = [e for e in exports if np.isfinite(e["z"]["attention_mean"]).any()
                 and len(e["z"]["attention_mean"]) == len(names)]
    for e in attn_runs:
        rho = e["row"].get("pair_spearman")
        note = f"Spearman vs truth {float(rho):.3f}" if finite(rho) else ""
        panels.append({"title": f"{e['run']} (seed {e['seed']}): mean attention × {len(names)} pairs",
                       "values": e["z"]["attention_mean"] * len(names), "center": 1.0,
                       "label": "mean attention × number of pairs (1 = uniform)", "note": note, "strong": strong})
    for e in exports:
        if e["model"] == "fm" and np.isfinite(e["z"]["contribution_std"]).all() and len(e["z"]["contribution_std"]) == len(names):
            rho = e["row"].get("interaction_spearman")
            panels.append({"title": f"{e['run']} (seed {e['seed']}): spread of <v_f, v_g>",
                           "values": e["z"]["contribution_std"], "label": "std of the pair's term",
                           "note": f"Spearman vs truth {float(rho):.3f}" if finite(rho) else "", "strong": strong})
            break
    if not attn_runs:
        note = "no run with attention has results: nothing to compare with the truth"
    elif not has_truth:
        note = "these data carry no true pair importances (real data): the attention is shown alone"
    else:
        note = ""
    matrices = plots.pair_matrices(fields, panels, ncols=min(3, max(len(panels), 1))) if panels else None
    scatter = None
    table = []
    if has_truth and attn_runs:
        points = []
        for e in attn_runs:
            for n, t, v, s in zip(names, truth, e["z"]["attention_mean"], strong):
                points.append({"panel": f"{e['run']} (seed {e['seed']})", "pair": n, "truth": t, "value": v, "strong": s,
                               "y_label": "mean attention weight"})
        scatter = plots.importance_scatter(pd.DataFrame(points))
        first = attn_runs[0]
        att = first["z"]["attention_mean"]
        true_rank = _ranks(truth)
        att_rank = _ranks(att)
        for idx in np.argsort(-truth, kind="stable"):
            table.append({"pair": names[idx], "truth": fmt(truth[idx], 3), "strong": bool(strong[idx]),
                          "attention": fmt(att[idx], 4), "true_rank": int(true_rank[idx]), "attention_rank": int(att_rank[idx]),
                          "attention_std": fmt(first["z"]["attention_std"][idx], 4)})
        return {"matrices": matrices, "scatter": scatter, "table": table, "table_run": first["run"], "note": note}
    return {"matrices": matrices, "scatter": scatter, "table": table, "table_run": None, "note": note}


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(-np.asarray(values, dtype=float), kind="stable")
    ranks = np.empty(len(order), dtype=int)
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks


def _attention_range(task: str, r: dict) -> str:
    """The lowest and highest mean attention of a pair, in multiples of uniform attention (lowest seed)."""
    if not r["seeds"] or r["attention"] == "none":
        return "—"
    z = _load_npz(paths.run_dir(task, r["run"], min(r["seeds"])) / "attention.npz")
    if z is None or not np.isfinite(z["attention_mean"]).all():
        return "—"
    scaled = z["attention_mean"] * len(z["attention_mean"])
    return f"{scaled.min():.3f}–{scaled.max():.3f}"


def _recovery(task: str, runs: list[dict]) -> list[dict]:
    """Per run with pairwise terms: how well its attention (or its pair terms) rank the pairs."""
    out = []
    for r in runs:
        rho, isp = r["mean"]["pair_spearman"], r["mean"]["interaction_spearman"]
        if not finite(rho) and not finite(isp):
            continue
        passes = finite(rho) and rho > SPEARMAN_BAR
        spread = _attention_range(task, r)
        out.append({"run": r["run"], "attention": r["attention"], "spearman": r["pair_spearman"]["text"],
                    "range": spread,
                    "recall": r["strong_pair_recall"]["text"], "interaction": r["interaction_spearman"]["text"],
                    "interaction_recall": r["interaction_strong_recall"]["text"],
                    "entropy": r["attention_entropy"]["text"],
                    "verdict": ("above" if passes else "below") + f" {SPEARMAN_BAR}" if finite(rho) else "no attention",
                    "css": ("good" if passes else "bad") if finite(rho) else "na"})
    return out


def _speed(task: str, runs: list[dict]) -> list[dict]:
    """Per trained run (lowest seed): best validation score, its epoch, and the first epoch within 1% of it."""
    out = []
    for r in runs:
        if r["model"] == "linear" or not r["seeds"]:
            continue
        try:
            log = pd.read_csv(paths.run_dir(task, r["run"], min(r["seeds"])) / "train_log.csv")
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
            continue
        if not {"epoch", "valid_metric"} <= set(log.columns) or not len(log):
            continue
        score = -log["valid_metric"]
        best = float(score.min())
        out.append({"run": r["run"], "best": f"{best:.4f}", "best_epoch": int(log.loc[score.idxmin(), "epoch"]),
                    "near_epoch": int(log.loc[score <= best * 1.01, "epoch"].min()), "epochs": int(log["epoch"].max())})
    return out


def _curves(task: str, runs: list[dict], target: str) -> str | None:
    frames = []
    for r in runs:
        if r["model"] == "linear":
            continue  # fitted in closed form: no epochs
        for seed in r["seeds"]:
            try:
                log = pd.read_csv(paths.run_dir(task, r["run"], seed) / "train_log.csv")
            except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
                continue
            if {"epoch", "train_loss", "valid_metric"} <= set(log.columns):
                frames.append(log[["epoch", "train_loss", "valid_metric"]].assign(run=r["run"], seed=seed))
    if not frames:
        return None
    data = pd.concat(frames, ignore_index=True)
    data["valid_metric"] = -data["valid_metric"]
    label = "validation RMSE" if target == "rating" else "validation log-loss"
    loss = "training loss (squared error)" if target == "rating" else "training loss (log-loss)"
    baseline = next((r["run"] for r in runs if r["model"] == "fm"), None)
    return plots.loss_curves(data, baseline, loss, label)


def _samples(task: str, best: dict | None) -> dict:
    if best is None or not best["seeds"]:
        return {"run": None, "rows": []}
    path = paths.run_dir(task, best["run"], min(best["seeds"])) / "samples.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {"run": best["run"], "rows": []}
    rows = []
    for line in lines[:SAMPLE_ROWS]:
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict):
            rows.append({"features": str(item.get("features", "")), "target": str(item.get("target", "")),
                         "prediction": str(item.get("prediction", "")), "top_pair": str(item.get("top_pair", "")),
                         "top_weight": str(item.get("top_weight", ""))})
    return {"run": best["run"], "rows": rows, "has_top": any(r["top_pair"] for r in rows)}


def _data_facts(params: dict, task: str) -> dict:
    manifest = None
    try:
        manifest = aio.read_json(paths.prepared_dir(task) / "manifest.json")
    except (OSError, ValueError):
        pass
    data = params["tasks"][task]["data"]
    facts = {"source": data["source"], "target": data["target"], "fields": [], "strong": [], "oracle": None,
             "examples": None}
    if isinstance(manifest, dict):
        sizes = manifest.get("field_sizes") or {}
        facts["fields"] = [{"name": str(k), "size": int(sizes[k])} for k in manifest.get("fields", []) if k in sizes]
        facts["strong"] = [str(s) for s in manifest.get("strong_pairs", [])]
        oracle = manifest.get("oracle") or {}
        labels = {"rmse": "RMSE", "mae": "MAE", "logloss": "log-loss", "auc": "ROC-AUC"}
        facts["oracle"] = {labels[k]: fmt(oracle[k], 4) for k in labels if finite(oracle.get(k))} or None
        facts["examples"] = manifest.get("examples")
    return facts


def context(params: dict, task: str = "recsys", out_dir: Path | str = paths.REPORTS) -> dict:
    """Everything recsys.html.j2 shows, as plain values (strings escaped by the template)."""
    out_dir = Path(out_dir)
    table = agg.collect(params, task)
    counts = status_counts(table)
    target = params["tasks"][task]["data"]["target"]
    base = {"task": task, "title": "Recommendation (FM vs AFM)", "summary": {**counts, "devices": devices(table)},
            "problems": problems(table), "notebook": notebook_link(task, out_dir), "target": target,
            "summary_csv": relpath(paths.summary_csv(task), out_dir), "has_results": counts["ok"] > 0,
            "data": _data_facts(params, task), "spearman_bar": SPEARMAN_BAR}
    if not counts["ok"]:
        base["notice"] = (f"No results yet: none of the {counts['total']} run × seed combinations has a "
                          f"metrics.json ({counts['failed']} failed, {counts['missing']} missing).")
        return base
    runs = _per_run(params, task, table)
    best = _best(runs, _sort_metric(target))
    exports = _exports(task, runs)
    ok = table[table["status"] == "ok"]
    return {
        **base,
        "multi_seed": len(params["seeds"]) > 1,
        "seeds": list(params["seeds"]),
        "sort_metric": "RMSE" if target == "rating" else "log-loss",
        "leaderboard": _leaderboard(runs, best, target),
        "best": best["run"] if best else None,
        "claims": _claims(runs, target),
        "support_share": SUPPORT_SHARE,
        "recovery": _recovery(task, runs),
        "pairs": _pair_section(exports),
        "curves": _curves(task, runs, target),
        "speed": _speed(task, runs),
        "samples": _samples(task, best),
        "metrics_links": [{"run": r, "seed": int(s), "href": relpath(paths.run_dir(task, r, s) / "metrics.json", out_dir)}
                          for r, s in zip(ok["run"], ok["seed"])],
    }
