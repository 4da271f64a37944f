"""Realistic synthetic datasets, one per user story (see ``docs/samples.md``).

Every image is drawn procedurally with numpy and OpenCV (no downloads). Each task's
generator lives in its module (``train/tasks/<task>.py``, its ``samples()``); this module
holds the pieces they share (backgrounds, lighting, camera effects) and writes datasets.
A generator has two steps: ``*_params(rng)`` draws every random choice of one image into
a dict, and ``render_*(params)`` draws it. Tests change a parameter (say, remove the object)
and re-render the identical scene to prove the label is right.

Same seed, same bytes: image ``i`` of split ``s`` uses ``numpy.random.default_rng([seed,
s, i])``, and OpenCV's JPEG encoder is deterministic.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edge_runtime.atomic import atomic_write_text
from edge_runtime.errors import ClashError, OptionError, OutputError
from edge_runtime.ownership import claim_folder, mark, only_names

if TYPE_CHECKING:  # pragma: no cover
    from train.tasks import SampleSet

JPEG_QUALITY = 95

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


# =========================================================================== writing
def sample_set(task: str) -> SampleSet:
    """The sample generator of ``task`` (its module in train/tasks), or OptionError."""
    from train import tasks

    found = tasks.get(task).samples()
    if found is None:
        raise OptionError(f"--task {task}: this task has no sample-data generator")
    return found


def image_params(task: str, seed: int, split: int, i: int, **kw: Any) -> Params:
    """The parameters of image ``i`` of split ``split`` (0 train, 1 val) for ``seed``."""
    return sample_set(task).params(np.random.default_rng([seed, split, i]), **kw)


def _make_one(task: str, seed: int, split: int, i: int, plan: dict[str, Any]) -> tuple[bytes, str]:
    """Render and JPEG-encode image ``i``; returns (file bytes, label text)."""
    s = sample_set(task)
    p = s.params(np.random.default_rng([seed, split, i]), **plan)
    img, _ = s.render(p)
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # pragma: no cover
        raise OutputError(f"JPEG encoding failed for image {i}")
    return buf.tobytes(), s.label_text(s.label(p))


def _make_chunk(
    args: tuple[str, int, int, list[tuple[int, dict[str, Any]]]],
) -> list[tuple[bytes, str]]:
    task, seed, split, items = args
    return [_make_one(task, seed, split, i, plan) for i, plan in items]


def _worker_init() -> None:
    """One OpenCV thread per worker process: the processes already fill the cores."""
    cv2.setNumThreads(1)


def sample_options(task: str, given: dict[str, Any] | None) -> dict[str, Any]:
    """The values of ``task``'s sample options (:attr:`SampleSet.options`): the given ones
    parsed, the others at their defaults. An option of another task is an OptionError."""
    mine = {o.name: o for o in sample_set(task).options}
    out = {name: o.default for name, o in mine.items()}
    for name, v in (given or {}).items():
        if name not in mine:
            raise OptionError(_not_this_tasks(name, task))
        o = mine[name]
        out[name] = o.parse(v) if o.parse is not None and v is not None else v
    return out


def _not_this_tasks(name: str, task: str) -> str:
    """Why sample option ``name`` was refused for ``task``: the tasks it belongs to."""
    from train import tasks

    owners = {
        t.name: o
        for t in tasks.tasks()
        if (s := t.samples()) is not None
        for o in s.options
        if o.name == name
    }
    if not owners:
        return f"{name}: not a sample option of any task"
    flag = next(iter(owners.values())).flag
    return f"{flag} applies to --task {', '.join(owners)} only (this is --task {task})"


def write_split(
    out: Path,
    task: str,
    n: int,
    seed: int,
    split: int,
    progress: bool,
    workers: int = 1,
    options: dict[str, Any] | None = None,
) -> Path:
    """Write ``n`` images and labels.csv into the folder ``out`` (replaced as a whole)."""
    s = sample_set(task)
    opts = sample_options(task, options)
    plan = s.plan(n, seed, split, **opts) if s.plan is not None else [{} for _ in range(n)]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as e:
        raise OutputError(f"{out}: cannot create ({e.strerror or e})") from None
    chunk = max(4, min(50, math.ceil(n / (4 * max(1, workers)))))
    jobs = [
        (task, seed, split, [(i, plan[i]) for i in range(a, min(n, a + chunk))])
        for a in range(0, n, chunk)
    ]
    from edge_runtime.log import progress as progress_bar

    bar: Any = progress_bar(total=n, desc=f"{task} {out.name}", unit="img", enabled=progress)
    try:
        lines = [s.header]
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
        mark(tmp, SAMPLES_KIND)
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


#: The kind in a sample set's ownership marker (edge_runtime/ownership.py).
SAMPLES_KIND = "samples"


def check_sample_dirs(out: Path, with_val: bool = True) -> None:
    """OUT_DIR/train and OUT_DIR/val may be replaced only when they are sample sets; and
    OUT_DIR may not be a dataset itself (its train/ would become a class or an image
    folder of it)."""
    if out.exists() and not out.is_dir():
        raise ClashError(f"OUT_DIR {out} exists and is not a folder; choose another OUT_DIR")
    if (out / "labels.csv").exists():
        raise ClashError(
            f"OUT_DIR {out} is a dataset (it has labels.csv): sample sets go into "
            "OUT_DIR/train and OUT_DIR/val, which would land inside it; choose another OUT_DIR"
        )
    legacy = only_names(["labels.csv"], ["img_[0-9][0-9][0-9][0-9][0-9].jpg"])
    for split in ("train", "val") if with_val else ("train",):
        claim_folder(
            f"OUT_DIR/{split}", out / split, SAMPLES_KIND, legacy=legacy, purpose="a sample set"
        )


def make_samples(
    out_dir: str | Path,
    task: str,
    n: int | None = None,
    n_val: int | None = None,
    seed: int = 0,
    progress: bool = False,
    workers: int | None = None,
    options: dict[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/train/`` and ``out_dir/val/``, two contract datasets of ``task``.

    Each folder is written to a temporary name and renamed into place, so an
    interrupted run never leaves a half-written dataset under the final name. An
    existing folder of the same name is replaced only when it is an edgereg sample set
    (its ``.edgereg`` marker, or only ``labels.csv`` and ``img_NNNNN.jpg`` files); anything
    else is a ClashError before anything is written. ``workers`` processes render in
    parallel (the bytes do not depend on it). ``options`` are the task's own sample
    options (its ``SampleSet.options``, e.g. keypoints ``outside=0.1``).
    """
    s = sample_set(task)
    sample_options(task, options)  # a wrong option fails before anything is written
    dn, dv = s.counts
    n = dn if n is None else int(n)
    n_val = dv if n_val is None else int(n_val)
    if n < 1 or n_val < 0:
        raise OptionError(f"--n must be >= 1 and --n-val >= 0 (got {n}, {n_val})")
    if s.min_images > 1 and (n < s.min_images or 0 < n_val < s.min_images):
        raise OptionError(
            f"a {task} sample dataset needs at least {s.min_images} images per split "
            f"(--n {n}, --n-val {n_val})"
        )
    out = Path(out_dir)
    check_sample_dirs(out, with_val=bool(n_val))
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    write_split(out / "train", task, n, seed, 0, progress, workers, options)
    if n_val:
        write_split(out / "val", task, n_val, seed, 1, progress, workers, options)
    return out
