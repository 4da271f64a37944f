"""Ctrl-C during training takes effect at a safe point, never lost.

Python raises KeyboardInterrupt wherever the main thread happens to be when it handles
SIGINT. Inside an object's ``__del__`` (TensorFlow has many: tensors, iterators, traced
functions) the exception is only printed as "Exception ignored" and training goes on: a
CI run sent SIGINT during the first epoch and the run finished with exit 0. Inside
:func:`deferred_interrupt`, SIGINT only sets a flag, and :func:`check` raises
KeyboardInterrupt where the training loop calls it: after each step, each epoch and the
model build. A second Ctrl-C raises at once (wherever that is).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_pending = threading.Event()


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    if _pending.is_set():  # the second Ctrl-C: the user insists
        raise KeyboardInterrupt
    _pending.set()


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Inside: SIGINT is held until :func:`check` (or the end of the block) raises it.

    Only in the main thread and only over Python's default handler: an application that
    installed its own SIGINT handler keeps it.
    """
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    _pending.clear()
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
        check()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _pending.clear()


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C came since the last check."""
    if _pending.is_set():
        _pending.clear()
        raise KeyboardInterrupt
