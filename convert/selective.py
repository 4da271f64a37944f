"""Selective quantization: keep the fewest layers in float until int8 keeps its precision.

When the full-integer model loses more than the target on the validation split (the
task metric, against the Keras model), TFLite's ``QuantizationDebugger`` measures every
quantized layer's error against its float twin on calibration images, and the layers are
kept in float (its ``denylisted_nodes``) in two orders, taking the first prefix that
meets the target:

- ``debugger``: the layers with the largest error per quantization step
  (``sqrt(mean squared error) / scale``: ~0.29 is ideal rounding; more means the layer's
  int8 grid is too coarse for what flows through it);
- ``output path``: from the output backwards (the head, then the last blocks), i.e.
  raising the precision of what produces the number.

Prefixes of 1, 2, 4, 8, ... layers are tried; each candidate is rebuilt from the same
calibration (no recalibration: a few seconds) and scored through the device runtime on
the validation split. A candidate counts as within the target only when its change plus
one standard error (a paired bootstrap over the validation images) is: on a small split
the lowest of a dozen noisy figures can flatter the candidate that drew it (docs/
conversion.md has the point bench's case). The winner is the candidate within the target with the
fewest float layers (then the smaller loss). It becomes the ``int8_mixed`` variant: float
input/output, the named layers in float, everything else int8. It runs on a CPU only;
the Edge TPU keeps the fully-integer ``int8`` file (it cannot run float ops).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .report import pct_se

#: int8 may cost at most this much of the task metric (relative) before convert warns
#: loudly and builds ``int8_mixed`` (``--max-drop`` sets another target).
INT8_TARGET = 0.05
#: Prefix sizes tried, in float layers.
PREFIXES = (1, 2, 4, 8, 16, 32, 64, 128)
#: Calibration images the debugger runs to measure per-layer error.
DEBUG_IMAGES = 64


@dataclass
class LayerError:
    """One quantized layer's error against float, from the QuantizationDebugger."""

    name: str  # the op's output tensor name: what denylisted_nodes takes
    op: str
    rmse_over_scale: float
    depth: int  # execution order


@dataclass
class Candidate:
    order: str
    denylisted: list[str]
    relative_drop: float
    value: float
    #: standard error of ``relative_drop`` over the validation images
    se: float = float("nan")

    def within(self, target: float) -> bool:
        """Within ``target`` even one standard error up (the split's own noise)."""
        return within(self.relative_drop, self.se, target)


def within(relative_drop: float, se: float, target: float) -> bool:
    """A change within ``target`` even one standard error up (an unknown error counts 0)."""
    return relative_drop + (se if math.isfinite(se) else 0.0) <= target


@dataclass
class SelectiveResult:
    """What the search found: the kept model and every candidate tried."""

    target: float
    layers: list[LayerError]
    tried: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None
    model: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        worst = sorted(self.layers, key=lambda e: -e.rmse_over_scale)[:10]
        chosen = dict(vars(self.chosen)) if self.chosen else None
        if chosen:
            chosen["layers"] = [short_name(n) for n in self.chosen.denylisted]
        return {
            "target": self.target,
            "layers_measured": len(self.layers),
            "worst_layers": [{**vars(e), "layer": short_name(e.name)} for e in worst],
            "tried": [
                {
                    "order": c.order,
                    "float_layers": len(c.denylisted),
                    "relative_drop": c.relative_drop,
                    "se": c.se,
                    "value": c.value,
                }
                for c in self.tried
            ],  # fmt: skip
            "chosen": chosen,
            "within_target": bool(self.chosen and self.chosen.within(self.target)),
        }


def mixed_settings(conv: Any, ctx: Any) -> None:
    """Converter settings of ``int8_mixed``: int8 calibration, float ops allowed."""
    import tensorflow as tf

    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = ctx.representative
    conv.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS,
    ]


def short_name(tensor_name: str) -> str:
    """The Keras layer of a TFLite tensor name (``.../features_16_conv_2_1/...;...``)."""
    first = tensor_name.split(";")[0]
    parts = [p for p in first.split("/")[:-1] if p and p not in ("batchnorm",)]
    return parts[-1] if parts else first


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The debugger prints to fd 1 and 2 and warns about tf.lite.Interpreter: silence it."""
    from edge_runtime.log import quiet_native, verbosity

    if verbosity() >= 1:
        yield
        return
    with warnings.catch_warnings(), quiet_native():
        warnings.simplefilter("ignore")
        try:
            saved = os.dup(1)
        except OSError:
            yield
            return
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            try:
                yield
            finally:
                os.dup2(saved, 1)
                os.close(saved)


def make_debugger(saved_model_dir: str | Path, ctx: Any, images: np.ndarray) -> Any:
    """A QuantizationDebugger on the run's SavedModel, calibrated like ``int8``."""
    import tensorflow as tf

    from convert.quantize import representative_dataset

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    mixed_settings(conv, ctx)
    with _quiet():
        return tf.lite.experimental.QuantizationDebugger(
            converter=conv, debug_dataset=representative_dataset(images[:DEBUG_IMAGES])
        )


