"""Fuzz the device-side spec/metadata reader: only ModelFileError or SpecError may escape.

Inputs: every truncation of a real ``.tflite`` (the committed fixture), hypothesis
mutations of its bytes (anywhere, and inside the embedded spec JSON), random JSON values,
random spec-shaped objects, and huge / deeply nested specs. Hypothesis runs derandomized
(fixed seed, no example database), so the counts printed with ``-s`` are reproducible.
The ``.pth`` reader is fuzzed in ``tests/test_weights.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.errors import ModelFileError, SpecError
from edge_runtime.metadata import SPEC_METADATA_NAME, read_metadata, spec_from_model_bytes
from edge_runtime.spec import MAX_SPEC_BYTES, MAX_SPEC_DEPTH, ModelSpec

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_int8.tflite"
MODEL = FIXTURE.read_bytes()
SPEC_JSON = read_metadata(MODEL)[SPEC_METADATA_NAME]
SPEC_AT = MODEL.index(SPEC_JSON)
EXAMPLES = 600
ALLOWED = (ModelFileError, SpecError)
COUNTS: dict[str, dict[str, int]] = {}

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


def _count(name: str, outcome: str) -> None:
    c = COUNTS.setdefault(name, {"inputs": 0})
    c["inputs"] += 1
    c[outcome] = c.get(outcome, 0) + 1


def _read_model(data: bytes, name: str) -> None:
    """Both public entry points on ``data``; anything but the documented errors fails."""
    try:
        read_metadata(data, "fuzz.tflite")
        spec = spec_from_model_bytes(data, "fuzz.tflite")
    except ModelFileError as e:
        assert "fuzz.tflite" in str(e)
        _count(name, "ModelFileError")
        return
    except SpecError as e:
        assert "fuzz.tflite" in str(e)
        _count(name, "SpecError")
        return
    assert spec is None or isinstance(spec, ModelSpec)
    _count(name, "read" if spec is not None else "no spec")


def _read_spec(text: str | bytes, name: str) -> None:
    try:
        spec = ModelSpec.from_json(text)
    except SpecError:
        _count(name, "SpecError")
        return
    assert isinstance(spec, ModelSpec)
    # whatever was accepted survives its own round trip
    assert ModelSpec.from_json(spec.to_json()) == spec
    _count(name, "read")


def test_every_truncation_of_a_real_model() -> None:
    for n in range(len(MODEL)):
        _read_model(MODEL[:n], "truncations")
    c = COUNTS["truncations"]
    print(f"truncations: {c}")
    assert c["inputs"] == len(MODEL)
    assert c.get("ModelFileError", 0) > 0
    # A prefix that still holds the root table and the metadata reads back: this reader
    # only finds the spec. The runtime's structure check refuses such files (the
    # truncated-model rows of tests/test_reliability.py).


@st.composite
def _mutated(draw, region: tuple[int, int] = (0, len(MODEL))) -> bytes:
    data = bytearray(MODEL)
    lo, hi = region
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "set", "word", "insert", "delete", "cut"]))
        pos = draw(st.integers(lo, max(lo, min(hi, len(data)) - 1)))
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "word":  # offsets and lengths are 32-bit words: hit them whole
            v = draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, len(data)]))
            data[pos : pos + 4] = v.to_bytes(4, "little")
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 32))]
        elif op == "cut" and draw(st.booleans()):
            del data[pos:]
    return bytes(data)


def test_fuzz_mutated_model_bytes() -> None:
    @FUZZ
    @given(_mutated())
    def run(data: bytes) -> None:
        _read_model(data, "mutated model")

    run()
    print(f"mutated model: {COUNTS['mutated model']}")
    assert COUNTS["mutated model"]["inputs"] >= EXAMPLES // 2


def test_fuzz_mutated_embedded_spec() -> None:
    """Mutations inside the spec's bytes: the flatbuffer stays valid, the JSON does not."""

    @FUZZ
    @given(_mutated((SPEC_AT, SPEC_AT + len(SPEC_JSON))))
    def run(data: bytes) -> None:
        _read_model(data, "mutated spec")

    run()
    c = COUNTS["mutated spec"]
    print(f"mutated embedded spec: {c}")
    assert c["inputs"] >= EXAMPLES // 2 and c.get("SpecError", 0) > 0


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=10), kids, max_size=5)
    ),
    max_leaves=30,
)
_FIELDS = list(ModelSpec.__dataclass_fields__)
_field_value = st.one_of(
    _json,
    st.sampled_from(["point", "keypoints", "value", "class", "RGB", "BGR", "area", "hflip"]),
    st.integers(-10, 5000),
    st.sampled_from([10**400, -(10**400), 2**63, 1e308, -0.0, True]),
    st.lists(st.one_of(st.integers(-3, 300), st.floats(), st.text(max_size=5)), max_size=4),
    st.lists(st.lists(st.integers(-2, 5), max_size=3), max_size=3),
)


