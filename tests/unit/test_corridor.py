"""build_corridor on small hand-built networks with hand-checked answers.

The network used by most tests (all speeds 10 m/s)::

    n0 --in(100 m, 2 lanes)--> J1 --m1(50)--> J2 --m2(80)--> J3 --m3(60)--> J4 --out(40)--> n5
                               |T1              priority     |T2            |T2 (same controller)
                               +--> side

Crossings (via lengths): J1 in_0->m1 10 m (link 0), in_1->m1 12 m (link 1), in_1->side 9 m
(link 2); J2 m1->m2 8 m (unsignalized); J3 m2->m3 15 m (T2 link 1); J4 m3->out 5 m (T2 link 4).

Edge offsets by hand: in 0; m1 100+10 = 110 (shortest crossing of J1); m2 110+50+8 = 168;
m3 168+80+15 = 263; out 263+60+5 = 328; length 328+40 = 368.
Stop lines: J1 at 100, J3 at 168+80 = 248, J4 at 263+60 = 323.
"""

from __future__ import annotations

import pytest

from controller.core.corridor import (
    Corridor,
    all_red_time_s,
    build_corridor,
    can_escort,
    escortable_route,
    yellow_time_s,
)
from controller.core.network import Connection, Edge, Lane, Network, Phase, Program
from controller.errors import CorridorError, NetworkError, RouteError


def edge(edge_id: str, frm: str, to: str, length_m: float, lanes: int = 1, speed: float = 10.0) -> Edge:
    return Edge(
        edge_id=edge_id,
        from_node=frm,
        to_node=to,
        length_m=length_m,
        speed_mps=speed,
        lanes=tuple(Lane(f"{edge_id}_{i}", edge_id, i, length_m, speed) for i in range(lanes)),
    )


def program(tls_id: str, *phases: tuple[str, float]) -> Program:
    return Program(
        tls_id=tls_id,
        program_id="p",
        kind="static",
        offset_s=0.0,
        phases=tuple(Phase(state=s, duration_s=d, min_dur_s=d, max_dur_s=d) for s, d in phases),
    )


# T1: links 0, 1 (route), 2 (left turn to 'side'). Consecutive identical phases on purpose.
T1 = program(
    "T1",
    ("GGr", 20),  # 0
    ("GGr", 10),  # 1  same state as 0
    ("yyr", 2),  # 2
    ("yyr", 2),  # 3  same state: one yellow run of 2 + 2 = 4 s
    ("rrr", 1),  # 4
    ("rrG", 15),  # 5
    ("rry", 3),  # 6
    ("rrr", 2),  # 7
    ("rrr", 1.5),  # 8  all red 2 + 1.5 = 3.5 s before links 0, 1 turn green in phase 0
)

# T2 controls J3 (links 0-2) and J4 (links 3-5); the route uses link 1 at J3 and link 4 at J4.
T2 = program(
    "T2",
    ("GGrrGr", 30),  # 0  links 1, 4 green
    ("yyrryr", 2.5),  # 1  yellow 2.5
    ("rrrrrr", 2),  # 2
    ("rrGGrG", 20),  # 3
    ("rryyry", 3),  # 4
    ("rrrrrr", 1),  # 5  all red 1 s before links 1, 4 turn green again
    ("rGrrGr", 10),  # 6  links 1, 4 green
    ("ryrryr", 4),  # 7  yellow 4
    ("rrrrrr", 2),  # 8  all red 2 s before phase 0
)


def make_network(programs: dict[str, Program] | None = None) -> Network:
    edges = [
        edge("in", "n0", "J1", 100, lanes=2),
        edge("side", "J1", "n9", 70),
        edge("m1", "J1", "J2", 50),
        edge("m2", "J2", "J3", 80),
        edge("m3", "J3", "J4", 60),
        edge("x3", "J3", "n8", 30),
        edge("out", "J4", "n5", 40),
    ]
    conns = (
        Connection("in", "m1", "in_0", "m1_0", "J1", "T1", 0, "s", ":J1_0_0", 10.0),
        Connection("in", "m1", "in_1", "m1_0", "J1", "T1", 1, "s", ":J1_1_0", 12.0),
        Connection("in", "side", "in_1", "side_0", "J1", "T1", 2, "l", ":J1_2_0", 9.0),
        Connection("m1", "m2", "m1_0", "m2_0", "J2", "", -1, "s", ":J2_0_0", 8.0),
        Connection("m2", "x3", "m2_0", "x3_0", "J3", "T2", 0, "r", ":J3_0_0", 6.0),
        Connection("m2", "m3", "m2_0", "m3_0", "J3", "T2", 1, "s", ":J3_1_0", 15.0),
        Connection("m3", "out", "m3_0", "out_0", "J4", "T2", 4, "s", ":J4_0_0", 5.0),
    )
    return Network(
        edges={e.edge_id: e for e in edges},
        connections=conns,
        programs={"T1": T1, "T2": T2} if programs is None else programs,
        junction_types={"J1": "traffic_light", "J2": "priority", "J3": "traffic_light", "J4": "traffic_light"},
        source="hand.net.xml",
    )


