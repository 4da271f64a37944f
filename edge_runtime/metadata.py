"""Read and embed the model spec inside a ``.tflite`` file.

A TFLite file is a flatbuffer whose root ``Model`` table has a ``metadata`` vector of
``(name, buffer index)`` entries. edgereg stores its spec as UTF-8 JSON in a buffer under
the name :data:`SPEC_METADATA_NAME`. It is read with the bounds-checked reader of
:mod:`edge_runtime.flatbuffer`, so the device needs neither TensorFlow nor the
``flatbuffers`` package to read it. The writer uses the TFLite schema's object API
(``ai_edge_litert`` ships it; the workstation also has TensorFlow's copy).

A model may also carry the standard TFLite Metadata (``TFLITE_METADATA``, written by
``convert/tflite_metadata.py``) and its associated files (e.g. ``labels.txt``) in a ZIP
archive appended after the flatbuffer. Reading ignores them; :func:`embed_spec` keeps them
(re-packing the flatbuffer moves its end, so the archive is written again after it).
"""

from __future__ import annotations

import importlib
import io
import zipfile
from pathlib import Path

from . import flatbuffer as fb
from .errors import ModelFileError, SpecError
from .spec import ModelSpec

SPEC_METADATA_NAME = "edgereg_spec"
TFLITE_IDENTIFIER = b"TFL3"
#: A sane upper bound for a model file that is read whole into memory.
MAX_MODEL_BYTES = 1 << 31


def read_metadata(model: bytes, where: str = "model") -> dict[str, bytes]:
    """All metadata entries of a TFLite flatbuffer, name -> bytes of its buffer."""
    if len(model) < 8:
        raise ModelFileError(f"{where}: only {len(model)} bytes, too short to be a TFLite model")
    if model[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError(
            f"{where}: not a TFLite model (no 'TFL3' identifier); export one with `edgereg convert`"
        )
    r = fb.FlatbufferReader(model, where)
    root = r.root()
    buffers = r.tables(root, fb.MODEL_BUFFERS)
    out: dict[str, bytes] = {}
    for entry in r.tables(root, fb.MODEL_METADATA):
        name = r.string(entry, fb.METADATA_NAME)
        pos = r.field(entry, fb.METADATA_BUFFER)
        index = r.u32(pos) if pos is not None else 0
        if index >= len(buffers):
            raise ModelFileError(f"{where}: metadata {name!r} points at a missing buffer {index}")
        out[name] = _buffer_bytes(r, buffers[index])
    return out


def _buffer_bytes(r: fb.FlatbufferReader, buffer: int) -> bytes:
    data = r.byte_vector(buffer, fb.BUFFER_DATA)
    if data is not None:
        return data
    # Large models keep buffer data after the flatbuffer, addressed by offset and size.
    opos, spos = r.field(buffer, fb.BUFFER_OFFSET), r.field(buffer, fb.BUFFER_SIZE)
    if opos is None or spos is None:
        return b""
    off, size = r.u64(opos), r.u64(spos)
    if off <= 1 or off + size > len(r.buf):
        raise r.fail("buffer offset outside the file")
    return bytes(r.buf[off : off + size])


def read_model_bytes(path: str | Path) -> bytes:
    """The whole model file, with a clear error when it is missing or absurd."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such model file")
    size = p.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise ModelFileError(f"{p}: {size} bytes is too large for a TFLite model")
    return p.read_bytes()


def spec_from_model_bytes(model: bytes, where: str = "model") -> ModelSpec | None:
    """The embedded spec, or None when the model has none. Bad specs raise SpecError."""
    raw = read_metadata(model, where).get(SPEC_METADATA_NAME)
    if raw is None:
        return None
    try:
        return ModelSpec.from_json(raw)
    except SpecError as e:
        raise SpecError(f"{where}: embedded spec is invalid: {e}") from None


def read_spec(path: str | Path) -> ModelSpec | None:
    """The spec embedded in a ``.tflite`` file, or None when it carries none."""
    return spec_from_model_bytes(read_model_bytes(path), str(path))


def _schema():
    for name in (
        "ai_edge_litert.schema_py_generated",
        "tensorflow.lite.python.schema_py_generated",
    ):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(
        "embedding a spec needs the TFLite schema: install ai-edge-litert (or tensorflow)"
    )


def embed_spec(model: bytes, spec: ModelSpec) -> bytes:
    """A copy of ``model`` with ``spec`` embedded (replacing an earlier edgereg spec)."""
    import flatbuffers

    schema = _schema()
    read_metadata(model)  # validate first: clear error on garbage
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    payload = spec.to_json(indent=None).encode("utf-8")
    m.metadata = [md for md in (m.metadata or []) if _name(md.name) != SPEC_METADATA_NAME]
    buf = schema.BufferT()
    buf.data = list(payload)
    m.buffers = list(m.buffers or []) + [buf]
    md = schema.MetadataT()
    md.name = SPEC_METADATA_NAME
    md.buffer = len(m.buffers) - 1
    m.metadata.append(md)
    builder = flatbuffers.Builder(len(model) + len(payload) + 1024)
    builder.Finish(m.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return append_associated_files(bytes(builder.Output()), associated_files(model))


def associated_files(model: bytes) -> dict[str, bytes]:
    """The files zipped after the flatbuffer (standard metadata's labels etc.), by name."""
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as z:
            return {n: z.read(n) for n in z.namelist()}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return {}


def append_associated_files(model: bytes, files: dict[str, bytes]) -> bytes:
    """``model`` with ``files`` zipped after it, as the TFLite metadata populator does (a
    ZIP appended to the flatbuffer, offsets from the start of the file)."""
    if not files:
        return model
    buf = io.BytesIO(model)
    buf.seek(0, io.SEEK_END)
    # stored, not deflated: TFLite's metadata readers map the files in place
    with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def _name(v: str | bytes | None) -> str:
    return v.decode() if isinstance(v, bytes) else (v or "")
