"""The ships section: leaderboard, claim C11 (task partitioning vs the shallow and the deep net on
bow/stern IoU), per-class IoU, the fixed test tiles with every run's prediction and the attention
maps as overlays, and training curves.

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
from . import plots as plots_ships
from ...report.sections import (LEAD_COLUMNS, base_context, best_run, cell, claim, collect_runs, curves, finite, fmt,
                                int_cell, lead_cells, leaderboard, load_npz, read_manifest, results_context, run_file)

C11 = ("Gating the shallow net's bow/stern loss with the deep net's coarse attention map localises bow and stern "
       "better than either net alone", "Lin et al., Fully Convolutional Network with Task Partitioning for Inshore "
       "Ship Detection in Optical Remote Sensing Images (IEEE GRSL 2017)")
PAPER = "the paper reports the task-partitioned net ahead of its shallow and deep parts on real harbour images " \
        "(no figure copied here: direction only)"
MIN_IOU = 0.05          # below this bow/stern IoU a net has not learned the class: the comparison is inconclusive
MARGIN = 0.01           # an IoU gap smaller than this (or than the seeds' spread) is a tie
METRICS = ("bowstern_iou", "bowstern_iou_inshore", "bowstern_iou_offshore", "bowstern_precision", "bowstern_recall",
           "miou", "iou_sea", "iou_land", "iou_hull", "iou_bow_stern", "coarse_bowstern_iou",
           "fine_bowstern_iou_ungated", "region_share", "region_recall", "train_seconds", "parameters")


def _per_run(params: dict, task: str, table: pd.DataFrame) -> list[dict]:
    runs = collect_runs(params, task, table, {column: 3 for column in METRICS})
    for r in runs:   # the task-partitioning recipe, for the claim's text
        r["deep_first"] = int((params["tasks"][task]["runs"][r["run"]].get("options") or {}).get("deep_first_epochs", 0))
    return runs


LEADERBOARD = [*LEAD_COLUMNS,
               ("bow/stern IoU", "IoU of the bow/stern class on all test tiles (higher is better)", True),
               ("inshore", "bow/stern IoU on pixels within the margin of an inshore ship", True),
               ("offshore", "bow/stern IoU on pixels within the margin of an offshore ship", True),
               ("precision", "bow/stern precision", True), ("recall", "bow/stern recall", True),
               ("mIoU", "mean IoU over the four classes (— for the shallow net: bow/stern only)", True),
               ("sea", "IoU of sea", True), ("land", "IoU of land", True), ("hull", "IoU of hull", True),
               ("parameters", "trainable parameters", True), ("training time (s)", "from train_info.json", True)]


def _cells(r: dict) -> list[dict]:
    """A run's leaderboard cells after LEAD_COLUMNS, in LEADERBOARD's order."""
    return [*lead_cells(r), *[r[c] for c in ("bowstern_iou", "bowstern_iou_inshore", "bowstern_iou_offshore", "bowstern_precision",
                                              "bowstern_recall", "miou", "iou_sea", "iou_land", "iou_hull")],
            int_cell(r["parameters"]), cell(r["ok"]["train_seconds"] if "train_seconds" in r["ok"] else [], 1)]


def _pick(runs: list[dict], model: str, attention: str | None = None) -> dict | None:
    cands = [r for r in runs if r["model"] == model and (attention is None or r["attention"] == attention)
             and finite(r["mean"]["bowstern_iou"])]
    return max(cands, key=lambda r: r["mean"]["bowstern_iou"]) if cands else None


def claim_c11(runs: list[dict]) -> list[dict]:
    """C11 from the metrics: the task-partitioning run's bow/stern IoU against the shallow run's and the
    plain deep run's (no attention). Supported: above both by more than the margin and the seeds' spread, and
    beyond seed noise (Welch's t-test over seeds; one seed: the means decide); a gap within noise is a tie."""
    tp, shallow, deep = _pick(runs, "partition"), _pick(runs, "shallow"), _pick(runs, "deep", "none")
    if tp is None or shallow is None or deep is None:
        return [claim("C11", (*C11, PAPER), "not measurable", "needs a task-partitioning run, a shallow run and a deep run without "
                                         "attention, all with results")]
    t, s, d = (r["mean"]["bowstern_iou"] for r in (tp, shallow, deep))
    k = int(tp.get("deep_first") or 0)
    recipe = (f"deep net trained alone for its first {k} epoch{'s' if k != 1 else ''}, then both" if k else
              "both nets trained together from the first step")
    evidence = (f"bow/stern IoU: {tp['run']} ({recipe}) {t:.3f} vs {shallow['run']} {s:.3f} and {deep['run']} {d:.3f} "
                f"(gaps {t - s:+.3f} and {t - d:+.3f})")
    ins = [r["mean"]["bowstern_iou_inshore"] for r in (tp, shallow, deep)]
    if all(finite(v) for v in ins):
        evidence += f"; inshore ships only: {ins[0]:.3f} vs {ins[1]:.3f} and {ins[2]:.3f}"
    if finite(tp["mean"]["coarse_bowstern_iou"]) and finite(tp["mean"]["fine_bowstern_iou_ungated"]):
        evidence += (f"; inside {tp['run']}: its deep half alone {tp['mean']['coarse_bowstern_iou']:.3f}, its shallow "
                     f"half ungated {tp['mean']['fine_bowstern_iou_ungated']:.3f}")
    if max(s, d) < MIN_IOU:
        return [claim("C11", (*C11, PAPER), "inconclusive", evidence + f"; neither baseline reaches IoU {MIN_IOU}: too little training to "
                                                  "compare them")]
    spread = max((r["bowstern_iou"]["std"] or 0.0) for r in (tp, shallow, deep))
    margin = max(MARGIN, spread)
    evidence += f"; a gap must exceed {margin:.3f} (the larger of {MARGIN} and the seeds' spread)"
    tests = [noise.compare_runs(tp, other, "bowstern_iou") for other in (shallow, deep)]
    held = [noise.holds(c) for c in tests]
    # a beat: above by more than the margin and ahead beyond seed noise; within noise: a tie (None)
    beats = [None if h is None else bool(gap > margin and h) for gap, h in zip((t - s, t - d), held)]
    if any(c["noise"] for c in tests):
        evidence += "; Welch's t-test: " + ", ".join(
            f"{name} {c['p_text']}" + (" (within noise)" if h is None else "")
            for name, c, h in zip(("shallow", "deep"), tests, held))
    evidence += noise.one_seed_note(tests)
    verdict = noise.verdict(beats)
    if verdict == "partly supported":
        won = beats.index(True)
        evidence += (f"; task partitioning beats only the {('shallow', 'deep')[won]} net, not the "
                     f"{('deep', 'shallow')[won]} one" + (" (within noise of it)" if None in beats else ""))
    elif verdict == "not supported":
        evidence += "; task partitioning beats neither net alone"
    elif verdict == "inconclusive":
        tied = " and ".join(name for name, b in zip(("shallow", "deep"), beats) if b is None)
        evidence += f"; task partitioning beats neither net alone, and is within noise of the {tied} net"
    return [claim("C11", (*C11, PAPER), verdict, evidence)]


def _tiles(task: str, runs: list[dict]) -> dict:
    exports = []
    for r in runs:
        if not r["seeds"]:
            continue
        z = load_npz(run_file(task, r, "attention.npz"))
        if z is not None:
            exports.append((r, z))
    if not exports:
        return {"grid": None, "overlays": None, "names": []}
    ref = exports[0][1]
    names = [str(n) for n in ref["tile_names"]] if "tile_names" in ref else [f"test tile {int(i)}" for i in ref["tiles"]]
    columns = [{"title": r["run"], "masks": z["classes"], "bowstern": z["bowstern"]} for r, z in exports
               if z["classes"].shape == ref["gold"].shape]
    grid = plots_ships.tile_grid(ref["image"], ref["gold"], columns, names)
    maps = []
    for r, z in exports:
        if "map" not in z or z["map"].shape != ref["gold"].shape:
            continue
        label = {"task_partition": "deep net's P(bow/stern)", "cbam_spatial": "spatial gate (0–1)"}.get(
            r["attention"], "mean attention received")
        maps.append({"title": f"{r['run']}: {label}", "map": z["map"].astype(np.float32), "label": label})
        if "region" in z:
            maps.append({"title": f"{r['run']}: gate region", "map": z["region"].astype(np.float32),
                         "label": "region (1 = inside)", "vmin": 0.0, "vmax": 1.0})
    overlays = plots_ships.attention_overlays(ref["image"], ref["gold"], maps, names) if maps else None
    return {"grid": grid, "overlays": overlays, "names": names}


def _iou_plot(runs: list[dict]) -> str | None:
    rows = []
    labels = {"iou_sea": "sea", "iou_land": "land", "iou_hull": "hull", "iou_bow_stern": "bow/stern",
              "miou": "mIoU", "bowstern_iou_inshore": "bow/stern, inshore", "bowstern_iou_offshore": "bow/stern, offshore"}
    for r in runs:
        for key, label in labels.items():
            v = r["mean"].get(key)
            if finite(v):
                rows.append({"run": r["run"], "measure": label, "iou": float(v)})
    return plots_ships.iou_bars(pd.DataFrame(rows)) if rows else None


def _curves(task: str, runs: list[dict]) -> str | None:
    return curves(task, runs, "deep", "validation bow/stern IoU", loss_label="training loss (cross-entropy)")


def _data_facts(params: dict, task: str) -> dict:
    facts = {"source": params["tasks"][task]["data"]["source"], "manifest": None}
    m = read_manifest(task, params["dataset"])
    if m:
        px = m.get("class_pixels", {}).get("train") or []
        total = sum(px) or 1
        facts["manifest"] = {"tile_size": m.get("tile_size"), "splits": m.get("splits", {}),
                             "shares": [{"name": c, "share": fmt(100 * p / total, 1)} for c, p in
                                        zip(m.get("classes", []), px)],
                             "ships": (m.get("ships") or {}).get("test")}
    return facts


def context(params: dict, task: str = "ships", out_dir: Path | str = paths.REPORTS) -> dict:
    """Everything ships.html.j2 shows, as plain values (strings escaped by the template)."""
    out_dir = Path(out_dir)
    table = agg.collect(params, task)
    base = {**base_context(task, "Inshore ship segmentation (task partitioning, CNN attention)", table, out_dir), "data": _data_facts(params, task),
            "margin": params["tasks"][task]["eval"]["ship_margin"], "min_iou": MIN_IOU, "tie": MARGIN}
    if not base["has_results"]:
        return base
    runs = _per_run(params, task, table)
    best = best_run(runs, "bowstern_iou")
    return {
        **base, **results_context(params, task, table, out_dir),
        "leaderboard": leaderboard(runs, best, LEADERBOARD, _cells, "bowstern_iou", memory=False),
        "best": best["run"] if best else None,
        "claims": claim_c11(runs),
        "tiles": _tiles(task, runs),
        "iou_plot": _iou_plot(runs),
        "curves": _curves(task, runs),
    }