ROUTE = ("in", "m1", "m2", "m3", "out")


@pytest.fixture
def corridor() -> Corridor:
    return build_corridor(make_network(), ROUTE)


def test_offsets_and_length_include_crossings_and_unsignalized_junction(corridor: Corridor) -> None:
    assert corridor.route == ROUTE
    assert corridor.edge_offsets_m == pytest.approx((0.0, 110.0, 168.0, 263.0, 328.0))
    assert corridor.length_m == pytest.approx(368.0)
    assert corridor.position_m(0, 0.0) == pytest.approx(0.0)
    assert corridor.position_m(2, 30.0) == pytest.approx(198.0)
    assert corridor.position_m(4, 40.0) == pytest.approx(corridor.length_m)
    with pytest.raises(IndexError):
        corridor.position_m(5, 0.0)


def test_junctions_skip_unsignalized_and_repeat_a_shared_tls(corridor: Corridor) -> None:
    js = corridor.junctions
    assert [(j.index, j.junction_id, j.tls_id, j.route_index) for j in js] == [
        (0, "J1", "T1", 0),
        (1, "J3", "T2", 2),
        (2, "J4", "T2", 3),
    ]
    assert [j.distance_m for j in js] == pytest.approx([100.0, 248.0, 323.0])
    assert [(j.approach_edge, j.exit_edge) for j in js] == [("in", "m1"), ("m2", "m3"), ("m3", "out")]
    assert corridor.tls_ids() == ("T1", "T2")


def test_two_approach_lanes_give_both_link_indices(corridor: Corridor) -> None:
    j1 = corridor.junctions[0]
    assert j1.approach_lanes == ("in_0", "in_1")
    assert j1.link_indices == (0, 1)  # link 2 (in_1 -> side) is not on the route
    assert j1.green_phases == (0, 1)


def test_yellow_and_all_red_merge_consecutive_identical_phases(corridor: Corridor) -> None:
    j1 = corridor.junctions[0]
    assert j1.yellow_s == pytest.approx(4.0)  # phases 2 + 3
    assert j1.all_red_s == pytest.approx(3.5)  # phases 7 + 8, walked back from phase 0


def test_shared_tls_each_junction_has_its_own_links(corridor: Corridor) -> None:
    j3, j4 = corridor.junctions[1], corridor.junctions[2]
    assert (j3.link_indices, j4.link_indices) == ((1,), (4,))
    assert j3.approach_lanes == ("m2_0",)
    assert j3.green_phases == (0, 6)
    assert j4.green_phases == (0, 6)
    # yellow runs of link 1: phase 1 (2.5 s), phase 7 (4 s) -> 2.5; same for link 4
    assert j3.yellow_s == pytest.approx(2.5)
    assert j4.yellow_s == pytest.approx(2.5)
    # turning green in phase 0 after 2 s all red (phase 8), in phase 6 after 1 s (phase 5) -> 1
    assert j3.all_red_s == pytest.approx(1.0)
    assert j4.all_red_s == pytest.approx(1.0)


def test_yellow_run_wraps_around_the_cycle() -> None:
    prog = program("T", ("y", 1.0), ("G", 10), ("r", 5), ("y", 1.5))
    assert yellow_time_s(prog, (0,)) == pytest.approx(2.5)


def test_yellow_default_when_never_yellow() -> None:
    prog = program("T", ("Gr", 10), ("rG", 10))
    assert yellow_time_s(prog, (0,)) == 3.0


def test_all_red_stops_at_a_phase_where_another_link_is_green() -> None:
    prog = program("T", ("GGr", 10), ("yyr", 3), ("rrr", 2), ("rrG", 5), ("rrr", 1))
    assert all_red_time_s(prog, (0, 1)) == pytest.approx(1.0)
    assert all_red_time_s(prog, (2,)) == pytest.approx(2.0)


def test_all_red_zero_when_green_follows_yellow_directly() -> None:
    prog = program("T", ("Gr", 10), ("yr", 3), ("rG", 10), ("ry", 3))
    assert all_red_time_s(prog, (0,)) == 0.0


