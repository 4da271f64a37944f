"""The CLI's option lists are the library's own constants, so the two cannot drift apart."""

from __future__ import annotations

import click
import pytest

from convert.export import DEFAULT_VARIANTS, IO_TYPES, VARIANTS, parse_variants
from edge_runtime.errors import BackendError
from edge_runtime.interpreter import BACKEND_MODULES, BACKENDS, load_backend
from edge_runtime.smoothing import SMOOTHERS, make_smoother
from edgereg.commands import bench, run, train
from edgereg.commands import convert as convert_cmd
from edgereg.commands import eval as eval_cmd
from train.backbones import BACKBONES


def _option(command: click.Command, name: str) -> click.Parameter:
    return next(p for p in command.params if p.name == name)


def _choices(command: click.Command, name: str) -> tuple[str, ...]:
    t = _option(command, name).type
    assert isinstance(t, click.Choice), f"{command.name} --{name} is not a choice"
    return tuple(t.choices)


@pytest.mark.parametrize("command", [run.cli, eval_cmd.cli, bench.cli], ids=lambda c: c.name)
def test_backend_choices_are_the_interpreter_backends(command):
    assert _choices(command, "backend") == BACKENDS
    assert _option(command, "backend").default == "auto"


def test_backends_constant_is_what_load_backend_accepts():
    assert BACKENDS == ("auto", *BACKEND_MODULES)
    for name in BACKENDS:
        try:
            assert load_backend(name).name in BACKEND_MODULES
        except BackendError as e:  # a backend that is not installed here says so
            assert "not installed" in str(e), e
    with pytest.raises(BackendError, match="is not one of " + ", ".join(BACKENDS)):
        load_backend("onnx")


def test_smooth_choices_are_the_smoothers():
    assert _choices(run.cli, "smooth") == SMOOTHERS
    for kind in SMOOTHERS:
        assert make_smoother(kind) is not None


def test_backbone_choices_are_the_backbones():
    assert _choices(train.cli, "backbone") == BACKBONES
    assert _option(train.cli, "backbone").default in BACKBONES


def test_convert_variants_and_io_come_from_convert_export():
    assert _choices(convert_cmd.cli, "io_type") == IO_TYPES
    variants = _option(convert_cmd.cli, "variants")
    assert variants.default == ",".join(DEFAULT_VARIANTS)
    assert parse_variants(variants.default) == DEFAULT_VARIANTS
    for v in VARIANTS.values():
        assert f"{v.name}: {v.description}" in variants.help
        assert v.filename in convert_cmd.cli.help
