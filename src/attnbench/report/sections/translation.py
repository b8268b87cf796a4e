"""The translation section: leaderboard, BLEU by source length, claims C1–C3, attention heatmaps
against gold alignments, sample translations, sacreBLEU signature and links.

Everything read from the run folders is returned as plain strings and numbers; the template
(autoescaped) is the only place they become HTML.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ... import paths
from .. import aggregate as agg
from .. import plots
from . import cell, devices, finite, notebook_link, problems, relpath, run_status, status_counts

SAMPLE_ROWS = 8
MIN_BLEU = 1.0  # below this everywhere, runs have not learnt enough to rank: a claim is "inconclusive"

PAPERS = {
    "C1": ("An encoder–decoder with attention beats the fixed-context one, and the gap grows with source length",
           "Bahdanau et al. 2015, Fig. 2",
           "WMT'14 En→Fr: RNNencdec-50 17.82 vs RNNsearch-50 26.75 BLEU"),
    "C2": ("Among Luong's variants, local-p (general score) is best; dot is strong for global attention; concat is weak",
           "Luong et al. 2015, Table 4",
           "WMT'14 En→De (after unk replace, approx.): global dot 20.5, general 19.1, location 19.3; local-p general 20.9"),
    "C3": ("Self-attention (Transformer) matches or beats recurrent attention at equal training time",
           "Vaswani et al. 2017",
           "WMT'14 En→De / En→Fr: Transformer base 27.3 / 38.1 BLEU"),
}


def _bucket_labels(table: pd.DataFrame) -> list[str]:
    return [c[len("bleu_len_"):] for c in table.columns if c.startswith("bleu_len_")]


def _per_run(params: dict, task: str, table: pd.DataFrame) -> list[dict]:
    """One entry per run of params (in params order) with its ok seeds and mean metrics."""
    runs = []
    for run, spec in params["tasks"][task]["runs"].items():
        rows = table[table["run"] == run]
        ok = rows[rows["status"] == "ok"]
        status, reason = run_status(rows)
        entry = {"run": run, "model": spec["model"], "attention": spec["attention"], "status": status,
                 "reason": reason, "rows": rows, "ok": ok, "seeds": [int(s) for s in ok["seed"]]}
        for column in ("bleu", "chrf", "aer", "exact_match", "parameters", "train_seconds"):
            entry[column] = cell(ok[column] if column in ok else [])
        # peak memory also of the seeds that failed (an out-of-memory kill shows here)
        entry["train_max_rss_mb"] = cell(rows["train_max_rss_mb"] if "train_max_rss_mb" in rows else [], 0)
        entry["mean"] = {c: entry[c]["mean"] for c in ("bleu", "chrf", "aer", "exact_match", "train_seconds")}
        entry["by_length"] = {b: cell(ok[f"bleu_len_{b}"])["mean"] for b in _bucket_labels(table)}
        runs.append(entry)
    return runs


def _baseline(runs: list[dict]) -> dict | None:
    return next((r for r in runs if r["attention"] == "none"), None)


def _best(runs: list[dict]) -> dict | None:
    scored = [r for r in runs if finite(r["mean"]["bleu"])]
    return max(scored, key=lambda r: r["mean"]["bleu"]) if scored else None


def _leaderboard(runs: list[dict], best: dict | None) -> dict:
    has_memory = any(r["train_max_rss_mb"]["n"] for r in runs)
    columns = [("run", "", False), ("model", "", False), ("attention", "attention mechanism", False),
               ("BLEU", "sacreBLEU on the test set (higher is better)", True),
               ("chrF", "chrF on the test set (higher is better)", True),
               ("AER", "alignment error rate of the argmax attention against gold links (lower is better; "
                       "— when the mechanism gives no alignment)", True),
               ("exact match", "share of test sentences translated exactly", True),
               ("parameters", "trainable parameters", True),
               ("training time (s)", "training loop wall time from train_info.json", True)]
    if has_memory:
        columns.append(("peak memory (MB)", "max RSS of the training job (Snakemake benchmark)", True))
    columns += [("seeds", "seeds with results / seeds in the grid", True), ("status", "", False)]

    def key(r):
        return (0, -r["mean"]["bleu"]) if finite(r["mean"]["bleu"]) else (1, 0.0)

    rows = []
    for r in sorted(runs, key=key):
        cells = [{"text": r["run"], "sort": r["run"]}, {"text": r["model"], "sort": r["model"]},
                 {"text": r["attention"], "sort": r["attention"]},
                 r["bleu"], r["chrf"], cell(r["ok"]["aer"] if "aer" in r["ok"] else [], 3),
                 cell(r["ok"]["exact_match"] if "exact_match" in r["ok"] else [], 1, 100, " %"),
                 _int_cell(r["parameters"]), cell(r["ok"]["train_seconds"] if "train_seconds" in r["ok"] else [], 1)]
        if has_memory:
            cells.append(cell(r["rows"]["train_max_rss_mb"], 0))
        n_total = len(r["rows"])
        cells.append({"text": f"{len(r['seeds'])}/{n_total}", "sort": str(len(r["seeds"]))})
        cells.append({"text": r["status"], "sort": r["status"], "title": r["reason"]})
        rows.append({"run": r["run"], "best": best is not None and r["run"] == best["run"], "status": r["status"],
                     "reason": r["reason"], "cells": cells})
    return {"columns": [{"label": c[0], "title": c[1], "numeric": c[2]} for c in columns], "rows": rows}


def _int_cell(c: dict) -> dict:
    if c["mean"] is None:
        return c
    return {**c, "text": f"{int(round(c['mean'])):,}"}


def _length_section(runs: list[dict], table: pd.DataFrame, baseline: dict | None) -> dict:
    labels = _bucket_labels(table)
    ok = table[table["status"] == "ok"]
    counts = {}
    for b in labels:
        column = f"sentences_len_{b}"
        if column in ok and ok[column].notna().any():
            counts[b] = int(ok[column].dropna().iloc[0])
    long_rows = [{"run": r, "seed": int(s), "bucket": b, "value": v}
                 for r, s, *vals in ok[["run", "seed", *[f"bleu_len_{b}" for b in labels]]].itertuples(index=False)
                 for b, v in zip(labels, vals) if finite(v)] if labels else []
    data = pd.DataFrame(long_rows, columns=["run", "seed", "bucket", "value"])
    used = [b for b in labels if b in set(data["bucket"])]
    image = plots.bleu_by_length(data, labels, counts, baseline["run"] if baseline else None) if len(data) else None
    margins: dict[str, Any] = {"rows": [], "short": used[0] if used else None, "long": used[-1] if used else None}
    if baseline and used:
        short, long = used[0], used[-1]
        for r in runs:
            if r is baseline or not finite(r["mean"]["bleu"]):
                continue
            a, b = r["by_length"].get(short), baseline["by_length"].get(short)
            c, d = r["by_length"].get(long), baseline["by_length"].get(long)
            m_short = a - b if finite(a) and finite(b) else None
            m_long = c - d if finite(c) and finite(d) else None
            change = m_long - m_short if m_short is not None and m_long is not None and long != short else None
            margins["rows"].append({"run": r["run"], "short": _signed(m_short), "long": _signed(m_long),
                                    "change": _signed(change), "m_short": _round(m_short), "m_long": _round(m_long),
                                    "m_change": _round(change),
                                    "grows": change is not None and change > 0})
    return {"image": image, "margins": margins, "buckets": used, "counts": counts}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}"


def _claims(runs: list[dict], baseline: dict | None, margins: dict) -> list[dict]:
    out = []
    by_attention = {r["attention"]: r for r in runs if finite(r["mean"]["bleu"]) and r["model"] == "rnn"}

    # C1: attention beats none, and the margin grows with source length
    rnn_att = [r for r in runs if r["model"] == "rnn" and r["attention"] != "none" and finite(r["mean"]["bleu"])]
    if baseline is None or not finite(baseline["mean"]["bleu"]) or not rnn_att:
        out.append(_claim("C1", "not measurable", "needs the no-attention run and at least one RNN attention run"))
    elif _too_weak([baseline, *rnn_att]):
        out.append(_claim("C1", "inconclusive", _weak_text([baseline, *rnn_att])))
    else:
        wins = sum(r["mean"]["bleu"] > baseline["mean"]["bleu"] for r in rnn_att)
        median_gain = statistics.median(r["mean"]["bleu"] - baseline["mean"]["bleu"] for r in rnn_att)
        rows = [m for m in margins["rows"] if m["run"] in {r["run"] for r in rnn_att}
                and m["m_short"] is not None and m["m_long"] is not None]
        evidence = (f"{wins} of {len(rnn_att)} RNN attention runs beat {baseline['run']} "
                    f"(median gain {median_gain:+.2f} BLEU)")
        beats = median_gain > 0
        if rows and margins["short"] != margins["long"]:
            s = statistics.median(m["m_short"] for m in rows)
            lg = statistics.median(m["m_long"] for m in rows)
            evidence += (f"; median margin {s:+.2f} BLEU on {margins['short']}-token sources vs {lg:+.2f} on "
                         f"{margins['long']}-token sources")
            grows = lg > s
            verdict = "supported" if beats and grows else ("partly supported" if beats or grows else "not supported")
        else:
            evidence += "; only one length bucket has test sentences, so the growth with length is not measurable"
            verdict = "partly supported" if beats else "not supported"
        out.append(_claim("C1", verdict, evidence))

    # C2: local_p best among general/dot/concat/local_p, concat weakest
    variants = [a for a in ("local_p", "general", "dot", "concat") if a in by_attention]
    if len(variants) < 3 or "local_p" not in variants and "concat" not in variants:
        out.append(_claim("C2", "not measurable",
                          f"needs at least three of the runs with attention local_p, general, dot, concat "
                          f"(have: {', '.join(variants) or 'none'})"))
    elif _too_weak([by_attention[a] for a in variants]):
        out.append(_claim("C2", "inconclusive", _weak_text([by_attention[a] for a in variants])))
    else:
        ranked = sorted(variants, key=lambda a: -by_attention[a]["mean"]["bleu"])
        score = {a: by_attention[a]["mean"]["bleu"] for a in variants}
        evidence = "ranking by BLEU: " + ", ".join(f"{a} {score[a]:.2f}" for a in ranked)
        top = ranked[0] == "local_p" and score["local_p"] > score[ranked[1]]       # ties are no win
        weak = ranked[-1] == "concat" and score["concat"] < score[ranked[-2]]
        verdict = "supported" if top and weak else ("partly supported" if top or weak else "not supported")
        out.append(_claim("C2", verdict, evidence))

    # C3: Transformer vs the best RNN run, BLEU and training time
    trans = [r for r in runs if r["model"] == "transformer" and finite(r["mean"]["bleu"])]
    rnns = [r for r in runs if r["model"] == "rnn" and finite(r["mean"]["bleu"])]
    if not trans or not rnns:
        out.append(_claim("C3", "not measurable", "needs a Transformer run and an RNN run with results"))
    elif _too_weak(trans + rnns):
        out.append(_claim("C3", "inconclusive", _weak_text(trans + rnns)))
    else:
        t = max(trans, key=lambda r: r["mean"]["bleu"])
        b = max(rnns, key=lambda r: r["mean"]["bleu"])
        tol = max(1.0, (t["bleu"]["std"] or 0.0) + (b["bleu"]["std"] or 0.0))
        diff = t["mean"]["bleu"] - b["mean"]["bleu"]
        tt, bt = t["mean"]["train_seconds"], b["mean"]["train_seconds"]
        evidence = f"{t['run']} {t['mean']['bleu']:.2f} BLEU vs best RNN run {b['run']} {b['mean']['bleu']:.2f} ({diff:+.2f})"
        if finite(tt) and finite(bt):
            evidence += f"; training time {tt:.1f} s vs {bt:.1f} s"
        matches = diff >= -tol
        cheaper = finite(tt) and finite(bt) and tt <= 1.25 * bt
        verdict = "supported" if matches and cheaper else ("partly supported" if matches else "not supported")
        out.append(_claim("C3", verdict, evidence))
    return out


def _too_weak(runs: list[dict]) -> bool:
    return max(r["mean"]["bleu"] for r in runs) < MIN_BLEU


def _weak_text(runs: list[dict]) -> str:
    return (f"every compared run scores below {MIN_BLEU:g} BLEU (best: "
            f"{max(r['mean']['bleu'] for r in runs):.2f}): too little training to rank them (smoke scale?)")


def _claim(cid: str, verdict: str, evidence: str) -> dict:
    claim, source, paper = PAPERS[cid]
    css = {"supported": "good", "partly supported": "mid", "not supported": "bad"}.get(verdict, "na")
    return {"id": cid, "claim": claim, "source": source, "paper": paper, "verdict": verdict, "evidence": evidence,
            "css": css}


def _load_npz(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None


def _heatmaps(task: str, runs: list[dict]) -> dict:
    """One figure per exported sentence, one panel per run (its lowest seed with results)."""
    exports = []
    for r in runs:
        if not r["seeds"]:
            continue
        seed = min(r["seeds"])
        z = _load_npz(paths.run_dir(task, r["run"], seed) / "attention.npz")
        aligned = bool(r["ok"].loc[r["ok"]["seed"] == seed, "alignment"].fillna(True).iloc[0]) \
            if "alignment" in r["ok"] else True
        aer = r["ok"].loc[r["ok"]["seed"] == seed, "aer"].iloc[0] if "aer" in r["ok"] else None
        exports.append({"run": r["run"], "seed": seed, "z": z, "aligned": aligned, "aer": aer,
                        "attention": r["attention"]})
    reference = next((e["z"] for e in exports if e["z"]), None)
    if reference is None:
        return {"figures": [], "note": "no run has exported attention weights yet"}
    k = len([f for f in reference if f.startswith("src_")])
    figures = []
    for n in range(k):
        src = [str(t) for t in reference[f"src_{n}"]]
        tgt = [str(t) for t in reference[f"tgt_{n}"]]
        panels = []
        for e in exports:
            z = e["z"]
            panel = {"title": f"{e['run']} (seed {e['seed']})", "attn": None, "gold": None, "note": ""}
            if z is None:
                panel["missing"] = "attention.npz missing or unreadable"
            elif f"attn_{n}" not in z or [str(t) for t in z.get(f"src_{n}", [])] != src:
                panel["missing"] = "another sentence was exported"
            else:
                panel["attn"], panel["gold"] = z[f"attn_{n}"], z.get(f"gold_{n}")
                if not e["aligned"]:
                    panel["note"] = "no alignment (uniform weights)" if e["attention"] == "none" else "no alignment"
                elif finite(e["aer"]):
                    panel["note"] = f"corpus AER {float(e['aer']):.3f}"
            panels.append(panel)
        figures.append({"index": n + 1, "src": " ".join(src), "tgt": " ".join(tgt),
                        "image": plots.attention_panels(src, tgt, panels)})
    return {"figures": figures, "note": "" if figures else "attention.npz holds no exported sentence"}


def _samples(task: str, best: dict | None, baseline: dict | None) -> dict:
    def read(r):
        if r is None or not r["seeds"]:
            return []
        path = paths.run_dir(task, r["run"], min(r["seeds"])) / "samples.jsonl"
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(item, dict):
                out.append({k: str(item.get(k, "")) for k in ("src", "ref", "hyp", "bucket")})
        return out

    a, b = read(best), read(baseline)
    rows = []
    same = best is not None and baseline is not None and best["run"] != baseline["run"]
    for i, s in enumerate(a[:SAMPLE_ROWS]):
        other = b[i]["hyp"] if same and i < len(b) and b[i]["src"] == s["src"] else None
        rows.append({**s, "base": other, "exact": s["hyp"] == s["ref"],
                     "base_exact": other is not None and other == s["ref"]})
    return {"best": best["run"] if best else None, "baseline": baseline["run"] if same else None, "rows": rows}


def _curves(task: str, runs: list[dict], baseline: dict | None) -> str | None:
    frames = []
    for r in runs:
        for seed in r["seeds"]:
            path = paths.run_dir(task, r["run"], seed) / "train_log.csv"
            try:
                log = pd.read_csv(path)
            except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
                continue
            if {"epoch", "train_loss", "valid_metric"} <= set(log.columns):
                frames.append(log[["epoch", "train_loss", "valid_metric"]].assign(run=r["run"], seed=seed))
    if not frames:
        return None
    return plots.training_curves(pd.concat(frames, ignore_index=True), baseline["run"] if baseline else None,
                                 "validation BLEU (greedy)")


def context(params: dict, task: str = "translation", out_dir: Path | str = paths.REPORTS) -> dict:
    """Everything translation.html.j2 shows, as plain values (strings escaped by the template)."""
    out_dir = Path(out_dir)
    table = agg.collect(params, task)
    counts = status_counts(table)
    base = {"task": task, "title": "Translation", "summary": {**counts, "devices": devices(table)},
            "problems": problems(table), "notebook": notebook_link(task, out_dir),
            "summary_csv": relpath(paths.summary_csv(task), out_dir),
            "has_results": counts["ok"] > 0, "test_sentences": None}
    if not counts["ok"]:
        base["notice"] = (f"No results yet: none of the {counts['total']} run × seed combinations has a "
                          f"metrics.json ({counts['failed']} failed, {counts['missing']} missing).")
        return base
    runs = _per_run(params, task, table)
    baseline, best = _baseline(runs), _best(runs)
    length = _length_section(runs, table, baseline)
    ok = table[table["status"] == "ok"]
    signatures = {"BLEU": sorted(set(ok["bleu_signature"].dropna())) if "bleu_signature" in ok else [],
                  "chrF": sorted(set(ok["chrf_signature"].dropna())) if "chrf_signature" in ok else []}
    return {
        **base,
        "multi_seed": len(params["seeds"]) > 1,
        "seeds": list(params["seeds"]),
        "leaderboard": _leaderboard(runs, best),
        "best": best["run"] if best else None,
        "baseline": baseline["run"] if baseline else None,
        "length": length,
        "claims": _claims(runs, baseline, length["margins"]),
        "heatmaps": _heatmaps(task, runs),
        "samples": _samples(task, best, baseline),
        "curves": _curves(task, runs, baseline),
        "signatures": signatures,
        "metrics_links": [{"run": r, "seed": int(s), "href": relpath(paths.run_dir(task, r, s) / "metrics.json", out_dir)}
                          for r, s in zip(ok["run"], ok["seed"])],
        "test_sentences": int(ok["test_sentences"].dropna().iloc[0]) if "test_sentences" in ok and
        ok["test_sentences"].notna().any() else None,
    }
