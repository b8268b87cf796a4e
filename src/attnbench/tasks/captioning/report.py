"""The captioning section: leaderboard (BLEU-1..4 with beam search, attention localisation), claim C4
(soft and hard attention beat Show and Tell; hard slightly ahead on BLEU-4), the benchmark's own
check that soft attention localises the named object (> 0.7), and fixed test images with the
generated caption and one attention overlay per word, one row per run.

Everything read from the run folders is returned as plain strings and numbers (figures as PNG data
URIs); the template (autoescaped) is the only place they become HTML.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ... import paths
from ...report import aggregate as agg
from ...report import noise, plots
from . import kind_of as kind
from . import plots as plots_captioning
from ...report.sections import (base_context, best_run, claim, collect_runs, curves, finite, int_cell, leaderboard,
                                load_npz, read_manifest, reference_export, results_context, run_file, text_cell)

PAPER = ("Soft and hard attention captioners both beat the no-attention captioner; hard is slightly better on BLEU-4",
         "Xu et al. 2015, Table 1",
         "Flickr8k BLEU-1/2/3/4: soft 67 / 44.8 / 29.9 / 19.5; hard 67 / 45.7 / 31.4 / 21.3; Show and Tell 63 / 41 / 27 / – "
         "— real photographs, not our scenes")
LOCALISATION_TARGET = 0.7
FLAT_ENTROPY = 0.95  # attention entropy (share of the uniform distribution's) above which attention is called near uniform
MIN_BLEU = 5.0     # every compared run below this BLEU-4: too little learnt to rank them (smoke scale)
METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "bleu4_greedy", "localisation", "localisation_chance", "exact_match",
           "localisation_colour_word", "attention_entropy",
           "shape_words_scored", "parameters", "train_seconds", "epochs_trained", "best_epoch")


KIND_LABEL = {"none": "Show and Tell (no attention)", "soft": "soft attention", "hard": "hard attention (REINFORCE)"}


def _per_run(params: dict, task: str, table: pd.DataFrame) -> list[dict]:
    epochs = params["tasks"][task]["scales"][params["scale"]]["epochs"]
    digits = {column: 1 if column == "train_seconds" else 0 if column == "shape_words_scored" else 3 if column in (
        "localisation", "localisation_chance", "exact_match", "localisation_colour_word", "attention_entropy") else 2
        for column in METRICS}
    runs = collect_runs(params, task, table, digits)
    for entry in runs:
        k = kind(entry["attention"])
        entry.update(kind=k, kind_label=KIND_LABEL[k])
        ok = entry["ok"]
        still = [int(b) for b, e in zip(ok.get("best_epoch", []), ok.get("epochs_trained", []))
                 if finite(b) and finite(e) and int(b) == int(e) == epochs]
        entry["still_improving"] = bool(still)
    return runs


LEADERBOARD = [("run", "", False), ("kind", "", False), ("attention", "attention mechanism of the decoder", False),
               ("BLEU-4", "sacreBLEU corpus BLEU-4 of the beam-search captions against every reference", True),
               ("BLEU-1", "", True), ("BLEU-2", "", True), ("BLEU-3", "", True),
               ("BLEU-4 greedy", "BLEU-4 of greedy decoding (validation decodes greedily)", True),
               ("localisation", "share of generated shape words whose attention peak overlaps the named object's mask", True),
               ("chance", "localisation of a uniformly random peak cell", True),
               ("exact match", "share of test captions equal to one of the references", True),
               ("parameters", "trainable parameters", True), ("training time (s)", "training loop wall time", True),
               ("epochs (best)", "epochs trained (the epoch whose weights were kept)", True)]


def _cells(r: dict) -> list[dict]:
    """A run's leaderboard cells, in LEADERBOARD's order (its kind in words, sorted by the kind)."""
    epochs = "—"
    if r["epochs_trained"]["n"]:
        epochs = f"{r['epochs_trained']['mean']:.0f} ({r['best_epoch']['mean']:.0f})"
    return [text_cell(r["run"]), {"text": r["kind_label"], "sort": r["kind"]}, text_cell(r["attention"]),
            r["bleu4"], r["bleu1"], r["bleu2"], r["bleu3"], r["bleu4_greedy"], r["localisation"],
            r["localisation_chance"], r["exact_match"], int_cell(r["parameters"]), r["train_seconds"],
            {"text": epochs, "sort": r["epochs_trained"]["sort"]}]


def _claims(runs: list[dict]) -> list[dict]:
    """C4 from the BLEU-4 of the best run of each kind: supported when soft and hard both beat none, partly
    when one does, not supported when neither; a win is a lead beyond seed noise (Welch's t-test over seeds,
    `noise.compare`; with one seed the means decide), and a gap within noise is a tie: no win, no loss
    (inconclusive when nothing else decides). The hard-vs-soft ordering is reported in the evidence."""
    none, soft, hard = (best_run([r for r in runs if r["kind"] == kind], "bleu4") for kind in ("none", "soft", "hard"))
    attended = [r for r in (soft, hard) if r is not None]
    if none is None or not attended:
        have = ", ".join(r["run"] for r in (none, soft, hard) if r) or "none"
        return [claim("C4", PAPER, "not measurable", f"needs a no-attention run and a soft or hard attention run with results (have: {have})")]
    compared = [none, *attended]
    if max(r["mean"]["bleu4"] for r in compared) < MIN_BLEU:
        return [claim("C4", PAPER, "inconclusive", f"every compared run is below BLEU-4 {MIN_BLEU:g} (best "
                                       f"{max(r['mean']['bleu4'] for r in compared):.2f}): too little training to rank them")]
    tests = [noise.compare_runs(r, none, "bleu4", digits=2) for r in attended]
    wins = [noise.holds(c) for c in tests]
    evidence = f"test BLEU-4 (beam search): {none['run']} {none['bleu4']['text']} vs " + ", ".join(
        f"{r['run']} {r['bleu4']['text']} ({r['mean']['bleu4'] - none['mean']['bleu4']:+.2f}{noise.paren(c)})"
        for r, c in zip(attended, tests))
    if len(attended) < 2:
        evidence += "; only one of soft / hard attention has results"
        verdict = noise.verdict(wins, can_support=False)
    else:
        verdict = noise.verdict(wins)
        order = noise.compare_runs(hard, soft, "bleu4", digits=2)
        ahead = hard["mean"]["bleu4"] - soft["mean"]["bleu4"]
        evidence += (f"; hard vs soft: {ahead:+.2f} BLEU-4 ("
                     + ("hard ahead, as in the paper" if ahead > 0 else "soft ahead, unlike the paper's ordering")
                     + noise.paren(order) + ")")
    evidence += noise.one_seed_note(tests)
    flat = [r for r in attended if finite(r["mean"]["attention_entropy"]) and r["mean"]["attention_entropy"] > FLAT_ENTROPY]
    if flat:
        evidence += ("; caution: " + ", ".join(f"{r['run']}'s attention at the shape words is near uniform (entropy "
                                               f"{r['attention_entropy']['text']} of the uniform distribution's, localisation "
                                               f"{r['localisation']['text']})" for r in flat)
                     + (", so their gain" if len(flat) > 1 else ", so its gain")
                     + " over Show and Tell comes from the image context read at every word, not from looking at the "
                       "object a word names")
    still = [r["run"] for r in compared if r["still_improving"]]
    if still:
        evidence += (f"; note: {', '.join(still)} still improved on the validation set in the last epoch of the budget, "
                     "so the comparison is at an equal training budget")
    return [claim("C4", PAPER, verdict, evidence)]


def _checks(runs: list[dict], masks: bool) -> list[dict]:
    """The benchmark's acceptance checks with their figures: soft localisation above the target. `masks`:
    the dataset has object masks (the synthetic scenes); without them no run's localisation can be scored."""
    out = []
    for r in runs:
        if r["kind"] == "none" or not r["seeds"]:
            continue
        loc, chance = r["mean"]["localisation"], r["mean"]["localisation_chance"]
        if not finite(loc):
            why = ("its test captions name no shape (circle, square, triangle) whose object can be identified, so "
                   "there is nothing to score" if masks else
                   "not measurable on this dataset: its images have no object masks (only the synthetic scenes have)")
            out.append({"run": r["run"], "check": "localisation", "met": None, "text": f"{r['run']}: {why}"})
            continue
        target = LOCALISATION_TARGET if r["kind"] == "soft" else None
        text = (f"{r['run']}: {r['localisation']['text']} of {r['shape_words_scored']['text']} generated shape words "
                f"have their attention peak on the named object (chance {r['localisation_chance']['text']})")
        met = None if target is None else bool(loc > target)
        if finite(r["mean"]["localisation_colour_word"]):
            text += (f"; at the step that emitted the object's colour word the peak is on the object for "
                     f"{r['localisation_colour_word']['text']}")
        if finite(r["mean"]["attention_entropy"]):
            text += (f"; attention entropy at the shape words {r['attention_entropy']['text']} of the uniform "
                     "distribution's (1 = uniform)")
        if target is not None:
            text += f"; target > {target:g}:"
        out.append({"run": r["run"], "check": "localisation", "met": met, "text": text, "above_chance":
                    finite(chance) and loc > chance})
    return out


