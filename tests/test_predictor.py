"""The device Predictor on real converted models (LiteRT), against the Keras models' own output."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from models import keras_model_for, make_spec, make_tflite, spec_for

from edge_runtime.errors import ImageError, ModelFileError, SpecError
from edge_runtime.predictor import Predictor, PredictorOptions
from edge_runtime.preprocess import resize_to_input
from edge_runtime.spec import ModelSpec
from edge_runtime.tasks._coordinates import invert_transform

TASKS = ("point", "keypoints", "value", "class")
VARIANTS = (("fp32", "float"), ("int8", "uint8"), ("int8", "int8"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def models(model_dir):
    """(task, variant, io) -> path, built lazily and shared by the module's tests."""
    cache: dict = {}

    def get(task, variant="fp32", io="float", **kw):
        key = (task, variant, io, tuple(sorted(kw.items())))
        if key not in cache:
            sub = model_dir / f"m{len(cache)}"
            cache[key] = make_tflite(sub, task, variant, io, **kw)
        return cache[key]

    return get


def _frame(h=72, w=96, seed=0) -> np.ndarray:
    """A smooth-ish BGR frame (gradients + blobs) so outputs depend on content."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    f = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], axis=2)
    for _ in range(3):
        cy, cx = rng.integers(0, h - 10), rng.integers(0, w - 10)
        f[cy : cy + 10, cx : cx + 10] = rng.integers(0, 256, 3)
    return f.astype(np.uint8)


def _keras_reference(path, frame_bgr, roi=None):
    """What the Keras model says on the same frame, preprocessed independently of Predictor."""
    spec = spec_for(path)
    img = (
        frame_bgr if roi is None else frame_bgr[roi[1] : roi[1] + roi[3], roi[0] : roi[0] + roi[2]]
    )
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    x = resize_to_input(rgb, spec.input_height, spec.input_width, spec.interpolation)
    raw = np.asarray(keras_model_for(path)(x[None].astype(np.float32))).reshape(-1)
    return spec, raw


@pytest.mark.parametrize("variant,io", VARIANTS)
@pytest.mark.parametrize("task", TASKS)
def test_every_task_decodes_like_the_keras_model(models, task, variant, io):
    path = models(task, variant, io)
    frame = _frame(seed=TASKS.index(task))
    spec, ref = _keras_reference(path, frame)
    tol = 1e-4 if variant == "fp32" else 0.03  # int8: a few of 256 output levels
    with Predictor.create_from_model_path(path) as p:  # default colour order: BGR
        res = p.predict(frame, timestamp_ms=123.0)
    assert res.task == task and res.raw.shape == (spec.output_size,)
    np.testing.assert_allclose(res.raw, ref, atol=tol)
    fh, fw = frame.shape[:2]
    if task in ("point", "keypoints"):
        want = spec.decode_output(ref)
        assert res.points.shape == (spec.num_keypoints, 2)
        np.testing.assert_allclose(res.points, want, atol=tol)
        np.testing.assert_allclose(res.points_px, want * [fw, fh], atol=tol * fw)
        assert set(res.outputs) == {"points", "points_px", "inside"}
    elif task == "value":
        lo, hi = spec.value_range
        assert res.value == pytest.approx(lo + ref[0] * (hi - lo), abs=tol * (hi - lo))
        assert "points" not in res.outputs
    else:
        assert set(res.probabilities) == set(spec.class_names)
        np.testing.assert_allclose(list(res.probabilities.values()), ref, atol=tol)
        if abs(ref[0] - ref[1]) > 2 * tol:
            assert res.label == spec.class_names[int(np.argmax(ref))]
    assert res.timestamp_ms == 123.0 and res.invoke_ms >= 0 and res.total_ms >= res.invoke_ms
    json.dumps(res.to_dict())  # JSON-safe


def test_uint8_input_model_takes_camera_bytes_straight_in(models):
    path = models("value", "int8", "uint8")
    frame = _frame(32, 32)  # already input-sized: no resize either
    with Predictor.create_from_model_path(path, color_order="RGB") as p:
        d = p.interpreter.get_input_details()[0]
        assert d["dtype"] == np.uint8 and d["quantization"] == (1.0, 0)
        p.predict(frame)
        fed = p.interpreter.get_tensor(d["index"])[0]
    np.testing.assert_array_equal(fed, frame)


def test_int8_input_is_quantized_with_its_own_zero_point(models):
    path = models("value", "int8", "int8")
    frame = _frame(32, 32)
    with Predictor.create_from_model_path(path, color_order="RGB") as p:
        d = p.interpreter.get_input_details()[0]
        scale, zp = d["quantization"]
        p.predict(frame)
        fed = p.interpreter.get_tensor(d["index"])[0]
    assert d["dtype"] == np.int8
    np.testing.assert_array_equal(fed, np.clip(np.rint(frame / scale) + zp, -128, 127))


def _blobs(h, w, blobs):
    """A black BGR frame with filled rectangles ``(x0, y0, x1, y1, (b, g, r))``."""
    f = np.zeros((h, w, 3), np.uint8)
    for x0, y0, x1, y1, bgr in blobs:
        f[y0:y1, x0:x1] = bgr
    return f


@pytest.fixture(scope="module")
def centroid3(models):
    # keypoint k = centroid of colour channel k (R, G, B) of the model's RGB input
    return models("keypoints", arch="centroid", num_keypoints=3, flip_pairs=())


def test_bgr_and_rgb_frames_are_both_handled(centroid3):
    # 128x64 frame -> 32x32 input: blobs aligned to the 4x2 resize grid
    red, green, blue = (8, 4, 24, 20), (64, 40, 80, 60), (100, 8, 120, 24)
    bgr = _blobs(64, 128, [(*red, (0, 0, 255)), (*green, (0, 255, 0)), (*blue, (255, 0, 0))])
    want = np.array([[(x0 + x1) / 2, (y0 + y1) / 2] for x0, y0, x1, y1 in (red, green, blue)])
    with Predictor.create_from_model_path(centroid3, color_order="BGR") as p:
        np.testing.assert_allclose(p.predict(bgr).points_px, want, atol=0.5)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    with Predictor.create_from_model_path(centroid3, color_order="RGB") as p:
        np.testing.assert_allclose(p.predict(rgb).points_px, want, atol=0.5)
        # the wrong order swaps red and blue: proves the order is applied, not ignored
        wrong = p.predict(bgr).points_px
    np.testing.assert_allclose(wrong[[2, 1, 0]], want, atol=0.5)


def test_roi_maps_points_back_to_the_full_frame(centroid3):
    roi = (40, 20, 64, 64)  # x, y, w, h: 64x64 -> 32x32 input, scale 2
    # red blob inside the ROI at ROI-local x 30..40, y 10..20 -> full frame centre (75, 35);
    # a second red blob outside the ROI must be ignored.
    frame = _blobs(
        120,
        200,
        [
            (40 + 30, 20 + 10, 40 + 40, 20 + 20, (0, 0, 255)),
            (150, 90, 170, 110, (0, 0, 255)),
            (40 + 2, 20 + 50, 40 + 12, 20 + 60, (0, 255, 0)),  # green at local (7, 55)
        ],
    )
    with Predictor.create_from_model_path(centroid3, roi=roi) as p:
        res = p.predict(frame)
    np.testing.assert_allclose(res.points_px[0], [75, 35], atol=0.5)
    np.testing.assert_allclose(res.points_px[1], [47, 75], atol=0.5)
    np.testing.assert_allclose(res.points[0], [75 / 200, 35 / 120], atol=0.003)
    with Predictor.create_from_model_path(centroid3, roi="40,20,64,64") as p:
        np.testing.assert_allclose(p.predict(frame).points_px[0], [75, 35], atol=0.5)


def test_roi_outside_the_frame_is_a_clear_error(centroid3):
    with Predictor.create_from_model_path(centroid3, roi=(100, 0, 64, 64)) as p:
        with pytest.raises(ImageError, match="roi"):
            p.predict(np.zeros((64, 128, 3), np.uint8))


def test_bad_frames_are_clear_errors(models):
    with Predictor.create_from_model_path(models("point")) as p:
        with pytest.raises(ImageError, match="uint8"):
            p.predict(np.zeros((32, 32, 3), np.float32))
        with pytest.raises(ImageError, match="shape"):
            p.predict(np.zeros((32, 32, 5), np.uint8))
        # gray and BGRA frames are accepted
        assert p.predict(np.zeros((40, 40), np.uint8)).points.shape == (1, 2)
        assert p.predict(np.zeros((40, 40, 4), np.uint8)).points.shape == (1, 2)


def test_tta_averages_value_over_invariances(models):
    path = models("value", invariances=("hflip", "vflip"))
    frame = _frame(32, 32, seed=3)
    with Predictor.create_from_model_path(path) as p:
        plain = [p.predict(f).raw[0] for f in (frame, frame[:, ::-1].copy(), frame[::-1].copy())]
    with Predictor.create_from_model_path(path, tta=True) as p:
        res = p.predict(frame)
    assert len(set(np.round(plain, 6))) > 1  # the transforms do change the raw output
    assert res.raw[0] == pytest.approx(np.mean(plain), abs=1e-5)


def test_tta_maps_coordinates_back_through_each_transform(models):
    # a centroid model is exactly equivariant: with TTA over flips and rotations the
    # point must stay where it is, which only holds if every inverse transform is right.
    path = models("point", arch="centroid", invariances=("hflip", "vflip", "rot90"))
    frame = _blobs(64, 64, [(6, 40, 14, 52, (0, 0, 255))])  # centre (10, 46)
    with Predictor.create_from_model_path(path, tta=True) as p:
        assert len(p._transforms) == 6
        res = p.predict(frame)
    np.testing.assert_allclose(res.points_px[0], [10, 46], atol=0.5)


def test_hflip_inverse_swaps_flip_pairs():
    spec = make_spec("keypoints", num_keypoints=3, flip_pairs=((0, 1),))
    pts = np.array([[0.2, 0.3], [0.7, 0.4], [0.5, 0.9]], np.float32)
    out = invert_transform(pts, "hflip", spec)
    np.testing.assert_allclose(out, [[0.3, 0.4], [0.8, 0.3], [0.5, 0.9]], atol=1e-6)


def test_predict_batch_matches_predict(models):
    path = models("class")
    frames = [_frame(seed=s) for s in range(3)]
    with Predictor.create_from_model_path(path) as p:
        one = [p.predict(f).raw for f in frames]
        batch = p.predict_batch(frames)
    assert len(batch) == 3
    for a, b in zip(one, batch, strict=True):
        np.testing.assert_allclose(a, b.raw, atol=1e-6)


def test_smoothing_is_applied_per_output(models):
    path = models("point", arch="centroid")
    left = _blobs(32, 32, [(4, 14, 8, 18, (0, 0, 255))])
    right = _blobs(32, 32, [(24, 14, 28, 18, (0, 0, 255))])
    with Predictor.create_from_model_path(
        path, smoothing="ema", smoothing_params={"tau_ms": 100.0}
    ) as p:
        a = p.predict(left, timestamp_ms=0.0).points_px[0, 0]
        b = p.predict(right, timestamp_ms=100.0).points_px[0, 0]
        # after one time constant the EMA has moved 63 % of the way
        assert b == pytest.approx(a + 0.632 * (26 - a), abs=0.5)
        # a gap longer than max_gap_ms resets: the new position passes straight through
        c = p.predict(left, timestamp_ms=5000.0).points_px[0, 0]
        assert c == pytest.approx(6, abs=0.5)
        # predict_batch never smooths
        assert p.predict_batch([right])[0].points_px[0, 0] == pytest.approx(26, abs=0.5)


# --------------------------------------------------------------------------- bad model files
def test_missing_model_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        Predictor.create_from_model_path(tmp_path / "nope.tflite")


@pytest.mark.parametrize("frac", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_model_is_a_clear_error(models, tmp_path, frac):
    data = models("point").read_bytes()
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(data[: int(len(data) * frac)])
    with pytest.raises((ModelFileError, SpecError), match="cut.tflite"):
        Predictor.create_from_model_path(bad)


@pytest.mark.parametrize(
    "content",
    [b"not a model at all, just text\n" * 10, b"PK\x03\x04" + bytes(500), bytes(range(256)) * 4],
)
def test_not_a_flatbuffer_is_a_clear_error(tmp_path, content):
    bad = tmp_path / "junk.tflite"
    bad.write_bytes(content)
    with pytest.raises(ModelFileError, match="junk.tflite"):
        Predictor.create_from_model_path(bad)


def test_model_without_spec_needs_spec_option(models):
    bare = models("point", embed=False)
    with pytest.raises(SpecError, match=r"--spec spec\.json") as e:
        Predictor.create_from_model_path(bare)
    assert bare.name in str(e.value)
    spec = spec_for(bare)
    with Predictor.create_from_model_path(bare, spec=spec) as p:
        assert p.predict(_frame()).points.shape == (1, 2)
    # a spec.json path works too
    with Predictor.create_from_model_path(bare, spec=bare.with_suffix(".spec.json")) as p:
        assert p.spec == spec


def test_spec_disagreeing_with_input_size(models):
    path = models("point")
    wrong = make_spec("point", size=48)
    with pytest.raises(SpecError, match=r"48x48x3.*\[1, 32, 32, 3\]") as e:
        Predictor.create_from_options(PredictorOptions(model_path=path, spec=wrong))
    assert path.name in str(e.value)


def test_spec_disagreeing_with_output_size(models):
    path = models("point")
    wrong = make_spec("keypoints", num_keypoints=4, flip_pairs=())
    with pytest.raises(SpecError, match="expects 8 output values") as e:
        Predictor.create_from_model_path(path, spec=wrong)
    assert path.name in str(e.value)


def _embed_raw(model: bytes, payload: bytes) -> bytes:
    """Embed arbitrary bytes as the edgereg spec (what a hostile/broken file could hold)."""
    import flatbuffers

    from edge_runtime.metadata import SPEC_METADATA_NAME, TFLITE_IDENTIFIER, _name, _schema

    schema = _schema()
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    m.metadata = [md for md in (m.metadata or []) if _name(md.name) != SPEC_METADATA_NAME]
    buf = schema.BufferT()
    buf.data = list(payload)
    m.buffers = list(m.buffers or []) + [buf]
    md = schema.MetadataT()
    md.name, md.buffer = SPEC_METADATA_NAME, len(m.buffers) - 1
    m.metadata.append(md)
    b = flatbuffers.Builder(len(model) + len(payload) + 1024)
    b.Finish(m.Pack(b), file_identifier=TFLITE_IDENTIFIER)
    return bytes(b.Output())


def _deep(n: int) -> str:
    return '{"task": "point", "input_height": 32, "input_width": 32, "num_keypoints": 1, ' + (
        '"extra": ' + '{"a": ' * n + "1" + "}" * n + "}"
    )


@pytest.mark.parametrize(
    "payload,match",
    [
        (b"\xff\xfe garbage \x00", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2, 3]", "JSON object"),
        (b'{"task": "point"}', "input_height"),
        (b'{"task": "point", "input_height": 32, "input_width": 32, "bogus": 1}', "bogus"),
        (b" " * 70_000 + b"{}", "larger than"),
        (_deep(500).encode(), "nested deeper"),
    ],
    ids=["binary", "json", "array", "missing", "unknown", "huge", "deep"],
)
def test_bad_embedded_spec_names_the_file(models, tmp_path, payload, match):
    bad = tmp_path / "badspec.tflite"
    bad.write_bytes(_embed_raw(models("point").read_bytes(), payload))
    with pytest.raises(SpecError, match=match) as e:
        Predictor.create_from_model_path(bad)
    assert "badspec.tflite" in str(e.value)


def test_default_path_never_imports_tensorflow(models):
    path = models("value", "int8", "uint8")
    code = (
        "import sys, numpy as np\n"
        "from edge_runtime.predictor import Predictor\n"
        f"with Predictor.create_from_model_path({str(path)!r}) as p:\n"
        "    r = p.predict(np.zeros((48, 64, 3), np.uint8))\n"
        "    print(p.backend.name, r.value)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0].startswith("litert ")
    assert "HEAVY=" in lines and "HEAVY=" == lines[1]


def test_spec_option_overrides_embedded_spec_and_is_checked(models):
    path = models("value")
    spec = ModelSpec.from_dict({**spec_for(path).to_dict(), "value_range": [0.0, 1.0]})
    frame = _frame()
    with Predictor.create_from_model_path(path) as p:
        raw = p.predict(frame).raw[0]
    with Predictor.create_from_model_path(path, spec=spec) as p:
        assert p.predict(frame).value == pytest.approx(raw, abs=1e-6)


def test_bad_spec_files_name_the_file(models, tmp_path):
    bare = models("point", embed=False)
    for name, content in [("huge.json", b" " * 100_000), ("bad.json", b"{oops")]:
        f = tmp_path / name
        f.write_bytes(content)
        with pytest.raises(SpecError, match=name):
            Predictor.create_from_model_path(bare, spec=f)
    with pytest.raises(SpecError, match="no such spec file"):
        Predictor.create_from_model_path(bare, spec=tmp_path / "missing.json")


def test_tta_rotate_for_value_averages_three_views(models):
    from edge_runtime.preprocess import apply_transform

    path = models("value", invariances=("rotate",))
    frame = _frame(32, 32, seed=5)
    with Predictor.create_from_model_path(path, color_order="RGB") as p:
        img = p.preprocess(frame)
        views = [p._invoke(apply_transform(img, t))[0][0] for t in ("identity", "rot+15", "rot-15")]
    with Predictor.create_from_model_path(path, color_order="RGB", tta=True) as p:
        assert p._transforms == ["identity", "rot+15", "rot-15"]
        assert p.predict(frame).raw[0] == pytest.approx(np.mean(views), abs=1e-6)


def test_spec_input_range_is_applied_before_the_model(models):
    # a spec saying the model takes 0..1 input: the predictor must scale camera bytes by 1/255
    path = models("value")
    spec = ModelSpec.from_dict({**spec_for(path).to_dict(), "input_range": [0.0, 1.0]})
    frame = _frame(32, 32, seed=2)
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    want = np.asarray(keras_model_for(path)(rgb[None].astype(np.float32) / 255.0)).reshape(-1)
    with Predictor.create_from_model_path(path, spec=spec) as p:
        np.testing.assert_allclose(p.predict(frame).raw, want, atol=1e-5)


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "0,0,0,5", "-1,0,4,4"])
def test_malformed_roi_is_a_clear_error(models, text):
    with pytest.raises(ImageError, match="roi"):
        Predictor.create_from_model_path(models("point"), roi=text)


@pytest.mark.parametrize("io", ["int8", "uint8"])
def test_integer_input_with_a_non_unit_scale_is_quantized(models, io):
    path = models("value", "int8", io, calib_max=127)
    frame = _frame(32, 32, seed=4) // 2  # inside the calibrated range
    spec, ref = _keras_reference(path, frame)
    with Predictor.create_from_model_path(path) as p:
        assert p._mode == "quant" and p.input_scale < 0.9
        res = p.predict(frame)
    np.testing.assert_allclose(res.raw, ref, atol=0.03)
