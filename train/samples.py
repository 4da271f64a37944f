"""Realistic synthetic datasets, one per user story (see ``docs/samples.md``).

Every image is drawn procedurally with numpy and OpenCV (no downloads). Each generator
has two steps: ``*_params(rng)`` draws every random choice of one image into a dict,
and ``render_*(params)`` draws it. Tests change a parameter (say, remove the object)
and re-render the identical scene to prove the label is right.

Same seed, same bytes: image ``i`` of split ``s`` uses ``numpy.random.default_rng([seed,
s, i])``, and OpenCV's JPEG encoder is deterministic.
"""

from __future__ import annotations

import colorsys
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_runtime.atomic import atomic_write_text
from edge_runtime.errors import DataError, OutputError

TASKS = ("point", "value", "keypoints", "class")
#: (train, val) image counts when --n / --n-val are not given
DEFAULT_COUNTS = {
    "point": (120, 60),
    "value": (5000, 1000),
    "keypoints": (300, 100),
    "class": (287, 100),
}
#: (height, width) of the images of each task
SIZES = {"point": (192, 192), "value": (250, 250), "keypoints": (224, 224), "class": (256, 256)}
JPEG_QUALITY = 95
VALUE_RANGE = (80.0, 350.0)
CLASS_NAMES = ("defect", "ok")
DEFECT_FRACTION = 0.35
#: bolt hole radius of the class flange, as a share of the part radius
BOLT_HOLE_RADIUS = 0.085
CARD_W, CARD_H = 320, 200

Params = dict[str, Any]


# =========================================================================== shared pieces
def _noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth noise in [-1, 1]: random values on a coarse grid, resized (cubic)."""
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    g = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    return np.clip(cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC), -1, 1)


def _rand_color(rng: np.random.Generator, lo: int = 20, hi: int = 235) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))  # type: ignore[return-value]


def _clutter(rng: np.random.Generator, h: int, w: int, n_shapes: tuple[int, int]) -> np.ndarray:
    """A textured, cluttered RGB float32 background (0..255)."""
    base = np.array(_rand_color(rng, 40, 200), np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    for cell in (64, 16):
        tint = rng.uniform(-60, 60, 3).astype(np.float32)
        img += _noise(rng, h, w, cell)[..., None] * tint
    # a material grain: fine isotropic or brushed streaks
    grain = rng.normal(0, 1, (h, w)).astype(np.float32)
    if rng.random() < 0.5:
        k = int(rng.integers(5, 15))
        grain = cv2.blur(grain, (k, 1) if rng.random() < 0.5 else (1, k))
    img += grain[..., None] * rng.uniform(4, 14)
    canvas = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(*n_shapes))):
        col = _rand_color(rng)
        kind = rng.integers(0, 5)
        x, y = int(rng.integers(-10, w + 10)), int(rng.integers(-10, h + 10))
        s = int(rng.integers(4, max(6, min(h, w) // 4)))
        th = int(rng.choice([-1, -1, 1, 2, 3]))
        if kind == 0:
            cv2.circle(canvas, (x, y), s, col, th, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(canvas, (x, y), (x + s, y + int(s * rng.uniform(0.3, 2))), col, th)
        elif kind == 2:
            x2, y2 = int(rng.integers(0, w)), int(rng.integers(0, h))
            cv2.line(canvas, (x, y), (x2, y2), col, max(1, th), cv2.LINE_AA)
        elif kind == 3:
            ang = float(rng.uniform(0, 180))
            axes = (s, max(2, int(s * rng.uniform(0.2, 0.9))))
            cv2.ellipse(canvas, (x, y), axes, ang, 0, 360, col, th, cv2.LINE_AA)
        else:
            pts = (np.array([x, y]) + rng.integers(-s, s, (int(rng.integers(3, 6)), 2))).astype(
                np.int32
            )
            cv2.fillPoly(canvas, [pts], col, cv2.LINE_AA)
    return canvas.astype(np.float32)


def _lighting(img: np.ndarray, p: Params) -> np.ndarray:
    """Gain, white balance and a linear illumination gradient (float32 in, float32 out)."""
    h, w = img.shape[:2]
    yy, xx = _grid(h, w)
    gx, gy = p["grad"]
    field = 1.0 + gx * (xx / w - 0.5) + gy * (yy / h - 0.5)
    wb = np.asarray(p["wb"], np.float32) * np.float32(p["gain"])
    return img * (field[..., None] * wb)


def _finish(img: np.ndarray, p: Params) -> np.ndarray:
    """Blur, sensor noise, clip to uint8 RGB."""
    if p["blur"] > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), p["blur"])
    if p["noise"] > 0:
        # OpenCV's seeded (thread-local) generator: ~10x faster than numpy's normals
        noise = np.empty(img.shape, np.float32)
        cv2.setRNGSeed(int(p["noise_seed"] % 2**31))
        cv2.randn(noise, 0.0, float(p["noise"]))
        img = img + noise
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _photo_params(
    rng: np.random.Generator,
    gain: tuple[float, float],
    wb: float,
    grad: float,
    blur: tuple[float, float],
    noise: tuple[float, float],
) -> Params:
    return {
        "gain": float(rng.uniform(*gain)),
        "wb": [float(v) for v in rng.uniform(1 - wb, 1 + wb, 3)],
        "grad": [float(v) for v in rng.uniform(-grad, grad, 2)],
        "blur": float(rng.uniform(*blur)),
        "noise": float(rng.uniform(*noise)),
        "noise_seed": int(rng.integers(2**62)),
    }


def _paste(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """dst * (1 - alpha) + src * alpha (float32 images, alpha HxW)."""
    out = src - dst
    out *= alpha[..., None]
    out += dst
    return out


_GRIDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(yy, xx) float32 pixel-centre coordinates, cached per size (read-only)."""
    if (h, w) not in _GRIDS:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        yy.flags.writeable = False
        xx.flags.writeable = False
        _GRIDS[(h, w)] = (yy, xx)
    return _GRIDS[(h, w)]


