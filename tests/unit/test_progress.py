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
    assert p.stops == [StopEpisode(2.0, 4.0, 75.0, 0, 25.0), StopEpisode(7.0, 9.0, 120.0, None, None)]
    assert p.time_stopped_s(50.0) == 4.0


def test_a_stop_from_the_departure_is_closed_when_the_ev_vanishes() -> None:
    p = EvProgress("ev", CORRIDOR)
    for t in (0.0, 1.0):
        p.update(t, _at(0.0, 0.0))
    p.update(2.0, None)
    assert p.stops == [StopEpisode(0.0, 2.0, 0.0, 0, 100.0)] and p.time_stopped_s(99.0) == 2.0
