"""PreemptionController (greenwave and local) on a hand-built network, without SUMO.

The network (all speeds 10 m/s, crossings of zero length)::

            N1                      (l1 → J3 → l2: an alternative route, signal T3)
            ^ l1 (200 m)
    W --e0 (500 m, 2 lanes)--> J1 --e1 (200 m)--> J2 --e2 (100 m)--> E
                               ^ c1 (cross)       ^ c2 (cross)
                               o1 (opposing, → w1)  o2 (opposing, → w2)

T1 (J1): link 0 e0_0→e1 (through), 1 e0_1→l1 (left, permissive 'g'), 2 o1→w1 (opposing
through), 3 c1→c1o (cross street). Phases GgGr 30, yyyr 3, rrrr 2, rrrG 30, rrry 4, rrrr 2.
T2 (J2): link 0 e1→e2, 1 o2→w2 (opposing through), 2 c2→c2o. GGr 25, yyr 3, rrr 2, rrG 25,
rry 3, rrr 2.  T3 (J3): link 0 l1→l2, 1 cross. Gr 25, yr 3, rr 2, rG 25, ry 3, rr 2.

Main route e0 e1 e2: stop lines J1 at 500 m, J2 at 700 m. The EV departs at 0 at t=0 and
drives at a constant 10 m/s: it reaches J1 at 50 s and J2 at 70 s, and its ETAs stay exactly
there (free flow, correction factor 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import pytest

from controller.core.corridor import Corridor, build_corridor
from controller.core.eta import EvDynamics
from controller.core.greenwave import ControllerConfig, EvSetup, PreemptionController, approach_targets
from controller.core.network import Connection, Edge, Lane, Network, Phase, Program
from controller.core.planner import PreemptionRecord, ServiceRequest
from controller.core.progress import EvProgress
from controller.core.safety import SafetyConfig, SignalWatch, Violation
from controller.core.snapshot import LaneState, SignalCommand, Snapshot, VehicleState
from controller.runtime.setup import signal_off_notes, single_track_notes
from tests.unit.test_planner import FakeSignal

SPEED = 10.0


def edge(edge_id: str, frm: str, to: str, length_m: float, lanes: int = 1) -> Edge:
    return Edge(
        edge_id, frm, to, length_m, SPEED,
        tuple(Lane(f"{edge_id}_{i}", edge_id, i, length_m, SPEED) for i in range(lanes)),
    )  # fmt: skip


def program(tls_id: str, *phases: tuple[str, float]) -> Program:
    return Program(tls_id, "0", "static", 0.0, tuple(Phase(s, d, d, d, min_dur_given=False) for s, d in phases))


T1 = program("T1", ("GgGr", 30), ("yyyr", 3), ("rrrr", 2), ("rrrG", 30), ("rrry", 4), ("rrrr", 2))
T2 = program("T2", ("GGr", 25), ("yyr", 3), ("rrr", 2), ("rrG", 25), ("rry", 3), ("rrr", 2))
T3 = program("T3", ("Gr", 25), ("yr", 3), ("rr", 2), ("rG", 25), ("ry", 3), ("rr", 2))


def make_network() -> Network:
    edges = [
        edge("e0", "W", "J1", 500, lanes=2),
        edge("e1", "J1", "J2", 200),
        edge("e2", "J2", "E", 100),
        edge("l1", "J1", "J3", 200),
        edge("l2", "J3", "N1", 100),
        edge("o1", "O1", "J1", 100),
        edge("w1", "J1", "O1b", 100),
        edge("c1", "S1", "J1", 100),
        edge("c1o", "J1", "N1b", 100),
        edge("o2", "O2", "J2", 100),
        edge("w2", "J2", "O2b", 100),
        edge("c2", "S2", "J2", 100),
        edge("c2o", "J2", "N2b", 100),
        edge("c3", "S3", "J3", 100),
        edge("c3o", "J3", "N3b", 100),
    ]

    def conn(frm: str, to: str, lane: int, junction: str, tls: str, link: int, d: str = "s") -> Connection:
        return Connection(frm, to, f"{frm}_{lane}", f"{to}_0", junction, tls, link, d, "", 0.0)

    conns = (
        conn("e0", "e1", 0, "J1", "T1", 0),
        conn("e0", "l1", 1, "J1", "T1", 1, "l"),
        conn("o1", "w1", 0, "J1", "T1", 2),
        conn("c1", "c1o", 0, "J1", "T1", 3),
        conn("e1", "e2", 0, "J2", "T2", 0),
        conn("o2", "w2", 0, "J2", "T2", 1),
        conn("c2", "c2o", 0, "J2", "T2", 2),
        conn("l1", "l2", 0, "J3", "T3", 0),
        conn("c3", "c3o", 0, "J3", "T3", 1),
    )
    return Network(
        edges={e.edge_id: e for e in edges},
        connections=conns,
        programs={"T1": T1, "T2": T2, "T3": T3},
        junction_types={"J1": "traffic_light", "J2": "traffic_light", "J3": "traffic_light"},
        source="hand.net.xml",
    )


NET = make_network()
MAIN = ("e0", "e1", "e2")
ALT = ("e0", "l1", "l2")
DYN = EvDynamics(max_speed_mps=SPEED, accel_mps2=2.6, decel_mps2=4.5)


def ev_at(corridor: Corridor, x: float, speed: float = SPEED, ev_id: str = "ev", lane: int = 0) -> VehicleState:
    """The EV at route position ``x`` (crossings have zero length: always on a route edge)."""
    for i in range(len(corridor.route) - 1, -1, -1):
        if x >= corridor.edge_offsets_m[i] - 1e-9:
            edge_id = corridor.route[i]
            return VehicleState(ev_id, edge_id, f"{edge_id}_{lane if i == 0 else 0}", x - corridor.edge_offsets_m[i],
                                speed, i, x)  # fmt: skip
    raise AssertionError(x)


LaneFn = Callable[[float], Mapping[str, LaneState]]


def no_queues(t: float) -> Mapping[str, LaneState]:
    return {"e0_0": LaneState("e0_0", 1, 0), "e1_0": LaneState("e1_0", 0, 0), "e2_0": LaneState("e2_0", 0, 0)}


def five_halted(t: float) -> Mapping[str, LaneState]:
    return {**no_queues(t), "e0_0": LaneState("e0_0", 5, 5)}


@dataclass
class CtrlRig:
    """A PreemptionController, one EV on a corridor, fake signals and safety watches."""

    ctrl: PreemptionController
    corridor: Corridor
    signals: dict[str, FakeSignal]
    lanes: LaneFn = no_queues
    t: float = 0.0
    x: float = 0.0
    progress: dict[str, EvProgress] = field(default_factory=dict)
    watches: dict[str, SignalWatch] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    commands: list[tuple[float, SignalCommand]] = field(default_factory=list)
    requests: list[tuple[float, list[ServiceRequest]]] = field(default_factory=list)
    hidden: set[str] = field(default_factory=set)  # signals left out of the next snapshot
    lane: int = 0  # the EV's lane on the first route edge
    speed_factors: dict[str, float] = field(default_factory=dict)  # as SUMO drew them

    def __post_init__(self) -> None:
        self.progress["ev"] = EvProgress("ev", self.corridor)
        for tls, s in self.signals.items():
            self.watches[tls] = SignalWatch(s.program, SafetyConfig())
        planner = self.ctrl.planner
        original = planner.tick

        def spy(t_s: float, requests: Iterable[ServiceRequest]) -> list[SignalCommand]:
            reqs = list(requests)
            self.requests.append((t_s, reqs))
            return original(t_s, reqs)

        planner.tick = spy  # type: ignore[method-assign]

    def step(self, *, present: bool = True, arrived: bool = False, moving: bool = True,
             teleporting: bool = False) -> list[SignalCommand]:
        t = self.t
        present = present and not teleporting
        vehicle = ev_at(self.corridor, self.x, SPEED if moving else 0.0, lane=self.lane) if present else None
        signals = {tls: s.signal_state() for tls, s in self.signals.items() if tls not in self.hidden}
        for tls, st_ in signals.items():
            self.violations += self.watches[tls].observe(t, st_.state, st_.program_id)
        snap = Snapshot(t, {"ev": vehicle} if vehicle is not None else {}, signals, self.lanes(t),
                        arrived=("ev",) if arrived else (),
                        teleporting=frozenset({"ev"}) if teleporting else frozenset(),
                        speed_factors=self.speed_factors)  # fmt: skip
        started = teleporting and self.progress["ev"].running and not self.progress["ev"].off_road
        self.progress["ev"].update(t, vehicle, arrived=arrived, teleporting=teleporting, teleport_started=started)
        cmds = self.ctrl.tick(snap, self.progress)
        for c in cmds:
            self.commands.append((t, c))
            self.signals[c.tls_id].apply(c)
        for s in self.signals.values():
            s.advance(1.0)
        self.t += 1.0
        if (present and moving) or teleporting:
            self.x += SPEED
        return cmds

    def run_until(self, t_end: float, *, present: bool = True) -> None:
        while self.t < t_end - 1e-9:
            self.step(present=present)

    def requests_at(self, t: float) -> list[ServiceRequest]:
        return next(reqs for tt, reqs in self.requests if tt == t)

    def first_command_s(self, tls: str) -> float | None:
        return next((t for t, c in self.commands if c.tls_id == tls), None)

    def reroute(self, route: Sequence[str]) -> Corridor:
        corridor = build_corridor(NET, route)
        old = self.progress["ev"]
        self.progress["ev"] = EvProgress("ev", corridor, depart_s=old.depart_s, stops=old.stops)
        self.corridor = corridor
        self.ctrl.reroute("ev", corridor)
        return corridor

    def safety(self) -> list[Violation]:
        return [v for v in self.violations if v.rule in ("S1", "S2", "S3", "S4")]


def make_rig(
    config: ControllerConfig | None = None,
    lanes: LaneFn = no_queues,
    route: Sequence[str] = MAIN,
    ev_type: str = "ambulance",
) -> CtrlRig:
    corridor = build_corridor(NET, route)
    ctrl = PreemptionController(NET, [EvSetup("ev", ev_type, corridor, DYN, 0.0)], config)
    # the cross streets are green when the EV departs, for long (60 s at T1, 80 s at T2)
    signals = {
        "T1": FakeSignal(T1, 3, 60.0),
        "T2": FakeSignal(T2, 3, 80.0),
        "T3": FakeSignal(T3, 3, 80.0),
    }
    return CtrlRig(ctrl, corridor, signals, lanes)


# --- the corridor and the targets ---------------------------------------------------------------


def test_corridor_of_the_hand_built_network() -> None:
    c = build_corridor(NET, MAIN)
    assert [(j.tls_id, j.link_indices, j.approach_lanes, j.distance_m) for j in c.junctions] == [
        ("T1", (0,), ("e0_0",), 500.0),
        ("T2", (0,), ("e1_0",), 700.0),
    ]
    alt = build_corridor(NET, ALT)
    assert [(j.tls_id, j.link_indices, j.distance_m) for j in alt.junctions] == [
        ("T1", (1,), 500.0),
        ("T3", (0,), 700.0),
    ]


def test_approach_targets_drops_opposing_movements_when_the_approach_is_permissive() -> None:
    main = build_corridor(NET, MAIN)
    # T1: the approach's left turn (link 1) is only permissive in phase 0: the opposing
    # through (link 2) it yields to is dropped; the cross street is red anyway
    assert approach_targets(NET, T1, main.junctions[0]) == ("Ggrr", 0)
    # the left-turning EV: same approach, same exclusive target
    alt = build_corridor(NET, ALT)
    assert approach_targets(NET, T1, alt.junctions[0]) == ("Ggrr", 0)
    # T2: the approach is fully protected ('G'): the whole phase, opposing through included
    assert approach_targets(NET, T2, main.junctions[1]) == ("GGr", 0)
    # not exclusive: the through EV keeps the opposing through green (the phase's own greens);
    # the left-turning EV, whose own movement waits for gaps, still gets the approach alone
    assert approach_targets(NET, T1, main.junctions[0], exclusive=False) == (T1.phases[0].state, 0)
    assert T1.phases[0].state != "Ggrr"
    assert approach_targets(NET, T1, alt.junctions[0], exclusive=False) == ("Ggrr", 0)
    # a stop-then-go 's' of another approach (a right turn on red) goes as a permissive green does:
    # red where the approach is served alone (it was kept whatever), kept where the phase's greens are
    t1s = program("T1", ("GgGs", 30), ("yyys", 3), ("rrrs", 2), ("rrrG", 30), ("rrry", 4), ("rrrr", 2))
    assert approach_targets(NET, t1s, main.junctions[0]) == ("Ggrr", 0)
    assert approach_targets(NET, t1s, main.junctions[0], exclusive=False) == ("GgGs", 0)
    # 'o' or 'O' (the signal off there) stays as the phase shows it, the approach served alone too
    t1o = program("T1", ("GgGO", 30), ("yyyO", 3), ("rrrO", 2), ("rrrO", 30), ("rrrO", 4), ("rrrO", 2))
    assert approach_targets(NET, t1o, main.junctions[0]) == ("GgrO", 0)


def test_approach_targets_keep_an_always_green_movement_and_never_hold_a_single_tracks_entry() -> None:
    main = build_corridor(NET, MAIN)
    # T1's cross street (link 3) protected green in every phase: kept green where the approach is
    # served alone (a police car on it makes no request, the program never stopping it, and met
    # yellow and red for the ambulance's service; a multi-EV review)
    t1g = program("T1", ("GgGG", 30), ("yyyG", 3), ("rrrG", 2), ("rrrG", 30), ("rrrG", 4), ("rrrG", 2))
    assert approach_targets(NET, t1g, main.junctions[0]) == ("GgrG", 0)
    # the opposing through (link 2) onto a single track (w1 has a bidi edge): red under the
    # preemption, whatever the phase shows (held green for the ambulance's through, it let a tram
    # onto a track its program would have closed)
    edges = {**NET.edges, "w1": replace(NET.edges["w1"], bidi="w1r")}
    net = Network(edges, NET.connections, NET.programs, NET.junction_types, source="hand.net.xml")
    assert approach_targets(net, T1, main.junctions[0], exclusive=False) == ("Ggrr", 0)
    assert approach_targets(NET, T1, main.junctions[0], exclusive=False) == (T1.phases[0].state, 0)
    # also a turn off the EV's own approach onto a single track (l1), the EV going straight on: it
    # was exempt as a link of the approach
    edges = {**NET.edges, "l1": replace(NET.edges["l1"], bidi="l1r")}
    net = Network(edges, NET.connections, NET.programs, NET.junction_types, source="hand.net.xml")
    assert approach_targets(net, T1, main.junctions[0], exclusive=False) == ("GrGr", 0)


def test_approach_targets_can_hold_a_permissive_turn_across_the_evs_path() -> None:
    # T2 with a left turn from the opposite approach (link 3, o2 -> c2o), permissive with the
    # EV's through (link 0) and across it: held red with hold_crossing_turns, the opposing
    # through (link 1) kept; by default the phase's greens
    prog = program("T2", ("GGrg", 25), ("yyry", 3), ("rrrr", 2), ("rrGr", 25), ("rryr", 3), ("rrrr", 2))
    turn = Connection("o2", "c2o", "o2_0", "c2o_0", "J2", "T2", 3, "l", "", 0.0, foe_links=(0,))
    through = [replace(c, foe_links=(3,)) if (c.tls_id, c.link_index) == ("T2", 0) else c for c in NET.connections]
    net = Network(NET.edges, (*through, turn), {**NET.programs, "T2": prog}, NET.junction_types)
    j = build_corridor(net, MAIN).junctions[1]
    assert approach_targets(net, prog, j, hold_crossing_turns=True) == ("GGrr", 0)
    assert approach_targets(net, prog, j, exclusive=False, hold_crossing_turns=True) == ("GGrr", 0)
    assert approach_targets(net, prog, j) == ("GGrg", 0)
    # without the net's right-of-way data nothing says it crosses: the phase's greens
    plain = Network(NET.edges, (*NET.connections, replace(turn, foe_links=())), {**NET.programs, "T2": prog},
                    NET.junction_types)
    assert approach_targets(plain, prog, build_corridor(plain, MAIN).junctions[1], hold_crossing_turns=True) == (
        "GGrg", 0)
    # the controller's own service of that junction follows the setting
    ev = EvSetup("ev", "ambulance", build_corridor(net, MAIN), DYN, 0.0)
    held = PreemptionController(net, [ev], ControllerConfig(hold_crossing_turns=True))
    assert held._service[("ev", 1)].alone == "GGrr"
    assert PreemptionController(net, [ev])._service[("ev", 1)].alone == "GGrg"


def test_approach_targets_prefers_the_phase_that_flushes_the_whole_approach() -> None:
    # phase 0 greens only the through link, phase 2 the through and the left of the approach
    prog = program("T1", ("Grrr", 40), ("yrrr", 3), ("GGrr", 10), ("yyrr", 3), ("rrrG", 30), ("rrry", 3))
    net = Network(NET.edges, NET.connections, {**NET.programs, "T1": prog}, NET.junction_types)
    j = build_corridor(net, MAIN).junctions[0]
    assert j.green_phases == (0, 2)
    assert approach_targets(net, prog, j) == ("GGrr", 2)


# --- greenwave: need times and entry ------------------------------------------------------------


def test_greenwave_need_is_eta_minus_queue_discharge_minus_margin() -> None:
    cfg = ControllerConfig()  # margin 3, start-up lost 2, headway 2
    r = make_rig(cfg, five_halted)
    r.step()
    j1, j2 = r.requests_at(0.0)
    # (at 0 the opposing through keeps its green: see the next test)
    assert (j1.tls_id, j1.target, j1.phase, j1.priority) == ("T1", "GgGr", 0, 1)
    assert j1.eta_s == pytest.approx(50.0)
    assert j1.need_green_by_s == pytest.approx(50.0 - (2.0 + 5 * 2.0) - 3.0)  # 35
    # J2 has no queue: ETA 70 - margin 3 = 67, but with progression it turns green for what J1
    # releases ahead of the EV: 35 + (70 - 50) - 0 = 55
    assert j2.eta_s == pytest.approx(70.0)
    assert j2.need_green_by_s == pytest.approx(55.0)
    assert not j1.start_now and not j2.start_now


def test_the_approach_is_served_alone_from_when_its_queue_must_discharge() -> None:
    # T1's phase 0 "GgGr": the EV's approach (link 0 through, link 1 a permissive left) and the
    # opposing through (link 2) the left turn yields to. Need 35 (five halted): until the
    # opposing through must be stopping (35 - yellow 3 - all red 2 - 1 = 29) it keeps the
    # phase's green; from then on the approach is served alone, also if the need moves later.
    def t1_targets(cfg: ControllerConfig, lane: int = 0) -> dict[float, str]:
        r = make_rig(cfg, five_halted)
        r.lane = lane
        r.run_until(45)
        assert r.violations == []
        return {t: q.target for t, reqs in r.requests for q in reqs if q.tls_id == "T1"}

    targets = t1_targets(ControllerConfig(exclusive_service="discharge"))
    alone = sorted(t for t, target in targets.items() if target == "Ggrr")
    assert 28.0 <= alone[0] <= 30.0 and alone == [t for t in sorted(targets) if t >= alone[0]]
    assert {targets[t] for t in targets if t < alone[0]} == {"GgGr"}
    assert set(t1_targets(ControllerConfig(exclusive_service="whole")).values()) == {"Ggrr"}
    assert set(t1_targets(ControllerConfig(exclusive_service="own-turn")).values()) == {"GgGr"}
    # "ev-lane" (the default): alone only with the EV in a lane a permissive turn leaves from
    # (e0's lane 1 carries the left turn; lane 0 only the through movement)
    assert set(t1_targets(ControllerConfig()).values()) == {"GgGr"}
    assert t1_targets(ControllerConfig(), lane=1) == targets
    # ... or on an approach too short to tell the EV's lane in time (e0 is 500 m long)
    assert t1_targets(ControllerConfig(short_approach_m=600.0)) == targets
    with pytest.raises(ValueError, match="exclusive_service"):
        PreemptionController(NET, [], ControllerConfig(exclusive_service="sometimes"))  # type: ignore[arg-type]


def test_greenwave_without_progression_or_queue() -> None:
    r = make_rig(ControllerConfig(progression=False))
    r.step()
    j1, j2 = r.requests_at(0.0)
    assert j1.need_green_by_s == pytest.approx(47.0) and j2.need_green_by_s == pytest.approx(67.0)


def test_a_queue_that_would_back_up_to_the_previous_junction_is_moving_when_the_ev_gets_there() -> None:
    # e1 (J1 to J2) is 200 m: counted as a short street here, storing 5 vehicles at 40 m each.
    # SUMO lets no vehicle enter J1 without room beyond it: with J2's queue filling e1 the EV
    # would stand on green at J1 (Ingolstadt 21). J1's ETA 50: J2 green by 50 - (2 + n x 2) - 3.
    def j2_need(vehicles: int, *, t1_green: bool = False, link_m: float = 250.0) -> float:
        def lanes(t: float) -> Mapping[str, LaneState]:
            return {**no_queues(t), "e1_0": LaneState("e1_0", vehicles, vehicles)}

        r = make_rig(ControllerConfig(progression=False, spillback_link_m=link_m, queue_spacing_m=40.0), lanes)
        if t1_green:  # J1 shows the EV's movement: what it releases toward J2 adds to the queue
            r.signals["T1"] = FakeSignal(T1, 0, 30.0)
        r.step()
        j1, j2 = r.requests_at(0.0)
        assert j1.eta_s == pytest.approx(50.0) and j2.eta_s == pytest.approx(70.0)
        return j2.need_green_by_s

    assert j2_need(4) == pytest.approx(50.0 - (2.0 + 4 * 2.0) - 3.0)  # 4 of 5: full but for the EV
    assert j2_need(3) == pytest.approx(70.0 - (2.0 + 3 * 2.0) - 3.0)  # room left: its own queue only
    # J1 green for 50 s releases up to 25 vehicles at 2 s each onto a queue there: e1 full (5) by
    # the time the EV comes; onto an empty street (a light flow) it is not counted
    assert j2_need(1, t1_green=True) == pytest.approx(50.0 - (2.0 + 5 * 2.0) - 3.0)
    assert j2_need(1) == pytest.approx(70.0 - (2.0 + 1 * 2.0) - 3.0)
    assert j2_need(0, t1_green=True) == j2_need(0) == pytest.approx(67.0)
    # a street longer than spillback_link_m, or the rule off (0): its own queue only
    assert j2_need(4, link_m=150.0) == j2_need(4, link_m=0.0) == pytest.approx(70.0 - (2.0 + 4 * 2.0) - 3.0)
    for bad in ({"spillback_link_m": -1.0}, {"queue_spacing_m": 0.0}, {"queue_spacing_m": float("nan")},
                {"saturation_headway_s": 0.0}):
        with pytest.raises(ValueError, match="spillback_link_m must be"):
            PreemptionController(NET, [], ControllerConfig(**bad))  # type: ignore[arg-type]


def test_greenwave_first_junction_enters_earlier_with_a_queue() -> None:
    # The cross street has been green at T1 since 0 (well past its 5 s minimum): showing the
    # EV's approach takes 1 + 4 (yellow) + 2 (clearance) = 7 s, so entry starts when
    # t + 7 + slack 1 >= need: at 39 for need 47 (no queue), at 27 for need 35 (5 halted).
    empty = make_rig(ControllerConfig(progression=False))
    empty.run_until(60)
    queued = make_rig(ControllerConfig(progression=False), five_halted)
    queued.run_until(60)
    entries = [next(rec.entry_s for rec in _all_records(r) if rec.tls_id == "T1") for r in (empty, queued)]
    assert entries == [39.0, 27.0]
    assert empty.first_command_s("T1") == 39.0 and queued.first_command_s("T1") == 27.0
    for r, shown_at in ((empty, 46.0), (queued, 34.0)):
        rec = next(rec for rec in _all_records(r) if rec.tls_id == "T1")
        assert rec.dwell_s == shown_at  # entry + 7
        assert r.progress["ev"].crossed_s[0] == pytest.approx(50.0)
        assert r.safety() == []


def _all_records(r: CtrlRig) -> list[PreemptionRecord]:
    return r.ctrl.planner.records(include_open=True)


def test_records_of_a_signal_still_preempted_are_listed_only_on_request() -> None:
    # run's summary lists a signal the drain limit left preempted (no restore), not one armed
    r = make_rig(ControllerConfig(progression=False))
    r.run_until(50)  # T1 entered at 39 and shows the EV green; T2 armed, not entered
    p = r.ctrl.planner
    assert p.stage("T1") == "dwell" and p.stage("T2") == "armed"
    assert p.records() == []
    [rec] = p.records(include_open=True)
    assert (rec.tls_id, rec.entry_s, rec.restored_s) == ("T1", 39.0, None)
    assert rec.as_dict()["preempted_s"] is None
    r.run_until(120)  # crossed and handed back: the same record, now closed
    assert [(x.tls_id, x.entry_s) for x in p.records(include_open=True)] == [
        (x.tls_id, x.entry_s) for x in p.records()] and p.records()[0] is rec


def test_greenwave_ev_passes_on_green_and_signals_are_handed_back() -> None:
    r = make_rig()
    shown: list[tuple[float, str, str]] = []
    while r.t < 200:
        shown.append((r.t, r.signals["T1"].display(), r.signals["T2"].display()))
        r.step(present=r.x < 800, arrived=r.x == 800)  # the route ends at 800 m (t = 80)
    assert r.progress["ev"].arrived_s == 80.0 and "ev" not in r.ctrl.cancelled
    # at each crossing the EV's link is green
    at = {t: (s1, s2) for t, s1, s2 in shown}
    assert at[50.0][0][0] == "G" and at[70.0][1][0] == "G"
    recs = r.ctrl.planner.records()
    assert {rec.tls_id for rec in recs} == {"T1", "T2"}
    assert all(rec.restored_s is not None for rec in recs)
    assert not r.ctrl.busy and all(s.online is None for s in r.signals.values())
    assert r.safety() == []


def test_an_ev_sumo_teleports_is_not_cancelled_and_is_served_again_once_back_on_the_road() -> None:
    # off the road from 40 s to 55 s (SUMO moves it on meanwhile, from 400 m to 550 m, past T1's
    # stop line at 500 m): T1, switched for it, goes back to its program at once; back on, T2
    # is served; the EV has not vanished (it was cancelled as vanished, its escort dropped)
    r = make_rig()
    while r.t < 120:
        r.step(present=r.x < 800, arrived=r.x == 800, teleporting=40 <= r.t < 55)
    p = r.progress["ev"]
    assert (p.arrived_s, p.vanished_s, p.teleports) == (80.0, None, 1) and "ev" not in r.ctrl.cancelled
    assert all(q.ev_id != "ev" for t, reqs in r.requests if 40 <= t < 55 for q in reqs)
    t1 = [rec for rec in r.ctrl.planner.records() if rec.tls_id == "T1"]
    assert [rec.exit_reason for rec in t1] == ["teleported by SUMO"] and t1[0].exit_s == 40.0
    t2 = [rec for rec in r.ctrl.planner.records() if rec.tls_id == "T2"]
    assert [rec.exit_reason for rec in t2] == ["crossed"]
    assert p.crossed_s[0] == 55.0 and p.passed_off_road == {0}  # T1 passed off the road: first seen past it
    assert not r.ctrl.busy and r.safety() == []


def test_the_ev_is_predicted_at_the_speed_factor_sumo_drew_for_it_not_its_types_mean() -> None:
    # its type's speed factor is 0.8 on average (speedDev): predicted at 8 m/s, the EV was due at
    # J1 (500 m) at 62.5 s, and no online correction learns that it is faster; SUMO drew 1.0 for
    # it (it drives the limit, 10 m/s): it is predicted there at 50 s from its first tick on
    corridor = build_corridor(NET, MAIN)
    slow = replace(DYN, speed_factor=0.8)
    for factors, due in (({}, 62.5), ({"ev": 1.0}, 50.0)):
        ctrl = PreemptionController(NET, [EvSetup("ev", "ambulance", corridor, slow, 0.0)])
        r = CtrlRig(ctrl, corridor, {"T1": FakeSignal(T1, 0, 30.0), "T2": FakeSignal(T2, 0, 25.0)},
                    speed_factors=factors)
        r.run_until(3)
        eta = next(e for e in ctrl.etas("ev") if e.junction_index == 0)
        assert eta.eta_s == pytest.approx(due, abs=0.6), (factors, eta)
    assert ctrl.evs["ev"].dynamics.speed_factor == 1.0


def _driven(net: Network, corridor: Corridor, t2: Program, mode: Literal["greenwave", "local"]) -> CtrlRig:
    """The EV driven along ``corridor`` of ``net`` to 150 s, T1 and T2 (with the program ``t2``)
    on their cross streets' greens when it departs."""
    ctrl = PreemptionController(net, [EvSetup("ev", "ambulance", corridor, DYN, 0.0)], ControllerConfig(mode=mode))
    r = CtrlRig(ctrl, corridor, {"T1": FakeSignal(T1, 3, 60.0), "T2": FakeSignal(t2, 3, 80.0)})
    while r.t < 150:
        r.step(present=r.x < 800, arrived=r.x == 800)
    return r


