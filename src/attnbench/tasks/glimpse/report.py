"""The glimpse section: leaderboard (test error per model and variant), claim C5 (RAM vs the
full-view CNN on cluttered digits) and the acceptance check RAM vs the full-view MLP, computed from
metrics; RAM's glimpse paths and the soft attention maps drawn on test canvases with the prediction;
where the attention lands per step; training curves.

Everything read from the run folders is returned as plain strings and numbers; the template
(autoescaped) is the only place they become HTML.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ... import io as aio
from ... import paths
from ...report import aggregate as agg
from ...report import noise
from . import plots as plots_glimpse
from ...report.sections import (LEAD_COLUMNS, VERDICT_CSS, base_context, best_run, cell, claim, collect_runs, curves,
                                finite, fmt, int_cell, lead_cells, leaderboard, load_npz, read_manifest,
                                results_context, run_file, text_cell)

VARIANTS = ("cluttered", "centred")
UNTRAINED_ERROR = 0.8     # both runs of a comparison this close to chance (90% for 10 classes): no verdict
C5 = ("Hard glimpses (RAM) beat a convolutional baseline on cluttered, translated digits",
      "Mnih et al. 2014 (RAM), Tables 1–2")
PAPER = "60×60 cluttered MNIST: RAM 5.23% vs convolutional net 7.83% error; 100×100: 10.83% vs 16.51%"
METRICS = ("error", "accuracy", "macro_f1", "on_digit", "on_digit_chance", "parameters", "train_seconds")


def _per_run(params: dict, task: str, table: pd.DataFrame) -> list[dict]:
    runs = collect_runs(params, task, table, {column: 4 for column in METRICS})
    for r in runs:
        r["variant"] = params["tasks"][task]["runs"][r["run"]].get("options", {}).get("variant", "?")
    return runs


def _pct(c: dict) -> dict:
    """A cell of a fraction shown in percent."""
    if c["mean"] is None:
        return c
    text = fmt(c["mean"], 2, 100.0, "%")
    if c["std"] is not None:
        text = f"{fmt(c['mean'], 2, 100.0)} ± {fmt(c['std'], 2, 100.0)}%"
    return {**c, "text": text, "sort": f"{c['mean'] * 100:.6g}"}


LEADERBOARD = [*LEAD_COLUMNS, ("variant", "the canvases the run was trained and tested on", False),
               ("test error", "1 − accuracy on the test canvases (lower is better)", True),
               ("macro-F1", "macro-averaged F1 over the classes (scikit-learn)", True),
               ("on the digit", "RAM: share of its chosen glimpses centred on the digit's box; soft attention: "
                                "weight on the feature-map cells centred on the box", True),
               ("chance", "the box's share of the canvas: 'on the digit' of a location drawn at random", True),
               ("parameters", "trainable parameters", True), ("training time (s)", "from train_info.json", True)]


def _cells(r: dict) -> list[dict]:
    """A run's leaderboard cells, in LEADERBOARD's order."""
    return [*lead_cells(r), text_cell(r["variant"]), _pct(r["error"]), r["macro_f1"], r["on_digit"], r["on_digit_chance"],
            int_cell(r["parameters"]), cell(r["ok"]["train_seconds"] if "train_seconds" in r["ok"] else [], 1)]


def _by_variant(r: dict) -> tuple:
    """The leaderboard's order: by variant (cluttered first), then by test error."""
    return (VARIANTS.index(r["variant"]) if r["variant"] in VARIANTS else 9,
            r["mean"]["error"] if finite(r["mean"]["error"]) else 9.0)


def _best_of_variant(runs: list[dict]):
    """Marks the lowest-error run of each variant."""
    best = {v: best_run([r for r in runs if r["variant"] == v], "error", lower_is_better=True) for v in {r["variant"] for r in runs}}
    return lambda r: best[r["variant"]] is not None and r["mean"]["error"] == best[r["variant"]]["mean"]["error"]


def _pivot(runs: list[dict]) -> dict:
    """Test error (%) per model (rows) and variant (columns): the best run of each pair."""
    models = list(dict.fromkeys(r["model"] for r in runs))
    rows = []
    for m in models:
        cells = []
        for v in VARIANTS:
            cand = [r for r in runs if r["model"] == m and r["variant"] == v and finite(r["mean"]["error"])]
            cells.append(_pct(min(cand, key=lambda r: r["mean"]["error"])["error"]) if cand else {"text": "—"})
        rows.append({"model": m, "cells": cells})
    return {"variants": list(VARIANTS), "rows": rows}


def compare(runs: list[dict], model: str, rival: str, variant: str = "cluttered") -> tuple[str, str]:
    """(verdict, evidence): does `model` have a lower test error than `rival` on `variant`?

    'supported' when its mean error is lower by more than the seeds' spread (sum of the two standard
    deviations; 0 with one seed) and beyond seed noise (Welch's t-test over seeds, `noise.compare`; one
    seed: the means decide), 'partly supported' when lower within that spread or within noise, 'not
    supported' when not lower ('inconclusive' when that is within noise), 'inconclusive' when both are near
    chance, 'not measurable' without results."""
    a, b = (best_run([r for r in runs if r["model"] == m and r["variant"] == variant], "error", lower_is_better=True)
            for m in (model, rival))
    if a is None or b is None:
        missing = " and ".join(f"{m} on {variant}" for m, r in ((model, a), (rival, b)) if r is None)
        return "not measurable", f"needs results of {missing}"
    ea, eb = a["mean"]["error"], b["mean"]["error"]
    evidence = (f"{a['run']} test error {ea:.2%} vs {b['run']} {eb:.2%} "
                f"(difference {(ea - eb) * 100:+.2f} points"
                + (f"; {len(a['seeds'])} and {len(b['seeds'])} seed(s)" if len(a["seeds"]) > 1 or len(b["seeds"]) > 1 else "")
                + ")")
    spread = (a["error"]["std"] or 0.0) + (b["error"]["std"] or 0.0)
    if spread:
        evidence += f"; seeds' spread (sum of std) {spread:.2%}"
    test = noise.compare_runs(a, b, "error", higher_is_better=False)
    won = noise.holds(test)
    evidence += noise.paren(test, "; ") + noise.one_seed_note([test])
    if ea >= UNTRAINED_ERROR and eb >= UNTRAINED_ERROR:
        return "inconclusive", evidence + f"; both are near chance (≥ {UNTRAINED_ERROR:.0%} error): too little training"
    if ea >= eb:
        return ("inconclusive" if won is None else "not supported"), evidence
    return ("supported" if eb - ea > spread and won is True else "partly supported"), evidence


