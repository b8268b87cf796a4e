"""The report's cross-task views: the mechanism × task matrix and every task's claims in one table.

Both are computed from the summary tables and the sections' own claims (themselves computed from
metrics); nothing here is typed in.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from .. import tasks
from ..config import views
from . import aggregate as agg
from .noise import NO_ESTIMATE, noise_test, within_noise
from .sections import finite, fmt


def _task_meta(task: str) -> tuple[str, bool]:
    try:
        t = tasks.get(task)
    except KeyError:
        return "", True
    return t.headline, getattr(t, "higher_is_better", True)


def matrix(params: dict, grid_views: dict[tuple[str, str], dict] | None = None) -> dict:
    """Mechanisms as rows, (task, dataset) as columns, a task's datasets side by side; a cell is the
    headline metric (mean ± std over seeds) of the task's best run on that dataset that uses that mechanism.
    `grid_views`: `config.views(params)` when the caller has it."""
    from .sections import slot_anchor, slot_label

    columns, cells, multi_seed = [], {}, len(params["seeds"]) > 1
    smoke = params["scale"] == "smoke"   # a smoke run ranks nothing: no cell is marked best or tied
    for (task, dataset), view in (grid_views if grid_views is not None else views(params)).items():
        metric, higher = _task_meta(task)
        table = agg.collect(view, task)
        ok = table[table["status"] == "ok"] if "status" in table else table.iloc[0:0]
        # a task may choose its headline per dataset (metrics.json `headline`, e.g. load's MAPE or MASE rule)
        chosen = set(ok["headline"].dropna()) if "headline" in ok else set()
        if len(chosen) == 1 and next(iter(chosen)) in ok:
            metric = next(iter(chosen))
        key = slot_label(task, dataset)
        column = {"task": task, "dataset": dataset, "key": key, "label": key, "anchor": slot_anchor(task, dataset),
                  "metric": metric or "—", "higher": higher}
        if not metric or metric not in ok:
            columns.append(column)
            continue
        per_run: dict[str, tuple[str, list[float]]] = {}
        for run, rows in ok.groupby("run", sort=False):
            values = [float(v) for v in rows[metric] if finite(v)]
            if values:
                per_run[run] = (str(rows["attention"].iloc[0]), values)
        sign = 1 if higher else -1
        mean = {run: sum(v) / len(v) for run, (_, v) in per_run.items()}
        best_by_mech: dict[str, str] = {}
        for run, (mech, _) in per_run.items():
            if mech not in best_by_mech or sign * mean[run] > sign * mean[best_by_mech[mech]]:
                best_by_mech[mech] = run
        best_run = max(per_run, key=lambda r: sign * mean[r]) if per_run else None
        for mech, run in best_by_mech.items():
            values = per_run[run][1]
            std = pd.Series(values).std() if len(values) > 1 else None
            tie = None if run == best_run or smoke else within_noise(per_run[best_run][1], values)
            cells[(mech, key)] = {
                "text": fmt(mean[run]) + (f" ± {fmt(std)}" if std is not None else ""),
                "sort": f"{mean[run]:.6g}", "run": run, "best": run == best_run and not smoke, "tie": bool(tie),
                "seeds": len(values),
            }
        columns.append(column)
    mechanisms = sorted({m for m, _ in cells}, key=lambda m: (m != "none", m))
    rows = [{"mechanism": m, "cells": [cells.get((m, c["key"])) for c in columns]} for m in mechanisms]
    test = noise_test(True) if multi_seed else f"{NO_ESTIMATE}: run several seeds (params.yaml `seeds`) to mark ties"
    return {"columns": columns, "rows": rows, "noise_test": test}


def claims(sections: list[dict]) -> list[dict[str, Any]]:
    """Every section's claims (verdicts computed there from metrics), with the words and colours the
    sections give them (`sections.VERDICTS`; at smoke scale `sections.SMOKE_VERDICT`)."""
    out = []
    for section in sections:
        for claim in section["ctx"].get("claims") or []:
            out.append({**claim, "task": section["task"], "dataset": section.get("dataset", "synthetic"),
                        "label": section.get("label", section["task"]), "anchor": section.get("anchor", section["task"])})
    return sorted(out, key=lambda c: (len(c.get("id", "")), c.get("id", "")))
