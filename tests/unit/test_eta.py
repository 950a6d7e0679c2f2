"""ETA prediction: hand-checked kinematics, profiles, online correction, queue term, band, evaluation."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.corridor import Corridor, CorridorJunction, build_corridor
from controller.core.eta import (
    Eta,
    EtaConfig,
    EtaLog,
    EtaPredictor,
    EvDynamics,
    QueueAhead,
    SpeedProfile,
    _Kinematics,
    arrival_times_s,
    build_profile,
    travel_time_s,
)
from controller.core.network import Connection, Edge, Network
from tests.unit.test_corridor import ROUTE, edge, make_network, program

DYN = EvDynamics(max_speed_mps=50.0, accel_mps2=2.0, decel_mps2=4.0)
FLAT = SpeedProfile((0.0,), (1000.0,), (10.0,))
# a slow turn: 100 m at 10 m/s, a 10 m crossing at 5 m/s, 190 m at 10 m/s
TURN = SpeedProfile((0.0, 100.0, 110.0), (100.0, 110.0, 300.0), (10.0, 5.0, 10.0))


# ------------------------------------------------------------------------------ kinematics


def test_accelerate_from_rest_then_cruise() -> None:
    # 0 -> 10 m/s at 2 m/s²: 5 s over 25 m; then 75 m at 10 m/s: 7.5 s
    assert travel_time_s(FLAT, DYN, 0.0, 0.0, 100.0) == pytest.approx(12.5)
    # still accelerating: x = t², so 9 m in 3 s and 16 m in 4 s
    assert arrival_times_s(FLAT, DYN, 0.0, 0.0, [9.0, 16.0, 25.0, 100.0]) == pytest.approx([3.0, 4.0, 5.0, 12.5])


def test_already_at_speed_and_from_the_middle() -> None:
    assert travel_time_s(FLAT, DYN, 0.0, 10.0, 100.0) == pytest.approx(10.0)
    assert travel_time_s(FLAT, DYN, 400.0, 10.0, 1000.0) == pytest.approx(60.0)
    # from 6 m/s: 2 s over 16 m to reach 10 m/s, then 84 m in 8.4 s
    assert travel_time_s(FLAT, DYN, 500.0, 6.0, 600.0) == pytest.approx(10.4)
    assert travel_time_s(FLAT, DYN, 250.0, 3.0, 250.0) == 0.0


def test_faster_than_the_limit_is_clamped_to_it() -> None:
    assert travel_time_s(FLAT, DYN, 0.0, 25.0, 100.0) == pytest.approx(10.0)


def test_speed_factor_and_max_speed_cap_the_limit() -> None:
    fast = EvDynamics(max_speed_mps=50.0, accel_mps2=2.0, decel_mps2=4.0, speed_factor=1.25)
    assert travel_time_s(FLAT, fast, 0.0, 12.5, 500.0) == pytest.approx(40.0)
    capped = EvDynamics(max_speed_mps=8.0, accel_mps2=2.0, decel_mps2=4.0, speed_factor=1.25)
    assert travel_time_s(FLAT, capped, 0.0, 8.0, 400.0) == pytest.approx(50.0)


def test_brakes_ahead_of_a_slow_turn() -> None:
    # braking 10 -> 5 m/s at 4 m/s²: (100 - 25) / 8 = 9.375 m in 1.25 s, so cruise 90.625 m (9.0625 s)
    # turn: 10 m at 5 m/s = 2 s; after: 5 -> 10 m/s at 2 m/s²: 18.75 m in 2.5 s, 171.25 m cruise
    t_stop_line, t_turn_end, t_end = arrival_times_s(TURN, DYN, 0.0, 10.0, [100.0, 110.0, 300.0])
    assert t_stop_line == pytest.approx(9.0625 + 1.25)
    assert t_turn_end == pytest.approx(12.3125)
    assert t_end == pytest.approx(12.3125 + 2.5 + 17.125)
    # inside the braking run: 4.375 m past its start, v = sqrt(100 - 8 * 4.375)
    assert travel_time_s(TURN, DYN, 0.0, 10.0, 95.0) == pytest.approx(9.0625 + (10 - math.sqrt(65)) / 4)


def test_short_segment_accelerates_then_brakes_without_reaching_the_limit() -> None:
    prof = SpeedProfile((0.0, 20.0), (20.0, 30.0), (10.0, 2.0))
    # the accel curve v² = 4s and the brake curve v² = 4 + 8(20 - s) meet at s = 164/12
    s_meet = 164 / 12
    v_peak = math.sqrt(4 * s_meet)
    t_20 = v_peak / 2 + (v_peak - 2) / 4
    assert v_peak < 10
    assert arrival_times_s(prof, DYN, 0.0, 0.0, [20.0, 30.0]) == pytest.approx([t_20, t_20 + 5.0])


def test_braking_looks_beyond_the_next_segment() -> None:
    # 5 m at 10 m/s right before the 5 m/s turn: braking starts on the segment before it
    prof = SpeedProfile((0.0, 95.0, 100.0, 110.0), (95.0, 100.0, 110.0, 300.0), (10.0, 10.0, 5.0, 10.0))
    assert arrival_times_s(prof, DYN, 0.0, 10.0, [100.0, 300.0]) == pytest.approx(
        arrival_times_s(TURN, DYN, 0.0, 10.0, [100.0, 300.0])
    )


def test_bad_targets_raise() -> None:
    with pytest.raises(ValueError, match="behind"):
        travel_time_s(FLAT, DYN, 100.0, 5.0, 50.0)
    with pytest.raises(ValueError, match="sorted"):
        arrival_times_s(FLAT, DYN, 0.0, 5.0, [50.0, 40.0])
    with pytest.raises(ValueError, match="beyond"):
        travel_time_s(FLAT, DYN, 0.0, 5.0, 1000.5)
    with pytest.raises(ValueError, match="speed"):
        travel_time_s(FLAT, DYN, 0.0, -1.0, 10.0)
    assert arrival_times_s(FLAT, DYN, 0.0, 5.0, []) == []


def test_invalid_values_raise() -> None:
    with pytest.raises(ValueError, match="accel"):
        EvDynamics(max_speed_mps=30.0, accel_mps2=0.0, decel_mps2=4.0)
    with pytest.raises(ValueError, match="contiguous"):
        SpeedProfile((0.0, 60.0), (50.0, 100.0), (10.0, 10.0))
    with pytest.raises(ValueError, match="speed"):
        SpeedProfile((0.0,), (50.0,), (0.0,))


def test_speed_at() -> None:
    assert [TURN.speed_at(x) for x in (-5.0, 0.0, 99.9, 100.0, 109.0, 110.0, 300.0, 400.0)] == [
        10.0,
        10.0,
        10.0,
        5.0,
        5.0,
        10.0,
        10.0,
        10.0,
    ]


@st.composite
def _cases(draw: st.DrawFn) -> tuple[SpeedProfile, EvDynamics, float, float, list[float]]:
    lengths = draw(st.lists(st.floats(1.0, 300.0), min_size=1, max_size=8))
    speeds = draw(st.lists(st.floats(1.0, 30.0), min_size=len(lengths), max_size=len(lengths)))
    starts = [0.0]
    for length in lengths[:-1]:
        starts.append(starts[-1] + length)
    ends = [s + length for s, length in zip(starts, lengths, strict=True)]
    prof = SpeedProfile(tuple(starts), tuple(ends), tuple(speeds))
    dyn = EvDynamics(
        max_speed_mps=draw(st.floats(5.0, 40.0)),
        accel_mps2=draw(st.floats(0.5, 5.0)),
        decel_mps2=draw(st.floats(0.5, 9.0)),
        speed_factor=draw(st.floats(0.8, 1.3)),
    )
    from_m = draw(st.floats(0.0, ends[-1]))
    speed = draw(st.floats(0.0, 45.0))
    targets = sorted(draw(st.lists(st.floats(from_m, ends[-1]), min_size=1, max_size=12)))
    return prof, dyn, from_m, speed, targets


@settings(max_examples=300, deadline=None)
@given(_cases())
def test_arrival_times_monotone_and_never_faster_than_max_speed(
    case: tuple[SpeedProfile, EvDynamics, float, float, list[float]],
) -> None:
    prof, dyn, from_m, speed, targets = case
    times = arrival_times_s(prof, dyn, from_m, speed, targets)
    assert len(times) == len(targets)
    fastest = min(dyn.max_speed_mps, max(prof.speeds_mps) * dyn.speed_factor)
    for x, t in zip(targets, times, strict=True):
        assert math.isfinite(t)
        assert t >= (x - from_m) / dyn.max_speed_mps - 1e-9
        assert t >= (x - from_m) / fastest - 1e-6
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(times))
    # one pass agrees with one target at a time
    assert travel_time_s(prof, dyn, from_m, speed, targets[-1]) == pytest.approx(times[-1])


@settings(max_examples=300, deadline=None)
@given(_cases(), st.sampled_from([None, 0.0, 3.0]))
def test_the_saturated_run_table_gives_the_segment_by_segment_times(
    case: tuple[SpeedProfile, EvDynamics, float, float, list[float]], end_speed: float | None,
) -> None:
    prof, dyn, from_m, speed, targets = case
    kin = _Kinematics(prof, dyn)
    plain = _Kinematics(prof, dyn)
    plain._sat_u = tuple(math.nan for _ in plain._sat_u)  # never equal: every segment computed
    for start in (from_m, *prof.starts_m):  # from anywhere, and from each segment's start
        tg = [x for x in targets if x >= start] or [prof.ends_m[-1]]
        for speed_mps in (speed, 0.0, 40.0):
            assert kin.times(start, speed_mps, tg, end_speed) == pytest.approx(
                plain.times(start, speed_mps, tg, end_speed), rel=1e-9, abs=1e-9)
            assert kin.times(start, speed_mps, tg, max_time_s=20.0) == pytest.approx(
                plain.times(start, speed_mps, tg, max_time_s=20.0), rel=1e-9, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(1.0, 30.0),
    st.floats(0.5, 5.0),
    st.floats(0.0, 1.0),
    st.floats(1.0, 2000.0),
)
def test_constant_limit_matches_the_closed_form(limit: float, accel: float, speed_frac: float, dist: float) -> None:
    prof = SpeedProfile((0.0,), (2000.0,), (limit,))
    dyn = EvDynamics(max_speed_mps=60.0, accel_mps2=accel, decel_mps2=4.0)
    u = speed_frac * limit
    s_acc = (limit**2 - u**2) / (2 * accel)
    if dist <= s_acc:
        expected = (math.sqrt(u**2 + 2 * accel * dist) - u) / accel
    else:
        expected = (limit - u) / accel + (dist - s_acc) / limit
    assert travel_time_s(prof, dyn, 0.0, u, dist) == pytest.approx(expected, rel=1e-9, abs=1e-9)


# ------------------------------------------------------------------------------ profile


def _turn_network() -> Network:
    """in (100 m, 13.89) -J1 left turn, 12 m at 6 m/s-> m1 (200 m, 11.11) -J2 straight-> out (150 m, 13.89).

    J2 has two connections m1 -> out: 10 m at 13.89 (used, the shortest) and 14 m at 8 m/s.
    """
    edges = [
        edge("in", "n0", "J1", 100, speed=13.89),
        edge("m1", "J1", "J2", 200, lanes=2, speed=11.11),
        edge("out", "J2", "n3", 150, lanes=2, speed=13.89),
        edge(":J1_0", "J1", "J1", 12, speed=6.0),
        edge(":J2_0", "J2", "J2", 10, speed=13.89),
        edge(":J2_1", "J2", "J2", 14, speed=8.0),
    ]
    edges = [
        Edge(e.edge_id, e.from_node, e.to_node, e.length_m, e.speed_mps, e.lanes, "internal")
        if e.edge_id.startswith(":")
        else e
        for e in edges
    ]
    conns = (
        Connection("in", "m1", "in_0", "m1_0", "J1", "T1", 0, "l", ":J1_0_0", 12.0),
        Connection("m1", "out", "m1_1", "out_1", "J2", "T2", 1, "s", ":J2_1_0", 14.0),
        Connection("m1", "out", "m1_0", "out_0", "J2", "T2", 0, "s", ":J2_0_0", 10.0),
    )
    return Network(
        edges={e.edge_id: e for e in edges},
        connections=conns,
        programs={"T1": program("T1", ("G", 30), ("y", 3), ("r", 30)), "T2": program("T2", ("GG", 30), ("yy", 3))},
        junction_types={"J1": "traffic_light", "J2": "traffic_light"},
    )


def test_profile_has_the_slow_left_turn_and_the_shortest_crossing() -> None:
    net = _turn_network()
    corridor = build_corridor(net, ("in", "m1", "out"))
    assert corridor.edge_offsets_m == pytest.approx((0.0, 112.0, 322.0))
    prof = build_profile(net, corridor)
    # the J2 crossing (13.89, the 10 m connection) merges with 'out' at the same speed
    assert prof.starts_m == pytest.approx((0.0, 100.0, 112.0, 312.0))
    assert prof.ends_m == pytest.approx((100.0, 112.0, 312.0, 472.0))
    assert prof.speeds_mps == pytest.approx((13.89, 6.0, 11.11, 13.89))
    assert prof.end_m == pytest.approx(corridor.length_m)
    assert prof.speed_at(105.0) == 6.0
    assert [j.distance_m for j in corridor.junctions] == pytest.approx([100.0, 312.0])


def test_profile_without_internal_edges_uses_the_exit_edge_speed() -> None:
    net = make_network()  # all 10 m/s, internal lanes not in network.edges
    corridor = build_corridor(net, ROUTE)
    prof = build_profile(net, corridor)
    assert prof.starts_m == (0.0,)
    assert prof.ends_m == pytest.approx((corridor.length_m,))
    assert prof.speeds_mps == (10.0,)


# ------------------------------------------------------------------------------ predictor

V = 15.0
LONG = SpeedProfile((0.0,), (5000.0,), (V,))
EV = EvDynamics(max_speed_mps=30.0, accel_mps2=2.5, decel_mps2=4.5)


def _junction(index: int, distance_m: float) -> CorridorJunction:
    return CorridorJunction(
        index=index,
        junction_id=f"J{index}",
        tls_id=f"T{index}",
        approach_edge="a",
        exit_edge="a",
        route_index=0,
        approach_lanes=("a_0",),
        link_indices=(0,),
        green_phases=(0,),
        yellow_s=3.0,
        all_red_s=1.0,
        distance_m=distance_m,
    )


def _corridor(*distances_m: float) -> Corridor:
    return Corridor(
        route=("a",),
        junctions=tuple(_junction(i, d) for i, d in enumerate(distances_m)),
        edge_offsets_m=(0.0,),
        length_m=5000.0,
    )


def _drive(
    target_speed: Callable[[float], float], duration_s: float, accel: float = 2.5, decel: float = 4.5
) -> list[tuple[float, float, float]]:
    """(t, position, speed) every 1 s of a vehicle tracking ``target_speed(t)`` within accel/decel."""
    dt = 0.01
    x = v = 0.0
    v = target_speed(0.0)
    out = [(0.0, 0.0, v)]
    steps_per_s = round(1 / dt)
    for step in range(1, round(duration_s / dt) + 1):
        t = step * dt
        want = target_speed(t)
        v_new = min(v + accel * dt, want) if want > v else max(v - decel * dt, want)
        x += 0.5 * (v + v_new) * dt
        v = v_new
        if step % steps_per_s == 0:
            out.append((round(t), x, v))
    return out


def _crossing(traj: list[tuple[float, float, float]], distance_m: float) -> float:
    for (t_a, x_a, _), (t_b, x_b, _) in itertools.pairwise(traj):
        if x_a < distance_m <= x_b:
            return t_a + (distance_m - x_a) / (x_b - x_a) * (t_b - t_a)
    raise AssertionError(f"never reaches {distance_m}")


def test_before_any_observation_predicts_from_the_route_start_at_rest() -> None:
    pred = EtaPredictor(_corridor(100.0, 400.0), LONG, EV)
    etas = pred.predict(50.0)
    assert [e.junction_index for e in etas] == [0, 1]
    assert etas[0].eta_s == pytest.approx(50.0 + travel_time_s(LONG, EV, 0.0, 0.0, 100.0))
    assert etas[0].free_flow_s == etas[0].eta_s
    assert pred.factor == 1.0


def test_free_flow_keeps_factor_one_and_predicts_exactly() -> None:
    pred = EtaPredictor(_corridor(1200.0), LONG, EV)
    traj = _drive(lambda t: V, 60)
    for t, x, v in traj:
        pred.observe(t, x, v)
    assert pred.factor == pytest.approx(1.0)
    (eta,) = pred.predict(60.0)
    assert eta.eta_s == pytest.approx(60.0 + (1200.0 - 900.0) / V)


def test_following_at_seventy_percent_learns_the_factor_and_the_arrival() -> None:
    pred = EtaPredictor(_corridor(1000.0, 1500.0, 2000.0), LONG, EV)
    traj = _drive(lambda t: 0.7 * V, 220)
    for t, x, v in traj[:61]:
        pred.observe(t, x, v)
    assert pred.factor == pytest.approx(1 / 0.7, abs=0.03)
    etas = pred.predict(60.0)
    assert [e.junction_index for e in etas] == [0, 1, 2]
    for e, d in zip(etas, (1000.0, 1500.0), strict=False):
        assert e.eta_s == pytest.approx(_crossing(traj, d), abs=1.0)
        assert e.free_flow_s < e.eta_s
        assert e.low_s < _crossing(traj, d) < e.high_s


def test_a_thirty_second_stop_at_a_red_does_not_inflate_the_factor() -> None:
    # cruise at 15 m/s, brake at 4.5 m/s² from t = 40, wait 30 s, accelerate at 2.5 m/s², cruise
    def target(t: float) -> float:
        return V if t < 40.0 or t >= 40.0 + V / 4.5 + 30.0 else 0.0

    traj = _drive(target, 150)
    pred = EtaPredictor(_corridor(4000.0), LONG, EV)
    stopped = 0
    for t, x, v in traj:
        pred.observe(t, x, v)
        stopped += v < 0.1
        assert pred.factor <= 1.1, (t, pred.factor)
    assert stopped >= 29
    assert pred.factor == pytest.approx(1.0, abs=0.05)


def test_a_recent_slow_stretch_weighs_on_the_next_seconds_the_trips_factor_beyond() -> None:
    # 120 s at the limit, then 30 s behind a car at 60 %: the recent factor is about 1.67, the
    # trip's about (120 + 30) / (120 + 18) = 1.09
    traj = _drive(lambda t: V if t < 120.0 else 0.6 * V, 150)
    cfg = EtaConfig(bias_correction=False)
    pred = EtaPredictor(_corridor(4000.0), LONG, EV, cfg)
    for t, x, v in traj:
        pred.observe(t, x, v)
    assert pred.factor > 1.3
    assert pred.trip_factor == pytest.approx(150.0 / (120.0 + 30.0 * 0.6), abs=0.03)
    t0, x0, _ = traj[-1]
    kin = (4000.0 - x0) / V  # the EV is at the limit's 60 %, so about this much kinematic time
    (eta,) = pred.predict(t0)
    horizon = cfg.recent_horizon_s
    assert horizon is not None
    expected = t0 + pred.factor * horizon + pred.trip_factor * (kin - horizon)
    assert eta.eta_s == pytest.approx(expected, abs=1.5)
    # the recent factor throughout, as before: it carries the slow car into the whole prediction
    whole = EtaPredictor(_corridor(4000.0), LONG, EV, EtaConfig(bias_correction=False, recent_horizon_s=None))
    for t, x, v in traj:
        whole.observe(t, x, v)
    (late,) = whole.predict(t0)
    assert late.eta_s == pytest.approx(t0 + whole.factor * kin, abs=1.5)
    assert late.eta_s > eta.eta_s + 0.2 * kin


def test_the_trips_factor_waits_for_enough_movement_and_leaves_stops_out() -> None:
    cfg = EtaConfig(trip_factor_min_s=20.0)
    pred = EtaPredictor(_corridor(4000.0), LONG, EV, cfg)
    for t, x, v in _drive(lambda t: 0.5 * V, 15):
        pred.observe(t, x, v)
    assert pred.trip_factor == pred.factor  # under 20 s of kinematic time: the recent factor
    # a long stop at a red, then free flow: the trip's factor stays near 1
    def target(t: float) -> float:
        return V if t < 40.0 or t >= 40.0 + V / 4.5 + 60.0 else 0.0

    pred = EtaPredictor(_corridor(4000.0), LONG, EV, cfg)
    for t, x, v in _drive(target, 200):
        pred.observe(t, x, v)
    assert pred.trip_factor == pytest.approx(1.0, abs=0.05)


def test_factor_is_clipped() -> None:
    cfg = EtaConfig(max_factor=1.2)
    pred = EtaPredictor(_corridor(3000.0), LONG, EV, cfg)
    for t, x, v in _drive(lambda t: 0.3 * V, 100):
        pred.observe(t, x, v)
    assert pred.factor == pytest.approx(1.2, abs=0.01)
    # faster than free flow (a speed factor above the one assumed) never drops below min_factor
    pred = EtaPredictor(_corridor(3000.0), LONG, EV)
    for t in range(60):
        pred.observe(float(t), 20.0 * t, 20.0)
    assert pred.factor == 1.0


def test_queue_at_a_red_delays_that_junction_and_every_later_one() -> None:
    pred = EtaPredictor(_corridor(150.0, 450.0), LONG, EV)
    pred.observe(0.0, 0.0, V)  # free flow: 10 s and 30 s
    free = pred.predict(0.0)
    assert [e.eta_s for e in free] == pytest.approx([10.0, 30.0])
    # red for 12 s more, 4 queued: 12 + 2 lost + 4 × 2 headway = 22 s; 12 s later than free flow.
    # The EV stops there and drives on from rest: 45 m in 6 s accelerating, then 255 m in 17 s
    etas = pred.predict(0.0, [QueueAhead(junction_index=0, vehicles=4, red_for_s=12.0)])
    assert [e.eta_s for e in etas] == pytest.approx([22.0, 45.0])
    assert [e.free_flow_s for e in etas] == pytest.approx([10.0, 30.0])
    # a queue that clears before the EV gets there changes nothing
    etas = pred.predict(0.0, [QueueAhead(junction_index=1, vehicles=3, red_for_s=5.0)])
    assert [e.eta_s for e in etas] == pytest.approx([10.0, 30.0])
    # green and kept green: the queued vehicles still discharge ahead of the EV, no start-up lost
    # time. A 2 s wait against the 4.67 s a stop and start cost at 15 m/s (15/9 braking + 15/5
    # accelerating): the EV crosses at 15 × (1 - 2/4.67) = 8.57 m/s, takes 2.57 s over 30.3 m
    # to reach 15 m/s again, then 269.7 m at 15 m/s
    etas = pred.predict(0.0, [QueueAhead(junction_index=0, vehicles=6, red_for_s=0.0)])
    v = 15.0 * (1 - 2.0 / (15 / 9 + 15 / 5))
    assert [e.eta_s for e in etas] == pytest.approx([12.0, 12.0 + (15 - v) / 2.5 + (300 - (225 - v * v) / 5) / 15])
    # delays at two junctions: the later one is measured against the already shifted ETA
    etas = pred.predict(
        0.0, [QueueAhead(0, vehicles=4, red_for_s=12.0), QueueAhead(1, vehicles=10, red_for_s=40.0)]
    )
    assert [e.eta_s for e in etas] == pytest.approx([22.0, 62.0])


def test_each_wait_restarts_the_drive_from_its_own_stop_line() -> None:
    pred = EtaPredictor(_corridor(150.0, 450.0, 750.0, 1200.0), LONG, EV)
    pred.observe(0.0, 0.0, V)  # free flow: 10, 30, 50 and 80 s
    assert [e.eta_s for e in pred.predict(0.0)] == pytest.approx([10.0, 30.0, 50.0, 80.0])
    # stops at the first two: from rest at 150 m, 22 + 23 = 45 s at 450 m, where it waits until
    # 62 s; from rest there: 300 m in 23 s, 750 m in 6 + 705 / 15 = 53 s
    waits = [QueueAhead(0, vehicles=4, red_for_s=12.0), QueueAhead(1, vehicles=10, red_for_s=40.0)]
    assert [e.eta_s for e in pred.predict(0.0, waits)] == pytest.approx([22.0, 62.0, 85.0, 115.0])
    # a wait of a moment barely slows the EV: the later ETAs move by little more than the wait
    # (red for 6.05 s more, 2 s start-up lost time, one vehicle ahead discharging in 2 s: 0.05 s
    # after the EV could be there)
    wait = 0.05
    etas = pred.predict(0.0, [QueueAhead(0, vehicles=1, red_for_s=10.0 - 4.0 + wait)])
    assert etas[0].eta_s == pytest.approx(10.0 + wait)
    assert 30.0 + wait < etas[1].eta_s < 30.0 + wait + 0.1


def test_an_ev_first_in_line_crosses_once_it_has_pulled_away_from_where_it_waits() -> None:
    # nobody ahead of it: no start-up lost time (that is the queue's), only the stop_gap_m (1 m)
    # SUMO leaves before the line, from rest at 2.5 m/s²: sqrt(2 × 1 / 2.5) s after the green is
    # in force. It was 2 s, and every ETA published at a switch-over the EV waited for was late
    # by a second or so (Bologna's 210, where the EV stops in every run: +2.3 s)
    pull = math.sqrt(2.0 / 2.5)
    pred = EtaPredictor(_corridor(150.0, 450.0), LONG, EV)
    pred.observe(0.0, 149.0, 0.0)  # waiting at the first line
    assert pred.predict(0.0, [QueueAhead(0, vehicles=0, red_for_s=5.0)])[0].eta_s == pytest.approx(5.0 + pull)
    pred = EtaPredictor(_corridor(150.0, 450.0), LONG, EV)
    pred.observe(0.0, 149.6, 0.0)  # (nearer than that: from where it is)
    assert pred.predict(0.0, [QueueAhead(0, vehicles=0, red_for_s=5.0)])[0].eta_s == pytest.approx(
        5.0 + math.sqrt(2.0 * 0.4 / 2.5))
    # still driving up to it: it will stop there, and the same holds
    pred = EtaPredictor(_corridor(150.0, 450.0), LONG, EV)
    pred.observe(0.0, 100.0, V)
    assert pred.predict(0.0, [QueueAhead(0, vehicles=0, red_for_s=20.0)])[0].eta_s == pytest.approx(20.0 + pull)


def test_passed_junctions_are_dropped_and_band_grows_with_horizon() -> None:
    pred = EtaPredictor(_corridor(100.0, 400.0, 900.0), LONG, EV)
    pred.observe(0.0, 150.0, V)
    etas = pred.predict(0.0)
    assert [e.junction_index for e in etas] == [1, 2]
    widths = [e.high_s - e.low_s for e in etas]
    assert widths[0] < widths[1]
    cfg = EtaConfig()
    assert etas[1].high_s - etas[1].eta_s == pytest.approx(cfg.band_base_s + cfg.band_per_s * 50.0)
    pred.observe(1.0, 1000.0, V)
    assert pred.predict(1.0) == []


def _stepwise(plan: list[float], period_s: float) -> Callable[[float], float]:
    return lambda t: plan[min(int(t // period_s), len(plan) - 1)]


def test_band_contains_the_truth_on_a_noisy_trajectory() -> None:
    # following traffic: a new wanted speed, uniform in 50-90 % of the limit, every 5 s
    distances = tuple(250.0 * k for k in range(1, 13))
    log = EtaLog()
    actual: dict[tuple[str, int], float] = {}
    for seed in range(5):
        rng = random.Random(seed)
        plan = [rng.uniform(0.5 * V, 0.9 * V) for _ in range(80)]
        traj = _drive(_stepwise(plan, 5.0), 300)
        pred = EtaPredictor(_corridor(*distances), LONG, EV)
        for t, x, v in traj:
            pred.observe(t, x, v)
            log.record(f"ev{seed}", t, pred.predict(t))
        actual.update({(f"ev{seed}", i): _crossing(traj, d) for i, d in enumerate(distances) if d < traj[-1][1]})
        assert pred.spread_per_s > 0
        assert 1 / 0.9 - 0.1 < pred.factor < 1 / 0.5
    report = log.evaluate(actual)
    assert isinstance(report["n"], int) and report["n"] > 5000
    coverage, p50 = report["band_coverage"], report["abs_error_p50"]
    assert isinstance(coverage, float) and isinstance(p50, float)
    assert coverage >= 0.8, report
    assert p50 < 5.0


# ------------------------------------------------------------------------------ evaluation


def test_evaluate_matches_horizons_tags_entry_and_rounds() -> None:
    log = EtaLog()

    def rec(t: float, j: int, eta: float, low: float, high: float, tag: str = "") -> None:
        log.record("ev", t, [Eta(j, eta, low, high, eta)], {j: tag} if tag else None)

    # junction 0 arrives at 100
    rec(89.5, 0, 102.0, 101.0, 103.0)  # horizon 10.5, error +2, band misses
    rec(90.2, 0, 99.0, 98.0, 101.0)  # horizon 9.8 (closest to 10), error -1, covers
    rec(70.0, 0, 105.0, 99.0, 111.0, tag="entry")  # horizon 30, error +5, covers
    rec(40.0, 0, 95.0, 90.0, 100.0)  # horizon 60, error -5, covers (edge)
    rec(120.0, 0, 100.0, 99.0, 101.0)  # after the arrival: not counted
    # junction 1 arrives at 200; horizon 15 matches none of 10/30/60
    rec(185.0, 1, 203.0, 201.0, 205.0)  # error +3, band misses
    log.record("other", 0.0, [Eta(0, 5.0, 4.0, 6.0, 5.0)])  # no actual: ignored
    assert len(log.records) == 7
    assert log.records[2].tag == "entry"

    out = log.evaluate({("ev", 0): 100.0, ("ev", 1): 200.0})
    assert out["n"] == 5
    # |errors| sorted 1, 2, 3, 5, 5: p50 3, p90 at rank 3.6 -> 5
    assert out["abs_error_p50"] == 3.0
    assert out["abs_error_p90"] == 5.0
    assert out["bias_s"] == 0.8
    assert out["band_coverage"] == 0.6
    assert out["by_horizon"] == {
        "10": {"n": 1, "abs_error_p50": 1.0, "abs_error_p90": 1.0},
        "30": {"n": 1, "abs_error_p50": 5.0, "abs_error_p90": 5.0},
        "60": {"n": 1, "abs_error_p50": 5.0, "abs_error_p90": 5.0},
    }
    assert out["at_entry"] == {"n": 1, "abs_error_p50": 5.0, "abs_error_p90": 5.0}
    assert out["errors"] == {"10": [-1.0], "30": [5.0], "60": [-5.0], "entry": [5.0]}

    outside = log.evaluate({("ev", 0): 100.0}, horizons_s=(12.0,))
    assert outside["by_horizon"] == {"12": {"n": 0, "abs_error_p50": None, "abs_error_p90": None}}


def test_evaluate_empty_gives_none() -> None:
    out = EtaLog().evaluate({})
    assert out["n"] == 0
    assert out["abs_error_p50"] is None
    assert out["bias_s"] is None
    assert out["band_coverage"] is None
    assert out["at_entry"] == {"n": 0, "abs_error_p50": None, "abs_error_p90": None}
    assert out["errors"] == {"10": [], "30": [], "60": [], "entry": []}


def test_evaluate_rounds_to_three_decimals() -> None:
    log = EtaLog()
    log.record("ev", 0.0, [Eta(0, 10.12345, 9.0, 11.0, 10.0)])
    out = log.evaluate({("ev", 0): 10.0})
    assert out["abs_error_p50"] == 0.123
    assert out["errors"] == {"10": [0.123], "30": [], "60": [], "entry": []}


def test_retired_records_are_not_matched_with_the_new_corridor() -> None:
    log = EtaLog()
    log.record("ev", 100.0, [Eta(0, 130.0, 128.0, 132.0, 129.0)])
    log.retire("ev", "ev@route1")  # re-routed: junction 0 now means another stop line
    log.record("ev", 101.0, [Eta(0, 140.0, 138.0, 142.0, 139.0)])
    out = log.evaluate({("ev", 0): 141.0})
    assert out["n"] == 1 and out["abs_error_p50"] == 1.0
    assert out["by_junction"] == {"ev#0": {"n": 1, "abs_error_p50": 1.0, "abs_error_p90": 1.0, "entry_error_s": None,
                                           "error_10_s": None, "error_30_s": None, "error_60_s": None}}
    assert {r.ev_id for r in log.records} == {"ev", "ev@route1"}


def test_evaluate_gives_each_junctions_entry_and_horizon_errors() -> None:
    log = EtaLog()
    log.record("ev", 40.0, [Eta(0, 101.0, 99.0, 103.0, 100.0), Eta(1, 151.0, 149.0, 153.0, 150.0)])
    log.record("ev", 41.0, [Eta(0, 100.5, 99.0, 102.0, 100.0)], tag_for={0: "entry"})
    log.record("ev", 90.0, [Eta(1, 149.0, 147.0, 151.0, 150.0)])
    out: dict[str, Any] = log.evaluate({("ev", 0): 100.0, ("ev", 1): 150.0})
    j0, j1 = out["by_junction"]["ev#0"], out["by_junction"]["ev#1"]
    assert j0["entry_error_s"] == 0.5 and j0["error_60_s"] == 1.0 and j0["error_10_s"] is None
    assert j1["entry_error_s"] is None and j1["error_60_s"] == -1.0 and j1["error_30_s"] is None
    assert out["by_horizon"]["60"]["n"] == 2  # the same matching as the pooled figures
    assert sorted(out["errors"]["60"]) == [-1.0, 1.0]


def test_bias_learned_from_crossed_stop_lines_corrects_later_predictions() -> None:
    # The EV keeps slowing down (traffic thickens): predictions run early. Once stop lines are
    # crossed and scored, the learned bias moves later predictions later (closer to the truth).
    corridor = _corridor(300.0, 600.0, 900.0, 1200.0, 1500.0)
    traj = _drive(lambda t: max(V * (1.0 - t / 250.0), 2.0), 240)
    on = EtaPredictor(corridor, LONG, EV, EtaConfig(bias_correction=True))
    off = EtaPredictor(corridor, LONG, EV, EtaConfig(bias_correction=False))
    for t, x, v in traj:
        for pred in (on, off):
            pred.observe(t, x, v)
            pred.predict(t)
        if x > 900.0:
            break
    assert on.bias_per_s < 0.0 and off.bias_per_s == 0.0
    truth = _crossing(traj, 1500.0)
    t_now = next(t for t, x, _ in traj if x > 900.0)
    corrected = next(e for e in on.predict(t_now) if e.junction_index == 4).eta_s
    raw = next(e for e in off.predict(t_now) if e.junction_index == 4).eta_s
    assert raw < corrected and abs(corrected - truth) < abs(raw - truth)


def test_evaluate_interpolates_percentiles_and_keeps_the_bounds_inclusive() -> None:
    log = EtaLog()  # junction 0 arrives at 100; horizons 121 (out), 120, 60, 30, 11 (10 ± 1), 0 (out)
    for t, eta, low, high, tag in [(-21.0, 200.0, 199.0, 201.0, ""), (-20.0, 101.0, 101.0, 102.0, ""),
                                   (40.0, 103.0, 100.0, 106.0, ""), (70.0, 98.0, 97.0, 99.0, "entry"),
                                   (89.0, 96.0, 95.0, 99.0, "entry"), (100.0, 150.0, 149.0, 151.0, "")]:
        log.record("ev", t, [Eta(0, eta, low, high, eta)], {0: tag} if tag else None)
    out: dict[str, Any] = log.evaluate({("ev", 0): 100.0})
    # |errors| 1, 2, 3, 4: p50 at rank 1.5, p90 at rank 2.7; the band's low edge covers
    keys = ("n", "abs_error_p50", "abs_error_p90", "bias_s", "band_coverage")
    assert [out[k] for k in keys] == [4, 2.5, 3.7, -0.5, 0.25]
    assert out["errors"] == {"10": [-4.0], "30": [-2.0], "60": [3.0], "entry": [-2.0, -4.0]}
    j0 = out["by_junction"]["ev#0"]
    assert (j0["n"], j0["entry_error_s"]) == (4, -4.0)  # the last entry's error


def test_crossed_stop_lines_score_the_predictions_made_for_them() -> None:
    pred = EtaPredictor(_corridor(60.0, 150.0, 1200.0, 1800.0), LONG, EV)
    pred.observe(0.0, 0.0, V)
    assert [e.eta_s for e in pred.predict(0.0)] == pytest.approx([4.0, 10.0, 80.0, 120.0])
    # crossed: on a sample at 5 s (horizon floored to 10 s), at 12.5 s (interpolated), 84 s ahead, 130 s (too far)
    rel = [1.0 / 10.0, 2.5 / 12.5, 4.0 / 84.0]
    for t, x, n in [(5.0, 60.0, 1), (20.0, 240.0, 2), (100.0, 1440.0, 3), (150.0, 2040.0, 3)]:
        pred.observe(t, x, 12.0)
        assert pred.spread_per_s == pytest.approx(math.sqrt(sum(r * r for r in rel[:n]) / n))


def test_a_retired_corridors_etas_are_scored_against_the_junctions_it_crossed() -> None:
    # an EV re-routed: its records of the old corridor were relabelled and never matched again,
    # those of the junctions it had crossed before the re-route included (dropped from every figure)
    log = EtaLog()
    log.record("ev", 0.0, [Eta(0, 10.0, 9.0, 11.0, 10.0), Eta(1, 30.0, 29.0, 31.0, 30.0)])
    log.retire("ev", "ev@route1", {0: 12.0})  # crossed J0 at 12 s; re-routed before J1
    log.record("ev", 13.0, [Eta(0, 40.0, 39.0, 41.0, 40.0)])  # the new corridor's first junction
    result = log.evaluate({("ev", 0): 41.0})
    assert result["n"] == 2 and result["bias_s"] == pytest.approx(((10.0 - 12.0) + (40.0 - 41.0)) / 2)
    by_junction = result["by_junction"]
    assert isinstance(by_junction, dict) and set(by_junction) == {"ev@route1#0", "ev#0"}
