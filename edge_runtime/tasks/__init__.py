"""The task registry, device side: every task kind is one module in this package.

A task kind (``point``, ``keypoints``, ``value``, ``class``, ``angle``, ...) is defined once
on each side of the device line:

- here, ``edge_runtime/tasks/<module>.py``: what the device needs to turn the model's raw
  output into the user's answer: the spec fields the task uses and their checks, decoding
  into the user's units, the result's fields, smoothing, test-time augmentation, drawing
  and CSV columns (a :class:`DeviceTask`);
- in ``train/tasks/<module>.py``: labels, targets, head and loss, metrics, augmentation,
  sample data, plots and training defaults (a ``train.tasks.TrainTask``).

Nothing outside those two modules branches on a task's name. Adding a task kind is adding
those two files: every module of this package (and of ``train/tasks``) that defines a task
registers it when imported, and the registry imports them all on first use.

Plugins: modules named in the ``EDGEREG_TASKS`` environment variable (comma-separated
import names) and entry points of the group ``edgereg.tasks`` are imported on first use
too, so a task kind can live in its own package, on the device as on the workstation.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator

from ..errors import SpecError
from .base import DeviceTask, FrameGeometry, OutputMetadata, import_task_modules

__all__ = [
    "DeviceTask",
    "FrameGeometry",
    "OutputMetadata",
    "get",
    "names",
    "register",
    "unregister",
    "tasks",
]

#: Environment variable: extra modules (comma-separated) that register task kinds.
PLUGINS_ENV = "EDGEREG_TASKS"
ENTRY_POINT_GROUP = "edgereg.tasks"

_REGISTRY: dict[str, DeviceTask] = {}
_loaded = False
_loading = False


def register(task: DeviceTask, *, replace: bool = False) -> DeviceTask:
    """Add a task kind. A second task under the same name is refused unless ``replace``."""
    if not isinstance(task, DeviceTask):
        raise TypeError(f"register: expected a DeviceTask, got {type(task).__name__}")
    name = task.name
    if not name or not isinstance(name, str):
        raise ValueError("register: a task needs a non-empty name")
    if name in _REGISTRY and not replace and type(_REGISTRY[name]) is not type(task):
        raise ValueError(f"register: a task named {name!r} is already registered")
    _REGISTRY[name] = task
    return task


def unregister(name: str) -> None:
    """Remove a task kind (tests register toy tasks and remove them again)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> DeviceTask:
    """The task kind called ``name``; a SpecError listing the known ones otherwise."""
    load_all()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise SpecError(f"task: {name!r} is not one of {', '.join(names())}") from None


def names() -> tuple[str, ...]:
    """Every registered task name, in display order."""
    load_all()
    return tuple(t.name for t in sorted(_REGISTRY.values(), key=lambda t: (t.order, t.name)))


def tasks() -> Iterator[DeviceTask]:
    """Every registered task kind, in display order."""
    for n in names():
        yield _REGISTRY[n]


def load_all() -> None:
    """Import every task module of this package and every plugin (once)."""
    global _loaded, _loading
    if _loaded or _loading:
        return
    _loading = True
    try:
        import_task_modules(__name__, __path__)
        load_plugins()
        _loaded = True
    finally:
        _loading = False


def load_plugins() -> None:
    """Import the modules named in ``EDGEREG_TASKS`` and the ``edgereg.tasks`` entry points."""
    for mod in (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",")):
        if mod:
            try:
                importlib.import_module(mod)
            except ImportError as e:
                raise SpecError(
                    f"{PLUGINS_ENV}: cannot import task module {mod!r} ({e}); fix the "
                    "variable or install the module"
                ) from None
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()
