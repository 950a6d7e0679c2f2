"""The control loop of one run: step SUMO, read one snapshot, watch safety, let the controller
plan, apply its commands; then measure and write ``summary.json``."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from controller import __version__
from controller.core.oracle import NoController, OracleController
from controller.core.progress import EvProgress
from controller.core.safety import SafetyConfig, SafetyMonitor
from controller.core.snapshot import SignalCommand, Snapshot
from controller.errors import GreenwaveError
from controller.runtime.freeflow import free_flow_time
from controller.runtime.outputs import background, read_outputs
from controller.runtime.setup import RunSetup, sumo_args
from controller.sim.adapter import Backend, SumoAdapter

CONTROLLERS = ("none", "oracle")
MAX_EXTENSION_S = 1800.0  # how long a run goes on past its end waiting for an EV to arrive


class Controller(Protocol):
    name: str
    preempted: set[str]

    def tick(self, snapshot: Snapshot, progress: Mapping[str, EvProgress]) -> Sequence[SignalCommand]: ...

    def stop(self) -> Sequence[SignalCommand]: ...


def make_controller(name: str, setup: RunSetup) -> Controller:
    if name == "none":
        return NoController()
    if name == "oracle":
        return OracleController(
            setup.network,
            {ev.ev_id: ev.corridor for ev in setup.evs},
            {ev.ev_id: ev.depart_s for ev in setup.evs},
        )
    raise GreenwaveError(f"unknown controller '{name}' (choose from: {', '.join(CONTROLLERS)})")


@dataclass
class _Timing:
    tick_ms: list[float]
    step_ms: list[float]


def _quantiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    arr = np.asarray(values)
    return {
        "p50": round(float(np.percentile(arr, 50)), 4),
        "p99": round(float(np.percentile(arr, 99)), 4),
        "max": round(float(arr.max()), 4),
    }


def run(
    setup: RunSetup,
    controller_name: str = "none",
    *,
    backend: Backend = "libsumo",
    gui: bool = False,
    safety: SafetyConfig | None = None,
) -> dict[str, Any]:
    """Run one simulation and return its summary (also written to ``out_dir/summary.json``)."""
    out = setup.out_dir
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "summary.json"
    summary_path.unlink(missing_ok=True)  # never leave an old summary looking like this run's
    started = time.perf_counter()
    controller = make_controller(controller_name, setup)
    free_flow = {ev.ev_id: free_flow_time(setup, ev, backend=backend) for ev in setup.evs}
    programs = {tls: setup.network.programs[tls] for tls in setup.watched_tls}
    monitor = SafetyMonitor(programs, safety or SafetyConfig())
    progress = {ev.ev_id: EvProgress(ev.ev_id, ev.corridor) for ev in setup.evs}
    timing = _Timing([], [])
    budget_ms = setup.step_length_s * 1000.0
    end_s = setup.end_s

    with SumoAdapter(sumo_args(setup), backend=backend, gui=gui, error_log=out / "sumo-errors.log") as sim:
        for ev in setup.evs:
            sim.add_vehicle(ev.ev_id, ev.route, ev.vtype_id, depart=f"{ev.depart_s:g}")
            sim.watch_vehicle(ev.ev_id)
        sim.watch_signals(setup.watched_tls)
        t = sim.time_s
        while True:
            if t >= end_s - 1e-9 and (
                all(p.arrived_s is not None for p in progress.values()) or t >= end_s + MAX_EXTENSION_S
            ):
                break
            t0 = time.perf_counter()
            snap = sim.step()
            t1 = time.perf_counter()
            t = snap.t_s
            monitor.observe(t, {s.tls_id: (s.state, s.program_id) for s in snap.signals.values()})
            arrived = set(snap.arrived)
            for ev_id, p in progress.items():
                p.update(t, snap.vehicles.get(ev_id), arrived=ev_id in arrived)
            commands = controller.tick(snap, progress)
            if commands:
                sim.apply(commands)
            t2 = time.perf_counter()
            timing.step_ms.append((t1 - t0) * 1000.0)
            timing.tick_ms.append((t2 - t1) * 1000.0)
        final = controller.stop()
        if final:
            sim.apply(final)
        snap = sim.step()  # one more step so the monitor sees the hand-back
        monitor.observe(snap.t_s, {s.tls_id: (s.state, s.program_id) for s in snap.signals.values()})
        monitor.finish(snap.t_s)
        last_t = snap.t_s

    outputs = read_outputs(out)
    ev_ids = {ev.ev_id for ev in setup.evs}
    bg_trips, bg_loss = background(outputs, ev_ids, end_s)
    evs = []
    for ev in setup.evs:
        trip = outputs.trips.get(ev.ev_id)
        p = progress[ev.ev_id]
        ff = free_flow[ev.ev_id]
        tt = trip.duration_s if trip else None
        preempted = sum(1 for j in ev.corridor.junctions if j.tls_id in controller.preempted)
        evs.append(
            {
                "id": ev.ev_id,
                "type": ev.ev_type,
                "depart": trip.depart_s if trip else p.depart_s,
                "arrival": trip.arrival_s if trip else None,
                "arrived": trip is not None,
                "travel_time": tt,
                "free_flow_time": ff,
                "ratio_to_free_flow": round(tt / ff, 4) if tt is not None and ff > 0 else None,
                "delay": round(tt - ff, 2) if tt is not None else None,
                "stops": len(p.stops),
                "time_stopped": round(p.time_stopped_s(last_t), 2),
                "junctions": len(ev.corridor.junctions),
                "preempted": preempted,
                "route_length_m": round(ev.corridor.length_m, 1),
                "tls": [j.tls_id for j in ev.corridor.junctions],
                "crossed_s": {ev.corridor.junctions[i].tls_id + f"#{i}": round(s, 2)
                              for i, s in sorted(p.crossed_s.items())},
                "stop_episodes": [
                    {"start": s.start_s, "end": s.end_s, "next_junction": s.next_junction,
                     "distance_to_stop_line_m": None if s.distance_to_stop_line_m is None
                     else round(s.distance_to_stop_line_m, 1)}
                    for s in p.stops
                ],
            }
        )
    counts = monitor.counts()
    ev_collisions = sum(1 for a, b in outputs.colliders if a in ev_ids or b in ev_ids)
    tick = _quantiles(timing.tick_ms)
    step = _quantiles(timing.step_ms)
    summary: dict[str, Any] = {
        "scenario": setup.name,
        "controller": controller.name,
        "seed": setup.seed,
        "complete": True,
        "source": setup.source,
        "demand_level": setup.demand_level,
        "begin": setup.begin_s,
        "end": setup.end_s,
        "simulated_until": last_t,
        "step_length": setup.step_length_s,
        "bluelight": setup.bluelight,
        "backend": "traci" if gui else backend,
        "greenwave_version": __version__,
        "evs": evs,
        "background": {"trips": bg_trips, "mean_time_loss": None if bg_loss is None else round(bg_loss, 3)},
        "eta": {
            "n": 0,
            "abs_error_p50": None,
            "abs_error_p90": None,
            "by_horizon": {h: {"n": 0, "abs_error_p50": None, "abs_error_p90": None} for h in ("10", "30", "60")},
            "at_entry": {"n": 0, "abs_error_p50": None, "abs_error_p90": None},
            "note": f"controller '{controller.name}' makes no predictions",
        },
        "safety": {
            **{rule: counts.get(rule, 0) for rule in ("S1", "S2", "S3", "S4", "S5")},
            "collisions": outputs.collisions,
            "collisions_ev": ev_collisions,
            "emergency_braking": outputs.emergency_braking,
            "emergency_stops": outputs.emergency_stops,
            "teleports": outputs.teleports,
            "by_touch": monitor.counts_by_touch(),
            "watched_signals": len(programs),
            "preempted_signals": sorted(controller.preempted),
            "violations": [
                {"rule": v.rule, "tls": v.tls_id, "t": v.t_s, "link": v.link_index, "detail": v.detail}
                for v in monitor.violations[:200]
            ],
        },
        "realtime": {
            "ticks": len(timing.tick_ms),
            "tick_ms_p50": tick["p50"],
            "tick_ms_p99": tick["p99"],
            "tick_ms_max": tick["max"],
            "budget_ms": budget_ms,
            "over_budget": sum(1 for x in timing.tick_ms if x > budget_ms),
            "sumo_step_ms_p50": step["p50"],
            "sumo_step_ms_p99": step["p99"],
            "wall_s": round(time.perf_counter() - started, 2),
        },
    }
    tmp = summary_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, allow_nan=False, default=_json_default) + "\n", "utf-8")
    tmp.replace(summary_path)
    return summary


def _json_default(o: object) -> object:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
