"""The documents section: leaderboard (the classical TF-IDF baseline marked), claim C6 (HAN vs HAN-mean,
HAN-max and the classical baseline: the best run without attention), whether each run's
weights find the label-bearing sentence, and test documents drawn with their sentence weights (bars)
and word weights (highlights), one block per run.

Everything read from the run folders is returned as plain strings and numbers; the template
(autoescaped) is the only place they become HTML.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ... import paths
from ...report import aggregate as agg
from ...report import noise
from . import plots
from ...report.sections import (attention_exports, base_context, best_run, claim, collect_runs, curves, finite,
                                int_cell, lead_cells, leaderboard, load_npz, read_manifest, reference_export,
                                results_context, run_file)

PAPER = ("Hierarchical attention beats averaging and max-pooling at both levels",
         "Yang et al. 2016, Table 2",
         "Yelp'13 / Yelp'14 / Yelp'15 / IMDB / Yahoo / Amazon accuracy of HN-ATT (approx.): "
         "68.2 / 70.5 / 71.0 / 49.4 / 75.8 / 63.6 — real reviews, not our data")
MARGIN = 0.05  # above chance accuracy by less than this everywhere: nothing learnt to rank (smoke scale)
METRICS = ("accuracy", "macro_f1", "sentence_hit_rate", "word_hit_rate", "gold_sentence_weight", "chance_hit_rate",
           "parameters", "train_seconds", "epochs_trained", "best_epoch")


CLASSICAL = "tfidf"   # the classical baseline's model (baselines/tfidf.py): no weights, no pooling


def pooling(spec: dict) -> str:
    if spec["model"] == CLASSICAL:
        return "none"
    if spec["attention"] == "none":
        return (spec.get("options") or {}).get("pooling", "mean")
    return "attention"


def kind(spec: dict) -> str:
    """What a run is, in the paper's terms."""
    p = pooling(spec)
    if spec["model"] == CLASSICAL:
        return "classical baseline"
    if spec["model"] == "flat":
        return "flat attention" if p == "attention" else f"flat {p}-pooling"
    return {"attention": "HAN", "mean": "HAN-mean", "max": "HAN-max"}[p]


def _per_run(params: dict, task: str, table: pd.DataFrame) -> list[dict]:
    epochs = params["tasks"][task]["scales"][params["scale"]]["epochs"]
    runs = collect_runs(params, task, table, {c: 1 if c == "train_seconds" else 3 for c in METRICS})
    for entry in runs:
        spec, ok = params["tasks"][task]["runs"][entry["run"]], entry["ok"]
        entry.update({"pooling": pooling(spec), "kind": kind(spec), "classical": spec["model"] == CLASSICAL})
        if entry["classical"]:
            described = ok["classical_baseline"].dropna() if "classical_baseline" in ok else []
            entry["kind"] = "classical baseline: " + (str(described.iloc[0]) if len(described)
                                                      else "TF-IDF n-grams + linear classifier")
        # still learning when training stopped: the best epoch was the last of the budget
        still = [int(b) for b, e in zip(ok.get("best_epoch", []), ok.get("epochs_trained", []))
                 if finite(b) and finite(e) and int(b) == int(e) == epochs]
        entry["still_improving"] = bool(still)
        weights = ok["sentence_weights"].dropna() if "sentence_weights" in ok else []
        entry["weights_kind"] = (str(weights.iloc[0]) if len(weights) else
                                 "attention" if spec["attention"] != "none" else "none" if entry["classical"] else "")
    return runs


def _leaderboard(runs: list[dict], best: dict | None) -> dict:
    columns = [("run", "", False), ("kind", "HAN: attention at both levels; HAN-mean / HAN-max: the same encoders with "
                                          "averaging / max-pooling; flat: one attention over all words", False),
               ("attention", "attention mechanism (none: pooling)", False),
               ("accuracy", "test accuracy (higher is better)", True),
               ("macro-F1", "test macro-F1 over the classes", True),
               ("sentence hit rate", "share of test documents whose most-weighted sentence is the label-bearing one", True),
               ("word hit rate", "share whose most-weighted word of the label-bearing sentence is a label word", True),
               ("parameters", "trainable parameters", True),
               ("training time (s)", "training loop wall time from train_info.json", True),
               ("epochs (best)", "epochs trained (the epoch whose weights were kept)", True)]

    def cells(r):
        epochs = "—"
        if r["epochs_trained"]["n"]:
            epochs = f"{r['epochs_trained']['mean']:.0f} ({r['best_epoch']['mean']:.0f})"
        return [*lead_cells(r, r["kind"]), r["accuracy"], r["macro_f1"], r["sentence_hit_rate"], r["word_hit_rate"],
                int_cell(r["parameters"]), r["train_seconds"], {"text": epochs, "sort": r["epochs_trained"]["sort"]}]

    # no peak-memory column here: the documents leaderboard has never shown one
    return leaderboard(runs, best, columns, cells, "accuracy", memory=False)


