"""The recsys section: leaderboard, claim C7 (AFM vs FM RMSE), the field-pair attention matrix
beside the true importance matrix, attention against the true importances, training curves and
sample predictions.

Everything read from the run folders is returned as plain strings and numbers; the template
(autoescaped) is the only place they become HTML.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ... import paths
from ...report import aggregate as agg
from ...report import noise
from . import plots
from ...report.sections import (LEAD_COLUMNS, attention_exports, base_context, best_run, claim, collect_runs, curves,
                                finite, fmt, int_cell, lead_cells, leaderboard, load_npz, read_jsonl, read_manifest,
                                results_context, run_file)

SAMPLE_ROWS = 10
SPEARMAN_BAR = 0.6        # the task's acceptance bar for "the attention ranks the pairs like the truth"
SUPPORT_SHARE = 0.5       # C7 is "supported" when AFM's gain is at least half the paper's relative gain

# Xiao et al. 2017, Table 2 (test RMSE, k = 256): (data, AFM, LibFM)
PAPER_RMSE = (("Frappe", 0.3102, 0.3385), ("MovieLens-tag", 0.4325, 0.4735))
C7 = ("Attention over pairwise interactions improves FM by about 8–9% relative RMSE", "Xiao et al. 2017 (AFM), Table 2")
METRICS = {"rmse": 3, "mae": 3, "logloss": 3, "auc": 3, "pair_spearman": 3, "strong_pair_recall": 3,  # column: decimals
           "interaction_spearman": 3, "interaction_strong_recall": 3, "attention_entropy": 5, "parameters": 3,
           "train_seconds": 1}


def _paper_gains() -> list[tuple[str, float, float, float]]:
    return [(name, afm, fm, (fm - afm) / fm) for name, afm, fm in PAPER_RMSE]


def _sort_metric(target: str) -> str:
    return "rmse" if target == "rating" else "logloss"


def _leaderboard(runs: list[dict], best: dict | None, target: str) -> dict:
    columns = [*LEAD_COLUMNS,
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

    def cells(r):
        return [*lead_cells(r), r["rmse"], *([r["logloss"], r["auc"]] if target == "click" else [r["mae"]]),
                r["pair_spearman"], r["strong_pair_recall"], r["interaction_spearman"], int_cell(r["parameters"]),
                r["train_seconds"]]

    return leaderboard(runs, best, columns, cells, _sort_metric(target), lower_is_better=True)


def _claim(verdict: str, evidence: str) -> dict:
    gains = _paper_gains()
    paper = "; ".join(f"{name}: AFM {afm:.4f} vs LibFM {fm:.4f} test RMSE ({g:.1%} relative)" for name, afm, fm, g in gains)
    return claim("C7", (C7[0], C7[1], paper + " — different data (real, k = 256)"), verdict, evidence)


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
                                       f"without interactions ({lin:.4f}): too little training to compare them")]
    gain = (f - a) / f
    paper = float(np.mean([g for *_, g in _paper_gains()]))
    evidence = (f"{afm['run']} RMSE {a:.4f} vs {fm['run']} {f:.4f}: {gain:+.1%} relative "
                f"(paper ≈ {paper:.1%}; 'supported' needs ≥ {SUPPORT_SHARE * paper:.1%})")
    if target == "click":
        evidence += "; click target: RMSE of the predicted click probability"
    spread = (afm["rmse"]["std"] or 0.0) + (fm["rmse"]["std"] or 0.0)
    if spread:
        evidence += f"; seeds' spread (sum of std) {spread:.4f}"
    # AFM ahead beyond seed noise too (Welch's t-test over seeds; one seed: the means decide): a gain within
    # noise is partly supported at most, a loss within noise a tie (inconclusive)
    test = noise.compare_runs(afm, fm, "rmse", higher_is_better=False, digits=4)
    won = noise.holds(test)
    if test["noise"]:
        evidence += f"; {test['test_text']}" + (": within noise" if won is None else "")
    evidence += noise.one_seed_note([test])
    if gain <= 0:
        verdict = "inconclusive" if won is None else "not supported"
    elif gain >= SUPPORT_SHARE * paper and (f - a) > spread and won is True:
        verdict = "supported"
    else:
        verdict = "partly supported"
    return [_claim(verdict, evidence)]


def _exports(task: str, runs: list[dict]) -> list[dict]:
    out = []
    for r, seed, z in attention_exports(task, runs):
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
    z = load_npz(run_file(task, r, "attention.npz"))
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
            log = pd.read_csv(run_file(task, r, "train_log.csv"))
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
    label = "validation RMSE" if target == "rating" else "validation log-loss"
    loss = "training loss (squared error)" if target == "rating" else "training loss (log-loss)"
    baseline = next((r["run"] for r in runs if r["model"] == "fm"), None)
    return curves(task, [r for r in runs if r["model"] != "linear"],  # linear: closed form, no epochs
                  baseline, label, loss_label=loss, negated=True)


def _samples(task: str, best: dict | None) -> dict:
    if best is None or not best["seeds"]:
        return {"run": None, "rows": []}
    rows = [{k: str(item.get(k, "")) for k in ("features", "target", "prediction", "top_pair", "top_weight")}
            for item in read_jsonl(run_file(task, best, "samples.jsonl"), max_lines=SAMPLE_ROWS)]
    return {"run": best["run"], "rows": rows, "has_top": any(r["top_pair"] for r in rows)}


def _data_facts(params: dict, task: str) -> dict:
    manifest = read_manifest(task, params["dataset"])
    data = params["tasks"][task]["data"]
    facts = {"source": data["source"], "target": data["target"], "fields": [], "strong": [], "oracle": None,
             "examples": None}
    if manifest:
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
    target = params["tasks"][task]["data"]["target"]
    base = {**base_context(task, "Recommendation (FM vs AFM)", table, out_dir), "target": target,
            "data": _data_facts(params, task), "spearman_bar": SPEARMAN_BAR}
    if not base["has_results"]:
        return base
    runs = collect_runs(params, task, table, METRICS)
    best = best_run(runs, _sort_metric(target), lower_is_better=True)
    exports = _exports(task, runs)
    return {
        **base,
        **results_context(params, task, table, out_dir),
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
    }
