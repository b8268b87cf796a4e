"""What every task's report section shares.

A task gets its own section with two files in its folder: `src/attnbench/tasks/<task>/report.py`
(`context(params, task, out_dir) -> dict`) and `report.html.j2`, the template that reads that dict as `t`
(its figures, when it has its own, in `plots.py` beside them). A task without them gets the generic
section (its status and headline metrics). Nothing else changes when a section is added. The helpers below are shared and task-agnostic; a new
section is usually these steps, each one call:

    table = agg.collect(params, task)
    base = {**base_context(task, "Title", table, out_dir), ...task facts...}
    if not base["has_results"]:
        return base                                   # carries the "No results yet" notice
    runs = collect_runs(params, task, table, {"accuracy": 3, "train_seconds": 1, ...})
    best = best_run(runs, "accuracy")                 # lower_is_better=True for errors
    board = leaderboard(runs, best, [*LEAD_COLUMNS, ("accuracy", "title", True), ...],
                        lambda r: [*lead_cells(r), r["accuracy"], ...], "accuracy")
    claims = [claim("C1", PAPERS["C1"], verdict, evidence), ...]
    return {**base, **results_context(params, task, table, out_dir), "leaderboard": board, ...}

Run entries (`collect_runs`): one dict per run of params, in params order, with run, model,
attention, status/reason (`run_status`), rows (all seeds), ok (seeds with results), seeds (ints),
a `cell` per metric, train_max_rss_mb (over all seeds: an out-of-memory kill shows) and
mean {metric: mean}. Cells (`cell`, `column_cell`, `int_cell`, `text_cell`) are
{'text', 'sort', ...} dicts the templates' sortable tables read; `leaderboard` returns
{'columns': [{label, title, numeric}], 'rows': [{run, best, status, reason, cells}]}, the shape every
section template's leaderboard table loops over. Claims (`claim`) carry id, claim, source, paper,
verdict, evidence and css (VERDICT_CSS); the section template draws them and overview.claims
gathers every section's claims into the report's claims table.

Run files: `run_file` (a run's file, lowest seed with results by default), `load_npz`
(attention.npz as a dict, None when unreadable), `attention_exports` (every run's lowest-seed
attention.npz), `read_jsonl` (samples.jsonl items),
`training_logs` (every seed's train_log.csv as one frame), `curves` (their figure, one call),
`read_manifest` (the prepared data's manifest.json).
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ...config import SYNTHETIC
from .. import aggregate as agg
from ..numbers import finite


def module_for(task: str) -> ModuleType | None:
    """The task's own report section, `attnbench.tasks.<task>.report`, None without one."""
    name = f"attnbench.tasks.{task}.report"
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        found = None
    return importlib.import_module(name) if found else None


def slot_label(task: str, dataset: str) -> str:
    """How the report names a task on a dataset: the task alone for its embedded synthetic data."""
    return task if dataset == SYNTHETIC else f"{task} · {dataset}"


def slot_anchor(task: str, dataset: str) -> str:
    """The HTML id of a task's section on a dataset (the task's name for the synthetic data, as before)."""
    return task if dataset == SYNTHETIC else f"{task}--{dataset}"


def relpath(target: Path, out_dir: Path) -> str:
    """`target` relative to the report's folder, with forward slashes (an href)."""
    return Path(os.path.relpath(Path(target).resolve(), Path(out_dir).resolve())).as_posix()


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
    """The section of a task without its own module, from what the task declares (`metric_columns`,
    `headline`, `higher_is_better`, `valid_metric`): a leaderboard of every declared metric (mean ± std over
    seeds, best run marked, failed runs with their reason), the training curves, links to the raw metrics."""
    from ... import tasks

    table = agg.collect(params, task)
    declared = tasks.get(task)
    metrics = [m for m in agg.metric_columns(task) if m in table]
    base = {**base_context(task, task.replace("_", " ").capitalize(), table, out_dir),
            "metrics": metrics, "headline": declared.headline, "higher_is_better": declared.higher_is_better}
    if not base["has_results"]:
        return base
    runs = collect_runs(params, task, table, {m: 4 for m in metrics})
    sort_by = declared.headline if declared.headline in metrics else (metrics[0] if metrics else None)
    lower = not declared.higher_is_better
    best = best_run(runs, sort_by, lower_is_better=lower) if sort_by else None
    board = leaderboard(runs, best, [*LEAD_COLUMNS, *[(m, "", True) for m in metrics]],
                        lambda r: [*lead_cells(r), *[r[m] for m in metrics]], sort_by or "run", lower_is_better=lower)
    return {**base, **results_context(params, task, table, out_dir), "leaderboard": board,
            "best": best["run"] if best else None, "sort_metric": sort_by,
            "curves": curves(task, runs, None, f"validation {declared.valid_metric or 'metric'} (higher is better)")}


