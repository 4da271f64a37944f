"""Read and embed the model spec inside a ``.tflite`` file.

A TFLite file is a flatbuffer whose root ``Model`` table has a ``metadata`` vector of
``(name, buffer index)`` entries. edgereg stores its spec as UTF-8 JSON in a buffer under
the name :data:`SPEC_METADATA_NAME`. The reader below walks the flatbuffer by hand (a
few dozen lines, bounds-checked), so the device needs neither TensorFlow nor the
``flatbuffers`` package to read it. The writer uses the TFLite schema's object API
(``ai_edge_litert`` ships it; the workstation also has TensorFlow's copy).
"""

from __future__ import annotations

import importlib
import struct
from pathlib import Path

from .errors import ModelFileError, SpecError
from .spec import ModelSpec

SPEC_METADATA_NAME = "edgereg_spec"
TFLITE_IDENTIFIER = b"TFL3"
#: A sane upper bound for a model file that is read whole into memory.
MAX_MODEL_BYTES = 1 << 31

# Field indices in the TFLite schema (tensorflow/lite/schema/schema.fbs).
_MODEL_BUFFERS = 4
_MODEL_METADATA = 6
_METADATA_NAME = 0
_METADATA_BUFFER = 1
_BUFFER_DATA = 0
_BUFFER_OFFSET = 1
_BUFFER_SIZE = 2


class _Reader:
    """Bounds-checked access to a flatbuffer; every bad offset is a ModelFileError."""

    def __init__(self, buf: bytes, where: str) -> None:
        self.buf = buf
        self.where = where

    def _fail(self, what: str) -> ModelFileError:
        return ModelFileError(f"{self.where}: not a valid TFLite flatbuffer ({what})")

    def u32(self, pos: int) -> int:
        if pos < 0 or pos + 4 > len(self.buf):
            raise self._fail(f"offset {pos} outside the file")
        return struct.unpack_from("<I", self.buf, pos)[0]

    def i32(self, pos: int) -> int:
        if pos < 0 or pos + 4 > len(self.buf):
            raise self._fail(f"offset {pos} outside the file")
        return struct.unpack_from("<i", self.buf, pos)[0]

    def u16(self, pos: int) -> int:
        if pos < 0 or pos + 2 > len(self.buf):
            raise self._fail(f"offset {pos} outside the file")
        return struct.unpack_from("<H", self.buf, pos)[0]

    def u64(self, pos: int) -> int:
        if pos < 0 or pos + 8 > len(self.buf):
            raise self._fail(f"offset {pos} outside the file")
        return struct.unpack_from("<Q", self.buf, pos)[0]

    def field(self, table: int, index: int) -> int | None:
        """Absolute position of a table's field, or None when it is absent."""
        vtable = table - self.i32(table)
        vsize = self.u16(vtable)
        if vsize < 4 or vsize % 2:
            raise self._fail("corrupt vtable")
        slot = 4 + 2 * index
        if slot >= vsize:
            return None
        off = self.u16(vtable + slot)
        return table + off if off else None

    def indirect(self, pos: int) -> int:
        return pos + self.u32(pos)

    def vector(self, pos: int) -> tuple[int, int]:
        """(first element position, length) of the vector referenced at ``pos``."""
        vec = self.indirect(pos)
        n = self.u32(vec)
        if vec + 4 + n > len(self.buf):
            raise self._fail("vector runs past the end of the file")
        return vec + 4, n

    def table_vector(self, table: int, index: int) -> list[int]:
        pos = self.field(table, index)
        if pos is None:
            return []
        start, n = self.vector(pos)
        if start + 4 * n > len(self.buf):
            raise self._fail("vector runs past the end of the file")
        return [self.indirect(start + 4 * i) for i in range(n)]

    def string(self, table: int, index: int) -> str:
        pos = self.field(table, index)
        if pos is None:
            return ""
        start, n = self.vector(pos)
        return self.buf[start : start + n].decode("utf-8", errors="replace")


def read_metadata(model: bytes, where: str = "model") -> dict[str, bytes]:
    """All metadata entries of a TFLite flatbuffer, name -> bytes of its buffer."""
    if len(model) < 8:
        raise ModelFileError(f"{where}: only {len(model)} bytes, too short to be a TFLite model")
    if model[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError(
            f"{where}: not a TFLite model (no 'TFL3' identifier); export one with `edgereg convert`"
        )
    r = _Reader(model, where)
    root = r.indirect(0)
    buffers = r.table_vector(root, _MODEL_BUFFERS)
    out: dict[str, bytes] = {}
    for entry in r.table_vector(root, _MODEL_METADATA):
        name = r.string(entry, _METADATA_NAME)
        pos = r.field(entry, _METADATA_BUFFER)
        index = r.u32(pos) if pos is not None else 0
        if index >= len(buffers):
            raise ModelFileError(f"{where}: metadata {name!r} points at a missing buffer {index}")
        out[name] = _buffer_bytes(r, buffers[index])
    return out


def _buffer_bytes(r: _Reader, buffer: int) -> bytes:
    pos = r.field(buffer, _BUFFER_DATA)
    if pos is not None:
        start, n = r.vector(pos)
        return bytes(r.buf[start : start + n])
    # Large models keep buffer data after the flatbuffer, addressed by offset and size.
    opos, spos = r.field(buffer, _BUFFER_OFFSET), r.field(buffer, _BUFFER_SIZE)
    if opos is None or spos is None:
        return b""
    off, size = r.u64(opos), r.u64(spos)
    if off <= 1 or off + size > len(r.buf):
        raise r._fail("buffer offset outside the file")
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
    return bytes(builder.Output())


def _name(v: str | bytes | None) -> str:
    return v.decode() if isinstance(v, bytes) else (v or "")
