"""The real-time pieces without SUMO: pacing to a clock, which objects a run reads (the corridor
watch), forgetting an idle signal (planner and monitor), the tick's budget, and the synthetic
core benchmark's world."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from controller.bench.core import SyntheticWorld, random_corridor, snapshot_from_json, snapshot_to_json
from controller.core.corridor import Corridor
from controller.core.greenwave import ControllerConfig, EvSetup, PreemptionController
from controller.core.progress import EvProgress
from controller.core.safety import SafetyConfig, SafetyMonitor
from controller.core.snapshot import SignalCommand, Snapshot
from controller.runtime.pacing import Pacer
from controller.runtime.watch import KEEP_AFTER_S, CorridorWatch
from tests.unit.test_preemption_controller import DYN, MAIN, NET, T1, make_rig


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_pacer_sleeps_to_the_wall_clock_and_reports_lateness() -> None:
    clock = FakeClock()
    pacer = Pacer(2.0, clock=clock, sleep=clock.sleep)  # 2 simulated s per wall s
    assert pacer.wait(0.0) == 0.0 and clock.slept == []
    clock.now += 0.1  # the step took 0.1 s of wall time
    assert pacer.wait(1.0) == 0.0 and clock.slept == [pytest.approx(0.4)]
    clock.now += 0.8  # a slow step: 0.3 s late for simulated second 2
    assert pacer.wait(2.0) == pytest.approx(300.0) and len(clock.slept) == 1
    # 2 simulated s in 1.3 wall s: it could not keep pace x2 (a run says so)
    assert pacer.achieved_speed() == pytest.approx(2.0 / 1.3)
    assert Pacer(2.0, clock=clock, sleep=clock.sleep).achieved_speed() is None
    with pytest.raises(ValueError, match="positive"):
        Pacer(0.0)


class FakeReader:
    def __init__(self) -> None:
        self.signals: set[str] = set()
        self.lanes: set[str] = set()

    def watch_signals(self, tls_ids: Iterable[str]) -> None:
        self.signals |= set(tls_ids)

    def unwatch_signals(self, tls_ids: Iterable[str]) -> None:
        self.signals -= set(tls_ids)

    def watch_lanes(self, lane_ids: Iterable[str]) -> None:
        self.lanes |= set(lane_ids)

    def unwatch_lanes(self, lane_ids: Iterable[str]) -> None:
        self.lanes -= set(lane_ids)


def test_corridor_watch_reads_only_what_the_evs_on_the_road_need() -> None:
    from controller.core.corridor import build_corridor

    main, alt = build_corridor(NET, MAIN), build_corridor(NET, ("e0", "l1", "l2"))
    reader, forgotten = FakeReader(), list[str]()
    watch = CorridorWatch(reader, [forgotten.append])
    watch.activate("a", main, 0.0)
    assert reader.signals == {"T1", "T2"} and reader.lanes == {"e0_0", "e1_0"}
    watch.activate("b", alt, 0.0)
    assert reader.signals == {"T1", "T2", "T3"}
    watch.release("a", 10.0)  # a is done: its lanes go now (those b needs stay), its signals later
    assert reader.lanes == {"e0_1", "l1_0"}
    watch.tick(10.0 + KEEP_AFTER_S - 1, held=())
    assert reader.signals == {"T1", "T2", "T3"}
    watch.tick(10.0 + KEEP_AFTER_S, held={"T2"})  # T2 still switched: kept
    assert reader.signals == {"T1", "T2", "T3"} and forgotten == []
    watch.tick(20.0 + 2 * KEEP_AFTER_S, held=())
    assert reader.signals == {"T1", "T3"} and forgotten == ["T2"]  # T1: b still needs it
    assert watch.max_signals == 3 and watch.signals_ever == {"T1", "T2", "T3"}


def test_a_signal_that_refuses_to_be_forgotten_stays_read() -> None:
    from controller.core.corridor import build_corridor

    def refuse(tls: str) -> None:
        raise ValueError("held")

    reader = FakeReader()
    watch = CorridorWatch(reader, [refuse])
    watch.activate("a", build_corridor(NET, MAIN), 0.0)
    watch.release("a", 0.0)
    watch.tick(KEEP_AFTER_S + 1, held=())
    assert reader.signals == {"T1", "T2"}


def test_planner_and_monitor_forget_only_idle_signals() -> None:
    rig = make_rig()
    rig.run_until(45)  # T1 is switched for the EV, which reaches it at 50 s
    assert rig.ctrl.planner.stage("T1") in ("entry", "dwell")
    with pytest.raises(ValueError, match="T1"):
        rig.ctrl.forget_signal("T1")
    rig.run_until(120)  # crossed both, handed back
    records = len(rig.ctrl.planner.records())
    rig.ctrl.forget_signal("T1")
    assert rig.ctrl.planner.junctions["T1"].clock.state == ""  # seen afresh when watched again
    assert len(rig.ctrl.planner.records()) == records  # the records stay

    monitor = SafetyMonitor({"T1": T1}, SafetyConfig())
    monitor.observe(0.0, {"T1": ("rrrr", "online")})
    with pytest.raises(ValueError, match="preempted"):
        monitor.pause("T1")
    monitor.observe(1.0, {"T1": ("GgGr", "0")})
    monitor.pause("T1")
    monitor.observe(500.0, {"T1": ("rrrG", "0")})  # a jump across the gap is not read as a violation
    assert monitor.violations == []


def test_over_budget_the_stalest_evs_keep_their_last_plan() -> None:
    from controller.core.corridor import build_corridor

    corridor = build_corridor(NET, MAIN)
    evs = [EvSetup(f"ev{k}", "ambulance", corridor, DYN, 0.0) for k in range(3)]
    ctrl = PreemptionController(NET, evs, ControllerConfig())
    rig = make_rig()  # only for its signals and the EV position helper
    progress = {e.ev_id: EvProgress(e.ev_id, corridor) for e in evs}
    from tests.unit.test_preemption_controller import ev_at

    def snap(t: float) -> Snapshot:
        vehicles = {e.ev_id: ev_at(corridor, 10.0 * t, ev_id=e.ev_id) for e in evs}
        for ev_id, v in vehicles.items():
            progress[ev_id].update(t, v)
        return Snapshot(t, vehicles, {tls: s.signal_state() for tls, s in rig.signals.items()}, {})

    ctrl.tick(snap(0.0), progress)  # every EV planned
    calls = iter([True, True])
    ctrl.tick(snap(1.0), progress, lambda: next(calls))  # out of time after the first EV
    assert ctrl.deferred == 2
    assert ctrl._updated_s == {"ev0": 1.0, "ev1": 0.0, "ev2": 0.0}
    ctrl.tick(snap(2.0), progress, lambda: True)  # the stalest first: ev1
    assert ctrl._updated_s["ev1"] == 2.0 and ctrl.deferred == 4


def test_synthetic_world_runs_programs_until_commanded_and_snapshots_round_trip() -> None:
    from tests.unit.test_preemption_controller import make_network

    net = make_network()
    corridor = random_corridor(net, random.Random(1), min_signals=1, min_length_m=300, max_length_m=900)
    world = SyntheticWorld(net, {"a": corridor})
    tls = corridor.tls_ids()[0]
    program = net.programs[tls]
    assert world.snapshot(0.0).signals[tls].state == program.phases[0].state
    assert world.snapshot(program.phases[0].duration_s + 0.5).signals[tls].state == program.phases[1].state
    world.apply([SignalCommand(tls, "set_state", state="r" * program.link_count)])
    s = world.snapshot(1.0)
    assert s.signals[tls].state == "r" * program.link_count and s.signals[tls].program_id == "online"
    assert s.vehicles["a"].speed_mps == 10.0 and s.vehicles["a"].odometer_m == 10.0
    assert snapshot_from_json(snapshot_to_json(s)) == s


def _line_corridor(n: int, spacing_m: float) -> Corridor:
    """n signals T0..Tn-1 every ``spacing_m`` on one straight road, approach lanes L<k>_0/1."""
    from dataclasses import replace

    from tests.unit.test_eta import _junction

    junctions = tuple(replace(_junction(k, spacing_m * (k + 1)), approach_lanes=(f"L{k}_0", f"L{k}_1"))
                      for k in range(n))
    return Corridor(route=("a",), junctions=junctions, edge_offsets_m=(0.0,), length_m=spacing_m * (n + 1))


def test_a_windowed_watch_reads_the_lanes_ahead_and_the_signals_a_cycle_further() -> None:
    from controller.runtime.watch import HISTORY_S, LANE_WINDOW_S, LOOKAHEAD, FreeFlowClock

    corridor = _line_corridor(40, 200.0)  # 10 m/s: a junction every 20 s of free flow
    clock = FreeFlowClock.of((0.0,), (corridor.length_m,), (10.0,))
    reader, forgotten = FakeReader(), list[str]()
    watch = CorridorWatch(reader, [forgotten.append])
    watch.activate("a", corridor, 0.0, clock)
    within = int(LANE_WINDOW_S // 20)  # junctions 0..5 are within 130 s: lanes up to 5 + LOOKAHEAD
    lanes_upto = within - 1 + LOOKAHEAD
    assert reader.lanes == {f"L{k}_{i}" for k in range(lanes_upto + 1) for i in (0, 1)}
    signals_upto = int((LANE_WINDOW_S + HISTORY_S) // 20) - 1
    assert reader.signals == {f"T{k}" for k in range(signals_upto + 1)}
    # the EV passes junctions 0 and 1: their lanes go at once, their signals after KEEP_AFTER_S
    watch.advance("a", 450.0, 8, 45.0)  # and the controller predicted up to junction 8
    assert "L0_0" not in reader.lanes and "L1_1" not in reader.lanes
    assert {"L2_0", f"L{8 + LOOKAHEAD}_1"} <= reader.lanes and f"L{9 + LOOKAHEAD}_0" not in reader.lanes
    assert "T0" in reader.signals and f"T{8 + int(HISTORY_S // 20)}" in reader.signals
    watch.tick(45.0 + KEEP_AFTER_S, held=())
    assert {"T0", "T1"}.isdisjoint(reader.signals) and forgotten == ["T0", "T1"]
    assert "T2" in reader.signals
    # a prediction reaching less far does not shrink what is read
    before = set(reader.lanes)
    watch.advance("a", 460.0, -1, 46.0)
    assert reader.lanes == before
    watch.release("a", 50.0)
    assert reader.lanes == set()
    watch.tick(50.0 + KEEP_AFTER_S, held=())
    assert reader.signals == set()
    assert watch.max_lanes == 2 * (8 + LOOKAHEAD - 1)  # junctions 2..10 at most at once


def test_two_windows_share_a_signal_until_both_have_passed_it() -> None:
    from controller.runtime.watch import FreeFlowClock

    corridor = _line_corridor(10, 200.0)
    clock = FreeFlowClock.of((0.0,), (corridor.length_m,), (10.0,))
    reader = FakeReader()
    watch = CorridorWatch(reader)
    watch.activate("a", corridor, 0.0, clock)
    watch.activate("b", corridor, 0.0, clock)
    watch.advance("a", 450.0, -1, 45.0)  # a passed T0 and T1, b has not
    assert {"L0_0", "T0"} <= reader.lanes | reader.signals
    watch.tick(45.0 + KEEP_AFTER_S, held=())
    assert "T0" in reader.signals
    watch.advance("b", 450.0, -1, 50.0)
    assert "L0_0" not in reader.lanes
    watch.tick(50.0 + KEEP_AFTER_S, held=())
    assert "T0" not in reader.signals
