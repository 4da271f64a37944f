"""The standard TFLite Metadata, written by MediaPipe's metadata writers, beside our spec.

edgereg's own spec (JSON under ``edgereg_spec``, see :mod:`edge_runtime.metadata`) is all
that edgereg needs. Other tools read the standard TFLite Metadata instead (the
``TFLITE_METADATA`` flatbuffer of the ``metadata_schema.fbs`` schema, plus associated
files zipped after the model): MediaPipe Tasks' ``ImageClassifier`` refuses a float-input
model without its ``NormalizationOptions``, Android Studio's ML model binding generates
its wrapper from it, Netron shows it. :func:`write_standard_metadata` adds it to a model
that already carries our spec: the model name and description, the input image (colour
space, the normalization that maps 0..255 pixels to what the model takes, value range),
the output tensor's name and description from the task (``DeviceTask.output_metadata``)
and, for class models, ``labels.txt`` as the output's ``TENSOR_AXIS_LABELS`` file.

The writer is MediaPipe's (``mediapipe.tasks.python.metadata.metadata_writers``), a
maintained one, not a hand-written schema. Which MediaPipe: ``mediapipe>=0.10.30,
<0.10.32`` is the range that installs beside TensorFlow 2.21 in one environment: no
protobuf pin (0.10.21 and tflite-support 0.4.4 pin protobuf < 5 and < 4, TensorFlow
2.21 needs >= 6.31), no numpy pin, and no ``opencv-contrib-python`` (0.10.32 and later
require it; it would overwrite our ``opencv-python-headless``'s ``cv2``). Those C-API
builds dropped one compiled helper the Python metadata module still imports,
``mediapipe.tasks.cc.metadata.python._pywrap_metadata_version`` (the function that
computes the metadata's ``min_parser_version``), so its writers and displayer fail to
import. When that import fails, :func:`_install_parser_version_helper` provides the
function from :func:`min_parser_version` (the same rule as MediaPipe's
``metadata_version.cc``: the newest schema member the metadata uses); a MediaPipe that
ships the helper again is used as it is.

Only the workstation needs this (``edgereg convert``); the device reads our spec with
:mod:`edge_runtime.metadata` and needs neither MediaPipe nor flatbuffers.
"""

from __future__ import annotations

import gc
import importlib
import json
import sys
import types
from typing import Any

from edge_runtime.errors import ModelFileError
from edge_runtime.spec import ModelSpec

#: The name MediaPipe/TFLite tools look the standard metadata up by.
METADATA_NAME = "TFLITE_METADATA"
_HELPER = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"
#: Schema members added after metadata version 1.0.0 and the parser version that reads
#: them (``metadata_schema.fbs``'s version history, as MediaPipe's metadata_version.cc).
_VOCABULARY_FILE = (1, 0, 1)
_PROCESS_UNITS = (1, 1, 0)
_TOKENIZER = (1, 1, 0)
_TENSOR_GROUPS = (1, 2, 0)
_REGEX_TOKENIZER = (1, 2, 1)
_AUDIO = (1, 3, 0)
_SCANN_INDEX_FILE = (1, 4, 0)
_FILE_VERSION = (1, 4, 1)
_CUSTOM_METADATA = (1, 5, 0)


class MetadataUnavailable(ModelFileError):
    """The standard-metadata writer cannot run here (MediaPipe missing or unusable)."""


# --------------------------------------------------------------------------- writing
def write_standard_metadata(model: bytes, spec: ModelSpec) -> bytes:
    """A copy of ``model`` with the standard TFLite Metadata for ``spec`` (replacing any
    earlier one); every other metadata entry, our spec included, is kept."""
    mw, fb = _writers()
    writer = mw.MetadataWriter.create(bytearray(model))
    try:
        return _populate(writer, mw, fb, spec)
    finally:
        # The writer keeps a temp folder that its __del__ removes; drop it now, not at
        # interpreter exit (where its __del__ fails loudly on a torn-down os module).
        writer._temp_folder.cleanup()
        del writer
        gc.collect()


def _populate(writer: Any, mw: Any, fb: Any, spec: ModelSpec) -> bytes:
    out = spec.task_kind.output_metadata(spec)
    try:
        writer.add_general_info(_model_name(spec), _model_description(spec))
        mean, std = input_normalization(spec)
        colour = getattr(fb.ColorSpaceType, spec.color_order)
        writer.add_image_input([mean], [std], colour, "image", _input_description(spec))
        if out.labels:
            labels = mw.Labels().add(list(out.labels))
            writer.add_classification_output(labels, name=out.name, description=out.description)
        else:
            writer.add_feature_output(out.name, out.description)
        data, _ = writer.populate()
    except (ValueError, RuntimeError, OSError) as e:
        raise ModelFileError(f"standard TFLite metadata could not be written: {e}") from None
    return _without_empty_archive(bytes(data))


#: The signature of a ZIP's end-of-central-directory record (22 bytes without a comment).
_ZIP_END = b"PK\x05\x06"


def _without_empty_archive(data: bytes) -> bytes:
    """MediaPipe's populator appends an EMPTY zip archive when there are no associated
    files: drop it, so the file ends with the flatbuffer's own data again (a truncated copy
    is then refused by every reader, ours included, instead of losing only the archive)."""
    end = data[-22:]
    # no entries on this disk or in all, and no comment
    if end[:4] == _ZIP_END and end[4:12] == bytes(8) and end[20:] == bytes(2):
        return data[:-22]
    return data


