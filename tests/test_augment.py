"""Augmentation moves labels with pixels: a dot drawn at the label stays under the label."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.spec import ModelSpec
from train.augment import AugmentConfig, Augmenter, augment_batch

H = W = 64
SIGMA = 1.5
MARGIN = 0.25


def _dots(points: np.ndarray, h: int = H, w: int = W) -> list[np.ndarray]:
    """One image per point: a Gaussian dot centred at the normalized (x, y), pixel centres i+0.5."""
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    out = []
    for x, y in points:
        if not (np.isfinite(x) and np.isfinite(y)):  # a missing keypoint: no dot
            out.append(np.zeros((h, w, 3), np.uint8))
            continue
        g = np.exp(-((xx - x * w) ** 2 + (yy - y * h) ** 2) / (2 * SIGMA**2))
        out.append(np.repeat((g * 255).astype(np.uint8)[..., None], 3, axis=2))
    return out


def _centroid(img: np.ndarray) -> tuple[float, float]:
    g = img[..., 0].astype(np.float64)
    g = np.where(g > 0.2 * g.max(), g, 0.0)
    h, w = g.shape
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    return float((g * xx).sum() / g.sum() / w), float((g * yy).sum() / g.sum() / h)


def _check_each_point_follows(spec: ModelSpec, pts: np.ndarray, seed: int) -> np.ndarray:
    """Augment K single-dot images with the same random draw; each dot must sit on its label."""
    aug = Augmenter(spec, AugmentConfig(photometric=False))
    moved = None
    for img_k in _dots(pts, *spec_hw(spec)):
        # Same seed -> same transform for every keypoint's image; the label order matters.
        out_img, out_pts = aug(img_k, pts.copy(), np.random.default_rng(seed))
        moved = out_pts if moved is None else moved
        assert np.allclose(out_pts, moved, equal_nan=True)
        given = np.isfinite(out_pts)
        assert np.all((out_pts[given] >= -MARGIN) & (out_pts[given] <= 1 + MARGIN)), (
            "a label went beyond the margin"
        )
    # Now test where each dot went: a dot k lands under the label at the index it maps to.
    h, w = spec_hw(spec)
    for k, img_k in enumerate(_dots(pts, h, w)):
        out_img, out_pts = aug(img_k, pts.copy(), np.random.default_rng(seed))
        if not np.isfinite(pts[k]).all():
            continue  # a missing keypoint has no dot
        if out_img[..., 0].max() < 128:
            # the dot left the frame with its label: the label is outside it too
            j = _partner(spec, k, out_pts)
            assert not np.all((out_pts[j] > 0.02) & (out_pts[j] < 0.98)), out_pts[j]
            continue
        cx, cy = _centroid(out_img)
        dists = np.hypot(out_pts[:, 0] - cx, out_pts[:, 1] - cy) * w
        j = int(np.nanargmin(dists))
        # 1.5 px: a perspective warp skews the blob itself, which moves its centroid a little.
        assert dists[j] < 1.5, f"dot {k} is {dists[j]:.2f} px from its label"
        # The label that sits under dot k is k itself, or its flip partner.
        assert j == k or (j, k) in spec.flip_pairs or (k, j) in spec.flip_pairs
    return moved


def _partner(spec: ModelSpec, k: int, out_pts: np.ndarray) -> int:
    """Where label k went: k itself, or its flip partner (whichever is given)."""
    for a, b in spec.flip_pairs:
        if k in (a, b):
            other = b if k == a else a
            return k if np.isfinite(out_pts[k]).all() else other
    return k


def spec_hw(spec: ModelSpec) -> tuple[int, int]:
    return spec.input_height, spec.input_width


inner = st.floats(min_value=0.12, max_value=0.88)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(x=inner, y=inner, seed=st.integers(0, 2**31 - 1))
def test_point_dot_stays_under_label(x: float, y: float, seed: int) -> None:
    spec = ModelSpec(task="point", input_height=H, input_width=W, num_keypoints=1)
    _check_each_point_follows(spec, np.array([[x, y]], np.float32), seed)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(
    pts=st.lists(st.tuples(inner, inner), min_size=4, max_size=4),
    seed=st.integers(0, 2**31 - 1),
    inv=st.sampled_from([(), ("vflip",), ("rot90",), ("rot90", "vflip")]),
)
def test_keypoints_follow_dots_and_swap_on_flip(pts, seed, inv) -> None:
    arr = np.array(pts, np.float32)
    # Keep dots apart so each centroid is unambiguous.
    d = np.hypot(*(arr[:, None, :] - arr[None, :, :]).transpose(2, 0, 1))
    if np.min(d[np.triu_indices(4, 1)]) < 0.15:
        return
    spec = ModelSpec(
        task="keypoints",
        input_height=H,
        input_width=W,
        num_keypoints=4,
        flip_pairs=((0, 1), (2, 3)),
        invariances=inv,
    )
    _check_each_point_follows(spec, arr, seed)


def test_hflip_swaps_pairs_exactly() -> None:
    spec = ModelSpec(
        task="keypoints", input_height=H, input_width=W, num_keypoints=2, flip_pairs=((0, 1),)
    )
    aug = Augmenter(spec, AugmentConfig(photometric=False, p_warp=0.0))
    pts = np.array([[0.2, 0.3], [0.7, 0.4]], np.float32)
    flipped = 0
    for s in range(20):
        img = np.zeros((H, W, 3), np.uint8)
        img[:, :8] = 255  # a bar at the left edge shows whether the image was flipped
        out_img, out = aug(img, pts, np.random.default_rng(s))
        if out_img[0, -1, 0] == 255:  # flipped
            flipped += 1
            # point 0 (left) became the mirror of point 1, and vice versa
            np.testing.assert_allclose(out, [[1 - 0.7, 0.4], [1 - 0.2, 0.3]], atol=1e-6)
        else:
            np.testing.assert_allclose(out, pts)
    assert 0 < flipped < 20


def test_keypoints_without_flip_pairs_are_never_mirrored() -> None:
    spec = ModelSpec(task="keypoints", input_height=H, input_width=W, num_keypoints=2)
    aug = Augmenter(spec, AugmentConfig(photometric=False, p_warp=0.0))
    pts = np.array([[0.2, 0.3], [0.7, 0.4]], np.float32)
    for s in range(20):
        _, out = aug(np.zeros((H, W, 3), np.uint8), pts, np.random.default_rng(s))
        np.testing.assert_allclose(out, pts)


def test_point_at_the_edge_may_leave_the_frame_but_not_the_margin() -> None:
    """A point near the border: a warp may push it out of the frame (it stays a valid
    target within the margin); warps that would push it beyond are resampled or skipped."""
    spec = ModelSpec(task="point", input_height=H, input_width=W, num_keypoints=1)
    aug = Augmenter(spec, AugmentConfig(photometric=False, shift=0.3, rotate_deg=30, p_warp=1.0))
    pts = np.array([[0.99, 0.01]], np.float32)
    left = 0
    for s in range(50):
        _, out = aug(np.zeros((H, W, 3), np.uint8), pts, np.random.default_rng(s))
        assert np.all((out >= -MARGIN) & (out <= 1 + MARGIN)), out
        left += int(not np.all((out >= 0) & (out <= 1)))
    assert 10 <= left < 50, f"{left} of 50 warps moved the point out of the frame"


@pytest.mark.parametrize(
    "inv", [("vflip",), ("rot90",), ("rot90", "vflip"), ("rotate",), ("hflip",)]
)
def test_a_missing_keypoint_stays_missing_and_the_others_follow(inv) -> None:
    """NaN (a missing keypoint) through flips, turns and warps: still NaN, at the index its
    label moved to (a flip swaps the pair); the given points still sit on their dots."""
    spec = ModelSpec(
        task="keypoints",
        input_height=H,
        input_width=W,
        num_keypoints=3,
        flip_pairs=((0, 1),),
        invariances=inv,
    )
    pts = np.array([[0.25, 0.3], [np.nan, np.nan], [0.5, 0.7]], np.float32)
    swapped = 0
    for seed in range(12):
        out = _check_each_point_follows(spec, pts, seed)
        missing = np.flatnonzero(~np.isfinite(out).all(axis=1))
        assert len(missing) == 1 and np.isnan(out[missing[0]]).all(), out
        assert missing[0] in (0, 1)  # its own index, or its flip partner's
        swapped += int(missing[0] == 0)
    assert 0 < swapped < 12  # flip pairs: a mirror is always allowed, half the time


@pytest.mark.parametrize("inv", [(), ("rot90", "hflip", "vflip"), ("rotate",)])
def test_value_augmentation_keeps_colour_and_target(inv) -> None:
    """Value tasks: declared invariances only, no colour shifts: a flat colour stays that colour."""
    spec = ModelSpec(
        task="value", input_height=H, input_width=W, value_range=(80.0, 350.0), invariances=inv
    )
    aug = Augmenter(spec)
    img = np.full((H, W, 3), (200, 120, 40), np.uint8)
    x, y = augment_batch(
        aug, np.stack([img] * 16), np.linspace(80, 350, 16, dtype=np.float32), 0, 3
    )
    np.testing.assert_array_equal(y, np.linspace(80, 350, 16, dtype=np.float32))
    means = x.reshape(16, -1, 3).mean(axis=1)
    # Exposure scales all channels together (at most 8 %); the channel ratio stays.
    ratios = means[:, 0] / means[:, 2]
    assert np.all(np.abs(ratios - 5.0) < 0.6), ratios


def test_augment_batch_is_deterministic_per_epoch() -> None:
    spec = ModelSpec(task="point", input_height=H, input_width=W, num_keypoints=1)
    aug = Augmenter(spec)
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 255, (6, H, W, 3), dtype=np.uint8)
    tg = rng.uniform(0.2, 0.8, (6, 1, 2)).astype(np.float32)
    a = augment_batch(aug, imgs, tg, seed=5, epoch=2)
    b = augment_batch(Augmenter(spec), imgs, tg, seed=5, epoch=2)
    c = augment_batch(aug, imgs, tg, seed=5, epoch=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


# --------------------------------------------------------------------------- directions
def _arrow(theta: float, px: int, py: int, size: int = 96) -> np.ndarray:
    """A green pivot and a red tip 30 px away in the image direction ``theta``."""
    import math

    img = np.zeros((size, size, 3), np.uint8)
    tip = (
        int(round(px + 30 * math.sin(math.radians(theta)))),
        int(round(py - 30 * math.cos(math.radians(theta)))),
    )
    cv2.circle(img, (px, py), 5, (0, 255, 0), -1)
    cv2.circle(img, tip, 5, (255, 0, 0), -1)
    return img


def _arrow_direction(img: np.ndarray) -> float | None:
    import math

    def centroid(mask: np.ndarray) -> tuple[float, float] | None:
        ys, xs = np.nonzero(mask)
        return (xs.mean(), ys.mean()) if len(xs) else None

    tip = centroid((img[..., 0] > 120) & (img[..., 1] < 90))
    pivot = centroid((img[..., 1] > 120) & (img[..., 0] < 90))
    if tip is None or pivot is None:
        return None
    return math.degrees(math.atan2(tip[0] - pivot[0], pivot[1] - tip[1])) % 360


@pytest.mark.parametrize("transform", ["hflip", "rot90", "rotate", "warp"])
def test_an_angle_label_turns_with_the_image(transform):
    """Read back from the pixels: after each transform the label is still where the arrow
    points (pivot -> tip), within the drawing's own rounding (~1 degree)."""
    from train import tasks
    from train.tasks import AugmentPolicy

    kind = tasks.get("angle")
    params = kind.spec_fields({"zero": 90.0, "counterclockwise": True}, None, None)["params"]
    spec = ModelSpec(task="angle", input_height=96, input_width=96, params=params)
    policy = AugmentPolicy(target="direction", **{transform: True})
    aug = Augmenter(spec, AugmentConfig(photometric=False, p_warp=1.0), policy=policy)
    rng = np.random.default_rng(3)
    errors = []
    for i in range(80):
        user = float(rng.uniform(0, 360))  # maths convention: 0 right, counter-clockwise
        image_deg = (90.0 - user) % 360
        img = _arrow(image_deg, int(rng.integers(40, 57)), int(rng.integers(40, 57)))
        out, label = aug(img, np.float32(user), np.random.default_rng(i))
        seen = _arrow_direction(out)
        if seen is None:  # the tip left the frame
            continue
        want = (90.0 - float(label)) % 360
        errors.append(abs((want - seen + 180) % 360 - 180))
    assert len(errors) > 60
    assert np.mean(errors) < 1.5 and np.max(errors) < 4.0, (np.mean(errors), np.max(errors))