def _claims(runs: list[dict]) -> list[dict]:
    verdict, evidence = compare(runs, "ram", "cnn")
    return [claim("C5", (*C5, PAPER + " — different data (MNIST, larger canvases)"), verdict, evidence)]


def _acceptance(runs: list[dict]) -> dict:
    verdict, evidence = compare(runs, "ram", "mlp")
    word = {"supported": "met", "partly supported": "met within the seeds' spread", "not supported": "not met"}
    return {"text": "RAM beats the full-view MLP on the cluttered variant", "verdict": word.get(verdict, verdict),
            "css": VERDICT_CSS[verdict],
            "evidence": evidence}


def _figures(task: str, runs: list[dict]) -> list[dict]:
    """Glimpse paths of each RAM run and attention maps of each soft run, on its first test canvases."""
    out = []
    for r in runs:
        if r["model"] not in ("ram", "soft") or not r["seeds"]:
            continue
        seed = min(r["seeds"])
        z = load_npz(run_file(task, r, "attention.npz", seed))
        if z is None or "shown_images" not in z or not len(z["shown_images"]):
            continue
        n = len(z["shown_images"])
        kwargs = {}
        if r["model"] == "ram" and "locations_px" in z:
            kwargs = {"paths": z["locations_px"][:n], "patch": int(z.get("patch", 8))}
            what = "glimpse paths"
        elif "weights" in z:
            g = int(z["grid"])
            kwargs = {"heat": z["weights"][:n].astype(np.float32).sum(1).reshape(n, g, g)}
            what = "soft attention (summed over steps)"
        else:
            continue
        uri = plots_glimpse.canvas_grid(z["shown_images"], z["labels"][:n], z["predictions"][:n], z["box"][:n],
                                        **kwargs)
        wrong = int((z["labels"][:n] != z["predictions"][:n]).sum())
        out.append({"run": r["run"], "seed": seed, "variant": r["variant"], "what": what, "uri": uri, "n": n,
                    "wrong": wrong})
    return out


def _steps(task: str, runs: list[dict]) -> str | None:
    rows = []
    for r in runs:
        if r["model"] not in ("ram", "soft"):
            continue
        for seed in r["seeds"]:
            try:
                m = aio.read_json(run_file(task, r, "metrics.json", seed))
            except (OSError, ValueError):
                continue
            for step, value in (m.get("on_digit_by_glimpse") or {}).items():
                if finite(value):
                    rows.append({"run": r["run"], "step": int(step), "value": float(value)})
    if not rows:
        return None
    chance = next((r["mean"]["on_digit_chance"] for r in runs if finite(r["mean"]["on_digit_chance"])), None)
    return plots_glimpse.on_digit_by_step(pd.DataFrame(rows), chance)


def _curves(task: str, runs: list[dict]) -> str | None:
    return curves(task, runs, None, "validation error (fraction)",
                  loss_label="training loss (cross-entropy; RAM adds REINFORCE and baseline terms)",
                  error_of_accuracy=True)


def _data_facts(task: str, dataset: str) -> dict:
    m = read_manifest(task, dataset)
    return {"origin": str(m.get("origin", "")), "images": m.get("images_used"), "canvas": m.get("canvas"),
            "digit": m.get("digit_size"), "clutter": m.get("clutter"), "fragment": m.get("fragment"),
            "split": {str(k): v for k, v in (m.get("images_per_split") or {}).items()},
            "canvases": {str(v): {str(s): n for s, n in c.items()} for v, c in (m.get("canvases") or {}).items()},
            "shared": sum(int(v) for v in (m.get("shared_source_images") or {}).values())}


def context(params: dict, task: str = "glimpse", out_dir: Path | str = paths.REPORTS) -> dict:
    """Everything glimpse.html.j2 shows, as plain values (strings escaped by the template)."""
    out_dir = Path(out_dir)
    table = agg.collect(params, task)
    base = {**base_context(task, "Visual attention: RAM glimpses on cluttered digits", table, out_dir), "data": _data_facts(task, params["dataset"])}
    if not base["has_results"]:
        return base
    runs = _per_run(params, task, table)
    return {
        **base, **results_context(params, task, table, out_dir),
        "leaderboard": leaderboard(runs, None, LEADERBOARD, _cells, "error", memory=False, order=_by_variant,
                                   is_best=_best_of_variant(runs)), "pivot": _pivot(runs),
        "claims": _claims(runs), "acceptance": _acceptance(runs), "untrained": UNTRAINED_ERROR,
        "figures": _figures(task, runs), "steps": _steps(task, runs), "curves": _curves(task, runs),
    }