# =========================================================================== point
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


def point_params(rng: np.random.Generator, size: tuple[int, int] = SIZES["point"]) -> Params:
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


# =========================================================================== value
def value_color(conc: float | np.ndarray) -> np.ndarray:
    """Concentration (80..350) -> RGB 0..255 of the liquid: a smooth, non-linear ramp.

    Hue falls from yellow (60 deg) through orange and red to crimson (-18 deg) on a
    saturating curve (fast at low concentrations, slow at high ones); saturation rises
    and brightness falls with concentration. Hue and brightness are strictly monotone.
    """
    c = np.atleast_1d(np.asarray(conc, np.float64))
    t = np.clip((c - VALUE_RANGE[0]) / (VALUE_RANGE[1] - VALUE_RANGE[0]), 0, 1)
    g = (1 - np.exp(-1.4 * t)) / (1 - np.exp(-1.4))
    hue = (60.0 - 78.0 * g) / 360.0
    sat = 0.30 + 0.60 * t**1.3
    val = 0.97 - 0.42 * t**1.5
    out = np.array(
        [colorsys.hsv_to_rgb(hh % 1.0, s, v) for hh, s, v in zip(hue, sat, val, strict=True)]
    )
    out = out * 255.0
    return out[0] if np.ndim(conc) == 0 else out


def value_params(rng: np.random.Generator, size: tuple[int, int] = SIZES["value"]) -> Params:
    """Every random choice of one value-task image (a well of a reaction plate)."""
    h, w = size
    s = min(h, w)
    return {
        "size": [h, w],
        "conc": float(np.round(rng.uniform(*VALUE_RANGE), 2)),
        "radius": float(rng.uniform(0.27, 0.34) * s),
        "offset": [float(v) for v in rng.uniform(-0.04, 0.04, 2) * s],
        "plate": [float(v) for v in rng.uniform(205, 240) + rng.uniform(-8, 8, 3)],
        "rim": float(rng.uniform(0.08, 0.14)),
        "meniscus": float(rng.uniform(0.08, 0.22)),
        "tex": float(rng.uniform(0.01, 0.04)),
        "tex_seed": int(rng.integers(2**62)),
        "bubbles": [
            [float(v) for v in rng.uniform(-0.7, 0.7, 2)] + [float(rng.uniform(1.5, 5))]
            for _ in range(int(rng.integers(0, 5)))
        ],
        "highlight": [
            float(rng.uniform(0, 2 * np.pi)),
            float(rng.uniform(0.3, 0.6)),
            float(rng.uniform(0.35, 0.85)),
        ],
        "angle": float(rng.uniform(0, 360)),
        "mirror": bool(rng.random() < 0.5),
        **_photo_params(rng, (0.88, 1.12), 0.06, 0.2, (0.0, 1.0), (1.5, 4.5)),
    }


