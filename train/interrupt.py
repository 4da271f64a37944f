"""Ctrl-C during training takes effect at a safe point, never lost.

Python raises KeyboardInterrupt wherever the main thread happens to be when it handles
SIGINT. Inside an object's ``__del__`` (TensorFlow has many: tensors, iterators, traced
functions) the exception is only printed as "Exception ignored" and training goes on: a
KeyboardInterrupt lost that way would let a run go on to exit 0 after Ctrl-C. Inside
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

    Only in the main thread (signals are handled there), and not when SIGINT is ignored
    (a process started in the background by a non-interactive shell inherits that, and
    keeps it); the handler in place before is back afterwards.
    """
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    _pending.clear()
    old = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
        check()
    finally:
        signal.signal(signal.SIGINT, old)
        _pending.clear()


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C came since the last check."""
    if _pending.is_set():
        _pending.clear()
        raise KeyboardInterrupt
