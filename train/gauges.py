"""Analog dial gauges with the needle at a known angle: sample data of the ``angle`` task.

Like ``train/samples.py``: ``gauge_params(rng)`` draws every random choice of one image
into a JSON-safe dict and ``render_gauge(params)`` draws it (same params, same pixels).
The background and the camera (gain, white balance, illumination gradient, blur, sensor
noise) are the shared pieces of ``train/samples.py``. See ``docs/samples.md``.

Geometry. The gauge is drawn face-on in its own "unit" frame (pivot at the origin, the
outer edge of the bezel at radius 1, y down) on a fixed-size canvas, then mapped into
the image by ``M = T(center) S(radius) H`` where ``H`` is a mild perspective (the corners
of the gauge's square moved by up to ``PERSPECTIVE`` of its size). The label is the
direction of the *projected* needle, from its pivot to its tip, in the image: degrees
clockwise from "up", in [0, 360). A homography maps the straight needle to a straight
segment, so that direction is exact.

Image coordinates are continuous with pixel ``i`` covering ``[i, i + 1]`` (pixel centres
at ``i + 0.5``), as in the rest of edgereg.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from train.samples import Params, _clutter, _finish, _lighting, _photo_params

GAUGE_SIZE = (224, 224)
#: the dial scale of every gauge: SCALE_MIN at 7:30, SCALE_MAX at 4:30, clockwise over the top
SCALE_START_DEG = 225.0
SCALE_END_DEG = 135.0
SCALE_SWEEP_DEG = (SCALE_END_DEG - SCALE_START_DEG) % 360.0  # 270
SCALE_MIN, SCALE_MAX, SCALE_UNITS = 0.0, 10.0, "bar"

FACE_STYLES = ("classic", "dark", "industrial", "minimal", "vintage")
NEEDLE_SHAPES = ("line", "taper", "arrow")
NEEDLE_COLORS = {
    "red": (210, 28, 30),
    "black": (18, 18, 20),
    "white": (242, 242, 236),
    "orange": (250, 125, 15),
}
BEZELS = ("chrome", "brass", "black")
#: corner jitter of the perspective, as a share of the gauge's size (its diameter)
PERSPECTIVE = 0.06

_STYLES: dict[str, dict] = {
    # face colour, ink, numbers drawn, minor tick steps, needle colours, fonts
    "classic": {
        "face": (244, 244, 238),
        "ink": (22, 22, 24),
        "numbers": True,
        "minor": (0.2, 0.5),
        "needles": ("red", "black", "orange"),
        "fonts": (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX),
    },
    "dark": {
        "face": (26, 26, 30),
        "ink": (236, 236, 228),
        "numbers": True,
        "minor": (0.2, 0.5),
        "needles": ("white", "orange", "red"),
        "fonts": (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX),
    },
    "industrial": {
        "face": (236, 236, 230),
        "ink": (24, 24, 24),
        "numbers": True,
        "minor": (0.2, 0.5),
        "needles": ("black", "red"),
        "fonts": (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX),
    },
    "minimal": {
        "face": (212, 215, 218),
        "ink": (38, 38, 42),
        "numbers": False,
        "minor": (0.5,),
        "needles": ("red", "orange", "black"),
        "fonts": (cv2.FONT_HERSHEY_SIMPLEX,),
    },
    "vintage": {
        "face": (236, 224, 190),
        "ink": (60, 40, 26),
        "numbers": True,
        "minor": (0.2,),
        "needles": ("black", "red"),
        "fonts": (cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX),
    },
}
_BEZEL_RGB = {"chrome": (214, 216, 222), "brass": (214, 172, 92), "black": (58, 58, 62)}
_BRANDS = ("", "MANOMETER", "EDGE", "PN 16", "EN 837-1", "DRUCK")

# The face-on canvas: _C x _C pixels, _K pixels per unit (the bezel's outer radius).
_C = 320
_K = 150.0
_C0 = (_C - 1) / 2  # the pivot, in canvas pixel-centre coordinates
_G = _C // 4  # low-resolution grid of the smooth shading fields (upsampled 4x)
_SS = 2  # supersampling of the perspective warp
_SHIFT = 4  # fractional bits of OpenCV's drawing coordinates
_ONE = float(1 << _SHIFT)


# =========================================================================== geometry
def _dir(deg: float) -> np.ndarray:
    """Unit vector of a direction given in degrees clockwise from up (y down)."""
    a = math.radians(deg)
    return np.array([math.sin(a), -math.cos(a)])


def dial_angle(value: float) -> float:
    """The dial angle (degrees clockwise from up, face-on) of a scale value in bar."""
    t = (value - SCALE_MIN) / (SCALE_MAX - SCALE_MIN)
    return (SCALE_START_DEG + t * SCALE_SWEEP_DEG) % 360.0


def _unit_homography(persp: list) -> np.ndarray:
    """The perspective in the unit frame: the square (+-1, +-1) to its jittered corners."""
    sq = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
    return cv2.getPerspectiveTransform(
        sq.astype(np.float32), (sq + np.asarray(persp, np.float64)).astype(np.float32)
    ).astype(np.float64)


def gauge_homography(p: Params) -> np.ndarray:
    """3x3 matrix from the unit frame (pivot at 0, bezel radius 1) to image coordinates
    (pixel ``i`` covers ``[i, i + 1]``)."""
    (cx, cy), r = p["center"], p["radius"]
    place = np.array([[r, 0, cx], [0, r, cy], [0, 0, 1]], np.float64)
    return place @ _unit_homography(p["persp"])


def _project(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.atleast_2d(np.asarray(pts, np.float64))
    q = np.c_[pts, np.ones(len(pts))] @ m.T
    return q[:, :2] / q[:, 2:3]


def _image_angle(
    m: np.ndarray, needle_deg: float, length: float = 0.5
) -> tuple[float, np.ndarray, np.ndarray]:
    """(image-frame angle, projected pivot, projected point at ``length`` along the needle).

    A homography keeps the needle straight, so its direction does not depend on the
    length: for ``x -> (A x + b) / (c.x + e)`` the image of the pivot (x = 0) to the image
    of ``t u`` (t > 0) points along ``e A u - b (c.u)``.
    """
    u = _dir(needle_deg)
    v = m[2, 2] * (m[:2, :2] @ u) - m[:2, 2] * (m[2, :2] @ u)
    piv, tip = _project(m, np.array([[0.0, 0.0], u * length]))
    return math.degrees(math.atan2(v[0], -v[1])) % 360.0, piv, tip


def _on_sweep(deg: float) -> bool:
    return (deg - SCALE_START_DEG) % 360.0 <= SCALE_SWEEP_DEG


# =========================================================================== params
def gauge_params(rng: np.random.Generator, size: tuple[int, int] = GAUGE_SIZE) -> Params:
    """Every random choice of one gauge image (a JSON-safe dict).

    The steps draw from ``rng`` in a fixed order (a seed gives the same image): geometry,
    the look's main choices, then the dial, needle and lighting details."""
    h, w = size
    geometry = _gauge_geometry(rng, h, w)
    look = _gauge_look(rng)
    return {
        "size": [h, w],
        "bg_seed": int(rng.integers(2**62)),
        **geometry,
        **_dial_params(rng, look),
        **_needle_params(rng, look),
        **_light_params(rng, look),
        "with_needle": True,
        **_photo_params(rng, (0.7, 1.25), 0.08, 0.45, (0.0, 1.1), (1.5, 5.0)),
    }