@pytest.mark.parametrize("mode", ["greenwave", "local"])
def test_a_signal_letting_the_ev_onto_a_single_track_is_left_to_its_program(
        mode: Literal["greenwave", "local"]) -> None:
    # e2, the edge T2 lets the EV onto, is a single track (its bidi edge e2r runs the other way
    # over the same lane): T2's program lets one end in at a time; a green held for the EV could
    # send it head-on into a vehicle on the section (Berlin's tram signal: two trams met there)
    edges = {**NET.edges, "e2": replace(NET.edges["e2"], bidi="e2r")}
    net = Network(edges, NET.connections, NET.programs, NET.junction_types, source="hand.net.xml")
    corridor = build_corridor(net, MAIN)
    assert [j.single_track for j in corridor.junctions] == ["", "e2r"]
    r = _driven(net, corridor, T2, mode)
    assert r.first_command_s("T1") is not None and r.first_command_s("T2") is None
    assert all(q.tls_id == "T1" for _t, reqs in r.requests for q in reqs)
    assert r.safety() == []
    [note] = single_track_notes("ev", corridor)
    assert "'T2'" in note and "e2" in note and "bidi edge e2r" in note and "left to its program" in note
    assert single_track_notes("ev", build_corridor(NET, MAIN)) == []


@pytest.mark.parametrize("mode", ["greenwave", "local"])
def test_a_link_the_program_shows_off_is_kept_so_and_a_signal_switching_one_off_is_left_alone(
        mode: Literal["greenwave", "local"]) -> None:
    # T2's link 1 shown 'O' (the signal off there: the junction's right of way alone) in every
    # phase: the preemption keeps it 'O' (it was set 'r' at the entry, with no yellow, and given
    # back at the hand-back); 's' (stop, then go) likewise. Where the program switches link 1
    # between 'O' and signalled, the signal is left to its program, with a note.
    for off in "Os":
        t2 = program("T2", (f"G{off}r", 25), (f"y{off}r", 3), (f"r{off}r", 2), (f"r{off}G", 25), (f"r{off}y", 3),
                     (f"r{off}r", 2))
        net = Network(NET.edges, NET.connections, {**NET.programs, "T2": t2}, NET.junction_types)
        corridor = build_corridor(net, MAIN)
        assert [j.signal_off for j in corridor.junctions] == ["", ""]
        ctrl = PreemptionController(net, [EvSetup("ev", "ambulance", corridor, DYN, 0.0)],
                                    ControllerConfig(mode=mode))
        r = CtrlRig(ctrl, corridor, {"T1": FakeSignal(T1, 3, 60.0), "T2": FakeSignal(t2, 3, 80.0)})
        shown = set()
        while r.t < 150:
            r.step(present=r.x < 800, arrived=r.x == 800)
            shown.add(r.signals["T2"].display())
        commanded = {c.state[1] for _t, c in r.commands if c.tls_id == "T2" and c.state}
        assert r.first_command_s("T2") is not None and commanded == {off}, r.commands
        assert {s[1] for s in shown} == {off} and r.safety() == []
    # (off blinking in some phases and off in others: SUMO switches them with no yellow too)
    t2 = program("T2", ("Gor", 25), ("yor", 3), ("ror", 2), ("rOG", 25), ("rOy", 3), ("rOr", 2))
    assert [j.signal_off for j in build_corridor(Network(NET.edges, NET.connections, {**NET.programs, "T2": t2},
                                                         NET.junction_types), MAIN).junctions] == [
        "", "link 1 is 'o' (off) in phase 0 and 'O' in phase 3"]
    t2 = program("T2", ("GGr", 25), ("yyr", 3), ("rrr", 2), ("rOG", 25), ("rOy", 3), ("rrr", 2))
    net = Network(NET.edges, NET.connections, {**NET.programs, "T2": t2}, NET.junction_types)
    corridor = build_corridor(net, MAIN)
    assert [j.signal_off for j in corridor.junctions] == ["", "link 1 is 'O' (off) in phase 3 and 'G' in phase 0"]
    r = _driven(net, corridor, t2, mode)
    assert r.first_command_s("T1") is not None and r.first_command_s("T2") is None and r.safety() == []
    [note] = signal_off_notes("ev", corridor)
    assert "'T2'" in note and "left to its program" in note and "link 1 is 'O'" in note


