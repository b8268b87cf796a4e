"""The report's "CPU and GPU" view: what ``benchmarks/gpu.sh`` measured, device beside device.

Each run of the script leaves ``summary.json`` in its folder; the maintained copies are committed
under ``benchmarks/results/<name>/`` (small files: one row per training run). This module reads
every such summary, nothing typed in, and lines the devices up by (task, dataset, run): the best
epoch's examples/s on each, the speed-up of each device over the CPU one, the GPU's peak memory
and utilisation, and for evaluated runs their headline scores.
"""
from __future__ import annotations

import json
from pathlib import Path

from .sections import fmt, relpath

RESULTS = Path("benchmarks/results")
COMMAND = "benchmarks/gpu.sh"


def read(results: Path = RESULTS) -> list[dict]:
    """Every readable ``<results>/<name>/summary.json`` with its folder name, CPU first."""
    found = []
    for path in sorted(Path(results).glob("*/summary.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get("runs"), list):
            found.append({**data, "name": path.parent.name, "path": path})
    return sorted(found, key=lambda s: (s.get("device") != "cpu", s["name"]))


def _label(summary: dict) -> str:
    env = summary.get("env") or {}
    if summary.get("device") == "cuda":
        return env.get("gpu") or "GPU"
    return f"CPU ({env.get('cpu_count', '?')} cores, 1 thread)"


def context(out_dir: Path, results: Path = RESULTS) -> dict:
    summaries = read(results)
    if not summaries:
        return {"has_results": False, "command": COMMAND, "folder": Path(results).as_posix()}
    devices = [{"name": s["name"], "label": _label(s), "device": s.get("device"), "scale": s.get("scale"),
                "torch": (s.get("env") or {}).get("torch"), "path": relpath(s["path"], Path(out_dir))}
               for s in summaries]
    keys: list[tuple] = []
    by_device: list[dict[tuple, dict]] = []
    for s in summaries:
        rows = {}
        for r in s["runs"]:
            key = (r.get("task"), r.get("dataset"), r.get("run"))
            rows[key] = r
            if key not in keys:
                keys.append(key)
        by_device.append(rows)
    cpu = next((i for i, s in enumerate(summaries) if s.get("device") == "cpu"), None)
    table = []
    for key in keys:
        cells = []
        base = by_device[cpu].get(key) if cpu is not None else None
        for i, rows in enumerate(by_device):
            r = rows.get(key) or {}
            rate = r.get("examples_per_s")
            speedup = (rate / base["examples_per_s"]) if (i != cpu and base and rate and base.get("examples_per_s")) else None
            scores = [f"{name} {fmt(r.get(name), 2)}" for name in ("bleu", "bleu_beam", "chrf") if r.get(name) is not None]
            cells.append({
                "status": r.get("status", "not run"), "ok": r.get("status") == "ok",
                "rate": fmt(rate, 0), "speedup": fmt(speedup, 1, suffix="×") if speedup else "",
                "epoch_s": fmt(r.get("seconds_first_epoch"), 1), "epochs": r.get("epochs_trained"),
                "memory": fmt(r.get("peak_gpu_memory_mib"), 0), "util": fmt(r.get("gpu_util_mean_pct"), 0),
                "scores": ", ".join(scores),
            })
        table.append({"task": key[0], "dataset": key[1], "run": key[2], "cells": cells})
    budgets = sorted({str(r.get("budget_minutes")) for s in summaries for r in s["runs"]})
    return {"has_results": True, "devices": devices, "rows": table, "budgets": budgets, "command": COMMAND}
