"""Label-respecting augmentation (albumentations 2.x for the warps and photometric jitter).

Coordinates are normalized to [0, 1] with the origin at the top-left CORNER of the image
(pixel ``i`` covers ``[i, i+1)``, its centre is ``i + 0.5``). Geometric transforms move
the labels with the pixels:

- horizontal flip (point always; keypoints only when ``flip_pairs`` says which points swap,
  or K == 1; value/class only when declared ``hflip``) swaps the declared keypoint pairs;
- vertical flip, 90-degree rotations and free rotation only when the spec declares them;
- point/keypoints: a mild random affine (rotation, scale, shift) and perspective move
  the keypoints exactly like the pixels (albumentations' keypoint support). When a point
  would leave the frame, the warp is RESAMPLED (up to ``max_tries``); if no sample keeps
  every point inside, the warp is skipped for that image. A label is never clipped or
  dropped silently.

Photometric jitter is on by default. On value tasks colour is the signal, so only a mild
exposure gain (R, G, B scaled together, +-8 %) and sensor noise are used there (no hue, saturation, contrast or
white-balance shifts).
"""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

from edge_runtime.spec import ModelSpec

#: How far inside the frame a point must stay after a warp (normalized units).
EDGE_MARGIN = 0.0


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of the random transforms. ``0`` for a field turns that part off."""

    rotate_deg: float = 12.0
    scale: float = 0.12
    shift: float = 0.08
    perspective: float = 0.04
    p_warp: float = 0.8
    photometric: bool = True
    max_tries: int = 10


class Augmenter:
    """Callable ``(image, target, rng) -> (image, target)`` for one sample.

    ``image`` is HxWx3 uint8 RGB at the model's input size. ``target`` is the sample's
    target in the dataset's form: (K, 2) normalized coordinates for point/keypoints
    (returned moved), a scalar value or class index otherwise (returned unchanged).
    """

    def __init__(
        self, spec: ModelSpec, config: AugmentConfig | None = None, *, geometric: bool = True
    ) -> None:
        self.spec = spec
        self.cfg = config or AugmentConfig()
        self.geometric = geometric
        inv = set(spec.invariances)
        coords = spec.task in ("point", "keypoints")
        self.hflip = geometric and (
            "hflip" in inv or spec.task == "point" or (coords and bool(spec.flip_pairs))
        )
        self.vflip = geometric and "vflip" in inv
        self.rot90 = geometric and "rot90" in inv
        self.rotate = geometric and "rotate" in inv
        self.flip_perm = _flip_permutation(spec.num_keypoints, spec.flip_pairs)
        c = self.cfg
        warp: list[A.BasicTransform] = []
        if geometric and spec.task != "value":
            # Value tasks get only their declared invariances: a crop or zoom may change
            # how much of the liquid/colour patch is seen.
            if coords or spec.task == "class":
                warp.append(
                    A.Affine(
                        rotate=(-c.rotate_deg, c.rotate_deg),
                        scale=(1 - c.scale, 1 + c.scale),
                        translate_percent=(-c.shift, c.shift),
                        border_mode=cv2.BORDER_CONSTANT,
                        fill=0,
                        p=1.0,
                    )
                )
                if c.perspective > 0:
                    warp.append(
                        A.Perspective(
                            scale=(c.perspective / 2, c.perspective),
                            border_mode=cv2.BORDER_CONSTANT,
                            fill=0,
                            p=0.5,
                        )
                    )
        self._warp = (
            A.Compose(
                warp,
                keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
                p=c.p_warp,
                seed=0,
            )
            if warp
            else None
        )
        self._free_rotate = (
            A.Compose(
                [A.Rotate(limit=180, border_mode=cv2.BORDER_REFLECT_101, p=1.0)],
                keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
                seed=0,
            )
            if self.rotate
            else None
        )
        photo: list[A.BasicTransform] = []
        if c.photometric:
            if spec.task == "value":
                photo = [
                    # An exposure gain scales R, G and B together: their ratios (the colour)
                    # stay; an additive brightness shift would change them.
                    A.MultiplicativeNoise(
                        multiplier=(0.92, 1.08), per_channel=False, elementwise=False, p=0.5
                    ),
                    A.GaussNoise(std_range=(0.005, 0.02), p=0.3),
                ]
            else:
                photo = [
                    A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.7),
                    A.HueSaturationValue(
                        hue_shift_limit=8, sat_shift_limit=20, val_shift_limit=0, p=0.4
                    ),
                    A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=5)], p=0.2),
                    A.GaussNoise(std_range=(0.01, 0.04), p=0.3),
                ]
        self._photo = A.Compose(photo, seed=0) if photo else None

    # ------------------------------------------------------------------ public
    def __call__(
        self, image: np.ndarray, target: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        img = np.ascontiguousarray(image)
        coords = self.spec.task in ("point", "keypoints")
        pts = np.array(target, dtype=np.float32, copy=True).reshape(-1, 2) if coords else None
        if self.hflip and rng.random() < 0.5:
            img = img[:, ::-1]
            if pts is not None:
                pts[:, 0] = 1.0 - pts[:, 0]
                pts = pts[self.flip_perm]
        if self.vflip and rng.random() < 0.5:
            img = img[::-1]
            if pts is not None:
                pts[:, 1] = 1.0 - pts[:, 1]
        if self.rot90:
            h, w = img.shape[:2]
            k = int(rng.integers(4)) if h == w else 2 * int(rng.integers(2))
            if k:
                img = np.rot90(img, k)  # counter-clockwise
                if pts is not None:
                    for _ in range(k):
                        pts = np.stack([pts[:, 1], 1.0 - pts[:, 0]], axis=1)
        img = np.ascontiguousarray(img)
        if self._free_rotate is not None:
            img, pts = self._apply_warp(self._free_rotate, img, pts, rng)
        if self._warp is not None:
            img, pts = self._apply_warp(self._warp, img, pts, rng)
        if self._photo is not None:
            self._photo.set_random_seed(int(rng.integers(2**31)))
            img = self._photo(image=img)["image"]
        if pts is None:
            return img, np.asarray(target)
        return img, pts.reshape(np.shape(target)).astype(np.float32)

    # ------------------------------------------------------------------ helpers
    def _apply_warp(
        self,
        compose: A.Compose,
        img: np.ndarray,
        pts: np.ndarray | None,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        h, w = img.shape[:2]
        if pts is None:
            compose.set_random_seed(int(rng.integers(2**31)))
            return compose(image=img, keypoints=np.zeros((0, 2), np.float32))["image"], None
        # albumentations puts pixel centres on integers; ours are at i + 0.5.
        kp = np.stack([pts[:, 0] * w - 0.5, pts[:, 1] * h - 0.5], axis=1)
        for _ in range(self.cfg.max_tries):
            compose.set_random_seed(int(rng.integers(2**31)))
            out = compose(image=img, keypoints=kp)
            moved = np.asarray(out["keypoints"], dtype=np.float32)[:, :2]
            new = np.stack([(moved[:, 0] + 0.5) / w, (moved[:, 1] + 0.5) / h], axis=1)
            if np.all(new >= EDGE_MARGIN) and np.all(new <= 1.0 - EDGE_MARGIN):
                return out["image"], new.astype(np.float32)
        # No sample kept every point inside: keep this image unwarped (labels stay exact).
        return img, pts


def _flip_permutation(k: int, pairs: tuple[tuple[int, int], ...]) -> np.ndarray:
    perm = np.arange(max(k, 1))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


def augment_batch(
    aug: Augmenter | None,
    images: np.ndarray,
    targets: np.ndarray,
    seed: int,
    epoch: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Augment every image once, deterministically for (seed, epoch, index).

    The same (seed, epoch) gives the same images whether or not training was resumed.
    """
    if aug is None:
        return images, targets
    out_x = np.empty_like(images)
    out_y = np.array(targets, copy=True)
    for i in range(len(images)):
        rng = np.random.default_rng((seed, epoch, i))
        out_x[i], out_y[i] = aug(images[i], targets[i], rng)
    return out_x, out_y
