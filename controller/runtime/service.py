"""The live service: one thread owns the simulation and the controller; everyone else queues
commands to it and reads what it publishes.

- ``SimService.start()`` opens SUMO in the service's own thread (libsumo is used by one thread
  only) and steps it: at ``speed`` simulated seconds per wall second, or as fast as it can when
  ``speed`` is None. It keeps stepping past the scenario's end (the background demand ends
  there; escorts can still be dispatched) until ``stop()``, or until ``end_s`` when given (then
  it stays up, serving its last state, and refuses new escorts).
- Commands (:class:`Dispatch`, :class:`Position`, :class:`Cancel`) go through a queue with a
  :class:`~concurrent.futures.Future` for the answer; they run between two ticks, so the API
  never touches SUMO. Dispatches and cancels are answered after the next tick, with the
  escort's ETAs and stages from it.
- Each tick publishes an immutable :class:`ServiceState` (escorts, signals) under a lock,
  appends events to the :class:`~controller.runtime.events.EventBus` and preemption decisions to
  the :class:`~controller.runtime.audit.AuditLog`.
- On ``stop()``, and on any failure, every preempted junction is handed back: through the
  planner's safe transitions while the simulation still runs, then by the adapter restoring
  every program it switched.
"""

from __future__ import annotations

import itertools
import logging
import math
import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from controller.core.corridor import Corridor, build_corridor, escortable_route
from controller.core.eta import EvDynamics
from controller.core.geometry import match_to_route, project
from controller.core.greenwave import NOT_INSERTED, PRIORITY, VANISHED, EvSetup, PreemptionController
from controller.core.network import Network
from controller.core.progress import EvProgress
from controller.core.routing import reachable_from, validate_route
from controller.core.safety import SafetyConfig, SafetyMonitor
from controller.core.snapshot import Snapshot, VehicleState
from controller.errors import CorridorError, GreenwaveError, RequestError, RouteError, ScenarioError, SimulationError
from controller.runtime.audit import AuditLog
from controller.runtime.events import EventBus
from controller.runtime.metrics import Metrics
from controller.runtime.run import DRAIN_LIMIT_S, check_attached, controller_config, route_changed, with_step
from controller.runtime.service_model import (
    Cancel,
    Command,
    Dispatch,
    EscortState,
    EscortView,
    JunctionView,
    Place,
    Position,
    PositionView,
    Reroute,
    ServiceState,
    SignalView,
    Tracking,
)
from controller.runtime.setup import (
    EV_VTYPE_PREFIX,
    SUMO_ERROR_LOG,
    RouteFileVehicle,
    RunSetup,
    check_running_programs,
    find_route_file_vehicle,
    id_in_routes,
    program_sources,
    rejection_hint,
    route_file_ids,
    setup_notes,
    signal_off_notes,
    single_track_notes,
    sumo_args,
)
from controller.runtime.watch import CorridorWatch
from controller.sim.adapter import SUMO_ERRORS, Backend, SumoAdapter
from controller.sim.geo import is_geo_referenced

log = logging.getLogger("greenwave.service")

MAX_FROM_ROAD_M = 100.0  # a lon/lat origin or destination farther from any road is refused
NEAR_ROAD_M = 15.0  # a lon/lat place may stand for an edge this much farther than the nearest (a route there)
MAX_FROM_ROUTE_M = 50.0  # a position fix farther from the escort's route is refused
# A fix that implies a faster move along the route since any earlier one than this (plus
# MAX_FROM_ROUTE_M for the two fixes' errors), or a move back by more than MAX_FROM_ROUTE_M from
# any earlier one, is refused: one bad or misattributed fix, or a chain of them each within the
# error of the one before (several in one second), must not mark junctions crossed and release
# them ahead of a vehicle that is not there yet.
MAX_FIX_SPEED_MPS = 50.0  # 180 km/h
ARRIVED_WITHIN_M = 5.0  # an externally tracked escort this close to its route's end has arrived
DEAD_RECKONING_S = 30.0  # an external fix is carried forward at its speed for at most this long
# (and never past the next stop line: see dead_reckoned_m)
_SHORT_OF_M = 0.5  # a dead-reckoned position stops this short of a stop line or of arriving
FIX_BEFORE_DISPATCH_S = 10.0  # a fix may be dated this long before its escort's dispatch (then counts from it)
FIX_LOST_S = 120.0  # an externally tracked escort without a new fix this long is cancelled (signals back)
ETA_EVENT_EVERY_S = 5.0  # ETA update events per escort, in simulated seconds
ANSWER_TIMEOUT_S = 15.0
DEFAULT_ID_PREFIX = "escort-"  # an escort dispatched without an id is escort-<n>
TICKS_KEPT = 100_000  # recent tick timings kept for their quantiles


class StartStopped(Exception):
    """:meth:`SimService.start` gave up: a stop was asked for before the simulation served."""


@dataclass
class _Escort:
    """An escort as the service thread tracks it (mutable, service thread only)."""

    id: str
    key: str  # the EV id of the controller and of the progress tracker: the SUMO vehicle id
    ev_type: str
    priority: int
    corridor: Corridor
    dispatched_s: float
    tracking: Tracking
    state: EscortState = "dispatched"
    reason: str = ""
    cancelled_s: float | None = None
    fix: VehicleState | None = None  # the last external position fix, as a vehicle state
    fix_t_s: float | None = None  # when it counts from (not before the dispatch)
    fix_given_t_s: float | None = None  # its timestamp as given (the next fix's may not be older)
    # over every fix accepted: the least of (route position - MAX_FIX_SPEED_MPS x timestamp) and
    # the farthest route position (a new fix is checked against all of them at once)
    fix_reach_m: float = math.inf
    fix_farthest_m: float = -math.inf
    shapes: tuple[tuple[tuple[float, float], ...], ...] | None = None
    last_eta_event_s: float = -1e9
    view: EscortView | None = None
    # ended, and its view no longer changes (every junction idle, the same two ticks running):
    # kept as it is instead of rebuilt every tick (460 ended escorts made an idle tick 8-10 ms)
    final: bool = False
    joined: bool = False  # escorts a vehicle already running (vehicle_id): it may have crossed junctions before
    owns_vehicle: bool = False  # greenwave added its vehicle to SUMO (tracking simulation, no vehicle_id)
    # a vehicle of the route files dispatched before it departs (vehicle_id): its departure (no ETA
    # before it has departed), and whether SUMO was seen to have loaded it then
    departs_s: float | None = None
    load_checked: bool = False
    first_seen_s: float | None = None  # the tick its progress first had a position

    def eta_due(self, t_s: float) -> bool:
        return t_s - self.last_eta_event_s >= ETA_EVENT_EVERY_S


MAX_SIGNAL_PASSES = 200  # signalized crossings one escort's route may have (Hangzhou's 7 km: 21)


def _check_signal_passes(corridor: Corridor, what: str, from_route_index: int = 0) -> None:
    """Refuse a route crossing more signals than :data:`MAX_SIGNAL_PASSES` from its edge
    ``from_route_index`` on (a route looping 499 times round a block, 2,000 crossings, took every
    tick from 6 to 160 ms, over the budget). (SUMO's own re-routes are not refused: the vehicle
    drives that way whatever greenwave says.)"""
    n = sum(1 for j in corridor.junctions if j.route_index >= from_route_index)
    if n > MAX_SIGNAL_PASSES:
        raise RequestError(f"{what}: crosses signals {n} times; an escort's route may cross at most "
                           f"{MAX_SIGNAL_PASSES} (a route round and round a block?)", 422)


def _locate(corridor: Corridor, position_m: float) -> tuple[int, float]:
    """(route index, position on that edge) of a position along the route; in a crossing, the
    end of the edge before it."""
    offsets = corridor.edge_offsets_m
    i = max(k for k in range(len(offsets)) if offsets[k] <= position_m + 1e-9) if position_m > 0 else 0
    edge_end = corridor.length_m if i == len(offsets) - 1 else offsets[i + 1]
    return i, max(0.0, min(position_m, edge_end) - offsets[i])


def dead_reckoned_m(corridor: Corridor, fix_m: float, speed_mps: float, since_s: float,
                    confirmed_m: float | None = None) -> float:
    """Where along the route an external fix at ``fix_m`` is carried after ``since_s`` at its
    speed (for at most DEAD_RECKONING_S): never past the next stop line or to the route's end,
    which only a fix may show crossed or reached. A guess that marked a junction crossed would
    release its signal for good, red for a vehicle still coming to it.

    ``confirmed_m``: how far the fixes show the vehicle surely is (the farthest fix less the
    error a fix may have, MAX_FROM_ROUTE_M; None: ``fix_m``). A stop line beyond it is not
    crossed yet, even where a fix lies past it: the vehicle is held just short of it (a fix 5 m
    past a stop line, then one 45 m back, which the plausibility check must accept as GPS
    noise, released the signal with the vehicle still before it)."""
    surely = fix_m if confirmed_m is None else min(fix_m, confirmed_m)
    limit = corridor.length_m - ARRIVED_WITHIN_M - _SHORT_OF_M
    for j in corridor.junctions:
        if j.distance_m > surely:
            limit = min(limit, j.distance_m - _SHORT_OF_M)
            break
    if fix_m >= limit:  # (a fix past a stop line not yet confirmed, or at the end: held there)
        return limit if confirmed_m is not None and limit < fix_m else fix_m
    ahead = speed_mps * min(max(since_s, 0.0), DEAD_RECKONING_S)
    return min(fix_m + max(ahead, 0.0), limit)


