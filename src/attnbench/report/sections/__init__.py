"""Per-task report sections.

A task gets its own section by adding a module `attnbench.report.sections.<task>` with
`context(params, task, out_dir) -> dict` and a template `templates/<task>.html.j2` that reads that
dict as `t`. A task without a module gets the generic section (its status and headline metrics).
Nothing else changes when a section is added. The helpers below are shared, task-agnostic.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import pandas as pd

from .. import aggregate as agg


def module_for(task: str) -> ModuleType | None:
    name = f"{__name__}.{task}"
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        found = None
    return importlib.import_module(name) if found else None


def relpath(target: Path, out_dir: Path) -> str:
    """`target` relative to the report's folder, with forward slashes (an href)."""
    return Path(os.path.relpath(Path(target).resolve(), Path(out_dir).resolve())).as_posix()


def finite(value: Any) -> bool:
    try:
        return value is not None and not pd.isna(value) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def fmt(value: Any, digits: int = 2, scale: float = 1.0, suffix: str = "") -> str:
    if not finite(value):
        return "—"
    v = float(value) * scale
    return f"{v:,.{digits}f}{suffix}" if abs(v) >= 1000 else f"{v:.{digits}f}{suffix}"


def cell(values: Sequence[Any], digits: int = 2, scale: float = 1.0, suffix: str = "") -> dict:
    """Mean (± std over seeds when several) of the finite `values`: {'text', 'sort', 'mean', 'std', 'n'}."""
    vals = [float(v) for v in values if finite(v)]
    if not vals:
        return {"text": "—", "sort": "", "mean": None, "std": None, "n": 0}
    mean = sum(vals) / len(vals)
    std = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else None
    text = fmt(mean, digits, scale)
    if std is not None:
        text += f" ± {fmt(std, digits, scale)}"
    text += suffix
    return {"text": text, "sort": f"{mean * scale:.6g}", "mean": mean, "std": std, "n": len(vals)}


def run_status(rows: pd.DataFrame) -> tuple[str, str]:
    """A run's status over its seeds: ('ok' | 'partial' | 'failed' | 'missing', reason)."""
    statuses = list(rows["status"])
    bad = rows[rows["status"] != "ok"]
    if not len(bad):
        return "ok", ""
    reason = "; ".join(f"seed {s}: {r}" for s, r in zip(bad["seed"], bad["reason"]))
    if "ok" in statuses:
        return "partial", f"{statuses.count('ok')}/{len(statuses)} seeds ok; {reason}"
    return ("failed" if "failed" in statuses else "missing"), reason


def status_counts(table: pd.DataFrame) -> dict[str, int]:
    counts = table["status"].value_counts().to_dict() if len(table) else {}
    return {"ok": int(counts.get("ok", 0)), "failed": int(counts.get("failed", 0)),
            "missing": int(counts.get("missing", 0)), "total": int(len(table))}


def problems(table: pd.DataFrame) -> list[dict]:
    bad = table[table["status"] != "ok"]
    return [{"run": r, "seed": int(s), "status": st, "reason": why}
            for r, s, st, why in zip(bad["run"], bad["seed"], bad["status"], bad["reason"])]


def devices(table: pd.DataFrame) -> list[str]:
    if "device" not in table:
        return []
    return sorted({str(d) for d in table["device"].dropna()})


def generic_context(params: dict, task: str, out_dir: Path) -> dict:
    """The section of a task without its own module: status and headline metrics per run × seed."""
    from ... import paths

    table = agg.collect(params, task)
    metrics = [m for m in agg.metric_columns(task) if m in table]
    rows = []
    for _, r in table.iterrows():
        rows.append({"run": r["run"], "seed": int(r["seed"]), "status": r["status"], "reason": r["reason"],
                     "cells": [fmt(r[m], 4) for m in metrics]})
    return {"task": task, "title": task.replace("_", " ").capitalize(), "metrics": metrics, "rows": rows,
            "summary": {**status_counts(table), "devices": devices(table)},
            "has_results": bool((table["status"] == "ok").any()),
            "notebook": notebook_link(task, out_dir), "summary_csv": relpath(paths.summary_csv(task), out_dir)}


def notebook_link(task: str, out_dir: Path) -> dict:
    from ... import paths

    html = paths.notebook(task, "html")
    return {"href": relpath(html, out_dir), "exists": html.is_file(),
            "ipynb": relpath(paths.notebook(task), out_dir)}


__all__ = ["module_for", "relpath", "fmt", "cell", "run_status", "status_counts", "problems",
                                 "generic_context", "notebook_link", "devices"]
