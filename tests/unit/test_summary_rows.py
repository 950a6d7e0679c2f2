"""summary.json's per-EV entry and the spans ``collisions_preempted`` counts in, built from a
run's records by pure helpers (no SUMO)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.corridor import Corridor, CorridorJunction
from controller.core.progress import EvProgress, StopEpisode
from controller.runtime.outputs import Trip
from controller.runtime.run import (
    STOP_AT_SIGNAL_M,
    ev_summary,
    preempted_windows,
    recovery_section,
    switched_for,
)
from controller.runtime.setup import EvPlan


def _junction(index: int, tls: str, distance_m: float) -> CorridorJunction:
    return CorridorJunction(index=index, junction_id=f"J{index}", tls_id=tls, approach_edge=f"e{index}",
                            exit_edge=f"e{index + 1}", route_index=index, approach_lanes=(f"e{index}_0",),
                            link_indices=(0,), green_phases=(0,), yellow_s=3.0, all_red_s=2.0, distance_m=distance_m)


CORRIDOR = Corridor(route=("e0", "e1", "e2"), junctions=(_junction(0, "A", 200.0), _junction(1, "B", 500.0)),
                    edge_offsets_m=(0.0, 200.0, 500.0), length_m=812.34)
EV = EvPlan("amb", "ambulance", "greenwave_ambulance", 600.0, CORRIDOR.route, CORRIDOR)


def _progress() -> EvProgress:
    stops = [StopEpisode(610.0, 615.0, 100.0, 0, STOP_AT_SIGNAL_M),  # at a signal: exactly the limit
             StopEpisode(620.0, 622.0, 90.0, 0, STOP_AT_SIGNAL_M + 10.0),  # mid-block
             # in the queue of B, 160 m back on the edge that ends at its stop line
             StopEpisode(650.0, 660.0, 340.0, 1, 160.0, on_approach=True),
             StopEpisode(700.0, None, 800.0, None, None)]  # still stopped when the run ended
    return EvProgress("amb", CORRIDOR, depart_s=602.0, crossed_s={0: 640.0}, stops=stops)


def test_an_ev_that_arrived() -> None:
    trip = Trip("amb", 603.0, 783.0, 180.0, 40.0, 2, 7.0)
    row = ev_summary(EV, _progress(), trip, 150.0, {"B", "X"}, 800.0)
    assert (row["dispatched"], row["depart"], row["arrival"], row["arrived"]) == (600.0, 603.0, 783.0, True)
    assert row["travel_time"] == 180.0  # SUMO's trip duration, from its depart, not from the dispatch
    assert (row["free_flow_time"], row["ratio_to_free_flow"], row["delay"]) == (150.0, 1.2, 30.0)
    assert (row["stops"], row["stops_at_signals"]) == (4, 2)
    assert [s["at_signal"] for s in row["stop_episodes"]] == [True, False, True, False]
    assert row["time_stopped"] == pytest.approx(5.0 + 2.0 + 10.0 + 100.0)  # the open stop counts to the end
    assert (row["junctions"], row["preempted"], row["tls"]) == (2, 1, ["A", "B"])
    assert row["route_length_m"] == 812.3 and row["crossed_s"] == {"A#0": 640.0}
    assert row["stop_episodes"][3] == {"start": 700.0, "end": None, "next_junction": None,
                                       "distance_to_stop_line_m": None, "on_approach": False, "at_signal": False}


def test_an_ev_without_a_trip_or_a_free_flow_time() -> None:
    row = ev_summary(EV, _progress(), None, None, set(), 800.0)
    assert (row["arrived"], row["arrival"], row["travel_time"], row["depart"]) == (False, None, None, 602.0)
    assert (row["ratio_to_free_flow"], row["delay"], row["preempted"]) == (None, None, 0)
    trip = Trip("amb", 603.0, 783.0, 180.0, 40.0, 2, 7.0)
    assert ev_summary(EV, _progress(), trip, None, set(), 800.0)["delay"] is None


def test_preempted_windows_run_from_the_entry_to_the_return_to_the_program() -> None:
    records: list[dict[str, Any]] = [
        {"tls": "A", "entry": 100.0, "dwell": 104.0, "exit": 130.0, "restored": 140.0},
        {"tls": "A", "entry": 300.0, "dwell": 301.0, "exit": 320.0, "restored": None},  # not back by the end
        {"tls": "B", "entry": None, "dwell": None, "exit": None, "restored": None},  # armed only
    ]
    assert preempted_windows(records, 900.0) == {"A": [(100.0, 140.0), (300.0, 900.0)]}


def test_recovery_counts_each_hand_back_once() -> None:
    # signal S handed back at 120 s after serving two requests (the later one's exit counts), T
    # at 210 s, in step with its schedule 30 s after its exit; U never back in its program
    records: list[dict[str, Any]] = [
        {"tls": "S", "exit": 100.0, "restored": 120.0, "recovery_s": 20.0, "in_step": 130.0},
        {"tls": "S", "exit": 110.0, "restored": 120.0, "recovery_s": 10.0, "in_step": 130.0},
        {"tls": "T", "exit": 200.0, "restored": 210.0, "recovery_s": 10.0, "in_step": 230.0},
        {"tls": "U", "exit": 300.0, "restored": None, "recovery_s": None, "in_step": None},
    ]
    assert recovery_section(records) == {"junctions": 2, "mean_s": 10.0, "max_s": 10.0,
                                         "in_step_junctions": 2, "in_step_mean_s": 25.0,
                                         "off_schedule_junctions": 0, "off_schedule_max_s": None}
    assert recovery_section([]) == {"junctions": 0, "mean_s": None, "max_s": None, "in_step_junctions": 0,
                                    "in_step_mean_s": None, "off_schedule_junctions": 0, "off_schedule_max_s": None}
    # a fixed-time signal handed back off its schedule (it goes on 39 s late), one in step, one
    # whose schedule is not known: the first is counted, with how far off
    records = [
        {"tls": "S", "exit": 100.0, "restored": 102.0, "recovery_s": 2.0, "in_step": None, "schedule_offset_s": 39.0},
        {"tls": "T", "exit": 200.0, "restored": 210.0, "recovery_s": 10.0, "in_step": 230.0, "schedule_offset_s": 0.0},
        {"tls": "V", "exit": 200.0, "restored": 205.0, "recovery_s": 5.0, "in_step": None, "schedule_offset_s": None},
        {"tls": "W", "exit": 200.0, "restored": 205.0, "recovery_s": 5.0, "in_step": None, "schedule_offset_s": -41.0},
    ]
    section = recovery_section(records)
    assert (section["off_schedule_junctions"], section["off_schedule_max_s"]) == (2, -41.0)


def test_an_ev_counts_the_signals_switched_for_it_not_those_switched_for_another() -> None:
    # B was switched for "fire" only (the ambulance met its display): the ambulance's count is 1
    preemptions = [{"tls": "A", "ev": "amb", "entry": 610.0}, {"tls": "B", "ev": "fire", "entry": 620.0},
                   {"tls": "A", "ev": "amb", "entry": 900.0}]
    assert switched_for("amb", preemptions) == {"A"} and switched_for("fire", preemptions) == {"B"}
    row = ev_summary(EV, _progress(), None, None, switched_for("amb", preemptions), 800.0)
    assert (row["junctions"], row["preempted"]) == (2, 1)


def test_the_oracle_counts_for_each_ev_the_signals_it_held_for_it() -> None:
    # b's route crosses T1 too, which the oracle holds for a from a's dispatch; b is dispatched
    # later: T1 was not switched for b (it counted every signal the oracle switched)
    from types import SimpleNamespace

    from controller.core.corridor import build_corridor
    from controller.core.oracle import OracleController
    from tests.unit.test_preemption_controller import MAIN, NET

    corridors = {"a": build_corridor(NET, MAIN), "b": build_corridor(NET, ["o1", "w1"])}
    oracle = OracleController(NET, corridors, {"a": 0.0, "b": 500.0})
    progress = {ev: EvProgress(ev, c) for ev, c in corridors.items()}
    oracle.tick(SimpleNamespace(t_s=10.0), progress)  # type: ignore[arg-type]
    assert oracle.preempted == {"T1", "T2"} and oracle.switched_for == {"a": {"T1", "T2"}}
    oracle.tick(SimpleNamespace(t_s=500.0), progress)  # type: ignore[arg-type]
    assert oracle.switched_for == {"a": {"T1", "T2"}, "b": {"T1"}}


def test_the_oracle_hands_back_the_signals_of_an_ev_gone_from_the_simulation() -> None:
    # an EV removed from SUMO (never arrived) kept its whole route green to the run's end
    from controller.core.corridor import build_corridor
    from controller.core.oracle import OracleController
    from controller.core.snapshot import Snapshot
    from tests.unit.test_preemption_controller import MAIN, NET, ev_at

    corridor = build_corridor(NET, MAIN)
    oracle = OracleController(NET, {"ev": corridor}, {"ev": 0.0})
    progress = EvProgress("ev", corridor)
    vehicle = ev_at(corridor, 100.0)
    progress.update(0.0, vehicle)
    assert {c.kind for c in oracle.tick(Snapshot(0.0, {"ev": vehicle}, {}), {"ev": progress})} == {"set_state"}
    progress.update(50.0, None)
    assert progress.vanished_s is not None
    handed = oracle.tick(Snapshot(50.0, {}, {}), {"ev": progress})
    assert {(c.tls_id, c.kind) for c in handed} == {("T1", "restore"), ("T2", "restore")}


def test_the_oracle_records_where_it_showed_two_evs_crossing_movements_green_at_once() -> None:
    # four EVs converging on one crossing of the grid: the oracle showed every approach green
    # (C2 all 'G') and all four passed at free flow, the bound no safe controller can reach
    from dataclasses import replace
    from types import SimpleNamespace

    from controller.core.corridor import build_corridor
    from controller.core.network import Network
    from controller.core.oracle import OracleController
    from tests.unit.test_preemption_controller import MAIN, NET

    foes = {0: (3,), 3: (0,)}  # T1: the main road (e0 -> e1) crosses the cross street (c1 -> c1o)
    conns = tuple(replace(c, foe_links=foes.get(c.link_index, ())) if c.tls_id == "T1" else c for c in NET.connections)
    net = Network(NET.edges, conns, NET.programs, NET.junction_types, source="hand.net.xml")
    corridors = {"a": build_corridor(net, MAIN), "cross": build_corridor(net, ["c1", "c1o"]),
                 "opposite": build_corridor(net, ["o1", "w1"])}
    oracle = OracleController(net, {k: corridors[k] for k in ("a", "opposite")}, {"a": 0.0, "opposite": 5.0})
    progress = {ev: EvProgress(ev, c) for ev, c in corridors.items()}
    oracle.tick(SimpleNamespace(t_s=10.0), progress)  # type: ignore[arg-type]
    assert oracle.conflicts == {}  # opposite directions: their own movements do not cross
    oracle = OracleController(net, {k: corridors[k] for k in ("a", "cross")}, {"a": 0.0, "cross": 5.0})
    oracle.tick(SimpleNamespace(t_s=1.0), progress)  # type: ignore[arg-type]
    assert oracle.conflicts == {}  # the cross street's EV not dispatched yet
    oracle.tick(SimpleNamespace(t_s=10.0), progress)  # type: ignore[arg-type]
    oracle.tick(SimpleNamespace(t_s=11.0), progress)  # type: ignore[arg-type]
    assert oracle.conflicts == {"T1": 10.0}
