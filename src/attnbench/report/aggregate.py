"""Collect one task's runs (every run × seed of the grid) into summary.csv and summary.json.

One row per run × seed of the task on the dataset of a `config.for_dataset` view, whether or not it
produced results:

- status 'ok'      its metrics.json exists and reads;
- status 'failed'  no (readable) metrics.json, but the job left a train/evaluate log: the reason
                   names the log and quotes its last line;
- status 'missing' nothing yet: not run (or run by a tool that keeps no logs, such as DVC).

summary.csv holds everything (metrics, training info, Snakemake benchmark time and memory);
summary.json holds the test metrics only, with sorted keys, so the same results give a
byte-identical file for `dvc metrics diff`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from .. import io as aio
from .. import paths
from ..config import RunSpec

ID_COLUMNS = ("task", "dataset", "run", "seed", "model", "attention", "status", "reason")
TRAIN_COLUMNS = ("parameters", "train_seconds", "epochs_trained", "best_epoch", "best_valid", "stopped_by",
                 "tokens_per_s", "device", "threads")
BENCH_COLUMNS = ("train_wall_s", "train_max_rss_mb", "eval_wall_s", "eval_max_rss_mb")
# metrics.json keys that are identity or provenance, not test metrics (kept out of summary.json)
_NOT_METRICS = {"task", "dataset", "run", "seed", "model", "attention", "parameters"}




def metric_columns(task: str) -> tuple[str, ...]:
    """The task's leaderboard metrics, headline first (empty for an unknown task)."""
    from .. import tasks

    try:
        return tuple(tasks.get(task).metric_columns)
    except KeyError:
        return ()


def _flat_key(key: str, label: str) -> str:
    prefix = key[: -len("_by_length")] + "_len" if key.endswith("_by_length") else key
    return f"{prefix}_{label}"


def flatten_metrics(metrics: dict) -> dict[str, Any]:
    """Scalar metrics as they are; {label: value} mappings as `<key>_<label>` columns
    (`bleu_by_length` -> `bleu_len_<label>`); lists are left out (not a table cell)."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if key in ("task", "run", "seed", "model", "attention"):
            continue
        if isinstance(value, dict):
            for label, v in value.items():
                if v is None or isinstance(v, (int, float, str, bool)):
                    flat[_flat_key(key, str(label))] = v
        elif value is None or isinstance(value, (int, float, str, bool)):
            flat[key] = value
    return flat


def _last_line(path: Path, limit: int = 200) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    if not lines:
        return "the log is empty"
    # prefer the line that says what went wrong over a trailing progress bar or traceback frame
    for line in reversed(lines):
        if "error" in line.lower():
            return line[:limit]
    return lines[-1][:limit]


def read_benchmark(path: Path) -> dict[str, float] | None:
    """Wall seconds (mean over repeats) and peak resident memory (MB, max) of a Snakemake benchmark TSV."""
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, sep="\t")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, UnicodeDecodeError):
        return None
    out: dict[str, float] = {}
    for column, key, how in (("s", "wall_s", "mean"), ("max_rss", "max_rss_mb", "max")):
        if column in table:
            values = pd.to_numeric(table[column], errors="coerce").dropna()
            if len(values):
                out[key] = round(float(getattr(values, how)()), 3)
    return out


def _read_json(path: Path) -> tuple[dict | None, str]:
    """(content, '') or (None, why not)."""
    if not path.is_file():
        return None, "absent"
    try:
        data = aio.read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"unreadable ({exc})"
    if not isinstance(data, dict):
        return None, f"unreadable (expected a JSON object, got {type(data).__name__})"
    return data, ""


def run_row(params: dict, task: str, run: str, seed: int) -> dict[str, Any]:
    """One run × seed of the dataset of `params` (a `config.for_dataset` view): identity, status with its
    reason, metrics, training info and benchmarks."""
    spec, dataset = params["tasks"][task]["runs"][run], params["dataset"]
    folder = paths.run_dir(task, dataset, run, seed)

    def log_path(step: str) -> Path:
        return paths.job_log(task, dataset, run, seed, step)

    row: dict[str, Any] = {"task": task, "dataset": dataset, "run": run, "seed": int(seed), "model": spec["model"],
                           "attention": spec["attention"], "status": "ok", "reason": ""}
    metrics, why = _read_json(folder / "metrics.json")
    logs = [p for p in (log_path("evaluate"), log_path("train")) if p.is_file()]
    if metrics is None:
        what = "no metrics.json" if why == "absent" else f"{folder / 'metrics.json'} is {why}"
        if logs:
            row["status"] = "failed"
            row["reason"] = f"{what}; see {logs[0].as_posix()}: {_last_line(logs[0])}"
        elif why != "absent":
            row["status"] = "failed"
            row["reason"] = what
        else:
            trained = (folder / "train_info.json").is_file()
            row["status"] = "missing"
            row["reason"] = (f"{what}: trained but not evaluated (attnbench evaluate --task {task} --dataset {dataset} "
                             f"--run {run} --seed {seed})"
                             if trained else f"{what}: not run yet (no results in {folder.as_posix()}, no log in "
                                             f"{log_path('train').parent.as_posix()})")
    else:
        row.update(flatten_metrics(metrics))
    info, _ = _read_json(folder / "train_info.json")
    for key in TRAIN_COLUMNS:
        if info and key in info and key not in row:
            row[key] = info[key]
    for step, prefix in (("train", "train"), ("evaluate", "eval")):
        bench = read_benchmark(paths.benchmark_tsv(task, dataset, run, seed, step))
        for key, value in (bench or {}).items():
            row[f"{prefix}_{key}"] = value
    return row


def _view_runs(params: dict, task: str) -> list[RunSpec]:
    """The runs x seeds of `task` on the view's dataset, in params order. Not `run_list(view)`: a view's
    task section has no `datasets` key (dataset_section drops it), so the grid of a view is synthetic's."""
    return [RunSpec(task, params["dataset"], run, seed) for run in params["tasks"][task]["runs"]
            for seed in params["seeds"]]