def layer_errors(debugger: Any) -> list[LayerError]:
    """Run the debugger; each quantized layer's error per quantization step."""
    with _quiet():
        debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    out = []
    for i, row in enumerate(csv.DictReader(io.StringIO(buf.getvalue()))):
        scale = float(row["scale"] or 0)
        mse = float(row["mean_squared_error"] or 0)
        ratio = math.sqrt(mse) / scale if scale > 0 else 0.0
        out.append(LayerError(row["tensor_name"], row["op_name"], ratio, i))
    return out


def orders(layers: list[LayerError]) -> dict[str, list[str]]:
    """The two orders layers are kept in float: worst error first, and output path first."""
    worst = sorted(layers, key=lambda e: (-e.rmse_over_scale, -e.depth))
    back = sorted(layers, key=lambda e: -e.depth)
    return {"debugger": [e.name for e in worst], "output path": [e.name for e in back]}


def denylisted_model(debugger: Any, names: list[str]) -> bytes:
    """The model with ``names`` kept in float (from the same calibration)."""
    import tensorflow as tf

    with _quiet():  # the options setter re-quantizes (and prints) too
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=names)
        return bytes(debugger.get_nondebug_quantized_model())


def search(
    debugger: Any,
    layers: list[LayerError],
    score: Callable[[bytes], tuple[float, float, float]],
    target: float,
    say: Callable[[str], None] = lambda s: None,
) -> SelectiveResult:
    """Try float prefixes of each order; keep the fewest layers within ``target``.

    ``score(model) -> (relative_drop, metric value, standard error of the drop)`` runs
    the validation split; within the target means :meth:`Candidate.within`.
    """
    res = SelectiveResult(target=target, layers=layers)
    models: dict[tuple[str, ...], bytes] = {}
    for name, order in orders(layers).items():
        for k in _prefixes(len(order)):
            names = order[:k]
            key = tuple(sorted(names))
            if key not in models:
                try:
                    models[key] = denylisted_model(debugger, names)
                except ValueError as e:  # the converter refused this set: the order ends
                    say(f"  int8_mixed, {name} order, {k} float layer(s): not built ({e})")
                    break
            c = Candidate(name, names, *score(models[key]))
            res.tried.append(c)
            say(
                f"  int8_mixed, {name} order, {k} float layer(s): "
                f"{pct_se(c.relative_drop, c.se)} vs float"
            )
            if c.within(target):
                break
    ok = [c for c in res.tried if c.within(target)]
    if ok:  # the fewest float layers, then the smaller loss
        res.chosen = min(ok, key=lambda c: (len(c.denylisted), c.relative_drop))
    elif res.tried:  # none within the target: the smallest loss
        res.chosen = min(res.tried, key=lambda c: (c.relative_drop, len(c.denylisted)))
    if res.chosen is not None:
        res.model = models[tuple(sorted(res.chosen.denylisted))]
    return res


def _prefixes(n: int) -> Iterator[int]:
    """1, 2, 4, ... float layers, up to all but one: with every layer in float the model
    is fp32 (and the debugger cannot build it: "check if the quantized model is in debug
    mode")."""
    top = n - 1
    for k in PREFIXES:
        if k >= top:
            if top > 0:
                yield top
            return
        yield k


def scorer(
    spec: Any, val: Any, keras_value: float, higher: bool, key: str, keras_raw: np.ndarray
) -> Callable[[bytes], tuple[float, float, float]]:
    """``score(model)``: the relative drop of the task metric through the device runtime,
    the metric, and the drop's standard error (paired with ``keras_raw`` on ``val``)."""
    from convert.verify import compute_metrics, device_raw, relative_drop, relative_drop_se
    from edge_runtime.metadata import embed_spec

    def score(model: bytes) -> tuple[float, float, float]:
        data = embed_spec(model, spec.with_extra(export={"variant": "int8_mixed", "io": "float"}))
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "candidate.tflite"
            p.write_bytes(data)
            with _quiet():
                raw = device_raw(p, val.images)
        m = compute_metrics(
            spec, val.targets, spec.decode_output(raw), val.sizes, val.train_targets
        )
        value = float(m[key])
        se = relative_drop_se(spec, val, keras_raw, raw)
        return relative_drop(keras_value, value, higher), value, se

    return score
