"""What a run's report needs that summary.json does not hold: each EV's trajectory along its
route, the signal states of the junctions on its corridor, the queues ahead of it, and every
ETA prediction made. Written as ``trace.json`` beside ``summary.json``.

Signals and queues are stored as change points (``[t, value]`` whenever the value changes; a
signal's state ``""`` from when it stopped being read, e.g. a while after its hand-back),
trajectories as one sample per tick while the EV is on the road, so a trace stays small: about
what the EV saw, not the whole network.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.core.corridor import Corridor
from controller.core.progress import EvProgress
from controller.core.snapshot import Snapshot

TRACE_FILE = "trace.json"
TRACE_FORMAT = "greenwave-trace/1"


@dataclass
class _Leg:
    """One EV on one corridor (a re-routed EV starts a new leg)."""

    corridor: Corridor
    from_s: float
    t: list[float] = field(default_factory=list)
    pos: list[float] = field(default_factory=list)
    speed: list[float] = field(default_factory=list)
    queues: dict[int, list[tuple[float, int]]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "from_s": self.from_s,
            "route": list(self.corridor.route),
            "route_length_m": round(self.corridor.length_m, 2),
            "junctions": [
                {
                    "index": j.index,
                    "tls": j.tls_id,
                    "junction": j.junction_id,
                    "approach_edge": j.approach_edge,
                    "distance_m": round(j.distance_m, 2),
                    "links": list(j.link_indices),
                }
                for j in self.corridor.junctions
            ],
            "t": self.t,
            "pos": self.pos,
            "speed": self.speed,
            "queues": {str(k): [list(p) for p in v] for k, v in sorted(self.queues.items())},
        }


class TraceRecorder:
    """Fed once per tick by the run loop; cheap: work per tick follows the EVs' corridors."""

    def __init__(self, ev_types: Mapping[str, str]) -> None:
        self._types = dict(ev_types)
        self._legs: dict[str, list[_Leg]] = {ev: [] for ev in ev_types}
        self._signals: dict[str, list[tuple[float, str]]] = {}
        self._read: dict[str, None] = {}  # the signals read last tick

    def observe(self, snap: Snapshot, progress: Mapping[str, EvProgress]) -> None:
        t = snap.t_s
        for tls_id, s in snap.signals.items():
            changes = self._signals.setdefault(tls_id, [])
            if not changes or changes[-1][1] != s.state:
                changes.append((t, s.state))
        # no longer read: what it shows from now is not known (drawn as nothing, not as the last
        # state read); the signals read last tick, not every one ever read (thousands in a city)
        if self._read.keys() != snap.signals.keys():
            for tls_id in self._read.keys() - snap.signals.keys():
                self._signals[tls_id].append((t, ""))
            self._read = dict.fromkeys(snap.signals)
        for ev_id, p in progress.items():
            if not p.running or p.position_m is None:
                continue
            legs = self._legs.setdefault(ev_id, [])
            if not legs or legs[-1].corridor is not p.corridor:
                legs.append(_Leg(p.corridor, t))
            leg = legs[-1]
            leg.t.append(round(t, 3))
            leg.pos.append(round(p.position_m, 2))
            leg.speed.append(round(p.speed_mps, 2))
            for j in p.corridor.junctions:
                if p.crossed(j.index):
                    continue
                halting = max((snap.lanes[ln].halting for ln in j.approach_lanes if ln in snap.lanes), default=0)
                q = leg.queues.setdefault(j.index, [])
                if not q or q[-1][1] != halting:
                    q.append((t, halting))

    def slowest_before_signals(self, ev_id: str, within_m: float = 100.0) -> float | None:
        """The EV's lowest speed (m/s) within ``within_m`` before the stop line of a signalized
        junction of its corridor (each leg's own), as traced; None where it was never traced
        there. A crawl to 0.4 m/s behind a queue still clearing is no stop (SUMO's 0.1 m/s) but
        costs the EV nearly as much."""
        slowest: float | None = None
        for leg in self._legs.get(ev_id, ()):
            lines = sorted(j.distance_m for j in leg.corridor.junctions)
            for pos, speed in zip(leg.pos, leg.speed, strict=True):
                k = bisect.bisect_left(lines, pos)  # the first stop line at or ahead of it
                if k < len(lines) and lines[k] - pos <= within_m and (slowest is None or speed < slowest):
                    slowest = speed
        return slowest

    def green_lost(self, records: Sequence[Mapping[str, Any]]) -> list[int | None]:
        """For each preemption record (``PreemptionRecord.as_dict``): how many times the EV's
        movement at the record's junction turned from green to not green after the record's
        dwell began (the movement shown green for the EV), before the EV crossed the stop line
        or left that corridor, and before the next preemption of that junction for it began
        (which counts its own): the hand-back's own yellow included, and the program's after
        it. None where the record has no dwell, its EV's corridor is not traced, or the signal's
        states lack the EV's links. Anything but 0 means the EV's approach, preempted for it,
        turned yellow before it crossed: another EV served first (a higher class, or a lower one
        while this EV's green was not yet needed), a hand-back before it crossed (maximum
        presence, the EV stalled: counted until it crosses, also where the program took over in
        a phase still showing the EV's green and ended it a few seconds later; those were not
        counted), or a fault of the plan (two junctions of one signal flipping it between their
        phases)."""
        out: list[int | None] = []
        # the entries of each EV's preemptions of each junction, in order: a record counts until
        # the next one's
        entries: dict[tuple[Any, Any, Any], list[float]] = {}
        for r in records:
            if isinstance(r.get("entry"), (int, float)):
                entries.setdefault((r.get("ev"), r.get("tls"), r.get("junction_index")), []).append(float(r["entry"]))
        for r in records:
            dwell, ev_id, tls_id, index = r.get("dwell"), r.get("ev"), r.get("tls"), r.get("junction_index")
            if not isinstance(dwell, (int, float)) or not isinstance(index, int):
                out.append(None)
                continue
            matching = [leg for leg in self._legs.get(str(ev_id), [])
                        if index < len(leg.corridor.junctions) and leg.corridor.junctions[index].tls_id == tls_id]
            before = [leg for leg in matching if leg.from_s <= dwell]
            # (an EV inserted after the dwell began: its first leg on that corridor)
            leg = before[-1] if before else (matching[0] if matching else None)
            changes = self._signals.get(str(tls_id), [])
            if leg is None or not leg.t or not changes:
                out.append(None)
                continue
            j = leg.corridor.junctions[index]
            if not j.link_indices or max(j.link_indices) >= len(changes[0][1]):
                out.append(None)  # links the signal's states do not have
                continue
            # until the EV crossed, or left this corridor (re-routed, cancelled, vanished, or the
            # trace ended), and before the next preemption of the junction for it began
            until = next((t for t, x in zip(leg.t, leg.pos, strict=True) if x >= j.distance_m), leg.t[-1])
            back = min((e for e in entries.get((ev_id, tls_id, index), []) if e > dwell), default=math.inf)
            # from the state shown at the dwell (the last change at or before it) on
            start = max(bisect.bisect_right(changes, (dwell, "\uffff")) - 1, 0)
            lost = 0
            green = False
            for t, state in changes[start:]:
                # (the state read at the tick the EV is first seen past the line is the one it
                # crossed under: SUMO moved it in that step with that state)
                if t > until or t >= back or not state:  # (not read any more)
                    break
                now = all(state[i] in "Gg" for i in j.link_indices)
                if t > dwell and green and not now:
                    lost += 1
                green = now
            out.append(lost)
        return out

    def as_dict(
        self,
        *,
        header: Mapping[str, Any],
        eta_records: Sequence[Sequence[Any]] = (),
    ) -> dict[str, Any]:
        return {
            "format": TRACE_FORMAT,
            **header,
            "evs": [
                {"id": ev_id, "type": self._types.get(ev_id, ""), "legs": [leg.as_dict() for leg in legs]}
                for ev_id, legs in self._legs.items()
            ],
            "signals": {tls: [[t, s] for t, s in changes] for tls, changes in sorted(self._signals.items())},
            "eta": [list(r) for r in eta_records],
        }
