from __future__ import annotations

import json

import numpy as np
import pytest

from edge_runtime.errors import SpecError
from edge_runtime.spec import ModelSpec, parse_flip_pairs, parse_invariances


def _value_spec(**kw):
    base = dict(task="value", input_height=96, input_width=96, value_range=(80.0, 350.0))
    base.update(kw)
    return ModelSpec(**base)


def test_roundtrip_all_tasks():
    specs = [
        ModelSpec(task="point", input_height=96, input_width=128, num_keypoints=1),
        ModelSpec(
            task="keypoints",
            input_height=96,
            input_width=96,
            num_keypoints=4,
            flip_pairs=((0, 1), (2, 3)),
        ),
        _value_spec(invariances=("rot90", "hflip"), units="mg/L"),
        ModelSpec(task="class", input_height=64, input_width=64, class_names=("ok", "bad")),
    ]
    for s in specs:
        assert ModelSpec.from_json(s.to_json()) == s


def test_value_encode_decode_are_inverse():
    s = _value_spec()
    v = np.array([80.0, 215.0, 350.0])
    from train import tasks

    enc = tasks.get("value").training_target(s, v)
    assert np.allclose(enc[:, 0], [0.0, 0.5, 1.0])
    assert np.allclose(s.decode_output(enc), v)


def test_decode_checks_output_size():
    s = ModelSpec(task="keypoints", input_height=96, input_width=96, num_keypoints=4)
    assert s.decode_output(np.zeros(8)).shape == (4, 2)
    with pytest.raises(SpecError, match="output"):
        s.decode_output(np.zeros(6))


@pytest.mark.parametrize(
    "change,field",
    [
        ({"task": "regress"}, "task"),
        ({"input_height": 0}, "input_height"),
        ({"value_range": (5, 5)}, "value_range"),
        ({"value_range": None}, "value_range"),
        ({"color_order": "GRB"}, "color_order"),
        ({"invariances": ("spin",)}, "invariances"),
        ({"spec_version": 99}, "spec_version"),
    ],
)
def test_invalid_specs_name_the_field(change, field):
    with pytest.raises(SpecError, match=field):
        _value_spec(**change)


def test_from_json_refuses_garbage_huge_and_deep():
    with pytest.raises(SpecError, match="JSON"):
        ModelSpec.from_json("{not json")
    with pytest.raises(SpecError, match="larger"):
        ModelSpec.from_json("{" + " " * 70000 + "}")
    with pytest.raises(SpecError, match="nested"):
        ModelSpec.from_json('{"extra":' + "[" * 50 + "]" * 50 + "}")
    with pytest.raises(SpecError, match="unknown"):
        ModelSpec.from_json(json.dumps({**_value_spec().to_dict(), "bogus": 1}))
    with pytest.raises(SpecError, match="task"):
        ModelSpec.from_json("{}")


def test_parsers():
    assert parse_invariances("rot90,flip") == ("rot90", "hflip", "vflip")
    assert parse_flip_pairs("0:1, 2:3") == ((0, 1), (2, 3))
    with pytest.raises(SpecError):
        parse_invariances("wobble")
    with pytest.raises(SpecError):
        parse_flip_pairs("0-1")