@pytest.mark.parametrize("mode", ["greenwave", "local"])
def test_a_signal_that_never_stops_the_ev_is_not_preempted(mode: Literal["greenwave", "local"]) -> None:
    # T2 shows the EV's link (0) protected green in every phase, its yellows and all-reds too: a
    # preemption held its cross street red past the program's switch for nothing (NDS city)
    t2 = program("T2", ("GGr", 25), ("Gyr", 3), ("Grr", 2), ("GrG", 25), ("Gry", 3), ("Grr", 2))
    net = Network(NET.edges, NET.connections, {**NET.programs, "T2": t2}, NET.junction_types, source="hand.net.xml")
    corridor = build_corridor(net, MAIN)
    assert [j.never_red for j in corridor.junctions] == [False, True]
    assert not build_corridor(NET, MAIN).junctions[1].never_red
    ctrl = PreemptionController(net, [EvSetup("ev", "ambulance", corridor, DYN, 0.0)], ControllerConfig(mode=mode))
    r = CtrlRig(ctrl, corridor, {"T1": FakeSignal(T1, 3, 60.0), "T2": FakeSignal(t2, 3, 80.0)})
    while r.t < 120:
        r.step(present=r.x < 800, arrived=r.x == 800)
    assert r.progress["ev"].arrived_s == 80.0
    assert r.first_command_s("T1") is not None and r.first_command_s("T2") is None
    assert {rec.tls_id for rec in r.ctrl.planner.records()} == {"T1"}
    assert all(q.tls_id == "T1" for _t, reqs in r.requests for q in reqs)
    assert r.safety() == []


