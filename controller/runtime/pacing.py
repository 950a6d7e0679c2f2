"""Wall-clock pacing for ``--realtime`` / ``--speed``: the simulation advances ``speed``
simulated seconds per wall second, as a live deployment runs against real signals."""

from __future__ import annotations

import time
from collections.abc import Callable


class Pacer:
    def __init__(
        self,
        speed: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, not {speed}")
        self.speed = speed
        self._clock, self._sleep = clock, sleep
        self._start: float | None = None
        self._last: tuple[float, float] = (0.0, 0.0)  # (simulated s from the first call, wall s since it)

    def wait(self, sim_elapsed_s: float) -> float:
        """Sleep until the wall clock reaches ``sim_elapsed_s`` of simulated time (counted from
        the first call); return how late this tick starts, in ms (its jitter; 0 when on time)."""
        now = self._clock()
        if self._start is None:
            self._start = now - sim_elapsed_s / self.speed
        due = self._start + sim_elapsed_s / self.speed
        if due > now:
            self._sleep(due - now)
            now = self._clock()
        self._last = (sim_elapsed_s, now - self._start)
        return max(0.0, (now - due) * 1000.0)

    def achieved_speed(self) -> float | None:
        """Simulated seconds per wall second so far (``speed`` when on time, less where the
        machine could not keep pace); None before two ticks."""
        sim_s, wall_s = self._last
        return sim_s / wall_s if sim_s > 0 and wall_s > 0 else None
