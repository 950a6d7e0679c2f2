"""Routes over the pure network model: Dijkstra over edge-to-edge connections.

The search mirrors sumolib's ``Net.getOptimalPath`` (what ``getShortestPath`` and
``getFastestPath`` call) so both agree on the same network:

* the cost of moving from edge ``a`` onto edge ``b`` is the cost of ``b`` plus the cheapest
  crossing among the usable connections ``a -> b`` (0 if they have no internal lanes);
* ``cost="length"``: an edge costs its length, a crossing its ``via_length_m`` (sumolib's
  ``getShortestPath``);
* ``cost="time"`` (default): an edge costs ``length_m / speed_mps``, a crossing
  ``via_length_m`` over the speed of its first internal lane when the network holds internal
  edges, else over the speed of the edge it leads to (sumolib's ``getFastestPath``, which sums
  every internal lane at its own speed: the same whenever a crossing's internal lanes share one
  speed, as netconvert builds them);
* with ``vclass_emergency`` a connection is usable only when both its lanes allow vClass
  ``emergency`` (sumolib: ``vClass="emergency"``).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from controller.core.network import Connection, Network
from controller.errors import NetworkError, RouteError

Cost = Literal["length", "time"]


def fastest_route(
    network: Network,
    from_edge: str,
    to_edge: str,
    vclass_emergency: bool = True,
    cost: Cost = "time",
    allow: Callable[[str, str], bool] | None = None,
) -> tuple[str, ...]:
    """The cheapest route (tuple of normal edge ids, both ends included) from ``from_edge`` to ``to_edge``.

    ``cost="time"`` minimises free-flow travel time, ``cost="length"`` distance. ``allow``: a
    move from one edge onto the next is taken only where it says so (asked once per pair; a
    route that needs none it refuses is the same route as without it).
    Raises :class:`NetworkError` for an unknown or internal edge id and :class:`RouteError`
    when no route exists.
    """
    if cost not in ("length", "time"):
        raise ValueError(f"cost must be 'length' or 'time', not {cost!r}")
    _require_edge(network, from_edge, "from")
    _require_edge(network, to_edge, "to")
    if vclass_emergency:
        for edge_id, role in ((from_edge, "from"), (to_edge, "to")):
            edge = network.edges[edge_id]
            if edge.lanes and not any(ln.allows_emergency for ln in edge.lanes):
                raise RouteError(f"{role} edge '{edge_id}' of network {_src(network)} has no lane that allows "
                                 "emergency vehicles (a footpath, a cycleway, a rail or tram track?)")
    if from_edge == to_edge:
        return (from_edge,)

    succ = _successors(network, vclass_emergency, cost)
    dist: dict[str, float] = {from_edge: 0.0}
    pred: dict[str, str] = {}
    done: set[str] = set()
    # heap entries (cost, edge, predecessor) and the same cost arithmetic as sumolib, so that
    # equal-cost alternatives (a grid has many) are broken the same way: by edge id
    heap: list[tuple[float, str, str]] = [(0.0, from_edge, "")]
    while heap:
        d, e, _ = heapq.heappop(heap)
        if e in done:
            continue
        done.add(e)
        if e == to_edge:
            break
        for nxt, (edge_cost, via_cost) in succ.get(e, {}).items():
            if nxt in done or (allow is not None and not allow(e, nxt)):
                continue
            nd = d + edge_cost
            nd += via_cost
            if nxt not in dist or nd < dist[nxt]:
                dist[nxt] = nd
                pred[nxt] = e
                heapq.heappush(heap, (nd, nxt, e))
    if to_edge not in done:
        raise RouteError(f"no route from edge '{from_edge}' to edge '{to_edge}' in {_src(network)}")

    route = [to_edge]
    while route[-1] != from_edge:
        route.append(pred[route[-1]])
    route.reverse()
    return tuple(route)


def reachable_from(network: Network, from_edge: str, vclass_emergency: bool = True) -> set[str]:
    """The normal edges a vehicle on ``from_edge`` can reach (``from_edge`` included): one walk
    over the connections, cheaper than a search that fails."""
    succ = _successors(network, vclass_emergency, "time")
    seen = {from_edge}
    todo = [from_edge]
    while todo:
        for nxt in succ.get(todo.pop(), {}):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def validate_route(network: Network, route: Sequence[str], *, emergency: bool = False) -> None:
    """Check that ``route`` is a drivable sequence of edges (``emergency``: for a vehicle of
    SUMO's class ``emergency``, by the lanes' permissions, as SUMO will check it).

    Raises :class:`NetworkError` for the first unknown (or internal) edge id and
    :class:`RouteError` naming the first pair of consecutive edges without a connection (or,
    with ``emergency``, the first edge none of whose lanes it may use, or the first pair
    without a connection between lanes it may use).
    """
    if not route:
        raise RouteError(f"empty route in {_src(network)}")
    for edge_id in route:
        _require_edge(network, edge_id)
    for a, b in itertools.pairwise(route):
        if not network.connections_between(a, b):
            raise RouteError(f"route is not connected: no connection from edge '{a}' to edge '{b}' in {_src(network)}")
    if not emergency:
        return
    for edge_id in route:
        if not any(lane.allows_emergency for lane in network.edges[edge_id].lanes):
            raise RouteError(f"edge '{edge_id}' of network {_src(network)} has no lane that allows emergency "
                             "vehicles")
    for a, b in itertools.pairwise(route):
        if not any(_lane_allows(network, c.from_lane) and _lane_allows(network, c.to_lane)
                   for c in network.connections_between(a, b)):
            raise RouteError(f"no connection from edge '{a}' to edge '{b}' in {_src(network)} between lanes "
                             "that allow emergency vehicles")


def _src(network: Network) -> str:
    return network.source or "<network>"


def _require_edge(network: Network, edge_id: str, role: str = "") -> None:
    """``role`` ("from", "to") names which end of a trip the edge is, in the error."""
    what = f"{role} edge" if role else "edge"
    edge = network.edges.get(edge_id)
    if edge is None:
        raise NetworkError(f"{what} '{edge_id}' is not in network {_src(network)}")
    if edge.is_internal:
        raise NetworkError(f"{what} '{edge_id}' of network {_src(network)} is an internal edge, not a road")


def _lane_allows(network: Network, lane_id: str) -> bool:
    edge_id = lane_id.rpartition("_")[0]
    edge = network.edges.get(edge_id)
    if edge is None:
        return True  # lanes the model does not hold carry no restriction
    for lane in edge.lanes:
        if lane.lane_id == lane_id:
            return lane.allows_emergency
    return True


def route_cost(network: Network, route: Sequence[str], cost: Cost = "time", *, vclass_emergency: bool = True) -> float:
    """What :func:`fastest_route` counts for ``route`` (its first edge included): its free-flow
    time at the speed limits, or its length, crossings included."""
    first = network.edges[route[0]]
    total = first.length_m if cost == "length" else first.length_m / first.speed_mps
    succ = _successors(network, vclass_emergency, cost)
    for a, b in itertools.pairwise(route):
        edge_cost, via_cost = succ[a][b]
        total += edge_cost + via_cost
    return total


def _crossing_cost(network: Network, c: Connection, cost: Cost) -> float:
    if c.via_length_m <= 0.0:
        return 0.0
    if cost == "length":
        return c.via_length_m
    speed = 0.0
    if c.via_lane_id:
        via_edge = network.edges.get(c.via_lane_id.rpartition("_")[0])
        if via_edge is not None:
            speed = next((ln.speed_mps for ln in via_edge.lanes if ln.lane_id == c.via_lane_id), 0.0)
    if speed <= 0.0:
        speed = network.edges[c.to_edge].speed_mps
    return c.via_length_m / speed


def _successors(
    network: Network, vclass_emergency: bool, cost: Cost
) -> Mapping[str, Mapping[str, tuple[float, float]]]:
    """edge -> {next edge: (cost of the next edge, cost of the cheapest crossing)}, cached on the network."""
    key = f"_routing_cache_{vclass_emergency}_{cost}"
    cached: Mapping[str, Mapping[str, tuple[float, float]]] | None = network.__dict__.get(key)
    if cached is not None:
        return cached
    best_via: dict[str, dict[str, float]] = {}
    for c in network.connections:
        if c.from_edge not in network.edges or c.to_edge not in network.edges:
            continue
        if vclass_emergency and not (_lane_allows(network, c.from_lane) and _lane_allows(network, c.to_lane)):
            continue
        via = _crossing_cost(network, c, cost)
        row = best_via.setdefault(c.from_edge, {})
        if c.to_edge not in row or via < row[c.to_edge]:
            row[c.to_edge] = via
    built: dict[str, dict[str, tuple[float, float]]] = {}
    for a, row in best_via.items():
        built[a] = {}
        for b, via in row.items():
            edge = network.edges[b]
            edge_cost = edge.length_m if cost == "length" else edge.length_m / edge.speed_mps
            built[a][b] = (edge_cost, via)
    object.__setattr__(network, key, built)  # a frozen dataclass: same trick as Network._by_pair
    return built