def test_eta_log_records_predictions_and_tags_the_entry_tick() -> None:
    r = make_rig(ControllerConfig(progression=False))
    r.run_until(45)
    records = r.ctrl.eta_log.records
    assert {(rec.t_s, rec.junction_index) for rec in records} == {(float(t), j) for t in range(45) for j in (0, 1)}
    assert all(rec.eta_s == pytest.approx(50.0 if rec.junction_index == 0 else 70.0) for rec in records)
    tagged = [(rec.t_s, rec.junction_index) for rec in records if rec.tag]
    assert tagged == [(39.0, 0)]
    assert all(rec.tag == "entry" for rec in records if rec.tag)


def test_without_an_eta_log_the_controller_switches_the_same() -> None:
    logged = make_rig(ControllerConfig(progression=False))
    corridor = build_corridor(NET, MAIN)
    quiet = make_rig(ControllerConfig(progression=False))
    quiet.ctrl = PreemptionController(NET, [EvSetup("ev", "ambulance", corridor, DYN, 0.0)],
                                      ControllerConfig(progression=False), record_etas=False)
    for rig in (logged, quiet):
        rig.run_until(45)
    ahead = [e.eta_s for e in logged.ctrl.etas("ev")]
    assert ahead and [e.eta_s for e in quiet.ctrl.etas("ev")] == ahead
    for rig in (logged, quiet):
        rig.run_until(80)
    assert quiet.commands == logged.commands and logged.commands
    assert quiet.ctrl.eta_log.records == () and logged.ctrl.eta_log.records