def _examples(task: str, runs: list[dict]) -> dict:
    """The exported test images: per image, its references and per run the caption and word overlays."""
    exports = []
    for r in runs:
        if r["seeds"]:
            seed = min(r["seeds"])
            exports.append({"run": r["run"], "kind": r["kind_label"], "seed": seed,
                            "z": load_npz(run_file(task, r, "attention.npz", seed))})
    reference, k = reference_export(exports, "image_0", "image_index_")
    if reference is None:
        return {"images": [], "note": "no run has exported test images yet"}
    images = []
    for n in range(k):
        index = int(reference[f"image_index_{n}"])
        blocks = []
        for e in exports:
            z = e["z"]
            block = {"run": e["run"], "kind": e["kind"], "seed": e["seed"], "missing": "", "caption": "", "figure": None}
            if z is None:
                block["missing"] = "attention.npz missing or unreadable"
            elif f"image_index_{n}" not in z or int(z[f"image_index_{n}"]) != index:
                block["missing"] = "another test image was exported"
            else:
                words = [str(w) for w in z[f"caption_{n}"] if str(w)]
                block["caption"] = " ".join(words)
                block["correct"] = block["caption"] in [str(c) for c in z[f"references_{n}"]]
                alpha = z.get(f"alpha_{n}")
                block["figure"] = plots_captioning.word_attention(
                    z[f"image_{n}"], words, alpha, z.get(f"masks_{n}"),
                    title=f"{e['run']}: " + (block["caption"] or "(empty caption)"), ncols=9)
            blocks.append(block)
        images.append({"index": index, "references": [str(c) for c in reference[f"references_{n}"]],
                       "objects": [str(o) for o in reference.get(f"objects_{n}", [])], "blocks": blocks})
    return {"images": images, "note": ""}


