"""The control loop of one run: step SUMO, read one snapshot, watch safety, let the controller
plan, apply its commands; then measure and write ``summary.json``."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import hashlib
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Concatenate, ParamSpec, Protocol
from xml.sax.saxutils import escape

import numpy as np

from controller import __version__, core
from controller.bench.core import RECORDING_FORMAT, command_json, snapshot_to_json
from controller.core.corridor import Corridor, build_corridor
from controller.core.eta import EvDynamics, build_profile
from controller.core.greenwave import ControllerConfig, EvSetup, PreemptionController
from controller.core.oracle import NoController, OracleController
from controller.core.planner import PlannerConfig
from controller.core.progress import EvProgress, StopEpisode
from controller.core.safety import SafetyConfig, SafetyMonitor
from controller.core.snapshot import SignalCommand, Snapshot, VehicleState
from controller.errors import GreenwaveError, OutputError, ScenarioError, is_disk_full
from controller.report.html import REPORT_FILE
from controller.runtime.freeflow import free_flow_times
from controller.runtime.interrupts import StepBoundary
from controller.runtime.outputs import (
    Collision,
    SumoOutputs,
    Trip,
    background,
    background_by_class,
    collisions_involving,
    collisions_until,
    collisions_while_preempted,
    cross_streets,
    read_outputs,
    unfinished,
)
from controller.runtime.pacing import Pacer
from controller.runtime.setup import (
    EV_COLORS,
    EV_VTYPE_PREFIX,
    RUN_MARK,
    SIMULATION_OPTIONS,
    SUMO_ERROR_LOG,
    SUMO_LOG,
    EvPlan,
    RunSetup,
    check_running_programs,
    program_sources,
    rejection_hint,
    setup_notes,
    sumo_args,
    vtype_classes,
)
from controller.runtime.trace import TRACE_FILE, TraceRecorder
from controller.runtime.watch import ACTIVATE_BEFORE_S, LANE_WINDOW_S, CorridorWatch, FreeFlowClock
from controller.sim.adapter import Backend, SumoAdapter

CONTROLLERS = ("none", "local", "greenwave", "oracle")
DRAIN_LIMIT_S = 300.0  # after the run: how long hand-backs in progress may take to finish
# a stop within this distance of the next stop line, or anywhere on the route edge that ends at
# it (in its queue), is a stop at a signal
STOP_AT_SIGNAL_M = 100.0
MAX_EXTENSION_S = 1800.0  # how long a run goes on past its end waiting for an EV to arrive
GC_EVERY_TICKS = 60  # young-generation garbage collection between ticks, this often
DEFAULT_BUDGET_MS = 100.0  # the controller's budget per second of simulated time
DEFAULT_DYNAMICS = EvDynamics(max_speed_mps=41.67, accel_mps2=2.6, decel_mps2=4.5)


class Controller(Protocol):
    name: str

    @property
    def preempted(self) -> set[str]: ...

    def tick(
        self, snapshot: Snapshot, progress: Mapping[str, EvProgress], over_budget: Callable[[], bool] | None = None
    ) -> Sequence[SignalCommand]: ...

    def stop(self) -> Sequence[SignalCommand]: ...


def check_controller(name: str) -> None:
    if name not in CONTROLLERS:
        raise GreenwaveError(f"unknown controller '{name}' (choose from: {', '.join(CONTROLLERS)})")


def make_controller(
    name: str,
    setup: RunSetup,
    dynamics: Mapping[str, EvDynamics] | None = None,
    config: ControllerConfig | None = None,
) -> Controller:
    check_controller(name)
    if name == "none":
        return NoController()
    if name == "oracle":
        return OracleController(
            setup.network,
            {ev.ev_id: ev.corridor for ev in setup.evs},
            {ev.ev_id: ev.depart_s for ev in setup.evs},
        )
    dyn = dynamics or {}
    evs = [
        EvSetup(ev.ev_id, ev.ev_type, ev.corridor, dyn.get(ev.ev_id, DEFAULT_DYNAMICS), ev.depart_s)
        for ev in setup.evs
    ]
    cfg = with_step(config or controller_config(setup.controller), setup.step_length_s)
    return PreemptionController(setup.network, evs, replace(cfg, mode="local" if name == "local" else "greenwave"))


_PLANNER_SETTINGS = frozenset(f.name for f in dataclasses.fields(PlannerConfig))  # the rest are ControllerConfig's


def controller_config(settings: Mapping[str, Any]) -> ControllerConfig:
    """A controller configuration from a scenario's (or the command line's) settings. ``local``'s
    ETA-threshold variant given alone (``detect_eta_s`` without ``detect_range_m``) detects by
    the ETA alone; with both, whichever comes first."""
    planner: dict[str, Any] = {k: v for k, v in settings.items() if k in _PLANNER_SETTINGS}
    top: dict[str, Any] = {k: v for k, v in settings.items() if k not in planner}
    if top.get("detect_eta_s") is not None and top.get("detect_range_m") is None:
        top["detect_range_m"] = None
    base = ControllerConfig()
    return replace(base, **top, planner=replace(base.planner, **planner))


def with_step(config: ControllerConfig, step_length_s: float) -> ControllerConfig:
    """``config`` planning with the simulation's step: the planner counts a transition's yellow,
    red clearance and minimum green in ticks of this length, so a step under 1 s planned as 1 s
    would cut them short."""
    if config.planner.step_s == step_length_s:
        return config
    return replace(config, planner=replace(config.planner, step_s=step_length_s))


@dataclass
class _Timing:
    tick_ms: list[float] = dataclasses.field(default_factory=list)  # the controller's own time per tick
    read_ms: list[float] = dataclasses.field(default_factory=list)  # its reading part
    step_ms: list[float] = dataclasses.field(default_factory=list)  # SUMO's simulation step
    control_ms: list[float] = dataclasses.field(default_factory=list)  # predict and plan (controller.tick)
    # the independent safety monitor and the trace (instruments, not control)
    monitor_ms: list[float] = dataclasses.field(default_factory=list)
    # --realtime/--speed: how late each tick started against the wall clock
    jitter_ms: list[float] = dataclasses.field(default_factory=list)


def _quantiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    arr = np.asarray(values)
    return {
        "p50": round(float(np.percentile(arr, 50)), 4),
        "p99": round(float(np.percentile(arr, 99)), 4),
        "max": round(float(arr.max()), 4),
    }


PARTIAL_OUTPUTS = ("tripinfo.xml", "statistics.xml", "collisions.xml", "cross_streets.xml")
INCOMPLETE_FILE = "INCOMPLETE.txt"
SUMMARY_FILE = "summary.json"
# what a run writes at the top of its folder (run --record may not name one of them)
RUN_OUTPUTS = frozenset({SUMMARY_FILE, TRACE_FILE, REPORT_FILE, INCOMPLETE_FILE, RUN_MARK, SUMO_LOG, SUMO_ERROR_LOG,
                         *PARTIAL_OUTPUTS})


def is_run_output(name: str) -> bool:
    """Is ``name``, at the top of a run's folder, one of the things a run writes there (its
    outputs, their temporary and partial forms, ``inputs/`` and ``outputs/``), as against a file
    of the user's own?"""
    return (name.removesuffix(".tmp") in RUN_OUTPUTS or name in ("inputs", "outputs")
            or name.endswith(".partial.xml"))


