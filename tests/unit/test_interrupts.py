"""StepBoundary: Ctrl-C and SIGTERM held until the run's next step boundary (a second too, unless the
first has waited too long)."""

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
def test_a_second_signal_soon_after_is_held_too_and_told(own_handlers: object) -> None:
    # (delivered at once, it cut a TraCI exchange: the hand-back after it failed with a traceback
    # or hung, with signals left preempted in an attached SUMO)
    with StepBoundary() as boundary:
        boundary.arm()
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # a double Ctrl-C
        assert boundary.pending == signal.SIGINT and boundary.repeated
        with pytest.raises(Stopped):
            boundary.check()
        assert boundary.repeated  # (the caller reads it after the check)
        boundary.arm()  # held again, as for a hand-back after the interrupt
        assert not boundary.repeated
        os.kill(os.getpid(), signal.SIGTERM)
        assert boundary.pending == signal.SIGTERM
        with pytest.raises(Stopped):
            boundary.check()
    assert signal.getsignal(signal.SIGINT) is _raise and signal.getsignal(signal.SIGTERM) is _raise


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals: main thread only")
def test_a_signal_after_the_patience_is_not_held_and_a_held_one_is_delivered_at_the_end(own_handlers: object) -> None:
    with pytest.raises(Stopped), StepBoundary(patience_s=0.0) as boundary:  # (a step that never ends)
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


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals: main thread only")
def test_a_signal_held_for_a_step_that_does_not_end_is_said(own_handlers: object,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    # (a SUMO that stopped answering: the Ctrl-C held for its step did nothing to be seen)
    import time

    with StepBoundary(patience_s=0.2) as boundary:
        boundary.arm()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.6)  # (the step SUMO does not answer)
        assert "greenwave: waiting for SUMO to answer its step (0.2 s so far)" in capsys.readouterr().err
        with pytest.raises(Stopped):
            boundary.check()
    # a step that ends in time says nothing
    with StepBoundary(patience_s=0.5) as boundary:
        boundary.arm()
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(Stopped):
            boundary.check()
        time.sleep(0.7)
    assert capsys.readouterr().err == ""