def render_value(p: Params) -> tuple[np.ndarray, np.ndarray]:
    """Draw a value image. Returns (RGB uint8, liquid mask float32 after rotation)."""
    h, w = p["size"]
    s = min(h, w)
    trng = np.random.default_rng(p["tex_seed"])
    img = np.empty((h, w, 3), np.float32)
    img[:] = p["plate"]
    img *= (1 + 0.03 * _noise(trng, h, w, 40))[..., None]
    cx, cy = (w - 1) / 2 + p["offset"][0], (h - 1) / 2 + p["offset"][1]
    r = p["radius"]
    yy, xx = _grid(h, w)
    # neighbouring (empty) wells of the plate grid, partly in view
    pitch = 2.35 * r
    u, v = (xx - cx) / pitch, (yy - cy) / pitch
    dn = np.hypot(u - np.round(u), v - np.round(v)) * (pitch / r)
    one, rim = np.float32(1.0), np.float32(0.7)
    img *= np.where(dn < 1.0, 0.80 + 0.12 * dn, np.where(dn < 1.1, rim, one))[..., None]
    # a plate marking (asymmetric: makes rotation and mirroring visible)
    mark = img.astype(np.uint8)
    cv2.putText(
        mark,
        "B3",
        (int(cx - 1.45 * r), int(cy - 0.95 * r)),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.55 * s / 250,
        (70, 70, 75),
        2,
        cv2.LINE_AA,
    )
    cv2.fillPoly(
        mark,
        [
            np.array(
                [
                    [int(cx + 1.1 * r), int(cy - 1.35 * r)],
                    [int(cx + 1.35 * r), int(cy - 1.35 * r)],
                    [int(cx + 1.35 * r), int(cy - 1.1 * r)],
                ],
                np.int32,
            )
        ],
        (90, 90, 95),
        cv2.LINE_AA,
    )
    img = mark.astype(np.float32)
    d = np.hypot(xx - cx, yy - cy) / r
    rim_in = 1.0 - p["rim"]
    # rim: a shadowed ring of the well wall
    wall = (d >= rim_in) & (d < 1.0)
    img *= np.where(wall, np.float32(0.72), np.float32(1.0))[..., None]
    # liquid: colour from the ramp, darker towards the wall (meniscus), faint texture
    liquid = np.clip((rim_in - d) * r, 0, 1).astype(np.float32)  # 1-px anti-aliased edge
    base = value_color(p["conc"]).astype(np.float32)
    shade = 1.0 - p["meniscus"] * np.clip(d / rim_in, 0, 1) ** 3
    shade = shade * (1 + p["tex"] * _noise(trng, h, w, 12))
    liq = base[None, None, :] * shade[..., None]
    img = _paste(img, liq, liquid)
    # bubbles: small rings, brighter edge
    u8 = np.clip(img, 0, 255).astype(np.uint8)
    for bx, by, br in p["bubbles"]:
        c = (int(cx + bx * r * rim_in), int(cy + by * r * rim_in))
        cv2.circle(u8, c, int(round(br * s / 250)), (235, 235, 235), 1, cv2.LINE_AA)
    img = u8.astype(np.float32)
    # specular highlight: a soft white ellipse off-centre
    ang, dist, strength = p["highlight"]
    hx, hy = cx + dist * r * math.cos(ang), cy + dist * r * math.sin(ang)
    spot = np.zeros((h, w), np.float32)
    cv2.ellipse(
        spot,
        (int(hx), int(hy)),
        (max(2, int(0.16 * r)), max(1, int(0.07 * r))),
        math.degrees(ang) + 90,
        0,
        360,
        1.0,
        -1,
        cv2.LINE_AA,
    )
    spot = cv2.GaussianBlur(spot, (0, 0), 0.04 * r) * strength
    img = _paste(img, np.full_like(img, 255.0), np.clip(spot, 0, 1))
    # rotate about the image centre and mirror: the label does not change
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), p["angle"], 1.0)
    img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    liquid = cv2.warpAffine(liquid, m, (w, h), flags=cv2.INTER_LINEAR)
    if p["mirror"]:
        img, liquid = img[:, ::-1], liquid[:, ::-1]
    img = _finish(_lighting(np.ascontiguousarray(img), p), p)
    return img, np.ascontiguousarray(liquid)


