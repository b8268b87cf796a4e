"""Benchmark tasks: one module per task, each registering a `Task` under its params.yaml name.

A task is found by its module: every package or module of this folder (but `base` and `common`, the
shared pieces) is a task whose name is the module's, so a new task is its module, its params.yaml
section and its schema (workflow/schemas/tasks/<name>.schema.yaml), with no list to edit.
"""
from __future__ import annotations

import pkgutil
from importlib import import_module

from .base import Task

_TASKS: dict[str, Task] = {}
_SHARED = {"base", "common"}
_MODULES = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _SHARED and not m.name.startswith("_")))


def register(task: Task) -> Task:
    if task.name in _TASKS:
        raise ValueError(f"task {task.name!r} is registered twice")
    _TASKS[task.name] = task
    return task


def _load_all() -> None:
    for module in _MODULES:
        import_module(f"{__name__}.{module}")


def names() -> list[str]:
    """Every task name, without importing the task modules."""
    return sorted(set(_MODULES) | set(_TASKS))


def available() -> list[str]:
    _load_all()
    return sorted(_TASKS)


def get(name: str) -> Task:
    if name not in _TASKS and name in _MODULES:
        import_module(f"{__name__}.{name}")  # one task's module only: a job pays for its own imports
    if name not in _TASKS:
        _load_all()
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; expected one of: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


__all__ = ["Task", "register", "available", "get"]
