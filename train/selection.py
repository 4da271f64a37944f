"""Which epoch's weights a run keeps: a rule that does not fool itself on a small split.

The training loop (``train/training.py``) validates every epoch on the weights averaged
by the optimizer (an exponential moving average, see :func:`ema_momentum`) and asks this
module whether the epoch is the new best. The rule (measured in docs/training.md):

1. **The primary metric decides; the validation loss breaks its ties.** With 28
   validation images an accuracy can only take 29 values, and a later epoch that reaches
   the same accuracy with a lower loss is the more confident, better-trained model; the
   first epoch to hit 1.0 is not.
2. **Phases compete separately.** When fine-tuning follows the head warm-up, the best
   warm-up epoch is put aside when fine-tuning starts, and it is kept at the end only if
   it beats the best fine-tuned epoch by a real margin (:func:`real_margin`): a warm-up
   epoch that merely ties, or wins by one image, is never the kept model.
3. **Averaged weights.** Every candidate is the moving average of the late steps, not the
   last step's weights, so the epoch-to-epoch swing of a small training set does not
   hand the selection a lucky outlier.

Pure Python: no TensorFlow, so it is tested cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: The moving average spans about this many epochs of optimizer steps.
EMA_EPOCHS = 2.0
#: Bounds of the EMA momentum (0.9: a 10-step horizon; 0.999: 1,000 steps).
EMA_MOMENTUM_RANGE = (0.9, 0.999)
#: A lower-is-better metric of a warm-up epoch must be this much lower (relative) to be
#: kept over the best fine-tuned epoch.
WARMUP_MARGIN_REL = 0.05
#: A higher-is-better (fraction) metric of a warm-up epoch must be this much higher, and
#: at least two validation images' worth, to be kept over the best fine-tuned epoch.
WARMUP_MARGIN_ABS = 0.02
#: Metric values closer than this (relative) are a tie, broken by the validation loss.
TIE_REL = 1e-9
#: Below this many validation images the summary says how coarse the figure is.
SMALL_VALIDATION = 300


def ema_momentum(steps_per_epoch: int, epochs: float = EMA_EPOCHS) -> float:
    """The EMA momentum whose horizon (1 / (1 - momentum) steps) is ``epochs`` epochs."""
    horizon = max(1.0, epochs * max(1, int(steps_per_epoch)))
    lo, hi = EMA_MOMENTUM_RANGE
    return float(min(hi, max(lo, 1.0 - 1.0 / horizon)))


@dataclass(frozen=True)
class Candidate:
    """One epoch's standing: its primary metric and validation loss."""

    epoch: int
    metric: float
    loss: float
    phase: str = ""
    file: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Candidate | None:
        return None if not d else cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "metric": self.metric,
            "loss": self.loss,
            "phase": self.phase,
            "file": self.file,
        }


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(float(x))


def is_better(new: Candidate, best: Candidate | None, higher: bool) -> bool:
    """The primary metric decides; within a tie the lower validation loss wins."""
    if not _finite(new.metric):
        return False
    if best is None or not _finite(best.metric):
        return True
    tol = TIE_REL * max(abs(new.metric), abs(best.metric), 1e-12)
    diff = (new.metric - best.metric) if higher else (best.metric - new.metric)
    if diff > tol:
        return True
    if diff < -tol:
        return False
    return _finite(new.loss) and (not _finite(best.loss) or new.loss < best.loss)


def real_margin(best: Candidate, higher: bool, n_val: int) -> float:
    """How much better than ``best`` (a fine-tuned epoch) a warm-up epoch must be."""
    if higher:
        return max(WARMUP_MARGIN_ABS, 2.0 / max(1, n_val))
    return WARMUP_MARGIN_REL * abs(best.metric)


def final_choice(
    warmup: Candidate | None, finetune: Candidate | None, higher: bool, n_val: int
) -> tuple[Candidate | None, str]:
    """The kept epoch between the best warm-up and the best fine-tuned one, and why."""
    if finetune is None or not _finite(finetune.metric):
        return warmup, "no fine-tuned epoch had a validation metric" if warmup else ""
    if warmup is None or not _finite(warmup.metric):
        return finetune, ""
    margin = real_margin(finetune, higher, n_val)
    gain = (warmup.metric - finetune.metric) if higher else (finetune.metric - warmup.metric)
    if gain > margin:
        return warmup, (
            f"kept warm-up epoch {warmup.epoch}: better than the best fine-tuned epoch "
            f"{finetune.epoch} by {gain:.4g} (more than the {margin:.4g} margin)"
        )
    if gain < 0:
        why = f"was worse ({warmup.metric:.4g} vs {finetune.metric:.4g})"
    elif gain == 0:
        why = "tied"
    else:
        why = f"was better by only {gain:.4g} (margin {margin:.4g})"
    return finetune, (
        f"kept fine-tuned epoch {finetune.epoch}; the best warm-up epoch {warmup.epoch} {why}"
    )


def validation_resolution_note(n_val: int, key: str, higher: bool) -> str | None:
    """A plain warning about how coarse a small validation split's figure is, or None."""
    if n_val >= SMALL_VALIDATION:
        return None
    per_image = 100.0 / max(1, n_val)
    step = (
        f"{key} moves in steps of {per_image:.1f} points"
        if higher
        else f"each image is {per_image:.1f} % of the average behind {key}"
    )
    return (
        f"note: only {n_val} validation images ({step}), and the kept epoch was chosen on "
        "these same images: expect new images to score somewhat worse. For a figure you "
        "can trust, run k-fold cross-validation (--folds 5): it reports the mean and "
        "spread over the folds, then trains the final model on all the images."
    )