def _gauge_geometry(rng: np.random.Generator, h: int, w: int) -> Params:
    """Step 1 of gauge_params: centre, radius, perspective and the needle's dial angle."""
    s = min(h, w)
    radius = float(rng.uniform(0.30, 0.45) * s)
    center = [float(w / 2 + rng.uniform(-0.1, 0.1) * w), float(h / 2 + rng.uniform(-0.1, 0.1) * h)]
    persp = _perspective(rng)
    m = gauge_homography({"center": center, "radius": radius, "persp": persp})
    return {"center": center, "radius": radius, "persp": persp, "needle_deg": _needle_deg(rng, m)}


def _perspective(rng: np.random.Generator) -> list[list[float]]:
    """Each corner of the gauge's square moves by up to PERSPECTIVE of the gauge's size;
    the mean shift and the mean rotation are taken out (the position is `center`, and the
    camera is mounted square to the dial: no roll)."""
    sq = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
    d = rng.uniform(-1, 1, (4, 2)) * 2 * PERSPECTIVE
    d -= d.mean(0)
    roll = np.sum(sq[:, 0] * d[:, 1] - sq[:, 1] * d[:, 0]) / np.sum(sq**2)
    d -= roll * np.c_[-sq[:, 1], sq[:, 0]]
    d *= min(1.0, 2 * PERSPECTIVE / np.abs(d).max())  # and no corner beyond the limit
    return [[float(a), float(b)] for a, b in d]


