"""The translation section: leaderboard, BLEU by source length, claims C1–C3, attention heatmaps
against gold alignments, sample translations, sacreBLEU signature and links.

Everything read from the run folders is returned as plain strings and numbers; the template
(autoescaped) is the only place they become HTML.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pandas as pd

from ... import paths
from ...report import aggregate as agg
from ...report import noise
from . import plots
from ...report.sections import (LEAD_COLUMNS, attention_exports, base_context, best_run, cell, claim, collect_runs,
                                column_cell, curves, finite, first_int, int_cell, lead_cells, leaderboard, read_jsonl,
                                reference_export, results_context, run_file)

SAMPLE_ROWS = 8
METRICS = {"bleu": 2, "chrf": 2, "aer": 3, "exact_match": 2, "parameters": 2, "train_seconds": 1}  # column: decimals
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
    runs = collect_runs(params, task, table, METRICS)
    for entry in runs:
        entry["by_length"] = {b: cell(entry["ok"][f"bleu_len_{b}"])["mean"] for b in _bucket_labels(table)}
    return runs


def _baseline(runs: list[dict]) -> dict | None:
    return next((r for r in runs if r["attention"] == "none"), None)


def _beam_sizes(table: pd.DataFrame) -> list[int]:
    """The beam sizes of the runs whose metrics have beam-search scores (eval.beam_size > 1)."""
    ok = table[table["status"] == "ok"]
    if "bleu_beam" not in ok or "beam_size" not in ok:
        return []
    return sorted({int(b) for b, v in zip(ok["beam_size"], ok["bleu_beam"]) if finite(v) and finite(b)})


def _leaderboard(runs: list[dict], best: dict | None, beam_sizes: list[int] = ()) -> dict:
    beam = [("BLEU (beam)", f"sacreBLEU of the beam search's translations (beam {', '.join(map(str, beam_sizes))}; "
                            "scored like the greedy BLEU)", True),
            ("chrF (beam)", "chrF of the beam search's translations", True)] if beam_sizes else []
    greedy = ", greedy decoding" if beam_sizes else ""
    columns = [*LEAD_COLUMNS,
               ("BLEU", f"sacreBLEU on the test set{greedy} (higher is better)", True),
               ("chrF", f"chrF on the test set{greedy} (higher is better)", True),
               *beam,
               ("AER", "alignment error rate of the argmax attention against gold links (lower is better; "
                       "— when the mechanism gives no alignment)", True),
               ("exact match", "share of test sentences translated exactly", True),
               ("parameters", "trainable parameters", True),
               ("training time (s)", "training loop wall time from train_info.json", True),
               ("source tokens/s", "training throughput: source tokens (padding excluded, each sentence's </s> "
                                   "counted) per second of the training loop, validation included (train_info.json)", True)]

    def cells(r):
        beam_cells = [column_cell(r["ok"], "bleu_beam", 2), column_cell(r["ok"], "chrf_beam", 2)] if beam_sizes else []
        return [*lead_cells(r), r["bleu"], r["chrf"], *beam_cells, r["aer"], column_cell(r["ok"], "exact_match", 1, 100, " %"),
                int_cell(r["parameters"]), r["train_seconds"], column_cell(r["ok"], "tokens_per_s", 0)]

    return leaderboard(runs, best, columns, cells, "bleu")


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
        tests = [noise.compare_runs(r, baseline, "bleu", digits=2) for r in rnn_att]
        held = [noise.holds(c) for c in tests]
        wins = held.count(True)
        median_gain = statistics.median(r["mean"]["bleu"] - baseline["mean"]["bleu"] for r in rnn_att)
        rows = [m for m in margins["rows"] if m["run"] in {r["run"] for r in rnn_att}
                and m["m_short"] is not None and m["m_long"] is not None]
        beats: bool | None = median_gain > 0
        if any(c["noise"] for c in tests):
            # with seeds, attention beats the fixed context when most attention runs lead it beyond seed noise
            # (Welch's t-test); when that fails but no half trails it beyond noise, it is a tie
            ties = held.count(None)
            evidence = (f"{wins} of {len(rnn_att)} RNN attention runs beat {baseline['run']} beyond seed noise"
                        + (f", {ties} within noise" if ties else "") + " (Welch's t-test: "
                        + ", ".join(f"{r['run']} {c['p_text']}" for r, c in zip(rnn_att, tests) if c["noise"])
                        + f"; median gain {median_gain:+.2f} BLEU)")
            behind = sum(c["outcome"] == "behind" for c in tests)
            beats = True if beats and 2 * wins > len(tests) else (False if 2 * behind >= len(tests) else None)
        else:
            evidence = (f"{wins} of {len(rnn_att)} RNN attention runs beat {baseline['run']} "
                        f"(median gain {median_gain:+.2f} BLEU)")
        if rows and margins["short"] != margins["long"]:
            s = statistics.median(m["m_short"] for m in rows)
            lg = statistics.median(m["m_long"] for m in rows)
            evidence += (f"; median margin {s:+.2f} BLEU on {margins['short']}-token sources vs {lg:+.2f} on "
                         f"{margins['long']}-token sources")
            grows = lg > s
            verdict = noise.verdict([beats, grows])
        else:
            evidence += "; only one length bucket has test sentences, so the growth with length is not measurable"
            verdict = noise.verdict([beats], can_support=False)
        out.append(_claim("C1", verdict, evidence + noise.one_seed_note(tests)))

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
        # local_p best: ahead of every other variant, concat weakest: behind every other one, each beyond seed
        # noise (Welch's t-test; one seed: the means decide, ties are no win); within noise of one is a tie
        parts: dict[str, bool | None] = {"local_p": False, "concat": False}
        tests = []
        for name in [v for v in parts if v in variants]:
            mine = {a: noise.compare_runs(by_attention[name], by_attention[a], "bleu",
                                          higher_is_better=name == "local_p", digits=2) for a in variants if a != name}
            tests += mine.values()
            parts[name] = _all_hold([noise.holds(c) for c in mine.values()])
            tied = [a for a, c in mine.items() if noise.holds(c) is None]
            if tied:
                evidence += (f"; {name} within noise of " + ", ".join(f"{a} ({mine[a]['test_text']})" for a in tied))
        verdict = noise.verdict([parts["local_p"], parts["concat"]])
        out.append(_claim("C2", verdict, evidence + noise.one_seed_note(tests)))

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
        test = noise.compare_runs(t, b, "bleu", digits=2)
        evidence = (f"{t['run']} {t['mean']['bleu']:.2f} BLEU vs best RNN run {b['run']} {b['mean']['bleu']:.2f} "
                    f"({diff:+.2f}{noise.paren(test)})")
        if finite(tt) and finite(bt):
            evidence += f"; training time {tt:.1f} s vs {bt:.1f} s"
        # matches within the tolerance; a larger gap refutes it only beyond seed noise (Welch's t-test), a gap
        # within noise is a tie: inconclusive
        matches = True if diff >= -tol else noise.holds(test)   # diff < 0 here: False (behind) or None (a tie)
        cheaper = finite(tt) and finite(bt) and tt <= 1.25 * bt
        if matches is None:
            verdict = "inconclusive"
        else:
            verdict = "supported" if matches and cheaper else ("partly supported" if matches else "not supported")
        out.append(_claim("C3", verdict, evidence + noise.one_seed_note([test])))
    return out


def _all_hold(parts: list[bool | None]) -> bool | None:
    """True when every part holds, False when one fails, else None (within noise)."""
    if all(p is True for p in parts):
        return True
    return False if any(p is False for p in parts) else None


def _too_weak(runs: list[dict]) -> bool:
    return max(r["mean"]["bleu"] for r in runs) < MIN_BLEU


def _weak_text(runs: list[dict]) -> str:
    return (f"every compared run scores below {MIN_BLEU:g} BLEU (best: "
            f"{max(r['mean']['bleu'] for r in runs):.2f}): too little training to rank them")


def _claim(cid: str, verdict: str, evidence: str) -> dict:
    return claim(cid, PAPERS[cid], verdict, evidence)


def _heatmaps(task: str, runs: list[dict]) -> dict:
    """One figure per exported sentence, one panel per run (its lowest seed with results)."""
    exports = []
    for r, seed, z in attention_exports(task, runs):
        aligned = bool(r["ok"].loc[r["ok"]["seed"] == seed, "alignment"].fillna(True).iloc[0]) \
            if "alignment" in r["ok"] else True
        aer = r["ok"].loc[r["ok"]["seed"] == seed, "aer"].iloc[0] if "aer" in r["ok"] else None
        exports.append({"run": r["run"], "seed": seed, "z": z, "aligned": aligned, "aer": aer,
                        "attention": r["attention"]})
    reference, k = reference_export(exports, "src_0", "src_")
    if reference is None:
        return {"figures": [], "note": "no run has exported attention weights yet"}
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
        return [{k: str(item.get(k, "")) for k in ("src", "ref", "hyp", "bucket")}
                for item in read_jsonl(run_file(task, r, "samples.jsonl"))]

    a, b = read(best), read(baseline)
    rows = []
    same = best is not None and baseline is not None and best["run"] != baseline["run"]
    for i, s in enumerate(a[:SAMPLE_ROWS]):
        other = b[i]["hyp"] if same and i < len(b) and b[i]["src"] == s["src"] else None
        rows.append({**s, "base": other, "exact": s["hyp"] == s["ref"],
                     "base_exact": other is not None and other == s["ref"]})
    return {"best": best["run"] if best else None, "baseline": baseline["run"] if same else None, "rows": rows}


def context(params: dict, task: str = "translation", out_dir: Path | str = paths.REPORTS) -> dict:
    """Everything translation.html.j2 shows, as plain values (strings escaped by the template)."""
    out_dir = Path(out_dir)
    table = agg.collect(params, task)
    base = {**base_context(task, "Translation", table, out_dir), "test_sentences": None, "beam_sizes": _beam_sizes(table)}
    if not base["has_results"]:
        return base
    runs = _per_run(params, task, table)
    baseline, best = _baseline(runs), best_run(runs, "bleu")
    length = _length_section(runs, table, baseline)
    ok = table[table["status"] == "ok"]
    def distinct(column: str) -> list[str]:
        return sorted(set(ok[column].dropna())) if column in ok else []

    signatures = {"BLEU": distinct("bleu_signature"), "chrF": distinct("chrf_signature"),
                  # corpora the pipeline tokenised: the headline is detokenised; BLEU on its tokens is secondary
                  "BLEU on the pipeline's tokens (bleu_tok)": distinct("bleu_tok_signature")}
    return {
        **base,
        **results_context(params, task, table, out_dir),
        "leaderboard": _leaderboard(runs, best, base["beam_sizes"]),
        "best": best["run"] if best else None,
        "baseline": baseline["run"] if baseline else None,
        "length": length,
        "claims": _claims(runs, baseline, length["margins"]),
        "heatmaps": _heatmaps(task, runs),
        "samples": _samples(task, best, baseline),
        "curves": curves(task, runs, baseline["run"] if baseline else None, "validation BLEU (greedy)"),
        "signatures": signatures,
        "scored_on": distinct("scored_on"),
        "test_sentences": first_int(ok, "test_sentences"),
    }
