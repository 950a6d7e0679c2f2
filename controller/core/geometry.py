"""Map matching of a position fix onto an emergency vehicle's route: pure plane geometry.

A fix (x, y in the network's metres) is projected onto the shape of every route edge (a
polyline, e.g. its rightmost lane's shape); the nearest edge wins, preferring edges at or after
the last matched one when several are about as near (a route may pass the same place twice).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]


def project(shape: Sequence[Point], x: float, y: float) -> tuple[float, float]:
    """(offset along ``shape`` of the point of ``shape`` nearest to (x, y), distance to it) in m."""
    if not shape:
        raise ValueError("empty shape")
    if len(shape) == 1:
        return 0.0, math.hypot(x - shape[0][0], y - shape[0][1])
    best_off, best_d = 0.0, math.inf
    walked = 0.0
    for (x1, y1), (x2, y2) in itertools.pairwise(shape):
        dx, dy = x2 - x1, y2 - y1
        seg = math.hypot(dx, dy)
        u = 0.0 if seg == 0 else max(0.0, min(1.0, ((x - x1) * dx + (y - y1) * dy) / (seg * seg)))
        px, py = x1 + u * dx, y1 + u * dy
        d = math.hypot(x - px, y - py)
        if d < best_d - 1e-9:
            best_off, best_d = walked + u * seg, d
        walked += seg
    return best_off, best_d


@dataclass(frozen=True)
class RouteMatch:
    route_index: int  # index of the matched edge in the route
    offset_m: float  # along that edge, scaled to the edge's length
    distance_m: float  # from the fix to the route


def match_to_route(
    shapes: Sequence[Sequence[Point]],
    lengths_m: Sequence[float],
    x: float,
    y: float,
    *,
    from_index: int = 0,
    tie_m: float = 5.0,
) -> RouteMatch:
    """The route edge (one shape and length per route edge) nearest to (x, y).

    Edges before ``from_index`` (behind the vehicle) are only taken when they are more than
    ``tie_m`` nearer than any edge from there on. The offset is scaled from the shape's length to
    the edge's length (SUMO's lane positions are along the edge's length)."""
    if not shapes or len(shapes) != len(lengths_m):
        raise ValueError("one shape and one length per route edge")
    found = []
    for i, shape in enumerate(shapes):
        off, d = project(shape, x, y)
        shape_len = sum(math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(shape))
        scaled = off * lengths_m[i] / shape_len if shape_len > 0 else 0.0
        found.append(RouteMatch(i, min(max(scaled, 0.0), lengths_m[i]), d))
    ahead = [m for m in found if m.route_index >= from_index]
    best = min(found, key=lambda m: (m.distance_m, -m.route_index))
    if ahead:
        best_ahead = min(ahead, key=lambda m: (m.distance_m, m.route_index))
        if best_ahead.distance_m <= best.distance_m + tie_m:
            return best_ahead
    return best
