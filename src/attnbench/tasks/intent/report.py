"""The intent section: leaderboard (the classical TF-IDF baseline marked), the best attention run against
the best run without attention (the baseline included), accuracy on the hard subsets (confusers, keyword typos), claims
C8 and C12, attention mass on the gold keywords, token highlights of the same test utterances for
every run, per-head attention maps of the Transformer/BERT runs, training curves and links.

Everything read from the run folders is returned as plain strings and numbers; the template
(autoescaped) is the only place they become HTML.
"""
from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pandas as pd

from ... import paths
from ...report import aggregate as agg
from ...report import noise
from ...report import plots as shared_plots
from . import plots
from ...report.sections import (attention_exports, base_context, best_run, claim, collect_runs, curves, finite,
                                first_int, int_cell, lead_cells, leaderboard, reference_export, results_context)

MIN_ACCURACY = 0.2  # below this everywhere, runs have not learnt enough to compare (smoke scale)
METRICS = ("accuracy", "macro_f1", "keyword_ratio", "keyword_top1", "mlm_accuracy", "parameters", "train_seconds")
SUBSETS = (("clean", "clean", "no confuser, no typo in a keyword"),
           ("confuser", "with a confuser", "another intent's keywords in a negated or context clause"),
           ("keyword_typo", "keyword typo", "a typo in a gold keyword (often an unknown word)"))
WEIGHT_KINDS = {"attention": "attention weights", "max-pool saliency": "saliency: share of max-pooled dimensions",
                "[CLS] attention": "last layer's [CLS] attention, heads averaged"}
CLASSICAL = "tfidf"   # the encoder of the classical baseline's model (baselines/tfidf.py)

PAPERS = {
    "C8": ("Self-attention on intent text puts its weight on the keywords and masks filler characters",
           "project notes (chatbot intent)",
           "qualitative claim of the notes; no published figure"),
    "C12": ("Masked-LM pre-training helps a small Transformer classifier",
            "Devlin et al. 2019",
            "GLUE / SQuAD fine-tuning of BERT (different data); the reference table gives no figure for this comparison"),
}


def _options(params: dict, task: str, run: str) -> dict:
    section = params["tasks"][task]
    return section.get("models", {}).get(section["runs"][run]["model"], {})


def _per_run(params: dict, task: str, table: pd.DataFrame) -> list[dict]:
    metrics = {c: 1 if c in ("parameters", "train_seconds") else 3 for c in METRICS}
    metrics.update({f"subset_accuracy_{key}": 3 for key, _, _ in SUBSETS})
    runs = collect_runs(params, task, table, metrics)
    for entry in runs:
        opts = _options(params, task, entry["run"])
        entry.update({"encoder": opts.get("encoder"), "pooling": opts.get("pooling"), "mlm": "mlm" in opts,
                      "options": opts, "classical": opts.get("encoder") == CLASSICAL})
        ok = entry["ok"]
        described = ok["classical_baseline"].dropna() if "classical_baseline" in ok else []
        entry["classical_text"] = str(described.iloc[0]) if len(described) else "TF-IDF n-grams + linear classifier"
        kinds = ok["token_weights"].dropna() if "token_weights" in ok else []
        entry["weights_kind"] = str(kinds.iloc[0]) if len(kinds) else None
    return runs


def _scored(runs: list[dict]) -> list[dict]:
    return [r for r in runs if finite(r["mean"]["accuracy"])]


def _baseline(runs: list[dict]) -> dict | None:
    """The mean-pooling run over plain embeddings (the fastText-style baseline)."""
    return next((r for r in runs if r["attention"] == "none" and r["pooling"] == "mean" and r["encoder"] == "embedding"),
                next((r for r in runs if r["attention"] == "none" and r["pooling"] == "mean"), None))


def _best(runs: list[dict], attention: bool | None = None) -> dict | None:
    """The most accurate run (only those with / without attention when `attention` is True / False)."""
    return best_run([r for r in runs if attention is None or (r["attention"] != "none") == attention], "accuracy")