_FORWARD = ("idle", "armed", "entry", "dwell")


def stage_steps(before: str, stage: str) -> list[tuple[str, str]]:
    """The (previous, stage) changes a signal went through in one tick, from ``before`` to
    ``stage``: a tick can arm a signal, start its entry and, where the approach shows the target
    already, reach dwell; each step is reported, so an entry is never missing from the record."""
    if before in _FORWARD and stage in _FORWARD:
        a, b = _FORWARD.index(before), _FORWARD.index(stage)
        if b > a:
            return list(itertools.pairwise(_FORWARD[a:b + 1]))
    if before == "exit" and stage == "dwell":  # (an exit taken back where the target still shows)
        return [("exit", "entry"), ("entry", "dwell")]
    return [(before, stage)]


@dataclass(frozen=True)
class _Place:
    """A dispatch's origin or destination: its edge, and for a lon/lat its point (x, y) and
    distance to that edge."""

    edge: str
    point: tuple[float, float, float] | None = None


def _own_stage(stage: str, served: tuple[str, ...], key: str) -> str:
    """An EV's own stage at a signal held for it: the signal's, or armed while the signal is
    switched (entry, dwell) for others first."""
    return "armed" if stage in ("entry", "dwell") and key not in served else stage


class SimService:
    def __init__(
        self,
        setup: RunSetup,
        *,
        audit: AuditLog,
        events: EventBus | None = None,
        metrics: Metrics | None = None,
        speed: float | None = None,
        end_s: float | None = None,
        backend: Backend = "libsumo",
        gui: bool = False,
        attach: tuple[str, int] | None = None,
        stall_after_s: float = 30.0,
    ) -> None:
        if speed is not None and speed <= 0:
            raise GreenwaveError(f"--speed must be above 0, not {speed:g}")
        self.setup = setup
        self.network: Network = setup.network
        self.audit = audit
        # (microseconds: a run producing more than one event per millisecond, 800 dispatches at once,
        # ended above the next run's first id in milliseconds, and a reconnect missed its events)
        self.events = events or EventBus(first_id=int(time.time() * 1_000_000))
        self.metrics = metrics or Metrics()
        self.speed = speed
        self.end_s = end_s
        self.backend: Backend = "traci" if gui or attach is not None else backend
        self.gui = gui
        self.attach = attach  # (host, port) of a SUMO the user started, driven over TraCI
        self.sumo_ended = False  # the simulation failed as SUMO ended: no signal was left to hand back
        # the configuration's options not used; where an attached SUMO simulates otherwise than
        # greenwave's own would
        self.notes: list[str] = []
        self.geo = is_geo_referenced(setup.inputs.net_file)
        step_ms = setup.step_length_s * 1000.0
        self.budget_ms = step_ms / speed if speed is not None else step_ms
        self.tick_ms: deque[float] = deque(maxlen=TICKS_KEPT)  # wall time of the recent ticks
        self.control_ms: deque[float] = deque(maxlen=TICKS_KEPT)  # the same without SUMO's step
        self._commands: queue.Queue[tuple[Command, Future[Any]]] = queue.Queue()
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._state = ServiceState(t_s=setup.begin_s, ticks=0, running=False, ended=False, failed=None)
        self._looped_at: float | None = None  # (monotonic) the simulation thread's last pass between ticks
        # /healthz says "stalled" once a tick has not ended for this long (and ten paced steps): a
        # stopped attached SUMO left the service answering "ok", its time standing still
        self.stall_after_s = stall_after_s
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._escorts: dict[str, _Escort] = {}
        self._by_key: dict[str, str] = {}  # controller EV id -> escort id
        self._no_fix_yet: set[str] = set()  # the keys of externally tracked escorts without a fix so far
        self._route_check: set[str] = set()  # escorts whose SUMO route is new (routes_new), to compare
        self._progress: dict[str, EvProgress] = {}
        self._after_tick: list[tuple[Future[Any], str]] = []
        # signal -> (stage, holders, served) as last tracked; those the last tick changed, before it
        self._stages: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {}
        self._refused_seen: set[tuple[str, str]] = set()  # (signal, target) refused, reported once each
        self._refused_total = 0  # planner ticks that refused a target (the sum of its counts)
        self._sim: SumoAdapter | None = None
        self._starting: SumoAdapter | None = None  # (abort() while start() waits for SUMO)
        self._controller: PreemptionController | None = None
        # what is read from SUMO: each escort's corridor until it is done, its signals until
        # KEEP_AFTER_S after they are back in their programs (as a run reads them)
        self._reading: CorridorWatch | None = None
        self._monitor = SafetyMonitor({}, SafetyConfig(step_s=setup.step_length_s))
        # default ids go on from the highest in the audit log, kept across restarts: one escort-1 in it
        self._seq = audit.highest_number(DEFAULT_ID_PREFIX)
        self._route_file_ids: dict[str, tuple[str, Path]] | None = None
        self._edges_at_node: dict[str, list[str]] | None = None  # (read on the first lon/lat dispatch that needs it)
        self._ended = False

    # -- the API side ------------------------------------------------------------------------------
    @property
    def answer_timeout_s(self) -> float:
        """How long the API waits for a command's answer: it comes after the next tick, which
        at a slow ``--speed`` lasts long (at 0.02 a 1 s step is 50 s of wall time)."""
        return ANSWER_TIMEOUT_S + 2.0 * self.budget_ms / 1000.0

    @property
    def state(self) -> ServiceState:
        with self._lock:
            return self._state

    def submit(self, command: Command) -> Future[Any]:
        future: Future[Any] = Future()
        state = self.state
        if not state.running or self._stop.is_set():
            future.set_exception(RequestError(f"the simulation is not running ({state.failed or 'stopped'})", 503))
            return future
        self._commands.put((command, future))
        return future

    def start(self, timeout_s: float = 300.0, stop_asked: Callable[[], bool] = lambda: False) -> None:
        """Start the simulation thread and wait until it serves (or failed). ``stop_asked``: polled
        while waiting; once true, the start is given up (an attached SUMO's first answer no longer
        waited for) and :class:`StartStopped` raised."""
        self._thread = threading.Thread(target=self._main, name="greenwave-sim", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.1):
            if stop_asked():
                self._stop.set()
                starting = self._starting
                if starting is not None:
                    starting.abort()
                self.stop()
                raise StartStopped("stopped before the simulation started; no signal was switched")
            if time.monotonic() > deadline:
                raise SimulationError("the simulation did not start in time")
        failed = self.state.failed
        if failed is not None:
            self.stop()
            raise SimulationError(failed)

    def stop(self, timeout_s: float = 120.0) -> None:
        """Stop stepping, hand every junction back, close SUMO. Safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def stopped(self) -> bool:
        """A stop was asked for (the hand-back may still be under way)."""
        return self._stop.is_set()

    @property
    def finished(self) -> bool:
        """The service thread has ended: every junction handed back, SUMO closed, no more events."""
        return self._thread is not None and not self._thread.is_alive()

    def wait(self) -> None:
        """Until the service thread has ended (stopped or failed)."""
        if self._thread is not None:
            self._thread.join()

    # -- the service thread ------------------------------------------------------------------------
    def _main(self) -> None:
        setup = self.setup
        try:
            self._starting = SumoAdapter(
                sumo_args(setup) if self.attach is None else [], backend=self.backend, gui=self.gui,
                attach=self.attach, error_log=setup.out_dir / SUMO_ERROR_LOG if self.attach is None else None,
                explain=lambda detail: rejection_hint(detail, setup.inputs, setup.source))
            with self._starting as sim:
                self._sim = sim
                programs = self.network.programs
                self.notes = setup_notes(setup, attached=self.attach is not None, ours="the audit log (by default)",
                                         service=True)
                if self.attach is not None:  # (its network first; every type an escort may have)
                    self.notes += check_attached(sim, setup, ev_types=PRIORITY, departs=False)
                    theirs, where = sim.end_time_s(), f"the SUMO at {self.attach[0]}:{self.attach[1]}"
                    if theirs is not None and self.end_s is None and theirs > sim.time_s + 1e-9:
                        self.end_s = theirs  # (stepped on, it ran past its end: SUMO ends it with its last client)
                        self.notes.append(f"attached: {where} ends at {theirs:g} s (its end option): the service "
                                          "steps it until then")
                    elif theirs is not None and self.end_s is not None and abs(theirs - self.end_s) > 1e-9:
                        self.notes.append(f"attached: {where} ends at {theirs:g} s (its end option); the service "
                                          f"steps it to {self.end_s:g} s (--end)")
                    if self.end_s is not None and self.end_s <= sim.time_s + 1e-9:
                        raise ScenarioError(f"--end {self.end_s:g} s is not after the attached SUMO's time "
                                            f"({sim.time_s:g} s)")
                check_running_programs(programs, sim.running_programs(programs), program_sources(setup.inputs),
                                       attached=None if self.attach is None else f"{self.attach[0]}:{self.attach[1]}")
                # no ETA log: the service never scores its predictions, and it would grow for as long as it runs
                config = with_step(controller_config(setup.controller), setup.step_length_s)
                self._controller = PreemptionController(self.network, [], config, record_etas=False)
                # (the planner first: it refuses a signal it still controls, and the monitor's history
                # must not be wiped then)
                self._reading = CorridorWatch(sim, [self._controller.forget_signal, self._monitor.pause])
                self._publish(sim.time_s, running=True)
                attached: dict[str, Any] = ({"attached": f"{self.attach[0]}:{self.attach[1]}", "notes": self.notes}
                                            if self.attach is not None else {"notes": self.notes} if self.notes
                                            else {})
                self.audit.record("service", t_s=sim.time_s, event="started", scenario=setup.name,
                                  backend=self.backend, sumo_version=sim.sumo_version(), **attached)
                self._ready.set()
                self._loop(sim)
                self._drain(sim)
                restored = sim.restore_all()
                if restored:
                    self.audit.record("handback", t_s=sim.time_s, forced=True, tls=restored)
            if sim.ended:  # (gone after --end, while the service no longer stepped: killed, say)
                raise SimulationError(f"SUMO was gone before the service stopped (its exit code {sim.exit_code}): "
                                      "its outputs are cut off")
        except GreenwaveError as e:
            if self._stop.is_set() and not self._ready.is_set():  # (start() gave up: a stop, not a failure)
                return
            self.sumo_ended = self._sim is not None and self._sim.ended
            self._fail(str(e))
        except Exception as e:  # the thread's boundary: log and record it (the adapter has handed back)
            log.exception("simulation thread failed")
            self._fail(f"internal error in the simulation thread: {type(e).__name__}")
        finally:
            self._sim = self._starting = None
            with self._lock:
                self._state = replace(self._state, running=False, preempted=())
            self._answer_pending(RequestError("the simulation stopped", 503))
            self.audit.record("service", t_s=self.state.t_s, event="stopped", failed=self.state.failed)
            self._ready.set()

    def _fail(self, message: str) -> None:
        """The simulation thread failed. The adapter has restored every signal it switched to its
        program on the way out (where SUMO itself died, the signals went with it): the escorts under
        way end, and the signals that were preempted are reported handed back, so that a client
        following the events is not left with escorts and preemptions that will never end."""
        with self._lock:
            preempted = self._state.preempted
            self._state = replace(self._state, running=False, failed=message)
        t_s = self._state.t_s
        reason = f"the simulation failed: {message}"
        for esc in self._escorts.values():
            if esc.state in ("dispatched", "en_route"):
                self._cancelled(esc, t_s, reason, shared=True)
        try:  # what GET /v1/emergencies shows from now on
            views = {esc.id: self._escort_view(esc, t_s, None) for esc in self._escorts.values()}
        except Exception:  # (the failure may have left the controller unreadable: the last views, ended)
            log.exception("escort views after the failure")
            views = {esc.id: _ended_view(esc.view, esc) for esc in self._escorts.values() if esc.view is not None}
        with self._lock:
            self._state = replace(self._state, escorts=views)
        # (the same fields as any hand-back's, and ``forced``; ``restored``: the adapter set the
        # signal back to its program, or SUMO itself was gone and the signals with it)
        restored = not self.sumo_ended
        for tls in preempted:
            stage, holders, _ = self._stages.get(tls, ("idle", (), ()))
            escorts = [self._by_key.get(k, k) for k in holders]
            self.events.publish("handback", tls_id=tls, t_s=t_s, stage="idle", previous=stage, escorts=escorts,
                                reasons=dict.fromkeys(escorts, reason), forced=True, restored=restored)
        for tls, (stage, holders, _) in sorted(self._stages.items()):  # (armed only: nothing to hand back)
            if stage == "armed" and tls not in preempted:
                escorts = [self._by_key.get(k, k) for k in holders]
                self.events.publish("disarmed", tls_id=tls, t_s=t_s, stage="idle", previous="armed",
                                    escorts=escorts, reasons=dict.fromkeys(escorts, reason), forced=True)
        if preempted:
            self.audit.record("handback", t_s=t_s, forced=True, restored=restored, tls=list(preempted))
        self.events.publish("error", t_s=t_s, detail=message)
        self.audit.record("service", t_s=t_s, event="failed", detail=message)

    def _answer_after_ticks(self, error: GreenwaveError) -> None:
        """Answer the dispatches and cancels carried out that wait for a tick no longer coming
        (the service stopping, or the simulation at its end) with the escort as it is now (the
        stop or the end cancelled it: its view says so; a 503 told the client it was not done,
        while the audit log had it); one whose escort is not there with ``error``."""
        views = self.state.escorts
        for future, escort_id in self._after_tick:
            if not future.done():
                if escort_id in views:
                    future.set_result(views[escort_id])
                else:
                    future.set_exception(error)
        self._after_tick.clear()

    def _answer_pending(self, error: GreenwaveError) -> None:
        """Answer every request still waiting (:meth:`_answer_after_ticks`; the queued ones with
        ``error``)."""
        self._answer_after_ticks(error)
        while True:
            try:
                _, future = self._commands.get_nowait()
            except queue.Empty:
                break
            future.set_exception(error)

    def _loop(self, sim: SumoAdapter) -> None:
        step_wall_s = self.setup.step_length_s / self.speed if self.speed is not None else 0.0
        next_wall = time.perf_counter()
        while not self._stop.is_set():
            self._looped_at = time.monotonic()
            self._run_commands(sim)
            if self._ended or (self.end_s is not None and sim.time_s >= self.end_s - 1e-9):
                if not self._ended:
                    # no more ticks after this: the escorts under way are cancelled and their
                    # junctions handed back now (SUMO runs on for the few seconds that takes)
                    self._drain(sim, "simulation ended")
                    self._ended = True
                    self._publish(sim.time_s, running=True)
                    # (those carried out on the last step waited for a tick that will not come)
                    self._answer_after_ticks(RequestError("the simulation ended", 409))
                    self.events.publish("ended", t_s=sim.time_s)
                self._wait_for_commands(sim, time.perf_counter() + 0.2)
                continue
            t0 = time.perf_counter()
            self._tick(sim)
            ms = (time.perf_counter() - t0) * 1000.0
            with self._stats_lock:
                self.tick_ms.append(ms)
            self.metrics.tick(ms, self.budget_ms if self.speed is not None else None)
            if self.speed is not None:
                next_wall += step_wall_s
                now = time.perf_counter()
                if next_wall < now - 1.0:  # far behind (a slow step): do not race to catch up
                    next_wall = now
                self._wait_for_commands(sim, next_wall)

    def _wait_for_commands(self, sim: SumoAdapter, until: float) -> None:
        while not self._stop.is_set():
            remaining = until - time.perf_counter()
            if remaining <= 0:
                return
            try:
                command, future = self._commands.get(timeout=min(remaining, 0.1))
            except queue.Empty:
                continue
            self._execute(sim, command, future)

    def _run_commands(self, sim: SumoAdapter) -> None:
        while True:
            try:
                command, future = self._commands.get_nowait()
            except queue.Empty:
                return
            self._execute(sim, command, future)

    def _execute(self, sim: SumoAdapter, command: Command, future: Future[Any]) -> None:
        try:
            if isinstance(command, Dispatch):
                escort_id = self._dispatch(sim, command)
                self._answer_after_tick(future, escort_id)
            elif isinstance(command, Cancel):
                self._answer_after_tick(future, self._cancel(sim, command))
            elif isinstance(command, Reroute):
                self._answer_after_tick(future, self._new_route(sim, command))
            else:
                future.set_result(self._position(sim, command))
        except GreenwaveError as e:
            future.set_exception(e)
        except SUMO_ERRORS as e:
            future.set_exception(RequestError(f"SUMO refused the request: {e}"))
        except Exception as e:  # a bug in one command must not stop the simulation or leave it preempted
            log.exception("command %r failed", command)
            future.set_exception(RequestError(f"internal error ({type(e).__name__}) in the request", 500))

    def _answer_after_tick(self, future: Future[Any], escort_id: str) -> None:
        if self._ended:  # no more ticks: answer with the state as it is
            self._publish(self._sim.time_s if self._sim else 0.0, running=True)
            future.set_result(self.state.escorts[escort_id])
        else:
            self._after_tick.append((future, escort_id))

    # -- one tick ----------------------------------------------------------------------------------
    def _tick(self, sim: SumoAdapter) -> None:
        assert self._controller is not None
        snap = sim.step()
        t0 = time.perf_counter()
        t = snap.t_s
        self._monitor.observe(t, {s.tls_id: (s.state, s.program_id) for s in snap.signals.values()})
        vehicles = dict(snap.vehicles)
        arrived = set(snap.arrived)
        for esc in self._escorts.values():
            if esc.tracking != "external":
                continue
            arrived.discard(esc.key)
            vehicles.pop(esc.key, None)
            fix = self._dead_reckoned(esc, t)
            if fix is not None:
                vehicles[esc.key] = fix
                # (the fix itself: its carried position stays short of a stop line not yet confirmed)
                if esc.fix is not None and esc.fix.odometer_m >= esc.corridor.length_m - ARRIVED_WITHIN_M:
                    arrived.add(esc.key)
        snap = replace(snap, vehicles=vehicles, arrived=tuple(arrived))
        for key, p in self._progress.items():
            esc = self._escorts[self._by_key[key]]
            if esc.state == "cancelled":
                continue  # its view keeps what it had when cancelled (no crossings or arrival after that)
            vehicle = vehicles.get(key)
            if esc.tracking == "simulation" and route_changed(sim, key, vehicle, p, self._route_check):
                try:
                    self._reroute(sim, key, t)
                except GreenwaveError as e:  # (a way greenwave cannot read, an unknown edge: that escort ends)
                    reason = f"re-routed by SUMO onto a way greenwave cannot escort: {e}"
                    self._controller.cancel(key, reason)
                    self._cancelled(esc, t, reason)
                    self._release(esc, t)
                    continue
                p = self._progress[key]
            if (esc.departs_s is not None and not esc.load_checked
                    and t >= esc.departs_s + self.setup.step_length_s - 1e-9):
                # (a vehicle of the route files dispatched before its departure: once, loaded or not)
                if p.depart_s is None and not sim.awaited_in_simulation(key):
                    p.not_inserted(t)
                esc.load_checked = True
            # (an external escort's arrival is its fix's, at its route's end: not SUMO's, which a
            # vehicle last seen far from the end may be listed in when it was removed on the way)
            p.update(t, vehicle, arrived=key in arrived, sure_arrival=esc.tracking == "external",
                     teleporting=key in snap.teleporting, teleport_started=key in snap.teleport_started)
            if esc.first_seen_s is None and p.position_m is not None:
                esc.first_seen_s = t
        # an externally tracked escort plans nothing before its first fix: where it is is not known
        # (planned from its route's start at rest, its ETAs slid a second a tick and every signal
        # of its route was held for it, until the 120 s without a position cancelled it)
        waiting = self._no_fix_yet
        progress = {k: p for k, p in self._progress.items() if k not in waiting} if waiting else self._progress
        commands = self._controller.tick(snap, progress)
        # the signals commanded are shown as they are after the commands, like their stage
        now: dict[str, tuple[str, str, int]] = {}
        if commands:
            sim.apply(commands)
            now = sim.signals_now({c.tls_id for c in commands})
        # (an escort's own events first: its arrival or cancel (vanished) comes before the exits and
        # hand-backs it causes on this tick, as a cancel by request does)
        self._track_escorts(t)
        self._track_stages(t)
        self._track_refusals(t)
        self._track_lost_fixes(t)
        assert self._reading is not None
        self._reading.tick(t, sim.switched)
        self._publish(t, running=True, snap=snap, now=now)
        for future, escort_id in self._after_tick:
            if not future.done():
                future.set_result(self.state.escorts[escort_id])
        self._after_tick.clear()
        with self._stats_lock:
            self.control_ms.append((time.perf_counter() - t0) * 1000.0)

    def stalled_s(self) -> float | None:
        """How long the simulation thread has been inside one tick (a SUMO step that does not
        end: an attached SUMO stopped, or stuck), where that is more than ``stall_after_s`` and
        ten paced steps; else None."""
        looped = self._looped_at
        if looped is None or self.finished:
            return None
        age = time.monotonic() - looped
        step_wall_s = self.setup.step_length_s / self.speed if self.speed is not None else 0.0
        return age if age > max(self.stall_after_s, 10.0 * step_wall_s) else None

    def tick_stats(self, last: int = 1000) -> dict[str, float | int | None]:
        """Quantiles of the last ``last`` ticks' wall time (whole tick, and without SUMO's step), in ms."""
        def q(values: list[float]) -> tuple[float | None, float | None, float | None]:
            if len(values) < 2:
                return (values[0], values[0], values[0]) if values else (None, None, None)
            cuts = statistics.quantiles(values, n=100, method="inclusive")
            return round(cuts[49], 3), round(cuts[98], 3), round(max(values), 3)

        with self._stats_lock:
            ticks = list(self.tick_ms)[-last:]
            control = list(self.control_ms)[-last:]
        t50, t99, tmax = q(ticks)
        c50, c99, cmax = q(control)
        return {"n": len(ticks), "budget_ms": round(self.budget_ms, 3),
                "over_budget": sum(1 for x in ticks if x > self.budget_ms),
                "tick_ms_p50": t50, "tick_ms_p99": t99, "tick_ms_max": tmax,
                "control_ms_p50": c50, "control_ms_p99": c99, "control_ms_max": cmax}

    def _dead_reckoned(self, esc: _Escort, t_s: float) -> VehicleState | None:
        fix = esc.fix
        if fix is None or esc.fix_t_s is None:
            return None
        since = t_s - esc.fix_t_s
        position = dead_reckoned_m(esc.corridor, fix.odometer_m, fix.speed_mps, since,
                                   confirmed_m=esc.fix_farthest_m - MAX_FROM_ROUTE_M)
        # carried on at the fix's speed while it is; held (at a stop line not shown crossed, or
        # after DEAD_RECKONING_S) it stands: the stall release can then let the signals further on
        # go (at 12 m/s frozen short of a stop line it held them until the 120 s without a fix)
        carried = min(max(since, 0.0), DEAD_RECKONING_S) * fix.speed_mps
        moving = since < DEAD_RECKONING_S and position >= fix.odometer_m + carried - 1e-6
        index, lane_pos = _locate(esc.corridor, position)
        edge = esc.corridor.route[index]
        return VehicleState(esc.key, edge, f"{edge}_0", lane_pos, fix.speed_mps if moving else 0.0, index, position)

    def _reroute(self, sim: SumoAdapter, key: str, t_s: float, *, requested: bool = False) -> None:
        """The escort's vehicle has another route in SUMO (a rerouter, another client, or
        ``requested`` through the API): its new corridor. A signal on it greenwave cannot serve
        (a movement no phase shows green; never on a requested route, refused before) is left to
        its program, as ``greenwave run`` does: the vehicle drives that way regardless."""
        route = sim.vehicle_route(key)
        # (those it has driven through already, or is crossing, SUMO's earlier choice, were told of then)
        unservable: list[str] = []
        corridor = build_corridor(self.network, route, unservable=unservable,
                                  unservable_from=sim.route_index_ahead(key))
        self._rerouted(key, corridor, t_s, requested=requested, unservable=unservable)

    def _rerouted(self, key: str, corridor: Corridor, t_s: float, *, requested: bool,
                  unservable: Sequence[str] = ()) -> None:
        """The escort goes on along ``corridor`` (the edges it has driven the same): the signals
        it no longer needs are handed back at once (``re-routed``), the new ones planned;
        ``unservable``: why signals on its way are left to their programs."""
        assert self._controller is not None
        self._progress[key] = self._progress[key].rerouted(corridor)
        self._watch(key, corridor, t_s)
        self._controller.reroute(key, corridor)
        esc = self._escorts[self._by_key[key]]
        esc.corridor = corridor
        esc.shapes = None
        left = [*unservable, *single_track_notes(esc.id, corridor), *signal_off_notes(esc.id, corridor)]
        detail: dict[str, Any] = {"route": list(corridor.route), "tls": list(corridor.tls_ids()),
                                  "requested": requested, **({"left_to_program": left} if left else {})}
        self.events.publish("reroute", escort=esc.id, t_s=t_s, **detail)
        self.audit.record("reroute", t_s=t_s, escort_id=esc.id, **detail)

    def _watch(self, key: str, corridor: Corridor, t_s: float) -> None:
        """Read an escort's corridor (again after a re-route: the old one is released)."""
        assert self._reading is not None
        self._reading.activate(key, corridor, t_s)
        for tls in corridor.tls_ids():
            self._monitor.watch(tls, self.network.programs[tls])

    def _track_stages(self, t_s: float) -> None:
        """Events and audit rows for every change of a signal's preemption stage, and of the
        escorts it is held for. A switched signal's stage events name the escorts its state
        serves; an escort waiting for it (armed: the signal serves another first) is not named."""
        assert self._controller is not None
        planner = self._controller.planner
        for tls in planner.junctions:
            stage, holders, served = planner.stage(tls), planner.holders(tls), planner.served(tls)
            before, before_holders, before_served = self._stages.get(tls, ("idle", (), ()))
            if (stage, holders, served) == (before, before_holders, before_served):
                continue
            self._stages[tls] = (stage, holders, served)
            left = [self._by_key.get(k, k) for k in before_holders if k not in holders]
            if left and holders and stage != "idle":
                # escorts the signal is no longer held for (crossed, cancelled), while it stays held
                # for others: their stream would otherwise end at the stage they had
                held_for = [self._by_key.get(k, k) for k in holders]
                why = self._released_why([k for k in before_holders if k not in holders], tls)
                self.events.publish("released", tls_id=tls, t_s=t_s, stage=stage, escorts=left, held_for=held_for,
                                    **why)
                self.audit.record("decision", t_s=t_s, tls_id=tls, escort_id=left[0], stage=stage, previous=before,
                                  escorts=left, released=True, held_for=held_for, **why)
            # an escort's own stage there: the signal's, or armed while it serves others first
            own = {k: _own_stage(stage, served, k) for k in holders}
            own_before = {k: _own_stage(before, before_served, k) for k in before_holders}
            held_for = [self._by_key.get(k, k) for k in served]
            waiting = [k for k in holders
                       if stage in ("entry", "dwell") and own[k] == "armed" != own_before.get(k, "idle")]
            for k in waiting:
                # it joined a signal switched for others, or one serving it now serves another first
                self._joined(tls, t_s, "armed", own_before.get(k, "idle"), [self._by_key.get(k, k)],
                             held_for=held_for, joined=k not in before_holders)
            if stage == before:
                # an escort joined a signal already armed or switched for others (or waited for it
                # and is served now): that stage's event for it alone (those that held it had
                # theirs), ``previous`` its own stage before
                groups: dict[tuple[str, bool], list[str]] = {}
                for k in holders:
                    if own[k] == stage != own_before.get(k, "idle") and stage != "idle":
                        groups.setdefault((own_before.get(k, "idle"), k not in before_holders), []).append(
                            self._by_key.get(k, k))
                for (previous, new), names in groups.items():
                    self._joined(tls, t_s, stage, previous, names, joined=new)
                continue
            # the escorts named: those a switched state serves; at the hand-back every escort it
            # was held for (one waiting for it too)
            if stage == "idle":
                # (an escort cancelled during the exit is no longer a holder: the EVs it was
                # switched for, as its records say)
                named = before_holders or before_served or tuple(sorted(planner.exit_reasons(tls)))
            elif stage in ("entry", "dwell"):
                named = served or before_served or before_holders
            else:
                named = holders or before_holders
            escorts = [self._by_key.get(k, k) for k in named]
            for previous, step in stage_steps(before, stage):
                switched = previous in ("entry", "dwell", "exit")
                kind = step if step != "idle" else ("handback" if switched else "disarmed")
                # why it leaves each escort's service (crossed, max presence, cancelled, ...)
                # (disarmed: why the requests of those it was armed for ended, other than by crossing)
                # (of the escorts named: one the signal was released for earlier, while held on for
                # others, had its reason in the ``released`` event, and is not named here)
                why = ({"reasons": {self._by_key.get(k, k): r for k, r in planner.exit_reasons(tls).items()
                                    if k in named}}
                       if kind in ("exit", "handback") else self._released_why(named, tls) if kind == "disarmed"
                       else {})
                self.events.publish(kind, tls_id=tls, t_s=t_s, stage=step, previous=previous, escorts=escorts, **why)
                if kind == "handback":
                    self.audit.record("handback", t_s=t_s, tls_id=tls, escort_id=escorts[0] if escorts else None,
                                      escorts=escorts, previous=previous, **why)
                else:
                    self.audit.record("decision", t_s=t_s, tls_id=tls, escort_id=escorts[0] if escorts else None,
                                      stage=step, previous=previous, escorts=escorts, **why)

    def _released_why(self, keys: Iterable[str], tls: str) -> dict[str, Any]:
        """``reasons`` for escorts signal ``tls`` let go on the last tick while held for others, or
        without having been switched for them, where their requests ended other than by crossing
        (re-routed, cancelled, vanished; service stopped, simulation ended, EV stalled, where it was
        armed for them): ``{}`` for none."""
        assert self._controller is not None
        planner = self._controller.planner
        keys = list(keys)
        found = planner.released_reasons(tls, keys)
        if planner.stage(tls) == "idle":  # (disarmed: the reasons its hand-back kept, crossing apart)
            found = {**{k: r for k, r in planner.exit_reasons(tls).items() if k in keys and r != "crossed"}, **found}
        reasons = {self._by_key.get(k, k): found[k] for k in keys if k in found}
        return {"reasons": reasons} if reasons else {}

    def _joined(self, tls: str, t_s: float, stage: str, previous: str, escorts: list[str], *,
                held_for: list[str] | None = None, joined: bool = True) -> None:
        """The event and audit row of escorts whose own stage at a signal changed while the
        signal's did not, or apart from it: ``stage`` is theirs (the signal's, or ``armed`` while
        it serves ``held_for`` first); ``joined``: it was not held for them before."""
        extra = {} if held_for is None else {"held_for": held_for}
        self.events.publish(stage, tls_id=tls, t_s=t_s, stage=stage, previous=previous, escorts=escorts, joined=joined,
                            **extra)
        self.audit.record("decision", t_s=t_s, tls_id=tls, escort_id=escorts[0], stage=stage, previous=previous,
                          escorts=escorts, joined=joined, **extra)

    def _track_refusals(self, t_s: float) -> None:
        """An event and an audit row the first time the planner refuses a green target that is not
        a program phase's (the request is not served with it; ``run`` counts these in summary.json's
        ``safety.targets_refused``)."""
        assert self._controller is not None
        refused = self._controller.planner.refused_targets
        if not refused:
            return
        self._refused_total = sum(refused.values())
        if len(refused) == len(self._refused_seen):
            return
        for tls, target in sorted(refused.keys() - self._refused_seen):
            self._refused_seen.add((tls, target))
            self.events.publish("target_refused", tls_id=tls, t_s=t_s, target=target)
            self.audit.record("decision", t_s=t_s, tls_id=tls, stage="target_refused", target=target)

    def _track_lost_fixes(self, t_s: float) -> None:
        """An external escort with no position for ``FIX_LOST_S`` is cancelled (after this tick's
        stage events: the controller lets it go on the next tick)."""
        assert self._controller is not None
        for esc in self._escorts.values():
            if esc.tracking != "external" or esc.state not in ("dispatched", "en_route"):
                continue
            # (no fix yet: counted from the dispatch, so an escort that never reports lets go too)
            last_fix_s = esc.fix_t_s if esc.fix_t_s is not None else esc.dispatched_s
            if t_s - last_fix_s > FIX_LOST_S and self._progress[esc.key].arrived_s is None:
                reason = f"no position for {FIX_LOST_S:g} s"
                self._controller.cancel(esc.key, reason)
                self._cancelled(esc, t_s, reason)
                self._release(esc, t_s)

    def _track_escorts(self, t_s: float) -> None:
        """An escort's departure, arrival, or vanishing (a cancel), before the stage events of the
        tick that saw it (the controller let an arrived or vanished escort go on it already)."""
        assert self._controller is not None
        for esc in self._escorts.values():
            p = self._progress[esc.key]
            if esc.state == "dispatched" and p.depart_s is not None:
                esc.state = "en_route"
                # (the event's time is this tick's, as every event's, in order; a vehicle_id
                # escort's vehicle departed before it was escorted: departed_s says when)
                self.events.publish("departed", escort=esc.id, t_s=t_s, departed_s=min(p.depart_s, t_s))
            if esc.state in ("dispatched", "en_route"):
                if p.arrived_s is not None:
                    esc.state = "arrived"
                    # (the controller let it go on this tick already: the signals it held before,
                    # as the last tick's stages still say)
                    held = self._handing_back(esc)
                    self.events.publish("arrival", escort=esc.id, t_s=p.arrived_s, handing_back=held)
                    self.audit.record("arrival", t_s=p.arrived_s, escort_id=esc.id, handing_back=held)
                    self._release(esc, t_s)
                elif p.vanished_s is not None:
                    # (the controller let it go on this tick already: the signals it held before,
                    # as the last tick's stages still say)
                    self._cancelled(esc, t_s, VANISHED if p.depart_s is not None else NOT_INSERTED)
                    self._release(esc, t_s)

    def _cancelled(self, esc: _Escort, t_s: float, reason: str, *, shared: bool = False,
                   vehicle_removed: bool = False) -> None:
        """The escort is cancelled: its state, and the cancel event and audit row listing the
        signals handed back for it (``shared``: see :meth:`_handing_back`);
        ``vehicle_removed``: its vehicle, not yet inserted, was taken out of the simulation."""
        esc.state, esc.reason, esc.cancelled_s = "cancelled", reason, t_s
        held = self._handing_back(esc, shared=shared)
        extra: dict[str, Any] = {"vehicle_removed": True} if vehicle_removed else {}
        self.events.publish("cancel", escort=esc.id, t_s=t_s, reason=reason, handing_back=held, **extra)
        self.audit.record("cancel", t_s=t_s, escort_id=esc.id, reason=reason, handing_back=held, **extra)

    def _handing_back(self, esc: _Escort, *, shared: bool = False) -> list[str]:
        """The signals of an escort that ends, armed or switched for it alone, as the stages last
        tracked say (before the controller's tick that let an arrived or vanished escort go: its
        events come before the stage events of that tick): they are handed back now (one held for
        others too stays held for them). ``shared``: also those held for others, every signal being
        handed back (a stop, a failure)."""
        held = []
        # (also those of a way it was re-routed from since the last tick, not yet handed back)
        for tls in dict.fromkeys([*esc.corridor.tls_ids(), *self._stages]):
            _, holders, _ = self._stages.get(tls, ("idle", (), ()))
            if esc.key in holders and (shared or holders == (esc.key,)):
                held.append(tls)
        return sorted(set(held))

    def _release(self, esc: _Escort, t_s: float) -> None:
        """The escort is done: its corridor's lanes stop being read now, its signals once they are
        back in their programs and no other escort needs them (``CorridorWatch.tick``)."""
        assert self._reading is not None
        self._reading.release(esc.key, t_s)

    # -- views ---------------------------------------------------------------------------------------
    def _escort_view(self, esc: _Escort, t_s: float, snap: Snapshot | None) -> EscortView:
        assert self._controller is not None
        ctrl = self._controller
        p = self._progress[esc.key]
        active = esc.state in ("dispatched", "en_route")
        # every signal still ahead (a tick plans only those within its horizon; the others get a
        # fresh look); none for an external escort before its first fix, nor for a vehicle of the
        # route files before it departs: where, or when, it is is not known
        waiting = esc.departs_s is not None and p.depart_s is None
        etas = {e.junction_index: e for e in ctrl.route_etas(esc.key, t_s) if e.junction_index not in p.crossed_s} \
            if active and esc.key not in self._no_fix_yet and not waiting else {}
        junctions = []
        for j in esc.corridor.junctions:
            stage, granted = ctrl.junction_status(esc.key, j.index, j.tls_id)
            eta = etas.get(j.index)
            junctions.append(JunctionView(
                index=j.index, tls_id=j.tls_id, junction_id=j.junction_id, distance_m=round(j.distance_m, 1),
                eta_s=None if eta is None else round(eta.eta_s, 2),
                eta_in_s=None if eta is None else round(eta.eta_s - t_s, 2),
                eta_low_s=None if eta is None else round(eta.low_s, 2),
                eta_high_s=None if eta is None else round(eta.high_s, 2),
                stage=stage, granted=granted,
                # (null where a vehicle_id escort's vehicle had crossed it before it was escorted,
                # or an external escort's first fix lay beyond it: the time is not known, it was
                # the first tick's; or where SUMO carried it past off the road, in a teleport)
                crossed_s=None if j.index not in p.crossed_s or j.index in p.passed_off_road or (
                    (esc.joined or esc.tracking == "external") and p.crossed_s[j.index] == esc.first_seen_s)
                else round(p.crossed_s[j.index], 2),
                locked_until_s=ctrl.planner.locked_until(j.tls_id, t_s, esc.key)
                if active and j.index not in p.crossed_s else None,
            ))
        position = None
        vehicle = snap.vehicles.get(esc.key) if snap is not None else None
        if vehicle is not None and p.position_m is not None and esc.state == "en_route":
            position = PositionView(vehicle.road_id, round(vehicle.lane_pos_m, 2), round(p.position_m, 2),
                                    esc.tracking)
        if esc.state in ("en_route", "dispatched") and esc.eta_due(t_s) and etas:
            esc.last_eta_event_s = t_s
            self.events.publish("eta", escort=esc.id, t_s=t_s, junctions=[
                {"tls_id": jv.tls_id, "index": jv.index, "eta_s": jv.eta_s, "eta_in_s": jv.eta_in_s}
                for jv in junctions if jv.eta_s is not None
            ])
        return EscortView(
            id=esc.id, vehicle_id=esc.key, vehicle_type=esc.ev_type, priority=esc.priority, state=esc.state,
            reason=esc.reason, tracking=esc.tracking, route=esc.corridor.route,
            route_length_m=round(esc.corridor.length_m, 1), dispatched_s=esc.dispatched_s,
            departed_s=p.depart_s, arrived_s=p.arrived_s, cancelled_s=esc.cancelled_s, position=position,
            speed_mps=None if position is None or vehicle is None else round(vehicle.speed_mps, 2),
            junctions=tuple(junctions),
        )

    def _publish(self, t_s: float, *, running: bool, snap: Snapshot | None = None,
                 now: Mapping[str, tuple[str, str, int]] | None = None) -> None:
        """The state the API serves, as this tick leaves it: a signal commanded in it (``now``:
        state, program, phase after the commands) as it shows now, the others as the snapshot
        read them (the last state otherwise)."""
        escorts: dict[str, EscortView] = {}
        for esc in self._escorts.values():
            if not esc.final:
                view = self._escort_view(esc, t_s, snap)
                esc.final = (esc.state in ("arrived", "cancelled") and view == esc.view
                             and all(j.stage == "idle" for j in view.junctions))
                esc.view = view
            assert esc.view is not None
            escorts[esc.id] = esc.view
        signals: dict[str, SignalView] = {}
        preempted: tuple[str, ...] = ()
        sim = self._sim
        if self._controller is not None and sim is not None:
            planner = self._controller.planner
            preempted = sim.preempted
            shown = snap.signals if snap is not None else {}
            reading = self._reading
            for tls in planner.junctions:
                if reading is None or not reading.reads(tls):
                    continue  # no escort needs it any more (README: "the signals read now")
                sig = shown.get(tls)
                old = self._state.signals.get(tls)
                shows, program, phase = (now[tls] if now and tls in now else
                                         (sig.state, sig.program_id, sig.phase) if sig else
                                         (old.state, old.program, old.phase) if old else ("", "", -1))
                signals[tls] = SignalView(
                    tls_id=tls,
                    state=shows,
                    program=program,
                    phase=phase,
                    stage=planner.stage(tls),
                    escorts=tuple(self._by_key.get(k, k) for k in planner.holders(tls)),
                    preempted=tls in preempted,
                    locked_until_s=planner.locked_until(tls, t_s),
                )
        ticks = self._state.ticks + (1 if snap is not None else 0)
        state = ServiceState(t_s=t_s, ticks=ticks, running=running, ended=self._ended, failed=None,
                             escorts=escorts, signals=signals, preempted=preempted,
                             safety=self._monitor.counts(),
                             targets_refused=self._refused_total)
        with self._lock:
            self._state = state

    # -- commands ----------------------------------------------------------------------------------
    def _resolve(self, sim: SumoAdapter, place: Place, field_name: str) -> _Place:
        """The edge a place stands for: the edge given, or for a lon/lat the nearest edge
        emergency vehicles may use (and where that is, for :meth:`_near_edges`)."""
        if place.edge is not None:
            edge = self.network.edges.get(place.edge)
            if edge is None or edge.is_internal:
                raise RequestError(f"{field_name}: unknown edge '{place.edge}'")
            return _Place(place.edge)
        assert place.lon is not None and place.lat is not None  # guaranteed by the request model
        x, y = self._xy(sim, place.lon, place.lat, field_name)
        found = sim.nearest_edge(x, y)
        if found is None:
            raise RequestError(f"{field_name}: no road for emergency vehicles near ({place.lon}, {place.lat})")
        edge_id, _ = found
        if edge_id.startswith(":") or (edge_id in self.network.edges and self.network.edges[edge_id].is_internal):
            # inside a junction (SUMO's nearest is then one of its internal edges, no place to
            # start or end a route): the nearest of the roads into and out of it
            junction = edge_id[1:].rsplit("_", 1)[0]
            roads = [e.edge_id for e in self.network.edges.values()
                     if not e.is_internal and junction in (e.from_node, e.to_node)
                     and any(lane.allows_emergency for lane in e.lanes)]
            if not roads:
                raise RequestError(f"{field_name}: no road for emergency vehicles near ({place.lon}, {place.lat})")
            edge_id = min(roads, key=lambda e: project(sim.lane_shape(f"{e}_0"), x, y)[1])
        _, distance = project(sim.lane_shape(f"{edge_id}_0"), x, y)
        if distance > MAX_FROM_ROAD_M:
            raise RequestError(f"{field_name}: ({place.lon}, {place.lat}) is {distance:.0f} m from the nearest "
                               f"road (at most {MAX_FROM_ROAD_M:.0f} m)")
        return _Place(edge_id, (x, y, distance))

    def _near_edges(self, sim: SumoAdapter, place: _Place) -> list[str]:
        """A lon/lat place's nearest edge, then the other edges emergency vehicles may use at its
        ends within ``NEAR_ROAD_M`` more of the point (the other carriageway, a street running
        on), the nearest first: the nearest may lead nowhere (an exit off the network)."""
        if place.point is None:
            return [place.edge]
        x, y, distance = place.point
        if self._edges_at_node is None:
            self._edges_at_node = {}
            for e in self.network.edges.values():
                if not e.is_internal and any(lane.allows_emergency for lane in e.lanes):
                    for node in {e.from_node, e.to_node}:
                        self._edges_at_node.setdefault(node, []).append(e.edge_id)
        nearest = self.network.edges[place.edge]
        near: list[tuple[float, str]] = []
        for e in {*self._edges_at_node.get(nearest.from_node, ()), *self._edges_at_node.get(nearest.to_node, ())}:
            if e != place.edge:
                _, d = project(sim.lane_shape(f"{e}_0"), x, y)
                if d <= min(distance + NEAR_ROAD_M, MAX_FROM_ROAD_M):
                    near.append((d, e))
        return [place.edge, *(e for _, e in sorted(near))]

    def _route_between(self, sim: SumoAdapter, origin: _Place, destination: _Place) -> tuple[str, ...]:
        """The fastest route between two places: from their nearest edges, else (a lon/lat place)
        from the first of the origin's near edges that reaches one of the destination's, to the
        first it reaches; the error of the nearest pair where none does."""
        try:
            return escortable_route(self.network, origin.edge, destination.edge)
        except RouteError as e:
            if origin.point is None and destination.point is None:
                raise
            first = e
        targets = self._near_edges(sim, destination)
        for o in self._near_edges(sim, origin):
            reach = reachable_from(self.network, o)  # (one walk each, not a failing search per pair)
            d = next((d for d in targets if d in reach), None)
            if d is not None:
                return escortable_route(self.network, o, d)
        raise first

    def _xy(self, sim: SumoAdapter, lon: float, lat: float, field_name: str) -> tuple[float, float]:
        if not self.geo:
            raise RequestError(f"{field_name}: the network has no geo-reference; give an edge instead of lon/lat")
        return sim.lonlat_to_xy(lon, lat)

    def _route_ids(self) -> dict[str, tuple[str, Path]]:
        """The ids in the scenario's route files, and in its additional files, which may hold
        vehicles too (read on the first dispatch that needs them)."""
        if self._route_file_ids is None:
            inputs = self.setup.inputs
            self._route_file_ids = route_file_ids((*inputs.route_files, *inputs.additional_files))
        return self._route_file_ids

    def _new_escort_id(self, sim: SumoAdapter) -> str:
        """``escort-<n>``, the next n whose id no escort, vehicle or route file has taken (n counting
        on from the audit log's highest, see ``__init__``)."""
        assert self._controller is not None
        while True:
            self._seq += 1
            key = f"{DEFAULT_ID_PREFIX}{self._seq}"
            if not (key in self._escorts or key in self._by_key or key in self._controller.evs
                    or sim.vehicle_exists(key) or id_in_routes(self._route_ids(), key) is not None):
                return key

    def _dispatch(self, sim: SumoAdapter, cmd: Dispatch) -> str:
        seq = self._seq
        try:
            return self._dispatch_checked(sim, cmd)
        except GreenwaveError:
            self._seq = seq  # a refused dispatch takes no default id (the next one gets it)
            raise

    def _dispatch_checked(self, sim: SumoAdapter, cmd: Dispatch) -> str:
        assert self._controller is not None
        t = sim.time_s
        if self._ended:
            raise RequestError(f"the simulation ended at {self.end_s:g} s: no new escorts", 409)
        if cmd.vehicle_type not in PRIORITY:
            raise RequestError(f"vehicle_type: '{cmd.vehicle_type}' is not one of {', '.join(PRIORITY)}")
        escort_id = cmd.escort_id or self._new_escort_id(sim)
        if escort_id in self._escorts:
            raise RequestError(f"id: escort '{escort_id}' exists already", 409)
        owns_vehicle = cmd.vehicle_id is None and cmd.tracking == "simulation"
        scheduled: RouteFileVehicle | None = None  # a vehicle of the route files not yet departed
        if cmd.vehicle_id is not None:
            key = cmd.vehicle_id
            if key in self._by_key:
                earlier = self._escorts[self._by_key[key]]
                if earlier.state in ("arrived", "cancelled"):
                    # (its records, ETA log and crossings are the earlier escort's, kept by the vehicle's id)
                    raise RequestError(f"vehicle_id: vehicle '{key}' was escorted already (escort '{earlier.id}', "
                                       f"{earlier.state}): a vehicle is escorted at most once a run", 409)
                raise RequestError(f"vehicle_id: vehicle '{key}' is escorted already (escort '{earlier.id}')", 409)
            if sim.vehicle_exists(key):
                route = sim.vehicle_route(key)  # whole: the edges behind it count as crossed at once
                vtype = sim.vehicle_type_id(key)
            else:
                scheduled = self._scheduled(sim, key)
                route, vtype = scheduled.route, scheduled.vtype_id
                if scheduled.trip is not None:  # (SUMO routes it as it departs: a re-route where it differs)
                    route = escortable_route(self.network, scheduled.trip[0], scheduled.trip[1])
        else:
            key = escort_id
            if key in self._by_key:
                raise RequestError(f"id: '{key}' is the vehicle of escort '{self._by_key[key]}' already", 409)
            # (an external escort too: its id is the key its vehicle is known by, and a vehicle of
            # that id in the simulation could not be escorted by its vehicle_id later on)
            if key in self._controller.evs or sim.vehicle_exists(key):
                raise RequestError(f"id: a vehicle '{key}' exists in the simulation already", 409)
            if (hit := id_in_routes(self._route_ids(), key)) is not None:
                # SUMO would fail the whole simulation when it loads that vehicle later on (or has
                # run it already: a vehicle id is used once a run); an external escort's id would
                # stand for that vehicle
                raise RequestError(f"id: the scenario's {hit[0].name} has {hit[1]}: a vehicle id is used once a "
                                   "run; choose another id", 409)
            if cmd.route is not None:
                # (greenwave adds a tracked escort to SUMO as an emergency vehicle, which SUMO
                # would refuse on a route it may not drive)
                validate_route(self.network, cmd.route, emergency=cmd.tracking == "simulation")
                route = tuple(cmd.route)
            else:
                assert cmd.origin is not None and cmd.destination is not None  # guaranteed by the request model
                route = self._route_between(sim, self._resolve(sim, cmd.origin, "origin"),
                                            self._resolve(sim, cmd.destination, "destination"))
            vtype = f"{EV_VTYPE_PREFIX}{cmd.vehicle_type}"
        corridor = build_corridor(self.network, route)
        _check_signal_passes(corridor, "route")
        dynamics = EvDynamics(**sim.vehicle_type(vtype))
        if owns_vehicle:
            sim.add_vehicle(key, route, vtype, depart="now")
        scheduled_s = scheduled.depart_s if scheduled is not None else None
        if scheduled is not None:
            sim.watch_vehicle(key, from_departure=True)
        elif cmd.tracking == "simulation":
            sim.watch_vehicle(key)
        # (a vehicle of the route files not yet departed is planned for from its departure, as in a run)
        ev = EvSetup(key, cmd.vehicle_type, corridor, dynamics, max(t, scheduled_s or t), priority_class=cmd.priority,
                     in_lanes=cmd.tracking == "simulation")
        # a vehicle already running departed before it was escorted: its departure, not the escort's
        departed = sim.vehicle_departure_s(key) if cmd.vehicle_id is not None and scheduled_s is None else None
        self._controller.add_ev(ev)
        self._watch(key, corridor, t)  # (after what may fail: a refused dispatch leaves nothing read)
        self._progress[key] = EvProgress(key, corridor, depart_s=departed)
        self._escorts[escort_id] = _Escort(escort_id, key, cmd.vehicle_type, ev.priority, corridor, t, cmd.tracking,
                                           joined=cmd.vehicle_id is not None and scheduled_s is None,
                                           departs_s=scheduled_s, owns_vehicle=owns_vehicle)
        if cmd.tracking == "external":
            self._no_fix_yet.add(key)
        self._by_key[key] = escort_id
        detail: dict[str, Any] = {"vehicle_id": key, "vehicle_type": cmd.vehicle_type, "priority": ev.priority,
                  "tracking": cmd.tracking, "route": list(route), "tls": list(corridor.tls_ids())}
        if scheduled_s is not None:
            detail["departs_s"] = scheduled_s
        # signals on its way left to their programs (a single track's guard; a program switching a
        # link off and on), as a run notes them
        if left := [*single_track_notes(escort_id, corridor), *signal_off_notes(escort_id, corridor)]:
            detail["left_to_program"] = left
        self.audit.record("dispatch", t_s=t, escort_id=escort_id, **detail)
        self.events.publish("dispatch", escort=escort_id, t_s=t, **detail)
        return escort_id

    def _scheduled(self, sim: SumoAdapter, key: str) -> RouteFileVehicle:
        """The vehicle ``key`` of the scenario's route files that SUMO has not inserted yet, for a
        dispatch by ``vehicle_id`` before it departs; a :class:`RequestError` where there is none
        (it has run already, or is no vehicle that can be escorted)."""
        if id_in_routes(self._route_ids(), key) is None:
            raise RequestError(f"vehicle_id: no vehicle '{key}' is running in the simulation, nor does the "
                               "scenario's route files' schedule hold one")
        inputs = self.setup.inputs
        try:
            scheduled = find_route_file_vehicle((*inputs.route_files, *inputs.additional_files), key,
                                                f"vehicle_id: vehicle '{key}'")
        except ScenarioError as e:
            raise RequestError(str(e)) from None
        if scheduled.depart_s < sim.time_s and not sim.pending_vehicle(key):
            raise RequestError(f"vehicle_id: vehicle '{key}' of {scheduled.file.name} was to depart at "
                               f"{scheduled.depart_s:g} s and is not running: it has run already, or SUMO did not "
                               "load it", 409)
        if scheduled.vtype_id not in sim.vehicle_type_ids():
            raise RequestError(f"vehicle_id: vehicle '{key}' departs at {scheduled.depart_s:g} s, and SUMO has not "
                               f"loaded its vehicle type '{scheduled.vtype_id}' yet (it reads route files a few "
                               "minutes ahead): dispatch it nearer its departure", 409)
        return scheduled

    def _escort(self, escort_id: str) -> _Escort:
        esc = self._escorts.get(escort_id)
        if esc is None:
            raise RequestError(f"unknown escort '{escort_id}'", 404)
        return esc

    def _escort_under_way(self, escort_id: str, said: str) -> _Escort:
        """The escort, not arrived or cancelled (409 then, the message ending with ``said``)."""
        esc = self._escort(escort_id)
        if esc.state in ("arrived", "cancelled"):
            done = "has arrived" if esc.state == "arrived" else "is cancelled"
            raise RequestError(f"escort '{esc.id}' {done}{said}", 409)
        return esc

    def _cancel(self, sim: SumoAdapter, cmd: Cancel) -> str:
        assert self._controller is not None
        esc = self._escort_under_way(cmd.escort_id, " already")
        self._controller.cancel(esc.key, "cancelled by request")
        # a vehicle greenwave added for the escort and SUMO has not inserted yet (no room at its
        # origin) is taken out: it departed later, unescorted, and ran its whole route as a ghost
        # ambulance the API no longer showed; one on the road drives on, as a vehicle would
        removed = esc.owns_vehicle and sim.remove_pending_vehicle(esc.key)
        self._cancelled(esc, sim.time_s, "cancelled by request", vehicle_removed=removed)
        self._release(esc, sim.time_s)
        return esc.id

    def _new_route(self, sim: SumoAdapter, cmd: Reroute) -> str:
        """A new way on for an escort under way, from the edge it is on now: the route given
        (from that edge on), or the fastest to the destination."""
        esc = self._escort_under_way(cmd.escort_id, " already")
        t, key, old = sim.time_s, esc.key, esc.corridor.route
        if esc.tracking == "simulation":
            if not sim.vehicle_exists(key):
                if esc.departs_s is not None:  # (the route files' vehicle: a vehicle is escorted once a run)
                    raise RequestError(f"escort '{esc.id}': its vehicle (of the scenario's route files, departing at "
                                       f"{esc.departs_s:g} s) has not entered the simulation yet; re-route it once "
                                       "it runs", 409)
                raise RequestError(f"escort '{esc.id}': its vehicle has not entered the simulation yet; cancel it and "
                                   "dispatch it again with the new route", 409)
            old = sim.vehicle_route(key)  # (SUMO's, which a rerouter may have changed since the last tick)
            here = sim.vehicle_route_index(key)
        else:  # (the last fix's edge; before the first, the route's first)
            here = esc.fix.route_index if esc.fix is not None else 0
        current = old[here]
        # inside a junction (SUMO still counts it on the edge before), the edge it is entering:
        # it turns onto that one whatever the new route
        entering = old[here + 1] if (esc.tracking == "simulation" and here + 1 < len(old)
                                     and sim.vehicle_road(key).startswith(":")) else None
        if cmd.route is not None:
            # (the whole route as given: edges before the one it is on that do not connect, or an
            # internal one, would otherwise be dropped unseen)
            validate_route(self.network, cmd.route, emergency=esc.tracking == "simulation")
            if entering is not None:  # (the way on from the edge it is entering: it turns onto that one)
                if entering not in cmd.route:
                    raise RequestError(f"route: escort '{esc.id}' is inside the junction from edge '{current}' onto "
                                       f"'{entering}' now, which the route does not hold: give the way on from "
                                       f"'{entering}'")
                new = (current, *cmd.route[cmd.route.index(entering):])
            elif current in cmd.route:
                new = tuple(cmd.route[cmd.route.index(current):])
            else:
                raise RequestError(f"route: escort '{esc.id}' is on edge '{current}' now, which the route does not "
                                   "hold: give the way on from there")
        else:
            assert cmd.destination is not None  # guaranteed by the request model
            to = self._resolve(sim, cmd.destination, "destination")
            if entering is not None:  # (from the edge before, SUMO refused a way turning otherwise: a 409)
                new = (current, *self._route_between(sim, _Place(entering), to))
            else:
                new = self._route_between(sim, _Place(current), to)
        if old[here:] == new:
            return esc.id  # (the way it goes already)
        # every signal of the new way must be one greenwave can serve (before SUMO is told: a
        # route SUMO kept and the next tick could not plan failed the whole service); one behind
        # it, or being crossed, is SUMO's earlier choice, left to its program then
        blocked: list[str] = []
        corridor = build_corridor(self.network, old[:here] + new, unservable=blocked,
                                  unservable_from=here if entering is None else here + 1)
        if blocked:
            raise CorridorError(blocked[0])
        _check_signal_passes(corridor, "new route", from_route_index=here)
        if esc.tracking == "simulation":
            try:
                sim.set_vehicle_route(key, new)
            except SUMO_ERRORS as e:  # (inside a junction, turning another way than the new route)
                raise RequestError(f"SUMO refused the new route of escort '{esc.id}' ({' '.join(str(e).split())}); "
                                   "if its vehicle is inside a junction, ask again once it has left it", 409) from None
            self._reroute(sim, key, t, requested=True)  # (SUMO's route as it holds it: the next tick sees no change)
        else:
            self._rerouted(key, corridor, t, requested=True)
            # (the fixes so far lie on the edges both ways share, up to the one it is on)
            esc.fix_farthest_m = min(esc.fix_farthest_m,
                                     corridor.edge_offsets_m[here] + self.network.edges[current].length_m)
        return esc.id

    def _position(self, sim: SumoAdapter, cmd: Position) -> dict[str, Any]:
        esc = self._escort_under_way(cmd.escort_id, ": no more positions")
        if esc.tracking != "external":
            raise RequestError(f"escort '{esc.id}' is tracked by the simulation (its vehicle in SUMO drives it): "
                               "positions are taken only for escorts dispatched with tracking 'external'", 409)
        now = sim.time_s
        fix_t = now if cmd.t_s is None else cmd.t_s
        if fix_t > now + 1e-6:
            raise RequestError(f"timestamp: {fix_t:g} s is ahead of the simulation time {now:g} s")
        if esc.fix_given_t_s is not None and fix_t < esc.fix_given_t_s:
            raise RequestError(f"timestamp: {fix_t:g} s is older than the last position's {esc.fix_given_t_s:g} s")
        if fix_t < esc.dispatched_s - FIX_BEFORE_DISPATCH_S:
            # (one dated long before let the next fix jump kilometres past the speed check, and
            # one dated 120 s before cancelled the escort for want of a position on the next tick)
            raise RequestError(f"timestamp: {fix_t:g} s is more than {FIX_BEFORE_DISPATCH_S:g} s before escort "
                               f"'{esc.id}' was dispatched ({esc.dispatched_s:g} s)")
        given_t = fix_t
        # the fix the client had as it dispatched (the dispatch lands a tick or two later) counts from then
        fix_t = max(fix_t, esc.dispatched_s)
        corridor = esc.corridor
        last_index = esc.fix.route_index if esc.fix is not None else 0
        distance_m = 0.0
        if cmd.edge is not None:
            indices = [i for i, e in enumerate(corridor.route) if e == cmd.edge]
            if not indices:
                raise RequestError(f"edge: '{cmd.edge}' is not on the route of escort '{esc.id}'")
            index = next((i for i in indices if i >= last_index), indices[-1])
            length = self.network.edges[cmd.edge].length_m
            offset = cmd.offset_m or 0.0
            if offset > length + 0.5:
                raise RequestError(f"offset_m: {offset:g} m is beyond the end of edge '{cmd.edge}' ({length:.1f} m)")
            offset = min(offset, length)
        else:
            assert cmd.lon is not None and cmd.lat is not None  # guaranteed by the request model
            x, y = self._xy(sim, cmd.lon, cmd.lat, "position")
            if esc.shapes is None:
                esc.shapes = tuple(sim.lane_shape(f"{e}_0") for e in corridor.route)
            lengths = [self.network.edges[e].length_m for e in corridor.route]
            match = match_to_route(esc.shapes, lengths, x, y, from_index=last_index)
            if match.distance_m > MAX_FROM_ROUTE_M:
                raise RequestError(f"position: ({cmd.lon}, {cmd.lat}) is {match.distance_m:.0f} m from the route of "
                                   f"escort '{esc.id}' (at most {MAX_FROM_ROUTE_M:.0f} m)")
            index, offset, distance_m = match.route_index, match.offset_m, match.distance_m
        edge = corridor.route[index]
        route_pos = corridor.position_m(index, offset)
        if esc.fix is not None and esc.fix_given_t_s is not None:
            # against every earlier fix (the one that binds: the least reach), not the last one
            # alone: each fix's error allowance would otherwise add up along a chain of them
            reach = esc.fix_reach_m + MAX_FIX_SPEED_MPS * given_t + MAX_FROM_ROUTE_M
            if route_pos > reach + 1e-6:
                moved, dt = route_pos - esc.fix.odometer_m, given_t - esc.fix_given_t_s
                raise RequestError(
                    f"position: {moved:.0f} m along the route of escort '{esc.id}' in {dt:g} s since the last "
                    f"position (at {esc.fix_given_t_s:g} s) is not plausible: at most {MAX_FIX_SPEED_MPS:g} m/s "
                    f"since each earlier position, + {MAX_FROM_ROUTE_M:g} m, allows {reach - route_pos + moved:.0f} m")
            if route_pos < esc.fix_farthest_m - MAX_FROM_ROUTE_M:
                raise RequestError(f"position: {esc.fix_farthest_m - route_pos:.0f} m back along the route of escort "
                                   f"'{esc.id}' from an earlier position (at most {MAX_FROM_ROUTE_M:g} m)")
        esc.fix = VehicleState(esc.key, edge, f"{edge}_0", offset, max(cmd.speed_mps, 0.0), index, route_pos)
        esc.fix_t_s = fix_t
        esc.fix_given_t_s = given_t
        esc.fix_reach_m = min(esc.fix_reach_m, route_pos - MAX_FIX_SPEED_MPS * given_t)
        esc.fix_farthest_m = max(esc.fix_farthest_m, route_pos)
        self._no_fix_yet.discard(esc.key)
        return {"escort": esc.id, "edge": edge, "offset_m": round(offset, 2), "route_index": index,
                "route_distance_m": round(route_pos, 2), "distance_from_route_m": round(distance_m, 2),
                "t_s": fix_t}

    # -- shutdown ------------------------------------------------------------------------------------
    def _drain(self, sim: SumoAdapter, reason: str = "service stopped") -> None:
        """Hand back every junction through the planner's safe transitions (bounded in time)."""
        assert self._controller is not None
        self._controller.stop(reason)
        for esc in self._escorts.values():
            if esc.state in ("dispatched", "en_route"):
                self._cancelled(esc, sim.time_s, reason, shared=True)
                self._release(esc, sim.time_s)
        until = sim.time_s + DRAIN_LIMIT_S
        while self._controller.busy and sim.time_s < until:
            self._looped_at = time.monotonic()  # (stepping on: not stalled)
            self._tick(sim)
        self._publish(sim.time_s, running=False)


def _ended_view(view: EscortView, esc: _Escort) -> EscortView:
    """An escort's last view, where its fresh one cannot be read (the simulation thread failed):
    its state and reason as they are now, and nothing that would still look live (no position,
    speed or ETA; its signals idle, every one having been handed back)."""
    return replace(
        view, state=esc.state, reason=esc.reason, cancelled_s=esc.cancelled_s, position=None, speed_mps=None,
        junctions=tuple(replace(j, eta_s=None, eta_in_s=None, eta_low_s=None, eta_high_s=None, stage="idle",
                                locked_until_s=None) for j in view.junctions),
    )