def test_no_phase_greens_every_link_is_a_corridor_error() -> None:
    bad_t1 = program("T1", ("Grr", 10), ("yrr", 3), ("rGr", 10), ("ryr", 3), ("rrG", 5), ("rry", 3))
    net = make_network({"T1": bad_t1, "T2": T2})
    with pytest.raises(CorridorError) as err:
        build_corridor(net, ROUTE)
    msg = str(err.value)
    assert "traffic light 'T1' (hand.net.xml)" in msg
    assert "program 'p'" in msg
    assert "from edge 'in' to 'm1'" in msg
    assert "links [0, 1]" in msg


def test_signal_without_program_is_a_corridor_error() -> None:
    net = make_network({"T1": T1})
    with pytest.raises(CorridorError, match=r"'T2'.*no active program"):
        build_corridor(net, ROUTE)


def test_unknown_edge() -> None:
    with pytest.raises(NetworkError, match=r"edge 'nowhere' is not in network hand\.net\.xml"):
        build_corridor(make_network(), ("in", "m1", "nowhere"))


def test_disconnected_route() -> None:
    with pytest.raises(RouteError, match=r"from edge 'm1' to edge 'm3'"):
        build_corridor(make_network(), ("in", "m1", "m3", "out"))


def test_single_edge_route() -> None:
    c = build_corridor(make_network(), ("m2",))
    assert c.junctions == ()
    assert c.edge_offsets_m == (0.0,)
    assert c.length_m == pytest.approx(80.0)
    assert c.tls_ids() == ()


def test_route_ending_at_a_signal_does_not_include_it() -> None:
    c = build_corridor(make_network(), ("in", "m1", "m2"))
    assert [j.junction_id for j in c.junctions] == ["J1"]
    assert c.length_m == pytest.approx(168.0 + 80.0)


def _with_detour(programs: dict[str, Program]) -> Network:
    """make_network with a way round J1's straight movement: in -> side (T1's left turn, link 2)
    -> back (unsignalized) -> m2; 70 + 90 m against m1's 50 m."""
    net = make_network(programs)
    back = edge("back", "n9", "J2", 90)
    conns = (*net.connections,
             Connection("side", "back", "side_0", "back_0", "n9", "", -1, "s", ":n9_0_0", 5.0),
             Connection("back", "m2", "back_0", "m2_0", "J2", "", -1, "r", ":J2_1_0", 5.0))
    return Network({**net.edges, "back": back}, conns, net.programs, net.junction_types, source=net.source)


def test_escortable_route_is_the_fastest_where_greenwave_can_serve_it() -> None:
    net = _with_detour({"T1": T1, "T2": T2})
    assert escortable_route(net, "in", "out") == ROUTE
    assert can_escort(net, "in", "m1") and can_escort(net, "m1", "m2")


def test_escortable_route_passes_over_a_movement_no_phase_serves() -> None:
    # J1's straight links 0 and 1 are never green together: round by the left turn, which is
    bad_t1 = program("T1", ("Grr", 10), ("yrr", 3), ("rGr", 10), ("ryr", 3), ("rrG", 5), ("rry", 3))
    net = _with_detour({"T1": bad_t1, "T2": T2})
    assert not can_escort(net, "in", "m1") and can_escort(net, "in", "side")
    route = escortable_route(net, "in", "out")
    assert route == ("in", "side", "back", "m2", "m3", "out")
    assert [j.tls_id for j in build_corridor(net, route).junctions] == ["T1", "T2", "T2"]
    # without a way round: the fastest route's error, naming the signal and the movement
    with pytest.raises(CorridorError, match=r"traffic light 'T1'.*from edge 'in' to 'm1'"):
        escortable_route(make_network({"T1": bad_t1, "T2": T2}), "in", "out")
    # a route that cannot be driven at all stays a RouteError
    with pytest.raises(RouteError):
        escortable_route(net, "out", "in")


def test_a_signal_greenwave_cannot_serve_is_left_out_where_asked() -> None:
    bad_t1 = program("T1", ("Grr", 10), ("yrr", 3), ("rGr", 10), ("ryr", 3), ("rrG", 5), ("rry", 3))
    net = make_network({"T1": bad_t1, "T2": T2})
    unservable: list[str] = []
    corridor = build_corridor(net, ROUTE, unservable=unservable)
    assert [(j.index, j.tls_id) for j in corridor.junctions] == [(0, "T2"), (1, "T2")]
    assert len(unservable) == 1 and "traffic light 'T1'" in unservable[0] and "from edge 'in' to 'm1'" in unservable[0]
    assert corridor.length_m == build_corridor(make_network(), ROUTE).length_m
