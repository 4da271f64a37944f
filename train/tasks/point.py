"""``point`` on the workstation: one normalized (x, y) per image, the object's midpoint.

Labels: ``image,x,y`` (normalized [0, 1], origin top-left; ``--y-up`` for bottom-left,
``--coords pixels`` for pixel labels). Sample data: the user story of ``seeds/000``, ~120
images of one distinctive marker on a cluttered background, label = its midpoint.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from train.samples import _clutter, _finish, _lighting, _paste, _photo_params

from . import register
from ._coordinates import CoordinatesTrainTask
from .base import HeaderProblem, ImportRule, LabelColumns, Params, SampleSet

if TYPE_CHECKING:  # pragma: no cover
    from edge_runtime.spec import ModelSpec

#: (height, width) of the sample images, and (train, val) counts by default
SAMPLE_SIZE = (192, 192)
SAMPLE_COUNTS = (120, 60)


class PointTrainTask(CoordinatesTrainTask):
    name = "point"
    default_input_size = 160
    bench_bar = "pck@0.05 ≥ 0.95 and mean error ≤ 2 % of width"
    bench_metrics = ("pck@0.05", "mean_error_pct_width", "mean_error_px")
    handrolled = "resnet_sigmoid"
    import_rule = ImportRule("points", points=1)

    def import_header(self, num_points: int) -> list[str]:
        return ["x", "y"]

    def label_columns(self, header: list[str], opts: Mapping[str, Any]) -> LabelColumns:
        lc = [h.lower() for h in header]
        missing = [c for c in ("x", "y") if c not in lc]
        if missing:
            raise HeaderProblem(
                f"missing header column(s) {', '.join(missing)} (header is "
                f"'{','.join(header)}'; a point CSV needs image,x,y)",
                missing[0],
            )
        return LabelColumns([lc.index("x"), lc.index("y")], ["x", "y"], "x,y", 1)

    def mirror_allowed(self, spec: ModelSpec) -> bool:
        return True  # one point: a mirror moves it, there is nothing to swap

    def samples(self) -> SampleSet:
        return SampleSet(
            counts=SAMPLE_COUNTS,
            size=SAMPLE_SIZE,
            params=point_params,
            render=render_point,
            label=point_label,
            header="image,x,y",
            label_text=lambda label: ",".join(f"{v:.6f}" for v in label),
            description="object midpoint (120 images)",
        )


# =========================================================================== sample data
def _marker_template(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The one object of the point task: a round, four-quadrant orange/teal marker.

    A dark rim, orange and teal quadrants, a white hub and a small notch: distinctive, and
    point-symmetric about its centre (its midpoint is its centre whatever the rotation).
    Returns (RGB float32, alpha float32) of shape (size, size).
    """
    ss = 4 * size
    c = (ss - 1) / 2
    yy, xx = np.mgrid[0:ss, 0:ss].astype(np.float32)
    r = np.hypot(xx - c, yy - c) / (ss / 2)
    ang = np.arctan2(yy - c, xx - c)
    rgb = np.zeros((ss, ss, 3), np.float32)
    quad = (np.floor(ang / (np.pi / 2)).astype(int) % 2) == 0
    rgb[:] = np.where(quad[..., None], [250, 130, 20], [20, 150, 165])
    rgb[(r > 0.80)] = [35, 35, 40]
    ring = (r > 0.55) & (r < 0.62)
    rgb[ring] = [240, 240, 235]
    rgb[r < 0.22] = [245, 245, 240]
    rgb[r < 0.09] = [30, 30, 30]
    alpha = (r <= 1.0).astype(np.float32)
    rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(alpha, (size, size), interpolation=cv2.INTER_AREA)
    return rgb, alpha


def point_params(rng: np.random.Generator, size: tuple[int, int] = SAMPLE_SIZE) -> Params:
    """Every random choice of one point-task image."""
    h, w = size
    radius = float(rng.uniform(0.05, 0.11) * min(h, w))
    margin = radius + 2
    return {
        "size": [h, w],
        "bg_seed": int(rng.integers(2**62)),
        "radius": radius,
        "cx": float(rng.uniform(margin, w - 1 - margin)),
        "cy": float(rng.uniform(margin, h - 1 - margin)),
        "angle": float(rng.uniform(0, 360)),
        "n_decoys": int(rng.integers(2, 6)),
        "decoy_seed": int(rng.integers(2**62)),
        "with_object": True,
        **_photo_params(rng, (0.6, 1.3), 0.12, 0.6, (0.0, 1.6), (2.0, 8.0)),
    }


def render_point(p: Params) -> tuple[np.ndarray, np.ndarray]:
    """Draw a point image. Returns (RGB uint8, object alpha mask float32)."""
    h, w = p["size"]
    img = _clutter(np.random.default_rng(p["bg_seed"]), h, w, (12, 30))
    # decoys: the marker's colours in other shapes (solid discs, half discs, squares)
    drng = np.random.default_rng(p["decoy_seed"])
    canvas = img.astype(np.uint8)
    for _ in range(p["n_decoys"]):
        col = [(250, 130, 20), (20, 150, 165), (35, 35, 40)][int(drng.integers(0, 3))]
        x, y = int(drng.integers(0, w)), int(drng.integers(0, h))
        s = int(drng.uniform(0.4, 1.2) * p["radius"])
        kind = drng.integers(0, 3)
        if kind == 0:
            cv2.circle(canvas, (x, y), s, col, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.ellipse(canvas, (x, y), (s, s), float(drng.uniform(0, 360)), 0, 180, col, -1)
        else:
            cv2.rectangle(canvas, (x - s, y - s), (x + s, y + s), col, -1)
    img = canvas.astype(np.float32)
    d = int(math.ceil(2 * p["radius"])) | 1
    rgb, alpha = _marker_template(d)
    c = (d - 1) / 2
    m = cv2.getRotationMatrix2D((c, c), p["angle"], 1.0)
    m[:, 2] += (p["cx"] - c, p["cy"] - c)
    obj = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR)
    if not p["with_object"]:
        mask = np.zeros_like(mask)
    img = _paste(img, obj, mask)
    img = _finish(_lighting(img, p), p)
    return img, mask


def point_label(p: Params) -> list[float]:
    """Normalized (x, y) of the object's midpoint, origin top-left (pixel edges at integers)."""
    h, w = p["size"]
    return [(p["cx"] + 0.5) / w, (p["cy"] + 0.5) / h]


TASK = register(PointTrainTask())