def _leaderboard(runs: list[dict], best: dict | None) -> dict:
    columns = [("run", "", False), ("encoder / pooling", "", False), ("attention", "attention mechanism", False),
               ("accuracy", "test accuracy (higher is better)", True),
               ("macro-F1", "test macro-F1 over the intents (scikit-learn)", True),
               ("keyword ratio", "attention mass on the gold keyword tokens / the mass a uniform distribution puts "
                                 "there (1 = no better than uniform; — without token weights)", True),
               ("keyword top-1", "share of test utterances whose most-attended token is a gold keyword", True),
               ("MLM accuracy", "masked-LM accuracy of the pre-trained encoder on the test texts (BERT runs)", True),
               ("parameters", "trainable parameters", True),
               ("training time (s)", "training wall time from train_info.json (BERT: pre-training + fine-tuning)", True)]

    def cells(r):
        how = f"{r['encoder'] or '?'} / {r['pooling'] or '?'}" + (" + masked-LM pre-training" if r["mlm"] else "")
        if r["classical"]:
            how = f"classical baseline: {r['classical_text']}"
        return [*lead_cells(r, how), r["accuracy"], r["macro_f1"], r["keyword_ratio"], r["keyword_top1"],
                r["mlm_accuracy"], int_cell(r["parameters"]), r["train_seconds"]]

    return leaderboard(runs, best, columns, cells, "accuracy")


def _subsets(runs: list[dict]) -> dict:
    used = [(k, label, title) for k, label, title in SUBSETS if any(r[f"subset_accuracy_{k}"]["n"] for r in runs)]
    rows = []
    for r in sorted(_scored(runs), key=lambda r: -r["mean"]["accuracy"]):
        rows.append({"run": r["run"], "attention": r["attention"],
                     "cells": [r[f"subset_accuracy_{k}"] for k, _, _ in used]})
    return {"columns": [{"label": label, "title": title} for _, label, title in used], "rows": rows}


def _comparison(runs: list[dict], baseline: dict | None) -> dict | None:
    """The best attention run against mean pooling (the issue's headline comparison), decided against the
    best run without attention, the classical TF-IDF baseline included: attention is ahead only when it
    beats every run without it."""
    best = _best(runs, attention=True)
    if best is None or baseline is None or not finite(baseline["mean"]["accuracy"]):
        return None
    diff = best["mean"]["accuracy"] - baseline["mean"]["accuracy"]
    no_attn = _best([r for r in runs if r is not baseline], attention=False)
    strongest = _best([r for r in runs if r["attention"] == "none"])   # the baseline or another run without attention
    margin = best["mean"]["accuracy"] - strongest["mean"]["accuracy"]
    # ahead only beyond seed noise (Welch's t-test over seeds; with one seed the means decide)
    test = noise.compare_runs(best, strongest, "accuracy")
    classical = next((r for r in runs if r["classical"] and finite(r["mean"]["accuracy"])), None)
    return {"best": best["run"], "best_acc": f"{best['mean']['accuracy']:.3f}", "baseline": baseline["run"],
            "baseline_acc": f"{baseline['mean']['accuracy']:.3f}", "diff": f"{diff:+.3f}",
            "other": no_attn["run"] if no_attn else None,
            "other_acc": f"{no_attn['mean']['accuracy']:.3f}" if no_attn else None,
            "other_classical": bool(no_attn and no_attn["classical"]),
            "against": strongest["run"], "against_acc": f"{strongest['mean']['accuracy']:.3f}",
            "against_diff": f"{margin:+.3f}", "against_classical": strongest["classical"],
            "beats": margin > 0 and noise.holds(test) is True, "within_noise": noise.holds(test) is None,
            "against_test": test["test_text"] if test["noise"] else "",
            "classical": classical["run"] if classical else None,
            "classical_acc": f"{classical['mean']['accuracy']:.3f}" if classical else None}