def _partial(name: str) -> str:
    """``tripinfo.xml`` -> ``tripinfo.partial.xml``: a SUMO output of a run that did not complete."""
    return name.removesuffix(".xml") + ".partial.xml"


def mark_incomplete(out: Path, why: BaseException | str, what_ran: str = "run") -> None:
    """A run (or a service) that did not complete: SUMO's outputs cover part of the simulated time
    only. They are renamed ``*.partial.xml`` (a tripinfo closed properly looks complete, one cut
    off is not XML) and a note says so."""
    try:
        renamed = []
        for name in PARTIAL_OUTPUTS:
            f = out / name
            if f.is_file():
                f.replace(f.with_name(_partial(name)))
                renamed.append(name)
        what = "interrupted (Ctrl-C, SIGTERM or SIGHUP)" if isinstance(why, KeyboardInterrupt) else f"stopped: {why}"
        summary = "; no summary.json was written" if what_ran == "run" else ""
        detectors = out / "outputs"
        if renamed or (detectors.is_dir() and any(detectors.iterdir())):
            kept = (f"SUMO's outputs of the part that ran are kept as *.partial.xml ({', '.join(renamed) or 'none'}); "
                    "those in outputs/, if any, cover that part only too")
        else:  # (SUMO did not start, or an attached one: its outputs are its own)
            kept = "SUMO wrote no outputs here"
        (out / INCOMPLETE_FILE).write_text(f"This {what_ran} did not complete ({what}){summary}. {kept}.\n", "utf-8")
    except OSError:
        pass  # the folder may be what failed: the run's error says so


P = ParamSpec("P")