def value_label(p: Params) -> float:
    return p["conc"]


# =========================================================================== keypoints
_CARD_CACHE: dict[int, np.ndarray] = {}


def card_texture(variant: int = 0) -> np.ndarray:
    """The card in its own frame (CARD_H x CARD_W RGB float32).

    Its top edge carries a dark blue band with a red logo at the top-left; a gold chip
    sits on the left; grey text lines below. The corners are its own TL, TR, BR, BL.
    """
    if variant in _CARD_CACHE:
        return _CARD_CACHE[variant]
    rng = np.random.default_rng(1000 + variant)
    card = np.zeros((CARD_H, CARD_W, 3), np.uint8)
    card[:] = (242, 240, 232)
    cv2.rectangle(card, (0, 0), (CARD_W, 52), (25, 45, 120), -1)
    cv2.circle(card, (34, 26), 17, (215, 40, 40), -1, cv2.LINE_AA)
    cv2.putText(
        card, "EDGE", (62, 38), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (240, 240, 240), 2, cv2.LINE_AA
    )
    cv2.rectangle(card, (24, 78), (76, 116), (205, 170, 60), -1)
    cv2.rectangle(card, (24, 78), (76, 116), (150, 120, 40), 2)
    for i in range(4):
        y = 92 + 24 * i
        x2 = int(rng.integers(180, 300))
        cv2.rectangle(card, (100, y), (x2, y + 8), (150, 150, 150), -1)
    cv2.rectangle(card, (0, 0), (CARD_W - 1, CARD_H - 1), (120, 120, 120), 2)
    out = card.astype(np.float32)
    _CARD_CACHE[variant] = out
    return out


def keypoints_params(
    rng: np.random.Generator, size: tuple[int, int] = SIZES["keypoints"]
) -> Params:
    """Every random choice of one keypoints image: where the card's corners land."""
    h, w = size
    margin = 6.0
    for _ in range(200):
        cw = rng.uniform(0.40, 0.70) * w
        ch = cw * CARD_H / CARD_W
        ang = math.radians(rng.uniform(-35, 35))
        ctr = rng.uniform(0.3, 0.7, 2) * (w, h)
        rect = np.array(
            [[-cw / 2, -ch / 2], [cw / 2, -ch / 2], [cw / 2, ch / 2], [-cw / 2, ch / 2]]
        )
        rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
        quad = rect @ rot.T + ctr + rng.uniform(-0.10, 0.10, (4, 2)) * cw
        inside = (
            (quad >= margin).all()
            and (quad[:, 0] <= w - 1 - margin).all()
            and (quad[:, 1] <= h - 1 - margin).all()
        )
        if inside and _convex(quad):
            break
    else:  # pragma: no cover - practically unreachable; a centred, upright card
        cw, ch = 0.5 * w, 0.5 * w * CARD_H / CARD_W
        quad = np.array([[-cw, -ch], [cw, -ch], [cw, ch], [-cw, ch]]) / 2 + (w / 2, h / 2)
    occluders = []
    for _ in range(int(rng.integers(0, 3))):
        # a blob overlapping part of the card (a thumb, a tool, a cable)
        t = rng.uniform(0, 1)
        e = int(rng.integers(0, 4))
        a, b = quad[e], quad[(e + 1) % 4]
        pt = a + t * (b - a)
        occluders.append(
            {
                "center": [float(v) for v in pt + rng.uniform(-8, 8, 2)],
                "axes": [float(rng.uniform(6, 0.12 * w)), float(rng.uniform(4, 0.07 * w))],
                "angle": float(rng.uniform(0, 180)),
                "color": list(_rand_color(rng)),
            }
        )
    return {
        "size": [h, w],
        "bg_seed": int(rng.integers(2**62)),
        "corners": quad.tolist(),
        "tint": [float(v) for v in rng.uniform(0.85, 1.05, 3)],
        "occluders": occluders,
        "shadow": float(rng.uniform(0.0, 0.35)),
        **_photo_params(rng, (0.6, 1.25), 0.10, 0.5, (0.0, 1.3), (2.0, 7.0)),
    }