def input_normalization(spec: ModelSpec) -> tuple[float, float]:
    """(mean, std) with ``(pixel - mean) / std`` = the model's input for a 0..255 pixel.

    The model takes raw pixel values in ``spec.input_range`` (0..255 by default, its own
    normalization inside): mean 0, std 1.
    """
    lo, hi = (float(v) for v in spec.input_range)
    std = 255.0 / (hi - lo)
    return -lo * std + 0.0, std


def _model_name(spec: ModelSpec) -> str:
    return spec.name or f"edgereg {spec.task}"


def _model_description(spec: ModelSpec) -> str:
    kind = spec.task_kind
    on = f" on {spec.backbone}" if spec.backbone else ""
    return (
        f"edgereg {spec.task} model{on}: {kind.summary}. Its full spec (JSON: task, input, "
        "decoding, names) is the metadata entry 'edgereg_spec'."
    )


def _input_description(spec: ModelSpec) -> str:
    lo, hi = spec.input_range
    return (
        f"{spec.color_order} image, the frame stretched to {spec.input_width}x"
        f"{spec.input_height}, pixel values {lo:g}..{hi:g} (any normalization is inside "
        "the model)."
    )


# --------------------------------------------------------------------------- reading
def read_standard_metadata(model: bytes) -> dict[str, Any] | None:
    """The standard metadata as JSON (MediaPipe's ``MetadataDisplayer``) and the names of
    the associated files, or None when the model has none."""
    _writers()
    from mediapipe.tasks.python.metadata import metadata

    try:
        shown = metadata.MetadataDisplayer.with_model_buffer(bytearray(model))
    except ValueError:
        return None
    out = json.loads(shown.get_metadata_json())
    out["associated_files"] = sorted(shown.get_packed_associated_file_list())
    return out


# --------------------------------------------------------------------------- MediaPipe
def _writers() -> tuple[Any, Any]:
    """MediaPipe's ``metadata_writer`` module and the metadata schema module."""
    try:
        _install_parser_version_helper()
        mw = importlib.import_module(
            "mediapipe.tasks.python.metadata.metadata_writers.metadata_writer"
        )
        fb = importlib.import_module("mediapipe.tasks.metadata.metadata_schema_py_generated")
    except ImportError as e:
        raise MetadataUnavailable(
            f"the standard TFLite metadata needs MediaPipe's metadata writers ({e}); "
            "install edgereg[train] (mediapipe>=0.10.30,<0.10.32)"
        ) from None
    return mw, fb


def _install_parser_version_helper() -> None:
    """Provide MediaPipe's missing compiled helper when its wheel lacks it (see above)."""
    try:
        importlib.import_module(_HELPER)
        return
    except ImportError:
        pass
    importlib.import_module("mediapipe")  # a missing MediaPipe is the ImportError to report
    parts = _HELPER.split(".")
    for i in range(3, len(parts)):  # mediapipe.tasks.cc ... .python: empty packages
        name = ".".join(parts[:i])
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = []
            sys.modules[name] = pkg
    helper = types.ModuleType(_HELPER)
    helper.__doc__ = "edgereg's stand-in: min_parser_version (see convert/tflite_metadata.py)"
    helper.GetMinimumMetadataParserVersion = min_parser_version  # type: ignore[attr-defined]
    sys.modules[_HELPER] = helper
    setattr(sys.modules[".".join(parts[:-1])], parts[-1], helper)


def min_parser_version(metadata_buf: bytes) -> str:
    """The oldest metadata parser that reads ``metadata_buf`` (a ``ModelMetadata``
    flatbuffer): the newest schema member it uses, "1.0.0" when none is newer."""
    fb = importlib.import_module("mediapipe.tasks.metadata.metadata_schema_py_generated")
    md = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAsModelMetadata(metadata_buf, 0))
    found = [(1, 0, 0), *_files(md.associatedFiles, fb)]
    for sg in md.subgraphMetadata or []:
        for t in [*(sg.inputTensorMetadata or []), *(sg.outputTensorMetadata or [])]:
            found += _files(t.associatedFiles, fb)
            found += _units(t.processUnits, fb)
            content = t.content
            if content is not None and content.contentPropertiesType == _audio(fb):
                found.append(_AUDIO)
        found += _files(sg.associatedFiles, fb)
        for units in (sg.inputProcessUnits, sg.outputProcessUnits):
            if units is not None:
                found += [_PROCESS_UNITS, *_units(units, fb)]
        if sg.inputTensorGroups is not None or sg.outputTensorGroups is not None:
            found.append(_TENSOR_GROUPS)
        if sg.customMetadata is not None:
            found.append(_CUSTOM_METADATA)
    return ".".join(str(v) for v in max(found))


def _files(files: list[Any] | None, fb: Any) -> list[tuple[int, int, int]]:
    out = []
    for f in files or []:
        if f.type == fb.AssociatedFileType.VOCABULARY:
            out.append(_VOCABULARY_FILE)
        if f.type == fb.AssociatedFileType.SCANN_INDEX_FILE:
            out.append(_SCANN_INDEX_FILE)
        if f.version is not None:
            out.append(_FILE_VERSION)
    return out


def _units(units: list[Any] | None, fb: Any) -> list[tuple[int, int, int]]:
    opts = fb.ProcessUnitOptions
    newer = {
        opts.BertTokenizerOptions: _TOKENIZER,
        opts.SentencePieceTokenizerOptions: _TOKENIZER,
        opts.RegexTokenizerOptions: _REGEX_TOKENIZER,
    }
    return [newer[u.optionsType] for u in units or [] if u.optionsType in newer]


def _audio(fb: Any) -> int:
    return fb.ContentProperties.AudioProperties