def _incomplete_on_failure(
    f: Callable[Concatenate[RunSetup, P], dict[str, Any]],
) -> Callable[Concatenate[RunSetup, P], dict[str, Any]]:
    """A run that does not complete leaves its SUMO outputs renamed ``*.partial.xml`` and an
    ``INCOMPLETE.txt`` beside them (:func:`mark_incomplete`)."""

    @functools.wraps(f)
    def guarded(setup: RunSetup, /, *args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        try:
            return f(setup, *args, **kwargs)
        except BaseException as e:
            if isinstance(e, OSError) and is_disk_full(e):
                failure = OutputError(f"--out '{setup.out_dir}': no space left on the device"
                                      + (f" (writing '{e.filename}')" if e.filename else "")
                                      + "; no summary.json was written")
                mark_incomplete(setup.out_dir, failure)
                raise failure from None
            mark_incomplete(setup.out_dir, e)
            raise

    return guarded


@_incomplete_on_failure
def run(
    setup: RunSetup,
    controller_name: str = "none",
    *,
    backend: Backend = "libsumo",
    gui: bool = False,
    safety: SafetyConfig | None = None,
    controller_config: ControllerConfig | None = None,
    on_progress: Callable[[float, int], None] | None = None,
    budget_ms: float | None = None,
    speed: float | None = None,
    record: Path | None = None,
    attach: tuple[str, int] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run one simulation and return its summary (also written to ``out_dir/summary.json``; a run
    that does not complete writes none, see :func:`_incomplete_on_failure`).
    ``on_progress(t_s, evs_done)`` is called after every tick. ``budget_ms``: the controller's
    time budget per second of simulated time (default 100 ms, less where ``speed`` leaves a tick
    less wall time: 1000 / speed ms); ``speed``: pace the simulation at
    that many simulated seconds per wall second (1 = real time), None = as fast as possible;
    ``record``: write every tick's snapshot and commands there (JSON lines) for replay;
    ``attach``: (host, port) of a SUMO the user started with ``setup``'s configuration and
    ``--remote-port``, driven over TraCI instead of a SUMO of greenwave's: its outputs are its
    own, so the other traffic's figures are not measured (None), and SUMO's collisions are read
    over TraCI; ``on_note``: told what an attached SUMO does otherwise than greenwave's would,
    and of EVs SUMO re-routes through a signal greenwave cannot serve (summary.json's ``notes``
    keeps these after the setup's own, :func:`setup_notes`)."""
    out = setup.out_dir
    summary_path = out / SUMMARY_FILE
    clear_run_folder(setup)
    # (the folder marked until the summary is written: a run killed (SIGKILL, out of memory) left
    # SUMO's outputs cut off under their own names, looking complete)
    (out / INCOMPLETE_FILE).write_text(
        f"This run is in progress (greenwave, process {os.getpid()}, started "
        f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}). The file goes when its summary.json is "
        "written; if it is here and that process is gone, the run was killed (SIGKILL, out of memory): SUMO's "
        "outputs here then cover part of the simulated time only, and may be cut off.\n", "utf-8")
    started = time.perf_counter()
    check_controller(controller_name)
    programs = {tls: setup.network.programs[tls] for tls in setup.watched_tls}
    monitor = SafetyMonitor(programs, safety or SafetyConfig(step_s=setup.step_length_s))
    progress = {ev.ev_id: EvProgress(ev.ev_id, ev.corridor) for ev in setup.evs}
    trace = TraceRecorder({ev.ev_id: ev.ev_type for ev in setup.evs})
    timing = _Timing()
    if budget_ms is None:
        # paced faster than 10 simulated s per wall s, a tick has less wall time than the default
        # budget to keep pace (as `greenwave serve` counts it)
        budget_ms = DEFAULT_BUDGET_MS if speed is None else min(DEFAULT_BUDGET_MS, 1000.0 / speed)
    budget_ms *= setup.step_length_s
    end_s = setup.end_s
    pacer = Pacer(speed) if speed is not None else None

    digest = inputs_digest(setup)  # (before it runs: an input edited meanwhile does not count)
    with (
        StepBoundary() as boundary,  # (Ctrl-C and SIGTERM between steps: exits after them, below)
        SumoAdapter(sumo_args(setup) if attach is None else [], backend=backend, gui=gui,
                    error_log=out / SUMO_ERROR_LOG if attach is None else None, attach=attach,
                    explain=lambda detail: rejection_hint(detail, setup.inputs, setup.source)) as sim,
        contextlib.ExitStack() as closing,
    ):
        boundary.arm()
        sumo_version = sim.sumo_version()
        # every signal's, not only the watched ones': a re-routed EV's new corridor is planned with them
        every = setup.network.programs
        # every note of the run, for summary.json (those of the setup, printed before it by the
        # CLI, first; then the attached SUMO's and the ones made on the way, told to on_note)
        notes = setup_notes(setup, attached=attach is not None)
        attached_notes: list[str] = [n for n in notes if n.startswith("attached: ")]

        def note(text: str) -> None:
            notes.append(text)
            if on_note is not None:
                on_note(text)

        if attach is not None:  # (its network first: another one fails the programs' check too, less clearly)
            for text in check_attached(sim, setup):
                attached_notes.append(text)
                note(text)
            setup, end_note = attached_end(sim, setup)
            end_s = setup.end_s
            if end_note is not None:
                attached_notes.append(end_note)
                note(end_note)
        check_running_programs(every, sim.running_programs(every), program_sources(setup.inputs),
                               attached=f"{attach[0]}:{attach[1]}" if attach is not None else None)
        seed: int | None = setup.seed
        if attach is not None:
            given = sim.option("seed")  # (the SUMO's own seed is the run's, not --seed)
            seed = int(given) if given.isdigit() and sim.option("random").lower() != "true" else None
        dynamics = {}
        for ev in setup.evs:
            if ev.in_routes:  # (a vehicle of the route files: SUMO inserts it, and it is watched from then)
                sim.watch_vehicle(ev.ev_id, from_departure=True)
                dynamics[ev.ev_id] = EvDynamics(**escorted_type(sim, ev))
                continue
            sim.add_vehicle(ev.ev_id, ev.route, ev.vtype_id, depart=f"{ev.depart_s:g}")
            sim.watch_vehicle(ev.ev_id)
            dynamics[ev.ev_id] = EvDynamics(**sim.vehicle_type(ev.vtype_id))
        controller = make_controller(controller_name, setup, dynamics, controller_config)
        recorder = _open_recording(record, setup, controller, dynamics)
        if recorder is not None:
            closing.callback(recorder.close)  # also when the run fails
        forget = getattr(controller, "forget_signal", None)
        watch = CorridorWatch(sim, [f for f in (forget, monitor.pause) if f is not None])  # the planner may refuse
        pending = sorted(setup.evs, key=lambda e: e.depart_s)  # corridors not read yet
        # vehicles of the route files not yet checked to be in the simulation at their departure
        unchecked = [ev for ev in pending if ev.in_routes]
        t = sim.time_s

        # a controller planning so far ahead: each EV's corridor is read in a window sliding with it
        planning = controller if isinstance(controller, PreemptionController) and _plans_ahead(controller) else None

        def activate(t_s: float) -> None:
            while pending and pending[0].depart_s - ACTIVATE_BEFORE_S <= t_s + 1e-9:
                ev = pending.pop(0)
                corridor = progress[ev.ev_id].corridor
                watch.activate(ev.ev_id, corridor, t_s, _free_flow_clock(setup, corridor) if planning else None)

        route_check: set[str] = set()  # EVs whose route is new (SUMO's routes_new), to compare

        def control_tick(snap: Snapshot, read_ms: float) -> None:
            t1 = time.perf_counter()
            monitor.observe(snap.t_s, {s.tls_id: (s.state, s.program_id) for s in snap.signals.values()})
            t2 = time.perf_counter()
            arrived = set(snap.arrived)
            while unchecked and unchecked[0].depart_s + setup.step_length_s <= snap.t_s + 1e-9:
                ev = unchecked.pop(0)
                if progress[ev.ev_id].depart_s is None and not sim.awaited_in_simulation(ev.ev_id):
                    progress[ev.ev_id].not_inserted(snap.t_s)
                    watch.release(ev.ev_id, snap.t_s)
                    note(f"EV '{ev.ev_id}' (--escort) was not inserted at its departure ({ev.depart_s:g} s), nor "
                         f"waits for it: SUMO did not load it (see {SUMO_LOG if attach is None else 'its log'}: it "
                         "ignores a vehicle listed out of departure order; an attached SUMO may not load its file); "
                         "its escort ended there")
            for ev_id, p in progress.items():
                vehicle = snap.vehicles.get(ev_id)
                if route_changed(sim, ev_id, vehicle, p, route_check):
                    _reroute(sim, controller, setup, progress, watch, monitor, ev_id, snap.t_s, note)
                was_done = p.done
                progress[ev_id].update(snap.t_s, vehicle, arrived=ev_id in arrived,
                                       teleporting=ev_id in snap.teleporting,
                                       teleport_started=ev_id in snap.teleport_started)
                if progress[ev_id].done and not was_done:
                    watch.release(ev_id, snap.t_s)
                    if p.vanished_s is not None and p.depart_s is not None:
                        note(f"EV '{ev_id}' vanished from the simulation at {snap.t_s:g} s (removed by another "
                             "TraCI client, or by SUMO), not at its destination: its signals are handed back")
            deadline = t2 + (budget_ms - read_ms) / 1000.0
            tc0 = time.perf_counter()
            commands = controller.tick(snap, progress, lambda: time.perf_counter() > deadline)
            timing.control_ms.append((time.perf_counter() - tc0) * 1000.0)
            if commands:
                sim.apply(commands)
            if planning is not None:
                for ev_id in watch.evs:
                    watch.advance(ev_id, progress[ev_id].position_m or 0.0, planning.predicted_upto(ev_id), snap.t_s)
            forgotten = watch.tick(snap.t_s, sim.switched)  # (un)subscribing is the control path's cost
            activate(snap.t_s)
            t3 = time.perf_counter()
            trace.observe(snap, progress)
            if recorder is not None:
                recorder.write(json.dumps({**snapshot_to_json(snap), "c": [command_json(c) for c in commands],
                                           "f": forgotten}, separators=(",", ":")) + "\n")
            timing.tick_ms.append(read_ms + (t3 - t2) * 1000.0)
            timing.read_ms.append(read_ms)
            timing.monitor_ms.append((t2 - t1) * 1000.0 + (time.perf_counter() - t3) * 1000.0)

        activate(t)
        # Python's cyclic garbage collector would pause a tick now and then for as long as it
        # takes to scan everything the run keeps (hundreds of ms on a city); it runs between
        # ticks instead, on the young generations, and what survives is frozen out of its scans.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        gc.freeze()
        ticks = 0
        # Ctrl-C or SIGTERM with an attached SUMO: it goes on (other clients, or its own end) with
        # the signals as greenwave leaves them, so they are handed back through the safe
        # transitions below first (a bare switch back to the program cut greens with no yellow);
        # a second one, held to a step boundary too (at once, it cut a TraCI exchange and the
        # hand-back after it failed or hung), ends that: the signals are switched straight back.
        # SUMO greenwave started ends with the run: nothing to keep.
        interrupted: KeyboardInterrupt | None = None
        try:
            while not (
                t >= end_s - 1e-9
                and (all(p.done for p in progress.values()) or t >= end_s + MAX_EXTENSION_S)
            ):
                try:
                    boundary.check()
                except KeyboardInterrupt as e:
                    if attach is None:
                        raise
                    if boundary.repeated:  # (a double Ctrl-C: no hand-back through the transitions)
                        e.hand_back_cut = True  # type: ignore[attr-defined]
                        raise
                    interrupted = e
                    boundary.arm()
                    break
                if pacer is not None:
                    timing.jitter_ms.append(pacer.wait(t - setup.begin_s))
                snap = sim.step()
                timing.step_ms.append(sim.last_step_ms)
                t = snap.t_s
                control_tick(snap, sim.last_read_ms)
                if on_progress is not None:
                    on_progress(t, sum(1 for p in progress.values() if p.done))
                ticks += 1
                if ticks % GC_EVERY_TICKS == 0:
                    gc.collect(1)
                    gc.freeze()
        finally:
            gc.unfreeze()
            if gc_was_enabled:
                gc.enable()
        # Hand back whatever is still preempted, through the same safe transitions.
        final = controller.stop()
        if final:
            sim.apply(final)
        drain_until = t + DRAIN_LIMIT_S
        snap = sim.step()
        while getattr(controller, "busy", False) and snap.t_s < drain_until:
            try:
                boundary.check()
            except KeyboardInterrupt as e:
                if attach is None:
                    raise
                if interrupted is not None or boundary.repeated:  # a second: the adapter switches them straight back
                    e.hand_back_cut = True  # type: ignore[attr-defined]
                    raise
                interrupted = e  # (the first, in the hand-back at the run's end: it goes on)
                boundary.arm()
            control_tick(snap, sim.last_read_ms)
            snap = sim.step()
        if interrupted is not None:  # (handed back: the run ends as interrupted, no summary)
            raise interrupted
        monitor.observe(snap.t_s, {s.tls_id: (s.state, s.program_id) for s in snap.signals.values()})
        monitor.finish(snap.t_s)
        last_t = snap.t_s

    # after the run, in sessions of their own (libsumo runs one at a time): the check of the
    # programs above refuses a misread one before the user waits for these
    # an EV re-routed on the way is summed up on the route it drove (SUMO keeps the edges behind
    # a vehicle in the route it gives it): its free flow, signals and length are that route's
    driven = [replace(ev, route=progress[ev.ev_id].corridor.route, corridor=progress[ev.ev_id].corridor)
              if progress[ev.ev_id].reroutes else ev for ev in setup.evs]
    # a vehicle of the route files drives its free flow with the speed factor SUMO drew for it in the run
    driven = [replace(ev, insertion=(*((k, v) for k, v in ev.insertion if k != "speedFactor"),
                                     ("speedFactor", f"{sim.speed_factors[ev.ev_id]:.6g}")))
              if ev.in_routes and ev.ev_id in sim.speed_factors else ev for ev in driven]
    free_flow_error: str | None = None
    try:
        free_flow: dict[str, float] = free_flow_times(setup, driven, backend=backend)
    except GreenwaveError as e:  # the run is complete: its summary says what could not be measured
        free_flow, free_flow_error = {}, str(e)
    ev_ids = {ev.ev_id for ev in setup.evs}
    bg_trips: int | None = None
    bg_loss: float | None = None
    bg_unfinished: int | None = None
    if attach is None:
        outputs = read_outputs(out)
        bg_trips, bg_loss = background(outputs, ev_ids, end_s)
        bg_unfinished = unfinished(outputs, ev_ids, end_s, sum(1 for p in progress.values() if p.depart_s is not None))
    else:
        outputs = attached_outputs(progress, sim.collision_log, setup.step_length_s)
    counts = monitor.counts()
    planner = getattr(controller, "planner", None)
    # (with those of a signal the drain limit left preempted: no ``restored``, and S5 by the monitor)
    preemptions = [r.as_dict() for r in planner.records(include_open=True)] if planner is not None else []
    evs = []
    for ev in driven:
        p = progress[ev.ev_id]
        # a vanished EV has a tripinfo (SUMO writes one when a vehicle is removed): not an arrival
        trip = outputs.trips.get(ev.ev_id) if p.vanished_s is None else None
        switched = switched_for(ev.ev_id, preemptions) if planner is not None else \
            getattr(controller, "switched_for", {}).get(ev.ev_id, set())
        evs.append(ev_summary(ev, p, trip, free_flow.get(ev.ev_id), switched, last_t))
    # the EV's movement lost green while preempted for it, before it crossed (from the trace: the
    # signals as displayed, not as commanded)
    for r, lost in zip(preemptions, trace.green_lost(preemptions), strict=True):
        r["green_lost"] = lost
    for ev_row in evs:
        lost_counts = [r["green_lost"] for r in preemptions if r["ev"] == ev_row["id"]]
        known = [int(c) for c in lost_counts if c is not None]
        # None without a planner, or where none of its records could be read (never departed)
        ev_row["green_lost"] = None if planner is None or (lost_counts and not known) else sum(known)
        # (a crawl behind a queue still clearing is no stop, yet costs nearly as much: shown apart)
        ev_row["slowest_before_signals_mps"] = trace.slowest_before_signals(str(ev_row["id"]))
    ev_collisions = collisions_involving(outputs.collision_list, ev_ids)
    windows = preempted_windows(preemptions, last_t)
    junction_tls = {c.junction_id: c.tls_id for c in setup.network.connections if c.tls_id}
    # (None where the controller keeps no preemption records but did preempt: the oracle)
    # (SUMO's outputs stamp a step's events with the step's start, the controller's clock with
    # its end, as TraCI gives it after the step: one step length apart)
    preempted_collisions = (collisions_while_preempted(outputs.collision_list, junction_tls, windows,
                                                       clock_lag_s=setup.step_length_s)
                            if planner is not None or not controller.preempted else None)
    # the other traffic's collisions up to the scenario's end, as its trips are counted (a run
    # going on for an EV not yet arrived, and the hand-back after the end, are apart)
    collisions, collisions_after_end = collisions_until(outputs, end_s)
    # attached: SUMO's statistics and trips are the user's (None: not measured here)
    measured = attach is None
    tick = _quantiles(timing.tick_ms)
    step = _quantiles(timing.step_ms)
    monitor_q = _quantiles(timing.monitor_ms)
    jitter = _quantiles(timing.jitter_ms)
    achieved = pacer.achieved_speed() if pacer is not None else None
    read_q = _quantiles(timing.read_ms)
    control_q = _quantiles(timing.control_ms)
    summary: dict[str, Any] = {
        "scenario": setup.name,
        "controller": controller.name,
        # the controller settings the scenario and the command line gave (the rest are defaults)
        "controller_settings": dict(setup.controller),
        "seed": seed,
        "complete": True,
        **({"free_flow_error": free_flow_error} if free_flow_error is not None else {}),
        "source": setup.source,
        "demand_level": setup.demand_level,
        "inputs_digest": digest,
        "begin": setup.begin_s,
        "end": setup.end_s,
        "simulated_until": last_t,
        "step_length": setup.step_length_s,
        "bluelight": setup.bluelight,
        "backend": "traci" if gui or attach is not None else backend,
        **({"attached": f"{attach[0]}:{attach[1]}", "attached_notes": attached_notes} if attach is not None else {}),
        "notes": notes,
        # the oracle only: signals where it showed two EVs' crossing movements green at once (no
        # bound a safe controller could reach: the bench and report do not judge against it)
        **({"oracle_conflicts": [{"tls": tls, "from_s": t} for tls, t in sorted(controller.conflicts.items())]}
           if isinstance(controller, OracleController) else {}),
        "greenwave_version": __version__,
        "sumo_version": sumo_version,
        "evs": evs,
        "background": {
            "trips": bg_trips,
            "mean_time_loss": None if bg_loss is None else round(bg_loss, 3),
            # (other vehicles inserted that had not arrived by the end: not in the figures above)
            "unfinished": bg_unfinished,
            # (bicycles, trams and buses count in the figures above: here apart)
            "by_class": background_by_class(
                outputs, ev_ids, end_s, vtype_classes([*setup.inputs.route_files, *setup.inputs.additional_files])),
            "cross_streets": cross_streets(out),
        } if measured else {"trips": None, "mean_time_loss": None, "unfinished": None, "by_class": None,
                            "cross_streets": None,
                            "notes": "not measured: attached to a SUMO greenwave did not start, whose outputs are "
                                     "its own"},
        "eta": _eta_section(controller, progress),
        "preemptions": preemptions,
        "recovery": recovery_section(preemptions),
        "safety": {
            **{rule: counts.get(rule, 0) for rule in ("S1", "S2", "S3", "S4", "S5")},
            "collisions": collisions,
            "collisions_after_end": collisions_after_end,
            "collisions_ev": ev_collisions,
            # on the crossing of a signal from its entry until 30 s after it was back in its program
            "collisions_preempted": preempted_collisions,
            "emergency_braking": outputs.emergency_braking if measured else None,
            "emergency_stops": outputs.emergency_stops if measured else None,
            "teleports": outputs.teleports if measured else None,
            "teleports_traffic": outputs.teleports_traffic if measured else None,
            "by_touch": monitor.counts_by_touch(),
            "watched_signals": len(watch.signals_ever),
            "preempted_signals": sorted(controller.preempted),
            # requests the planner refused because their target shows a green no program phase
            # shows (a fault of the request's maker; [] always so far)
            "targets_refused": [{"tls": tls, "target": target, "ticks": n}
                                for (tls, target), n in sorted(getattr(planner, "refused_targets", {}).items())],
            # every violation counted per signal; the first 200 listed
            "by_tls": dict(sorted(Counter(v.tls_id for v in monitor.violations).items())),
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
            "read_ms_p50": read_q["p50"],
            "read_ms_p99": read_q["p99"],
            "control_ms_p50": control_q["p50"],
            "control_ms_p99": control_q["p99"],
            "tick_to_step_p50": round(tick["p50"] / step["p50"], 4) if tick["p50"] and step["p50"] else None,
            "deferred_ev_updates": int(getattr(controller, "deferred", 0)),
            "monitor_ms_p50": monitor_q["p50"],
            "monitor_ms_p99": monitor_q["p99"],
            "paced_speed": speed,
            # (below paced_speed where the machine could not keep pace: the ticks started ever later)
            "achieved_speed": achieved if achieved is None else round(achieved, 2),
            "jitter_ms_p50": jitter["p50"],
            "jitter_ms_p99": jitter["p99"],
            "jitter_ms_max": jitter["max"],
            "watched_max": {"signals": watch.max_signals, "lanes": watch.max_lanes},
            "core": "compiled" if core.COMPILED else "python",  # greenwave accel (mypyc) or not
            "wall_s": round(time.perf_counter() - started, 2),
            "notes": "tick = the controller's own time per tick (read the watched objects, predict, plan, "
                     "apply), apart from SUMO's step; read = its reading part; control = predicting and planning (the "
                     "rest: EV progress, applying commands, (un)subscribing); monitor = the independent safety "
                     "monitor and the trace recorder, instruments outside the control path; jitter = how late a paced "
                     "tick started against the wall clock; achieved_speed = simulated s per wall s of a paced run",
        },
    }
    summary["notes"] = [*notes, *traffic_notes(summary)]
    eta_log = getattr(controller, "eta_log", None)
    eta_records = [
        (r.ev_id, r.junction_index, r.t_s, round(r.eta_s, 2), round(r.low_s, 2), round(r.high_s, 2), r.tag)
        for r in (eta_log.records if eta_log is not None else ())
    ]
    header = {k: summary[k] for k in ("scenario", "controller", "seed", "step_length")}
    # the trace first: a summary.json present means the run's outputs are complete
    _write_json(out / TRACE_FILE, trace.as_dict(header=header, eta_records=eta_records), indent=None)
    _write_json(summary_path, summary, indent=2)
    (out / INCOMPLETE_FILE).unlink(missing_ok=True)
    return summary


ATTACH_LENGTHS_CHECKED = 300  # edges whose length an attach compares (spread over the network; all on the routes)


def check_attached(sim: SumoAdapter, setup: RunSetup, ev_types: Collection[str] = (),
                   departs: bool = True) -> list[str]:
    """Refuse an attached SUMO that does not run ``setup``'s configuration as greenwave read it
    (the edges, the lengths of the routes' and of some others, the step length; with
    ``departs``, time not past an EV's departure), then give it the vehicle types of ``setup``'s
    EVs and of ``ev_types`` (``ambulance``, ...: a service's escorts come later). Returns notes:
    where its options make it simulate otherwise than greenwave's own SUMO would."""
    where = f"the SUMO at {sim.attach[0]}:{sim.attach[1]}" if sim.attach is not None else "SUMO"
    other = f"{where} runs another network than {setup.source} names ({setup.inputs.net_file.name})"
    edges = {e for e in sim.edge_ids() if not e.startswith(":")}
    ours = sorted(e for e in setup.network.edges if not e.startswith(":"))
    if edges != set(ours):
        odd = sorted(edges ^ set(ours))
        raise ScenarioError(f"{other}: {len(odd)} edge(s) in one of them only, e.g. '{odd[0]}'")
    # (the same ids, another geometry: a grid of other block lengths; each length is a TraCI call)
    sample = {*ours[:: max(1, len(ours) // ATTACH_LENGTHS_CHECKED)], *(e for ev in setup.evs for e in ev.route)}
    for edge_id in sorted(sample):
        theirs, mine = sim.edge_length_m(edge_id), setup.network.edges[edge_id].length_m
        if abs(theirs - mine) > 0.1:
            raise ScenarioError(f"{other}: edge '{edge_id}' is {theirs:.1f} m long there, {mine:.1f} m here")
    step = sim.step_length_s()
    if abs(step - setup.step_length_s) > 1e-9:
        raise ScenarioError(f"{where} steps {step:g} s, {setup.source} {setup.step_length_s:g} s: start SUMO with the "
                            "configuration's step-length")
    late = [ev for ev in setup.evs if ev.depart_s < sim.time_s - 1e-9] if departs else []
    if late:
        raise ScenarioError(f"{where} is at {sim.time_s:g} s already: EV '{late[0].ev_id}' departs at "
                            f"{late[0].depart_s:g} s")
    for kind in sorted({*(ev.ev_type for ev in setup.evs), *ev_types}):
        sim.define_ev_type(f"{EV_VTYPE_PREFIX}{kind}", EV_COLORS[kind])
    notes = [f"{where} runs with {name} {value}, greenwave's own SUMO with {wanted}: the simulation differs from "
             f"greenwave run --sumocfg's (start SUMO with --{name} {wanted} for the same)"
             for name, wanted in SIMULATION_OPTIONS.items() if (value := sim.option(name)).lower() != wanted]
    # (by file name: SUMO holds the paths as it was given them)
    their_routes = sorted(Path(f.strip()).name for f in sim.option("route-files").split(",") if f.strip())
    our_routes = sorted(Path(f).name for f in setup.inputs.route_files)
    if their_routes != our_routes:
        notes.append(f"{where} runs route files {', '.join(their_routes) or '(none)'}, {setup.source} names "
                     f"{', '.join(our_routes) or '(none)'}: its demand is its own")
    return notes


def traffic_notes(summary: Mapping[str, Any]) -> list[str]:
    """What the other traffic's figures leave out: no trip finished by the end, or most of the
    vehicles inserted still on the road then (summary.json's ``notes`` has them; the console too)."""
    bg = summary.get("background") or {}
    trips, left = bg.get("trips"), bg.get("unfinished")
    if trips is None:  # (attached: not measured, said apart)
        return []
    if not trips:
        return [f"no other vehicle finished a trip between {summary['begin']:g} and {summary['end']:g} s: other "
                "traffic is not measured (if your demand should run then, do its departures fall inside the "
                "simulated time?)"]
    if left is not None and left > trips:
        return [f"other traffic is measured on the {trips} trips finished by the end ({summary['end']:g} s); "
                f"{left} other vehicles inserted had not arrived by then and are left out, so the figures may not "
                "show what the preemptions cost the traffic they held up (a later end measures more of it)"]
    return []


def attached_end(sim: SumoAdapter, setup: RunSetup) -> tuple[RunSetup, str | None]:
    """The run's end with an attached SUMO that has an end of its own (``--end`` when started):
    that end where it comes before the configuration's (or the default after the last EV's
    departure), unless the user gave ``--end``; else the run's, with a note where the two
    differ. An EV departing at or after the SUMO's end is an error."""
    where = f"the SUMO at {sim.attach[0]}:{sim.attach[1]}" if sim.attach is not None else "SUMO"
    theirs = sim.end_time_s()
    if theirs is None or abs(theirs - setup.end_s) < 1e-9:
        return setup, None
    if theirs > setup.end_s or setup.end_given:
        return setup, (f"attached: {where} ends at {theirs:g} s (its end option); greenwave steps it to "
                       f"{setup.end_s:g} s" + (" (--end)" if setup.end_given else ""))
    late = max(setup.evs, key=lambda ev: ev.depart_s)
    if late.depart_s >= theirs:
        raise ScenarioError(f"{where} ends at {theirs:g} s (its end option): EV '{late.ev_id}' departs at "
                            f"{late.depart_s:g} s; start SUMO with a later end, or give greenwave --end")
    return replace(setup, end_s=theirs), (f"attached: {where} ends at {theirs:g} s (its end option), before "
                                          f"{setup.end_s:g} s: the run ends there")


def escorted_type(sim: SumoAdapter, ev: EvPlan) -> dict[str, float]:
    """The dynamics of the vehicle type of a vehicle of the route files (``--escort``), as SUMO has
    loaded it: a type SUMO has not read yet at the begin is an error that says where to define it."""
    if ev.vtype_id not in sim.vehicle_type_ids():
        raise ScenarioError(f"--escort '{ev.ev_id}': SUMO has not loaded its vehicle type '{ev.vtype_id}' at the "
                            "begin (it reads route files a few minutes ahead): define the type before the first "
                            "vehicle of its route file, or in an additional file")
    return sim.vehicle_type(ev.vtype_id)


def attached_outputs(progress: Mapping[str, EvProgress], collision_log: Sequence[tuple[float, str, str, str]],
                     step_s: float) -> SumoOutputs:
    """What a run attached to a SUMO it did not start knows of SUMO's outputs: the EVs' trips, as
    greenwave saw them (depart and arrival on SUMO's clock, a step before TraCI's; the time loss
    and waits not known: NaN, 0), and the collisions read over TraCI."""
    trips = {
        ev_id: Trip(ev_id, p.depart_s - step_s, p.arrived_s - step_s, p.arrived_s - p.depart_s, math.nan, 0, 0.0)
        for ev_id, p in progress.items()
        if p.depart_s is not None and p.arrived_s is not None and p.vanished_s is None
    }
    collisions = tuple(Collision(t, lane, a, b) for t, lane, a, b in collision_log)
    return SumoOutputs(trips=trips, collisions=len(collisions), collision_list=collisions)


def clear_run_folder(setup: RunSetup) -> None:
    """Make ``setup.out_dir`` and remove what an earlier run (or ``serve``) left there: its
    summary, trace, report, SUMO's outputs complete or partial, and its stale inputs and
    outputs, so that nothing in the folder looks like this run's."""
    out = setup.out_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_FILE).unlink(missing_ok=True)  # never leave an old summary looking like this run's
    (out / INCOMPLETE_FILE).unlink(missing_ok=True)
    for name in PARTIAL_OUTPUTS:  # an earlier run's, complete or not: this run writes its own
        (out / name).unlink(missing_ok=True)
        (out / _partial(name)).unlink(missing_ok=True)
    (out / TRACE_FILE).unlink(missing_ok=True)
    (out / REPORT_FILE).unlink(missing_ok=True)  # nor its report (`greenwave report` makes this run's)
    _clear_stale(setup)


def _clear_stale(setup: RunSetup) -> None:
    """A run into an earlier run's folder: remove what that run left that this one does not
    write again (its detector outputs, copies of additional files this run does not use), so
    that nothing in the folder is another run's."""
    used = {p.resolve() for p in (*setup.inputs.additional_files, *setup.inputs.route_files,
                                  *(ev.vtype_file for ev in setup.evs if ev.vtype_file is not None))}
    for sub in ("inputs", "outputs"):
        folder = setup.out_dir / sub
        if folder.is_dir():
            for f in folder.iterdir():
                if f.is_file() and (sub == "outputs" or f.resolve() not in used):
                    f.unlink()


def _write_json(path: Path, data: Any, *, indent: int | None) -> None:
    tmp = path.with_suffix(".json.tmp")
    text = json.dumps(data, indent=indent, allow_nan=False, default=_json_default, separators=None if indent
                      else (",", ":"))
    try:
        tmp.write_text(text + "\n", "utf-8")
    except BaseException:
        tmp.unlink(missing_ok=True)  # (a full disk: no stray half-written file)
        raise
    tmp.replace(path)


def _open_recording(
    path: Path | None, setup: RunSetup, controller: Controller, dynamics: Mapping[str, EvDynamics]
) -> IO[str] | None:
    if path is None:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # (checked by the CLI: the run's folder, or one there is)
        f = path.open("w", encoding="utf-8")
    except OSError as e:
        raise ScenarioError(f"--record: cannot write '{path}': {e.strerror or e}") from None
    header = {
        "format": RECORDING_FORMAT, "scenario": setup.name, "seed": setup.seed, "controller": controller.name,
        "net_file": str(setup.inputs.net_file), "controller_settings": dict(setup.controller),
        "evs": [{"id": ev.ev_id, "type": ev.ev_type, "route": list(ev.route), "depart": ev.depart_s,
                 "dynamics": dataclasses.asdict(dynamics.get(ev.ev_id, DEFAULT_DYNAMICS))} for ev in setup.evs],
    }  # fmt: skip
    f.write(json.dumps(header) + "\n")
    return f


def _json_default(o: object) -> object:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def route_changed(sim: SumoAdapter, ev_id: str, vehicle: VehicleState | None, progress: EvProgress,
                  pending: set[str]) -> bool:
    """Does the EV need a new corridor now: it left its planned route, or SUMO gave it another
    route (``sim.routes_new``; kept in ``pending`` while the EV is on a junction, and compared
    once it is off it, where its position on the new route is known)?"""
    if ev_id in sim.routes_new:
        pending.add(ev_id)
    if vehicle is None or vehicle.on_junction:
        return False
    changed = _left_route(vehicle, progress) or (
        ev_id in pending and sim.vehicle_route(ev_id) != progress.corridor.route)
    pending.discard(ev_id)
    return changed


def _left_route(vehicle: VehicleState, progress: EvProgress) -> bool:
    """The EV drives on a normal edge that is not where its corridor says it is."""
    if vehicle.on_junction:
        return False
    route = progress.corridor.route
    return not (0 <= vehicle.route_index < len(route) and route[vehicle.route_index] == vehicle.road_id)


def _reroute(
    sim: SumoAdapter,
    controller: Controller,
    setup: RunSetup,
    progress: dict[str, EvProgress],
    watch: CorridorWatch,
    monitor: SafetyMonitor,
    ev_id: str,
    t_s: float,
    on_note: Callable[[str], None] | None = None,
) -> None:
    """The EV left its planned route, or SUMO gave it another (a rerouter, its rerouting device,
    at insertion or on the way): plan its new corridor. A signal on it greenwave cannot serve
    (a movement no phase shows green) is left to its program, with a note: the EV drives that
    way regardless, and the run goes on (it stopped with the error, all EVs' results lost)."""
    route = sim.vehicle_route(ev_id)
    # (those it has driven through already, or is crossing, SUMO's earlier choice, were told of then)
    unservable: list[str] = []
    corridor = build_corridor(setup.network, route, unservable=unservable,
                              unservable_from=sim.route_index_ahead(ev_id))
    if unservable and on_note is not None:
        on_note(f"EV '{ev_id}' was re-routed by SUMO at {t_s:g} s onto a way with a signal greenwave cannot "
                f"serve, left to its program: {unservable[0]}")
    old = progress[ev_id]
    # (the old corridor's crossings, for its ETAs' errors; none where it passed off the road)
    crossed = {j: t for j, t in old.crossed_s.items() if j not in old.passed_off_road}
    progress[ev_id] = old.rerouted(corridor)
    for tls in corridor.tls_ids():  # (the signals of the new way are judged too: they were not)
        monitor.watch(tls, setup.network.programs[tls])
    watch.activate(ev_id, corridor, t_s, _free_flow_clock(setup, corridor) if _plans_ahead(controller) else None)
    reroute = getattr(controller, "reroute", None)
    if reroute is not None:
        reroute(ev_id, corridor, crossed)


def _plans_ahead(controller: Controller) -> bool:
    """Does the controller plan only so far ahead (greenwave), so that a run reads each EV's
    corridor in a window sliding with it? (local plans every signal on the route; the oracle
    holds the whole route green.)"""
    if not isinstance(controller, PreemptionController):
        return False
    horizon = controller.plan_horizon_s
    return horizon is not None and horizon <= LANE_WINDOW_S


def _free_flow_clock(setup: RunSetup, corridor: Corridor) -> FreeFlowClock:
    profile = build_profile(setup.network, corridor)
    return FreeFlowClock.of(profile.starts_m, profile.ends_m, profile.speeds_mps)


def inputs_digest(setup: RunSetup) -> str:
    """A fingerprint of what the simulation ran on besides the EVs and the controller: the network,
    route and additional files' contents (greenwave's own vehicle types and cross-street output
    left out, and the run's folder cut from the paths in the files it rewrote) and the SUMO
    options kept. Two runs of one scenario name with other demand, programs or network differ
    in it (``report`` compares only runs that agree)."""
    inputs = setup.inputs
    out = str(setup.out_dir.resolve())
    digest = hashlib.sha256()
    files = [("net", inputs.net_file), *(("routes", p) for p in inputs.route_files),
             *(("additional", p) for p in inputs.additional_files if not p.name.startswith("greenwave_"))]
    # (written into the XML it rewrote: '&' as '&amp;' and so on)
    forms = sorted({out.encode(), escape(out, {'"': "&quot;"}).encode()}, key=len, reverse=True)
    for role, path in files:
        if path.resolve().is_relative_to(out):  # (small: the additional files it rewrote)
            data = path.read_bytes()
            for form in forms:
                data = data.replace(form, b"")
            file_digest = hashlib.sha256(data).digest()
        else:
            h = hashlib.sha256()
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            file_digest = h.digest()
        digest.update(f"{role}:{path.name}:".encode() + file_digest)
    digest.update(json.dumps(sorted(inputs.options.items())).replace(out, "").encode())
    return digest.hexdigest()[:16]


def switched_for(ev_id: str, preemptions: Sequence[Mapping[str, Any]]) -> set[str]:
    """The signals switched for one EV: those with a preemption record of its own (a record is
    kept only for a switch). A signal switched for another EV, whose display the EV met, is not
    one of them. (The oracle keeps no records: its ``switched_for``.)"""
    return {str(r["tls"]) for r in preemptions if r["ev"] == ev_id}


def ev_summary(ev: EvPlan, p: EvProgress, trip: Trip | None, free_flow_s: float | None,
               preempted_tls: Collection[str], end_s: float) -> dict[str, Any]:
    """One EV's entry of summary.json's ``evs``: ``trip`` its tripinfo (None if it did not
    arrive), ``free_flow_s`` its free-flow time (None where not measured), ``preempted_tls`` the
    signals the controller switched for this EV, ``end_s`` when the run ended (a stop still open counts to it)."""
    tt = trip.duration_s if trip else None
    ff = free_flow_s
    return {
        "id": ev.ev_id,
        "type": ev.ev_type,
        # a vehicle of the route files (--escort: SUMO inserted it with its own vehicle type), or one
        # greenwave added (--ev, [[ev]])
        "vehicle_type": ev.vtype_id,
        "from_route_files": ev.in_routes,
        "dispatched": ev.depart_s,  # the departure asked for (SUMO may insert it later: depart)
        "depart": trip.depart_s if trip else p.depart_s,
        "arrival": trip.arrival_s if trip else None,
        "arrived": trip is not None,
        "vanished": p.vanished_s,
        "teleports": p.teleports,  # SUMO took it off the road and put it back on further on (not vanished)
        "travel_time": tt,
        "free_flow_time": ff,
        "ratio_to_free_flow": round(tt / ff, 4) if tt is not None and ff is not None and ff > 0 else None,
        "delay": round(tt - ff, 2) if tt is not None and ff is not None else None,
        "stops": len(p.stops),
        "stops_at_signals": sum(1 for st in p.stops if stop_at_signal(st)),
        "time_stopped": round(p.time_stopped_s(end_s), 2),
        "junctions": len(ev.corridor.junctions),  # (of the route driven: ``ev`` as re-routed)
        "reroutes": p.reroutes,
        "preempted": sum(1 for j in ev.corridor.junctions if j.tls_id in preempted_tls),
        "route_length_m": round(ev.corridor.length_m, 1),
        "tls": [j.tls_id for j in ev.corridor.junctions],
        # (indices of the corridor driven: the planned one's unless the EV was re-routed)
        "crossed_s": {p.corridor.junctions[i].tls_id + f"#{i}": round(s, 2) for i, s in sorted(p.crossed_s.items())},
        # (passed off the road, in a teleport: ``crossed_s`` says when it was back, or arrived)
        "passed_off_road": [p.corridor.junctions[i].tls_id + f"#{i}" for i in sorted(p.passed_off_road)],
        "stop_episodes": [
            {"start": s.start_s, "end": s.end_s, "next_junction": s.next_junction,
             "distance_to_stop_line_m": None if s.distance_to_stop_line_m is None
             else round(s.distance_to_stop_line_m, 1),
             "on_approach": s.on_approach, "at_signal": stop_at_signal(s)}
            for s in p.stops
        ],
    }


def stop_at_signal(stop: StopEpisode) -> bool:
    """Is ``stop`` one at a signal: within ``STOP_AT_SIGNAL_M`` of the next stop line, or on the
    route edge that ends at it (no junction between: in that signal's queue however far back it
    reached; DESIGN §1, the EV "never waits behind a queue held by" a signal)?"""
    dist = stop.distance_to_stop_line_m
    return dist is not None and (dist <= STOP_AT_SIGNAL_M or stop.on_approach)


def preempted_windows(preemptions: Sequence[Mapping[str, Any]], end_s: float) -> dict[str, list[tuple[float, float]]]:
    """Per signal, each preemption's (entry, back in its program) span: where
    ``collisions_preempted`` counts (to ``end_s`` for one not back by the end of the run)."""
    windows: dict[str, list[tuple[float, float]]] = {}
    for r in preemptions:
        entry, back = r["entry"], r["restored"]
        if isinstance(entry, (int, float)):
            windows.setdefault(str(r["tls"]), []).append(
                (float(entry), float(back) if isinstance(back, (int, float)) else end_s))
    return windows


def recovery_section(preemptions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """summary.json's ``recovery``: one figure per hand-back (:func:`distinct_handbacks`), from
    the exit of the last request the signal served to its program shown again (``recovery_s``),
    and to the display equal to its schedule again (``in_step``)."""
    handbacks = distinct_handbacks(preemptions)
    recoveries = [float(r["recovery_s"]) for r in handbacks if isinstance(r["recovery_s"], (int, float))]
    in_step = [float(r["in_step"]) - float(r["exit"]) for r in handbacks
               if isinstance(r["in_step"], (int, float)) and isinstance(r["exit"], (int, float))]
    # fixed-time signals that went on off their schedule (out of coordination for the rest of the run)
    off = [float(o) for r in handbacks if isinstance(o := r.get("schedule_offset_s"), (int, float)) and o != 0.0]
    return {
        "junctions": len(recoveries),
        "mean_s": round(sum(recoveries) / len(recoveries), 2) if recoveries else None,
        "max_s": max(recoveries) if recoveries else None,
        # exit to the program back in step with its schedule (fixed-time signals handed back in step)
        "in_step_junctions": len(in_step),
        "in_step_mean_s": round(sum(in_step) / len(in_step), 2) if in_step else None,
        "off_schedule_junctions": len(off),
        "off_schedule_max_s": max(off, key=abs) if off else None,
    }


def distinct_handbacks(preemptions: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One preemption record per hand-back: the one of the last request to end before the signal
    was back in its program. A signal switched for two junctions of a route (one it crosses
    twice, or two junctions it controls) or for several EVs keeps a record for each of them, and
    a record's ``exit`` is when its own request ended: the Berlin U-turn route's one 75 s
    preemption counted twice, and in the NDS city a signal held on for two more requests counted
    134 s of "recovery" from the first one's end to the hand-back 133 s later, which took 1 s.
    Records of a signal never back in its program (no ``restored``) count apart."""
    last: dict[tuple[Any, Any], Mapping[str, Any]] = {}
    for r in preemptions:
        key = (r.get("tls"), r.get("restored")) if r.get("restored") is not None else (r.get("tls"), id(r))
        kept = last.get(key)
        if kept is None or (r.get("exit") or -math.inf) > (kept.get("exit") or -math.inf):
            last[key] = r
    return list(last.values())


def _eta_section(controller: Controller, progress: Mapping[str, EvProgress]) -> dict[str, Any]:
    log = getattr(controller, "eta_log", None)
    if log is None:
        empty = {"n": 0, "abs_error_p50": None, "abs_error_p90": None}
        return {
            **empty,
            "by_horizon": {h: dict(empty) for h in ("10", "30", "60")},
            "at_entry": dict(empty),
            "note": f"controller '{controller.name}' makes no predictions",
        }
    # (a junction passed off the road, in a teleport, has no crossing time to score against)
    actual = {(ev_id, j): t for ev_id, p in progress.items() for j, t in p.crossed_s.items()
              if j not in p.passed_off_road}
    result: dict[str, Any] = log.evaluate(actual)
    return result
