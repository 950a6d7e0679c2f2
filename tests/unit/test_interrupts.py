"""StepBoundary: Ctrl-C and SIGTERM held until the run's next step boundary, the second at once."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from controller.runtime.interrupts import StepBoundary


class Stopped(Exception):
    pass


def _raise(signum: int, frame: object) -> None:
    raise Stopped(signum)


@pytest.fixture
def own_handlers() -> object:
    before = {sig: signal.signal(sig, _raise) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield None
    for sig, handler in before.items():
        signal.signal(sig, handler)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals: main thread only")
def test_the_first_signal_waits_for_the_check_and_reaches_the_handler_in_place(own_handlers: object) -> None:
    with StepBoundary() as boundary:
        boundary.arm()
        os.kill(os.getpid(), signal.SIGTERM)  # (delivered to Python before os.kill returns)
        assert boundary.pending == signal.SIGTERM  # held: nothing raised inside the "call"
        with pytest.raises(Stopped):
            boundary.check()
    assert signal.getsignal(signal.SIGTERM) is _raise  # the caller's handler back


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals: main thread only")
def test_a_second_signal_is_not_held_and_a_held_one_is_delivered_at_the_end(own_handlers: object) -> None:
    with pytest.raises(Stopped), StepBoundary() as boundary:
        boundary.arm()
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # a SUMO that does not answer can still be left
    assert signal.getsignal(signal.SIGINT) is _raise
    with pytest.raises(Stopped), StepBoundary() as boundary:
        boundary.arm()
        os.kill(os.getpid(), signal.SIGINT)
        # (no check: the block's end delivers it)
    with StepBoundary() as boundary:  # never armed: nothing is taken over
        assert signal.getsignal(signal.SIGINT) is _raise
