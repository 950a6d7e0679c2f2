"""Reading SUMO's collision output: where a collision happened, and whether on the crossing of a
signal while it was preempted."""

from __future__ import annotations

from pathlib import Path

from controller.runtime.outputs import (
    Collision,
    SumoOutputs,
    Trip,
    background,
    background_by_class,
    collisions_involving,
    collisions_until,
    collisions_while_preempted,
    junction_of_lane,
    read_outputs,
)
from controller.runtime.setup import vtype_classes


def test_junction_of_an_internal_lane() -> None:
    assert junction_of_lane(":J_3_0") == "J"
    assert junction_of_lane(":cluster_1427494838_273472399_9_1") == "cluster_1427494838_273472399"
    assert junction_of_lane(":C2_w0_0") == "C2"  # a walking area
    assert junction_of_lane("A0B0_0") is None  # an edge's lane
    assert junction_of_lane(":J") is None


def test_collisions_counted_on_a_preempted_crossing_from_entry_to_30_s_after_the_hand_back() -> None:
    junction_tls = {"J": "T", "K": "T", "L": "U"}  # T controls two junctions
    windows = {"T": [(100.0, 150.0), (400.0, 420.0)]}
    at = [
        Collision(99.0, ":J_1_0", "a", "b"),  # before the entry
        Collision(100.0, ":J_1_0", "a", "b"),  # at the entry
        Collision(180.0, ":K_0_0", "a", "b"),  # 30 s after the hand-back, on T's other junction
        Collision(181.0, ":J_1_0", "a", "b"),  # later
        Collision(410.0, "JK_0", "a", "b"),  # on an edge, not a crossing
        Collision(410.0, ":L_2_0", "a", "b"),  # another signal, never preempted
        Collision(410.0, ":M_0_0", "a", "b"),  # an unsignalized junction
        Collision(415.0, ":J_0_1", "a", "b"),  # the second preemption
    ]
    assert collisions_while_preempted(at, junction_tls, windows) == 3
    assert collisions_while_preempted(at, junction_tls, windows, after_s=0.0) == 2
    assert collisions_while_preempted(at, junction_tls, {}) == 0
    # SUMO's 99 s is the controller's 100 s (a step later): then at the entry
    assert collisions_while_preempted(at, junction_tls, windows, after_s=0.0, clock_lag_s=1.0) == 3


def test_collisions_are_counted_to_the_scenarios_end_and_apart_after_it() -> None:
    at = tuple(Collision(t, "A_0", "a", "b") for t in (10.0, 1800.0, 1801.0, 2400.0))
    assert collisions_until(SumoOutputs({}, collisions=4, collision_list=at), 1800.0) == (2, 2)
    assert collisions_until(SumoOutputs({}, collisions=4, collision_list=at), 3000.0) == (4, 0)
    # no list of them (or not every one listed): all counted, none can be placed after the end
    assert collisions_until(SumoOutputs({}, collisions=5, collision_list=at), 1800.0) == (5, 0)


def test_collisions_involving_the_evs_count_them_as_collider_or_victim() -> None:
    at = [
        Collision(1.0, "A_0", "ev1", "car"),  # the EV ran into a car
        Collision(2.0, "A_0", "car", "ev2"),  # a car ran into the other EV
        Collision(3.0, "A_0", "car", "bus"),  # background only
        Collision(4.0, "A_0", "ev1", "ev2"),  # both EVs: one collision
        Collision(5.0, "A_0", "ev10", "car"),  # an id that only starts like an EV's
    ]
    assert collisions_involving(at, {"ev1", "ev2"}) == 3
    assert collisions_involving(at, {"ev1"}) == 2
    assert collisions_involving(at, set()) == 0


def test_collisions_are_read_with_time_and_place(tmp_path: Path) -> None:
    (tmp_path / "tripinfo.xml").write_text("<tripinfos/>")
    (tmp_path / "statistics.xml").write_text('<statistics><safety collisions="1"/></statistics>')
    (tmp_path / "collisions.xml").write_text(
        '<collisions><collision time="806.00" type="junction" lane=":C2_5_0" pos="15.38" collider="bg2143" '
        'victim="bg1813"/></collisions>')
    out = read_outputs(tmp_path)
    assert out.collisions == 1
    assert out.collision_list == (Collision(806.0, ":C2_5_0", "bg2143", "bg1813"),)


def test_teleports_after_collisions_are_told_from_the_others(tmp_path: Path) -> None:
    """SUMO's teleport total counts the vehicles teleported away after a collision too (Ingolstadt
    21, seed 1: total 15 = 14 collisions + 1 yield)."""
    (tmp_path / "tripinfo.xml").write_text("<tripinfos/>")
    (tmp_path / "statistics.xml").write_text(
        '<statistics><teleports total="15" jam="0" yield="1" wrongLane="0"/><safety collisions="14"/></statistics>')
    out = read_outputs(tmp_path)
    assert (out.teleports, out.teleports_traffic, out.collisions) == (15, 1, 14)


