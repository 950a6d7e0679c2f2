"""Map matching a position fix onto a route (pure geometry)."""

from __future__ import annotations

import pytest

from controller.core.geometry import match_to_route, project


def test_project_onto_a_polyline() -> None:
    shape = [(0.0, 0.0), (100.0, 0.0), (100.0, 50.0)]
    assert project(shape, 30.0, 4.0) == pytest.approx((30.0, 4.0))
    assert project(shape, 103.0, 20.0) == pytest.approx((120.0, 3.0))
    assert project(shape, -10.0, 0.0) == pytest.approx((0.0, 10.0))  # before the start: clamped
    assert project(shape, 100.0, 80.0) == pytest.approx((150.0, 30.0))  # past the end
    assert project([(1.0, 1.0)], 4.0, 5.0) == pytest.approx((0.0, 5.0))
    with pytest.raises(ValueError, match="empty"):
        project([], 0.0, 0.0)


def test_match_to_route_picks_the_nearest_edge_and_scales_to_its_length() -> None:
    # an L-shaped route: east along y=0 (shape 100 m, edge length 110 m), then north along x=100
    shapes = [[(0.0, 0.0), (100.0, 0.0)], [(100.0, 0.0), (100.0, 200.0)]]
    m = match_to_route(shapes, [110.0, 200.0], 50.0, -2.0)
    assert (m.route_index, m.offset_m, m.distance_m) == (0, pytest.approx(55.0), pytest.approx(2.0))
    m = match_to_route(shapes, [110.0, 200.0], 103.0, 150.0)
    assert (m.route_index, m.offset_m, m.distance_m) == (1, pytest.approx(150.0), pytest.approx(3.0))
    far = match_to_route(shapes, [110.0, 200.0], 50.0, 80.0)
    assert far.distance_m == pytest.approx(50.0)  # nearer to the second edge (50 m) than the first (80 m)
    assert far.route_index == 1


def test_match_to_route_prefers_edges_ahead_when_the_route_passes_twice() -> None:
    # out and back on the same street (two directions 3 m apart): near the start, the vehicle
    # that is already on the way back is matched to the way back
    shapes = [[(0.0, 0.0), (100.0, 0.0)], [(100.0, 3.0), (0.0, 3.0)]]
    assert match_to_route(shapes, [100.0, 100.0], 20.0, 1.0).route_index == 0
    back = match_to_route(shapes, [100.0, 100.0], 20.0, 1.0, from_index=1)
    assert (back.route_index, back.offset_m) == (1, pytest.approx(80.0))
    # but a fix nearer to an edge behind by more than tie_m is matched there (20 m against 23 m)
    assert match_to_route(shapes, [100.0, 100.0], 20.0, -20.0, from_index=1, tie_m=2.0).route_index == 0
    with pytest.raises(ValueError, match="one shape"):
        match_to_route(shapes, [100.0], 0.0, 0.0)
