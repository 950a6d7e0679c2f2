"""netload on hand-checked fixtures (tests/data/corridor) and on the real networks in networks/.

``line5.net.xml`` is a 5x3 grid made once with
``netgenerate --grid --grid.x-number=5 --grid.y-number=3 --grid.length=100 --default.lanenumber=2
--default.speed=13.89 --tls.set=B1,D1 --no-turnarounds``: signals at B1 and D1, C1 priority.
Expected values below were read off the XML by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sumolib

from controller.core.corridor import build_corridor
from controller.core.routing import fastest_route
from controller.errors import NetworkError
from controller.sim.netload import load_network

DATA = Path(__file__).resolve().parents[1] / "data" / "corridor"
NETWORKS = Path(__file__).resolve().parents[2] / "networks"
LINE5 = DATA / "line5.net.xml"


def test_edges_lanes_and_internal_edges() -> None:
    net = load_network(LINE5)
    assert net.source == "line5.net.xml"
    a1b1 = net.edges["A1B1"]
    assert (a1b1.from_node, a1b1.to_node, a1b1.function) == ("A1", "B1", "")
    assert a1b1.length_m == pytest.approx(79.20)
    assert a1b1.speed_mps == pytest.approx(13.89)
    assert [ln.lane_id for ln in a1b1.lanes] == ["A1B1_0", "A1B1_1"]
    assert all(ln.allows_emergency for ln in a1b1.lanes)
    # internal edges are kept (marked internal) so crossings keep their lengths and speeds
    inner = net.edges[":B1_15"]
    assert inner.is_internal
    assert inner.lanes[0].length_m == pytest.approx(5.01)
    assert inner.lanes[0].speed_mps == pytest.approx(9.26)
    assert net.junction_types["B1"] == "traffic_light"
    assert net.junction_types["C1"] == "priority"


def test_connections() -> None:
    net = load_network(LINE5)
    straight = sorted(net.connections_between("A1B1", "B1C1"), key=lambda c: c.link_index)
    assert [(c.from_lane, c.to_lane, c.link_index) for c in straight] == [
        ("A1B1_0", "B1C1_0", 13),
        ("A1B1_1", "B1C1_1", 14),
    ]
    c = straight[0]
    assert (c.junction_id, c.tls_id, c.direction, c.via_lane_id) == ("B1", "B1", "s", ":B1_13_0")
    assert c.via_length_m == pytest.approx(20.80)
    # the left turn crosses two internal lanes (:B1_15_0 then :B1_19_0): lengths are summed
    (left,) = net.connections_between("A1B1", "B1B2")
    assert (left.link_index, left.direction, left.via_lane_id) == (15, "l", ":B1_15_0")
    assert left.via_length_m == pytest.approx(5.01 + 14.34)
    # unsignalized junction
    (un, _) = net.connections_between("B1C1", "C1D1")
    assert (un.junction_id, un.tls_id, un.link_index) == ("C1", "", -1)
    # no connection involves an internal edge
    assert not [c for c in net.connections if c.from_edge.startswith(":") or c.to_edge.startswith(":")]


def test_programs_from_net_default_min_max_to_duration() -> None:
    net = load_network(LINE5)
    assert set(net.programs) == {"B1", "D1"}
    prog = net.programs["B1"]
    assert (prog.tls_id, prog.program_id, prog.kind, prog.offset_s) == ("B1", "0", "static", 0.0)
    assert [p.state for p in prog.phases] == [
        "GGGgrrrrGGGgrrrr",
        "yyyyrrrryyyyrrrr",
        "rrrrGGGgrrrrGGGg",
        "rrrryyyyrrrryyyy",
    ]
    assert [(p.duration_s, p.min_dur_s, p.max_dur_s) for p in prog.phases] == [
        (42, 42, 42),
        (3, 3, 3),
        (42, 42, 42),
        (3, 3, 3),
    ]


def test_additional_program_overrides_net_program() -> None:
    net = load_network(LINE5, [DATA / "line5_ev.add.xml"])
    prog = net.programs["B1"]
    assert (prog.program_id, prog.kind, prog.offset_s) == ("ev", "actuated", 5.0)
    assert len(prog.phases) == 6
    assert (prog.phases[0].duration_s, prog.phases[0].min_dur_s, prog.phases[0].max_dur_s) == (30, 10, 50)
    assert (prog.phases[1].min_dur_s, prog.phases[1].max_dur_s) == (4, 4)  # defaults to duration
    assert net.programs["D1"].program_id == "0"  # untouched


def test_last_loaded_program_wins_and_offset_only_tllogic() -> None:
    net = load_network(LINE5, [DATA / "line5_ev.add.xml", DATA / "line5_ev2.add.xml"])
    assert net.programs["B1"].program_id == "ev2"
    d1 = net.programs["D1"]
    assert (d1.program_id, d1.offset_s, len(d1.phases)) == ("0", 17.0, 4)
    # the other order: ev is loaded last
    net = load_network(LINE5, [DATA / "line5_ev2.add.xml", DATA / "line5_ev.add.xml"])
    assert net.programs["B1"].program_id == "ev"


def test_off_program_removes_the_signal_program(tmp_path: Path) -> None:
    off = tmp_path / "off.add.xml"
    off.write_text('<additional><tlLogic id="D1" type="static" programID="off"/></additional>')
    net = load_network(LINE5, [off])
    assert "D1" not in net.programs
    assert "B1" in net.programs


def test_a_waut_is_refused_naming_it_and_its_signals(tmp_path: Path) -> None:
    # programs switched by time of day: greenwave would plan and check against the wrong one
    waut = tmp_path / "waut.add.xml"
    waut.write_text('<additional><WAUT refTime="0" id="w1" startProg="ev">'
                    '<wautSwitch time="1200" to="0"/></WAUT>'
                    '<wautJunction wautID="w1" junctionID="B1"/><wautJunction wautID="w1" junctionID="D1"/>'
                    '</additional>')
    with pytest.raises(NetworkError, match=r"waut\.add\.xml: WAUT 'w1' switches the programs of B1, D1 by time"):
        load_network(LINE5, [DATA / "line5_ev.add.xml", waut])


def _with_next(tmp_path: Path, nexts: tuple[str, ...], name: str = "next.add.xml") -> Path:
    phases = ("GGGgrrrrGGGgrrrr", "yyyyrrrryyyyrrrr", "rrrrrrrrrrrrrrrr", "rrrrGGGgrrrrGGGg", "rrrryyyyrrrryyyy",
              "rrrrrrrrrrrrrrrr")
    body = "".join(f'<phase duration="{20 if "G" in st else 3}" state="{st}"{f" next={nx!r}" if nx else ""}/>'
                   for st, nx in zip(phases, nexts, strict=True))
    path = tmp_path / name
    path.write_text(f'<additional><tlLogic id="B1" type="static" programID="nx" offset="0">{body}</tlLogic>'
                    '</additional>')
    return path


def test_a_program_whose_phases_run_in_an_order_of_their_own_is_not_switched(tmp_path: Path) -> None:
    # SUMO follows a phase's next list; greenwave read the phases in order, so a yellow SUMO
    # runs for 4 s (phases 1 and 4 in a row) was taken for 3 s, and a switch showed 3 s
    from controller.errors import CorridorError

    jumping = _with_next(tmp_path, ("1", "4", "3", "0", "2", ""))
    net = load_network(LINE5, [jumping])
    assert "B1" not in net.programs and "D1" in net.programs
    assert "phase 1 has next=\"4\"" in net.unsupported["B1"]
    with pytest.raises(CorridorError, match=r"traffic light 'B1' .*: its program 'nx' \(additional file "
                       r".*next\.add\.xml\) runs its phases in an order of its own .*the route crosses it from edge"):
        build_corridor(net, ["A1B1", "B1C1"])
    # next lists that name the phase after each: the order of the phases, switched as any other
    in_order = _with_next(tmp_path, ("1", "2", "3", "4", "5", "0"), "order.add.xml")
    assert "B1" in load_network(LINE5, [in_order]).programs
    # a program loaded after it without next lists is the one SUMO runs
    net = load_network(LINE5, [jumping, DATA / "line5_ev.add.xml"])
    assert net.programs["B1"].program_id == "ev" and net.unsupported == {}
    # in the network file too
    text = LINE5.read_text()
    old = '<phase duration="3"  state="yyyyrrrryyyyrrrr"/>\n        <phase duration="42" state="rrrrGGGgrrrrGGGg"/>'
    assert text.count(old) == 2
    copy = tmp_path / "line5.net.xml"
    copy.write_text(text.replace(old, old.replace('"/>', '" next="0"/>', 1), 1))
    net = load_network(copy)
    assert set(net.unsupported) == {"B1"} and "phase 1 has next=\"0\"" in net.unsupported["B1"]
    assert "network file" in net.unsupported["B1"]


def test_missing_net_file() -> None:
    with pytest.raises(NetworkError, match=r"nope\.net\.xml"):
        load_network(DATA / "nope.net.xml")


def test_unreadable_net_file() -> None:
    with pytest.raises(NetworkError, match=r"broken\.net\.xml"):
        load_network(DATA / "broken.net.xml")


def test_missing_additional_file() -> None:
    with pytest.raises(NetworkError, match=r"missing\.add\.xml"):
        load_network(LINE5, [DATA / "missing.add.xml"])


def test_additional_file_not_xml() -> None:
    with pytest.raises(NetworkError, match=r"not_xml\.add\.xml"):
        load_network(LINE5, [DATA / "not_xml.add.xml"])


def test_malformed_tllogic_names_file_and_tls() -> None:
    with pytest.raises(NetworkError, match=r"bad_phase\.add\.xml.*'D1'"):
        load_network(LINE5, [DATA / "bad_phase.add.xml"])


def test_program_with_too_few_signals_names_tls() -> None:
    with pytest.raises(NetworkError, match=r"'D1'.*short.*bad_states\.add\.xml"):
        load_network(LINE5, [DATA / "bad_states.add.xml"])


def test_tllogic_for_unknown_tls() -> None:
    with pytest.raises(NetworkError, match=r"unknown_tls\.add\.xml.*'Z9'"):
        load_network(LINE5, [DATA / "unknown_tls.add.xml"])


# --- real networks (copied into networks/ from the shared scenarios) ---------------------------

BOLOGNA = NETWORKS / "bologna_joined"
INGOLSTADT7 = NETWORKS / "resco_ingolstadt7" / "ingolstadt7.net.xml"


def test_bologna_programs_come_from_the_additional_file() -> None:
    net = load_network(BOLOGNA / "joined_buslanes.net.xml", [BOLOGNA / "joined_tls.add.xml"])
    assert len(net.programs) == 13
    assert {p.program_id for p in net.programs.values()} == {"utopia"}
    prog = net.programs["209"]
    assert [p.state for p in prog.phases][:2] == ["GrGGGGg", "yrGGGyy"]
    assert (prog.phases[0].duration_s, prog.phases[0].min_dur_s, prog.phases[0].max_dur_s) == (69, 45, 117)
    # some traffic lights control several junctions
    junctions_of: dict[str, set[str]] = {}
    for c in net.connections:
        if c.tls_id:
            junctions_of.setdefault(c.tls_id, set()).add(c.junction_id)
    assert len(junctions_of) == 13
    assert len(junctions_of["210"]) >= 2
    # 29 junctions are of type traffic_light; at one of them (ba9) the only connections are
    # uncontrolled="1", so 28 junctions have signalized connections
    assert sum(len(j) for j in junctions_of.values()) == 28
    assert "ba9" not in {c.junction_id for c in net.connections if c.tls_id}
    assert net.junction_types["ba9"] == "traffic_light"
    # bus lanes that forbid emergency vehicles are marked
    assert not net.edges["a110"].lanes[0].allows_emergency
    # without the additional file the net's own programs are active
    plain = load_network(BOLOGNA / "joined_buslanes.net.xml")
    assert {p.program_id for p in plain.programs.values()} == {"0"}


def test_ingolstadt7_route_and_lengths_agree_with_sumolib() -> None:
    net = load_network(INGOLSTADT7)
    assert len(net.programs) == 7
    sn = sumolib.net.readNet(str(INGOLSTADT7), withInternal=True)
    src, dst = "124812856#1", "51857518#1"
    ref_edges, ref_len = sn.getShortestPath(sn.getEdge(src), sn.getEdge(dst), vClass="emergency")
    route = fastest_route(net, src, dst, cost="length")
    assert route == tuple(e.getID() for e in ref_edges)
    corridor = build_corridor(net, route)
    # sumolib's shortest-path cost: edge lengths plus the shortest crossing between each pair
    assert corridor.length_m == pytest.approx(ref_len)
    fast_edges, _ = sn.getFastestPath(sn.getEdge(src), sn.getEdge(dst), vClass="emergency")
    fast = fastest_route(net, src, dst)
    assert fast == tuple(e.getID() for e in fast_edges)
    corridor = build_corridor(net, fast)
    assert len(corridor.junctions) == 7
    assert len(corridor.tls_ids()) == 7


def test_foe_links_come_from_the_junctions_right_of_way_request() -> None:
    # 32564122: links 1-2 run through from 32999434#0, link 5 turns left from the opposite
    # approach (-201089423#1) across them; link 3-4 run through beside them, crossing neither
    net = load_network(INGOLSTADT7)
    by_link = {c.link_index: c for c in net.connections_of_tls("32564122")}
    assert by_link[5].direction == "l" and by_link[1].direction == "s" and by_link[3].direction == "s"
    assert {1, 2} <= set(by_link[5].foe_links) and 5 in by_link[1].foe_links
    assert 3 not in by_link[1].foe_links and 1 not in by_link[3].foe_links
    # foes both ways, never itself
    for c in net.connections_of_tls("32564122"):
        assert c.link_index not in c.foe_links
        assert all(c.link_index in by_link[k].foe_links for k in c.foe_links)
    # an unsignalized connection has none
    assert all(c.foe_links == () for c in net.connections if not c.tls_id)


def test_program_differences_name_the_program_phase_and_field() -> None:
    from controller.core.network import program_differences

    prog = load_network(LINE5, [DATA / "line5_ev.add.xml"]).programs["B1"]
    same = [(p.state, p.duration_s, p.min_dur_s, p.max_dur_s) for p in prog.phases]
    assert program_differences(prog, "ev", same) == []
    assert program_differences(prog, "0", same) == ["SUMO runs program '0', not 'ev'"]
    assert program_differences(prog, "", ()) == ["SUMO has no such traffic light"]
    assert program_differences(prog, "ev", same[:-1]) == [f"SUMO's program has {len(same) - 1} phases, not {len(same)}"]
    off = list(same)
    off[1] = (off[1][0], off[1][1] + 1, off[1][2], off[1][3])
    off[2] = ("u" * len(off[2][0]), *off[2][1:])
    assert program_differences(prog, "ev", off) == [
        f"phase 1 duration is {same[1][1] + 1:g} s in SUMO, not {same[1][1]:g} s",
        f"phase 2 shows '{'u' * len(same[2][0])}' in SUMO, not '{same[2][0]}'",
    ]
    assert len(program_differences(prog, "ev", off, limit=1)) == 1
    # maxDur is used by nothing (SUMO makes one not given unlimited); SUMO keeps milliseconds
    loose = [(st, d + 0.0004, m, 2147483.647) for st, d, m, _ in same]
    assert program_differences(prog, "ev", loose) == []


@pytest.mark.parametrize("duration", ["nan", "inf", "0", "-4"])
def test_a_phase_duration_must_be_a_positive_finite_number(tmp_path: Path, duration: str) -> None:
    # a NaN duration passed every check (SUMO ran that phase as -9.2e15 s, greenwave planned with NaN)
    add = tmp_path / "nan.add.xml"
    yellow = '<phase duration="4" state="yyyyrrrryyyyrrrr"/>'
    add.write_text((DATA / "line5_ev.add.xml").read_text().replace(yellow, yellow.replace('"4"', f'"{duration}"')))
    with pytest.raises(NetworkError, match=r"nan\.add\.xml.*tlLogic 'B1': phase duration .* is not a positive finite"):
        load_network(LINE5, [add])


@pytest.mark.parametrize(("attribute", "message"), [
    ('minDur="nan"', "phase minDur nan is not a number of seconds (finite)"),
    ('minDur="inf"', "phase minDur inf is not a number of seconds (finite)"),
    ('maxDur="nan"', "phase maxDur nan is not a number of seconds"),
])
def test_a_phases_min_and_max_durations_must_be_numbers(tmp_path: Path, attribute: str, message: str) -> None:
    add = tmp_path / "m.add.xml"
    add.write_text((DATA / "line5_ev.add.xml").read_text().replace('minDur="10" maxDur="50"', attribute, 1))
    with pytest.raises(NetworkError, match=re.escape(message)):
        load_network(LINE5, [add])


def test_a_tllogic_offset_must_be_finite(tmp_path: Path) -> None:
    add = tmp_path / "o.add.xml"
    add.write_text((DATA / "line5_ev.add.xml").read_text().replace('offset="5"', 'offset="nan"'))
    with pytest.raises(NetworkError, match=r"tlLogic 'B1': offset nan is not a finite number of seconds"):
        load_network(LINE5, [add])


def test_a_bidi_edge_is_read_and_its_signal_marked_single_track() -> None:
    net = load_network(DATA / "single_track.net.xml")
    assert (net.edges["track"].bidi, net.edges["-track"].bidi, net.edges["in"].bidi) == ("-track", "track", "")
    east = build_corridor(net, ("in", "track", "out2"))
    assert [(j.tls_id, j.single_track) for j in east.junctions] == [("A", "-track"), ("B", "")]