# --- local mode ---------------------------------------------------------------------------------


def test_local_switches_only_within_detection_range_then_at_once() -> None:
    r = make_rig(ControllerConfig(mode="local"))  # 300 m: J1 from x = 200 (t = 20), J2 from t = 40
    r.run_until(20)
    assert r.commands == [] and all(reqs == [] for _, reqs in r.requests)
    r.step()
    (req,) = r.requests_at(20.0)
    assert req.tls_id == "T1" and req.start_now
    assert [(c.tls_id, c.state) for _, c in r.commands] == [("T1", "rrry")]  # the entry starts now
    r.run_until(40)
    assert r.first_command_s("T2") is None
    r.step()
    assert r.first_command_s("T2") == 40.0
    # T1: cross yellow 21..24, all red 25..26, the EV's approach at 27 with the phase's opposing
    # through, which keeps its green: the EV is in the through lane, no turn ahead can hold it up
    assert r.signals["T1"].display() == "GgGr"
    r.run_until(46)
    assert r.signals["T1"].display() == "GgGr"
    assert r.safety() == []
    stopped = r.progress["ev"].time_stopped_s(46.0)
    assert stopped == 0.0 and type(stopped) is float  # (no stop: was int 0 in the Python files)


def test_local_eta_threshold_variant() -> None:
    # range 50 m would detect at t = 45; ETA 50 - t <= 20 detects at t = 30
    r = make_rig(ControllerConfig(mode="local", detect_range_m=50.0, detect_eta_s=20.0))
    r.run_until(31)
    assert r.first_command_s("T1") == 30.0
    assert [reqs for t, reqs in r.requests if t < 30] == [[]] * 30
    # the variant alone (no range, as controller_config makes --detect-eta alone): ETA 5 s at t = 45,
    # not the default 300 m range at t = 20
    r = make_rig(ControllerConfig(mode="local", detect_range_m=None, detect_eta_s=5.0))
    r.run_until(46)
    assert r.first_command_s("T1") == 45.0


def test_detect_eta_alone_replaces_the_range_and_with_one_either_triggers() -> None:
    from controller.runtime.run import controller_config

    assert controller_config({}).detect_range_m == 300.0 and controller_config({}).detect_eta_s is None
    alone = controller_config({"detect_eta_s": 20.0})
    assert alone.detect_range_m is None and alone.detect_eta_s == 20.0
    both = controller_config({"detect_eta_s": 20.0, "detect_range_m": 150.0})
    assert both.detect_range_m == 150.0 and both.detect_eta_s == 20.0


def test_published_etas_wait_for_a_switch_over_under_way_but_the_plan_does_not() -> None:
    # detected 50 m out at t = 45: the cross street's yellow shows 46..49, the red clearance 50..51,
    # the EV's approach 52 (read then: in force from 51, the vehicles moving under it in the step
    # before); waiting 1 m before the line, the EV cannot cross J1 before 51 + 0.88 s from rest
    # (it was 54: 2 s of start-up lost time, which is the queue's ahead, and the step), and J2
    # after a 1.88 s wait, against the 3.03 s a stop and start cost at 10 m/s: it crosses J1 at
    # 10 × (1 − 1.88 / 3.03) m/s and reaches 10 m/s again within 200 m
    r = make_rig(ControllerConfig(mode="local", detect_range_m=50.0))
    r.run_until(46)
    (req,) = r.requests_at(45.0)
    assert req.eta_s == pytest.approx(50.0)  # the plan: when the EV could arrive
    published = [(e.junction_index, e.eta_s) for e in r.ctrl.etas("ev")]
    j1 = 51.0 + math.sqrt(2.0 / 2.6)
    v = 10.0 * (1.0 - (j1 - 50.0) / (10.0 / 9.0 + 10.0 / 5.2))
    j2 = j1 + (10 - v) / 2.6 + (200 - (100 - v * v) / 5.2) / 10
    assert published == [(0, pytest.approx(j1)), (1, pytest.approx(j2))]
    entry = [rec for rec in r.ctrl.eta_log.records if rec.tag == "entry"]
    assert [(rec.t_s, rec.junction_index, rec.eta_s) for rec in entry] == [(45.0, 0, pytest.approx(j1))]
    r.run_until(49)
    assert r.ctrl.etas("ev")[0].eta_s == pytest.approx(j1)
    # nothing under way at T2, and none once the approach is green: the ETAs are the EV's own
    r = make_rig(ControllerConfig(mode="local", detect_range_m=300.0))
    r.run_until(30)
    assert r.signals["T1"].display()[0] == "G"
    assert [e.eta_s for e in r.ctrl.etas("ev")] == [pytest.approx(50.0), pytest.approx(70.0)]


# --- cancel, vanish, reroute --------------------------------------------------------------------


def _handed_back(r: CtrlRig, tls: str) -> bool:
    return r.ctrl.planner.stage(tls) == "idle" and r.signals[tls].online is None


def test_vanished_ev_releases_its_signals() -> None:
    r = make_rig(ControllerConfig(mode="local", exclusive_service="whole"))
    r.run_until(42)
    assert r.ctrl.planner.stage("T1") == "dwell" and r.ctrl.planner.stage("T2") == "entry"
    r.run_until(80, present=False)  # gone (teleported away), not arrived
    assert "ev" in r.ctrl.cancelled
    assert _handed_back(r, "T1") and _handed_back(r, "T2") and not r.ctrl.busy
    assert all(reqs == [] for t, reqs in r.requests if t >= 42)
    assert {rec.exit_s for rec in r.ctrl.planner.records()} == {42.0}
    assert r.safety() == []


def test_cancel_releases_the_signals() -> None:
    r = make_rig(ControllerConfig(mode="local"))
    r.run_until(42)
    r.ctrl.cancel("ev")
    r.run_until(80)
    assert _handed_back(r, "T1") and _handed_back(r, "T2") and not r.ctrl.busy
    assert [t for t, c in r.commands if c.kind == "restore"] != []
    assert r.safety() == []