@st.composite
def _spec_like(draw) -> dict:
    """Mostly-valid specs with a few fields replaced or added: reaches deep validation."""
    task = draw(st.sampled_from(["point", "keypoints", "value", "class"]))
    base = json.loads(_base(task).to_json())
    for key in draw(st.lists(st.sampled_from(_FIELDS + ["bogus"]), max_size=3)):
        if draw(st.booleans()) and key in base:
            del base[key]
        else:
            base[key] = draw(_field_value)
    return base


def _base(task: str) -> ModelSpec:
    kw = {
        "point": {"num_keypoints": 1},
        "keypoints": {"num_keypoints": 3, "flip_pairs": ((0, 1),)},
        "value": {"value_range": (80.0, 350.0)},
        "class": {"class_names": ("a", "b")},
    }[task]
    return ModelSpec(task=task, input_height=32, input_width=32, **kw)


def test_fuzz_random_json_values() -> None:
    @FUZZ
    @given(_json)
    def run(v) -> None:
        _read_spec(json.dumps(v), "random JSON")

    run()
    print(f"random JSON: {COUNTS['random JSON']}")


def test_fuzz_spec_shaped_objects() -> None:
    @FUZZ
    @given(_spec_like())
    def run(d: dict) -> None:
        _read_spec(json.dumps(d), "spec-shaped")

    run()
    c = COUNTS["spec-shaped"]
    print(f"spec-shaped: {c}")
    assert c.get("read", 0) > 0 and c.get("SpecError", 0) > 0


def test_fuzz_raw_text_and_bytes() -> None:
    @FUZZ
    @given(st.one_of(st.binary(max_size=200), st.text(max_size=200)))
    def run(t) -> None:
        _read_spec(t, "raw text/bytes")

    run()
    print(f"raw text/bytes: {COUNTS['raw text/bytes']}")


def _valid() -> str:
    return _base("point").to_json()


HOSTILE = {
    "deep list": '{"task":"point","input_height":32,"input_width":32,"extra":'
    + "[" * 100_000
    + "]" * 100_000
    + "}",
    "deep just under the cap": '{"task":"point","input_height":32,"input_width":32,"extra":'
    + '{"a":' * (MAX_SPEC_DEPTH - 1)
    + "1"
    + "}" * (MAX_SPEC_DEPTH - 1)
    + "}",
    "deep one over the cap": '{"task":"point","input_height":32,"input_width":32,"extra":'
    + '{"a":' * MAX_SPEC_DEPTH
    + "1"
    + "}" * MAX_SPEC_DEPTH
    + "}",
    "unclosed depth": "[" * 1_000_000,
    "huge text": _valid()[:-1] + ', "name": "' + "x" * (MAX_SPEC_BYTES + 1) + '"}',
    "100 MB": " " * (100 * 1024 * 1024),
    "huge int": _valid()[:-1] + ', "input_height": 1' + "0" * 5000 + "}",
    "int past float": '{"task":"value","input_height":32,"input_width":32,'
    '"value_range":[1' + "0" * 400 + ",2]}",
    "NaN range": '{"task":"value","input_height":32,"input_width":32,"value_range":[NaN,2]}',
    "Infinity size": '{"task":"point","input_height":Infinity,"input_width":32}',
    "bool size": '{"task":"point","input_height":true,"input_width":32}',
    "lone surrogate": '{"task":"\\ud800","input_height":32,"input_width":32}',
    "not UTF-8": b'{"task":"\xff\xfe","input_height":32,"input_width":32}',
    "UTF-16": _valid().encode("utf-16"),
    "nul": '{"task":"point\\u0000","input_height":32,"input_width":32}',
    "duplicate keys": '{"task":"point","task":"value","input_height":32,"input_width":32}',
    "many keys": "{" + ",".join(f'"k{i}":0' for i in range(5000)) + "}",
    "top-level list": "[1,2,3]",
    "escaped quotes in depth count": '{"name":"\\"[[[[[[[[[[[[","task":"point",'
    '"input_height":32,"input_width":32,"num_keypoints":1}',
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_huge_deep_and_odd_specs(name: str) -> None:
    text = HOSTILE[name]
    try:
        spec = ModelSpec.from_json(text)
    except SpecError as e:
        assert str(e).split(":")[0]  # names the field or "spec"
        return
    # only the harmless ones may be accepted
    assert name in {"deep just under the cap", "escaped quotes in depth count"}, spec
    assert math.isfinite(spec.input_range[1])
