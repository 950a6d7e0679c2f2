"""EV progress: stop lines crossed, and stops (episodes below 0.1 m/s after departure)."""

from __future__ import annotations

import pytest

from controller.core.corridor import Corridor, CorridorJunction
from controller.core.progress import EvProgress, StopEpisode
from controller.core.snapshot import VehicleState

J = CorridorJunction(index=0, junction_id="J", tls_id="T", approach_edge="a", exit_edge="b", route_index=0,
                     approach_lanes=("a_0",), link_indices=(1,), green_phases=(0,), yellow_s=3.0, all_red_s=0.0,
                     distance_m=100.0)
CORRIDOR = Corridor(route=("a", "b"), junctions=(J,), edge_offsets_m=(0.0, 100.0), length_m=200.0)


def _at(x: float, v: float) -> VehicleState:
    i = int(x >= 100.0)
    return VehicleState("ev", "ab"[i], f"{'ab'[i]}_0", x - 100.0 * i, v, i, x)


def test_stops_below_a_tenth_of_a_metre_per_second_closed_at_arrival() -> None:
    p = EvProgress("ev", CORRIDOR)
    for t, x, v in [(0, 60, 10), (1, 70, 0.1), (2, 75, 0.05), (3, 75, 0), (4, 80, 3), (5, 90, 10), (6, 110, 10),
                    (7, 120, 0), (8, 120, 0)]:
        p.update(float(t), _at(float(x), float(v)))
    assert p.time_stopped_s(8.0) == 3.0  # an open stop counts until then
    p.update(9.0, None, arrived=True)
    assert p.crossed_s == pytest.approx({0: 5.5})  # not overwritten by the arrival
    assert p.stops == [StopEpisode(2.0, 4.0, 75.0, 0, 25.0, True), StopEpisode(7.0, 9.0, 120.0, None, None)]
    assert p.time_stopped_s(50.0) == 4.0


def test_a_stop_from_the_departure_is_closed_when_the_ev_vanishes() -> None:
    p = EvProgress("ev", CORRIDOR)
    for t in (0.0, 1.0):
        p.update(t, _at(0.0, 0.0))
    p.update(2.0, None)
    assert p.stops == [StopEpisode(0.0, 2.0, 0.0, 0, 100.0, True)] and p.time_stopped_s(99.0) == 2.0


def test_an_arrival_short_of_the_last_edge_is_a_vanishing() -> None:
    # SUMO lists a vehicle it removes on the way (a teleport with nowhere to go) among the
    # arrived: one last seen 40 m before the stop line at 10 m/s cannot have reached the last
    # edge (from 100 m) a second later; one 5 m before it can, and one standing on it arrives
    far, near, on = (EvProgress("ev", CORRIDOR) for _ in range(3))
    for p, x, v in ((far, 60.0, 10.0), (near, 95.0, 10.0), (on, 150.0, 0.0)):
        p.update(0.0, _at(x, v))
        p.update(1.0, None, arrived=True)
    assert (far.arrived_s, far.vanished_s, far.crossed_s) == (None, 1.0, {})
    assert (near.arrived_s, near.vanished_s, near.crossed_s) == (1.0, None, {0: 1.0})
    assert (on.arrived_s, on.vanished_s) == (1.0, None)


def test_a_new_route_keeps_the_crossings_of_the_edges_both_share() -> None:
    # a -> b -> c planned, J0 (a->b) crossed at 5 s; SUMO's new route a -> b -> d keeps a and b
    j0 = J
    j1 = CorridorJunction(index=1, junction_id="K", tls_id="U", approach_edge="b", exit_edge="c", route_index=1,
                          approach_lanes=("b_0",), link_indices=(0,), green_phases=(0,), yellow_s=3.0,
                          all_red_s=0.0, distance_m=200.0)
    planned = Corridor(route=("a", "b", "c"), junctions=(j0, j1), edge_offsets_m=(0.0, 100.0, 200.0), length_m=300.0)
    p = EvProgress("ev", planned, depart_s=0.0, crossed_s={0: 5.0}, stops=[StopEpisode(1.0, 2.0, 50.0, 0, 50.0)])
    k_to_d = CorridorJunction(index=1, junction_id="K", tls_id="U", approach_edge="b", exit_edge="d", route_index=1,
                              approach_lanes=("b_0",), link_indices=(2,), green_phases=(1,), yellow_s=3.0,
                              all_red_s=0.0, distance_m=200.0)
    new = p.rerouted(Corridor(route=("a", "b", "d"), junctions=(j0, k_to_d), edge_offsets_m=(0.0, 100.0, 200.0),
                              length_m=300.0))
    assert new.crossed_s == {0: 5.0} and new.reroutes == 1 and new.depart_s == 0.0 and new.stops == p.stops
    new.update(12.0, _at(150.0, 10.0))
    assert new.crossed_s == {0: 5.0}  # not stamped again; K still ahead
    # a route that shares no edge keeps nothing
    other = Corridor(route=("x", "b", "d"), junctions=(k_to_d,), edge_offsets_m=(0.0, 100.0, 200.0), length_m=300.0)
    assert p.rerouted(other).crossed_s == {}