def notebook_link(task: str, dataset: str, out_dir: Path) -> dict:
    from ... import paths

    html = paths.notebook(task, dataset, "html")
    return {"href": relpath(html, out_dir), "exists": html.is_file(),
            "ipynb": relpath(paths.notebook(task, dataset), out_dir)}


# ---- cells ---------------------------------------------------------------------------------

def column_cell(frame: pd.DataFrame, column: str, digits: int = 2, scale: float = 1.0, suffix: str = "") -> dict:
    """`cell` of `frame[column]` (an empty cell when the column is absent)."""
    return cell(frame[column] if column in frame else [], digits, scale, suffix)


def int_cell(c: dict) -> dict:
    """A cell whose mean is shown as a whole number with thousands separators (parameter counts)."""
    return c if c["mean"] is None else {**c, "text": f"{int(round(c['mean'])):,}"}


def text_cell(text: str) -> dict:
    """A leaderboard cell that shows and sorts by `text`."""
    return {"text": text, "sort": text}


# ---- runs ----------------------------------------------------------------------------------

def collect_runs(params: dict, task: str, table: pd.DataFrame, metrics: Mapping[str, int]) -> list[dict]:
    """One entry per run of params (in params order) on the view's dataset: run, dataset, model,
    attention, status, reason, rows
    (all its seeds), ok (seeds with results), seeds (ints), a `cell` per metric in `metrics`
    (column -> decimals, over the ok seeds), train_max_rss_mb (over all seeds: an out-of-memory kill
    shows) and mean {metric: mean}. Sections add their own keys to the entries."""
    runs = []
    for run, spec in params["tasks"][task]["runs"].items():
        rows = table[table["run"] == run]
        ok = rows[rows["status"] == "ok"]
        status, reason = run_status(rows)
        entry = {"run": run, "dataset": params["dataset"], "model": spec["model"], "attention": spec["attention"], "status": status,
                 "reason": reason, "rows": rows, "ok": ok, "seeds": [int(s) for s in ok["seed"]]}
        for column, digits in metrics.items():
            entry[column] = column_cell(ok, column, digits)
        entry["train_max_rss_mb"] = column_cell(rows, "train_max_rss_mb", 0)
        entry["mean"] = {c: entry[c]["mean"] for c in metrics}
        runs.append(entry)
    return runs


def best_run(runs: Sequence[dict], metric: str, lower_is_better: bool = False) -> dict | None:
    """The run with the best mean `metric` (the first on ties), None when no run has it."""
    scored = [r for r in runs if finite(r["mean"][metric])]
    if not scored:
        return None
    pick = min if lower_is_better else max
    return pick(scored, key=lambda r: r["mean"][metric])


# ---- leaderboard ---------------------------------------------------------------------------

LEAD_COLUMNS = [("run", "", False), ("model", "", False), ("attention", "attention mechanism", False)]
MEMORY_COLUMN = ("peak memory (MB)", "max RSS of the training job (Snakemake benchmark)", True)


def lead_cells(r: dict, second: str | None = None) -> list[dict]:
    """The cells of LEAD_COLUMNS: run, model (or `second`, for a task that describes a run otherwise),
    attention."""
    return [text_cell(r["run"]), text_cell(r["model"] if second is None else second), text_cell(r["attention"])]


def leaderboard(runs: Sequence[dict], best: dict | None, columns: Sequence[tuple[str, str, bool]],
                cells: Callable[[dict], list[dict]], metric: str, lower_is_better: bool = False,
                memory: bool = True, order: Callable[[dict], Any] | None = None,
                is_best: Callable[[dict], bool] | None = None) -> dict:
    """The sortable leaderboard the templates draw (the `leaderboard` macro of _macros.html.j2): `columns`
    (label, title, numeric) and `cells(run)` are the task's own; then 'peak memory (MB)' (when `memory` and
    any run has it), 'seeds' (with results / in the grid) and 'status'. Rows are sorted by mean `metric`,
    best first, runs without it last (`order`: a sort key of the task's own instead); the `best` run's row
    is marked (`is_best`: which rows to mark instead, e.g. the best of each variant)."""
    has_memory = memory and any(r["train_max_rss_mb"]["n"] for r in runs)
    columns = list(columns) + ([MEMORY_COLUMN] if has_memory else [])
    columns += [("seeds", "seeds with results / seeds in the grid", True), ("status", "", False)]

    def key(r):
        if not finite(r["mean"][metric]):
            return (1, 0.0)
        return (0, r["mean"][metric] if lower_is_better else -r["mean"][metric])

    marked = is_best or (lambda r: best is not None and r["run"] == best["run"])
    rows = []
    for r in sorted(runs, key=order or key):
        row = list(cells(r)) + ([r["train_max_rss_mb"]] if has_memory else [])
        row.append({"text": f"{len(r['seeds'])}/{len(r['rows'])}", "sort": str(len(r["seeds"]))})
        row.append({"text": r["status"], "sort": r["status"], "title": r["reason"]})
        rows.append({"run": r["run"], "best": bool(marked(r)), "status": r["status"], "reason": r["reason"], "cells": row})
    return {"columns": [{"label": c[0], "title": c[1], "numeric": c[2]} for c in columns], "rows": rows}


