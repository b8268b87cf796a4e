"""The report's pipeline-throughput view: how long the grid's jobs took and how much of each was overhead.

Read from what the jobs leave behind, nothing typed in:
- ``logs/timing/<task>/<run>/seed<S>.<step>.json`` (written by each train/evaluate job, see
  ``cli._JobClock``): process start, ready-to-work moment and end, so start-up = process start,
  imports, parameters and data loading;
- the summary tables (``aggregate.collect``): each run's Snakemake benchmark wall time per step.

The wall span is from the earliest job start to the latest job end among the current grid's timing
files: with jobs from several invocations it includes the gaps between them, and says so.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from statistics import median
from typing import Any

import pandas as pd

from .. import paths
from ..config import run_list, views
from . import aggregate as agg
from .sections import fmt, slot_label

TARGET_STARTUP_S = 3.0  # issue 10: per-job overhead under 3 seconds
STEPS = ("train", "evaluate")


def read_timings(params: dict) -> list[dict[str, Any]]:
    """Every readable timing file of the grid's runs, as dicts with task, run, seed and step added."""
    found = []
    for spec in run_list(params):
        for step in STEPS:
            path = paths.timing_json(spec.task, spec.dataset, spec.run, spec.seed, step)
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError, UnicodeDecodeError):
                continue
            if isinstance(data, dict) and all(isinstance(data.get(k), (int, float))
                                               for k in ("started_at", "finished_at", "startup_s")):
                found.append({**data, "task": spec.task, "dataset": spec.dataset, "run": spec.run, "seed": spec.seed, "step": step})
    return found


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _startup_rows(timings: list[dict]) -> list[dict]:
    rows = []
    for task in dict.fromkeys(t["task"] for t in timings):
        row: dict[str, Any] = {"task": task}
        for step in STEPS:
            values = [t["startup_s"] for t in timings if t["task"] == task and t["step"] == step]
            row[step] = {"n": len(values), "median": fmt(median(values), 2) if values else "—",
                         "max": fmt(max(values), 2) if values else "—",
                         "sort": f"{median(values):.4g}" if values else ""}
        rows.append(row)
    return rows


def _slowest(grid_views: dict[tuple[str, str], dict], n: int = 10) -> list[dict]:
    frames = []
    for (task, _), view in grid_views.items():
        table = agg.collect(view, task)
        if {"train_wall_s", "eval_wall_s"} <= set(table.columns):
            frames.append(table[["task", "dataset", "run", "seed", "train_wall_s", "eval_wall_s"]])
    if not frames:
        return []
    table = pd.concat(frames, ignore_index=True)
    table = table.dropna(subset=["train_wall_s"]).copy()
    table["total"] = table["train_wall_s"] + table["eval_wall_s"].fillna(0)
    table = table.sort_values("total", ascending=False).head(n)
    return [{"task": slot_label(r.task, r.dataset), "run": r.run, "seed": int(r.seed), "train": fmt(r.train_wall_s, 1),
             "evaluate": fmt(r.eval_wall_s, 1), "total": fmt(r.total, 1), "sort": f"{r.total:.6g}"}
            for r in table.itertuples()]


def context(params: dict, grid_views: dict[tuple[str, str], dict] | None = None) -> dict:
    """`grid_views`: `config.views(params)` when the caller has it."""
    timings = read_timings(params)
    slowest = _slowest(grid_views if grid_views is not None else views(params))
    if not timings:
        return {"has_results": False, "slowest": slowest}
    startups = [t["startup_s"] for t in timings]
    over = [t for t in timings if t["startup_s"] >= TARGET_STARTUP_S]
    start = min(t["started_at"] for t in timings)
    end = max(t["finished_at"] for t in timings)
    job_seconds = sum(t["finished_at"] - t["started_at"] for t in timings)
    med = median(startups)
    return {
        "has_results": True, "jobs": len(timings), "expected_jobs": len(run_list(params)) * len(STEPS),
        "rows": _startup_rows(timings), "median": fmt(med, 2), "max": fmt(max(startups), 2),
        "share": fmt(100 * sum(startups) / job_seconds, 0) if job_seconds > 0 else "—",
        "target": TARGET_STARTUP_S, "met": med < TARGET_STARTUP_S, "over": len(over),
        "span_min": fmt((end - start) / 60, 1), "job_min": fmt(job_seconds / 60, 1),
        "start": _stamp(start), "end": _stamp(end), "slowest": slowest,
    }