def _claims(runs: list[dict]) -> list[dict]:
    out = []
    # C8: the notes' self-attention (self_dot) weighs the keywords
    notes = [r for r in runs if r["attention"] == "self_dot" and finite(r["mean"]["keyword_ratio"])]
    others = [r for r in runs if r["attention"] not in ("none", "self_dot") and finite(r["mean"]["keyword_ratio"])]
    if not notes:
        why = ("needs a run with attention self_dot" if not any(r["attention"] == "self_dot" for r in runs)
               else "no keyword ratio: the data have no gold keywords (real data) or the run has no results")
        out.append(_claim("C8", "not measurable", why))
    elif max(r["mean"]["accuracy"] for r in notes) < MIN_ACCURACY:
        out.append(_claim("C8", "inconclusive", f"the self_dot run is below {MIN_ACCURACY:.0%} accuracy: "
                                                "too little training to read its weights"))
    else:
        r = max(notes, key=lambda r: r["mean"]["keyword_ratio"])
        ratio, top1 = r["mean"]["keyword_ratio"], r["mean"]["keyword_top1"]
        evidence = (f"{r['run']}: {ratio:.2f}× the uniform mass on the gold keywords"
                    + (f"; its most-attended token is a keyword in {top1:.0%} of the test utterances" if finite(top1) else ""))
        if others:
            evidence += f"; other attention runs: median {statistics.median(o['mean']['keyword_ratio'] for o in others):.2f}×"
        verdict = ("supported" if ratio >= 2 and finite(top1) and top1 >= 0.5
                   else "partly supported" if ratio > 1 else "not supported")
        out.append(_claim("C8", verdict, evidence))

    # C12: BERT vs the same encoder from scratch
    pairs = []
    for b in runs:
        if not b["mlm"] or not finite(b["mean"]["accuracy"]):
            continue
        plain = {k: v for k, v in b["options"].items() if k != "mlm"}
        twin = next((r for r in runs if not r["mlm"] and r["options"] == plain and finite(r["mean"]["accuracy"])),
                    next((r for r in runs if not r["mlm"] and r["encoder"] == "transformer" and r["pooling"] == b["pooling"]
                          and finite(r["mean"]["accuracy"])), None))
        if twin is not None:
            pairs.append((b, twin))
    if not pairs:
        out.append(_claim("C12", "not measurable", "needs a run with masked-LM pre-training and a run of the same "
                                                   "Transformer encoder from scratch, both with results"))
    else:
        b, t = pairs[0]
        if max(b["mean"]["accuracy"], t["mean"]["accuracy"]) < MIN_ACCURACY:
            out.append(_claim("C12", "inconclusive", f"both runs are below {MIN_ACCURACY:.0%} accuracy: too little training to compare them"))
        else:
            diff = b["mean"]["accuracy"] - t["mean"]["accuracy"]
            tol = max(0.005, (b["accuracy"]["std"] or 0.0) + (t["accuracy"]["std"] or 0.0))
            test = noise.compare_runs(b, t, "accuracy")
            evidence = (f"{b['run']} {b['mean']['accuracy']:.3f} vs {t['run']} (from scratch) "
                        f"{t['mean']['accuracy']:.3f} accuracy ({diff:+.3f}{noise.paren(test)}); macro-F1 "
                        f"{b['mean']['macro_f1']:.3f} vs {t['mean']['macro_f1']:.3f}")
            if finite(b["mean"]["mlm_accuracy"]):
                evidence += f"; masked-LM accuracy of the pre-trained encoder {b['mean']['mlm_accuracy']:.3f}"
            evidence += noise.one_seed_note([test])
            # supported: ahead beyond the tolerance and beyond seed noise; a gain within either is partly
            # supported; a loss within noise is a tie (inconclusive), not a refutation
            won = noise.holds(test)
            if diff > 0:
                verdict = "supported" if diff > tol and won is True else "partly supported"
            else:
                verdict = "inconclusive" if won is None else "not supported"
            out.append(_claim("C12", verdict, evidence))
    return out


def _claim(cid: str, verdict: str, evidence: str) -> dict:
    return claim(cid, PAPERS[cid], verdict, evidence)


def _exports(task: str, runs: list[dict]) -> list[dict]:
    return [{"run": r["run"], "seed": seed, "attention": r["attention"], "kind": r["weights_kind"], "z": z, "entry": r}
            for r, seed, z in attention_exports(task, runs)]


