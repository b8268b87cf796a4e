"""Longest run first: the Snakemake priority of each run's train and evaluate jobs.

Snakemake starts ready jobs in priority order. With equal priorities the order is arbitrary, and a long
run started last keeps one core busy while the others idle: on the 2-core machine the glimpse grid took
159 s with `--cores 2` although its jobs add up to 287 s (a balanced schedule would end near 146 s).
Starting the longest runs first (the LPT rule of multiprocessor scheduling) leaves the short ones to fill
the gaps at the end.

A run's expected seconds come from `workflow/run_costs.tsv` (task, run, seconds of train + evaluate), a
table measured on the project's 2-core reference machine at the default scale. Only the order matters, so
the table also serves the other scales and machines; `attnbench run-costs --write` replaces it with the
times this checkout's own Snakemake benchmark files recorded. A run missing from the table gets the
table's median.
"""
from __future__ import annotations

import csv
import statistics
from pathlib import Path

from .errors import DataError

COSTS_TSV = Path("workflow/run_costs.tsv")
BENCHMARKS = Path("logs/benchmarks")
COLUMNS = ("task", "run", "seconds")


def read_costs(path: Path = COSTS_TSV) -> dict[tuple[str, str], float]:
    """{(task, run): seconds}; {} when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return {}
    numbered = [(n, line) for n, line in enumerate(path.read_text().splitlines(), start=1)
                if line.strip() and not line.startswith("#")]   # line numbers of the file, comments skipped
    reader = csv.DictReader([line for _, line in numbered], delimiter="\t")
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise DataError(f"{path}: expected the tab-separated columns {', '.join(COLUMNS)}, got {reader.fieldnames}")
    costs = {}
    for (number, _), row in zip(numbered[1:], reader):
        try:
            seconds = float(row["seconds"])
        except (TypeError, ValueError):
            raise DataError(f"{path}: line {number} ({row['task']}/{row['run']}): seconds {row['seconds']!r} "
                            f"is not a number") from None
        if seconds < 0:
            raise DataError(f"{path}: line {number} ({row['task']}/{row['run']}): seconds must be >= 0, got {seconds}")
        costs[(row["task"], row["run"])] = seconds
    return costs


def priorities(costs: dict[tuple[str, str], float], runs) -> dict[tuple[str, str], int]:
    """Snakemake priority (whole seconds, at least 1) of each (task, run) in `runs`."""
    fallback = statistics.median(costs.values()) if costs else 1.0
    return {(r.task, r.run): max(1, round(costs.get((r.task, r.run), fallback))) for r in runs}


def measured_costs(benchmarks: Path = BENCHMARKS, dataset: str = "synthetic") -> dict[tuple[str, str], float]:
    """{(task, run): seconds of train + evaluate}, mean over seeds, from Snakemake's benchmark files of
    one dataset (logs/benchmarks/<task>/<dataset>/<run>/seed<S>.<step>.tsv); runs missing a step are
    left out. The table orders every dataset's runs; only the order matters."""
    per_seed: dict[tuple[str, str, str], dict[str, float]] = {}
    for path in sorted(Path(benchmarks).glob(f"*/{dataset}/*/seed*.*.tsv")):
        seed, step = path.name.removesuffix(".tsv").split(".", 1)
        with path.open() as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows or "s" not in rows[0]:
            raise DataError(f"{path}: not a Snakemake benchmark file (no 's' column)")
        per_seed.setdefault((path.parts[-4], path.parts[-2], seed), {})[step] = float(rows[0]["s"])
    totals: dict[tuple[str, str], list[float]] = {}
    for (task, run, _seed), steps in per_seed.items():
        if {"train", "evaluate"} <= set(steps):
            totals.setdefault((task, run), []).append(steps["train"] + steps["evaluate"])
    return {key: statistics.fmean(values) for key, values in totals.items()}


def write_costs(costs: dict[tuple[str, str], float], path: Path = COSTS_TSV, note: str = "") -> None:
    lines = ["# Expected seconds of each run's train + evaluate jobs: the order in which Snakemake starts them",
             "# (longest first; see src/attnbench/priorities.py). Written by `attnbench run-costs --write`."]
    if note:
        lines.append(f"# {note}")
    lines.append("\t".join(COLUMNS))
    for (task, run), seconds in sorted(costs.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"{task}\t{run}\t{seconds:.0f}")
    Path(path).write_text("\n".join(lines) + "\n")