def _needle_deg(rng: np.random.Generator, m: np.ndarray) -> float:
    """The needle: uniform over the sweep on the dial; redrawn in the rare case the
    perspective ``m`` would show it outside the sweep (a stop pin holds it there anyway)."""
    for _ in range(100):
        needle_deg = float((SCALE_START_DEG + rng.uniform(0, SCALE_SWEEP_DEG)) % 360.0)
        if _on_sweep(_image_angle(m, needle_deg)[0]):
            return needle_deg
    # practically unreachable: mid-scale is always on the sweep
    return dial_angle((SCALE_MIN + SCALE_MAX) / 2)  # pragma: no cover


def _gauge_look(rng: np.random.Generator) -> dict[str, Any]:
    """Step 2 of gauge_params: the face style, colours, needle shape and light direction
    (not yet the params: the later steps turn them into their entries)."""
    style_name = str(rng.choice(FACE_STYLES))
    st = _STYLES[style_name]
    jitter = rng.uniform(-10, 10, 3)
    face = np.clip(np.array(st["face"]) + jitter, 0, 255)
    ink = np.clip(np.array(st["ink"]) + rng.uniform(-8, 8, 3), 0, 255)
    face_radius = float(rng.uniform(0.84, 0.91))
    shape = str(rng.choice(NEEDLE_SHAPES))
    ncol_name = str(rng.choice(st["needles"]))
    ncol = np.clip(np.array(NEEDLE_COLORS[ncol_name]) + rng.uniform(-10, 10, 3), 0, 255)
    hub_kind = str(rng.choice(["needle", "black", "chrome"]))
    hub_rgb = {"needle": ncol, "black": np.array([25, 25, 28]), "chrome": np.array([200, 200, 205])}
    bezel = str(rng.choice(BEZELS))
    glare_kind = str(rng.choice(["ellipse", "ellipse", "stripe", "none"]))
    light = float(rng.uniform(0, 360))
    zones = sorted(rng.uniform([5.5, 7.5], [7.0, 8.8]).tolist())
    return {
        "style_name": style_name,
        "style": st,
        "jitter": jitter,
        "face": face,
        "ink": ink,
        "face_radius": face_radius,
        "shape": shape,
        "ncol_name": ncol_name,
        "ncol": ncol,
        "hub": hub_rgb[hub_kind],
        "bezel": bezel,
        "glare_kind": glare_kind,
        "light": light,
        "zones": zones,
    }


def _dial_params(rng: np.random.Generator, look: dict[str, Any]) -> Params:
    """Step 3 of gauge_params: the dial face, its scale and printing."""
    st = look["style"]
    return {
        "face": look["style_name"],
        "face_rgb": [float(v) for v in look["face"]],
        "ink_rgb": [float(v) for v in look["ink"]],
        "face_radius": look["face_radius"],
        "vignette": float(rng.uniform(0.05, 0.25)),
        "minor_step": float(rng.choice(st["minor"])),
        "numbers": bool(st["numbers"]),
        "font": int(rng.choice(st["fonts"])),
        "zones": [float(v) for v in look["zones"]] if look["style_name"] == "industrial" else [],
        "scale_arc": bool(rng.random() < 0.5),
        "brand": str(rng.choice(_BRANDS)),
    }


def _needle_params(rng: np.random.Generator, look: dict[str, Any]) -> Params:
    """Step 4 of gauge_params: the needle, its hub and its shadow."""
    shape, light = look["shape"], look["light"]
    width = {"line": (0.012, 0.018), "taper": (0.030, 0.045), "arrow": (0.010, 0.015)}[shape]
    tail = {"line": (0.10, 0.20), "taper": (0.08, 0.16), "arrow": (0.20, 0.28)}[shape]
    return {
        "needle": shape,
        "needle_color": look["ncol_name"],
        "needle_rgb": [float(v) for v in look["ncol"]],
        "needle_len": float(rng.uniform(0.80, 0.93) * look["face_radius"]),
        "needle_width": float(rng.uniform(*width)),
        "needle_tail": float(rng.uniform(*tail)),
        "hub_radius": float(rng.uniform(0.045, 0.08)),
        "hub_rgb": [float(v) for v in look["hub"]],
        "needle_shadow": [
            float(0.022 * math.sin(math.radians(light + 180))),
            float(-0.022 * math.cos(math.radians(light + 180))),
            float(rng.uniform(0.15, 0.4)),
        ],
    }


