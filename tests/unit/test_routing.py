"""fastest_route / validate_route on a hand-built network, and agreement with sumolib's routing.

Hand-built network (edge: from->to, length m, speed m/s)::

    a: S->X 100 @10      short: X->Y 100 @5   (20 s)          z: Y->E 50 @10
                         long1: X->W  80 @20  (4 s)  long2: W->Y 80 @20 (4 s)
                         bus:   X->Y  10 @50, its lane forbids emergency vehicles

By length a-short-z (100 m) beats a-long1-long2-z (160 m); by time long (8 s) beats short (20 s);
'bus' beats both but only for non-emergency routing. Crossings are 1 m unless a test says so.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
import sumolib

from controller.core.network import Connection, Edge, Lane, Network
from controller.core.routing import fastest_route, validate_route
from controller.errors import NetworkError, RouteError
from controller.sim.netload import load_network

DATA = Path(__file__).resolve().parents[1] / "data" / "corridor"
NETWORKS = Path(__file__).resolve().parents[2] / "networks"


def edge(edge_id: str, frm: str, to: str, length_m: float, speed: float, emergency: bool = True) -> Edge:
    lane = Lane(f"{edge_id}_0", edge_id, 0, length_m, speed, allows_emergency=emergency)
    return Edge(edge_id, frm, to, length_m, speed, (lane,))


def conn(a: str, b: str, via_m: float = 1.0) -> Connection:
    return Connection(a, b, f"{a}_0", f"{b}_0", "J", via_length_m=via_m)


def make_network(short_via_m: float = 1.0) -> Network:
    edges = [
        edge("a", "S", "X", 100, 10),
        edge("short", "X", "Y", 100, 5),
        edge("long1", "X", "W", 80, 20),
        edge("long2", "W", "Y", 80, 20),
        edge("bus", "X", "Y", 10, 50, emergency=False),
        edge("z", "Y", "E", 50, 10),
        replace(edge(":X_0", "X", "X", 1, 10), function="internal"),
    ]
    conns = (
        conn("a", "short", short_via_m),
        conn("a", "long1"),
        conn("long1", "long2"),
        conn("a", "bus"),
        conn("short", "z"),
        conn("long2", "z"),
        conn("bus", "z"),
    )
    return Network({e.edge_id: e for e in edges}, conns, {}, source="hand.net.xml")


def test_time_is_the_default_cost() -> None:
    assert fastest_route(make_network(), "a", "z") == ("a", "long1", "long2", "z")


def test_length_cost() -> None:
    assert fastest_route(make_network(), "a", "z", cost="length") == ("a", "short", "z")


def test_crossing_length_counts() -> None:
    # 100 m edge + 100 m crossing > 160 m + 2 crossings of 1 m
    assert fastest_route(make_network(short_via_m=100.0), "a", "z", cost="length") == (
        "a",
        "long1",
        "long2",
        "z",
    )


def test_lanes_forbidding_emergency_vehicles_are_avoided_only_when_asked() -> None:
    net = make_network()
    assert "bus" not in fastest_route(net, "a", "z")
    assert fastest_route(net, "a", "z", vclass_emergency=False) == ("a", "bus", "z")
    assert fastest_route(net, "a", "z", vclass_emergency=False, cost="length") == ("a", "bus", "z")
    with pytest.raises(RouteError, match=r"^to edge 'bus' of network hand\.net\.xml has no lane that allows "
                       r"emergency vehicles"):
        fastest_route(net, "a", "bus")
    with pytest.raises(RouteError, match=r"^from edge 'bus' .* has no lane that allows emergency vehicles"):
        fastest_route(net, "bus", "z")


def test_same_edge() -> None:
    assert fastest_route(make_network(), "a", "a") == ("a",)


def test_no_route() -> None:
    with pytest.raises(RouteError) as err:
        fastest_route(make_network(), "z", "a")
    assert str(err.value) == "no route from edge 'z' to edge 'a' in hand.net.xml"


def test_unknown_and_internal_edges() -> None:
    with pytest.raises(NetworkError, match=r"^to edge 'q' is not in network hand\.net\.xml"):
        fastest_route(make_network(), "a", "q")
    with pytest.raises(NetworkError, match=r"^from edge 'q' is not in network"):
        fastest_route(make_network(), "q", "a")
    with pytest.raises(NetworkError, match=r"':X_0'.*internal"):
        fastest_route(make_network(), ":X_0", "z")


def test_bad_cost_name() -> None:
    with pytest.raises(ValueError):
        fastest_route(make_network(), "a", "z", cost="money")  # type: ignore[arg-type]


def test_validate_route() -> None:
    net = make_network()
    validate_route(net, ("a", "long1", "long2", "z"))
    validate_route(net, ("z",))
    with pytest.raises(RouteError, match=r"from edge 'a' to edge 'long2'"):
        validate_route(net, ("a", "long2", "z"))
    with pytest.raises(RouteError, match=r"from edge 'long2' to edge 'a'"):
        validate_route(net, ("a", "long1", "long2", "a"))
    with pytest.raises(NetworkError, match=r"edge 'nope' is not in network hand\.net\.xml"):
        validate_route(net, ("a", "nope"))
    with pytest.raises(RouteError):
        validate_route(net, ())


def test_validate_route_for_an_emergency_vehicle_checks_the_lanes_permissions() -> None:
    net = make_network()
    validate_route(net, ("a", "bus", "z"))  # connected: any vehicle class
    with pytest.raises(RouteError, match=r"^edge 'bus' of network hand\.net\.xml has no lane that allows emergency "
                       r"vehicles"):
        validate_route(net, ("a", "bus", "z"), emergency=True)
    validate_route(net, ("a", "long1", "long2", "z"), emergency=True)
    # every lane open to it, but the only connection between them leaves from a lane that is not
    two = Edge("two", "X", "Y", 100.0, 10.0, (Lane("two_0", "two", 0, 100.0, 10.0, allows_emergency=False),
                                               Lane("two_1", "two", 1, 100.0, 10.0)))
    net2 = replace(net, edges={**net.edges, "two": two},
                   connections=(*net.connections, Connection("a", "two", "a_0", "two_1", "J"),
                                Connection("two", "z", "two_0", "z_0", "J")))
    validate_route(net2, ("a", "two", "z"))
    with pytest.raises(RouteError, match=r"no connection from edge 'two' to edge 'z' .* between lanes that allow "
                       r"emergency vehicles"):
        validate_route(net2, ("a", "two", "z"), emergency=True)


# --- agreement with sumolib -------------------------------------------------------------------


def _agree_with_sumolib(net_file: Path, additional: list[Path], pairs: int, seed: int) -> int:
    """Compare routes for random edge pairs, both costs; return how many pairs had a route."""
    net = load_network(net_file, additional)
    sn = sumolib.net.readNet(str(net_file), withInternal=True)
    ids = sorted(e for e, v in net.edges.items() if not v.is_internal)
    rnd = random.Random(seed)
    found = 0
    for _ in range(pairs):
        a, b = rnd.sample(ids, 2)
        for cost, ref_fn in (("length", sn.getShortestPath), ("time", sn.getFastestPath)):
            ref, _ = ref_fn(sn.getEdge(a), sn.getEdge(b), vClass="emergency")
            try:
                mine: tuple[str, ...] | None = fastest_route(net, a, b, cost=cost)  # type: ignore[arg-type]
            except RouteError:
                mine = None
            assert mine == (None if ref is None else tuple(e.getID() for e in ref)), (a, b, cost)
            found += mine is not None
    return found


def test_agrees_with_sumolib_on_the_line5_fixture() -> None:
    assert _agree_with_sumolib(DATA / "line5.net.xml", [], pairs=60, seed=3) > 60


def test_agrees_with_sumolib_on_bologna() -> None:
    b = NETWORKS / "bologna_joined"
    assert _agree_with_sumolib(b / "joined_buslanes.net.xml", [b / "joined_tls.add.xml"], pairs=80, seed=5) > 20