def _claim(verdict: str, evidence: str) -> dict:
    return claim("C6", PAPER, verdict, evidence)


def _claims(runs: list[dict], n_classes: int | None) -> list[dict]:
    def pick(k):
        found = [r for r in runs if r["model"] == "han" and r["kind"] == k and finite(r["mean"]["accuracy"])]
        return max(found, key=lambda r: r["mean"]["accuracy"]) if found else None

    han, mean, mx = pick("HAN"), pick("HAN-mean"), pick("HAN-max")
    others = [r for r in (mean, mx) if r is not None]
    # the claim is that attention helps: it is also decided against the classical baseline (the best run
    # without attention may be it), when that has results
    classical = max((r for r in runs if r["classical"] and finite(r["mean"]["accuracy"])),
                    key=lambda r: r["mean"]["accuracy"], default=None)
    if han is None or not others:
        have = ", ".join(r["run"] for r in (han, mean, mx) if r) or "none"
        return [_claim("not measurable", f"needs a HAN run with results and a HAN-mean or HAN-max run (have: {have})")]
    compared = [han, *others]
    chance = 1.0 / n_classes if n_classes else 0.0
    if max(r["mean"]["accuracy"] for r in compared) < chance + MARGIN:
        return [_claim("inconclusive", f"every compared run is within {MARGIN:g} of chance accuracy ({chance:.3f}; best "
                                       f"{max(r['mean']['accuracy'] for r in compared):.3f}): too little training to rank "
                                       "them")]

    def fig(r):
        text = f"{r['run']} {r['accuracy']['text']}"
        return text + (f" (macro-F1 {r['macro_f1']['text']})" if r["macro_f1"]["n"] else "")

    against = others + ([classical] if classical is not None else [])
    # a win is a lead beyond seed noise (Welch's t-test over seeds; one seed: the means decide, ties are no
    # win); a gap within noise is a tie, neither a win nor a loss
    tests = [noise.compare_runs(han, r, "accuracy") for r in against]
    held = [noise.holds(c) for c in tests]
    evidence = (f"test accuracy: {fig(han)} vs " + ", ".join(
        f"{fig(r)}{' (classical baseline)' if r is classical else ''} "
        f"({han['mean']['accuracy'] - r['mean']['accuracy']:+.3f}{noise.paren(c)})" for r, c in zip(against, tests)))
    if len(others) < 2:
        evidence += "; only one of HAN-mean / HAN-max has results"
    if classical is None:
        evidence += "; the classical baseline has no results"
    elif held[-1] is None:
        evidence += "; the classical baseline is within noise of HAN: no sign that attention beats the best run without it"
    elif held[-1] is False:
        evidence += "; the classical baseline is not behind HAN: attention does not beat the best run without it"
    verdict = noise.verdict(held, can_support=len(others) == 2)
    evidence += noise.one_seed_note(tests)
    still = [r["run"] for r in compared if r["still_improving"]]
    if still:
        evidence += (f"; note: {', '.join(still)} still improved on the validation set in the last epoch of the budget, "
                     "so the gap is measured at an equal training budget and may narrow with longer training")
    return [_claim(verdict, evidence)]


def _attention_rows(runs: list[dict]) -> list[dict]:
    rows = []
    for r in runs:
        if not r["seeds"]:
            continue
        hit, chance = r["sentence_hit_rate"], r["chance_hit_rate"]
        rows.append({"run": r["run"], "kind": r["kind"], "weights": r["weights_kind"] or "—",
                     "hit": hit, "chance": chance, "word_hit": r["word_hit_rate"], "gold_weight": r["gold_sentence_weight"],
                     "above": finite(hit["mean"]) and finite(chance["mean"]) and hit["mean"] > chance["mean"]})
    return rows


def _doc_weights(model: str, sentence: np.ndarray, word: np.ndarray) -> np.ndarray:
    """Each word's share of the whole document's weight: HAN's word weights are within a sentence, so
    they are scaled by the sentence weight; the flat model's are over the document already."""
    return word if model == "flat" else word * sentence[:, None]


def _shade(weight: float, n_words: int) -> float:
    """Highlight strength in [0, 1]: log of the weight relative to uniform (1/n_words), 0 at or below
    uniform, 1 when all the document's weight is on this word."""
    ratio = float(weight) * n_words
    if ratio <= 1.0 or n_words < 2:
        return 0.0
    return round(min(1.0, float(np.log(ratio) / np.log(n_words))), 3)


