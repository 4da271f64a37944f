"""The task registry, workstation side: every task kind is one module in this package.

Each module defines a :class:`TrainTask` (labels, targets, head, loss, metrics,
augmentation, sample data, plots, defaults) and registers it when imported; its device
half is the module of the same task in ``edge_runtime/tasks``. See
``edge_runtime/tasks/__init__.py`` for the whole picture and for plugins
(``EDGEREG_TASKS``): a plugin module registers both halves.

Nothing here imports TensorFlow: the CLI builds its options from this registry.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from edge_runtime import tasks as device_tasks
from edge_runtime.errors import OptionError
from edge_runtime.tasks.base import import_task_modules

from .base import (
    AugmentPolicy,
    BaselineRule,
    BenchVariant,
    HeaderProblem,
    ImportRule,
    LabelColumns,
    SampleSet,
    TaskOption,
    TrainTask,
)

__all__ = [
    "AugmentPolicy",
    "BaselineRule",
    "BenchVariant",
    "HeaderProblem",
    "ImportRule",
    "LabelColumns",
    "SampleSet",
    "TaskOption",
    "TrainTask",
    "all_options",
    "get",
    "names",
    "owners",
    "register",
    "task_options",
    "tasks",
    "unregister",
]

_REGISTRY: dict[str, TrainTask] = {}
_loaded = False
_loading = False


def register(task: TrainTask, *, replace: bool = False) -> TrainTask:
    """Add a task kind (its device half must be registered in edge_runtime.tasks too)."""
    if not isinstance(task, TrainTask):
        raise TypeError(f"register: expected a TrainTask, got {type(task).__name__}")
    if task.name in _REGISTRY and not replace and type(_REGISTRY[task.name]) is not type(task):
        raise ValueError(f"register: a task named {task.name!r} is already registered")
    _REGISTRY[task.name] = task
    return task


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def get(name: str) -> TrainTask:
    """The task kind ``name``; OptionError listing the known ones otherwise."""
    load_all()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise OptionError(f"--task: {name!r} is not one of {', '.join(names())}") from None


def names() -> tuple[str, ...]:
    """Task names with both halves registered, in the device registry's display order."""
    load_all()
    return tuple(n for n in device_tasks.names() if n in _REGISTRY)


def tasks() -> Iterator[TrainTask]:
    for n in names():
        yield _REGISTRY[n]


def all_options(*, labels_only: bool = False) -> list[TaskOption]:
    """Every task's options, each name once (tasks may share one, e.g. ``--y-up``)."""
    seen: dict[str, TaskOption] = {}
    for t in tasks():
        for o in t.options:
            if o.labels or not labels_only:
                seen.setdefault(o.name, o)
    return list(seen.values())


def owners(option: str) -> list[str]:
    """The tasks an option belongs to."""
    return [t.name for t in tasks() if option in t.option_names()]


def task_options(
    task: TrainTask, given: Mapping[str, Any], *, labels_only: bool = False
) -> dict[str, Any]:
    """``task``'s options out of ``given``, checked and with defaults filled in.

    An option of another task is refused (OptionError naming the tasks it belongs to)
    unless it is unset (None, False, empty or its default); an unknown name is a
    TypeError (a programming error, not a user's).
    """
    known = {o.name: o for o in all_options()}
    mine = task.option_names(labels_only=labels_only)
    for k, v in given.items():
        if k in mine:
            continue
        if k not in known:
            raise TypeError(f"unknown task option {k!r} (known: {', '.join(sorted(known))})")
        o = known[k]
        if v is None or v is False or v == () or v == [] or v == o.default:
            continue
        where = " and ".join(owners(k))
        what = "" if o.name in task.option_names() else f" (this is --task {task.name})"
        if not what:  # the task has it, but only for training
            raise OptionError(f"{o.flag} shapes the model: give it to `edgereg train`, not here")
        raise OptionError(f"{o.flag} applies to --task {where} only{what}")
    return task.check_options({k: v for k, v in given.items() if k in mine})


def load_all() -> None:
    """Import every task module of this package (and the plugins) once."""
    global _loaded, _loading
    if _loaded or _loading:
        return
    _loading = True
    try:
        device_tasks.load_all()  # plugins register both halves
        import_task_modules(__name__, __path__)
        _loaded = True
    finally:
        _loading = False
