"""params.yaml checked: the schemas and the task, mechanism and dataset registries.

Every entry point (the CLI, the Snakefile, dvc.yaml's commands) goes through `load_params`, so a
bad value stops everything with one message that names the key path, the bad value and what is
allowed, before anything is written. This module sits above the registries (it imports the tasks, the
attention mechanisms and the datasets); the grid itself, which they all read, is `attnbench.config`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from . import attention, datasets, tasks  # the registries fill themselves on import
from .config import (DATASET_KEYS, DEFAULT_PARAMS, REPO_ROOT, SYNTHETIC, _merge, apply_overrides, dataset_names,
                     dataset_options, dataset_section, parse_override, read_yaml, select_grid)
from .errors import ParamsError
from .paths import raw_dir

SCHEMA_DIR = REPO_ROOT / "workflow" / "schemas"


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


def validate(params: dict, origin: str = DEFAULT_PARAMS, task: str | None = None) -> dict:
    """Check params against the schemas and the registries; return them unchanged or raise ParamsError.

    Every task's section is checked against its schema, and so is each of its datasets' section (the task's
    section with the dataset's overrides merged in). `task`: a job of that one task — only its module is
    imported for the checks a schema cannot express (the whole file was validated when the DAG was built;
    this spares each job importing every task)."""
    _check(params, _schema("params.schema.yaml"), [], origin)
    known = tasks.names()
    for name, section in params["tasks"].items():
        if name not in known:
            raise ParamsError(f"{origin}: tasks.{name}: unknown task {name!r}; expected one of: {', '.join(known)}")
        _check({k: section[k] for k in DATASET_KEYS if k in section}, _schema("datasets.schema.yaml"),
               ["tasks", name], origin)
        _check_datasets(section, name, origin)
        schema = _schema(f"tasks/{name}.schema.yaml")
        for dataset in dataset_names(params, name, selected=False):
            merged = dataset_section(params, name, dataset)
            _check(merged, schema, ["tasks", name], _where(origin, name, dataset))
            _check_run_models(merged, schema, name, _where(origin, name, dataset))
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


def _check_run_models(section: dict, schema: dict, task: str, origin: str) -> None:
    """A run's own `model_options` (where the task's schema allows them) merged over its model's options must
    fit that model's schema, as the model's options alone do."""
    models = schema.get("properties", {}).get("models", {}).get("properties", {})
    for run, spec in section["runs"].items():
        if "model_options" in spec and spec["model"] in models:
            _check(_merge(section["models"][spec["model"]], spec["model_options"]), models[spec["model"]],
                   ["tasks", task, "runs", run, "model_options"], origin)


def check_dataset(params: dict, task: str, dataset: str, origin: str = DEFAULT_PARAMS) -> None:
    """The task's own checks (those a schema cannot express, e.g. that a file exists) on one dataset."""
    tasks.get(task).check_params(dataset_section(params, task, dataset), _where(origin, task, dataset))


def _where(origin: str, task: str, dataset: str) -> str:
    """How an error names the section it found: the file, and for a real dataset the merge it checked."""
    return origin if dataset == SYNTHETIC else f"{origin} (tasks.{task} with dataset_options.{dataset} merged in)"


def not_fetched_yet(params: dict, task: str, dataset: str) -> bool:
    """A registry dataset whose files have not been fetched into data/raw/<name>/ yet."""
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
            if spec["fetch"] not in datasets.names():
                raise ParamsError(f"{origin}: tasks.{task}.dataset_options.{name}.fetch: value {spec['fetch']!r} is not "
                                  f"allowed; expected a registered dataset: {', '.join(datasets.names())}")


def load_params(path: str | Path = DEFAULT_PARAMS, overrides: dict[str, Any] | None = None,
                task: str | None = None) -> dict:
    params = apply_overrides(read_yaml(Path(path)), overrides or {}, origin=str(path))
    return select_grid(validate(params, origin=str(path), task=task), origin=str(path))


def params_from_args(args) -> dict:
    """params.yaml as a command line gives it (`--params`, then `--set KEY=VALUE`, `--scale`, `--device`,
    `--threads` over it), checked; a command with `--task` imports that task's module only."""
    overrides = dict(parse_override(s) for s in args.set)
    for key in ("scale", "device", "threads"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    return load_params(args.params, overrides, task=getattr(args, "task", None))
