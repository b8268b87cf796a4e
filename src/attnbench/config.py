"""params.yaml as plain values: reading, the grid and per-run resolution.

The low floor of the package: what a run is (`resolve_run`, `config_hash`), the view one (task, dataset)
takes of params (`dataset_section`, `for_dataset`, `views`) and the grid (`run_list`, `select_grid`). It
imports nothing else from the package but `errors`, so every other module can import it. Checking params
against the schemas and the task, mechanism and dataset registries is `attnbench.validation`'s
(`load_params`), a floor above the registries.
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import ParamsError, not_utf8  # noqa: F401  (re-exported: config.ParamsError is the historical name)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PARAMS = "params.yaml"
SYNTHETIC = "synthetic"                         # every task's embedded generator, configured by its `data`
DATASET_KEYS = ("datasets", "dataset_options")  # the grid's dataset dimension in a task's section
DATASET_OVERRIDES = ("data", "scales", "train", "eval", "models")  # what a dataset may change of its task


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when there
    """SafeLoader that refuses duplicated mapping keys (YAML would silently keep the last one)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ParamsError(
                    f"line {line}: key {key!r} is duplicated (first defined on line {seen[key]}); "
                    "each key (task, run, option) must appear once"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: {not_utf8(exc)}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML syntax error on one line, placed by the file's own lines and columns (PyYAML's own text names
    the string it parsed, `<unicode string>`, not the file)."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is None or not problem:
        return f"not valid YAML: {' '.join(str(exc).split())}"
    text = f"line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {problem}"
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None:
        text += f" ({context} opened on line {start.line + 1}, column {start.column + 1})"
    return text


def apply_overrides(params: dict, overrides: dict[str, Any], origin: str = DEFAULT_PARAMS) -> dict:
    """Set dotted keys (e.g. {'scale': 'smoke', 'tasks.translation.train.lr': 0.01}) of params read from
    `origin`. Every key above the last must exist and hold a mapping; the last may be new (the schema then
    says whether it is allowed)."""
    params = copy.deepcopy(params)
    for dotted, value in overrides.items():
        node = params
        keys = dotted.split(".")
        for depth, key in enumerate(keys[:-1]):
            where = ".".join(keys[:depth]) if depth else "the top level"
            if key not in node:
                close = difflib.get_close_matches(key, [str(k) for k in node], n=3)
                hint = (f"; close matches: {', '.join(close)}" if close else f"; it has: {', '.join(map(str, node))}")
                raise ParamsError(f"override {dotted}={value!r}: {origin} has no key {key!r} under {where}{hint}")
            if not isinstance(node[key], dict):
                raise ParamsError(f"override {dotted}={value!r}: {'.'.join(keys[:depth + 1])} in {origin} is a value "
                                  f"({node[key]!r}), not a mapping of keys")
            node = node[key]
        node[keys[-1]] = value
    return params


