"""Ctrl-C, SIGTERM and SIGHUP taken between SUMO's steps, not inside a call to it.

Over TraCI, an exception raised by a signal handler while the client is inside an exchange with
SUMO (it spends most of its time waiting for a step's answer) leaves the socket mid-message: the
hand-back that follows read the rest of the old answer as its own (``struct.error``), or waited
for ever, and SUMO crashed. :class:`StepBoundary` defers the first SIGINT or SIGTERM to the next
:meth:`StepBoundary.check` (the run calls it before each step) or to its end, and re-delivers it
there to the handler that was in place, so that what the caller does on Ctrl-C still happens,
at a point where every exchange is complete. Another signal while one is held is held too (a
double Ctrl-C; :attr:`StepBoundary.repeated` tells the caller), unless the first has waited for
``patience_s`` already: then it is delivered at once, so that a SUMO that does not answer can
still be left.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType, TracebackType
from typing import Any

_SIGNALS = (signal.SIGINT, signal.SIGTERM, *((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()))
PATIENCE_S = 5.0  # a step, and a paced run's wait before it, take less than this


class StepBoundary:
    """``with StepBoundary() as boundary: ... boundary.arm() ... boundary.check() ...``: armed
    (from the main thread only: signal handlers can be set there alone), a SIGINT or SIGTERM is
    held until ``check()`` or the block's end; ``repeated``: another came while it was held."""

    def __init__(self, patience_s: float = PATIENCE_S) -> None:
        self.patience_s = patience_s
        self.pending: int | None = None
        self.repeated = False
        self._held_at = 0.0
        self._previous: dict[int, Any] = {}
        self._teller: threading.Timer | None = None  # (says a held signal waits for a step: _tell)

    def __enter__(self) -> StepBoundary:
        return self

    def arm(self) -> None:
        """Hold the signals from now (again, after one was delivered: ``repeated`` is reset)."""
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        self.repeated = False
        for sig in _SIGNALS:
            if signal.getsignal(sig) is signal.SIG_IGN:
                continue  # (ignored where it runs, a bench's worker's SIGHUP: it stays so)
            self._previous[sig] = signal.signal(sig, self._hold)

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        if self.pending is None:
            self.pending = signum
            self._held_at = time.monotonic()
            self._start_telling()
            return
        if time.monotonic() - self._held_at < self.patience_s:
            self.repeated = True  # (delivered with the first, at the check)
            return
        self._deliver(signum, frame)  # the step the first waits for does not end: at once

    def _start_telling(self) -> None:
        """Say so where the step a held signal waits for has not ended within ``patience_s`` (a
        SUMO that does not answer: a Ctrl-C, held for it, did nothing to be seen)."""
        if self._teller is not None:
            self._teller.cancel()
        self._teller = threading.Timer(self.patience_s, self._tell)
        self._teller.daemon = True
        self._teller.start()

    def _tell(self) -> None:
        if self.pending is not None:
            print(f"greenwave: waiting for SUMO to answer its step ({self.patience_s:g} s so far) before handing "
                  "back; one more Ctrl-C leaves now, the signals then switched back to their programs as far as "
                  "SUMO answers", file=sys.stderr, flush=True)

    def check(self) -> None:
        """Deliver a signal held since the last check (raising what its handler raises)."""
        if self.pending is not None:
            self._deliver(self.pending, None)

    def _deliver(self, signum: int, frame: FrameType | None) -> None:
        handler = self._previous.get(signum, signal.SIG_DFL)
        self._disarm()
        self.pending = None
        if self._teller is not None:
            self._teller.cancel()
            self._teller = None
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
        if self._teller is not None:
            self._teller.cancel()
        if self.pending is not None and exc is None:
            self._deliver(self.pending, None)
        self._disarm()
