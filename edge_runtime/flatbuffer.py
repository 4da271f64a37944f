"""Bounds-checked reading of a TFLite flatbuffer, by hand.

A ``.tflite`` file is a flatbuffer (tensorflow/lite/schema/schema.fbs). Reading the few
fields edgereg needs (the metadata, the structure checked before allocation) takes one
small reader, so the device needs neither TensorFlow, the ``flatbuffers`` package nor the
schema module (whose import alone costs ~0.2 s at start-up).

Every offset, length and vtable is checked against the file before it is used: a corrupt
or hostile file is a :class:`~edge_runtime.errors.ModelFileError` naming the file, never
an ``IndexError`` or ``struct.error``. The field numbers of the schema tables read here
are the constants below.
"""

from __future__ import annotations

import struct

import numpy as np

from .errors import ModelFileError

# Field numbers in the TFLite schema (tensorflow/lite/schema/schema.fbs).
MODEL_VERSION = 0
MODEL_OPERATOR_CODES = 1
MODEL_SUBGRAPHS = 2
MODEL_BUFFERS = 4
MODEL_METADATA = 6
OPERATOR_CODE_DEPRECATED_BUILTIN = 0
OPERATOR_CODE_VERSION = 2
OPERATOR_CODE_BUILTIN = 3
SUBGRAPH_TENSORS = 0
SUBGRAPH_INPUTS = 1
SUBGRAPH_OUTPUTS = 2
SUBGRAPH_OPERATORS = 3
TENSOR_SHAPE = 0
TENSOR_TYPE = 1
TENSOR_BUFFER = 2
TENSOR_QUANTIZATION = 4
QUANT_SCALE = 2
QUANT_ZERO_POINT = 3
QUANT_DIMENSION = 6
OPERATOR_OPCODE_INDEX = 0
OPERATOR_INPUTS = 1
OPERATOR_OUTPUTS = 2
OPERATOR_OPTIONS_TYPE = 3
OPERATOR_INTERMEDIATES = 8
BUFFER_DATA = 0
BUFFER_OFFSET = 1
BUFFER_SIZE = 2
METADATA_NAME = 0
METADATA_BUFFER = 1

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")


class FlatbufferReader:
    """Read-only, bounds-checked access to the tables, scalars and vectors of a flatbuffer.

    Positions are absolute byte offsets into ``buf``. A table's field is found through its
    vtable; an absent field reads as its default (``None``, ``[]``, ``""`` or the given
    scalar default). Every bad offset is a ModelFileError naming ``where``.
    """

    def __init__(self, buf: bytes, where: str) -> None:
        self.buf = buf
        self.where = where

    def fail(self, what: str) -> ModelFileError:
        """The error for a file that is not a valid flatbuffer, naming the file."""
        return ModelFileError(f"{self.where}: not a valid TFLite flatbuffer ({what})")

    # ----------------------------------------------------------------- at a position
    def _unpack(self, fmt: struct.Struct, pos: int) -> int:
        if pos < 0 or pos + fmt.size > len(self.buf):
            raise self.fail(f"offset {pos} outside the file")
        return fmt.unpack_from(self.buf, pos)[0]

    def u16(self, pos: int) -> int:
        return self._unpack(_U16, pos)

    def u32(self, pos: int) -> int:
        return self._unpack(_U32, pos)

    def i32(self, pos: int) -> int:
        return self._unpack(_I32, pos)

    def u64(self, pos: int) -> int:
        return self._unpack(_U64, pos)

    def indirect(self, pos: int) -> int:
        """The position an unsigned offset stored at ``pos`` points to."""
        return pos + self.u32(pos)

    def root(self) -> int:
        """The position of the root table."""
        return self.indirect(0)

    def vector(self, pos: int, itemsize: int = 1) -> tuple[int, int]:
        """(first element position, length) of the vector referenced at ``pos``."""
        vec = self.indirect(pos)
        n = self.u32(vec)
        if vec + 4 + n * itemsize > len(self.buf):
            raise self.fail("vector runs past the end of the file")
        return vec + 4, n

    # ----------------------------------------------------------------- table fields
    def field(self, table: int, index: int) -> int | None:
        """Absolute position of a table's field, or None when it is absent."""
        vtable = table - self.i32(table)
        vsize = self.u16(vtable)
        if vsize < 4 or vsize % 2:
            raise self.fail("corrupt vtable")
        slot = 4 + 2 * index
        if slot >= vsize:
            return None
        off = self.u16(vtable + slot)
        return table + off if off else None

    def scalar(self, table: int, index: int, fmt: str, default: int) -> int:
        """A scalar field (``struct`` format ``fmt``), or ``default`` when absent."""
        pos = self.field(table, index)
        if pos is None:
            return default
        if pos + struct.calcsize(fmt) > len(self.buf):
            raise self.fail("field outside the file")
        return struct.unpack_from(fmt, self.buf, pos)[0]

    def table(self, table: int, index: int) -> int | None:
        """Position of a sub-table field, or None when it is absent."""
        pos = self.field(table, index)
        return None if pos is None else self.indirect(pos)

    def tables(self, table: int, index: int) -> list[int]:
        """Positions of the tables in a vector-of-tables field ([] when absent)."""
        pos = self.field(table, index)
        if pos is None:
            return []
        start, n = self.vector(pos, 4)
        return [self.indirect(start + 4 * i) for i in range(n)]

    def vector_length(self, table: int, index: int) -> int:
        """Number of elements of a vector field (0 when absent)."""
        pos = self.field(table, index)
        return 0 if pos is None else self.u32(self.indirect(pos))

    def byte_vector(self, table: int, index: int) -> bytes | None:
        """A ``[ubyte]`` field's bytes, or None when it is absent."""
        pos = self.field(table, index)
        if pos is None:
            return None
        start, n = self.vector(pos)
        return bytes(self.buf[start : start + n])

    def string(self, table: int, index: int) -> str:
        """A string field (undecodable bytes replaced), or "" when it is absent."""
        pos = self.field(table, index)
        if pos is None:
            return ""
        start, n = self.vector(pos)
        return self.buf[start : start + n].decode("utf-8", errors="replace")

    def array(self, table: int, index: int, dtype: str) -> np.ndarray:
        """A vector-of-scalars field as a read-only numpy view (empty when absent)."""
        dt = np.dtype(dtype)
        pos = self.field(table, index)
        if pos is None:
            return np.zeros(0, dt)
        start, n = self.vector(pos, dt.itemsize)
        return np.frombuffer(self.buf, dt, n, start)
