# Validation, the run grid and shared values; evaluated when Snakemake parses the workflow.
import json
import shlex
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from attnbench import paths
from attnbench import priorities as schedule
from attnbench.config import (ParamsError, dataset_names, dataset_options, dataset_section, resolve_run,
                              retype_like, run_list, select_grid, training_config)
from attnbench.validation import validate

with open("params.yaml") as _fh:
    _FILE = yaml.safe_load(_fh)

try:
    PARAMS = validate(retype_like(json.loads(json.dumps(config)), _FILE),
                      origin="params.yaml (with --config overrides)")
    GRID = select_grid(PARAMS, origin="params.yaml (with --config overrides)")
except ParamsError as exc:
    sys.exit(f"attnbench: error: {exc}")

# The CLI reads params.yaml itself; what `--config` overrode reaches it as `--set KEY=VALUE`, so the
# shell command (a rerun trigger) changes only when an override does.
def _overrides(base, effective, prefix=""):
    for key in sorted(set(base) | set(effective)):
        a, b = base.get(key), effective.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            yield from _overrides(a, b, f"{prefix}{key}.")
        elif a != b:
            yield f"--set {shlex.quote(prefix + key + '=' + json.dumps(b))}"


CLI = " ".join(["attnbench", *_overrides(_FILE, PARAMS)])
PARAMS = GRID   # the grid `grid` selects (params.yaml's own unless --config grid=findings)


def _uses_gpu():
    if PARAMS["device"] == "cpu":
        return False
    if PARAMS["device"] == "cuda":
        return True
    import torch

    return torch.cuda.is_available()


USE_GPU = _uses_gpu()
GPU = 1 if USE_GPU else 0  # CPU jobs ask for no gpu, so `--resources gpu=1` never serialises them
RUNS = run_list(PARAMS)  # task x dataset x run x seed
TASKS = list(PARAMS["tasks"])
SLOTS = [(t, d) for t in TASKS for d in dataset_names(PARAMS, t)]  # every (task, dataset) of the grid
# The package is an input of every step, so a code change re-runs what it can affect: the report
# code (src/attnbench/report/, and each task's report.py, report.html.j2, plots.py) only the report
# steps, everything else the whole grid.
_PKG = sorted(p for p in Path("src/attnbench").rglob("*") if p.suffix in (".py", ".j2"))
REPORT_SRC = [str(p) for p in _PKG if paths.is_report_code(p)]
SRC = [str(p) for p in _PKG if not paths.is_report_code(p)]
SCHEMAS = sorted(str(p) for p in Path("workflow/schemas").rglob("*.yaml"))


def _every_core():
    """The cores Snakemake was given (--cores); 1 where there is no such total (a cluster executor)."""
    try:
        return workflow.cores
    except WorkflowError:
        return 1


# Longest runs first (attnbench/priorities.py): a run's train and evaluate jobs get its expected seconds
# as their priority, so short runs fill the cores at the end instead of a long one running alone.
RUN_PRIORITY = schedule.priorities(schedule.read_costs(), RUNS)


def run_priority(w):
    return RUN_PRIORITY.get((w.task, w.run), 1)


def run_files(task, dataset, names):
    return [str(paths.run_dir(r.task, r.dataset, r.run, r.seed) / n) for r in RUNS
            if (r.task, r.dataset) == (task, dataset) for n in names]


def run_config(w):
    return json.dumps(resolve_run(PARAMS, w.task, w.run, int(w.seed), w.dataset), sort_keys=True)


def train_config(w):
    return json.dumps(training_config(resolve_run(PARAMS, w.task, w.run, int(w.seed), w.dataset)), sort_keys=True)


def data_config(w):
    section = dataset_section(PARAMS, w.task, w.dataset)
    return json.dumps({"scale": PARAMS["scale"], "data": section["data"],
                       "size": section["scales"][PARAMS["scale"]]}, sort_keys=True)


def fetched(w):
    """The registry files a dataset is read from (data/raw/<name>/), or nothing for generated data."""
    name = dataset_options(PARAMS, w.task, w.dataset).get("fetch")
    return [str(paths.raw_dir(name))] if name else []


def notebook_source(w):
    return str(paths.notebook_source(w.task))


wildcard_constraints:
    task="[A-Za-z0-9_]+",
    dataset="[a-z0-9][a-z0-9_.-]*",
    name="[a-z0-9][a-z0-9_.-]*",
    run="[A-Za-z0-9][A-Za-z0-9_.-]*",
    seed="[0-9]+",
