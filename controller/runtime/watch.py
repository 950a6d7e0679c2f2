"""What a run reads from SUMO each step: the EVs, and the signals and approach lanes of their
corridors, from a cycle before each one's dispatch until it is done. So the cost of a tick follows
the number and length of the EV routes, not the size of the network.

With a *window* (a controller that plans only so far ahead), an EV's corridor is read only where
it is needed, and the window slides with the EV:

- approach lanes (the queues the ETAs count) of the junctions ahead within ``LANE_WINDOW_S`` of
  free-flow travel at the speed limits, or up to the last junction the controller predicted if
  that is further, plus ``LOOKAHEAD`` junctions: every junction's queue is read a tick or more
  before its first prediction;
- signals ``HISTORY_S`` further than that, so that each one is seen for about a cycle (its display
  clock, the program's phase) before the controller may switch it: an entry starts at most
  ``max_lead_s`` (100 s) before the EV's arrival, 30 s inside the lane window, so 90 s or more.

Junctions the EV has crossed stop being read: their lanes at once, their signals as below.

A signal no EV needs any more is read for ``KEEP_AFTER_S`` more after it is back in its own
program (the safety monitor watches the program resume), then dropped: the monitor and the planner
forget what they saw of it, so that watching it again starts afresh rather than across the gap.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from controller.core.corridor import Corridor

ACTIVATE_BEFORE_S = 120.0  # a cycle or more of each signal seen before it may be switched
KEEP_AFTER_S = 120.0
LANE_WINDOW_S = 130.0  # the controller's planning horizon (ControllerConfig.plan_ahead_s)
HISTORY_S = 60.0  # + the 30 s between the lane window and the earliest entry (max_lead_s 100): 90 s seen
LOOKAHEAD = 2


class Reader(Protocol):
    def watch_signals(self, tls_ids: Iterable[str]) -> None: ...
    def unwatch_signals(self, tls_ids: Iterable[str]) -> None: ...
    def watch_lanes(self, lane_ids: Iterable[str]) -> None: ...
    def unwatch_lanes(self, lane_ids: Iterable[str]) -> None: ...


@dataclass(frozen=True)
class FreeFlowClock:
    """Seconds of travel along a corridor at its speed limits from the route start: piecewise
    linear over the segments of a speed profile (``starts``, ``speeds``; ``cum_s``: the time at
    each segment's start)."""

    starts_m: tuple[float, ...]
    speeds_mps: tuple[float, ...]
    cum_s: tuple[float, ...]

    @classmethod
    def of(cls, starts_m: Sequence[float], ends_m: Sequence[float], speeds_mps: Sequence[float]) -> FreeFlowClock:
        cum = [0.0]
        for s, e, v in zip(starts_m, ends_m, speeds_mps, strict=True):
            cum.append(cum[-1] + (e - s) / max(v, 0.1))
        return cls(tuple(starts_m), tuple(max(v, 0.1) for v in speeds_mps), tuple(cum[:-1]))

    def at(self, x_m: float) -> float:
        k = max(bisect.bisect_right(self.starts_m, x_m) - 1, 0)
        return self.cum_s[k] + max(x_m - self.starts_m[k], 0.0) / self.speeds_mps[k]


@dataclass
class _Window:
    corridor: Corridor
    clock: FreeFlowClock | None  # None: the whole corridor, from activation until done
    distances: list[float]
    times_s: list[float]  # free-flow time from the route start to each junction's stop line
    lo: int = 0  # the first junction not crossed: read from here
    lanes_hi: int = -1  # ... up to these junction indices (inclusive)
    signals_hi: int = -1


class CorridorWatch:
    def __init__(self, reader: Reader, forget: Iterable[Callable[[str], None]] = ()) -> None:
        """``forget(tls)`` callbacks run when a signal stops being read; one that raises
        ValueError (the signal is still held) keeps it read."""
        self._reader = reader
        self._forget = tuple(forget)
        self._windows: dict[str, _Window] = {}
        self._tls_refs: Counter[str] = Counter()  # signal -> junctions of active windows needing it
        self._lane_refs: Counter[str] = Counter()
        self._unneeded_since: dict[str, float] = {}
        self.max_signals = 0
        self.max_lanes = 0
        self.signals_ever: set[str] = set()
        self._signals: set[str] = set()

    @property
    def signals(self) -> frozenset[str]:
        return frozenset(self._signals)

    def reads(self, tls_id: str) -> bool:
        """Is this signal read now? (without the copy :attr:`signals` makes)"""
        return tls_id in self._signals

    @property
    def evs(self) -> list[str]:
        """The EVs whose corridors are read."""
        return list(self._windows)

    def activate(self, ev_id: str, corridor: Corridor, t_s: float, clock: FreeFlowClock | None = None) -> None:
        """Read this EV's corridor (again, after a re-route: its old corridor is released): the
        whole of it, or with ``clock`` (free-flow time along it) a window sliding with the EV."""
        if ev_id in self._windows:
            self.release(ev_id, t_s)
        distances = [j.distance_m for j in corridor.junctions]
        times = [clock.at(d) for d in distances] if clock is not None else []
        w = _Window(corridor, clock, distances, times)
        self._windows[ev_id] = w
        self._slide(w, 0.0, -1, t_s)

    def advance(self, ev_id: str, position_m: float, predicted_upto: int, t_s: float) -> None:
        """The EV is at ``position_m`` along its corridor, and the controller's last prediction
        reached junction index ``predicted_upto`` (-1: none yet)."""
        w = self._windows.get(ev_id)
        if w is not None:
            self._slide(w, position_m, predicted_upto, t_s)

    def release(self, ev_id: str, t_s: float) -> None:
        """The EV is done (or re-routed): its lanes stop being read now, its signals later."""
        w = self._windows.pop(ev_id, None)
        if w is None:
            return
        junctions = w.corridor.junctions
        self._drop([ln for j in junctions[w.lo:w.lanes_hi + 1] for ln in j.approach_lanes])
        self._unneed([j.tls_id for j in junctions[w.lo:w.signals_hi + 1]], t_s)

    def tick(self, t_s: float, held: Iterable[str]) -> list[str]:
        """Drop the signals no EV has needed for ``KEEP_AFTER_S`` and that are not ``held``
        (switched away from their program); return them."""
        dropped: list[str] = []
        if not self._unneeded_since:
            return dropped
        held_now = set(held)
        for tls in held_now & self._unneeded_since.keys():
            self._unneeded_since[tls] = t_s  # the time counts from its return to its own program
        for tls in [t for t, since in self._unneeded_since.items() if t_s - since >= KEEP_AFTER_S]:
            if not self._forgotten(tls):
                self._unneeded_since[tls] = t_s  # still in use: look again later
                continue
            del self._unneeded_since[tls]
            self._reader.unwatch_signals([tls])
            self._signals.discard(tls)
            dropped.append(tls)
        return dropped

    # -- the window ---------------------------------------------------------------------------
    def _slide(self, w: _Window, position_m: float, predicted_upto: int, t_s: float) -> None:
        junctions = w.corridor.junctions
        n = len(junctions)
        if w.clock is None:
            lo, lanes_hi, signals_hi = 0, n - 1, n - 1
        else:
            lo = max(w.lo, bisect.bisect_right(w.distances, position_m))
            now_s = w.clock.at(position_m)
            planned = max(bisect.bisect_right(w.times_s, now_s + LANE_WINDOW_S) - 1, predicted_upto)
            lanes_hi = min(planned + LOOKAHEAD, n - 1)
            horizon_s = max(now_s + LANE_WINDOW_S, w.times_s[min(planned, n - 1)] if planned >= 0 else 0.0) + HISTORY_S
            signals_hi = min(max(bisect.bisect_right(w.times_s, horizon_s) - 1, lanes_hi), n - 1)
        # never shrink ahead (a prediction that shrinks back keeps what it had)
        lanes_hi, signals_hi = max(lanes_hi, w.lanes_hi), max(signals_hi, w.signals_hi)
        if lo > w.lo:  # crossed junctions leave, then new ones ahead join
            self._drop([ln for j in junctions[w.lo:min(lo, w.lanes_hi + 1)] for ln in j.approach_lanes])
            self._unneed([j.tls_id for j in junctions[w.lo:min(lo, w.signals_hi + 1)]], t_s)
        self._add([ln for j in junctions[max(lo, w.lanes_hi + 1):lanes_hi + 1] for ln in j.approach_lanes])
        self._add_signals([j.tls_id for j in junctions[max(lo, w.signals_hi + 1):signals_hi + 1]])
        w.lo, w.lanes_hi, w.signals_hi = lo, lanes_hi, signals_hi

    def _add(self, lanes: list[str]) -> None:
        new = []
        for ln in lanes:
            self._lane_refs[ln] += 1
            if self._lane_refs[ln] == 1:
                new.append(ln)
        if new:
            self._reader.watch_lanes(sorted(set(new)))
            self.max_lanes = max(self.max_lanes, len(self._lane_refs))

    def _drop(self, lanes: list[str]) -> None:
        gone = []
        for ln in lanes:
            self._lane_refs[ln] -= 1
            if self._lane_refs[ln] <= 0:
                del self._lane_refs[ln]
                gone.append(ln)
        if gone:
            self._reader.unwatch_lanes(sorted(set(gone)))

    def _add_signals(self, tls_ids: list[str]) -> None:
        for tls in tls_ids:
            self._tls_refs[tls] += 1
            self._unneeded_since.pop(tls, None)
        new = sorted(set(tls_ids) - self._signals)
        if new:
            self._reader.watch_signals(new)
            self._signals.update(new)
            self.signals_ever.update(new)
            self.max_signals = max(self.max_signals, len(self._signals))

    def _unneed(self, tls_ids: list[str], t_s: float) -> None:
        for tls in tls_ids:
            self._tls_refs[tls] -= 1
            if self._tls_refs[tls] <= 0:
                del self._tls_refs[tls]
                self._unneeded_since.setdefault(tls, t_s)

    def _forgotten(self, tls: str) -> bool:
        try:
            for forget in self._forget:
                forget(tls)
        except ValueError:
            return False
        return True
