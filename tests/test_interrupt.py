"""Ctrl-C during training is held to a safe point and never lost (train/interrupt.py).

Real signals to this process (os.kill), not a simulated flag.
"""

from __future__ import annotations

import gc
import os
import signal

import pytest

from train.interrupt import check, deferred_interrupt


@pytest.fixture(autouse=True)
def _default_sigint():
    """Python's own SIGINT handler, as in a terminal: a test run started in the background
    by a non-interactive shell inherits SIGINT ignored (and the guard then stays out)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


class _Finalized:
    """An object whose ``__del__`` runs Python code, as TensorFlow's tensors do."""

    ran = False

    def __del__(self) -> None:
        type(self).ran = True


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_sigint_handled_inside_a_destructor_is_lost_without_the_guard() -> None:
    """Why the guard exists: KeyboardInterrupt raised in __del__ is printed and dropped."""
    hits = []

    class Interrupts:
        def __del__(self) -> None:
            try:
                raise KeyboardInterrupt  # what the default handler does inside __del__
            finally:
                hits.append(1)

    Interrupts()
    gc.collect()
    assert hits == [1]  # the interpreter ignored it: execution simply continued here


def test_sigint_inside_the_guard_is_raised_at_the_next_check_not_before() -> None:
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            _Finalized()
            gc.collect()  # a destructor runs while the signal is pending: nothing is lost
            reached = True  # the signal did not interrupt ordinary code either
            check()
    assert reached and _Finalized.ran


def test_a_pending_sigint_is_raised_when_the_block_ends() -> None:
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
    check()  # the flag was consumed: no second interrupt


def test_a_second_sigint_raises_at_once() -> None:
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("the second Ctrl-C must raise where it lands")


def test_no_sigint_no_interrupt_and_the_previous_handler_comes_back() -> None:
    with deferred_interrupt():
        check()
    seen = []
    old = signal.signal(signal.SIGINT, lambda s, f: seen.append(s))
    try:
        with pytest.raises(KeyboardInterrupt):
            with deferred_interrupt():
                os.kill(os.getpid(), signal.SIGINT)
        assert seen == []  # held by the guard, not passed to the handler before it
        os.kill(os.getpid(), signal.SIGINT)
        assert seen == [signal.SIGINT]  # ... which is back afterwards
    finally:
        signal.signal(signal.SIGINT, old)


def test_an_ignored_sigint_stays_ignored() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with deferred_interrupt():
        os.kill(os.getpid(), signal.SIGINT)
        check()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