def test_reroute_hands_back_signals_no_longer_on_the_route() -> None:
    r = make_rig(ControllerConfig(mode="local"))
    r.run_until(42)  # T1 dwell, T2 entry
    assert r.ctrl.planner.stage("T2") == "entry"
    r.reroute(ALT)  # at x = 420 on e0: now turning left at J1 onto l1, then T3
    r.run_until(48)
    assert r.ctrl.planner.stage("T2") in ("exit", "idle")
    assert all(q.tls_id != "T2" for t, reqs in r.requests if t >= 42 for q in reqs)
    t2_recs = [rec for rec in r.ctrl.planner.records() if rec.tls_id == "T2"]
    assert t2_recs and t2_recs[0].exit_s == 42.0
    assert r.ctrl.planner.stage("T1") == "dwell"  # still needed: the left turn is in its target
    r.run_until(60)
    assert _handed_back(r, "T2")
    assert "T3" in r.ctrl.planner.junctions and r.first_command_s("T3") == 42.0
    assert r.safety() == []


@pytest.mark.parametrize("switched", [True, False])
def test_a_reroute_keeps_the_opposing_approach_red_where_the_signal_has_cleared_it(switched: bool) -> None:
    # The EV turning left at J1 (ALT, from e0's lane 1) gets the approach alone ("Ggrr": its own
    # movement is permissive). Re-routed straight on (MAIN) from lane 0, the open service
    # ("GgGr") would show the opposing through (link 2) green again, to be cleared once more
    # if the EV turned back. Where T1 is switched for it, the new movement is served alone;
    # where T1 is still in its program (armed), the open service as for any EV.
    r = make_rig(route=ALT)
    r.lane = 1
    at = 44.0 if switched else 20.0
    r.run_until(at)
    assert r.ctrl.planner.stage("T1") == ("entry" if switched else "armed")
    r.reroute(MAIN)
    r.lane = 0
    r.run_until(at + 4)
    targets = {q.target for t, reqs in r.requests if t >= at for q in reqs if q.tls_id == "T1"}
    assert targets == ({"Ggrr"} if switched else {"GgGr"})
    if switched:
        assert all(not c.state or c.state[2] != "G" for t, c in r.commands if t >= at and c.tls_id == "T1")
    assert r.safety() == []


def test_reroute_onto_a_signal_not_yet_in_the_snapshot_sends_no_empty_state() -> None:
    r = make_rig(ControllerConfig(mode="local"))
    r.run_until(42)
    r.reroute(ALT)  # at x = 420: J3's stop line (700 m) is within the 300 m detection range
    r.hidden = {"T3"}  # the runtime subscribes to new signals: their state comes after the next step
    r.step()  # FakeSignal.apply asserts that a set_state command carries a state
    assert r.ctrl.planner.stage("T3") == "idle"  # nothing is switched before it is observed
    r.hidden = set()
    r.step()
    assert r.ctrl.planner.stage("T3") != "idle"


# --- dynamic dispatch (the HTTP service adds EVs while running) ----------------------------------


def test_add_ev_dispatches_into_a_controller_started_without_evs() -> None:
    corridor = build_corridor(NET, MAIN)
    ctrl = PreemptionController(NET, [], ControllerConfig(progression=False))
    assert ctrl.planner.junctions == {}
    signals = {"T1": FakeSignal(T1, 3, 60.0), "T2": FakeSignal(T2, 3, 80.0), "T3": FakeSignal(T3, 3, 80.0)}
    r = CtrlRig(ctrl, corridor, signals)
    r.x = -1e9  # not departed yet: the EV is added at t = 5
    r.run_until(5, present=False)
    assert r.commands == [] and ctrl.etas("ev") == []
    ctrl.add_ev(EvSetup("ev", "fire", corridor, DYN, 5.0))
    assert set(ctrl.planner.junctions) == {"T1", "T2"}
    with pytest.raises(ValueError, match="'ev' is already known"):
        ctrl.add_ev(EvSetup("ev", "fire", corridor, DYN, 5.0))
    r.x = 0.0
    stages: dict[str, set[str]] = {"T1": set(), "T2": set()}
    granted_seen = False
    while r.t < 200:
        for tls, idx in (("T1", 0), ("T2", 1)):
            stage, granted = ctrl.junction_status("ev", idx, tls)
            stages[tls].add(stage)
            granted_seen |= granted
            if stage != "idle":
                assert ctrl.planner.holders(tls) == ("ev",)
        r.step(present=r.x < 800, arrived=r.x == 800)
        if r.t == 10.0:  # departed at 5 at 10 m/s: reaches J1's stop line (500 m) at 55
            etas = ctrl.etas("ev")
            assert [e.junction_index for e in etas] == [0, 1]
            assert etas[0].eta_s == pytest.approx(55.0) and etas[0].low_s <= etas[0].eta_s <= etas[0].high_s
    assert granted_seen
    assert stages["T1"] >= {"armed", "entry", "dwell", "idle"} and stages["T2"] >= {"armed", "dwell", "idle"}
    assert r.progress["ev"].arrived_s is not None
    recs = ctrl.planner.records()
    assert {rec.tls_id for rec in recs} == {"T1", "T2"} and all(rec.restored_s is not None for rec in recs)
    assert all(ctrl.junction_status("ev", i, t) == ("idle", True) for i, t in ((0, "T1"), (1, "T2")))
    assert ctrl.planner.holders("T1") == () and ctrl.planner.holders("nope") == ()
    assert ctrl.etas("ev") == [] and r.safety() == []


def test_a_signal_only_armed_for_a_cancelled_ev_was_not_granted() -> None:
    r = make_rig(ControllerConfig())
    r.run_until(5)
    assert r.ctrl.junction_status("ev", 1, "T2") == ("armed", False)  # J2 is 70 s away: armed, not entered
    r.ctrl.cancel("ev")
    r.run_until(8)
    assert r.ctrl.junction_status("ev", 1, "T2") == ("idle", False)  # (said granted: it had a record)


def test_priority_class_overrides_the_type() -> None:
    corridor = build_corridor(NET, MAIN)
    assert EvSetup("a", "transit", corridor, DYN, 0.0).priority == 3
    assert EvSetup("a", "transit", corridor, DYN, 0.0, priority_class=1).priority == 1
    r = make_rig()
    r.ctrl.add_ev(EvSetup("bus", "transit", corridor, DYN, 0.0, priority_class=1))
    r.progress["bus"] = EvProgress("bus", corridor)  # dispatched, not departed: planned from the route start
    r.step()
    assert {q.ev_id: q.priority for q in r.requests_at(0.0)} == {"ev": 1, "bus": 1}


def test_a_tick_plans_only_the_signals_within_its_horizon_but_route_etas_covers_the_route() -> None:
    from controller.core.planner import PlannerConfig

    r = make_rig(ControllerConfig(plan_ahead_s=55.0, planner=PlannerConfig(max_lead_s=20.0)))
    r.run_until(1)
    # J1 is 50 s away, J2 70 s: the tick predicts and requests J1 only
    assert [e.junction_index for e in r.ctrl.etas("ev")] == [0]
    assert [q.tls_id for q in r.requests_at(0.0)] == ["T1"]
    full = r.ctrl.route_etas("ev", r.t)
    assert [e.junction_index for e in full] == [0, 1]
    assert full[0] == r.ctrl.etas("ev")[0] and full[1].eta_s == pytest.approx(70.0, abs=1.5)


# --- check-out: a turning EV is served until it has left the junction ------------------------

# T1 with a protected lead for the left turn: its phase 0 is exactly the turning EV's target
# ("Ggrr") and phase 1 the permissive one ("GgGr": the opposing through, link 2, green too).
# Started at phase 4 with 29 s left, its schedule shows phase 1 from 45 s to 75 s: a hand-back
# in step at 50 s re-enters there, keeping the EV's left green and greening what it yields to.
T1_LEAD = program("T1", ("Ggrr", 10), ("GgGr", 30), ("yyyr", 3), ("rrrr", 2), ("rrrG", 30), ("rrry", 4),
                  ("rrrr", 2))


def _rig_with_crossings(route: Sequence[str], mode: Literal["greenwave", "local"] = "greenwave", *,
                        lead: bool = True, config: ControllerConfig | None = None) -> CtrlRig:
    """The hand-built network with 20 m crossings at J1 (e0→e1 and e0→l1), an EV 5 m long;
    T1 runs ``T1_LEAD`` (else ``T1``, as the other tests)."""
    from dataclasses import replace

    t1 = T1_LEAD if lead else T1
    conns = tuple(replace(c, via_length_m=20.0) if c.from_edge == "e0" else c for c in NET.connections)
    net = Network(NET.edges, conns, {**NET.programs, "T1": t1}, NET.junction_types)
    corridor = build_corridor(net, route)
    dyn = EvDynamics(max_speed_mps=SPEED, accel_mps2=2.6, decel_mps2=4.5, length_m=5.0)
    cfg = replace(config or ControllerConfig(), mode=mode)
    ctrl = PreemptionController(net, [EvSetup("ev", "ambulance", corridor, dyn, 0.0)], cfg)
    signals = {"T1": FakeSignal(t1, 4, 29.0) if lead else FakeSignal(T1, 3, 60.0),
               "T2": FakeSignal(T2, 3, 80.0), "T3": FakeSignal(T3, 3, 80.0)}
    return CtrlRig(ctrl, corridor, signals)


