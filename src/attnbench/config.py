"""params.yaml: loading, validation and per-run resolution.

Every entry point (the CLI, the Snakefile, dvc.yaml's commands) goes through `load_params`, so a
bad value stops everything with one message that names the key path, the bad value and what is
allowed, before anything is written.
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .errors import ParamsError, not_utf8  # noqa: F401  (re-exported: config.ParamsError is the historical name)

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO_ROOT / "workflow" / "schemas"
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


def _schema(name: str) -> dict:
    # libyaml's parser: every job reads the schemas at start-up, and the pure-Python one took ~0.15 s of it
    return yaml.load((SCHEMA_DIR / name).read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _path(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts) or "<top level>"


def _expected(error: ValidationError) -> str:
    """What the schema allowed, in words."""
    v, spec = error.validator, error.validator_value
    if v == "enum":
        return "one of: " + ", ".join(map(str, spec))
    if v == "const":
        return f"exactly {spec!r}"
    if v == "type":
        return f"a value of type {spec}"
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[v]
        return f"a number {op} {spec}"
    if v == "minItems":
        return f"a list with at least {spec} item(s)"
    if v == "uniqueItems":
        return "a list without repeated items"
    if v == "minProperties":
        return f"a mapping with at least {spec} entr{'y' if spec == 1 else 'ies'}"
    if v == "minLength":
        return "a non-empty string"
    if v == "pattern":
        return f"a string matching {spec}"
    if v == "oneOf":
        return "exactly one of the documented forms (e.g. {source, target} or {tsv})"
    return f"{v}: {spec}"


def _format(error: ValidationError, root: list[Any], origin: str) -> str:
    parts = root + list(error.absolute_path)
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in (error.instance or {})]
        return f"{origin}: {_path(parts)}: missing key {missing[0]!r} (required keys: {', '.join(error.validator_value)})"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return f"{origin}: {_path(parts)}: unknown key {extra[0]!r}; allowed keys: {', '.join(allowed)}"
    if error.validator == "propertyNames":
        return f"{origin}: {_path(parts)}: name {error.instance!r} is not allowed; expected {_expected(error.context[0]) if error.context else 'a valid name'}"
    return f"{origin}: {_path(parts)}: value {error.instance!r} is not allowed; expected {_expected(error)}"


def _check(instance: Any, schema: dict, root: list[Any], origin: str) -> None:
    errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        # the shallowest error is the most useful one; report it alone, with its path
        raise ParamsError(_format(errors[0], root, origin))


def apply_overrides(params: dict, overrides: dict[str, Any], origin: str = DEFAULT_PARAMS) -> dict:
    """Set dotted keys (e.g. {'scale': 'smoke', 'tasks.translation.train.lr': 0.01}) of params read from
    `origin`. Every key above the last must exist and hold a mapping; the last may be new (the schema then
    says whether it is allowed)."""
    params = copy.deepcopy(params)
    for dotted, value in overrides.items():
        node = params
        keys = dotted.split(".")
        for depth, key in enumerate(keys[:-1]):
            where = _path(keys[:depth]) if depth else "the top level"
            if key not in node:
                close = difflib.get_close_matches(key, [str(k) for k in node], n=3)
                hint = (f"; close matches: {', '.join(close)}" if close else f"; it has: {', '.join(map(str, node))}")
                raise ParamsError(f"override {dotted}={value!r}: {origin} has no key {key!r} under {where}{hint}")
            if not isinstance(node[key], dict):
                raise ParamsError(f"override {dotted}={value!r}: {_path(keys[:depth + 1])} in {origin} is a value "
                                  f"({node[key]!r}), not a mapping of keys")
            node = node[key]
        node[keys[-1]] = value
    return params


def validate(params: dict, origin: str = DEFAULT_PARAMS, task: str | None = None) -> dict:
    """Check params against the schemas and the registries; return them unchanged or raise ParamsError.

    Every task's section is checked against its schema, and so is each of its datasets' section (the task's
    section with the dataset's overrides merged in). `task`: a job of that one task — only its module is
    imported for the checks a schema cannot express (the whole file was validated when the DAG was built;
    this spares each job importing every task)."""
    from . import attention, tasks  # imported here: the registries fill themselves on import

    _check(params, _schema("params.schema.yaml"), [], origin)
    known = tasks.names()
    for name, section in params["tasks"].items():
        if name not in known:
            raise ParamsError(f"{origin}: tasks.{name}: unknown task {name!r}; expected one of: {', '.join(known)}")
        _check({k: section[k] for k in DATASET_KEYS if k in section}, _schema("datasets.schema.yaml"),
               ["tasks", name], origin)
        _check_datasets(section, name, origin)
        for dataset in dataset_names(params, name, selected=False):
            _check(dataset_section(params, name, dataset), _schema(f"tasks/{name}.schema.yaml"), ["tasks", name],
                   _where(origin, name, dataset))
        # before the task's own checks: those look mechanisms up and would fail on an unknown one
        # without naming the key
        for run, spec in section["runs"].items():
            mech = spec["attention"]
            if mech not in attention.available():
                raise ParamsError(
                    f"{origin}: tasks.{name}.runs.{run}.attention: value {mech!r} is not allowed; "
                    f"expected one of: {', '.join(attention.available())}"
                )
        if task is None or name == task:
            for dataset in dataset_names(params, name, selected=False):
                if not_fetched_yet(params, name, dataset):
                    continue  # its files do not exist before `fetch`: prepare checks it then (check_dataset)
                check_dataset(params, name, dataset, origin)
    if params["device"] == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ParamsError(f"{origin}: device: value 'cuda' is not allowed here: no CUDA device is visible; expected one of: auto, cpu")
    return params


def check_dataset(params: dict, task: str, dataset: str, origin: str = DEFAULT_PARAMS) -> None:
    """The task's own checks (those a schema cannot express, e.g. that a file exists) on one dataset."""
    from . import tasks

    tasks.get(task).check_params(dataset_section(params, task, dataset), _where(origin, task, dataset))


def _where(origin: str, task: str, dataset: str) -> str:
    """How an error names the section it found: the file, and for a real dataset the merge it checked."""
    return origin if dataset == SYNTHETIC else f"{origin} (tasks.{task} with dataset_options.{dataset} merged in)"


def not_fetched_yet(params: dict, task: str, dataset: str) -> bool:
    """A registry dataset whose files have not been fetched into data/raw/<name>/ yet."""
    from .paths import raw_dir

    name = dataset_options(params, task, dataset).get("fetch")
    return bool(name) and not (raw_dir(name) / "SOURCE.json").is_file()


def _check_datasets(section: dict, task: str, origin: str) -> None:
    """The dataset names a task runs on are `synthetic` or defined under its dataset_options; a registry
    name under `fetch` exists."""
    defined = [SYNTHETIC, *[d for d in section.get("dataset_options", {}) if d != SYNTHETIC]]
    for name in section.get("datasets", [SYNTHETIC]):
        if name not in defined:
            raise ParamsError(f"{origin}: tasks.{task}.datasets: dataset {name!r} is not defined; expected one of: "
                              f"{', '.join(defined)} (a new one is an entry of tasks.{task}.dataset_options)")
    for name, spec in section.get("dataset_options", {}).items():
        if "fetch" in spec:
            from . import datasets

            if spec["fetch"] not in datasets.names():
                raise ParamsError(f"{origin}: tasks.{task}.dataset_options.{name}.fetch: value {spec['fetch']!r} is not "
                                  f"allowed; expected a registered dataset: {', '.join(datasets.names())}")


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


def load_params(path: str | Path = DEFAULT_PARAMS, overrides: dict[str, Any] | None = None,
                task: str | None = None) -> dict:
    params = apply_overrides(read_yaml(Path(path)), overrides or {}, origin=str(path))
    return select_grid(validate(params, origin=str(path), task=task), origin=str(path))


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
        "model_options": section["models"][spec["model"]],
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
