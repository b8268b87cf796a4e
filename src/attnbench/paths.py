"""Where every artefact lives, relative to the working directory (the repository root).

Snakemake rules, dvc.yaml and the CLI all take their paths from here or spell the same patterns.
"""
from __future__ import annotations

from pathlib import Path

PREPARED = Path("data/prepared")
RESULTS = Path("data/results")
SUMMARY = Path("data/summary")
STATE = Path("data/state")
REPORTS = Path("reports")
LOGS = Path("logs")

# files of one run (task/run/seed)
TRAIN_OUTPUTS = ("model.pt", "train_log.csv", "train_info.json")
EVAL_OUTPUTS = ("metrics.json", "attention.npz", "samples.jsonl")


def prepared_dir(task: str) -> Path:
    return PREPARED / task


def run_dir(task: str, run: str, seed: int) -> Path:
    return RESULTS / task / run / f"seed{seed}"


def state_dir(task: str, run: str, seed: int) -> Path:
    """Resume state (last epoch); not a pipeline output, so Snakemake and DVC never delete it."""
    return STATE / task / run / f"seed{seed}"


def summary_csv(task: str) -> Path:
    return SUMMARY / f"{task}.csv"


def summary_json(task: str) -> Path:
    return SUMMARY / f"{task}.json"


def notebook(task: str, ext: str = "ipynb") -> Path:
    return REPORTS / "notebooks" / f"{task}.{ext}"


def timing_json(task: str, run: str, seed: int, step: str) -> Path:
    """When a train/evaluate job's process started, was ready to work, and finished (see cli._JobClock)."""
    return LOGS / "timing" / task / run / f"seed{seed}.{step}.json"


def report_html() -> Path:
    return REPORTS / "index.html"