def _light_params(rng: np.random.Generator, look: dict[str, Any]) -> Params:
    """Step 5 of gauge_params: the bezel, the light (glare, drop shadow) and the stem."""
    bezel, light = look["bezel"], look["light"]
    return {
        "bezel": bezel,
        "bezel_rgb": [
            float(v) for v in np.clip(np.array(_BEZEL_RGB[bezel]) + look["jitter"], 0, 255)
        ],
        "light_deg": light,
        "glare": {
            "kind": look["glare_kind"],
            "angle": float(rng.uniform(0, 360)),
            "dist": float(rng.uniform(0.25, 0.55)),
            "axes": [float(rng.uniform(0.30, 0.55)), float(rng.uniform(0.08, 0.2))],
            "strength": float(rng.uniform(0.15, 0.45)),
        },
        "drop_shadow": [
            float(0.05 * math.sin(math.radians(light + 180))),
            float(-0.05 * math.cos(math.radians(light + 180))),
            float(rng.uniform(0.03, 0.08)),
            float(rng.uniform(0.0, 0.45)),
        ],
        "stem": str(rng.choice(["bottom", "bottom", "none"])),
        "stem_rgb": [float(v) for v in rng.choice([[200, 160, 80], [170, 172, 176]])],
    }


# =========================================================================== labels
def gauge_label(p: Params) -> float:
    """The needle's direction in the image, pivot to tip: degrees clockwise from up, [0, 360)."""
    return _image_angle(gauge_homography(p), p["needle_deg"])[0]


def gauge_reading(p: Params) -> float:
    """The value the needle shows on the dial, in SCALE_UNITS (from its dial angle)."""
    return angle_to_reading(p["needle_deg"])


def angle_to_reading(deg: float) -> float:
    """The scale value at an angle (degrees clockwise from up), the inverse of ``dial_angle``.

    Exact for a dial angle. For an image-frame angle (a label or a prediction) it is off
    by the perspective's bend of the needle (mean 1.1 deg, i.e. 0.04 bar; see
    docs/samples.md). Angles in the dead zone clamp to the nearer end of the scale.
    """
    off = (deg - SCALE_START_DEG) % 360.0
    if off > SCALE_SWEEP_DEG:
        off = SCALE_SWEEP_DEG if off < (360.0 + SCALE_SWEEP_DEG) / 2 else 0.0
    return SCALE_MIN + (SCALE_MAX - SCALE_MIN) * off / SCALE_SWEEP_DEG


# =========================================================================== drawing
_CACHE: dict[str, np.ndarray] = {}


def _grids() -> dict[str, np.ndarray]:
    """Cached radius / angle grids of the canvas (low resolution) and the disc alpha."""
    if not _CACHE:
        # low-resolution cell j maps to canvas x = (j + 0.5) * _C / _G - 0.5 under resize
        j = (np.arange(_G, dtype=np.float32) + 0.5) * (_C / _G) - 0.5
        u = (j - _C0) / _K
        uy, ux = np.meshgrid(u, u, indexing="ij")
        _CACHE["r"] = np.hypot(ux, uy).astype(np.float32)
        _CACHE["ux"], _CACHE["uy"] = ux.astype(np.float32), uy.astype(np.float32)
        # full-resolution disc alpha: 1 inside the bezel, anti-aliased edge
        k = (np.arange(_C, dtype=np.float32) - _C0) / _K
        rr = np.hypot(*np.meshgrid(k, k, indexing="ij"))
        _CACHE["alpha"] = (np.clip((1.0 - rr) * _K + 0.5, 0, 1) * 255 + 0.5).astype(np.uint8)
        for a in _CACHE.values():
            a.flags.writeable = False
    return _CACHE


def _pts(unit_pts: np.ndarray) -> np.ndarray:
    """Unit-frame points -> OpenCV fixed-point canvas coordinates (int32)."""
    return np.round((np.asarray(unit_pts) * _K + _C0) * _ONE).astype(np.int32)


def _col(rgb: Iterable[float]) -> tuple[int, int, int]:
    r, g, b = (int(round(v)) for v in rgb)
    return (r, g, b)


def _circle(img: np.ndarray, c: Iterable[float], r: float, col: tuple, th: int = -1) -> None:
    cx, cy = _pts(np.asarray(list(c)))
    cv2.circle(img, (int(cx), int(cy)), int(round(r * _K * _ONE)), col, th, cv2.LINE_AA, _SHIFT)


