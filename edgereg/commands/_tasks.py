"""``--task`` and every task's own options, built from the task registries.

The choices and help of ``--task`` come from the device-side registry
(``edge_runtime/tasks``); the task-specific options (``--y-up``, ``--range``,
``--flip-pairs``, ``--zero`` ...) from the workstation-side one (``train/tasks``). Neither
imports TensorFlow, so ``--help`` stays fast. A new task kind shows up here without an
edit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from edge_runtime import tasks as device_tasks


def task_choice() -> click.Choice:
    """Every registered task kind."""
    return click.Choice(list(device_tasks.names()))


def task_help(lead: str = "") -> str:
    """``lead`` then one ``name: what it answers`` per task."""
    parts = [f"{t.name}: {t.summary}" for t in device_tasks.tasks()]
    return (lead + " " if lead else "") + "; ".join(parts) + "."


def sample_task_choice() -> click.Choice:
    """Task kinds that have a sample-data generator."""
    from train import tasks

    return click.Choice([t.name for t in tasks.tasks() if t.samples() is not None])


def sample_task_help() -> str:
    from train import tasks

    parts = [f"{t.name}: {s.description}" for t in tasks.tasks() if (s := t.samples())]
    return "Which user story: " + "; ".join(parts) + "."


def task_options(*, labels_only: bool, tristate: bool = False) -> Callable[[Any], Any]:
    """A decorator adding every task's options to a click command.

    ``labels_only``: only the options that say how labels are read (``data check``,
    ``eval``). ``tristate``: boolean flags get their ``off`` twin and default to None
    ("use the run's own setting"), and no option has a default.
    """
    from train import tasks

    def decorate(f: Any) -> Any:
        for o in reversed(tasks.all_options(labels_only=labels_only)):
            f = _option(o, tasks.owners(o.name), tristate)(f)
        return f

    return decorate


def _option(o: Any, owners: list[str], tristate: bool) -> Callable[[Any], Any]:
    where = f" [--task {', '.join(owners)}]"
    if o.is_flag and tristate and o.off_flag:
        return click.option(f"{o.flag}/{o.off_flag}", o.name, default=None, help=o.help + where)
    if o.is_flag:
        return click.option(o.flag, o.name, is_flag=True, default=o.default, help=o.help + where)
    kind: Any = click.Choice(list(o.choices)) if o.choices else o.type
    default = None if tristate or o.nargs > 1 else o.default
    show = default not in (None, [], ())
    return click.option(
        o.flag,
        o.name,
        type=kind,
        nargs=o.nargs,
        default=default,
        metavar=o.metavar,
        show_default=show,
        help=o.help + where,
    )


def task_option_names(*, labels_only: bool) -> list[str]:
    from train import tasks

    return [o.name for o in tasks.all_options(labels_only=labels_only)]


def given_task_options(kw: dict[str, Any], *, labels_only: bool) -> dict[str, Any]:
    """Take every task option out of a command's keyword arguments; keep the ones the user
    gave (an option left at its default is not "given": another task's default must not
    count as the user asking for it)."""
    ctx = click.get_current_context()
    default = click.core.ParameterSource.DEFAULT
    out = {}
    for n in task_option_names(labels_only=labels_only):
        if n in kw:
            v = kw.pop(n)
            if ctx.get_parameter_source(n) != default:
                out[n] = v
    return out


def _sample_options() -> list[tuple[Any, list[str]]]:
    """Every sample generator's own options, each name once, with the tasks it belongs to."""
    from train import tasks

    seen: dict[str, tuple[Any, list[str]]] = {}
    for t in tasks.tasks():
        s = t.samples()
        for o in s.options if s is not None else ():
            seen.setdefault(o.name, (o, []))[1].append(t.name)
    return list(seen.values())


def sample_options() -> Callable[[Any], Any]:
    """A decorator adding every task's sample options (``SampleSet.options``) to
    ``edgereg samples make``."""

    def decorate(f: Any) -> Any:
        for o, owners in reversed(_sample_options()):
            f = _option(o, owners, tristate=False)(f)
        return f

    return decorate


def given_sample_options(kw: dict[str, Any]) -> dict[str, Any]:
    """Take the sample options out of ``kw``; keep the ones the user gave."""
    ctx = click.get_current_context()
    default = click.core.ParameterSource.DEFAULT
    out = {}
    for o, _ in _sample_options():
        if o.name in kw:
            v = kw.pop(o.name)
            if ctx.get_parameter_source(o.name) != default:
                out[o.name] = v
    return out
