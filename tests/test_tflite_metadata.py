"""The standard TFLite Metadata beside our spec, proven with clients nobody here wrote.

MediaPipe Tasks' ``ImageClassifier`` (which refuses a float-input model without
NormalizationOptions) loads an int8 class model that ``edgereg convert`` wrote, and gives
the top label ``edgereg run`` gives on the sample validation images; MediaPipe's
``MetadataDisplayer`` reads every task's metadata back; our own reader still finds our
spec without either package; the Edge TPU path keeps both.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from models import make_tflite, spec_for

from convert.tflite_metadata import (
    min_parser_version,
    read_standard_metadata,
    write_standard_metadata,
)
from edge_runtime.metadata import (
    associated_files,
    embed_spec,
    read_metadata,
    spec_from_model_bytes,
)


def _litert_out(model: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.set_tensor(inp["index"], x.astype(inp["dtype"]))
    it.invoke()
    return it.get_tensor(out["index"]).copy()


# --------------------------------------------------------------------------- every task
@pytest.mark.parametrize("task", ["point", "keypoints", "value", "class"])
def test_standard_metadata_reads_back_and_our_spec_stays(tmp_path: Path, task: str) -> None:
    path = make_tflite(tmp_path, task, "fp32", size=32)
    spec = spec_for(path)
    before = path.read_bytes()
    data = write_standard_metadata(before, spec)
    # our reader (no MediaPipe, no flatbuffers package) still finds our spec
    assert spec_from_model_bytes(data) == spec
    assert {"edgereg_spec", "TFLITE_METADATA"} <= set(read_metadata(data))
    # MediaPipe's own displayer reads the standard metadata
    md = read_standard_metadata(data)
    assert md is not None and md["name"] == f"edgereg {task}"
    assert "edgereg_spec" in md["description"]
    (sub,) = md["subgraph_metadata"]
    (inp,) = sub["input_tensor_metadata"]
    norm = inp["process_units"][0]
    assert norm["options_type"] == "NormalizationOptions"
    assert norm["options"] == {"mean": [0.0], "std": [1.0]}  # raw 0..255 into the model
    assert inp["content"]["content_properties"]["color_space"] == "RGB"
    assert inp["stats"] == {"max": [255.0], "min": [0.0]}
    (out,) = sub["output_tensor_metadata"]
    want = spec.task_kind.output_metadata(spec)
    assert (out["name"], out["description"]) == (want.name, want.description)
    assert md["min_parser_version"] == "1.0.0"
    if task == "class":
        assert md["associated_files"] == ["labels.txt"]
        assert out["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
        labels = associated_files(data)["labels.txt"].decode().split()
        assert labels == list(spec.class_names)
    else:
        assert md["associated_files"] == [] and "associated_files" not in out
        # no empty archive after the flatbuffer: a truncated copy is refused, not half-read
        assert b"PK\x05\x06" not in data[-22:]
    # the network is untouched
    x = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3))
    np.testing.assert_array_equal(_litert_out(data, x), _litert_out(before, x))
    # embedding the spec again (a later step) keeps the standard metadata and its files
    again = embed_spec(data, spec.with_extra(note="re-embedded"))
    assert read_standard_metadata(again)["associated_files"] == md["associated_files"]
    assert associated_files(again) == associated_files(data)
    assert spec_from_model_bytes(again).extra["note"] == "re-embedded"


def test_min_parser_version_follows_the_newest_schema_member() -> None:
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    def version(edit) -> str:
        md = fb.ModelMetadataT()
        sg = fb.SubGraphMetadataT()
        t = fb.TensorMetadataT()
        sg.inputTensorMetadata, sg.outputTensorMetadata = [t], [fb.TensorMetadataT()]
        md.subgraphMetadata = [sg]
        edit(md, sg, t)
        b = flatbuffers.Builder(0)
        b.Finish(md.Pack(b), b"M001")
        return min_parser_version(bytes(b.Output()))

    def vocab(md, sg, t):
        f = fb.AssociatedFileT()
        f.name, f.type = "vocab.txt", fb.AssociatedFileType.VOCABULARY
        t.associatedFiles = [f]

    def groups(md, sg, t):
        sg.inputTensorGroups = [fb.TensorGroupT()]

    def custom(md, sg, t):
        sg.customMetadata = [fb.CustomMetadataT()]

    def versioned_file(md, sg, t):
        f = fb.AssociatedFileT()
        f.name, f.version = "labels.txt", "2"
        md.associatedFiles = [f]

    assert version(lambda *_: None) == "1.0.0"
    assert version(vocab) == "1.0.1"
    assert version(groups) == "1.2.0"
    assert version(versioned_file) == "1.4.1"
    assert version(custom) == "1.5.0"


# --------------------------------------------------------------------------- MediaPipe Tasks
def _classifier(model: Path):
    from mediapipe.tasks.python import BaseOptions, vision

    opts = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=str(model)), max_results=-1
    )
    return vision.ImageClassifier.create_from_options(opts)


def _mediapipe_scores(clf, image: Path) -> dict[str, float]:
    import mediapipe as mp

    cats = clf.classify(mp.Image.create_from_file(str(image))).classifications[0].categories
    return {c.category_name: c.score for c in cats}


def test_mediapipe_refuses_a_bare_model_and_takes_ours(tmp_path: Path) -> None:
    """Without the standard metadata MediaPipe cannot normalize a float input; with it,
    its scores are ours (input at the model's size: no resampling differs)."""
    from edge_runtime.predictor import Predictor, PredictorOptions

    path = make_tflite(tmp_path, "class", "int8", size=64)
    with pytest.raises(Exception, match="NormalizationOptions"):
        _classifier(path)
    spec = spec_for(path)
    path.write_bytes(write_standard_metadata(path.read_bytes(), spec))
    rng = np.random.default_rng(1)
    import cv2

    diffs = []
    with Predictor(PredictorOptions(path)) as pred:
        clf = _classifier(path)
        for i in range(12):
            rgb = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            rgb[:, : 8 * (i + 1)] //= 3  # a different picture each time
            f = tmp_path / f"f{i}.png"
            cv2.imwrite(str(f), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            ours = pred.predict(cv2.imread(str(f))).probabilities
            theirs = _mediapipe_scores(clf, f)
            diffs += [abs(theirs[n] - ours[n]) for n in spec.class_names]
        clf.close()
    assert max(diffs) <= 1 / 256 + 1e-6, max(diffs)  # at most one int8 output step


@pytest.mark.slow
def test_mediapipe_image_classifier_agrees_with_edgereg_run(tmp_path: Path, run_cli) -> None:
    """A small real trained class model, converted by `edgereg convert`: MediaPipe Tasks'
    ImageClassifier and `edgereg run` give the same top label on >= 99 % of the sample
    validation images."""
    data, run = tmp_path / "data", tmp_path / "run"
    r = run_cli("samples", "make", data, "--task", "class", "--n", "48", "--n-val", "100")
    assert r.returncode == 0, r.stderr
    tiny = ["--input-size", "96", "--alpha", "0.35", "--weights", "none", "--epochs", "2"]
    r = run_cli(
        "train", data / "train", "--task", "class", "--val", data / "val", "--out", run, *tiny
    )
    assert r.returncode == 0, r.stderr
    r = run_cli("convert", run, "--variants", "int8", "--calib", "16", "--no-verify")
    assert r.returncode == 0, r.stderr
    model = run / "export" / "model_int8.tflite"
    assert "labels.txt" in associated_files(model.read_bytes())
    r = run_cli("run", model, "--source", data / "val", "--json", tmp_path / "ours.jsonl")
    assert r.returncode == 0, r.stderr
    ours = {
        Path(j["file"]).name: j["result"]
        for j in map(json.loads, (tmp_path / "ours.jsonl").read_text().splitlines())
    }
    assert len(ours) == 100
    clf = _classifier(model)
    same, diffs = 0, []
    for name, res in sorted(ours.items()):
        scores = _mediapipe_scores(clf, data / "val" / name)
        same += max(scores, key=scores.get) == res["label"]
        diffs += [abs(scores[n] - p) for n, p in res["probabilities"].items()]
    clf.close()
    assert same >= 99, f"{same} of 100 top labels agree"
    # MediaPipe resizes the 256 px images with its own sampler: scores stay close
    assert float(np.mean(diffs)) < 0.02, float(np.mean(diffs))


# --------------------------------------------------------------------------- Edge TPU
def test_edge_tpu_output_keeps_spec_and_label_file(tmp_path: Path, monkeypatch) -> None:
    """A STAND-IN edgetpu_compiler (the real one is not installable here; see
    test_edgetpu.py) that drops the archive after the flatbuffer: the compiled file gets
    the label file back, and keeps our spec and the standard metadata."""
    from convert.edgetpu import compile_model

    path = make_tflite(tmp_path, "class", "int8", io="uint8", size=32)
    src = tmp_path / "model_int8.tflite"
    src.write_bytes(write_standard_metadata(path.read_bytes(), spec_for(path)))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "edgetpu_compiler"
    script.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            """
            # STAND-IN for Coral's edgetpu_compiler: copies the flatbuffer only.
            import io, os, sys, zipfile
            args = sys.argv[1:]
            out_dir, src = args[args.index("--out_dir") + 1], args[-1]
            data = open(src, "rb").read()
            start = zipfile.ZipFile(io.BytesIO(data)).infolist()[0].header_offset
            stem = os.path.splitext(os.path.basename(src))[0]
            open(os.path.join(out_dir, stem + "_edgetpu.tflite"), "wb").write(data[:start])
            print("Edge TPU Compiler version 16.0.384591198")
            """
        )
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    res = compile_model(src, tmp_path)
    assert res.ran, res.message
    data = res.output.read_bytes()
    assert spec_from_model_bytes(data) == spec_for(path)
    assert associated_files(data) == associated_files(src.read_bytes())
    assert read_standard_metadata(data)["associated_files"] == ["labels.txt"]