def _highlights(exports: list[dict]) -> dict:
    """The exported test utterances, each with one highlighted token row per run with token weights."""
    reference, n_utts = reference_export(exports, "tokens_0", "tokens_")
    if reference is None:
        return {"utterances": [], "note": "no run has exported test utterances yet"}
    utterances = []
    for n in range(n_utts):
        tokens = [str(t) for t in reference[f"tokens_{n}"]]
        gold = [bool(g) for g in reference.get(f"gold_{n}", np.zeros(len(tokens)))]
        distract = [bool(g) for g in reference.get(f"distractor_{n}", np.zeros(len(tokens)))]
        known = [bool(g) for g in reference.get(f"known_{n}", np.ones(len(tokens)))]
        rows = []
        for e in exports:
            z = e["z"]
            if not z or [str(t) for t in z.get(f"tokens_{n}", [])] != tokens:
                continue
            pred = str(z.get(f"pred_{n}", ""))
            row = {"run": e["run"], "pred": pred, "correct": pred == str(reference[f"label_{n}"]),
                   "kind": WEIGHT_KINDS.get(e["kind"] or "", e["kind"] or ""), "cells": None, "mass": None}
            w = z.get(f"weights_{n}")
            if w is not None and len(w) == len(tokens):
                w = np.asarray(w, dtype=float)
                top = float(w.max()) or 1.0
                row["cells"] = [{"tok": t, "alpha": f"{min(1.0, float(v) / top):.2f}", "title": f"{float(v):.3f}",
                                 "gold": g, "distractor": d} for t, v, g, d in zip(tokens, w, gold, distract)]
                if any(gold):
                    row["mass"] = f"{float(w[np.array(gold)].sum()):.2f}"
            rows.append(row)
        uniform = f"{sum(gold) / len(tokens):.2f}" if any(gold) else None
        utterances.append({"index": n + 1, "label": str(reference[f"label_{n}"]), "uniform": uniform,
                           "tokens": [{"tok": t, "gold": g, "distractor": d, "unknown": not k}
                                      for t, g, d, k in zip(tokens, gold, distract, known)],
                           "rows": [r for r in rows if r["cells"]], "plain": [r for r in rows if not r["cells"]]})
    return {"utterances": utterances, "note": ""}


def _heads(exports: list[dict]) -> list[dict]:
    """Per-head maps of the first exported utterance for every run that exported them."""
    figures = []
    for e in exports:
        z = e["z"]
        if not z or "heads_0" not in z:
            continue
        tokens = ["[CLS]"] + [str(t) for t in z["tokens_0"]]
        maps = np.asarray(z["heads_0"], dtype=float)
        if maps.ndim != 4 or maps.shape[-1] != len(tokens):
            continue
        figures.append({"run": e["run"], "seed": e["seed"], "text": " ".join(tokens[1:]),
                        "layers": int(maps.shape[0]), "heads": int(maps.shape[1]),
                        "image": plots.attention_head_maps(tokens, maps)})
    return figures


def _bars(runs: list[dict], highlight: str | None) -> str | None:
    rows = [{"run": r["run"], "value": float(v)} for r in runs
            for v in (r["ok"]["keyword_ratio"] if "keyword_ratio" in r["ok"] else []) if finite(v)]
    if not rows:
        return None
    return shared_plots.metric_bars(pd.DataFrame(rows), "attention mass on the gold keywords / uniform mass",
                             reference=1.0, reference_label="uniform (1.0)", highlight=highlight)


def context(params: dict, task: str = "intent", out_dir: Path | str = paths.REPORTS) -> dict:
    """Everything intent.html.j2 shows, as plain values (strings escaped by the template)."""
    out_dir = Path(out_dir)
    table = agg.collect(params, task)
    base = {**base_context(task, "Intent classification", table, out_dir), "test_utterances": None}
    if not base["has_results"]:
        return base
    runs = _per_run(params, task, table)
    baseline, best = _baseline(runs), _best(runs)
    exports = _exports(task, runs)
    ok = table[table["status"] == "ok"]
    notes_run = next((r["run"] for r in runs if r["attention"] == "self_dot"), None)
    return {
        **base,
        **results_context(params, task, table, out_dir),
        "leaderboard": _leaderboard(runs, best),
        "best": best["run"] if best else None,
        "baseline": baseline["run"] if baseline else None,
        "comparison": _comparison(runs, baseline),
        "subsets": _subsets(runs),
        "claims": _claims(runs),
        "bars": _bars(runs, notes_run),
        "notes_run": notes_run,
        "highlights": _highlights(exports),
        "heads": _heads(exports),
        "curves": curves(task, runs, baseline["run"] if baseline else None, "validation accuracy"),
        "test_utterances": first_int(ok, "test_utterances"),
    }