def _documents(task: str, runs: list[dict]) -> dict:
    """The exported test documents, each with one block per run (its lowest seed)."""
    exports = [{"run": r["run"], "kind": r["kind"], "weights": r["weights_kind"], "seed": seed, "model": r["model"], "z": z}
               for r, seed, z in attention_exports(task, runs)]
    reference, k = reference_export(exports, "tokens_0", "tokens_")
    if reference is None:
        return {"docs": [], "note": "no run has exported document weights yet"}
    docs = []
    for n in range(k):
        tokens = reference[f"tokens_{n}"]
        gold = int(reference[f"gold_{n}"])
        gold_words = reference.get(f"gold_words_{n}")
        sentences = [[str(t) for t in row if str(t)] for row in tokens]
        blocks = []
        for e in exports:
            z = e["z"]
            block: dict[str, Any] = {"run": e["run"], "kind": e["kind"], "weights": e["weights"], "seed": e["seed"],
                                     "missing": "", "note": "", "rows": []}
            if z is None:
                block["missing"] = "attention.npz missing or unreadable"
            elif f"tokens_{n}" not in z or z[f"tokens_{n}"].shape != tokens.shape or not (z[f"tokens_{n}"] == tokens).all():
                block["missing"] = "another document was exported"
            elif f"sentence_{n}" not in z:   # the classical baseline: a prediction, no weights
                block["pred"], block["label"] = str(z[f"pred_{n}"]), str(z[f"label_{n}"])
                block["correct"] = block["pred"] == block["label"]
                block["note"] = "no sentence or word weights (the classical baseline reads the whole text as n-grams)"
            else:
                sw, ww = z[f"sentence_{n}"].astype(float), z[f"word_{n}"].astype(float)
                dw = _doc_weights(e["model"], sw, ww)
                n_words = sum(len(w) for w in sentences)
                block["pred"], block["label"] = str(z[f"pred_{n}"]), str(z[f"label_{n}"])
                block["correct"] = block["pred"] == block["label"]
                block["top"] = int(np.argmax(sw)) if sw.size else -1
                for s, words in enumerate(sentences):
                    block["rows"].append({
                        "index": s, "weight": round(float(sw[s]), 4), "width": round(100 * float(np.clip(sw[s], 0, 1)), 1),
                        "gold": s == gold, "top": s == block["top"],
                        "words": [{"text": w, "shade": _shade(dw[s, i], n_words), "weight": round(float(dw[s, i]), 4),
                                   "gold": bool(gold_words is not None and gold_words[s, i])}
                                  for i, w in enumerate(words)]})
            blocks.append(block)
        docs.append({"index": n + 1, "label": str(reference[f"label_{n}"]), "gold": gold, "n_sentences": len(sentences),
                     "blocks": blocks})
    return {"docs": docs, "note": ""}


def _gold_weights(task: str, runs: list[dict]) -> tuple[str | None, float | None]:
    rows = []
    chance = None
    for r in runs:
        if not r["seeds"] or r["pooling"] in ("mean", "none"):
            continue
        z = load_npz(run_file(task, r, "attention.npz"))
        if z is None or "gold_sentence_weight" not in z:
            continue
        values = z["gold_sentence_weight"].astype(float)
        rows += [{"run": r["run"], "value": v} for v in values if np.isfinite(v)]
        if chance is None and "n_sentences" in z:
            n = z["n_sentences"][np.isfinite(values)]
            chance = float(np.mean(1.0 / n)) if n.size else None
    if not rows:
        return None, None
    return plots.weight_distribution(pd.DataFrame(rows), chance, "weight on the label-bearing sentence (test documents)"), chance


def context(params: dict, task: str = "documents", out_dir: Path | str = paths.REPORTS) -> dict:
    """Everything documents.html.j2 shows, as plain values (strings escaped by the template)."""
    out_dir = Path(out_dir)
    table = agg.collect(params, task)
    manifest = read_manifest(task, params["dataset"])
    base = {**base_context(task, "Documents (hierarchical attention)", table, out_dir),
            "data": {"source": manifest.get("source"), "documents": manifest.get("documents"),
                     "sentences": manifest.get("sentences_per_document", {}).get("test"),
                     "labels": manifest.get("labels") or [],
                     "majority": manifest.get("label_word_majority_accuracy")}}
    if not base["has_results"]:
        return base
    runs = _per_run(params, task, table)
    best = best_run(runs, "accuracy")
    n_classes = len(manifest["labels"]) if manifest.get("labels") else None
    gold_plot, chance = _gold_weights(task, runs)
    return {
        **base,
        **results_context(params, task, table, out_dir),
        "leaderboard": _leaderboard(runs, best),
        "best": best["run"] if best else None,
        "claims": _claims(runs, n_classes),
        "attention": _attention_rows(runs),
        "gold_plot": gold_plot,
        "chance": chance,
        "documents": _documents(task, runs),
        "curves": curves(task, runs, next((r["run"] for r in runs if r["kind"] == "HAN-mean"), None),
                         "validation accuracy"),
    }