def _curves(task: str, runs: list[dict]) -> str | None:
    baseline = next((r["run"] for r in runs if r["kind"] == "none"), None)
    return curves(task, runs, baseline, "validation BLEU-4 (greedy, 0-1)",
                  loss_label="training loss (cross-entropy + regulariser / REINFORCE terms)")


def _bleu_plot(runs: list[dict]) -> str | None:
    rows = [{"run": r["run"], "order": f"BLEU-{n}", "value": v} for r in runs for _, row in r["ok"].iterrows()
            for n in (1, 2, 3, 4) if finite(v := row.get(f"bleu{n}"))]
    if not rows:
        return None
    return plots_captioning.bleu_orders(pd.DataFrame(rows), next((r["run"] for r in runs if r["kind"] == "none"), None))


def context(params: dict, task: str = "captioning", out_dir: Path | str = paths.REPORTS) -> dict:
    """Everything captioning.html.j2 shows, as plain values (strings escaped by the template)."""
    out_dir = Path(out_dir)
    table = agg.collect(params, task)
    manifest = read_manifest(task, params["dataset"])
    section = params["tasks"][task]
    base = {**base_context(task, "Captioning (Show, Attend and Tell)", table, out_dir),
            "beam_size": section["eval"]["beam_size"],
            "data": {"source": manifest.get("source"), "images": manifest.get("images"), "vocab": manifest.get("vocab"),
                     "references": manifest.get("references_per_image"),
                     "objects": (manifest.get("objects_per_image") or {}).get("test")}}
    if not base["has_results"]:
        return base
    runs = _per_run(params, task, table)
    best = best_run(runs, "bleu4")
    ok = table[table["status"] == "ok"]
    signature = next((str(s) for s in ok.get("bleu_signature", pd.Series(dtype=object)).dropna()), "")
    loc_rows = [{"run": r["run"], "value": v} for r in runs if r["kind"] != "none"
                for v in (r["ok"]["localisation"] if "localisation" in r["ok"] else []) if finite(v)]
    chance = [r["mean"]["localisation_chance"] for r in runs if finite(r["mean"]["localisation_chance"])]
    return {
        **base,
        **results_context(params, task, table, out_dir),
        "leaderboard": leaderboard(runs, best, LEADERBOARD, _cells, "bleu4", memory=False),
        "best": best["run"] if best else None,
        "signature": signature,
        "claims": _claims(runs),
        "checks": _checks(runs, masks=bool(manifest.get("objects_per_image")) if manifest
                          else params["dataset"] == "synthetic"),
        "localisation_plot": plots.metric_bars(pd.DataFrame(loc_rows), "attention localisation (share of shape words)",
                                               reference=float(np.mean(chance)) if chance else None,
                                               reference_label="uniformly random peak") if loc_rows else None,
        "bleu_plot": _bleu_plot(runs),
        "examples": _examples(task, runs),
        "curves": _curves(task, runs),
    }
