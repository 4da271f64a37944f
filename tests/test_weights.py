"""The torch-free .pth reader: correct tensors from both PyTorch formats, and nothing else.

Malicious files are made with Python's own ``pickle.dumps`` of objects whose
``__reduce__`` would run ``os.system`` / ``eval`` / ``subprocess`` (exactly what a hostile
checkpoint does); the tests prove the reader refuses them, names the global, and that the
marker file the payload would create does not exist afterwards. No torch is needed here.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.errors import WeightsError
from train import weights as W

FIXTURES = Path(__file__).parent / "fixtures"
TINY_ZIP = FIXTURES / "tiny_state_dict_zip.pth"


# --- writers for test files (hand-assembled pickle opcodes, like torch.save emits) -----


def _u(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _i(n: int) -> bytes:
    return b"I%d\n" % n


def _tup(vals) -> bytes:
    return b"(" + b"".join(_i(v) for v in vals) + b"t"


def _state_dict_pickle(tensors: dict[str, np.ndarray], storage_global: str = "FloatStorage"):
    """Protocol-2 pickle of an OrderedDict of float32 tensors, one storage each."""
    out = [b"\x80\x02ccollections\nOrderedDict\n)R("]
    for key, (name, arr) in enumerate(tensors.items()):
        stride = [int(s // arr.itemsize) for s in arr.strides]
        out += [
            _u(name),
            b"ctorch._utils\n_rebuild_tensor_v2\n(",
            b"(" + _u("storage") + f"ctorch\n{storage_global}\n".encode(),
            _u(str(key)) + _u("cpu") + _i(arr.size) + b"NtQ",
            _i(0) + _tup(arr.shape) + _tup(stride) + b"\x89",
            b"ccollections\nOrderedDict\n)RtR",
        ]
    out.append(b"u.")
    return b"".join(out)


def legacy_pth(tensors: dict[str, np.ndarray], main: bytes | None = None) -> bytes:
    """A legacy-format (torch < 1.6) file: magic, protocol, sys_info, pickle, keys, data."""
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}
    parts = [
        pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2),
        pickle.dumps(1001, protocol=2),
        pickle.dumps(sys_info, protocol=2),
        main if main is not None else _state_dict_pickle(tensors),
        pickle.dumps([str(k) for k in range(len(tensors))], protocol=2),
    ]
    for arr in tensors.values():
        parts.append(struct.pack("<q", arr.size) + np.ascontiguousarray(arr, "<f4").tobytes())
    return b"".join(parts)


def zip_pth(data_pkl: bytes, storages: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/byteorder", "little")
        for key, raw in (storages or {}).items():
            zf.writestr(f"archive/data/{key}", raw)
    return buf.getvalue()


TENSORS = {
    "w": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
    "b": np.array([0.5, -1.0], dtype=np.float32),
}


# --- correct reading -----------------------------------------------------------------


def test_torch_zip_format_made_by_real_torch():
    sd = W.read_torch_state_dict(TINY_ZIP)
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(sd["a"], a)
    np.testing.assert_array_equal(sd["b"], a.T)  # non-contiguous view of a's storage
    np.testing.assert_array_equal(sd["c"], a[1])  # storage offset 4
    assert sd["d"].dtype == np.int64 and sd["d"].tolist() == [0, 1, 2]
    assert sd["e"].dtype == np.float64 and sd["e"].shape == () and float(sd["e"]) == 2.5
    assert sd["f"].dtype == np.float16 and sd["f"].tolist() == [1.5, -2.0]


def test_legacy_format_round_trip(tmp_path):
    p = tmp_path / "legacy.pth"
    p.write_bytes(legacy_pth(TENSORS))
    sd = W.read_torch_state_dict(p)
    assert list(sd) == ["w", "b"]
    for k, v in TENSORS.items():
        np.testing.assert_array_equal(sd[k], v)
        assert sd[k].dtype == np.float32


def test_zip_format_hand_made(tmp_path):
    p = tmp_path / "zip.pth"
    storages = {str(i): v.tobytes() for i, v in enumerate(TENSORS.values())}
    p.write_bytes(zip_pth(_state_dict_pickle(TENSORS), storages))
    sd = W.read_torch_state_dict(p)
    np.testing.assert_array_equal(sd["w"], TENSORS["w"])


@pytest.mark.skipif(W.find_torch_mobilenet_v2() is None, reason="weights package not installed")
def test_packaged_torchvision_file_reads():
    src = W.find_torch_mobilenet_v2()
    assert W.file_sha256(src).startswith(W.TORCH_MOBILENET_V2_SHA256_PREFIX)
    sd = W.read_torch_state_dict(src)
    assert len(sd) == 314  # 52 conv/bn modules' tensors + classifier
    assert sd["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert sd["classifier.1.weight"].shape == (1000, 1280)
    assert all(np.isfinite(v).all() for v in sd.values())


# --- hostile files -------------------------------------------------------------------


class _Payload:
    """Pickles to a call of ``func(*args)``, like a hostile checkpoint."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _payloads(marker: Path):
    return {
        "os.system": (_Payload(os.system, (f"touch {marker}",)), "system"),
        "builtins.eval": (_Payload(builtins.eval, (f"open({str(marker)!r}, 'w')",)), "eval"),
        "builtins.exec": (_Payload(builtins.exec, (f"open({str(marker)!r}, 'w')",)), "exec"),
        "subprocess": (_Payload(subprocess.check_call, (["touch", str(marker)],)), "check_call"),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "builtins.exec", "subprocess"])