def _j1_requested(r: CtrlRig, t0: float, t1: float) -> list[bool]:
    return [any(q.key == ("ev", 0) for q in reqs) for t, reqs in r.requests if t0 <= t <= t1]


def test_a_permissive_ev_movement_is_held_until_the_ev_has_left_the_junction() -> None:
    # The EV turns left at J1 (link 1, 'g': it yields to the opposing through, link 2), served
    # alone ("Ggrr"). It crosses the stop line (500 m) at 50 s; a hand-back then would re-enter
    # "GgGr" at once. Its rear leaves the 20 m crossing at 525 m, passed between 52 s and 53 s:
    # until then the signal keeps the opposing through red.
    r = _rig_with_crossings(ALT)
    r.run_until(62)
    assert r.progress["ev"].crossed_s[0] == pytest.approx(50.0)
    t1 = [(t, c.kind, c.state) for t, c in r.commands if c.tls_id == "T1"]
    assert t1[0][1:] == ("set_state", "Ggrr") and t1[1] == (53.0, "set_state", "GgGr")
    assert _j1_requested(r, 50, 53) == [True, True, True, False]
    rec = next(rec for rec in r.ctrl.planner.records() if rec.tls_id == "T1")
    assert rec.exit_s == 53.0 and rec.exit_reason == "crossed"
    assert r.safety() == []


def test_no_hold_where_the_hand_back_goes_through_yellow() -> None:
    # the same turning EV, but the hand-back re-enters where the EV's left is not green: its
    # yellow and red clearance give the EV time to clear, so the hand-back starts at the stop
    # line (as it does where the hand-back is not in step with the schedule)
    from controller.core.planner import PlannerConfig

    for r in (_rig_with_crossings(ALT, lead=False),
              _rig_with_crossings(ALT, config=ControllerConfig(planner=PlannerConfig(handback_sync=False)))):
        r.run_until(62)
        rec = next(rec for rec in r.ctrl.planner.records() if rec.tls_id == "T1")
        assert rec.exit_s == 50.0 and _j1_requested(r, 49, 51) == [True, False, False]
        assert next(c.state for t, c in r.commands if c.tls_id == "T1" and t == 50.0) == "yyrr"
        assert r.safety() == []


def test_a_protected_ev_movement_is_handed_back_at_the_stop_line() -> None:
    # straight on through J1 (link 0, 'G'): nothing it must yield to can turn green before it
    # has cleared, so the hand-back starts as it crosses the stop line
    for lead in (True, False):
        r = _rig_with_crossings(MAIN, lead=lead)
        r.run_until(62)
        rec = next(rec for rec in r.ctrl.planner.records() if rec.tls_id == "T1")
        assert r.progress["ev"].crossed_s[0] == pytest.approx(50.0) and rec.exit_s == 50.0
        assert _j1_requested(r, 49, 51) == [True, False, False]
        assert r.safety() == []


def test_over_budget_ticks_keep_the_check_out_and_nothing_more() -> None:
    # Every tick is over budget, so the two EVs take turns being planned; on the other ticks an
    # EV keeps its last requests: the turning EV's J1 request lasts until it has left (53 s)
    # whether or not it was planned that tick, and never beyond.
    r = _rig_with_crossings(ALT)
    other = build_corridor(NET, ("l1", "l2"))  # through J3 only: T1 serves the turning EV alone
    r.ctrl.add_ev(EvSetup("ev2", "ambulance", other, DYN, 0.0))
    r.progress["ev2"] = EvProgress("ev2", other)  # dispatched, not departed: planned from the route start
    deferred_at: list[float] = []
    while r.t < 60:
        t = r.t
        vehicle = ev_at(r.corridor, r.x)
        snap = Snapshot(t, {"ev": vehicle}, {tls: s.signal_state() for tls, s in r.signals.items()}, r.lanes(t))
        r.progress["ev"].update(t, vehicle)
        before = r.ctrl.deferred
        for c in r.ctrl.tick(snap, r.progress, lambda: True):
            r.commands.append((t, c))
            r.signals[c.tls_id].apply(c)
        if r.ctrl.deferred > before and r.ctrl._updated_s.get("ev") != t:
            deferred_at.append(t)
        for s in r.signals.values():
            s.advance(1.0)
        r.t += 1.0
        r.x += SPEED
    assert any(50 <= t <= 53 for t in deferred_at)  # the turning EV was not planned on some of those ticks
    held = [t for t, reqs in r.requests if any(q.key == ("ev", 0) for q in reqs)]
    assert max(held) == 52.0 and all(t in held for t in range(45, 53))
    rec = next(rec for rec in r.ctrl.planner.records() if rec.tls_id == "T1" and rec.ev_id == "ev")
    assert rec.exit_s == 53.0 and r.safety() == []


@pytest.mark.parametrize("end", ["cancelled", "vanished from the simulation", "max presence"])
def test_a_check_out_ends_at_once_on_cancel_vanish_or_maximum_presence(end: str) -> None:
    # The turning EV of the tests above crosses at 50 s and is held until 53 s. At 51 s it is
    # cancelled, or leaves the simulation, or the signal reaches its maximum presence (entry at
    # 35 s + 16 s): the hold ends on that tick, is not asked for again, and the signal goes back
    # to its program (the in-step hand-back: "GgGr", then restore).
    from controller.core.planner import PlannerConfig

    config = ControllerConfig(planner=PlannerConfig(max_presence_s=16.0, presence_reserve_s=0.5)) \
        if end == "max presence" else None
    r = _rig_with_crossings(ALT, config=config)
    r.run_until(51)
    assert r.progress["ev"].crossed_s[0] == pytest.approx(50.0) and r.ctrl.planner.stage("T1") == "dwell"
    if end == "cancelled":
        r.ctrl.cancel("ev")
    r.run_until(70, present=end != "vanished from the simulation")
    rec = next(rec for rec in r.ctrl.planner.records() if rec.tls_id == "T1")
    assert (rec.entry_s, rec.exit_s, rec.exit_reason) == (35.0, 51.0, end)
    assert [(t, c.kind, c.state) for t, c in r.commands if c.tls_id == "T1" and t > 35] == [
        (51.0, "set_state", "GgGr"), (52.0, "restore", "")]
    assert _j1_requested(r, 50, 53) == [True, end == "max presence", False, False]
    assert _handed_back(r, "T1") and r.safety() == []


def test_the_check_out_of_an_ev_stuck_in_the_junction_ends_when_the_hand_back_gives_it_yellow() -> None:
    # The turning EV stops 10 m past the stop line (waiting for a gap, say) and does not move
    # again. The hold does not last for ever: once a hand-back would no longer re-enter the
    # permissive phase at once (from 55 s it starts with yellow for the EV's left), it ends,
    # well before the signal's maximum presence (entry at 35 s + 120 s).
    r = _rig_with_crossings(ALT)
    r.run_until(51)
    while r.t < 200:
        r.step()
        r.x -= SPEED  # it stays at 510 m
    rec = next(rec for rec in r.ctrl.planner.records() if rec.tls_id == "T1")
    assert (rec.exit_s, rec.exit_reason) == (55.0, "crossed")
    assert next(c.state for t, c in r.commands if c.tls_id == "T1" and t == 55.0) == "yyrr"
    assert not r.ctrl.busy and _handed_back(r, "T1") and r.safety() == []


def test_reroute_while_a_signal_of_the_old_corridor_switches_for_the_ev() -> None:
    # At 61 s T2 is in entry for ("ev", 1). SUMO's route after a re-route starts at the EV's
    # edge, so T2 becomes junction 0 of the new corridor: the switch-over under way for the old
    # junction 1 is not taken for one of the new corridor (an IndexError here before).
    r = make_rig(ControllerConfig())
    r.run_until(61)
    assert r.ctrl.planner.stage("T2") == "entry" and r.ctrl.planner.green_due(r.t)["ev"].keys() == {1}
    r.x -= r.corridor.edge_offsets_m[1]
    r.reroute(("e1", "e2"))
    r.run_until(120)
    assert r.progress["ev"].crossed_s.keys() == {0} and not r.ctrl.busy
    assert _handed_back(r, "T2") and r.safety() == []


def long_queue_at_t2(t: float) -> Mapping[str, LaneState]:
    return {**no_queues(t), "e1_0": LaneState("e1_0", 20, 20)}