def test_a_hand_back_serving_two_junctions_counts_once() -> None:
    from controller.runtime.run import distinct_handbacks

    one = {"tls": "S", "ev": "a", "exit": 100.0, "restored": 110.0, "recovery_s": 10.0}
    records = [
        {**one, "junction_index": 2}, {**one, "junction_index": 4},  # a signal crossed twice, one preemption
        {**one, "ev": "b", "junction_index": 0},  # and another EV served with it
        {**one, "junction_index": 6, "exit": 300.0, "restored": 305.0, "recovery_s": 5.0},  # a later one
        {"tls": "T", "ev": "a", "junction_index": 3, "exit": 100.0, "restored": 110.0, "recovery_s": 10.0},
    ]
    assert [(r["tls"], r["exit"]) for r in distinct_handbacks(records)] == [("S", 100.0), ("S", 300.0), ("T", 100.0)]
    # a signal held on for later requests: one hand-back, timed from the last request's end (NDS
    # city: 134 s "recovery" counted from the first one's end, for a hand-back that took 1 s)
    held = [{"tls": "U", "ev": "a", "junction_index": 7, "exit": 1030.0, "restored": 1164.0, "recovery_s": 134.0},
            {"tls": "U", "ev": "b", "junction_index": 4, "exit": 1100.0, "restored": 1164.0, "recovery_s": 64.0},
            {"tls": "U", "ev": "a", "junction_index": 11, "exit": 1163.0, "restored": 1164.0, "recovery_s": 1.0},
            {"tls": "U", "ev": "c", "junction_index": 0, "exit": 1200.0, "restored": None, "recovery_s": None},
            {"tls": "U", "ev": "d", "junction_index": 1, "exit": None, "restored": None, "recovery_s": None}]
    assert [r["recovery_s"] for r in distinct_handbacks(held)] == [1.0, None, None]


def test_collisions_before_the_entry_are_not_counted_however_close() -> None:
    tls, windows = {"J": "T"}, {"T": [(100.0, 150.0)]}
    assert collisions_while_preempted([Collision(80.0, ":J_1_0", "a", "b")], tls, windows) == 0
    assert collisions_while_preempted([Collision(170.0, ":J_1_0", "a", "b")], tls, windows) == 1


def test_background_and_cross_streets(tmp_path: Path) -> None:
    from controller.runtime.outputs import background, cross_streets

    trips = [("ev", 200, 50), ("a", 100, 10), ("b", 300, 20), ("c", 301, 99)]
    (tmp_path / "tripinfo.xml").write_text("<tripinfos>" + "".join(
        f'<tripinfo id="{i}" arrival="{a}" timeLoss="{loss}"/>' for i, a, loss in trips) + "</tripinfos>")
    (tmp_path / "statistics.xml").write_text('<statistics><teleports total="6" jam="1" yield="2" wrongLane="3"/>'
                                             "</statistics>")
    out = read_outputs(tmp_path)
    assert out.teleports_traffic == 6
    assert background(out, {"ev"}, 300.0) == (2, 15.0)  # not the EV; arrived by the end, inclusive
    (tmp_path / "cross_streets.xml").write_text(
        '<meandata><interval><edge id="e1" entered="3" departed="1" timeLoss="20"/>'
        '<edge id="e2" entered="4" timeLoss="12"/></interval></meandata>')
    assert cross_streets(tmp_path) == {"edges": 2, "vehicles": 8, "mean_time_loss": 4.0}


def test_other_traffic_by_vehicle_class(tmp_path: Path) -> None:
    # Berlin's 2,639 "other" trips were 2,156 cars, 461 bicycles and 12 trams: apart here
    routes = tmp_path / "r.rou.xml"
    routes.write_text('<routes><vType id="car"/><vType id="bike" vClass="bicycle"/>'
                      '<vTypeDistribution id="mix"><vType id="tram" vClass="tram"/></vTypeDistribution>'
                      '<vehicle id="v" depart="0" type="car"><route edges="a"/></vehicle></routes>')
    classes = vtype_classes([routes, tmp_path / "missing.add.xml"])
    assert classes == {"car": "passenger", "bike": "bicycle", "tram": "tram"}

    def trip(vid: str, vtype: str, loss: float, arrival: float = 100.0) -> Trip:
        return Trip(vid, 0.0, arrival, arrival, loss, 0, 0.0, vtype)

    trips = [trip("c1", "car", 10.0), trip("c2", "car", 20.0), trip("c3", "DEFAULT_VEHTYPE", 30.0),
             trip("b1", "bike", 4.0), trip("t1", "tram", 7.0), trip("d1", "DEFAULT_BIKETYPE", 6.0),
             trip("amb", "greenwave_ambulance", 1.0), trip("late", "car", 99.0, arrival=500.0)]
    outputs = SumoOutputs(trips={t.vehicle_id: t for t in trips})
    by_class = background_by_class(outputs, {"amb"}, 200.0, classes)
    assert by_class == {"passenger": {"trips": 3, "mean_time_loss": 20.0},
                        "bicycle": {"trips": 2, "mean_time_loss": 5.0},
                        "tram": {"trips": 1, "mean_time_loss": 7.0}}
    assert sum(int(c["trips"] or 0) for c in by_class.values()) == background(outputs, {"amb"}, 200.0)[0] == 6
