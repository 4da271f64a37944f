"""The allowed range of every numeric training setting, in one place.

``edgereg train`` builds its click ranges from :data:`LIMITS` (so ``--lr -1`` is a usage
error naming the range, exit 2), and :func:`train.training.train` checks library callers
with :func:`check_numbers` against the same table. No imports beyond the standard
library and click (``edgereg train --help`` imports this).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge_runtime.errors import OptionError


@dataclass(frozen=True)
class Limit:
    """``lo``..``hi`` (None: unbounded); ``*_open`` excludes the end itself."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def text(self) -> str:
        """The range as a user reads it: ``0 < x <= 1``, ``x >= 1``."""
        parts = []
        if self.lo is not None:
            parts.append(f"{self.lo:g} {'<' if self.lo_open else '<='} ")
        parts.append("x")
        if self.hi is not None:
            parts.append(f" {'<' if self.hi_open else '<='} {self.hi:g}")
        return "".join(parts)

    def holds(self, v: float) -> bool:
        if not math.isfinite(v):
            return False
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return False
        return not (self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)))

    def click_type(self) -> Any:
        """The click parameter type enforcing this range (its message names the range)."""
        import click

        if self.integer:
            return click.IntRange(
                None if self.lo is None else int(self.lo),
                None if self.hi is None else int(self.hi),
                min_open=self.lo_open,
                max_open=self.hi_open,
            )
        return click.FloatRange(self.lo, self.hi, min_open=self.lo_open, max_open=self.hi_open)


#: TrainConfig field -> its range. Learning rates above 1 only diverge with AdamW; a
#: seed must fit numpy's generators (non-negative, 32 bits here for portability).
LIMITS: dict[str, Limit] = {
    "val_fraction": Limit(0.0, 1.0, hi_open=True),
    "alpha": Limit(0.1, 2.0),
    "lr": Limit(0.0, 1.0, lo_open=True),
    "fine_tune_lr": Limit(0.0, 1.0, lo_open=True),
    "weight_decay": Limit(0.0, 1.0),
    "dropout": Limit(0.0, 1.0, hi_open=True),
    "max_minutes": Limit(0.0, None, lo_open=True),
    "epochs": Limit(1, 100_000, integer=True),
    "warmup_epochs": Limit(1, 100_000, integer=True),
    "batch_size": Limit(1, 4096, integer=True),
    "fine_tune_blocks": Limit(0, 1000, integer=True),
    "patience": Limit(1, 100_000, integer=True),
    "seed": Limit(0, 2**32 - 1, integer=True),
    "sanity_steps": Limit(1, 1_000_000, integer=True),
    "max_steps": Limit(1, 100_000_000, integer=True),
}
#: Model input sides in pixels (MobileNet needs at least 32; larger is never a small model).
INPUT_SIDE = Limit(32, 1024, integer=True)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_numbers(opts: Mapping[str, Any]) -> None:
    """OptionError (exit 2) naming the option and its range for the first value outside it."""
    for name, limit in LIMITS.items():
        v = opts.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise OptionError(f"{flag(name)}: {v!r} is not a number")
        if limit.integer and v != int(v):
            raise OptionError(f"{flag(name)}: {v!r} is not a whole number")
        if not limit.holds(float(v)):
            raise OptionError(f"{flag(name)}: {v!r} is not in the range {limit.text()}")
    size = opts.get("input_size")
    if size is not None:
        sides = size if isinstance(size, (list, tuple)) else [size]
        for side in sides:
            if not (isinstance(side, int) and INPUT_SIDE.holds(side)):
                raise OptionError(
                    f"--input-size: {side!r} is not in the range {INPUT_SIDE.text()} pixels"
                )