def _merge(base: dict, over: dict) -> dict:
    """`base` with `over` merged in, mapping by mapping (lists and values replace)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def dataset_names(params: dict, task: str, selected: bool = True) -> list[str]:
    """The datasets `task` runs on (params' `tasks.<task>.datasets`, default synthetic); with
    selected=False every dataset it defines."""
    section = params["tasks"][task]
    if selected:
        return list(section.get("datasets", [SYNTHETIC]))
    return [SYNTHETIC, *[d for d in section.get("dataset_options", {}) if d != SYNTHETIC]]


def dataset_options(params: dict, task: str, dataset: str) -> dict:
    """The entry of `tasks.<task>.dataset_options` for `dataset` ({} for synthetic without one)."""
    options = params["tasks"][task].get("dataset_options", {})
    if dataset != SYNTHETIC and dataset not in options:
        raise ParamsError(f"tasks.{task}.dataset_options: no dataset named {dataset!r}; expected one of: "
                          f"{', '.join(dataset_names(params, task, selected=False))}")
    return options.get(dataset, {})


def dataset_section(params: dict, task: str, dataset: str) -> dict:
    """The task's section as one dataset sees it: without the grid's dataset keys, the dataset's `data`
    in place of the task's, its sizes, training, evaluation and model options merged over the task's.
    The runs are the task's own, so the same run is compared across datasets."""
    section = {k: v for k, v in params["tasks"][task].items() if k not in DATASET_KEYS}
    options = dataset_options(params, task, dataset)
    over = {k: v for k, v in options.items() if k in DATASET_OVERRIDES and k != "data"}
    merged = _merge(section, over)
    if "data" in options:
        merged["data"] = options["data"]
    return merged


def for_dataset(params: dict, task: str, dataset: str) -> dict:
    """params as the steps of one (task, dataset) read them: `tasks.<task>` is `dataset_section(...)` and
    `dataset` names the dataset (the prepare, aggregate, notebook and report steps take this view)."""
    return {**params, "tasks": {**params["tasks"], task: dataset_section(params, task, dataset)}, "dataset": dataset}


def views(params: dict) -> dict[tuple[str, str], dict]:
    """(task, dataset) -> its `for_dataset` view, for every dataset each task runs on, in params order (a
    task's datasets side by side): the report builds them once and its parts (sections, the cross-task
    matrix, the throughput table) all read these."""
    return {(task, dataset): for_dataset(params, task, dataset)
            for task in params["tasks"] for dataset in dataset_names(params, task)}


def retype_like(value: Any, like: Any) -> Any:
    """`value` with every string leaf parsed as YAML where `like` (params.yaml's value at the same place)
    is not a string: Snakemake's `--config` hands over `seeds=[0,1,2]` as the strings '0', '1', '2'."""
    if isinstance(value, dict):
        return {k: retype_like(v, like.get(k) if isinstance(like, dict) else None) for k, v in value.items()}
    if isinstance(value, list):
        item = like[0] if isinstance(like, list) and like else None
        return [retype_like(v, item) for v in value]
    if isinstance(value, str) and like is not None and not isinstance(like, str):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value   # left as given: validation names the key and what it expected
    return value


def parse_override(text: str) -> tuple[str, Any]:
    """'key.path=value' with value parsed as YAML (so 3, 0.1, true, [0, 1] keep their types)."""
    if "=" not in text:
        raise ParamsError(f"override {text!r}: expected KEY=VALUE, e.g. scale=smoke")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


GRIDS = ("all", "findings")   # `grid`: what the pipeline runs (see select_grid)


def select_grid(params: dict, origin: str = DEFAULT_PARAMS) -> dict:
    """params with the grid that `grid` selects: `all` (the default) keeps each task's datasets, runs and
    the seeds as params.yaml lists them; `findings` keeps the tasks, datasets, runs and seeds listed under
    `findings` (the committed findings' grid, `make findings`). Only the selection changes: every run's
    resolved configuration, and so its config hash, is the one params.yaml gives it under either grid."""
    if params.get("grid", "all") != "findings":
        return params
    selection = params.get("findings")
    if not selection:
        raise ParamsError(f"{origin}: grid: value 'findings' needs a `findings` section (seeds and tasks)")
    out = copy.deepcopy(params)
    out["seeds"] = list(selection["seeds"])
    chosen = {}
    for task, spec in selection["tasks"].items():
        if task not in out["tasks"]:
            raise ParamsError(f"{origin}: findings.tasks.{task}: unknown task {task!r}; expected one of: "
                              f"{', '.join(out['tasks'])}")
        section = out["tasks"][task]
        for run in spec["runs"]:
            if run not in section["runs"]:
                raise ParamsError(f"{origin}: findings.tasks.{task}.runs: no run named {run!r}; expected one of: "
                                  f"{', '.join(section['runs'])}")
        defined = dataset_names(out, task, selected=False)
        for dataset in spec["datasets"]:
            if dataset not in defined:
                raise ParamsError(f"{origin}: findings.tasks.{task}.datasets: dataset {dataset!r} is not defined; "
                                  f"expected one of: {', '.join(defined)}")
        section["datasets"] = list(spec["datasets"])
        section["runs"] = {run: section["runs"][run] for run in spec["runs"]}
        chosen[task] = section
    out["tasks"] = chosen
    return out


@dataclass(frozen=True)
class RunSpec:
    task: str
    dataset: str
    run: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.task}/{self.dataset}/{self.run}/seed{self.seed}"


def run_list(params: dict) -> list[RunSpec]:
    """The grid: task x dataset x run x seed, in params order."""
    return [
        RunSpec(task, dataset, run, seed)
        for task, section in params["tasks"].items()
        for dataset in dataset_names(params, task)
        for run in section["runs"]
        for seed in params["seeds"]
    ]


def resolve_run(params: dict, task: str, run: str, seed: int, dataset: str = SYNTHETIC) -> dict:
    """Everything one training run depends on, as plain values: its identity in the checkpoint."""
    section = dataset_section(params, task, dataset)
    if run not in section["runs"]:
        raise ParamsError(f"tasks.{task}.runs: no run named {run!r}; expected one of: {', '.join(section['runs'])}")
    spec = section["runs"][run]
    model_options = section["models"][spec["model"]]
    if "model_options" in spec:   # the run's own values over its model's (absent: the config is as before)
        model_options = _merge(model_options, spec["model_options"])
    return {
        "task": task,
        "dataset": dataset,
        "run": run,
        "seed": int(seed),
        "scale": params["scale"],
        "data": section["data"],
        "size": section["scales"][params["scale"]],
        "train": section["train"],
        "model": spec["model"],
        "model_options": model_options,
        "attention": spec["attention"],
        "attention_options": spec.get("options", {}),
        "eval": section["eval"],
    }


EVAL_ONLY_KEYS = ("eval",)


def training_config(cfg: dict) -> dict:
    """What a trained model depends on: the run config without its evaluation settings."""
    return {k: v for k, v in cfg.items() if k not in EVAL_ONLY_KEYS}


def config_hash(cfg: dict) -> str:
    """Identity of a training run (evaluation settings excluded: they never need a retrain)."""
    return hashlib.sha256(json.dumps(training_config(cfg), sort_keys=True).encode()).hexdigest()[:16]
