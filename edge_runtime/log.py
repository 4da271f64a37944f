"""Quiet by default, informative on request: edgereg's logging, native noise and progress.

- One logger tree: ``logging.getLogger("edgereg.<area>")`` (:func:`get_logger`). Library
  code logs; the CLI (:func:`configure`) puts one handler on stderr: ``-q`` shows warnings
  and errors only, the default adds what a step did (INFO), ``-v`` adds details (DEBUG)
  and everything native libraries print. Results on stdout are never logging.
- The verbosity travels to subprocesses (``edgereg demo`` runs each step as one) in the
  environment variable ``EDGEREG_VERBOSITY`` (-1, 0 or 1); ``EDGEREG_VERBOSE=1`` still
  means 1.
- Native start-up chatter (TensorFlow's and absl's lines at import, CPU-feature notices,
  LiteRT's "Created TensorFlow Lite XNNPACK delegate") is written by C++ straight to file
  descriptor 2, whatever Python's logging says: :func:`quiet_native` sends fd 2 to a
  temporary file while such code runs (and replays it if the code fails, so an error's
  native explanation is never lost); :func:`quiet_imports` does the same for the first
  import of TensorFlow. With ``-v`` both let everything through.
- :func:`progress`: a tqdm bar on a terminal; in a log file or a pipe one line every
  ``every`` seconds (a bar's carriage-return redraws would fill a log with hundreds of
  lines); nothing with ``-q``.

Standard library only (tqdm is used when installed): this runs on the device too.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "ENV",
    "configure",
    "get_logger",
    "progress",
    "quiet_imports",
    "quiet_native",
    "verbosity",
]

#: Environment variable carrying the verbosity to subprocesses: -1 quiet, 0 normal, 1 verbose.
ENV = "EDGEREG_VERBOSITY"
#: Native libraries whose first import prints start-up lines on fd 2.
NOISY_MODULES = ("tensorflow",)
#: Seconds between two progress lines when stderr is not a terminal.
LOG_EVERY_S = 10.0

_LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}


def get_logger(area: str) -> logging.Logger:
    """The logger of one part of edgereg: ``edgereg.<area>`` (e.g. ``run``, ``train``)."""
    return logging.getLogger(f"edgereg.{area}")


def verbosity() -> int:
    """-1 (``-q``), 0 (default) or 1 (``-v``), as configured or inherited."""
    raw = os.environ.get(ENV)
    if raw is None:
        return 1 if os.environ.get("EDGEREG_VERBOSE") else 0
    try:
        return max(-1, min(1, int(raw)))
    except ValueError:
        return 0


def configure(level: int | None = None) -> None:
    """Set up logging for a command line process: one stderr handler on the ``edgereg``
    logger tree, the native libraries' own levels, and quiet imports (unless verbose).
    ``level`` (-1, 0, 1) is exported for subprocesses; None keeps the inherited one."""
    if level is not None:
        os.environ[ENV] = str(max(-1, min(1, level)))
    v = verbosity()
    # TensorFlow's C++ and Python logs (its absl start-up lines ignore this: quiet_imports)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if v >= 1 else "3"
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR" if v < 1 else "INFO")
    root = logging.getLogger("edgereg")
    for h in list(root.handlers):
        if getattr(h, "_edgereg", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._edgereg = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(_LEVELS[v])
    root.propagate = False
    for name in ("tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.DEBUG if v >= 1 else logging.ERROR)
    if v < 1:
        quiet_imports()


@contextlib.contextmanager
def quiet_native(force: bool = False) -> Iterator[None]:
    """Send file descriptor 2 to a temporary file while native code runs (unless ``-v``).

    If the block raises, what was written is replayed to stderr before the error goes on,
    so a native library's explanation of a failure is kept. Python's own ``sys.stderr``
    writes inside the block are caught too: keep the block to the native call.
    """
    if verbosity() >= 1 and not force:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                text = sink.read().decode("utf-8", "replace").strip()
                if text:
                    sys.stderr.write(text + "\n")


class _QuietLoader(importlib.abc.Loader):
    """Runs another loader with fd 2 quiet (the module's native start-up lines)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        with quiet_native():
            self.loader.exec_module(module)


class _QuietImporter(importlib.abc.MetaPathFinder):
    """Finds the first import of each of ``names`` and quiets its loading."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = set(names)

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self.names:
            return None
        self.names.discard(fullname)
        if not self.names and self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_imports(names: Iterable[str] = NOISY_MODULES) -> None:
    """Quiet the first import of these modules (if not imported yet); safe to call twice."""
    todo = [n for n in names if n not in sys.modules]
    if todo and not any(isinstance(f, _QuietImporter) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImporter(todo))


# --------------------------------------------------------------------------- progress
class LogProgress:
    """A progress "bar" for logs: one INFO line every ``every`` seconds, none for short work.

    Has the parts of tqdm's interface edgereg uses: iteration, ``update``, ``close`` and
    use as a context manager.
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        every: float = LOG_EVERY_S,
        logger: logging.Logger | None = None,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.n = 0
        self.start = self.last = time.monotonic()
        self.log = logger or get_logger("progress")
        self.said = False

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._say(now)

    def _say(self, now: float) -> None:
        self.said = True
        of = f"/{self.total}" if self.total else ""
        pct = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        self.log.info(f"{self.desc}: {self.n}{of} {self.unit}{pct}, {now - self.start:.0f} s")

    def close(self) -> None:
        if self.said and self.n != getattr(self, "_closed_at", None):
            self._closed_at = self.n
            self._say(time.monotonic())

    def set_postfix(self, *a: Any, **kw: Any) -> None:
        """tqdm compatibility: ignored in logs."""

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    every: float = LOG_EVERY_S,
) -> Any:
    """The right progress display for where stderr goes (see the module docstring).

    Use like tqdm: ``for x in progress(items, desc="loading", unit="img")`` or
    ``bar = progress(total=n, ...); bar.update(k); bar.close()``.
    """
    on = enabled and verbosity() >= 0
    if on and sys.stderr.isatty():
        try:
            from tqdm import tqdm
        except ImportError:  # tqdm is a train extra: fall back to log lines
            pass
        else:
            return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)
    return LogProgress(iterable, total, desc, unit, every if on else float("inf"))
