"""Benchmark tasks: one module per task, each registering a `Task` under its params.yaml name."""
from __future__ import annotations

from importlib import import_module

from .base import Task

_TASKS: dict[str, Task] = {}
_MODULES = ("translation", "intent", "documents", "recsys", "load", "glimpse", "ships", "captioning")  # a new task: one module here and its section in params.yaml


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