@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize("container", ["zip", "legacy", "legacy_first", "nested"])
def test_code_running_pickle_is_refused_and_nothing_runs(tmp_path, kind, protocol, container):
    marker = tmp_path / "pwned"
    payload, global_name = _payloads(marker)[kind]
    if container == "nested":  # hidden as a value of an otherwise normal state_dict
        evil = pickle.dumps({"features.0.0.weight": payload}, protocol=protocol)
        data = zip_pth(evil)
    else:
        evil = pickle.dumps(payload, protocol=protocol)
        if container == "zip":
            data = zip_pth(evil)
        elif container == "legacy":
            data = legacy_pth(TENSORS, main=evil)
        else:
            data = evil + legacy_pth(TENSORS)
    p = tmp_path / "evil.pth"
    p.write_bytes(data)
    with pytest.raises(WeightsError) as e:
        W.read_torch_state_dict(p)
    msg = str(e.value)
    assert str(p) in msg and "refused" in msg and global_name in msg
    assert not marker.exists()


@pytest.mark.parametrize(
    "module,name",
    [
        ("torch._utils", "_rebuild_tensor"),
        ("torch", "load"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("collections", "namedtuple"),
        ("builtins", "getattr"),
        ("copyreg", "_reconstructor"),
    ],
)
def test_unexpected_global_is_refused_by_name(tmp_path, module, name):
    p = tmp_path / "odd.pth"
    p.write_bytes(zip_pth(f"c{module}\n{name}\n)R.".encode()))
    with pytest.raises(WeightsError, match=rf"'{module}\.{name}'"):
        W.read_torch_state_dict(p)


def test_numpy_pickle_is_refused(tmp_path):
    p = tmp_path / "np.pth"
    p.write_bytes(zip_pth(pickle.dumps({"w": np.zeros(3)}, protocol=2)))
    with pytest.raises(WeightsError, match="refused"):
        W.read_torch_state_dict(p)


def test_storage_type_cannot_be_mutated_by_build(tmp_path):
    # BUILD on a storage stand-in (setting its dtype) must fail, not corrupt later loads.
    evil = b"\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeI1\nsb."
    p = tmp_path / "build.pth"
    p.write_bytes(zip_pth(evil))
    with pytest.raises(WeightsError, match="modify an internal object"):
        W.read_torch_state_dict(p)
    assert W.read_torch_state_dict(TINY_ZIP)["a"].dtype == np.float32


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda: TINY_ZIP.read_bytes()[: TINY_ZIP.stat().st_size // 2], ""),
        (lambda: legacy_pth(TENSORS)[:-10], "truncated"),
        (lambda: legacy_pth(TENSORS)[:200], ""),
        (lambda: b"", ""),
        (lambda: b"PK\x03\x04 definitely not a zip", ""),
        (lambda: os.urandom(4096), ""),
        (lambda: b"<html>404 not found</html>", ""),
        (lambda: zip_pth(b"\x80\x02}."), "no state_dict"),
        (lambda: zip_pth(_state_dict_pickle(TENSORS)), "missing"),
    ],
)
def test_broken_files_give_weights_error_naming_the_file(tmp_path, make, needle):
    p = tmp_path / "broken.pth"
    p.write_bytes(make())
    with pytest.raises(WeightsError) as e:
        W.read_torch_state_dict(p)
    assert str(p) in str(e.value) and needle in str(e.value)


def test_tensor_past_its_storage_is_refused(tmp_path):
    main = _state_dict_pickle({"w": np.zeros((4, 4), np.float32)})
    data = legacy_pth({"w": np.zeros((4, 4), np.float32)}, main=main)
    # Shrink the declared size of the storage (16 -> 2 elements) and its data to match.
    data = data.replace(_i(16) + b"NtQ", _i(2) + b"NtQ")
    data = data[: -(8 + 64)] + struct.pack("<q", 2) + b"\0" * 8
    p = tmp_path / "past.pth"
    p.write_bytes(data)
    with pytest.raises(WeightsError, match="past the end"):
        W.read_torch_state_dict(p)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="cannot read"):
        W.read_torch_state_dict(tmp_path / "nope.pth")


# --- fuzzing -------------------------------------------------------------------------

FUZZ_EXAMPLES = 400
_SEEDS = [legacy_pth(TENSORS), TINY_ZIP.read_bytes()]


@st.composite
def _mutated(draw):
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
    return bytes(data)


def test_fuzz_pth_reader_only_weights_error_escapes():
    counts = {"inputs": 0, "ok": 0, "refused": 0}

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(_mutated())
    def run(data: bytes) -> None:
        counts["inputs"] += 1
        try:
            sd = W.read_torch_state_dict_bytes(data, "fuzz.pth")
        except WeightsError as e:
            assert "fuzz.pth" in str(e)
            counts["refused"] += 1
            return
        counts["ok"] += 1
        assert all(isinstance(v, np.ndarray) for v in sd.values())

    run()
    print(f"pth fuzz: {counts}")
    assert counts["inputs"] >= FUZZ_EXAMPLES // 2
