"""Where every artefact lives, relative to the working directory (the repository root).

Snakemake rules, the generated dvc.yaml and the CLI all take their paths from here. Everything a run
produces carries its task and dataset, so one dataset's results never overwrite another's:

    data/raw/<registry name>/                       fetched files, checksummed (attnbench data fetch)
    data/prepared/<task>/<dataset>/                 prepare
    data/results/<task>/<dataset>/<run>/seed<k>/    train + evaluate
    data/summary/<task>/<dataset>.{csv,json}        aggregate
    data/scores/<task>/<dataset>/<run>/seed<k>/<name>/   score: a trained run on other test files
    reports/notebooks/<task>/<dataset>.{ipynb,html} notebook
"""
from __future__ import annotations

from pathlib import Path

RAW = Path("data/raw")
PREPARED = Path("data/prepared")
RESULTS = Path("data/results")
SUMMARY = Path("data/summary")
STATE = Path("data/state")
SCORES = Path("data/scores")
REPORTS = Path("reports")
LOGS = Path("logs")

# files of one run (task/dataset/run/seed)
TRAIN_OUTPUTS = ("model.pt", "train_log.csv", "train_info.json")
EVAL_OUTPUTS = ("metrics.json", "attention.npz", "samples.jsonl")


def raw_dir(name: str) -> Path:
    """A registry dataset's fetched files."""
    return RAW / name


def prepared_dir(task: str, dataset: str) -> Path:
    return PREPARED / task / dataset


def run_dir(task: str, dataset: str, run: str, seed: int) -> Path:
    return RESULTS / task / dataset / run / f"seed{seed}"


def score_dir(task: str, dataset: str, run: str, seed: int, name: str) -> Path:
    """`attnbench score`'s results for test files called `name`: never the run's own metrics."""
    return SCORES / task / dataset / run / f"seed{seed}" / name


def state_dir(task: str, dataset: str, run: str, seed: int) -> Path:
    """Resume state (last epoch); not a pipeline output, so Snakemake and DVC never delete it."""
    return STATE / task / dataset / run / f"seed{seed}"


def summary_csv(task: str, dataset: str) -> Path:
    return SUMMARY / task / f"{dataset}.csv"


def summary_json(task: str, dataset: str) -> Path:
    return SUMMARY / task / f"{dataset}.json"


def notebook(task: str, dataset: str, ext: str = "ipynb") -> Path:
    return REPORTS / "notebooks" / task / f"{dataset}.{ext}"


def job_log(task: str, dataset: str, run: str, seed: int, step: str) -> Path:
    """A train/evaluate job's log."""
    return LOGS / task / dataset / run / f"seed{seed}.{step}.log"


def benchmark_tsv(task: str, dataset: str, run: str, seed: int, step: str) -> Path:
    """Snakemake's time and memory record of a train/evaluate job."""
    return LOGS / "benchmarks" / task / dataset / run / f"seed{seed}.{step}.tsv"


def timing_json(task: str, dataset: str, run: str, seed: int, step: str) -> Path:
    """When a train/evaluate job's process started, was ready to work, and finished (see cli._JobClock)."""
    return LOGS / "timing" / task / dataset / run / f"seed{seed}.{step}.json"


NOTEBOOKS = Path("workflow/notebooks")
GENERIC_NOTEBOOK = NOTEBOOKS / "_generic.ipynb"
TASKS_SRC = Path("src/attnbench/tasks")   # one folder per task, everything the task owns
# the files of a task's folder that only the report steps read (its section, template, figures, notebook)
TASK_REPORT_FILES = ("report.py", "report.html.j2", "plots.py", "notebook.ipynb")


def task_notebook(task: str) -> Path:
    """A task's own analysis notebook (relative to the checkout), whether or not it has one."""
    return TASKS_SRC / task / "notebook.ipynb"


def notebook_source(task: str, root: Path = Path(".")) -> Path:
    """The analysis notebook a task's notebook step executes, relative to `root` (the checkout): its own
    src/attnbench/tasks/<task>/notebook.ipynb, else the generic one."""
    own = task_notebook(task)
    return own if (Path(root) / own).is_file() else GENERIC_NOTEBOOK


def is_report_code(path: Path) -> bool:
    """Whether a file of src/attnbench is read by the report steps only: under report/, or one of
    TASK_REPORT_FILES in a task's folder. A change to it re-runs the report steps, not the grid."""
    parts = Path(path).parts
    return "report" in parts or (len(parts) >= 3 and parts[-3] == "tasks" and parts[-1] in TASK_REPORT_FILES)


def report_html() -> Path:
    return REPORTS / "index.html"
