"""The controller's core timed without a simulator: synthetic EVs on a real network's corridors,
or a recorded run's snapshots replayed into it. Pure: a network model in, figures out.

Synthetic world: every EV drives its corridor at a constant speed from t = 0; every signal on a
corridor runs its program's phases (by their durations) unless the controller has set its state;
every approach lane carries a pseudo-random number of vehicles that changes every 30 s. What is
timed is what the controller does per tick in a run: update each EV's progress and ``tick``
(predict, plan, produce commands), in CPU time of the thread (so that other processes on a
shared machine do not inflate it; in a run the deadline is kept in wall time).
"""

from __future__ import annotations

import bisect
import gc
import json
import random
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from controller.core.corridor import Corridor, build_corridor
from controller.core.eta import EvDynamics
from controller.core.greenwave import ControllerConfig, EvSetup, PreemptionController
from controller.core.network import Network, Program
from controller.core.progress import EvProgress
from controller.core.snapshot import LaneState, SignalCommand, SignalState, Snapshot, VehicleState
from controller.errors import GreenwaveError

RECORDING_FORMAT = "greenwave-snapshots/1"  # the header's "format" of a `greenwave run --record` file
DYNAMICS = EvDynamics(max_speed_mps=41.67, accel_mps2=2.6, decel_mps2=4.5)


def random_corridor(network: Network, rng: random.Random, *, min_signals: int = 8,
                    min_length_m: float = 4000.0, max_length_m: float = 9000.0, tries: int = 200) -> Corridor:
    """A corridor along a random walk over the network's connections (straight on preferred, no
    edge twice) that crosses at least ``min_signals`` signals and is ``min..max_length_m`` long."""
    out: dict[str, list[tuple[str, str]]] = {}
    for c in network.connections:
        if not network.edges[c.to_edge].is_internal:
            out.setdefault(c.from_edge, []).append((c.to_edge, c.direction))
    starts = sorted(e for e, edge in network.edges.items() if not edge.is_internal and e in out)
    for _ in range(tries):
        route = [rng.choice(starts)]
        length = network.edges[route[0]].length_m
        while length < max_length_m:
            options = sorted({to for to, d in out.get(route[-1], ()) if to not in route and d == "s"}) or \
                sorted({to for to, _ in out.get(route[-1], ()) if to not in route})
            if not options:
                break
            route.append(rng.choice(options))
            length += network.edges[route[-1]].length_m
        if length < min_length_m:
            continue
        try:
            corridor = build_corridor(network, route)
        except GreenwaveError:
            continue
        if len(corridor.junctions) >= min_signals and corridor.length_m <= max_length_m * 1.2:
            return corridor
    raise GreenwaveError(f"no corridor with {min_signals} signals found in {tries} random walks")


class _ProgramClock:
    def __init__(self, program: Program) -> None:
        self.states = [p.state for p in program.phases]
        self.ends = list(np.cumsum([max(p.duration_s, 1.0) for p in program.phases]))
        self.cycle = self.ends[-1]
        self.offset = program.offset_s

    def state(self, t_s: float) -> str:
        return self.states[bisect.bisect_right(self.ends, (t_s + self.offset) % self.cycle)]