def _arc(r0: float, r1: float, a0: float, a1: float) -> np.ndarray:
    """An annular sector (unit frame) between dial angles a0 -> a1 (clockwise)."""
    n = max(2, int(abs(a1 - a0) / 2) + 1)
    a = np.radians(np.linspace(a0, a1, n))
    d = np.c_[np.sin(a), -np.cos(a)]
    return np.r_[d * r1, d[::-1] * r0]


def _fields(p: Params) -> np.ndarray:
    """Bezel and face shading (low resolution), upsampled to the canvas (RGB uint8)."""
    g = _grids()
    r, ux, uy = g["r"], g["ux"], g["uy"]
    rf = p["face_radius"]
    lx, ly = (float(v) for v in _dir(p["light_deg"]))
    along = ux * lx + uy * ly
    lit = along / np.maximum(r, 1e-3)  # cos(angle to the light)
    # bezel: a convex ring, brighter towards the light, with two specular streaks
    ridge = np.sin(np.clip((r - rf) * (np.pi / (1.0 - rf)), 0, np.pi))
    diffuse = (0.35 + 0.55 * ridge) * (0.7 + 0.3 * lit)
    c2 = np.clip(2 * lit * lit - 1, 0, 1)  # cos(2 * angle to the light), clipped
    c2 *= c2 * ridge
    spec = {"chrome": 0.55, "brass": 0.35, "black": 0.25}[p["bezel"]] * 255 * (c2 * c2 * c2)
    # face: darker near the bezel (its shadow), a faint gradient along the light
    edge = np.clip((r - (rf - 0.10)) * 10.0, 0, 1)
    shade = (1 - p["vignette"] * edge * edge) * (1 + 0.04 * along)
    inside = r < rf
    gain = np.where(inside, shade, diffuse)
    add = np.where(inside, np.float32(0), spec)
    chans = [
        gain * np.where(inside, np.float32(f), np.float32(b)) + add
        for f, b in zip(p["face_rgb"], p["bezel_rgb"], strict=True)
    ]
    out = cv2.merge(chans)
    out = cv2.convertScaleAbs(out)  # saturating round to uint8
    return cv2.resize(out, (_C, _C), interpolation=cv2.INTER_LINEAR)


def _needle_parts(p: Params) -> tuple[list[np.ndarray], list[tuple[np.ndarray, float]]]:
    """The needle as (polygons, circles) in the unit frame, pointing at ``needle_deg``."""
    d = _dir(p["needle_deg"])
    n = np.array([-d[1], d[0]])
    L, w, tail = p["needle_len"], p["needle_width"], p["needle_tail"]

    def at(t: float, s: float) -> np.ndarray:
        return t * d + s * n

    polys: list[np.ndarray] = []
    circles: list[tuple[np.ndarray, float]] = []
    if p["needle"] == "line":
        polys.append(np.array([at(-tail, -w / 2), at(L, -w / 2), at(L, w / 2), at(-tail, w / 2)]))
    elif p["needle"] == "taper":
        tw = 0.006
        polys.append(
            np.array(
                [at(-tail, -w / 2), at(L - 0.02, -tw), at(L, 0), at(L - 0.02, tw), at(-tail, w / 2)]
            )
        )
    else:  # arrow: a thin shaft, an arrow head, a round counterweight on the tail
        head = 0.13
        polys.append(
            np.array(
                [at(-tail, -w / 2), at(L - head, -w / 2), at(L - head, w / 2), at(-tail, w / 2)]
            )
        )
        polys.append(
            np.array(
                [
                    at(L - head - 0.01, -3.2 * w),
                    at(L, 0),
                    at(L - head - 0.01, 3.2 * w),
                    at(L - head, 0),
                ]
            )
        )
        circles.append((at(-tail, 0), 0.042))
    return polys, circles


