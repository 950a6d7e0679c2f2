"""The controllers that preempt safely: ``greenwave`` (predictive) and ``local`` (detector-style).

Both turn each emergency vehicle's (EV's) progress into per-signal :class:`ServiceRequest` data
and let the :class:`~controller.core.planner.Planner` switch through safe transitions:

- **greenwave** predicts the EV's arrival at every signal ahead (:mod:`controller.core.eta`) and
  asks for green at ``ETA − (queue discharge + margin)``; with *progression*, a signal also turns
  green in time for the vehicles that the previous signal releases ahead of the EV, so queues do
  not re-form in front of it from junction to junction.
- **local** is what roadside optical or GPS preemption does: it asks for green as soon as the EV
  is within a detection range of the stop line (default 300 m) or, in the ETA variant, within an
  ETA threshold; no prediction, no queue clearance.

Pure: the snapshot carries time, the EVs, the signals and the approach lanes' queues.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple, get_args

from controller.core.corridor import Corridor, CorridorJunction, approach_links
from controller.core.eta import Eta, EtaConfig, EtaLog, EtaPredictor, EvDynamics, QueueAhead, build_profile
from controller.core.network import Network, Program
from controller.core.planner import Planner, PlannerConfig, ServiceRequest, Stage
from controller.core.progress import EvProgress
from controller.core.snapshot import SignalCommand, Snapshot, VehicleState
from controller.core.states import KEPT_AS_SHOWN, is_green

Mode = Literal["greenwave", "local"]
ExclusiveService = Literal["whole", "discharge", "ev-lane", "own-turn"]  # see ControllerConfig
# why the service of an EV SUMO no longer has ended (a preemption record's exit_reason, an
# escort's cancel reason: one wording for both)
VANISHED = "vanished from the simulation"
TELEPORTED = "teleported by SUMO"  # (off the road: its signals go back; it asks again once back on)
NOT_INSERTED = "not inserted by SUMO"  # (a vehicle of the route files SUMO did not load)
PRIORITY = {"ambulance": 1, "fire": 1, "police": 2, "transit": 3}


@dataclass(frozen=True)
class ControllerConfig:
    mode: Mode = "greenwave"
    margin_s: float = 3.0  # green this long before the queue ahead of the EV has to be gone
    saturation_headway_s: float = 2.0
    startup_lost_s: float = 2.0
    progression: bool = True
    count_moving: bool = True  # count moving vehicles on approaches ahead as queue to discharge
    max_clear_s: float = 60.0  # queue discharge planned for at most this long (a jam is not a queue)
    # When the EV's approach is served alone where it has a permissive turn (the opposing
    # movements that turn yields to held red, so nothing ahead of the EV waits for a gap):
    # "whole": for the whole preemption; "discharge": from when the queue ahead of the EV must
    # start to discharge (before that, e.g. while earlier greens serve progression, the
    # program phase's other greens, the opposing through traffic, keep theirs); "ev-lane": from
    # then too, but only once the EV is on the approach in a lane a permissive turn leaves from
    # (on an approach shorter than ``short_approach_m``, as "discharge");
    # "own-turn": only where the EV's own movement is permissive. Where the EV's own movement
    # is permissive the approach is always served alone.
    exclusive_service: ExclusiveService = "ev-lane"
    # Hold red, for the whole preemption, the permissive movements of other approaches whose
    # paths cross the EV's (the opposing left turn; SUMO's right-of-way foes): none of them then
    # waits for a gap on the crossing as the EV comes. Off by default: on the heavy grid it cost
    # other traffic +0.5 points (over the +2 % bound) and the heavy arterial's EV 7 s (seeds 1-10).
    hold_crossing_turns: bool = False
    short_approach_m: float = 100.0  # "ev-lane": an approach shorter than this is served as "discharge"
    upstream_share: float = 0.0  # share of the vehicles ahead at earlier signals that reach this one
    # (a corridor's through share; 0 where it is unknown)
    detect_range_m: float | None = 300.0  # local: detection range (None: none, the ETA variant alone)
    detect_eta_s: float | None = None  # local, ETA-threshold variant
    plan_ahead_s: float = 130.0  # predict and request only the signals the EV reaches within this
    # (and those already engaged for it): beyond the planner's arming horizon nothing is decided
    # greenwave: an EV standing this long (in a jam, its ETA slipping by the second) keeps only
    # its next signal's request; the signals further on are handed back (exit reason "EV
    # stalled") and asked for again once it moves (None: never). In a gridlocked city they were
    # held green up to the maximum presence for an EV that could not come.
    stall_release_s: float | None = 30.0
    # greenwave: where the street from one signal of the route to the next is shorter than this,
    # the next signal's queue can back up over it to the first one's exit, and SUMO lets no
    # vehicle (the EV included) enter a junction without room beyond it: the next signal then
    # also turns green in time for that queue to be moving when the EV reaches the first one,
    # wherever the queue then (the vehicles there now and, onto a queue, those the first signal
    # releases toward it while it shows the EV's movement green, one per ``queue_spacing_m``)
    # would fill the street (0: never)
    spillback_link_m: float = 100.0
    queue_spacing_m: float = 7.5  # a queued vehicle's length and the gap to the one ahead
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    eta: EtaConfig = field(default_factory=EtaConfig)


@dataclass(frozen=True)
class EvSetup:
    ev_id: str
    ev_type: str
    corridor: Corridor
    dynamics: EvDynamics
    dispatch_s: float
    priority_class: int | None = None  # overrides the type's priority class (1 = highest)
    # a vehicle of the simulation, counted in its lanes' readings (False: positions from an
    # external feed, the EV in no lane count)
    in_lanes: bool = True

    @property
    def priority(self) -> int:
        return self.priority_class if self.priority_class is not None else PRIORITY.get(self.ev_type, 3)


def approach_targets(
    network: Network, program: Program, junction: CorridorJunction, *, exclusive: bool = True,
    hold_crossing_turns: bool = False,
) -> tuple[str, int]:
    """The state that serves the EV's approach, and the program phase it is taken from.

    The phase is the one that greens the EV's links and most of the other links leaving its
    approach edge (so the whole queue ahead of it can flush), the longest on ties. The state
    keeps that phase's greens; but where the EV's own movement is only permissive there (a turn
    that waits for a gap), the opposing movements it yields to are dropped: the approach is
    served alone. ``exclusive``: also where any other link of the approach is permissive (so
    that no turning vehicle ahead of the EV waits for a gap either), at the cost of holding the
    opposing through traffic red for the whole preemption.

    ``hold_crossing_turns``: also drop the permissive links of other approaches whose paths
    cross or merge with the EV's own (``Connection.foe_links``; the opposing left turn, for one).
    A turner that waits for a gap inside the junction may stand in the EV's path (Ingolstadt 7:
    an EV ran into one standing on the crossing of 32564122 under that green).
    """
    approach = approach_links(network, junction)
    own = set(junction.link_indices)
    foes = ({k for c in network.connections_of_tls(junction.tls_id) if c.link_index in own for k in c.foe_links}
            if hold_crossing_turns else set())

    def score(p: int) -> tuple[int, float]:
        state = program.phases[p].state
        return (sum(1 for i in approach if is_green(state[i])), program.phases[p].duration_s)

    phase = max(junction.green_phases, key=score)
    state = program.phases[phase].state
    permissive = any(state[i] == "g" for i in (approach if exclusive else junction.link_indices))
    # ('s', stop then go, is kept as a permissive green is; 'o' and 'O', the signal off there, as
    # the phase shows them: ended, they would lose their right of way with no yellow)
    keep = {i for i, c in enumerate(state)
            if (is_green(c) or c == "s") and (i in approach or not (permissive or (c in "gs" and i in foes)))}
    # a movement the program shows protected green in every phase stays so (it crosses nothing
    # the program ever serves; another EV on it makes no request, the program never stopping it,
    # and it met yellow and red for this one's service); one onto a section the other direction
    # uses too (a single track) is never held green past its program: red while preempted (held
    # for another movement's EV, it let a tram onto the track the program would have closed)
    # (an always-green link the EV's permissive movement yields to is not kept where the approach
    # is served alone: the EV would wait for gaps in it; one onto a single track that the program
    # never closes is left as it is)
    conns = network.connections_of_tls(junction.tls_id)
    own = set(junction.link_indices)
    always = {i for i in range(program.link_count) if all(p.state[i] == "G" for p in program.phases)}
    crossing_own = {k for c in conns if c.link_index in own for k in c.foe_links} if permissive else set()
    keep |= always - crossing_own
    keep -= {c.link_index for c in conns if c.to_edge in network.edges and network.edges[c.to_edge].bidi
             and c.link_index not in own and c.link_index not in always}
    return "".join(c if i in keep or c in KEPT_AS_SHOWN else "r" for i, c in enumerate(state)), phase


EXCLUSIVE_SERVICE: tuple[str, ...] = get_args(ExclusiveService)


class _Service(NamedTuple):
    """How the EV's approach at one junction is served (see ``ControllerConfig.exclusive_service``)."""

    alone: str  # the state serving the approach (alone where it has a permissive turn)
    phase: int  # the program phase both states come from
    open: str | None  # shown until the switch to ``alone``; None: ``alone`` from the start
    lanes: frozenset[str] | None  # the switch waits for the EV in one of these lanes; None: any


