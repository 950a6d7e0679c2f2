"""Ctrl-C and SIGTERM taken between SUMO's steps, not inside a call to it.

Over TraCI, an exception raised by a signal handler while the client is inside an exchange with
SUMO (it spends most of its time waiting for a step's answer) leaves the socket mid-message: the
hand-back that follows read the rest of the old answer as its own (``struct.error``), or waited
for ever, and SUMO crashed. :class:`StepBoundary` defers the first SIGINT or SIGTERM to the next
:meth:`StepBoundary.check` (the run calls it before each step) or to its end, and re-delivers it
there to the handler that was in place, so that what the caller does on Ctrl-C still happens,
at a point where every exchange is complete. A second signal is delivered at once: a SUMO that
does not answer can still be left.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StepBoundary:
    """``with StepBoundary() as boundary: ... boundary.arm() ... boundary.check() ...``: armed
    (from the main thread only: signal handlers can be set there alone), the first SIGINT or
    SIGTERM is held until ``check()`` or the block's end."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StepBoundary:
        return self

    def arm(self) -> None:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        for sig in _SIGNALS:
            self._previous[sig] = signal.signal(sig, self._hold)

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        if self.pending is None:
            self.pending = signum
            return
        self._deliver(signum, frame)  # a second one: at once

    def check(self) -> None:
        """Deliver a signal held since the last check (raising what its handler raises)."""
        if self.pending is not None:
            self._deliver(self.pending, None)

    def _deliver(self, signum: int, frame: FrameType | None) -> None:
        handler = self._previous.get(signum, signal.SIG_DFL)
        self._disarm()
        self.pending = None
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(signum)

    def _disarm(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.pending is not None and exc is None:
            self._deliver(self.pending, None)
        self._disarm()