def _draw_face(c: np.ndarray, p: Params) -> None:
    """Ticks, numbers, zones and text on the canvas (RGB uint8, in place)."""
    rf = p["face_radius"]
    ink = _col(p["ink_rgb"])
    ro = 0.93 * rf  # outer end of the ticks
    aa = cv2.LINE_AA
    if p["zones"]:
        g, y = p["zones"]
        for v0, v1, rgb in ((0, g, (40, 160, 70)), (g, y, (240, 196, 30)), (y, 10, (215, 40, 35))):
            poly = _arc(ro - 0.07, ro, dial_angle(v0), dial_angle(v0) + 27 * (v1 - v0))
            cv2.fillPoly(c, [_pts(poly)], _col(rgb), aa, _SHIFT)
    if p["scale_arc"]:
        poly = _arc(ro - 0.006, ro + 0.006, SCALE_START_DEG, SCALE_START_DEG + SCALE_SWEEP_DEG)
        cv2.fillPoly(c, [_pts(poly)], ink, aa, _SHIFT)
    # ticks: majors every unit, minors every `minor_step` (longer at halves)
    n = int(round((SCALE_MAX - SCALE_MIN) / p["minor_step"]))
    v = SCALE_MIN + np.arange(n + 1) * p["minor_step"]
    major = np.abs(v - np.round(v)) < 1e-6
    half = np.abs(2 * v - np.round(2 * v)) < 1e-6
    ln = np.where(major, 0.13, np.where(half, 0.085, 0.06))[:, None]
    hw = np.where(major, 0.011, np.where(half, 0.006, 0.0045))[:, None]
    a = np.radians(SCALE_START_DEG + (v - SCALE_MIN) * (SCALE_SWEEP_DEG / (SCALE_MAX - SCALE_MIN)))
    dv, nv = np.c_[np.sin(a), -np.cos(a)], np.c_[np.cos(a), np.sin(a)]  # radial, tangential
    r0 = ro - ln * rf
    quads = np.stack(
        [dv * r0 - nv * hw, dv * ro - nv * hw, dv * ro + nv * hw, dv * r0 + nv * hw], 1
    )
    cv2.fillPoly(c, list(_pts(quads)), ink, aa, _SHIFT)
    font = p["font"]
    if p["numbers"]:
        scale, th = 0.055 * _K * rf / 12.0, 2
        rn = ro - 0.26 * rf
        for v in range(int(SCALE_MIN), int(SCALE_MAX) + 1):
            txt = str(v)
            (tw, tht), _ = cv2.getTextSize(txt, font, scale, th)
            x, y = _dir(dial_angle(v)) * rn * _K + _C0
            cv2.putText(c, txt, (int(x - tw / 2), int(y + tht / 2)), font, scale, ink, th, aa)
    for txt, y, k in ((SCALE_UNITS, 0.38, 1.0), (p["brand"], -0.36, 0.6)):
        if not txt:
            continue
        scale, th = k * 0.05 * _K * rf / 12.0, 2 if k >= 1 else 1
        (tw, tht), _ = cv2.getTextSize(txt, font, scale, th)
        x, yy = _C0, _C0 + y * rf * _K
        cv2.putText(c, txt, (int(x - tw / 2), int(yy + tht / 2)), font, scale, ink, th, aa)
    # the bezel's inner lip: a dark line hiding the (low-resolution) face edge
    lip = tuple(0.35 * v for v in p["bezel_rgb"])
    _circle(c, (0.0, 0.0), rf + 0.004, _col(lip), max(2, int(round(0.018 * _K))))


def _draw_needle(c: np.ndarray, p: Params) -> None:
    """The needle's soft shadow, the needle and the hub cap (in place)."""
    polys, circles = _needle_parts(p)
    aa = cv2.LINE_AA
    sx, sy, strength = p["needle_shadow"]
    off = np.array([sx, sy])
    # shadow: the needle shifted away from the light, blurred, darkening the face
    allp = np.concatenate([*polys, *(cc[None] for cc, _ in circles)])
    lo = np.floor((allp.min(0) + min(0, sx, sy) - 0.08) * _K + _C0).astype(int).clip(0, _C)
    hi = np.ceil((allp.max(0) + max(0, sx, sy) + 0.08) * _K + _C0).astype(int).clip(0, _C)
    m = np.zeros((_C, _C), np.uint8)
    cv2.fillPoly(m, [_pts(q + off) for q in polys], 255, aa, _SHIFT)
    for cc, rad in circles:
        _circle(m, cc + off, rad, 255)
    _circle(m, off, p["hub_radius"], 255)
    ys, xs = slice(lo[1], hi[1]), slice(lo[0], hi[0])
    roi = cv2.GaussianBlur(m[ys, xs], (0, 0), 0.012 * _K)
    f = (255 - strength * roi.astype(np.float32)).astype(np.uint8)
    c[ys, xs] = cv2.multiply(c[ys, xs], cv2.merge([f, f, f]), scale=1 / 255)
    # the needle, its counterweight, the hub cap (a darker rim, a highlight towards the light)
    col = _col(p["needle_rgb"])
    cv2.fillPoly(c, [_pts(q) for q in polys], col, aa, _SHIFT)
    for cc, rad in circles:
        _circle(c, cc, rad, col)
    hub = np.asarray(p["hub_rgb"])
    _circle(c, (0.0, 0.0), p["hub_radius"], _col(hub * 0.6))
    _circle(c, (0.0, 0.0), p["hub_radius"] * 0.8, _col(hub))
    lx, ly = _dir(p["light_deg"]) * p["hub_radius"] * 0.35
    _circle(c, (lx, ly), p["hub_radius"] * 0.3, _col(np.minimum(255, hub * 0.5 + 130)))