def _convex(q: np.ndarray) -> bool:
    s = []
    for i in range(4):
        a, b, c = q[i], q[(i + 1) % 4], q[(i + 2) % 4]
        s.append(np.sign((b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0])))
    return all(v > 0 for v in s) or all(v < 0 for v in s)


def card_homography(corners: np.ndarray) -> np.ndarray:
    """Card frame (continuous edges at -0.5 .. CARD_W-0.5) -> image pixel-centre coordinates."""
    src = np.array(
        [[-0.5, -0.5], [CARD_W - 0.5, -0.5], [CARD_W - 0.5, CARD_H - 0.5], [-0.5, CARD_H - 0.5]],
        np.float32,
    )
    return cv2.getPerspectiveTransform(src, np.asarray(corners, np.float32))


def render_keypoints(p: Params) -> tuple[np.ndarray, np.ndarray]:
    """Draw a keypoints image. Returns (RGB uint8, card mask float32 before occluders)."""
    h, w = p["size"]
    img = _clutter(np.random.default_rng(p["bg_seed"]), h, w, (10, 25))
    hm = card_homography(np.array(p["corners"]))
    card = card_texture() * np.asarray(p["tint"], np.float32)
    warped = cv2.warpPerspective(card, hm, (w, h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(
        np.ones((CARD_H, CARD_W), np.float32), hm, (w, h), flags=cv2.INTER_LINEAR
    )
    if p["shadow"] > 0:  # a soft drop shadow under the card
        sh = cv2.GaussianBlur(np.roll(mask, (3, 3), (0, 1)), (0, 0), 3)
        img *= (1 - p["shadow"] * sh)[..., None]
    img = _paste(img, warped, mask)
    u8 = np.clip(img, 0, 255).astype(np.uint8)
    for o in p["occluders"]:
        cv2.ellipse(
            u8,
            (int(o["center"][0]), int(o["center"][1])),
            (int(o["axes"][0]), int(o["axes"][1])),
            o["angle"],
            0,
            360,
            tuple(o["color"]),
            -1,
            cv2.LINE_AA,
        )
    img = _finish(_lighting(u8.astype(np.float32), p), p)
    return img, mask


def keypoints_label(p: Params) -> list[float]:
    """x1,y1,...,x4,y4 normalized: the card's own TL, TR, BR, BL (TL..TR = blue band edge)."""
    h, w = p["size"]
    out: list[float] = []
    for x, y in p["corners"]:
        out += [(x + 0.5) / w, (y + 0.5) / h]
    return out


# =========================================================================== class
def class_params(
    rng: np.random.Generator, size: tuple[int, int] = SIZES["class"], defect: bool | None = None
) -> Params:
    """Every random choice of one class image: a machined flange, with or without a defect."""
    h, w = size
    s = min(h, w)
    r = float(rng.uniform(0.28, 0.36) * s)
    if defect is None:
        defect = bool(rng.random() < DEFECT_FRACTION)
    kind = str(rng.choice(["crack", "chip", "pit"]))
    bg_seed = int(rng.integers(2**62))
    center = [float(v) for v in (np.array([w, h]) / 2 + rng.uniform(-0.08, 0.08, 2) * s)]
    angle = float(rng.uniform(0, 360))
    holes = int(rng.choice([6, 6, 6, 8]))
    dsize = float(rng.uniform(0.07, 0.13) * r)
    dang, drad = _defect_position(rng, angle, holes, 0.5 * dsize / r if kind == "pit" else 0.0)
    return {
        "size": [h, w],
        "bg_seed": bg_seed,
        "radius": r,
        "center": center,
        "angle": angle,
        "holes": holes,
        "metal": float(rng.uniform(150, 200)),
        "brush_seed": int(rng.integers(2**62)),
        # benign marks every part may have: dust specks and a faint smudge
        "specks": [
            [float(v) for v in rng.uniform(-0.9, 0.9, 2)] + [float(rng.uniform(0.8, 2.2))]
            for _ in range(int(rng.integers(0, 6)))
        ],
        "smudge": [float(v) for v in rng.uniform(-0.5, 0.5, 2)] + [float(rng.uniform(0, 0.12))],
        "defect": defect,
        "defect_kind": kind,
        "defect_pos": [dang, drad],
        "defect_size": dsize,
        "defect_seed": int(rng.integers(2**62)),
        **_photo_params(rng, (0.7, 1.25), 0.08, 0.5, (0.0, 1.2), (2.0, 6.0)),
    }


def _defect_position(
    rng: np.random.Generator, angle_deg: float, holes: int, extent: float
) -> tuple[float, float]:
    """(angle, radius / part radius) of a defect on the face, clear of the bolt holes.

    A pit of radius ``extent`` (share of the part radius) that fell into a bolt hole was
    not drawn at all (the hole has no metal to dent), yet the image was labelled
    ``defect``: about 10 % of the defect images showed nothing. Positions are redrawn
    until the pit keeps a margin of 0.04 part radii from every hole (a crack is long
    enough to stay visible across a hole).
    """
    dang, drad = 0.0, 0.0
    for _ in range(100):
        dang, drad = float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.45, 0.85))
        px, py = drad * math.cos(dang), drad * math.sin(dang)
        clear = min(
            math.hypot(
                px - 0.68 * math.cos(math.radians(angle_deg) + 2 * np.pi * k / holes),
                py - 0.68 * math.sin(math.radians(angle_deg) + 2 * np.pi * k / holes),
            )
            for k in range(holes)
        )
        if clear >= BOLT_HOLE_RADIUS + extent + 0.04:
            break
    return dang, drad


