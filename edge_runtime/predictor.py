"""The device predictor: a camera frame in, a typed :class:`Result` out, no TensorFlow.

    with Predictor.create_from_model_path("model.tflite", color_order="BGR") as p:
        result = p.predict(frame)          # frame: HxWx3 uint8 as OpenCV gives it (BGR)
        print(result.points_px, result.value, result.label)

Per frame: ROI crop -> resize to the input size (the same resize as training) -> the
model's colour order -> cast (float input) or quantize with the input tensor's own scale
and zero point (uint8 camera bytes go straight in when the input is uint8 with scale 1,
zero point 0) -> invoke -> dequantize with the output's own parameters -> decode with the
spec -> points normalized to the FULL frame and in its pixels, value in units, class
label and probabilities.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelFileError, SpecError, TtaError
from .interpreter import dequantize, make_interpreter, quant_params, quantize
from .metadata import read_model_bytes, spec_from_model_bytes
from .postprocess import Result, decode_result
from .preprocess import (
    Roi,
    apply_transform,
    as_uint8_frame,
    crop_roi,
    parse_roi,
    resize_to_input,
    swap_rb,
)
from .smoothing import make_smoother
from .spec import MAX_SPEC_BYTES, ModelSpec

__all__ = ["Predictor", "PredictorOptions", "Result", "check_tta", "load_spec_file"]


def check_tta(spec: ModelSpec, where: str = "the model") -> list[str]:
    """The test-time transforms of ``spec`` for ``--tta``, or :class:`TtaError` when there
    is only the frame as it is (``--tta`` would change nothing). One message for ``run``,
    ``eval`` and ``bench``."""
    names = spec.task_kind.tta_transforms(spec)
    if len(names) > 1:
        return names
    raise TtaError(
        f"--tta would do nothing: {where}'s spec declares no invariances usable at test "
        f"time ({list(spec.invariances) or 'none'} for a {spec.task} task), so each frame "
        "would run once, exactly as without --tta. Train with the invariances your images "
        "really have (e.g. `edgereg train ... --invariant rot90,flip` when turning or "
        "mirroring the picture does not change the answer; docs/training.md), then --tta "
        "averages over them; or drop --tta."
    )


@dataclass
class PredictorOptions:
    """How to run a model. ``spec`` supplies the spec for a .tflite that has none embedded
    (it may also be a path to a spec.json); when given it takes precedence over the embedded
    one, and either way it is checked against the model's tensors."""

    model_path: str | Path
    num_threads: int | None = None
    backend: str = "auto"
    device: str = "cpu"
    color_order: str = "BGR"
    roi: tuple[int, int, int, int] | None = None
    smoothing: str | None = None
    tta: bool = False
    spec: ModelSpec | str | Path | None = None
    #: keyword arguments for the smoothing filter (e.g. ``tau_ms``, ``min_cutoff``, ``beta``)
    smoothing_params: dict[str, float] = field(default_factory=dict)


