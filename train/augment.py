"""Label-respecting augmentation (albumentations 2.x for the warps and photometric jitter).

What may be done to a task's images is the task's :class:`train.tasks.AugmentPolicy`
(``train/tasks/<task>.py``: ``augment_policy``); this module does it, moving the target
with the pixels according to the policy's target kind:

- ``fixed``: the target does not change (a value, a class): only the transforms the
  spec declares as invariances are used;
- ``points``: (K, 2) normalized coordinates, origin at the top-left CORNER of the image
  (pixel ``i`` covers ``[i, i+1)``, its centre is ``i + 0.5``), move exactly like the
  pixels (albumentations' keypoint support); a horizontal flip swaps the declared pairs.
  A point a warp pushes slightly out of the frame stays a valid target, up to the
  policy's ``margin`` (0.25 of the frame for coordinate tasks: the labels' own margin);
  when a warp would push a point beyond it, the warp is RESAMPLED (up to ``max_tries``);
  if no sample keeps every point within, the image is kept unwarped. A missing keypoint
  (NaN) stays missing through flips, turns and warps. A label is never clipped or dropped
  silently;
- ``direction``: an image direction in degrees clockwise from up (an angle task's
  target, via the task's ``to_geometry``) turns with the pixels: a mirror flips its sign,
  a rotation by t adds t; under a warp the direction is followed through two points
  (the image centre and a point along the direction), exact for rotation, scale and
  shift and a close approximation under the mild perspective.

Photometric jitter is on by default: ``full`` (brightness, contrast, hue, saturation,
blur, noise) or ``exposure`` (one gain on R, G and B together, +-8 %, and sensor noise:
for tasks where colour is the signal); ``glare`` adds bright flares (shiny dials).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

from edge_runtime.spec import ModelSpec
from train import tasks
from train.tasks import AugmentPolicy


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

    ``image`` is HxWx3 uint8 RGB at the model's input size; ``target`` is the sample's
    target in the dataset's form, returned moved as the policy says.
    """

    def __init__(
        self,
        spec: ModelSpec,
        config: AugmentConfig | None = None,
        *,
        geometric: bool = True,
        policy: AugmentPolicy | None = None,
    ) -> None:
        self.spec = spec
        self.cfg = config or AugmentConfig()
        self.task = tasks.get(spec.task)
        pol = policy or self.task.augment_policy(spec)
        self.policy = pol
        self.kind = pol.target
        self.hflip = geometric and pol.hflip
        self.vflip = geometric and pol.vflip
        self.rot90 = geometric and pol.rot90
        self.rotate = geometric and pol.rotate
        self.flip_perm = np.asarray(pol.flip_permutation or range(max(spec.num_keypoints, 1)))
        self._warp = _warp_compose(self.cfg) if geometric and pol.warp else None
        # A mirrored border would make albumentations add mirrored copies of every
        # keypoint: targets that move with the image get a constant border instead.
        border = cv2.BORDER_REFLECT_101 if self.kind == "fixed" else cv2.BORDER_CONSTANT
        self._free_rotate = (
            A.Compose(
                [A.Rotate(limit=180, border_mode=border, fill=0, p=1.0)],
                keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
                seed=0,
            )
            if self.rotate
            else None
        )
        photo = _photometric(pol) if self.cfg.photometric else []
        self._photo = A.Compose(photo, seed=0) if photo else None

    # ------------------------------------------------------------------ public
    def __call__(
        self, image: np.ndarray, target: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        img = np.ascontiguousarray(image)
        geo = self._geometry_in(target)
        img, geo = self._flips_and_turns(img, geo, rng)
        if self._free_rotate is not None:
            img, geo = self._apply_warp(self._free_rotate, img, geo, rng)
        if self._warp is not None:
            img, geo = self._apply_warp(self._warp, img, geo, rng)
        if self._photo is not None:
            self._photo.set_random_seed(int(rng.integers(2**31)))
            img = self._photo(image=img)["image"]
        return img, self._geometry_out(geo, target)

    # ------------------------------------------------------------------ target forms
    def _geometry_in(self, target: np.ndarray) -> np.ndarray | None:
        if self.kind == "points":
            return np.array(target, dtype=np.float32, copy=True).reshape(-1, 2)
        if self.kind == "direction":
            return np.float64(self.task.to_geometry(self.spec, np.asarray(target)))
        return None

    def _geometry_out(self, geo: np.ndarray | None, target: np.ndarray) -> np.ndarray:
        if self.kind == "points":
            return np.asarray(geo).reshape(np.shape(target)).astype(np.float32)
        if self.kind == "direction":
            out = self.task.from_geometry(self.spec, np.asarray(geo))
            return np.asarray(out, dtype=np.asarray(target).dtype).reshape(np.shape(target))
        return np.asarray(target)

    # ------------------------------------------------------------------ transforms
    def _flips_and_turns(
        self, img: np.ndarray, geo: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        if self.hflip and rng.random() < 0.5:
            img = img[:, ::-1]
            geo = self._mirror(geo, horizontal=True)
        if self.vflip and rng.random() < 0.5:
            img = img[::-1]
            geo = self._mirror(geo, horizontal=False)
        if self.rot90:
            h, w = img.shape[:2]
            k = int(rng.integers(4)) if h == w else 2 * int(rng.integers(2))
            if k:
                img = np.rot90(img, k)  # counter-clockwise
                geo = self._quarter_turns(geo, k)
        return np.ascontiguousarray(img), geo

    def _mirror(self, geo: np.ndarray | None, horizontal: bool) -> np.ndarray | None:
        if geo is None:
            return None
        if self.kind == "direction":
            return np.mod(-geo if horizontal else 180.0 - geo, 360.0)
        if horizontal:
            geo[:, 0] = 1.0 - geo[:, 0]
            return geo[self.flip_perm]
        geo[:, 1] = 1.0 - geo[:, 1]
        return geo

    def _quarter_turns(self, geo: np.ndarray | None, k: int) -> np.ndarray | None:
        if geo is None:
            return None
        if self.kind == "direction":
            return np.mod(geo - 90.0 * k, 360.0)
        for _ in range(k):
            geo = np.stack([geo[:, 1], 1.0 - geo[:, 0]], axis=1)
        return geo

    def _apply_warp(
        self,
        compose: A.Compose,
        img: np.ndarray,
        geo: np.ndarray | None,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        h, w = img.shape[:2]
        if geo is None:
            compose.set_random_seed(int(rng.integers(2**31)))
            return compose(image=img, keypoints=np.zeros((0, 2), np.float32))["image"], None
        if self.kind == "direction":
            return _warp_direction(compose, img, float(geo), rng)
        # Missing keypoints (NaN) ride along at the centre and are masked again after.
        given = np.isfinite(geo).all(axis=1)
        pts = np.where(given[:, None], geo, 0.5)
        # albumentations puts pixel centres on integers; ours are at i + 0.5.
        kp = np.stack([pts[:, 0] * w - 0.5, pts[:, 1] * h - 0.5], axis=1)
        lo, hi = -self.policy.margin, 1.0 + self.policy.margin
        for _ in range(self.cfg.max_tries):
            compose.set_random_seed(int(rng.integers(2**31)))
            out = compose(image=img, keypoints=kp)
            moved = np.asarray(out["keypoints"], dtype=np.float32)[:, :2]
            new = np.stack([(moved[:, 0] + 0.5) / w, (moved[:, 1] + 0.5) / h], axis=1)
            if np.all(new[given] >= lo) and np.all(new[given] <= hi):
                new[~given] = np.nan
                return out["image"], new.astype(np.float32)
        # No sample kept every point within the margin: keep this image unwarped (labels
        # stay exact).
        return img, geo


def _warp_direction(
    compose: A.Compose, img: np.ndarray, deg: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Warp an image and follow an image direction (degrees clockwise from up) through it."""
    h, w = img.shape[:2]
    r = 0.25 * min(h, w)
    t = math.radians(deg)
    c = np.array([w / 2.0 - 0.5, h / 2.0 - 0.5])
    kp = np.stack([c, c + r * np.array([math.sin(t), -math.cos(t)])]).astype(np.float32)
    compose.set_random_seed(int(rng.integers(2**31)))
    out = compose(image=img, keypoints=kp)
    moved = np.asarray(out["keypoints"], dtype=np.float64)[:, :2]
    dx, dy = moved[1] - moved[0]
    return out["image"], np.float64(math.degrees(math.atan2(dx, -dy)) % 360.0)


def _warp_compose(c: AugmentConfig) -> A.Compose:
    """A mild random affine (rotation, scale, shift) and perspective."""
    warp: list[A.BasicTransform] = [
        A.Affine(
            rotate=(-c.rotate_deg, c.rotate_deg),
            scale=(1 - c.scale, 1 + c.scale),
            translate_percent=(-c.shift, c.shift),
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            p=1.0,
        )
    ]
    if c.perspective > 0:
        warp.append(
            A.Perspective(
                scale=(c.perspective / 2, c.perspective),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=0.5,
            )
        )
    return A.Compose(
        warp,
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
        p=c.p_warp,
        seed=0,
    )


def _photometric(policy: AugmentPolicy) -> list[A.BasicTransform]:
    if policy.photometric == "exposure":
        return [
            # An exposure gain scales R, G and B together: their ratios (the colour)
            # stay; an additive brightness shift would change them.
            A.MultiplicativeNoise(
                multiplier=(0.92, 1.08), per_channel=False, elementwise=False, p=0.5
            ),
            A.GaussNoise(std_range=(0.005, 0.02), p=0.3),
        ]
    photo: list[A.BasicTransform] = [
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.7),
        A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=20, val_shift_limit=0, p=0.4),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=5)], p=0.2),
        A.GaussNoise(std_range=(0.01, 0.04), p=0.3),
    ]
    if policy.glare:
        photo.append(
            A.RandomSunFlare(
                flare_roi=(0.0, 0.0, 1.0, 1.0),
                src_radius=60,
                num_flare_circles_range=(1, 3),
                p=0.25,
            )
        )
    return photo


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