def _ring(xx: np.ndarray, yy: np.ndarray, x: float, y: float, radius: float) -> np.ndarray:
    """An anti-aliased ring about 1.5 px wide at ``radius`` around (x, y), in [0, 1]."""
    return np.clip(1.5 - np.abs(np.hypot(xx - x, yy - y) - radius) / 0.75, 0, 1).astype(np.float32)


def render_class(p: Params) -> tuple[np.ndarray, np.ndarray]:
    """Draw a class image. Returns (RGB uint8, defect mask float32; zeros when no defect)."""
    h, w = p["size"]
    brng = np.random.default_rng(p["bg_seed"])
    # conveyor belt: dark grey with belt texture and some clutter
    img = _clutter(brng, h, w, (0, 6)) * 0.35 + 40
    cx, cy = p["center"]
    r = p["radius"]
    yy, xx = _grid(h, w)
    d = np.hypot(xx - cx, yy - cy)
    theta = np.arctan2(yy - cy, xx - cx)
    # brushed metal: radial gradient, fine concentric streaks
    mrng = np.random.default_rng(p["brush_seed"])
    streak = cv2.resize(mrng.normal(0, 1, (1, 64)).astype(np.float32), (256, 256))[0]
    ring_tex = np.interp(d / r, np.linspace(0, 1.1, 256), streak).astype(np.float32)
    metal = p["metal"] * (0.85 + 0.2 * np.cos(theta - math.radians(p["angle"])) * (d / r))
    metal = metal + 6 * ring_tex
    part = np.clip(r - d + 0.5, 0, 1)  # outer edge, anti-aliased
    hole = np.clip(0.35 * r - d + 0.5, 0, 1)
    part = part * (1 - hole)
    bolt = np.zeros((h, w), np.float32)
    for k in range(p["holes"]):
        a = math.radians(p["angle"]) + 2 * np.pi * k / p["holes"]
        bx, by = cx + 0.68 * r * math.cos(a), cy + 0.68 * r * math.sin(a)
        bolt = np.maximum(
            bolt, np.clip(BOLT_HOLE_RADIUS * r - np.hypot(xx - bx, yy - by) + 0.5, 0, 1)
        )
    part = part * (1 - bolt)
    metal_rgb = np.stack([metal, metal * 0.99, metal * 0.96], -1)
    img = _paste(img, metal_rgb, part)
    # a bevel: darker ring near the outer edge
    bevel = ((d > 0.93 * r) & (d < r)).astype(np.float32) * part
    img *= (1 - 0.25 * bevel)[..., None]
    # benign marks
    u8 = np.clip(img, 0, 255).astype(np.uint8)
    for sx, sy, sr in p["specks"]:
        c = (int(cx + sx * r), int(cy + sy * r))
        cv2.circle(u8, c, max(1, int(round(sr))), (225, 225, 220), -1, cv2.LINE_AA)
    img = u8.astype(np.float32)
    mx, my, ms = p["smudge"]
    sm = np.exp(-(((xx - cx - mx * r) ** 2 + (yy - cy - my * r) ** 2) / (2 * (0.25 * r) ** 2)))
    img *= (1 - ms * sm * part)[..., None]
    # the defect
    dmask = np.zeros((h, w), np.float32)
    if p["defect"]:
        ang, rad = p["defect_pos"]
        kind, size = p["defect_kind"], p["defect_size"]
        drng = np.random.default_rng(p["defect_seed"])
        if kind == "chip":  # a small bite out of the outer edge
            px, py = cx + r * math.cos(ang), cy + r * math.sin(ang)
            cv2.circle(dmask, (int(px), int(py)), max(3, int(size)), 1.0, -1, cv2.LINE_AA)
            dmask *= part
            under = _clutter(np.random.default_rng(p["bg_seed"]), h, w, (0, 6)) * 0.35 + 40
            img = _paste(img, under, dmask)
            # the fresh break catches the light: a bright rim along the bite, so the chip
            # shows even where the belt below is as dark as the bevel
            lip = _ring(xx, yy, px, py, max(3, int(size)) + 1.0) * part * (1 - dmask)
            img = _paste(img, np.full_like(img, 235.0), lip)
            dmask = np.maximum(dmask, lip)
        else:
            px, py = cx + rad * r * math.cos(ang), cy + rad * r * math.sin(ang)
            if kind == "crack":  # a thin dark jagged line
                pts = [(px, py)]
                heading = float(drng.uniform(0, 2 * np.pi))
                for _ in range(4):
                    heading += float(drng.uniform(-0.6, 0.6))
                    step = 0.75 * size
                    pts.append(
                        (
                            pts[-1][0] + step * math.cos(heading),
                            pts[-1][1] + step * math.sin(heading),
                        )
                    )
                cv2.polylines(dmask, [np.array(pts, np.int32)], False, 1.0, 2, cv2.LINE_AA)
            else:  # a pit: a small dark dent with a bright lip
                cv2.circle(dmask, (int(px), int(py)), max(3, int(0.5 * size)), 1.0, -1, cv2.LINE_AA)
            dmask *= part
            img = _paste(img, img * 0.35, dmask)
            if kind == "pit":
                lip = _ring(xx, yy, px, py, max(3, int(0.5 * size)) + 1.0) * part * (1 - dmask)
                img = _paste(img, np.full_like(img, 235.0), 0.8 * lip)
                dmask = np.maximum(dmask, lip)
    img = _finish(_lighting(img, p), p)
    return img, dmask