class SyntheticWorld:
    """EVs driving their corridors at ``speed_mps``, signals running their programs unless
    commanded, lane counts drawn from a seed."""

    def __init__(self, network: Network, corridors: Mapping[str, Corridor], *, speed_mps: float = 10.0,
                 seed: int = 1) -> None:
        self.network, self.corridors, self.speed = network, dict(corridors), speed_mps
        tls = sorted({t for c in corridors.values() for t in c.tls_ids()})
        self.clocks = {t: _ProgramClock(network.programs[t]) for t in tls}
        self.program_ids = {t: network.programs[t].program_id for t in tls}
        self.held: dict[str, str] = {}
        self.lanes = sorted({ln for c in corridors.values() for j in c.junctions for ln in j.approach_lanes})
        self.seed = seed
        self.commands = 0
        self._signals: dict[str, SignalState] = {}
        self._lanes: dict[str, LaneState] = {}
        self._lane_period = -1

    def apply(self, commands: Sequence[SignalCommand]) -> None:
        self.commands += len(commands)
        for cmd in commands:
            if cmd.kind == "set_state":
                self.held[cmd.tls_id] = cmd.state
            else:
                self.held.pop(cmd.tls_id, None)

    def _vehicle(self, ev_id: str, corridor: Corridor, t_s: float) -> VehicleState | None:
        pos = self.speed * t_s
        if pos >= corridor.length_m - 1.0:
            return None
        k = max(0, bisect.bisect_right(corridor.edge_offsets_m, pos) - 1)
        edge = corridor.route[k]
        lane = self.network.edges[edge].lanes[0].lane_id
        return VehicleState(ev_id, edge, lane, min(pos - corridor.edge_offsets_m[k],
                                                   self.network.edges[edge].length_m), self.speed, k, pos)

    def snapshot(self, t_s: float) -> Snapshot:
        """The world at ``t_s``; like the SUMO adapter, an unchanged signal or lane keeps last
        tick's state object."""
        vehicles = {ev: v for ev, c in self.corridors.items() if (v := self._vehicle(ev, c, t_s)) is not None}
        signals: dict[str, SignalState] = {}
        for t, clock in self.clocks.items():
            state, program = self.held.get(t) or clock.state(t_s), "online" if t in self.held else self.program_ids[t]
            old = self._signals.get(t)
            signals[t] = old if old is not None and old.state == state and old.program_id == program \
                else SignalState(t, state, program, 0)
        self._signals = signals
        period = int(t_s // 30)
        if period != self._lane_period:
            self._lane_period = period
            self._lanes = {}
            for ln in self.lanes:
                n = zlib.crc32(f"{self.seed}:{ln}:{period}".encode()) % 9
                self._lanes[ln] = LaneState(ln, n, n // 2)
        return Snapshot(t_s, vehicles, signals, self._lanes)


@dataclass(frozen=True)
class CoreTiming:
    evs: int
    ticks: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    signals: int
    commands: int

    def as_dict(self) -> dict[str, Any]:
        return {"evs": self.evs, "ticks": self.ticks, "p50_ms": round(self.p50_ms, 4), "p99_ms": round(self.p99_ms, 4),
                "max_ms": round(self.max_ms, 4), "signals": self.signals, "commands": self.commands}


def time_controller(network: Network, corridors: Mapping[str, Corridor], *, ticks: int = 300,
                    config: ControllerConfig | None = None, seed: int = 1, flush_mb: int = 0) -> CoreTiming:
    """Per-tick time of the greenwave controller with every EV of ``corridors`` dispatched at 0.

    ``flush_mb``: before each tick (not timed), write through that many MB, evicting the CPU
    caches as SUMO's step does between the ticks of a run; 0: the caches stay as the synthetic
    world left them (warm for a small world, which flatters few EVs against many)."""
    world = SyntheticWorld(network, corridors, seed=seed)
    evs = [EvSetup(ev, "ambulance", c, DYNAMICS, 0.0) for ev, c in corridors.items()]
    controller = PreemptionController(network, evs, config)
    progress = {ev: EvProgress(ev, c) for ev, c in corridors.items()}
    times: list[float] = []
    n_commands = 0
    gc.collect()
    gc.disable()  # as in a run: garbage is collected between ticks, not inside them
    try:
        _ticks(world, controller, progress, ticks, times, np.zeros(flush_mb * 131072) if flush_mb > 0 else None)
    finally:
        gc.enable()
    n_commands = world.commands
    arr = np.asarray(times)
    return CoreTiming(len(corridors), ticks, float(np.percentile(arr, 50)), float(np.percentile(arr, 99)),
                      float(arr.max()), len(world.clocks), n_commands)


def _ticks(world: SyntheticWorld, controller: PreemptionController, progress: Mapping[str, EvProgress],
           ticks: int, times: list[float], flush: np.ndarray[Any, Any] | None = None) -> None:
    for k in range(ticks):
        t = float(k)
        snap = world.snapshot(t)
        if flush is not None:
            flush += 1.0
        t0 = time.thread_time()
        for ev_id, p in progress.items():
            p.update(t, snap.vehicles.get(ev_id), arrived=ev_id not in snap.vehicles and p.depart_s is not None)
        commands = controller.tick(snap, progress)
        times.append((time.thread_time() - t0) * 1000.0)
        world.apply(commands)
        if k % 60 == 59:
            gc.collect(1)


# --- recorded snapshots -------------------------------------------------------------------------


def snapshot_to_json(snap: Snapshot) -> dict[str, Any]:
    return {
        "t": snap.t_s,
        "v": {k: [v.road_id, v.lane_id, v.lane_pos_m, v.speed_mps, v.route_index, v.odometer_m]
              for k, v in snap.vehicles.items()},
        "s": {k: [s.state, s.program_id, s.phase, [[i, list(foes)] for i, foes in s.occupied]]
              for k, s in snap.signals.items()},
        "l": {k: [ln.vehicles, ln.halting] for k, ln in snap.lanes.items()},
        "a": list(snap.arrived),
        **({"sf": dict(snap.speed_factors)} if snap.speed_factors else {}),
    }


def snapshot_from_json(d: Mapping[str, Any]) -> Snapshot:
    return Snapshot(
        float(d["t"]),
        {k: VehicleState(k, v[0], v[1], float(v[2]), float(v[3]), int(v[4]), float(v[5])) for k, v in d["v"].items()},
        {k: SignalState(k, s[0], s[1], int(s[2]),
                        tuple((int(i), tuple(int(f) for f in foes)) for i, foes in (s[3] if len(s) > 3 else ())))
         for k, s in d["s"].items()},
        {k: LaneState(k, int(ln[0]), int(ln[1])) for k, ln in d["l"].items()},
        arrived=tuple(d.get("a", ())),
        speed_factors={k: float(f) for k, f in d.get("sf", {}).items()},
    )


def read_recording(path: Path) -> tuple[dict[str, Any], Iterator[tuple[Snapshot, list[list[Any]], list[str]]]]:
    """The header of a recording (``greenwave run --record``) and its ticks: (snapshot, commands,
    signals the run stopped reading after that tick)."""
    f = path.open(encoding="utf-8")
    try:
        header = json.loads(f.readline())
    except json.JSONDecodeError as e:
        f.close()
        raise GreenwaveError(f"{path}: not a greenwave snapshot recording ({e})") from None
    if header.get("format") != RECORDING_FORMAT:
        f.close()
        raise GreenwaveError(f"{path}: not a greenwave snapshot recording (format {header.get('format')!r})")

    def ticks() -> Iterator[tuple[Snapshot, list[list[Any]], list[str]]]:
        with f:
            for line in f:
                d = json.loads(line)
                yield snapshot_from_json(d), d.get("c", []), d.get("f", [])

    return header, ticks()


def command_json(cmd: SignalCommand) -> list[Any]:
    return [cmd.tls_id, cmd.kind, cmd.state, cmd.program_id, cmd.phase]


def replay(network: Network, path: Path, config: ControllerConfig) -> dict[str, Any]:
    """Feed a recording's snapshots to a fresh controller configured as in the recorded run
    (``config``), forgetting the signals the run stopped reading when it did; time its ticks (CPU
    time of the thread) and compare the commands it gives with those recorded (the core is
    deterministic: they must be the same). Re-routed EVs are not replayed (their new corridor is
    not recorded)."""
    header, ticks = read_recording(path)
    corridors = {ev["id"]: build_corridor(network, ev["route"]) for ev in header["evs"]}
    evs = [EvSetup(ev["id"], ev["type"], corridors[ev["id"]], EvDynamics(**ev["dynamics"]), float(ev["depart"]))
           for ev in header["evs"]]
    controller = PreemptionController(network, evs, config)
    progress = {ev.ev_id: EvProgress(ev.ev_id, ev.corridor) for ev in evs}
    times: list[float] = []
    mismatches = 0
    first_mismatch: str | None = None
    slowest: list[tuple[float, float]] = []
    gc.collect()
    gc.disable()  # as in a run: garbage is collected between ticks, not inside them
    try:
        for k, (snap, recorded, forgotten) in enumerate(ticks):
            arrived = set(snap.arrived)
            t0 = time.thread_time()
            for ev_id, p in progress.items():
                p.update(snap.t_s, snap.vehicles.get(ev_id), arrived=ev_id in arrived)
            commands = controller.tick(snap, progress)
            times.append((time.thread_time() - t0) * 1000.0)
            slowest.append((times[-1], snap.t_s))
            got = [command_json(c) for c in commands]
            if got != recorded:
                mismatches += 1
                first_mismatch = first_mismatch or f"t={snap.t_s}: recorded {recorded}, replayed {got}"
            for tls in forgotten:  # the run stopped reading these signals after this tick
                controller.forget_signal(tls)
            if k % 60 == 59:
                gc.collect(1)
    finally:
        gc.enable()
    arr = np.asarray(times or [0.0])
    return {"ticks": len(times), "p50_ms": round(float(np.percentile(arr, 50)), 4),
            "p99_ms": round(float(np.percentile(arr, 99)), 4), "max_ms": round(float(arr.max()), 4),
            "command_mismatches": mismatches, "first_mismatch": first_mismatch,
            "slowest": [{"t": t, "ms": round(ms, 3)} for ms, t in sorted(slowest, reverse=True)[:5]]}