def test_a_stop_on_the_edge_that_ends_at_the_stop_line_is_on_its_approach() -> None:
    # a -> b -> c with one signal, K, at the end of b (400 m); a and b meet at a junction without
    # a signal. A stop on a is not in K's queue; one on b, however far back, is
    k = CorridorJunction(index=0, junction_id="K", tls_id="U", approach_edge="b", exit_edge="c", route_index=1,
                         approach_lanes=("b_0",), link_indices=(0,), green_phases=(0,), yellow_s=3.0,
                         all_red_s=0.0, distance_m=400.0)
    corridor = Corridor(route=("a", "b", "c"), junctions=(k,), edge_offsets_m=(0.0, 100.0, 400.0), length_m=500.0)
    p = EvProgress("ev", corridor)
    for t, x, v in [(0, 50, 0), (1, 60, 5), (2, 110, 10), (3, 130, 0), (4, 140, 5)]:
        i = 0 if x < 100 else 1
        p.update(float(t), VehicleState("ev", "ab"[i], f"{'ab'[i]}_0", x - 100.0 * i, float(v), i, float(x)))
    assert [(s.next_junction, s.distance_to_stop_line_m, s.on_approach) for s in p.stops] == [
        (0, 350.0, False), (0, 270.0, True)]


def test_a_new_route_keeps_where_the_ev_is_on_the_edges_both_share() -> None:
    # re-routed (through the API) while on a junction: it was not placed again until it had left
    # the junction, and meanwhile had no position, its requests dropped and the signal it still
    # needed handed back
    planned = Corridor(route=("a", "b", "c"), junctions=(J,), edge_offsets_m=(0.0, 100.0, 200.0), length_m=300.0)
    p = EvProgress("ev", planned)
    p.update(1.0, _at(150.0, 10.0))
    same_b = Corridor(route=("a", "b", "d"), junctions=(J,), edge_offsets_m=(0.0, 100.0, 210.0), length_m=310.0)
    kept = p.rerouted(same_b)
    assert (kept.position_m, kept.speed_mps) == (150.0, 10.0)
    kept.update(2.0, VehicleState("ev", ":K_0", ":K_0_0", 1.0, 10.0, 1, 152.0))  # (inside a junction)
    assert kept.position_m == 152.0
    # where it is not on the shared edges, it is placed afresh (its next update off a junction)
    away = Corridor(route=("a", "e"), junctions=(), edge_offsets_m=(0.0, 100.0), length_m=200.0)
    assert p.rerouted(away).position_m is None


def test_a_junction_passed_off_the_road_has_no_made_up_crossing_and_a_new_route_keeps_the_teleports() -> None:
    # seen at 60 m, off the road (a teleport) from 1 s, back on at 150 m at 20 s: J was passed off
    # the road, first seen past it at 20 s (interpolated, 60 -> 150 m over 19 s put it at 9.4 s)
    p = EvProgress("ev", CORRIDOR)
    p.update(0.0, _at(60.0, 10.0))
    p.update(1.0, None, teleporting=True, teleport_started=True)
    p.update(10.0, None, teleporting=True)
    assert p.off_road and p.teleports == 1 and p.vanished_s is None and p.crossed_s == {}
    p.update(20.0, _at(150.0, 10.0))
    assert not p.off_road and p.crossed_s == {0: 20.0} and p.passed_off_road == {0}
    moved = p.rerouted(Corridor(route=("a", "b", "c"), junctions=(J,), edge_offsets_m=(0.0, 100.0, 200.0),
                                length_m=300.0))
    assert (moved.teleports, moved.passed_off_road, moved.crossed_s) == (1, {0}, {0: 20.0})
    # arriving straight out of a teleport: what was left was passed off the road too
    q = EvProgress("ev", CORRIDOR)
    q.update(0.0, _at(60.0, 10.0))
    q.update(1.0, None, teleporting=True, teleport_started=True)
    q.update(30.0, None, arrived=True)
    assert (q.arrived_s, q.crossed_s, q.passed_off_road) == (30.0, {0: 30.0}, {0})