def class_label(p: Params) -> str:
    return "defect" if p["defect"] else "ok"


# =========================================================================== writing
_GENERATORS: dict[str, tuple[Callable[..., Params], Callable[[Params], tuple], Callable]] = {
    "point": (point_params, render_point, point_label),
    "value": (value_params, render_value, value_label),
    "keypoints": (keypoints_params, render_keypoints, keypoints_label),
    "class": (class_params, render_class, class_label),
}


def image_params(task: str, seed: int, split: int, i: int, **kw: Any) -> Params:
    """The parameters of image ``i`` of split ``split`` (0 train, 1 val) for ``seed``."""
    return _GENERATORS[task][0](np.random.default_rng([seed, split, i]), **kw)


def _header(task: str) -> str:
    return {
        "point": "image,x,y",
        "value": "image,value",
        "keypoints": "image," + ",".join(f"x{k},y{k}" for k in range(1, 5)),
        "class": "image,label",
    }[task]


def _label_text(task: str, label: Any) -> str:
    if task == "value":
        return f"{label:.2f}"
    if task == "class":
        return str(label)
    return ",".join(f"{v:.6f}" for v in label)


def _make_one(task: str, seed: int, split: int, i: int, defect: bool | None) -> tuple[bytes, str]:
    """Render and JPEG-encode image ``i``; returns (file bytes, label text)."""
    params_fn, render_fn, label_fn = _GENERATORS[task]
    rng = np.random.default_rng([seed, split, i])
    p = params_fn(rng, defect=defect) if defect is not None else params_fn(rng)
    img, _ = render_fn(p)
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # pragma: no cover
        raise OutputError(f"JPEG encoding failed for image {i}")
    return buf.tobytes(), _label_text(task, label_fn(p))


