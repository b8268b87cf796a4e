"""The report's Performance section: attention kernel cost from ``data/bench/attention.csv``.

Not a task section: it is drawn once, after the tasks, by ``templates/performance.html.j2`` from
:func:`context`. Everything is recomputed from the CSV (ratios, targets, exponents via
:func:`attnbench.kernel_bench.summarise`); the JSON written beside the CSV only adds how the run went
(load average, wall time). Without the CSV the section says so and how to produce it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .. import kernel_bench as bench
from .sections import fmt, relpath

REQUIRED = ("length", "mechanism", "kind", "family", "status", "time_s", "peak_bytes")
_BADGE = {True: ("met", "good"), False: ("missed", "bad"), None: ("not measured", "na")}


def _not_run(csv: Path, out_dir: Path, why: str) -> dict:
    return {"title": "Performance", "has_results": False, "notice": why, "csv": relpath(csv, out_dir),
            "command": f"attnbench bench-attention --out {csv.as_posix()}"}


def _rel_table(summary: dict, key: str, lengths: list[int], kinds: dict[str, str]) -> dict:
    cells: dict[str, dict[int, float | None]] = {}
    for r in summary["relative"]:
        cells.setdefault(r["mechanism"], {})[r["length"]] = r[key]
    order = sorted(cells, key=lambda m: (m != "scaled_dot", kinds.get(m) == "reference", m))
    rows = []
    for m in order:
        vals = [cells[m].get(t) for t in lengths]
        rows.append({"mechanism": m, "reference": kinds.get(m) == "reference",
                     "cells": [{"text": fmt(v, 2, suffix="×"), "sort": "" if v is None else f"{v:.6g}",
                                "css": ("" if v is None else "good" if v <= 1.0 else "bad" if v >= 4 else "")}
                               for v in vals]})
    return {"lengths": lengths, "rows": rows}


def context(params: dict, out_dir: Path, csv: Path | None = None) -> dict:
    csv = Path(csv or bench.CSV)
    out_dir = Path(out_dir)
    if not csv.is_file():
        return _not_run(csv, out_dir, f"The attention benchmark has not run yet: {csv.as_posix()} does not exist.")
    try:
        df = pd.read_csv(csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        return _not_run(csv, out_dir, f"{csv.as_posix()} could not be read as CSV ({exc}).")
    missing = [c for c in REQUIRED if c not in df]
    if missing:
        return _not_run(csv, out_dir, f"{csv.as_posix()} lacks the column(s) {', '.join(missing)}; "
                                      "re-run the benchmark to rewrite it.")
    if not (df["status"] == "ok").any():
        return _not_run(csv, out_dir, f"{csv.as_posix()} has no successful measurement.")
    try:
        cfg = bench.settings(params)
    except KeyError:
        cfg = dict(bench.DEFAULTS)
    meta: dict = {}
    side = csv.with_suffix(".json")
    if side.is_file():
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            meta = {}
    if "fit_from" in meta:  # the fit range the run was made for, not the current scale's
        cfg["fit_from"] = meta["fit_from"]
    summary = bench.summarise(df, cfg)
    ok = df[df["status"] == "ok"].copy()
    lengths = summary["lengths"]
    kinds = ok.drop_duplicates("mechanism").set_index("mechanism")["kind"].to_dict()

    from . import plots_performance as pp

    ok["time_ms"] = ok["time_s"] * 1000
    ok["peak_mib"] = ok["peak_bytes"] / 2**20
    figures = [
        {"src": pp.scaling(ok, "time_ms", "forward+backward time per step (ms, log scale)"),
         "caption": "Time of one forward+backward step against length, log–log: slope 2 is quadratic, slope 1 "
                    "linear. Dashed: torch's kernels."},
        {"src": pp.scaling(ok, "peak_mib", "peak memory of one step (MiB, log scale)"),
         "caption": "Peak memory allocated during one forward+backward step (above what was allocated before it)."},
    ]
    checks = [{**c, "verdict": _BADGE[c["pass"]][0], "css": _BADGE[c["pass"]][1]} for c in summary["checks"]]
    mha_lengths = sorted({m["length"] for m in summary["mha_ratios"]})
    mha_rows = []
    for name in ("multihead", "multihead_noweights"):
        by_len = {m["length"]: m for m in summary["mha_ratios"] if m["mechanism"] == name}
        if by_len:
            mha_rows.append({"mechanism": name, "reference": next(iter(by_len.values()))["reference"],
                             "cells": [{"text": fmt(by_len[t]["ratio"], 3, suffix="×") if t in by_len else "—",
                                        "css": _BADGE[by_len[t]["pass"]][1] if t in by_len else "na"}
                                       for t in mha_lengths]})
    exps = sorted(summary["exponents"], key=lambda e: (e["family"] != "linear", e["mechanism"]))
    exponent_rows = [{"mechanism": e["mechanism"], "kind": e["kind"], "family": e["family"],
                      "expected": "—" if e["expected"] is None else f"{e['expected']:g}", "exponent": fmt(e["exponent"], 2),
                      "sort": "" if e["exponent"] is None else f"{e['exponent']:.4g}",
                      "verdict": _BADGE[e["pass"]][0] if e["pass"] is not None else "—",
                      "css": _BADGE[e["pass"]][1]} for e in exps]
    failures = [f"{r['mechanism']} at {int(r['length'])}: {r['status']}" for _, r in df[df["status"] != "ok"].iterrows()]
    first = ok.iloc[0]
    loads = [v for v in ok.get("loadavg_1m", pd.Series(dtype=float)) if pd.notna(v)]
    setting = {
        "device": str(first.get("device", "cpu")), "batch": int(first["batch"]) if "batch" in ok else None,
        "width": int(first["width"]) if "width" in ok else None,
        "heads": int(first["heads"]) if "heads" in ok else None,
        "threads": int(first["threads"]) if "threads" in ok and pd.notna(first["threads"]) else None,
        "repeats": int(ok["repeats"].max()) if "repeats" in ok else None,
        "load": (f"{min(loads):.2f}–{max(loads):.2f}" if loads else "not recorded"),
        "cpu_count": meta.get("cpu_count"), "wall_s": meta.get("wall_s"), "started": meta.get("started"),
        "gpu": meta.get("gpu"), "torch": meta.get("torch"),
        "memory_method": meta.get("memory_method", bench.MEMORY_METHOD),
        "time_method": meta.get("time_method", bench.TIME_METHOD),
        "fit_from": summary["fit_from"],
    }
    sd = ok[ok["mechanism"] == "scaled_dot"].set_index("length")
    baseline = [{"length": int(t), "time": fmt(sd.at[t, "time_s"] * 1000, 3) if t in sd.index else "—",
                 "memory": fmt(sd.at[t, "peak_bytes"] / 2**20, 2) if t in sd.index else "—"} for t in lengths]
    return {
        "title": "Performance", "has_results": True, "csv": relpath(csv, out_dir), "setting": setting,
        "checks": checks, "time_rel": _rel_table(summary, "time_rel", lengths, kinds),
        "memory_rel": _rel_table(summary, "memory_rel", lengths, kinds), "baseline": baseline,
        "mha": {"lengths": mha_lengths, "rows": mha_rows}, "exponents": exponent_rows, "figures": figures,
        "failures": failures, "n_mechanisms": int(ok["mechanism"].nunique()),
    }