# ---- claims --------------------------------------------------------------------------------

# The report's one verdict vocabulary (sections, the central claims table, the badges' colours)
VERDICT_CSS = {"supported": "good", "partly supported": "mid", "not supported": "bad", "inconclusive": "na",
               "not measurable": "na"}
VERDICTS = tuple(VERDICT_CSS)
SMOKE_VERDICT = "inconclusive (smoke scale)"   # every claim at smoke scale (at_smoke_scale)


def claim(cid: str, paper: tuple[str, str, str], verdict: str, evidence: str) -> dict:
    """A claim row: `paper` is (claim, source, the paper's figure); `verdict` one of VERDICTS (supported /
    partly supported / not supported / inconclusive / not measurable), computed from the metrics."""
    if verdict not in VERDICT_CSS:
        raise ValueError(f"claim {cid}: verdict {verdict!r} is not one of the report's: {', '.join(VERDICTS)}")
    text, source, figure = paper
    return {"id": cid, "claim": text, "source": source, "paper": figure, "verdict": verdict, "evidence": evidence,
            "css": VERDICT_CSS[verdict]}


def at_smoke_scale(ctx: dict) -> dict:
    """A section's context as a smoke-scale report shows it: a few epochs on a sliver of the data rank
    nothing, so no run is marked best and every verdict (the claims', an acceptance check's) is
    SMOKE_VERDICT, the figures staying as the evidence; a claim whose runs have no results says so first
    in its evidence ("not measurable: ...")."""
    def smoke(item: dict) -> dict:
        evidence = item["evidence"]
        if item["verdict"] == "not measurable":
            evidence = f"not measurable: {evidence}" if evidence else "not measurable"
        return {**item, "verdict": SMOKE_VERDICT, "css": "na", "evidence": evidence}

    for row in (ctx.get("leaderboard") or {}).get("rows", []):
        row["best"] = False
    ctx["claims"] = [smoke(c) for c in ctx.get("claims") or []]
    if ctx.get("acceptance"):
        ctx["acceptance"] = smoke(ctx["acceptance"])
    return ctx


# ---- run files -----------------------------------------------------------------------------

def run_file(task: str, r: dict, name: str, seed: int | None = None) -> Path:
    """File `name` of run entry `r` for `seed` (default: its lowest seed with results)."""
    from ... import paths

    return paths.run_dir(task, r["dataset"], r["run"], min(r["seeds"]) if seed is None else seed) / name


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of an .npz (no pickles) as a dict, None when missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None


def attention_exports(task: str, runs: Sequence[dict]) -> list[tuple[dict, int, dict[str, np.ndarray] | None]]:
    """(run entry, its lowest seed with results, that seed's attention.npz as a dict or None) for each
    run with results, in run order: what the sections draw attention figures from."""
    out = []
    for r in runs:
        if r["seeds"]:
            seed = min(r["seeds"])
            out.append((r, seed, load_npz(run_file(task, r, "attention.npz", seed))))
    return out


def reference_export(exports: Sequence[dict], has: str, numbered: str) -> tuple[dict[str, np.ndarray] | None, int]:
    """The first export (`{"z": attention.npz as a dict, ...}`, run order) holding the key `has`, and how many
    examples it numbers (keys `<numbered><n>`): the examples every run's figure shows. (None, 0) without one."""
    reference = next((e["z"] for e in exports if e["z"] is not None and has in e["z"]), None)
    return reference, (0 if reference is None else len([f for f in reference if f.startswith(numbered)]))


