"""What a run reads from SUMO each step: the EVs, and the signals and approach lanes of the
corridors of the EVs on the road, from a cycle before each one's dispatch until it is done. So the
cost of a tick follows the number and length of the EV routes, not the size of the network.

A signal no EV needs any more is read for ``KEEP_AFTER_S`` more after it is back in its own
program (the safety monitor watches the program resume), then dropped: the monitor and the planner
forget what they saw of it, so that watching it again starts afresh rather than across the gap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from controller.core.corridor import Corridor

ACTIVATE_BEFORE_S = 120.0  # a cycle or more of each signal seen before it may be switched
KEEP_AFTER_S = 120.0


class Reader(Protocol):
    def watch_signals(self, tls_ids: Iterable[str]) -> None: ...
    def unwatch_signals(self, tls_ids: Iterable[str]) -> None: ...
    def watch_lanes(self, lane_ids: Iterable[str]) -> None: ...
    def unwatch_lanes(self, lane_ids: Iterable[str]) -> None: ...


class CorridorWatch:
    def __init__(self, reader: Reader, forget: Iterable[Callable[[str], None]] = ()) -> None:
        """``forget(tls)`` callbacks run when a signal stops being read; one that raises
        ValueError (the signal is still held) keeps it read."""
        self._reader = reader
        self._forget = tuple(forget)
        self._ev_tls: dict[str, set[str]] = {}
        self._ev_lanes: dict[str, set[str]] = {}
        self._signals: set[str] = set()
        self._lanes: set[str] = set()
        self._unneeded_since: dict[str, float] = {}
        self.max_signals = 0
        self.max_lanes = 0
        self.signals_ever: set[str] = set()

    @property
    def signals(self) -> frozenset[str]:
        return frozenset(self._signals)

    def active(self, ev_id: str) -> bool:
        return ev_id in self._ev_tls

    def activate(self, ev_id: str, corridor: Corridor, t_s: float) -> None:
        """Read this EV's corridor (again, after a re-route: its old corridor is released)."""
        if ev_id in self._ev_tls:
            self.release(ev_id, t_s)
        tls = set(corridor.tls_ids())
        lanes = {lane for j in corridor.junctions for lane in j.approach_lanes}
        self._ev_tls[ev_id], self._ev_lanes[ev_id] = tls, lanes
        self._reader.watch_signals(sorted(tls - self._signals))
        self._reader.watch_lanes(sorted(lanes - self._lanes))
        self._signals |= tls
        self._lanes |= lanes
        self.signals_ever |= tls
        for t in tls:
            self._unneeded_since.pop(t, None)
        self.max_signals = max(self.max_signals, len(self._signals))
        self.max_lanes = max(self.max_lanes, len(self._lanes))

    def release(self, ev_id: str, t_s: float) -> None:
        """The EV is done (or re-routed): its lanes stop being read now, its signals later."""
        tls = self._ev_tls.pop(ev_id, set())
        lanes = self._ev_lanes.pop(ev_id, set())
        needed_tls = set().union(*self._ev_tls.values()) if self._ev_tls else set()
        needed_lanes = set().union(*self._ev_lanes.values()) if self._ev_lanes else set()
        drop = lanes - needed_lanes
        self._reader.unwatch_lanes(sorted(drop))
        self._lanes -= drop
        for t in tls - needed_tls:
            self._unneeded_since.setdefault(t, t_s)

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

    def _forgotten(self, tls: str) -> bool:
        try:
            for forget in self._forget:
                forget(tls)
        except ValueError:
            return False
        return True