def load_spec_file(path: str | Path) -> ModelSpec:
    """A spec.json file -> ModelSpec, with errors naming the file."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(
                f"{p}: {size} bytes is larger than the {MAX_SPEC_BYTES} a spec may have"
            )
        data = p.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{p}: no such spec file") from None
    except OSError as e:
        raise SpecError(f"{p}: cannot read the spec ({e.strerror})") from None
    try:
        return ModelSpec.from_json(data)
    except SpecError as e:
        raise SpecError(f"{p}: {e}") from None


class Predictor:
    """Runs one model on frames. A context manager; not thread-safe (one per thread)."""

    def __init__(self, options: PredictorOptions) -> None:
        self.options = options
        self.model_path = Path(options.model_path)
        where = str(self.model_path)
        self.model_bytes = read_model_bytes(self.model_path)
        embedded = spec_from_model_bytes(self.model_bytes, where)
        given = options.spec
        if isinstance(given, (str, Path)):
            given = load_spec_file(given)
        spec = given or embedded
        if spec is None:
            raise SpecError(
                f"{where}: the model carries no edgereg spec; pass one with --spec spec.json "
                "(the spec.json of its training run) or re-export it with `edgereg convert`"
            )
        self.spec: ModelSpec = spec
        order = (options.color_order or "BGR").upper()
        if order not in ("BGR", "RGB"):
            raise SpecError(f"color_order: {options.color_order!r} is not one of BGR, RGB")
        self.color_order = order
        self.roi: Roi | None = parse_roi(options.roi) if options.roi is not None else None
        self.interpreter, self.backend = make_interpreter(
            self.model_bytes,
            where=where,
            backend=options.backend,
            num_threads=options.num_threads,
            device=options.device,
        )
        try:
            self._check_tensors(where)
        except UnicodeDecodeError:
            raise ModelFileError(
                f"{where}: corrupt TFLite model (a tensor name is not text)"
            ) from None
        self._swap = self.color_order != spec.color_order
        h, w = spec.input_height, spec.input_width
        self._rgb = np.empty((h, w, 3), np.uint8)  # colour-swap buffer, reused every frame
        self.task = spec.task_kind
        name = self.model_path.name
        self._transforms = check_tta(spec, name) if options.tta else ["identity"]
        self.smoother = make_smoother(options.smoothing, **options.smoothing_params)
        self._closed = False

    # ----------------------------------------------------------------- construction
    @classmethod
    def create_from_options(cls, options: PredictorOptions) -> Predictor:
        return cls(options)

    @classmethod
    def create_from_model_path(cls, path: str | Path, **kw: Any) -> Predictor:
        return cls(PredictorOptions(model_path=path, **kw))

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the interpreter (and any Edge TPU delegate)."""
        self._closed = True
        self._in_view = None
        self.interpreter = None

    # ----------------------------------------------------------------- checks
    def _check_tensors(self, where: str) -> None:
        spec, it = self.spec, self.interpreter
        ins, outs = it.get_input_details(), it.get_output_details()
        if len(ins) != 1 or len(outs) != 1:
            raise SpecError(
                f"{where}: an edgereg model has one input and one output tensor, this one has "
                f"{len(ins)} and {len(outs)}; export it with `edgereg convert`"
            )
        shape = tuple(int(s) for s in ins[0]["shape"])
        if len(shape) != 4 or shape[1:] != (spec.input_height, spec.input_width, 3):
            raise SpecError(
                f"{where}: the spec says input {spec.input_height}x{spec.input_width}x3 but the "
                f"model's input tensor is {list(shape)}; the spec belongs to another model: "
                "pass the right --spec or re-export the model"
            )
        if shape[0] != 1:
            raise SpecError(f"{where}: input batch must be 1 (static), got {shape[0]}")
        n_out = int(np.prod(outs[0]["shape"]))
        if n_out != spec.output_size:
            raise SpecError(
                f"{where}: the spec ({spec.task}) expects {spec.output_size} output values but "
                f"the model's output tensor has {n_out} ({list(outs[0]['shape'])}); the spec "
                "belongs to another model: pass the right --spec or re-export the model"
            )
        d = ins[0]
        self._in_index = d["index"]
        self.input_dtype = np.dtype(d["dtype"])
        self.input_scale, self.input_zero_point = quant_params(d)
        if self.input_dtype not in (np.float32, np.uint8, np.int8):
            raise ModelFileError(f"{where}: input type {self.input_dtype} is not supported")
        lo, hi = spec.input_range
        self._affine = None if (lo, hi) == (0.0, 255.0) else (lo, (hi - lo) / 255.0)
        s, zp = self.input_scale, self.input_zero_point
        if self.input_dtype == np.float32:
            self._mode = "float" if self._affine is None else "quant"
        elif self._affine is None and s == 1.0 and zp == 0 and self.input_dtype == np.uint8:
            self._mode = "bytes"  # camera bytes straight in
        elif self._affine is None and s == 1.0 and zp == -128 and self.input_dtype == np.int8:
            self._mode = "xor"  # uint8 v -> int8 v - 128 is a flip of the top bit
        else:
            self._mode = "quant"
        o = outs[0]
        self._out_index = o["index"]
        self.output_scale, self.output_zero_point = quant_params(o)
        self._in_view = it.tensor(self._in_index)

    # ----------------------------------------------------------------- hot path
    def _set_input(self, img: np.ndarray) -> None:
        view = self._in_view()[0]  # the input tensor's own memory: no per-frame allocation
        if self._mode == "float":
            np.copyto(view, img, casting="unsafe")
        elif self._mode == "bytes":
            np.copyto(view, img)
        elif self._mode == "xor":
            np.bitwise_xor(img, np.uint8(128), out=view.view(np.uint8))
        else:
            x = img.astype(np.float32)
            if self._affine is not None:
                x = self._affine[0] + x * np.float32(self._affine[1])
            view[...] = quantize(x, self.input_scale, self.input_zero_point, self.input_dtype)
        del view

    def _invoke(self, img: np.ndarray) -> tuple[np.ndarray, float]:
        """One invoke on a model-sized RGB/BGR-correct uint8 image -> (raw output, ms)."""
        self._set_input(img)
        t = time.perf_counter()
        try:
            self.interpreter.invoke()
        except (RuntimeError, ValueError) as e:
            detail = " ".join(str(e).split())[:300]
            raise ModelFileError(f"{self.model_path}: the model failed to run ({detail})") from None
        ms = (time.perf_counter() - t) * 1000.0
        q = self.interpreter.get_tensor(self._out_index)
        return dequantize(q, self.output_scale, self.output_zero_point).reshape(-1), ms

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        """Frame -> the model-sized uint8 image in the model's colour order."""
        spec = self.spec
        img = crop_roi(as_uint8_frame(frame), self.roi)
        img = resize_to_input(img, spec.input_height, spec.input_width, spec.interpolation)
        if self._swap:
            img = swap_rb(img, self._rgb)
        return img

    def predict(self, frame: np.ndarray, timestamp_ms: float | None = None) -> Result:
        """One frame (HxWx3 uint8 in ``options.color_order``) -> Result."""
        res = self._predict(frame, timestamp_ms)
        if self.smoother is not None:
            self._smooth(res)
        return res

    def _predict(self, frame: np.ndarray, timestamp_ms: float | None) -> Result:
        if self._closed:
            raise RuntimeError("this Predictor is closed")
        t0 = time.perf_counter()
        frame = as_uint8_frame(frame)
        fh, fw = frame.shape[:2]
        img = self.preprocess(frame)
        spec = self.spec
        if len(self._transforms) == 1:
            raw, invoke_ms = self._invoke(img)
            res = decode_result(spec, raw, fw, fh, self.roi)
        else:
            invoke_ms = 0.0
            raws, decoded = [], []
            for name in self._transforms:
                r, ms = self._invoke(apply_transform(img, name))
                invoke_ms += ms
                raws.append(r)
                decoded.append(self.task.tta_invert(spec, spec.decode_output(r), name))
            raw = np.mean(raws, axis=0, dtype=np.float32)
            res = decode_result(spec, raw, fw, fh, self.roi, self.task.tta_merge(spec, decoded))
        res.invoke_ms = invoke_ms
        res.timestamp_ms = timestamp_ms
        res.total_ms = (time.perf_counter() - t0) * 1000.0
        return res

    def _smooth(self, res: Result) -> None:
        t = res.timestamp_ms if res.timestamp_ms is not None else time.monotonic() * 1000.0
        f = self.smoother
        assert f is not None
        vec = self.task.smoothing_vector(self.spec, res)
        self.task.apply_smoothed(self.spec, res, f(vec, t))

    def reset_smoothing(self) -> None:
        """Forget smoothing state (e.g. after the camera was reopened)."""
        if self.smoother is not None:
            self.smoother.reset()

    def predict_batch(self, frames: Iterable[np.ndarray]) -> list[Result]:
        """Independent frames (e.g. an eval set) -> Results; never smoothed."""
        return [self._predict(f, None) for f in frames]

    # ----------------------------------------------------------------- facts
    @property
    def model_size(self) -> int:
        """Size of the model file in bytes."""
        return len(self.model_bytes)

    def __repr__(self) -> str:
        return (
            f"Predictor({str(self.model_path)!r}, task={self.spec.task}, "
            f"input={self.spec.input_height}x{self.spec.input_width} {self.input_dtype}, "
            f"backend={self.backend.name} {self.backend.version})"
        )