def _glare(c: np.ndarray, p: Params) -> np.ndarray:
    """A soft specular reflection on the glass (over face and needle)."""
    gl = p["glare"]
    if gl["kind"] == "none" or gl["strength"] <= 0:
        return c
    g = _grids()
    r, ux, uy = g["r"], g["ux"], g["uy"]
    cx, cy = _dir(gl["angle"]) * gl["dist"]
    if gl["kind"] == "ellipse":
        # elongated along the rim (tangential), centred off the pivot
        tx, ty = _dir(gl["angle"] + 90)
        a, b = gl["axes"]
        u = ((ux - cx) * tx + (uy - cy) * ty) / a
        v = ((ux - cx) * -ty + (uy - cy) * tx) / b
        field = np.exp(-(u * u + v * v) * 2.0)
    else:
        # a straight stripe across the glass, crossing (cx, cy)
        tx, ty = _dir(gl["angle"] + 90)
        v = ((ux - cx) * -ty + (uy - cy) * tx) / gl["axes"][1]
        field = np.exp(-(v * v) * 2.0) * np.clip(1 - r / p["face_radius"], 0, 1) ** 0.3
    glass = np.clip((p["face_radius"] - r) / 0.01, 0, 1)
    a8 = np.clip(field * glass * gl["strength"] * 255 + 0.5, 0, 255).astype(np.uint8)
    rows, cols = np.nonzero(a8.any(1))[0], np.nonzero(a8.any(0))[0]
    if not len(rows):
        return c
    k = _C // _G  # only where the glare is: its low-resolution box, one cell wider
    y0, y1 = max(0, (rows[0] - 1) * k), min(_C, (rows[-1] + 2) * k)
    x0, x1 = max(0, (cols[0] - 1) * k), min(_C, (cols[-1] + 2) * k)
    a8 = cv2.resize(a8, (_C, _C), interpolation=cv2.INTER_LINEAR)[y0:y1, x0:x1]
    roi = c[y0:y1, x0:x1]
    c[y0:y1, x0:x1] = cv2.add(roi, cv2.multiply(255 - roi, cv2.merge([a8, a8, a8]), scale=1 / 255))
    return c


def _stem(img: np.ndarray, m: np.ndarray, p: Params) -> None:
    """A bottom-mount stem with a hex nut, behind the gauge (in place, uint8 image)."""
    if p["stem"] != "bottom":
        return
    rgb = np.asarray(p["stem_rgb"])
    parts = [
        ([[-0.10, 0.9], [0.10, 0.9], [0.10, 1.22], [-0.10, 1.22]], 0.85),
        ([[-0.22, 1.22], [-0.11, 1.22], [-0.11, 1.44], [-0.22, 1.44]], 0.6),
        ([[-0.11, 1.22], [0.11, 1.22], [0.11, 1.44], [-0.11, 1.44]], 1.0),
        ([[0.11, 1.22], [0.22, 1.22], [0.22, 1.44], [0.11, 1.44]], 0.75),
        ([[-0.08, 1.44], [0.08, 1.44], [0.08, 1.7], [-0.08, 1.7]], 0.7),
    ]
    for quad, k in parts:
        q = _project(m, np.array(quad)) - 0.5  # to pixel-centre coordinates
        col = tuple(int(v) for v in np.clip(rgb * k, 0, 255))
        cv2.fillPoly(img, [np.round(q * _ONE).astype(np.int32)], col, cv2.LINE_AA, _SHIFT)