def _make_chunk(
    args: tuple[str, int, int, list[tuple[int, bool | None]]],
) -> list[tuple[bytes, str]]:
    task, seed, split, items = args
    return [_make_one(task, seed, split, i, d) for i, d in items]


def _worker_init() -> None:
    """One OpenCV thread per worker process: the processes already fill the cores."""
    cv2.setNumThreads(1)


def _class_plan(n: int, seed: int, split: int) -> np.ndarray:
    """Which images of a class split show a defect: exactly round(n * DEFECT_FRACTION)."""
    k = int(round(n * DEFECT_FRACTION))
    if n >= 2:
        k = min(max(k, 1), n - 1)
    defects = np.zeros(n, bool)
    defects[np.random.default_rng([seed, split, 2**31]).permutation(n)[:k]] = True
    return defects


def write_split(
    out: Path, task: str, n: int, seed: int, split: int, progress: bool, workers: int = 1
) -> Path:
    """Write ``n`` images and labels.csv into the folder ``out`` (replaced as a whole)."""
    defects: list[bool | None] = [None] * n
    if task == "class":
        defects = [bool(v) for v in _class_plan(n, seed, split)]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as e:
        raise OutputError(f"{out}: cannot create ({e.strerror or e})") from None
    chunk = max(4, min(50, math.ceil(n / (4 * max(1, workers)))))
    jobs = [
        (task, seed, split, [(i, defects[i]) for i in range(a, min(n, a + chunk))])
        for a in range(0, n, chunk)
    ]
    bar: Any = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=n, desc=f"{task} {out.name}", unit="img", leave=False)
        except ImportError:  # pragma: no cover - tqdm is a train extra
            bar = None
    try:
        lines = [_header(task)]
        pool = None
        if workers > 1 and len(jobs) > 2:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: the caller may have TensorFlow's threads running
            pool = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
            )
            results: Any = pool.map(_make_chunk, jobs)
        else:
            results = map(_make_chunk, jobs)
        i = 0
        try:
            for res in results:
                for data, label in res:
                    name = f"img_{i:05d}.jpg"
                    (tmp / name).write_bytes(data)
                    lines.append(f"{name},{label}")
                    i += 1
                if bar is not None:
                    bar.update(len(res))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        atomic_write_text(tmp / "labels.csv", "\n".join(lines) + "\n")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except OSError as e:
        raise OutputError(f"{out}: could not be written ({e.strerror or e})") from None
    finally:
        if bar is not None:
            bar.close()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def make_samples(
    out_dir: str | Path,
    task: str,
    n: int | None = None,
    n_val: int | None = None,
    seed: int = 0,
    progress: bool = False,
    workers: int | None = None,
) -> Path:
    """Write ``out_dir/train/`` and ``out_dir/val/``, two contract datasets of ``task``.

    Each folder is written to a temporary name and renamed into place, so an
    interrupted run never leaves a half-written dataset under the final name; an
    existing folder of the same name is replaced. ``workers`` processes render in
    parallel (the bytes do not depend on it).
    """
    if task not in TASKS:
        raise DataError(f"--task: {task!r} is not one of {', '.join(TASKS)}")
    dn, dv = DEFAULT_COUNTS[task]
    n = dn if n is None else int(n)
    n_val = dv if n_val is None else int(n_val)
    if n < 1 or n_val < 0:
        raise DataError(f"--n must be >= 1 and --n-val >= 0 (got {n}, {n_val})")
    if task == "class" and (n < 2 or 0 < n_val < 2):
        raise DataError("a class dataset needs at least 2 images per split (both classes)")
    out = Path(out_dir)
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    write_split(out / "train", task, n, seed, 0, progress, workers)
    if n_val:
        write_split(out / "val", task, n_val, seed, 1, progress, workers)
    return out