def test_an_ev_standing_under_its_green_lets_that_signal_go_too() -> None:
    # T1 shows the EV's green (dwell) and the EV stops short of it for 80 s (a stop of its own: an
    # escort reporting speed 0, a patient picked up): T1 was held to its maximum presence, then
    # after each 30 s lockout again, for as long as the EV stood. Now, once it has stood 30 s
    # under that green, T1 goes back to its program until the EV moves again
    r = make_rig()
    while r.ctrl.planner.stage("T1") != "dwell":
        r.step()
    stop_s = r.t
    while r.t < stop_s + 80:
        r.step(moving=False)
    t1 = [rec for rec in r.ctrl.planner.records() if rec.tls_id == "T1"]
    assert [(rec.exit_s, rec.exit_reason) for rec in t1] == [(stop_s + 30.0, "EV stalled")], t1
    asked = {t: {q.tls_id for q in reqs} for t, reqs in r.requests}
    assert "T1" in asked[stop_s + 29.0] and all(not asked[t] for t in range(int(stop_s) + 30, int(stop_s) + 80))
    assert r.ctrl.planner.stage("T1") == "idle"
    # moving again: T1 asked for again, both crossed, nothing unsafe
    r.run_until(stop_s + 200)
    assert r.progress["ev"].crossed(0) and r.progress["ev"].crossed(1) and r.safety() == []
    assert len([rec for rec in r.ctrl.planner.records() if rec.tls_id == "T1"]) == 2


def one_halted_at_t1(t: float) -> Mapping[str, LaneState]:
    return {**no_queues(t), "e0_0": LaneState("e0_0", 1, 1)}


@pytest.mark.parametrize("in_lanes", [True, False])
def test_one_halted_vehicle_on_the_approach_is_the_ev_only_if_it_is_a_simulation_vehicle(in_lanes: bool) -> None:
    # one vehicle halted on T1's approach: the EV itself where it is SUMO's vehicle (T1 let go
    # 30 s into its stop under the green), a vehicle queued ahead of an externally tracked escort,
    # which no lane count holds (T1 kept)
    r = make_rig(lanes=one_halted_at_t1)
    r.ctrl.evs["ev"] = replace(r.ctrl.evs["ev"], in_lanes=in_lanes)
    while r.ctrl.planner.stage("T1") != "dwell":
        r.step()
    stop_s = r.t
    while r.t < stop_s + 60:
        r.step(moving=False)
    let_go = [rec.exit_reason for rec in r.ctrl.planner.records() if rec.tls_id == "T1"]
    assert let_go == (["EV stalled"] if in_lanes else []), let_go
    assert (r.ctrl.planner.stage("T1") == "dwell") is not in_lanes


def test_an_ev_not_yet_on_the_road_keeps_only_its_first_signal_after_the_stall_time() -> None:
    # dispatched at 0, SUMO cannot insert it (its lane full): its ETAs slide a second a tick and
    # every signal ahead stayed armed or switched for it. From 30 s on only T1, which can drain
    # that lane, is asked for; T2, armed for its queue, lets go (a switched one: "EV stalled")
    r = make_rig(lanes=long_queue_at_t2)
    while r.t < 60:
        r.step(present=False)
    assert r.progress["ev"].depart_s is None
    asked = {t: {q.tls_id for q in reqs} for t, reqs in r.requests}
    assert "T2" in asked[29.0] and all(asked[t] == {"T1"} for t in range(30, 60)), asked
    released = [rec for rec in r.ctrl.planner.records() if rec.tls_id == "T2"]
    assert r.ctrl.planner.stage("T2") == "idle" and r.ctrl.planner.stage("T1") != "idle"
    assert all(rec.exit_reason == "EV stalled" and rec.exit_s == 30.0 for rec in released), released
    # on the road at last: it asks for T2 again and passes both
    r.run_until(150)
    assert r.progress["ev"].crossed(0) and r.progress["ev"].crossed(1) and r.safety() == []


def jammed_at_t1_queue_at_t2(t: float) -> Mapping[str, LaneState]:
    # (T1's approach: the EV and two vehicles halted ahead of it, from 40 s)
    return {**long_queue_at_t2(t), **({"e0_0": LaneState("e0_0", 3, 3)} if t >= 40 else {})}


def test_an_ev_standing_in_a_jam_keeps_only_its_next_signal() -> None:
    # the EV stops in a queue 100 m before T1 at 40 s and stands 60 s; T2, 300 m on, switched
    # early for the 20 vehicles queued there, is handed back 30 s into the stop; T1 is kept (a
    # queue stands ahead of the EV: see the test below for an EV standing alone)
    r = make_rig(lanes=jammed_at_t1_queue_at_t2)
    r.run_until(40)
    while r.t < 100:
        r.step(moving=False)
    asked = {t: {q.tls_id for q in reqs} for t, reqs in r.requests}
    # a stop starts below 0.1 m/s (at 40 s): from 30 s later only T1 is asked for
    assert asked[69.0] == {"T1", "T2"} and all(asked[t] == {"T1"} for t in range(70, 100))
    assert r.ctrl.planner.stage("T2") in ("exit", "idle")
    stalled = [rec for rec in r.ctrl.planner.records() if rec.tls_id == "T2"]
    assert stalled and all(rec.entry_s is not None and rec.entry_s < 70.0 for rec in stalled)
    assert all(rec.exit_reason == "EV stalled" and rec.exit_s == 70.0 for rec in stalled)
    # moving again, it asks for T2 again and passes both on green
    r.run_until(150)
    assert "T2" in {q.tls_id for q in r.requests_at(101.0)}
    assert r.progress["ev"].crossed(0) and r.progress["ev"].crossed(1)
    assert r.safety() == []
    never = make_rig(ControllerConfig(stall_release_s=None), lanes=long_queue_at_t2)
    never.run_until(40)
    while never.t < 100:
        never.step(moving=False)
    assert all("T2" in {q.tls_id for q in reqs} for t, reqs in never.requests if 40 <= t < 100)


def test_an_external_escort_is_not_counted_among_the_vehicles_on_its_approach() -> None:
    # three vehicles on T1's approach lane with the EV at its start: a simulation EV is one of
    # them (two ahead of it), an externally tracked one is in no lane count (three ahead)
    r = make_rig()
    j = r.corridor.junctions[0]
    snap = Snapshot(0.0, {}, {}, {"e0_0": LaneState("e0_0", 3, 0)})
    ev = ev_at(r.corridor, 0.0)
    assert r.ctrl._queue_ahead(j, snap, ev) == 2
    assert r.ctrl._queue_ahead(j, snap, ev, in_lanes=False) == 3


def test_an_ev_first_seen_inside_a_junction_is_planned_once_it_is_placed_on_its_route() -> None:
    # An escort joining a running vehicle that is inside J1 (an internal lane: its place on the
    # route not known yet) was planned from the route's start: T1, behind it, was switched.
    r = make_rig()
    inside = VehicleState("ev", ":J1_0", ":J1_0_0", 1.0, SPEED, 0, 0.0)
    snap = Snapshot(0.0, {"ev": inside}, {tls: s.signal_state() for tls, s in r.signals.items()}, no_queues(0.0))
    r.progress["ev"].update(0.0, inside)
    assert r.progress["ev"].position_m is None
    r.ctrl.tick(snap, r.progress)
    assert r.requests_at(0.0) == []  # nothing planned for it yet
    # the next tick it is on e1, past T1: T2 alone is asked for
    on_e1 = VehicleState("ev", "e1", "e1_0", 10.0, SPEED, 1, 10.0)
    snap = Snapshot(1.0, {"ev": on_e1}, {tls: s.signal_state() for tls, s in r.signals.items()}, no_queues(1.0))
    r.progress["ev"].update(1.0, on_e1)
    r.ctrl.tick(snap, r.progress)
    assert {q.tls_id for q in r.requests_at(1.0)} == {"T2"}
    assert r.ctrl.planner.stage("T1") == "idle"


@pytest.mark.parametrize("count_moving", [True, False])
def test_halted_vehicles_behind_the_ev_are_not_counted_as_its_queue(count_moving: bool) -> None:
    # T1's approach lane (500 m) has 10 halted vehicles: the EV stands first at the stop line,
    # the nine others behind it; then 30 m back (four ahead of it at most, 7.5 m each)
    r = make_rig(ControllerConfig(count_moving=count_moving))
    j = r.corridor.junctions[0]
    snap = Snapshot(0.0, {}, {}, {"e0_0": LaneState("e0_0", 10, 10)})
    assert r.ctrl._queue_ahead(j, snap, ev_at(r.corridor, 499.0, speed=0.0)) == 0
    assert r.ctrl._queue_ahead(j, snap, ev_at(r.corridor, 470.0, speed=0.0)) == 4
    assert r.ctrl._queue_ahead(j, snap, ev_at(r.corridor, 100.0)) == 10  # (all of them can be ahead)