def render_gauge(p: Params) -> tuple[np.ndarray, dict]:
    """Draw a gauge image. Returns (RGB uint8 HxWx3, aux).

    aux: ``pivot_px`` and ``tip_px`` (x, y in the image, pixel ``i`` covering ``[i, i+1]``),
    ``angle_deg`` (= ``gauge_label(p)``), ``reading`` (= ``gauge_reading(p)``) and
    ``mask`` (HxW float32 coverage of the gauge, bezel included).
    """
    h, w = p["size"]
    m = gauge_homography(p)
    # the face-on gauge on its canvas; drawn in RGB, since OpenCV's anti-aliased text
    # also writes into a fourth channel, and the disc's alpha is added afterwards
    canvas = _fields(p)
    _draw_face(canvas, p)
    if p["with_needle"]:
        _draw_needle(canvas, p)
    canvas = cv2.cvtColor(_glare(canvas, p), cv2.COLOR_RGB2RGBA)
    canvas[..., 3] = _grids()["alpha"]
    # into the image: warp at _SS x resolution over the gauge's bounding box, then average
    quad = _project(m, np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * 1.02)
    x0, y0 = np.floor(quad.min(0)).astype(int).clip(0, (w, h))
    x1, y1 = np.ceil(quad.max(0)).astype(int).clip(0, (w, h))
    img = _clutter(np.random.default_rng(p["bg_seed"]), h, w, (8, 22))
    mask = np.zeros((h, w), np.float32)
    if x1 > x0 and y1 > y0:
        to_canvas = np.array([[_K, 0, _C0], [0, _K, _C0], [0, 0, 1]])
        ss = np.array([[_SS, 0, -_SS * x0 - 0.5], [0, _SS, -_SS * y0 - 0.5], [0, 0, 1]])
        warp = ss @ m @ np.linalg.inv(to_canvas)
        big = cv2.warpPerspective(
            canvas, warp, (_SS * (x1 - x0), _SS * (y1 - y0)), flags=cv2.INTER_LINEAR
        )
        small = cv2.resize(big, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        a = small[..., 3].astype(np.float32) * np.float32(1 / 255)
        mask[y0:y1, x0:x1] = a
        if p["stem"] == "bottom":
            u8 = img.astype(np.uint8)  # the clutter is whole numbers in 0..255
            _stem(u8, m, p)
            img = u8.astype(np.float32)
        dx, dy, blur, strength = p["drop_shadow"]
        if strength > 0:  # a soft shadow of the gauge on the background
            r = p["radius"]
            sh = np.roll(mask, (int(round(dy * r)), int(round(dx * r))), (0, 1))
            sh = cv2.GaussianBlur(sh, (0, 0), max(0.5, blur * r))
            img *= (1 - strength * sh)[..., None]
        rgb = cv2.cvtColor(small, cv2.COLOR_RGBA2RGB).astype(np.float32)
        img[y0:y1, x0:x1] = cv2.blendLinear(rgb, img[y0:y1, x0:x1], a, 1 - a)
    img = _finish(_lighting(img, p), p)
    angle, piv, tip = _image_angle(m, p["needle_deg"], p["needle_len"])
    aux = {
        "pivot_px": (float(piv[0]), float(piv[1])),
        "tip_px": (float(tip[0]), float(tip[1])),
        "angle_deg": angle,
        "reading": gauge_reading(p),
        "mask": mask,
    }
    return img, aux


# =========================================================================== docs
def contact_sheet(seeds: Iterable[int], path: str | Path, cols: int = 4, tile: int = 224) -> Path:
    """Render ``gauge_params(default_rng(seed))`` for each seed into one PNG grid.

    Each tile is captioned with its label (image angle) and reading. The sheet is stored
    with a 256-colour palette (the sensor noise makes a full-colour PNG ~4x larger).
    ``docs/img/gauges.png`` is ``python -m train.gauges docs/img/gauges.png``.
    """
    tiles = []
    for seed in seeds:
        p = gauge_params(np.random.default_rng(seed))
        img, aux = render_gauge(p)
        if tile != img.shape[1]:
            img = cv2.resize(img, (tile, tile * img.shape[0] // img.shape[1]), cv2.INTER_AREA)
        cap = np.full((18, img.shape[1], 3), 255, np.uint8)
        txt = f"{aux['angle_deg']:.1f} deg  {gauge_reading(p):.2f} {SCALE_UNITS}"
        cv2.putText(cap, txt, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([img, cap]))
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    sheet = np.vstack([np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)])
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(_palette_png(sheet))
    return out


def _palette_png(rgb: np.ndarray, colors: int = 256) -> bytes:
    """An 8-bit indexed PNG of ``rgb`` (Pillow's median-cut palette, no dithering).

    Pillow comes with matplotlib (the train extra); it is imported only here.
    """
    import io

    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(rgb), "RGB").quantize(
        colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(contact_sheet(range(12), sys.argv[1] if len(sys.argv) > 1 else "docs/img/gauges.png"))