class PreemptionController:
    """``greenwave`` or ``local``, depending on ``config.mode``."""

    def __init__(
        self,
        network: Network,
        evs: Sequence[EvSetup],
        config: ControllerConfig | None = None,
        *,
        record_etas: bool = True,
    ) -> None:
        """``record_etas=False``: keep no ETA log (a long-running service that never scores its
        predictions would otherwise keep one entry per EV and tick for as long as it runs)."""
        self.config = config or ControllerConfig()
        self.record_etas = record_etas
        self.name: str = self.config.mode
        self.network = network
        self.evs: dict[str, EvSetup] = {e.ev_id: e for e in evs}
        self.cancelled: set[str] = set()
        programs = {tls: network.programs[tls] for e in evs for tls in e.corridor.tls_ids()}
        self.planner = Planner(programs, self.config.planner, network.link_foes,
                               keep_yielding=not self.config.hold_crossing_turns)
        self.eta_log = EtaLog()
        self._predictors: dict[str, EtaPredictor] = {}
        if self.config.exclusive_service not in EXCLUSIVE_SERVICE:
            raise ValueError(
                f"ControllerConfig.exclusive_service must be one of {', '.join(EXCLUSIVE_SERVICE)}, "
                f"not {self.config.exclusive_service!r}"
            )
        if not (self.config.spillback_link_m >= 0 and self.config.queue_spacing_m > 0
                and self.config.saturation_headway_s > 0):
            raise ValueError("ControllerConfig.spillback_link_m must be >= 0, queue_spacing_m and "
                             f"saturation_headway_s > 0, not {self.config.spillback_link_m!r}, "
                             f"{self.config.queue_spacing_m!r} and {self.config.saturation_headway_s!r}")
        self._service: dict[tuple[str, int], _Service] = {}  # (ev, junction index) -> how it is served
        self._alone: set[tuple[str, int]] = set()  # switched to the approach alone: stays so
        self._reroutes: dict[str, int] = {}
        self._latest: dict[str, list[Eta]] = {}  # ev_id -> the last tick's ETAs at the signals ahead
        self._last_requests: dict[str, list[ServiceRequest]] = {}  # ev_id -> its last plan
        self._teleported: set[str] = set()  # EVs SUMO took off the road, until they are back on
        self._updated_s: dict[str, float] = {}  # ev_id -> when its plan was last made
        # ev_id -> the start of a stop during which its next signal's green went unused (released)
        self._green_unused_stop: dict[str, float] = {}
        self.deferred = 0  # EV updates put off to the next tick because the budget was spent
        for e in evs:
            self._plan_corridor(e)

    # -- EV lifecycle -------------------------------------------------------------------------
    def _plan_corridor(self, ev: EvSetup) -> None:
        for tls in ev.corridor.tls_ids():
            if tls not in self.planner.junctions:
                self.planner.add_signal(self.network.programs[tls])
        self._new_predictor(ev)
        for j in ev.corridor.junctions:
            self._service[(ev.ev_id, j.index)] = self._plan_service(j)

    def _new_predictor(self, ev: EvSetup) -> None:
        """A fresh ETA predictor for the EV's corridor (nothing learned of its progress yet)."""
        self._predictors[ev.ev_id] = EtaPredictor(
            ev.corridor, build_profile(self.network, ev.corridor), ev.dynamics, self.config.eta
        )

    def _own_speed_factor(self, ev: EvSetup, factor: float) -> EvSetup:
        """The EV as SUMO drew it: its type's speed factor is a mean (``speedDev``, or a
        distribution), and the factor drawn for the vehicle sets the speed it chooses. Its ETAs
        are predicted afresh with it (nothing learned is lost: it is seen on the road for the
        first time; an escorted vehicle 1.6 times as fast as its type was predicted 16 s late
        on average, its greens shown as it crossed, the online correction learning only delays)."""
        ev = self.evs[ev.ev_id] = replace(ev, dynamics=replace(ev.dynamics, speed_factor=factor))
        self._new_predictor(ev)
        return ev

    def _plan_service(self, j: CorridorJunction) -> _Service:
        """How ``exclusive_service`` serves the EV's approach at ``j`` (decided once per corridor,
        so that a tick only checks when to switch)."""
        cfg, network = self.config, self.network
        program = network.programs[j.tls_id]
        hold = cfg.hold_crossing_turns
        alone, phase = approach_targets(network, program, j, hold_crossing_turns=hold)
        open_state, _ = approach_targets(network, program, j, exclusive=False, hold_crossing_turns=hold)
        mode = cfg.exclusive_service
        if open_state == alone or mode == "whole":
            return _Service(alone, phase, None, None)
        if mode == "own-turn":
            return _Service(open_state, phase, None, None)
        edge = network.edges.get(j.approach_edge)
        if mode == "discharge" or edge is None or edge.length_m < cfg.short_approach_m:
            return _Service(alone, phase, open_state, None)
        lanes = frozenset(
            c.from_lane for c in network.connections_from(j.approach_edge)
            if c.tls_id == j.tls_id and 0 <= c.link_index < len(open_state) and open_state[c.link_index] == "g"
        )  # fmt: skip
        return _Service(alone, phase, open_state, lanes)

    def add_ev(self, ev: EvSetup) -> None:
        """Dispatch one more EV while running: plan its corridor and its signals."""
        if ev.ev_id in self.evs:
            raise ValueError(f"EV '{ev.ev_id}' is already known to the controller")
        self.evs[ev.ev_id] = ev
        self._plan_corridor(ev)

    def cancel(self, ev_id: str, reason: str = "cancelled") -> None:
        """Drop an EV: every signal held only for it is handed back on the next ticks (S5)."""
        self.cancelled.add(ev_id)
        self._last_requests.pop(ev_id, None)
        self.planner.release(ev_id, reason)

    def reroute(self, ev_id: str, corridor: Corridor, crossed_s: Mapping[int, float] | None = None) -> None:
        """The EV left its route: plan the new corridor; signals it no longer needs are handed
        back on the next tick (their requests are gone). ``crossed_s``: the old corridor's
        junctions it crossed, and when (its ETAs for them are scored against these)."""
        old = self.evs[ev_id]
        self.planner.release(ev_id, "re-routed")
        self._last_requests.pop(ev_id, None)  # they refer to the old corridor
        self._reroutes[ev_id] = self._reroutes.get(ev_id, 0) + 1
        self.eta_log.retire(ev_id, f"{ev_id}@route{self._reroutes[ev_id]}", crossed_s)
        self.evs[ev_id] = replace(old, corridor=corridor)
        for key in [k for k in self._service if k[0] == ev_id]:
            del self._service[key]
            self._alone.discard(key)
        self._plan_corridor(self.evs[ev_id])
        # A signal switched for the EV whose state holds red what the new movement's open
        # service would show green (the opposing through, cleared for the approach served
        # alone): the new movement is served alone from the start. Turned another way and
        # back, the EV's signal showed the opposing approach green again for a few seconds,
        # then cleared it a second time.
        planner = self.planner
        for j in corridor.junctions:
            service = self._service[(ev_id, j.index)]
            signal = planner.junctions.get(j.tls_id)
            if service.open is None or signal is None or signal.stage not in ("entry", "dwell") \
                    or ev_id not in planner.holders(j.tls_id):
                continue
            shown = signal.target
            if len(shown) == len(service.open) and not any(
                    is_green(o) and not is_green(a) and is_green(c)
                    for o, a, c in zip(service.open, service.alone, shown, strict=True)):
                self._alone.add((ev_id, j.index))

    @property
    def preempted(self) -> set[str]:
        return self.planner.preempted

    def etas(self, ev_id: str) -> list[Eta]:
        """The EV's ETAs at the signals still ahead, as predicted on the last tick (empty when none)."""
        return list(self._latest.get(ev_id, ()))

    @property
    def plan_horizon_s(self) -> float | None:
        """How far ahead a tick predicts and requests (``plan_ahead_s``, and 30 s beyond the
        earliest possible entry); None for local, which switches on distance or an ETA threshold
        however far the ETA, so it plans every signal."""
        cfg = self.config
        return None if cfg.mode == "local" else max(cfg.plan_ahead_s, cfg.planner.max_lead_s + 30.0)

    def predicted_upto(self, ev_id: str) -> int:
        """The furthest junction index the last tick predicted for the EV (-1: none)."""
        latest = self._latest.get(ev_id)
        return latest[-1].junction_index if latest else -1

    def route_etas(self, ev_id: str, t_s: float) -> list[Eta]:
        """ETAs at every signal still ahead on the EV's route (a tick plans only those within
        ``plan_ahead_s``): the last tick's where it made one, a fresh look for the others."""
        latest = {e.junction_index: e for e in self._latest.get(ev_id, ())}
        predictor = self._predictors.get(ev_id)
        if predictor is None:
            return list(latest.values())
        return [latest.get(e.junction_index, e) for e in predictor.predict(t_s, learn=False)]

    def junction_status(self, ev_id: str, junction_index: int, tls_id: str) -> tuple[Stage, bool]:
        """This EV's preemption stage at one junction of its corridor (idle unless the signal is
        armed or switched for it), and whether the signal was ever switched for it there."""
        j = self.planner.junctions.get(tls_id)
        if j is None:
            return "idle", False
        key = (ev_id, junction_index)
        rec = j.current.get(key)
        if rec is not None:
            if j.stage in ("entry", "dwell") and key not in j.serving:
                return "armed", rec.entry_s is not None  # waiting: the signal switches for another
            return j.stage, rec.entry_s is not None
        granted = any(r.ev_id == ev_id and r.junction_index == junction_index
                      for r in (*j.records, *j.taken_back, *j.ended))
        return "idle", granted

    @property
    def busy(self) -> bool:
        return self.planner.busy

    def forget_signal(self, tls_id: str) -> None:
        """The signal stops being watched for a while (ValueError while it is held)."""
        self.planner.reset_signal(tls_id)

    # -- the tick -----------------------------------------------------------------------------
    def tick(
        self,
        snapshot: Snapshot,
        progress: Mapping[str, EvProgress],
        over_budget: Callable[[], bool] | None = None,
    ) -> list[SignalCommand]:
        """One control tick. When ``over_budget()`` turns true, the EVs not yet updated keep
        their last requests (their last plan; the stalest are updated first next time), but the
        planner, which makes every transition safe, always runs."""
        t = snapshot.t_s
        self.planner.observe(t, snapshot.signals)
        requests: list[ServiceRequest] = []
        predictions: dict[str, list[Eta]] = {}
        live: list[tuple[str, EvSetup, EvProgress, VehicleState | None]] = []
        for ev_id, ev in self.evs.items():
            p = progress.get(ev_id)
            if p is None or ev_id in self.cancelled or p.arrived_s is not None or t < ev.dispatch_s:
                continue
            vehicle = snapshot.vehicles.get(ev_id)
            if p.depart_s is not None and vehicle is None and ev_id in snapshot.teleporting:
                # off the road for now: what was switched for it goes back to its program; once
                # it is back on, further on its route, it is planned afresh from there (its
                # jump is no progress to learn an ETA factor from)
                self.planner.release(ev_id, TELEPORTED)
                self._last_requests.pop(ev_id, None)
                self._teleported.add(ev_id)
                continue
            if p.depart_s is not None and vehicle is None:
                self.cancel(ev_id, VANISHED)  # removed from the simulation: hand back
                continue
            if ev_id in self._teleported and vehicle is not None:
                self._teleported.discard(ev_id)
                self._new_predictor(ev)
            if p.vanished_s is not None:
                self.cancel(ev_id, NOT_INSERTED)  # (gone before it departed: it never will)
                continue
            factor = snapshot.speed_factors.get(ev_id)
            if factor is not None and abs(factor - ev.dynamics.speed_factor) > 1e-9:
                ev = self._own_speed_factor(ev, factor)
            live.append((ev_id, ev, p, vehicle))
        engaged = self.planner.engaged()
        due = self.planner.green_due(t)
        plan_ahead = self.plan_horizon_s
        if over_budget is not None and len(live) > 1:
            live.sort(key=lambda item: self._updated_s.get(item[0], -math.inf))
        for n, (ev_id, ev, p, vehicle) in enumerate(live):
            if n and over_budget is not None and over_budget():
                self.deferred += 1
                last = self._last_requests.get(ev_id, ())
                requests.extend(r for r in last if not p.crossed(r.junction_index) or self._holds(ev, p, r, t))
                continue
            if vehicle is not None and p.position_m is None:
                # on the road but not yet placed on its route (first seen inside a junction: an
                # escort joining a running vehicle): planned from the route's start, it switched
                # the signals behind it; nothing is planned until it is placed (the next tick)
                continue
            predictor = self._predictors[ev_id]
            position = p.position_m if p.position_m is not None and vehicle is not None else 0.0
            speed = vehicle.speed_mps if vehicle is not None else 0.0
            if vehicle is not None:
                predictor.observe(t, position, speed)
            crossed = p.crossed_s
            at_least = engaged.get(ev_id, -1)
            waits = self._switch_waits(ev, snapshot, due.get(ev_id))
            etas = [e for e in predictor.predict(t, max_ahead_s=plan_ahead, at_least=at_least, learn=not waits)
                    if e.junction_index not in crossed]
            # the ETAs published and scored: with the waits for the switch-overs under way
            predictions[ev_id] = self._published(ev_id, t, waits, at_least, crossed) if waits else etas
            reqs = self._requests(ev, etas, snapshot, position)
            if reqs and self._stalled(ev, p, t):
                nxt = min(reqs, key=lambda r: r.junction_index)
                keep = nxt.tls_id
                for r in reqs:
                    if r.tls_id != keep:
                        self.planner.release_request(ev_id, r.junction_index, "EV stalled")
                reqs = [r for r in reqs if r.tls_id == keep]
                if self._green_unused(ev, p, nxt, snapshot, vehicle, t):
                    # it has stood as long under the green of that signal too, with no queue
                    # there: what holds it is not the signal (a stop of its own), which goes
                    # back to its program until the EV moves again
                    for r in reqs:
                        self.planner.release_request(ev_id, r.junction_index, "EV stalled")
                    reqs = []
            # where the EV's movement is permissive (a turn that yields, served with what it
            # yields to held red), the signal keeps serving it until it has left the junction: a
            # hand-back at the stop line could green those at once and stop it inside the junction
            # (where the next junction is the same signal's, its own request serves the EV there)
            last = self._last_requests.get(ev_id, ())
            held = [r for r in last if p.crossed(r.junction_index) and self._holds(ev, p, r, t)]
            if held:
                ahead = {r.tls_id for r in reqs}
                reqs += [r for r in held if r.tls_id not in ahead]
            self._last_requests[ev_id] = reqs
            self._updated_s[ev_id] = t
            requests.extend(reqs)
        commands = self.planner.tick(t, requests)
        entered = self.planner.entries_at(t)
        if entered:
            # a switch-over started just now: the EV waits for it too (published ETAs only)
            engaged, due = self.planner.engaged(), self.planner.green_due(t)
            for ev_id in {e for e, _ in entered}.intersection(predictions):
                waits = self._switch_waits(self.evs[ev_id], snapshot, due.get(ev_id))
                predictions[ev_id] = self._published(ev_id, t, waits, engaged.get(ev_id, -1), progress[ev_id].crossed_s)
        live_ids = {item[0] for item in live}
        self._latest = {k: v for k, v in self._latest.items() if k in live_ids}
        self._latest.update(predictions)
        if self.record_etas:
            for ev_id, etas in predictions.items():
                tags = {j: "entry" for (e, j) in entered if e == ev_id} if entered else None
                self.eta_log.record(ev_id, t, etas, tag_for=tags)
        return commands

    def _requests(
        self, ev: EvSetup, etas: Sequence[Eta], snapshot: Snapshot, position_m: float
    ) -> list[ServiceRequest]:
        cfg = self.config
        greenwave = cfg.mode == "greenwave"
        progression = greenwave and cfg.progression
        vehicle = snapshot.vehicles.get(ev.ev_id)
        junctions = ev.corridor.junctions
        services, alone = self._service, self._alone
        ev_id, priority = ev.ev_id, ev.priority
        out: list[ServiceRequest] = []
        previous_need: float | None = None
        previous_eta: float | None = None
        previous_j: CorridorJunction | None = None
        upstream = 0.0  # vehicles queued at the signals between the EV and this one
        for eta in etas:
            j = junctions[eta.junction_index]
            if j.never_red or j.single_track or j.signal_off:
                # nothing to switch (the queue it lets through does go on to the next signal: the
                # progression chain runs on from the signal before it); or a signal guarding a
                # single-track section, whose program alone knows when the other end is let in;
                # or one that switches a link off and on
                continue
            eta_s = eta.eta_s
            key = (ev_id, j.index)
            service = services[key]
            own = self._queue_ahead(j, snapshot, vehicle, ev.in_lanes)
            queue = own + round(cfg.upstream_share * upstream) if greenwave else own
            upstream += own
            clear_s = min(cfg.startup_lost_s + queue * cfg.saturation_headway_s, cfg.max_clear_s) if queue else 0.0
            need = eta_s - clear_s - cfg.margin_s
            target = service.alone
            if service.open is not None and key not in alone:
                # alone once the opposing movements must be stopping for the queue to discharge
                # (with ``lanes``: and the EV is on the approach in one of them, where a turning
                # vehicle waiting for a gap would hold it up)
                if snapshot.t_s >= need - j.yellow_s - j.all_red_s - 1.0 and (
                    service.lanes is None
                    or (vehicle is not None and vehicle.road_id == j.approach_edge and vehicle.lane_id in service.lanes)
                ):
                    alone.add(key)
                else:
                    target = service.open
            if (
                progression
                and previous_need is not None
                and previous_eta is not None
                and previous_need > snapshot.t_s
            ):
                # vehicles released ahead of the EV by the previous signal arrive here after the
                # free travel time between the two: be green for them, minus this queue's clearance
                need = min(need, previous_need + (eta_s - previous_eta) - clear_s)
            # (the next signal's progression follows this need: a green brought forward for a
            # queue that would back up here releases nothing the EV drives behind)
            progression_need = need
            if greenwave and previous_j is not None and previous_eta is not None and cfg.spillback_link_m > 0:
                spill = self._spillback_need(previous_j, previous_eta, j, own, snapshot)
                if spill is not None:
                    need = min(need, spill)
            start_now = False
            if cfg.mode == "local":
                distance = j.distance_m - position_m
                start_now = (cfg.detect_range_m is not None and distance <= cfg.detect_range_m) or (
                    cfg.detect_eta_s is not None and eta_s - snapshot.t_s <= cfg.detect_eta_s
                )
                if not start_now:
                    previous_need, previous_eta, previous_j = progression_need, eta_s, j
                    continue
            out.append(
                ServiceRequest(
                    ev_id, priority, j.tls_id, j.index, target, service.phase, eta_s, need, start_now, j.link_indices
                )
            )
            previous_need, previous_eta, previous_j = progression_need, eta_s, j
        return out

    def _spillback_need(
        self, a: CorridorJunction, eta_a_s: float, b: CorridorJunction, queue_b: int, snapshot: Snapshot
    ) -> float | None:
        """When signal ``b`` must be green so that its queue, backed up over the short street from
        the previous junction ``a`` of the route, is moving when the EV reaches ``a`` (ETA
        ``eta_a_s``): SUMO lets no vehicle enter a junction without room beyond it, and the EV
        stood on green at ``a`` for it (Ingolstadt 21, the long joined junction before gneJ207).
        None where the street is long, ``a`` and ``b`` are one signal, or the queue (``queue_b``
        per lane now, plus, where there is one, what ``a`` releases toward ``b`` until the EV gets
        there while it shows the EV's movement green, at the saturation headway) would not fill it."""
        cfg = self.config
        if b.index != a.index + 1 or a.tls_id == b.tls_id:
            return None
        street_m = b.distance_m - (a.distance_m + a.crossing_length_m)
        if street_m > cfg.spillback_link_m:
            return None
        t = snapshot.t_s
        signal = snapshot.signals.get(a.tls_id)
        released = 0.0
        # (only onto a queue there already: an empty street says what a sends toward b is light,
        # and counting a saturated flow into it held b for every EV in the NDS city)
        if queue_b > 0 and signal is not None and all(is_green(signal.state[i]) for i in a.link_indices):
            released = max(0.0, eta_a_s - t) / cfg.saturation_headway_s
        storage = math.ceil(max(street_m, 0.0) / cfg.queue_spacing_m)
        n = min(float(storage), queue_b + released)
        if n < storage - 1:
            return None  # room left for the EV when it gets to a
        clear_s = min(cfg.startup_lost_s + n * cfg.saturation_headway_s, cfg.max_clear_s)
        return eta_a_s - clear_s - cfg.margin_s

    def _stalled(self, ev: EvSetup, p: EvProgress, t_s: float) -> bool:
        """Has the EV stood still for ``stall_release_s`` (greenwave only), or waited that long
        since its dispatch for SUMO to put it on the road (its lane full: only its first signal,
        which can drain that lane, is of use to it then)?"""
        limit = self.config.stall_release_s
        if limit is None or self.config.mode != "greenwave":
            return False
        if p.depart_s is None:
            return t_s - ev.dispatch_s >= limit
        stop = p.open_stop
        return stop is not None and t_s - stop.start_s >= limit

    def _green_unused(self, ev: EvSetup, p: EvProgress, r: ServiceRequest, snapshot: Snapshot,
                      vehicle: VehicleState | None, t_s: float) -> bool:
        """Has the stalled EV stood still for ``stall_release_s`` while the signal of its next
        request ``r`` showed its movement green (switched for it), with no vehicle halted on
        that junction's approach lanes but the EV itself (a queue there, held up beyond, may
        need the green the moment it can move)? Once so, for the rest of that stop."""
        stop = p.open_stop
        limit = self.config.stall_release_s
        if stop is None or limit is None:
            return False
        ev_id = ev.ev_id
        if self._green_unused_stop.get(ev_id) == stop.start_s:
            return True
        since = self.planner.green_since(r.tls_id, r.key)
        if since is None or t_s - max(since, stop.start_s) < limit:
            return False
        j = ev.corridor.junctions[r.junction_index]
        for lane_id in j.approach_lanes:
            lane = snapshot.lanes.get(lane_id)
            own = 1 if ev.in_lanes and vehicle is not None and vehicle.lane_id == lane_id else 0
            if lane is not None and lane.halting - own > 0:
                return False
        self._green_unused_stop[ev_id] = stop.start_s
        return True

    def _holds(self, ev: EvSetup, p: EvProgress, r: ServiceRequest, t_s: float) -> bool:
        """Does request ``r``, for a junction the EV has crossed, go on: the EV's movement is
        permissive ('g') in the state serving it, its rear is not yet past the end of the
        crossing, the signal is switched for it, and a hand-back now would green more with the
        EV's movement still green (no yellow for it to clear the junction in)?"""
        j = ev.corridor.junctions[r.junction_index]
        return (
            any(r.target[i] == "g" for i in j.link_indices)
            and p.position_m is not None and p.arrived_s is None
            and p.position_m - ev.dynamics.length_m < j.distance_m + j.crossing_length_m
            and self.planner.handback_strands(r.tls_id, r.key, j.link_indices, t_s)
        )

    def _published(
        self, ev_id: str, t_s: float, waits: Sequence[QueueAhead], at_least: int, crossed: Mapping[int, float]
    ) -> list[Eta]:
        """The EV's ETAs at the signals ahead not yet crossed, with ``waits`` (see ``_switch_waits``)."""
        etas = self._predictors[ev_id].predict(t_s, waits, max_ahead_s=self.plan_horizon_s, at_least=at_least)
        return [e for e in etas if e.junction_index not in crossed]

    def _switch_waits(self, ev: EvSetup, snapshot: Snapshot, due: Mapping[int, float] | None) -> list[QueueAhead]:
        """Where a signal's switch-over to the EV's approach is under way and its movement is
        not green yet, the EV cannot cross before the switch-over shows it green (and it has
        pulled away from the line): the ETAs published and scored carry that wait, and every later
        junction the delay and the time lost pulling away again. The plan does not: it asks for
        green by when the EV could arrive, since a green that comes late stops it and one that
        comes early only costs others.
        ``due``: :meth:`Planner.green_due` for this EV."""
        if not due:
            return []
        t, junctions, signals = snapshot.t_s, ev.corridor.junctions, snapshot.signals
        step = self.config.planner.step_s  # (``due`` is when the green is first read; in force a step before)
        # only switch-overs for what the EV still asks for: after a re-route the planner may still
        # list an entry for a junction index of the old corridor until its next tick ends it
        requested = {r.junction_index for r in self._last_requests.get(ev.ev_id, ())}
        vehicle = snapshot.vehicles.get(ev.ev_id)
        out = []
        for index, due_s in due.items():
            if index not in requested:
                continue
            j = junctions[index]
            signal = signals.get(j.tls_id)
            if due_s <= t or signal is None or all(is_green(signal.state[i]) for i in j.link_indices):
                continue
            # on its approach, the queue ahead of it discharges first (the EV first in line
            # crosses once it has pulled away from where it waits)
            ahead = self._queue_ahead(j, snapshot, vehicle, ev.in_lanes) \
                if vehicle is not None and vehicle.road_id == j.approach_edge else 0
            # (not green yet: the queue starts with the green, its start-up lost time counted even
            # where that green is in force from now on)
            out.append(QueueAhead(index, ahead, max(due_s - step - t, 1e-6)))
        return out

    def _queue_ahead(self, j: CorridorJunction, snapshot: Snapshot, vehicle: VehicleState | None,
                     in_lanes: bool = True) -> int:
        """Vehicles per lane that must discharge at ``j`` before the EV can pass: on the EV's own
        approach only the halted ones (the others are behind it or moving with it); further
        ahead every vehicle on the approach lanes, which will be queued there if it is red when
        they arrive (this is what makes queues not cascade from junction to junction)."""
        # (explicit loops rather than max() over generators: this runs for every junction ahead
        # of every EV on every tick, and the compiled core runs loops natively)
        states = snapshot.lanes
        lanes = [states[ln] for ln in j.approach_lanes if ln in states]
        if not lanes:
            return 0
        most = 0
        on_approach = vehicle is not None and vehicle.road_id == j.approach_edge
        edge = self.network.edges.get(j.approach_edge) if on_approach else None
        # on the approach, no more halted vehicles than fit between the EV and the stop line (the
        # lane's count takes in the EV, where it stands in the queue, and those queued behind it)
        fit = 1 << 30
        if vehicle is not None and edge is not None:
            fit = math.floor(max(edge.length_m - vehicle.lane_pos_m, 0.0) / self.config.queue_spacing_m + 0.5)
        if not self.config.count_moving:
            for ln in lanes:
                most = max(most, min(ln.halting, fit))
            return most
        if vehicle is None or not on_approach:
            for ln in lanes:
                most = max(most, ln.vehicles)
            return most
        # on the approach: the halted vehicles are ahead of it, and of the others about the share
        # of the lane that lies ahead (uniform density)
        ahead = max(0.0, 1.0 - vehicle.lane_pos_m / edge.length_m) if edge and edge.length_m > 0 else 1.0
        for ln in lanes:
            # (the EV itself among them, where it is a vehicle of the simulation)
            moving = ln.vehicles - 1 if in_lanes and ln.lane_id == vehicle.lane_id else ln.vehicles
            most = max(max(most, min(ln.halting, fit)), round(moving * ahead))
        return most

    def stop(self, reason: str = "stopped") -> list[SignalCommand]:
        self.planner.stop(reason)
        return []