def read_jsonl(path: Path, max_lines: int | None = None) -> list[dict]:
    """The JSON objects of a JSON-lines file (of its first `max_lines` lines); lines that are not
    JSON objects are skipped, and a missing or unreadable file gives []."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines[:max_lines]:
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


def training_logs(task: str, runs: Sequence[dict]) -> pd.DataFrame | None:
    """epoch, train_loss, valid_metric, run, seed of every seed with results of `runs` (from
    train_log.csv; unreadable logs skipped), None when there is none: the input of
    `plots.training_curves`."""
    frames = []
    columns = ["epoch", "train_loss", "valid_metric"]
    for r in runs:
        for seed in r["seeds"]:
            try:
                log = pd.read_csv(run_file(task, r, "train_log.csv", seed))
            except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
                continue
            if set(columns) <= set(log.columns):
                frames.append(log[columns].assign(run=r["run"], seed=seed))
    return pd.concat(frames, ignore_index=True) if frames else None


def curves(task: str, runs: Sequence[dict], baseline: str | None, valid_label: str, loss_label: str | None = None,
           negated: bool = False, error_of_accuracy: bool = False) -> str | None:
    """The training-curves figure (`plots.training_curves`: loss and validation metric per epoch, one
    line per run, `baseline` run dashed) of `runs`' train_log.csv files; None without any log.
    `negated`: the log's valid_metric is minus an error (the training loop maximises it); plot the error.
    `error_of_accuracy`: the log's valid_metric is an accuracy; plot the error 1 - accuracy."""
    from .. import plots

    logs = training_logs(task, runs)
    if logs is None:
        return None
    if negated:
        logs["valid_metric"] = -logs["valid_metric"]
    if error_of_accuracy:
        logs["valid_metric"] = 1.0 - logs["valid_metric"]
    return plots.training_curves(logs, baseline, valid_label, loss_label=loss_label)


def read_manifest(task: str, dataset: str) -> dict:
    """The prepared data's manifest.json, {} when missing, unreadable or not an object."""
    from ... import io as aio
    from ... import paths

    try:
        data = aio.read_json(paths.prepared_dir(task, dataset) / "manifest.json")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ---- the section's context -----------------------------------------------------------------

def base_context(task: str, title: str, table: pd.DataFrame, out_dir: Path) -> dict:
    """What every section shows with or without results: task, title, summary (status counts and
    devices), problems, notebook, summary_csv, has_results, and a `notice` when nothing has results.
    `table` is `aggregate.collect`'s, which names its dataset in `table.attrs`."""
    from ... import paths

    counts, dataset = status_counts(table), table.attrs["dataset"]
    base = {"task": task, "dataset": dataset, "anchor": slot_anchor(task, dataset), "title": title, "summary": {**counts, "devices": devices(table)},
            "problems": problems(table), "notebook": notebook_link(task, dataset, out_dir),
            "summary_csv": relpath(paths.summary_csv(task, dataset), out_dir), "has_results": counts["ok"] > 0}
    if not counts["ok"]:
        base["notice"] = (f"No results yet: none of the {counts['total']} run × seed combinations has a "
                          f"metrics.json ({counts['failed']} failed, {counts['missing']} missing).")
    return base


def results_context(params: dict, task: str, table: pd.DataFrame, out_dir: Path) -> dict:
    """multi_seed, seeds, noise_test (the test its claims compare runs with) and metrics_links (each run ×
    seed's metrics.json) of a section with results."""
    from ... import paths
    from ..noise import noise_test

    ok = table[table["status"] == "ok"]
    links = [{"run": r, "seed": int(s), "href": relpath(paths.run_dir(task, params["dataset"], r, s) / "metrics.json", out_dir)}
             for r, s in zip(ok["run"], ok["seed"])]
    return {"multi_seed": len(params["seeds"]) > 1, "seeds": list(params["seeds"]),
            "noise_test": noise_test(len(params["seeds"]) > 1), "metrics_links": links}


def first_int(frame: pd.DataFrame, column: str) -> int | None:
    """The first non-missing value of `column` as an int (a count all seeds share), None without one."""
    return int(frame[column].dropna().iloc[0]) if column in frame and frame[column].notna().any() else None


__all__ = ["module_for", "slot_label", "slot_anchor", "relpath", "finite", "fmt", "cell", "column_cell", "int_cell", "text_cell", "run_status",
           "status_counts", "problems", "devices", "generic_context", "notebook_link", "collect_runs", "best_run",
           "LEAD_COLUMNS", "MEMORY_COLUMN", "lead_cells", "leaderboard", "VERDICT_CSS", "claim", "run_file",
           "load_npz", "attention_exports", "reference_export", "read_jsonl", "training_logs", "curves", "read_manifest",
           "base_context", "results_context", "first_int"]