def collect(params: dict, task: str) -> pd.DataFrame:
    """The summary table of `task` on the dataset of `params` (a `config.for_dataset` view; no file
    written); columns in a fixed order."""
    if task not in params["tasks"]:
        raise KeyError(f"unknown task {task!r}; expected one of: {', '.join(params['tasks'])}")
    rows = [run_row(params, s.task, s.run, s.seed) for s in _view_runs(params, task)]
    headline = [c for c in metric_columns(task)]
    fixed = list(ID_COLUMNS) + headline + list(TRAIN_COLUMNS) + list(BENCH_COLUMNS)
    extra = sorted({k for r in rows for k in r} - set(fixed))
    # the by-length columns in their natural (bucket) order, after the other metrics
    lengthy = [k for r in rows for k in r if "_len_" in k and k in extra]
    lengthy = list(dict.fromkeys(lengthy))
    others = [k for k in extra if k not in lengthy]
    columns = list(ID_COLUMNS) + headline + others + lengthy + list(TRAIN_COLUMNS) + list(BENCH_COLUMNS)
    table = pd.DataFrame(rows, columns=columns)
    table.attrs.update(task=task, dataset=params["dataset"])  # what the report's sections are drawing
    for column in columns:  # keep integers integers (and flags flags) despite the gaps of missing runs
        values = [r[column] for r in rows if r.get(column) is not None]
        if values and all(isinstance(v, bool) for v in values):
            table[column] = table[column].astype("boolean")
        elif values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            table[column] = table[column].astype("Int64")
    return table


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalar
        return _clean(value.item())
    return value


def summary_metrics(params: dict, task: str, table: pd.DataFrame | None = None) -> dict:
    """{run: {"seed<k>": {metric: value}}}: the task's headline test metrics (and their by-length
    breakdown) from each metrics.json; no timings, no paths, so equal results give equal JSON."""
    out: dict[str, dict] = {}
    headline = list(metric_columns(task))
    for spec in _view_runs(params, task):
        path = paths.run_dir(task, spec.dataset, spec.run, spec.seed) / "metrics.json"
        metrics, _ = _read_json(path)
        entry: dict[str, Any]
        if metrics is None:
            status = "missing"
            if table is not None:
                match = table[(table["run"] == spec.run) & (table["seed"] == spec.seed)]
                if len(match):
                    status = str(match["status"].iloc[0])
            entry = {"status": status}
        else:
            entry = {}
            wanted = headline or [k for k in metrics if k not in _NOT_METRICS]
            keys = [k for m in wanted for k in (m, f"{m}_by_length") if k in metrics]
            for key in keys:
                value = metrics[key]
                if isinstance(value, dict):
                    value = {str(k): _clean(v) for k, v in value.items()
                             if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))}
                elif isinstance(value, bool) or not (value is None or isinstance(value, (int, float))):
                    continue  # signatures, flags: not a number to diff
                entry[key] = _clean(value)
        out.setdefault(spec.run, {})[f"seed{spec.seed}"] = entry
    return out


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    with aio.atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n")


def aggregate(params: dict, task: str) -> pd.DataFrame:
    """Write `paths.summary_csv` and `paths.summary_json` of (task, the view's dataset); return the table."""
    table = collect(params, task)
    _write_csv(paths.summary_csv(task, params["dataset"]), table)
    text = json.dumps(summary_metrics(params, task, table), indent=2, sort_keys=True, allow_nan=False) + "\n"
    aio.write_text(paths.summary_json(task, params["dataset"]), text)
    return table
