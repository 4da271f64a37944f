"""``keypoints`` on the workstation: K normalized (x, y) per image (corners, landmarks).

Labels: ``image,x1,y1,...,xK,yK`` (K from the header; normalized, origin top-left).
``--flip-pairs 0:1,2:3`` names the keypoints that swap under a horizontal mirror; without
it images are never mirrored. Sample data: the user story of ``seeds/002``, a card's
four corners (TL, TR, BR, BL) under perspective on clutter; ``--outside`` and
``--occluded`` make some cards reach past the frame or hide a corner (real labels: see
``train/tasks/_coordinates.py``), and the benchmark variant ``keypoints-outside`` measures
what the margin and masking give.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edge_runtime.errors import OptionError, SpecError
from edge_runtime.spec import parse_flip_pairs
from train.samples import _clutter, _finish, _lighting, _paste, _photo_params, _rand_color

from . import register
from ._coordinates import CoordinatesTrainTask
from .base import (
    BenchVariant,
    HeaderProblem,
    ImportRule,
    LabelColumns,
    Params,
    SampleSet,
    TaskOption,
    parse_number,
)

if TYPE_CHECKING:  # pragma: no cover
    pass

SAMPLE_SIZE = (224, 224)
_COLUMN = re.compile(r"([xy])(\d+)")
SAMPLE_COUNTS = (300, 100)
CARD_W, CARD_H = 320, 200


def _numbered_columns(header: list[str]) -> dict[tuple[str, int], int]:
    """(axis, number) -> column index of every ``xN``/``yN`` column; a number written two
    ways (``x1`` and ``x01``) is refused."""
    found: dict[tuple[str, int], int] = {}
    for i, h in enumerate(header):
        m = _COLUMN.fullmatch(h.strip().lower())
        if not m:
            continue
        key = (m.group(1), int(m.group(2)))
        if key in found:
            raise HeaderProblem(
                f"columns {header[found[key]]!r} and {h!r} are the same keypoint "
                f"coordinate ({key[0]}{key[1]}): keep one",
                h,
            )
        found[key] = i
    return found


def _pairs_text(nums: list[int]) -> str:
    return ", ".join(f"x{n},y{n}" for n in nums[:6]) + (" ..." if len(nums) > 6 else "")


def i_text(base: int) -> str:
    """How column numbers relate to keypoint index i: ``i`` (from 0) or ``i+1``."""
    return "i" if base == 0 else "i+1"


def _flip_pairs(text: Any) -> list[list[int]]:
    try:
        pairs = parse_flip_pairs(text) if isinstance(text, str) else tuple(text)
    except SpecError as e:
        raise OptionError(f"--flip-pairs: {e}") from None
    return [[int(a), int(b)] for a, b in pairs]


FLIP_PAIRS = TaskOption(
    "flip_pairs",
    "--flip-pairs",
    "keypoints that swap under a horizontal flip, e.g. 0:1,2:3 (indices from 0 whatever "
    "the columns' numbering: x1,y1 or x0,y0 is keypoint 0; without them keypoints are "
    "never mirrored).",
    metavar="A:B,...",
    default=[],
    parse=_flip_pairs,
)


def _share(flag: str) -> Any:
    def parse(text: Any) -> float:
        v = parse_number(text, flag)
        if not 0.0 <= v <= 1.0:
            raise OptionError(f"{flag}: {v:g} must be a share of the images from 0 to 1")
        return v

    return parse


OUTSIDE = TaskOption(
    "outside",
    "--outside",
    "Share of the images (0..1) whose card reaches past the frame: one or two corners "
    "slightly outside it (up to 12 % of the size), labelled where they are.",
    type=float,
    default=0.0,
    metavar="SHARE",
    parse=_share("--outside"),
)
OCCLUDED = TaskOption(
    "occluded",
    "--occluded",
    "Share of the images (0..1) with one corner hidden under a blob (a thumb), written as "
    "empty x/y cells (a missing keypoint).",
    type=float,
    default=0.0,
    metavar="SHARE",
    parse=_share("--occluded"),
)
#: Sample options of the benchmark variant ``keypoints-outside``.
BENCH_OUTSIDE_ARGS = ("--outside", "0.1", "--occluded", "0.05")


class KeypointsTrainTask(CoordinatesTrainTask):
    name = "keypoints"
    options = (*CoordinatesTrainTask.options, FLIP_PAIRS)
    default_input_size = 160
    #: 8 coordinates to place: on the keypoints sample set the default run was still
    #: improving at its last epoch with 1500 steps (best epoch 76 of 79).
    default_steps = 2400
    max_default_epochs = 120
    #: Corners are local: the stride-16 map (10x10 at 160 px) gave pck@0.05 0.95 and
    #: 5.43 px where the stride-32 one (5x5) gave 0.91 and 6.60 px, with cheaper steps.
    trunk = "stride16"
    bench_bar = "pck@0.05 ≥ 0.95"
    bench_metrics = ("pck@0.05", "mean_error_pct_width", "mean_error_px")
    handrolled = "mobilenet_v1_dense"
    examples_legend = "green o = true (numbered), red x = predicted"
    import_rule = ImportRule("points")

    def import_header(self, num_points: int) -> list[str]:
        return [f"{a}{i}" for i in range(1, num_points + 1) for a in "xy"]

    def label_columns(self, header: list[str], opts: Mapping[str, Any]) -> LabelColumns:
        """``x1,y1,...,xK,yK`` (numbered from 1) or ``x0,y0,...`` (from 0): the numbering
        is detected and said in the report; a gap, half a pair or a number written twice
        is refused with the reason (never a keypoint quietly dropped as an extra column)."""
        numbered = _numbered_columns(header)
        if not numbered:
            raise HeaderProblem(
                "missing header columns x1,y1,...,xK,yK (keypoints need numbered x/y pairs, "
                "numbered from 1, or from 0 as x0,y0,...)",
                "x1",
            )
        base = 0 if any(n == 0 for _, n in numbered) else 1
        nums = sorted({n for _, n in numbered})
        k = len(nums)
        if nums != list(range(base, base + k)):
            missing = sorted(set(range(base, nums[-1] + 1)) - set(nums))
            raise HeaderProblem(
                f"keypoint columns numbered from {base} skip {', '.join(map(str, missing))} "
                f"(found {_pairs_text(nums)}): number the keypoints without gaps"
            )
        half = [f"{a}{n}" for n in nums for a in "xy" if (a, n) not in numbered]
        if half:
            raise HeaderProblem(
                f"header has no {', '.join(half)}: every keypoint needs both its x and y "
                f"column (found {_pairs_text(nums)})",
                half[0],
            )
        need = [numbered[(a, n)] for n in nums for a in "xy"]
        names = [header[i] for i in need]
        note = (
            f"keypoint columns numbered from {base} ({names[0]},{names[1]} .. "
            f"{names[-2]},{names[-1]}): {k} keypoint(s); --flip-pairs and results number "
            "them from 0, so "
            + ("keypoint i is xi,yi" if base == 0 else f"{names[0]},{names[1]} is keypoint 0")
        )
        return LabelColumns(need, names, ",".join(names), k, notes=[note])

    def spec_fields(self, opts: Mapping[str, Any], ds: Any, train_targets: np.ndarray) -> dict:
        k = ds.num_keypoints
        pairs = [tuple(p) for p in opts.get("flip_pairs") or []]
        first = str(getattr(ds, "target_name", "") or "x1").split(",")[0].lower()
        base = 0 if first == "x0" else 1
        for a, b in pairs:
            if a == b or not (0 <= a < k and 0 <= b < k):
                why = f"{a} and {b} are the same keypoint" if a == b else "out of range"
                raise OptionError(
                    f"--flip-pairs: {a}:{b} is {why}: give two different keypoint indices "
                    f"from 0 to {k - 1} (the labels have {k} keypoint(s); index i is columns "
                    f"x{i_text(base)},y{i_text(base)})"
                )
        return {"num_keypoints": k, "flip_pairs": tuple(pairs)}

    def samples(self) -> SampleSet:
        return SampleSet(
            counts=SAMPLE_COUNTS,
            size=SAMPLE_SIZE,
            params=keypoints_params,
            render=render_keypoints,
            label=keypoints_label,
            header="image," + ",".join(f"x{k},y{k}" for k in range(1, 5)),
            label_text=lambda label: ",".join("" if v is None else f"{v:.6f}" for v in label),
            plan=keypoints_plan,
            description="card corners (300 images)",
            options=(OUTSIDE, OCCLUDED),
        )

    def bench_variants(self) -> tuple[BenchVariant, ...]:
        return (
            BenchVariant(
                "keypoints-outside",
                "the keypoints sample data with 10 % of the cards reaching past the frame "
                "and 5 % with a hidden corner (`edgereg samples make --task keypoints "
                + " ".join(BENCH_OUTSIDE_ARGS)
                + "`)",
                BENCH_OUTSIDE_ARGS,
                groups=corner_groups,
                # two runs of the default 120 epochs take 2 h on the shared 2-core machine;
                # both runs get the same 40 (760 steps)
                train_args=("--epochs", "40"),
            ),
        )


def corner_groups(targets: np.ndarray) -> dict[str, np.ndarray]:
    """Rows with a corner outside the frame, and rows with a missing (hidden) corner."""
    t = np.asarray(targets, np.float64).reshape(len(targets), -1, 2)
    given = np.isfinite(t).all(axis=-1)
    outside = given & ~np.all((t >= 0.0) & (t <= 1.0), axis=-1)
    return {"a corner outside the frame": outside.any(axis=1), "a corner missing": (~given).any(1)}


# =========================================================================== sample data
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


def keypoints_plan(
    n: int, seed: int, split: int, outside: float = 0.0, occluded: float = 0.0
) -> list[dict[str, Any]]:
    """Which images reach past the frame and which hide a corner (disjoint sets; exact
    counts: round(share * n)), the same for the same (n, seed, split)."""
    rng = np.random.default_rng([seed, split, 2024])
    order = rng.permutation(n)
    n_out = int(round(outside * n))
    n_occ = min(n - n_out, int(round(occluded * n)))
    plan: list[dict[str, Any]] = [{} for _ in range(n)]
    for i in order[:n_out]:
        plan[i] = {"outside": True}
    for i in order[n_out : n_out + n_occ]:
        plan[i] = {"occlude": True}
    return plan


def keypoints_params(
    rng: np.random.Generator,
    size: tuple[int, int] = SAMPLE_SIZE,
    outside: bool = False,
    occlude: bool = False,
) -> Params:
    """Every random choice of one keypoints image: where the card's corners land.

    ``outside``: the card is then moved past one edge of the frame, its farthest corner
    2-12 % of the size beyond it. ``occlude``: one corner is covered by a blob and has no
    label. Both draw their random choices after the usual ones, so the other images of a
    set are the same with or without them.
    """
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
    p = {
        "size": [h, w],
        "bg_seed": int(rng.integers(2**62)),
        "corners": quad.tolist(),
        "tint": [float(v) for v in rng.uniform(0.85, 1.05, 3)],
        "occluders": occluders,
        "shadow": float(rng.uniform(0.0, 0.35)),
        **_photo_params(rng, (0.6, 1.25), 0.10, 0.5, (0.0, 1.3), (2.0, 7.0)),
        "hidden": [],
    }
    if outside:
        p["corners"] = _past_the_edge(rng, quad, w, h).tolist()
    if occlude:
        _hide_a_corner(rng, p)
    return p


def _past_the_edge(rng: np.random.Generator, quad: np.ndarray, w: int, h: int) -> np.ndarray:
    """The card shifted past one edge: its farthest corner that way ends 2-12 % of the
    frame's size beyond it (well within the labels' margin of 25 %)."""
    side = int(rng.integers(4))  # left, right, top, bottom
    axis, sign = (0, -1) if side == 0 else (0, 1) if side == 1 else (1, -1) if side == 2 else (1, 1)
    size = (w, h)[axis]
    beyond = float(rng.uniform(0.02, 0.12)) * size
    # the label of pixel-centre coordinate c is (c + 0.5) / size: the edges are -0.5, size-0.5
    edge = -0.5 if sign < 0 else size - 0.5
    extreme = quad[:, axis].min() if sign < 0 else quad[:, axis].max()
    out = quad.copy()
    out[:, axis] += (edge + sign * beyond) - extreme
    return out


def _hide_a_corner(rng: np.random.Generator, p: Params) -> None:
    """Cover one corner with an opaque blob drawn over everything (a thumb): no label."""
    k = int(rng.integers(4))
    w = p["size"][1]
    cx, cy = np.asarray(p["corners"][k]) + rng.uniform(-3, 3, 2)
    p["occluders"].append(
        {
            "center": [float(cx), float(cy)],
            "axes": [float(rng.uniform(0.07, 0.11) * w), float(rng.uniform(0.06, 0.09) * w)],
            "angle": float(rng.uniform(0, 180)),
            "color": list(_rand_color(rng)),
        }
    )
    p["hidden"] = [k]


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


def keypoints_label(p: Params) -> list[float | None]:
    """x1,y1,...,x4,y4 normalized: the card's own TL, TR, BR, BL (TL..TR = blue band edge);
    None for a hidden corner (empty cells)."""
    h, w = p["size"]
    out: list[float | None] = []
    hidden = set(p.get("hidden", ()))
    for k, (x, y) in enumerate(p["corners"]):
        out += [None, None] if k in hidden else [(x + 0.5) / w, (y + 0.5) / h]
    return out


TASK = register(KeypointsTrainTask())
