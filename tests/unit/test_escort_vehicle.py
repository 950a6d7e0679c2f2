"""Finding a vehicle of the user's route files to escort (``greenwave run --escort``): what is
taken from its definition, and what is refused with a message naming the file and the problem."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from controller.errors import ScenarioError
from controller.runtime.setup import find_route_file_vehicle

ROUTES = """<routes>
    <vType id="amb" vClass="emergency" maxSpeed="20"><param key="has.bluelight.device" value="false"/></vType>
    <vTypeDistribution id="mix"><vType id="small" probability="1"/></vTypeDistribution>
    <route id="r1" edges="a b c"/>
    <routeDistribution id="rd"><route id="r2" edges="a b" probability="1"/></routeDistribution>
    <flow id="bg" begin="0" end="100" period="5" route="r1"/>
    <vehicle id="named" type="amb" depart="60" route="r1" departLane="best" departSpeed="max" arrivalPos="20"/>
    <vehicle id="own" depart="1:05"><route edges="a b d"/></vehicle>
    <trip id="trip" type="small" depart="70" from="a" to="c"/>
    <trip id="via" depart="71" from="a" to="c" via="b"/>
    <vehicle id="stops" depart="72" route="r1"><stop edge="b" duration="5"/></vehicle>
    <vehicle id="trig" depart="triggered" route="r1"/>
    <vehicle id="dist" depart="73" route="rd"/>
    <vehicle id="mixed" type="mix" depart="74" route="r1"/>
    <vehicle id="untyped" type="nope" depart="75" route="r1"/>
    <vehicle id="noroute" depart="76" route="r9"/>
    <vehicle id="partway" depart="76" route="r1" departEdge="1"/>
    <person id="walker" depart="77"><walk edges="a b"/></person>
</routes>
"""


@pytest.fixture()
def routes(tmp_path: Path) -> Path:
    path = tmp_path / "city.rou.xml.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:  # (a compressed one, as SUMO reads them too)
        f.write(ROUTES)
    return path


def test_a_vehicle_with_a_named_route_its_type_and_insertion(routes: Path, tmp_path: Path) -> None:
    extra = tmp_path / "more.add.xml"  # (looked for in the additional files too)
    extra.write_text('<additional><vehicle id="late" depart="90" route="r1"/></additional>')
    v = find_route_file_vehicle([routes, extra], "named")
    assert (v.file, v.depart_s, v.route, v.trip) == (routes, 60.0, ("a", "b", "c"), None)
    assert v.vtype_id == "amb" and v.vclass == "emergency"
    assert v.vtype_xml is not None and 'maxSpeed="20"' in v.vtype_xml and "has.bluelight.device" in v.vtype_xml
    assert dict(v.insertion) == {"departLane": "best", "departSpeed": "max", "arrivalPos": "20"}  # (as given)
    late = find_route_file_vehicle([routes, extra], "late")
    assert late.file == extra and late.vtype_id == "DEFAULT_VEHTYPE" and late.vtype_xml is None


def test_a_vehicle_with_its_own_route_and_a_trip(routes: Path) -> None:
    own = find_route_file_vehicle([routes], "own")
    assert (own.depart_s, own.route, own.vclass, own.insertion) == (65.0, ("a", "b", "d"), "passenger", ())
    trip = find_route_file_vehicle([routes], "trip")
    # (a type inside a distribution is a type of its own)
    assert (trip.trip, trip.route, trip.vtype_id) == (("a", "c"), (), "small")


@pytest.mark.parametrize(("vehicle", "message"), [
    ("missing", "--escort 'missing': no vehicle of that id in the configuration's route and additional files "
                "(city.rou.xml.gz)"),
    ("bg", "city.rou.xml.gz: its flow is not a <vehicle> or <trip>"),
    ("bg.2", "has it as flow 'bg' (its vehicle 'bg.2')"),
    ("walker", "its person is not a <vehicle> or <trip>"),
    ("via", "its trip is not from an edge to an edge without 'via'"),
    ("stops", "its vehicle has stops"),
    ("trig", "its vehicle departs at 'triggered'"),
    ("dist", "route 'rd' is a route distribution"),
    ("mixed", "type 'mix' is a type distribution"),
    ("untyped", "type 'nope' is not defined in the configuration's route and additional files"),
    ("noroute", "route 'r9' is not defined"),
    ("partway", "its vehicle has departEdge=\"1\": greenwave escorts a vehicle from its route's first edge"),
])
def test_what_cannot_be_escorted_is_named(routes: Path, vehicle: str, message: str) -> None:
    with pytest.raises(ScenarioError) as e:
        find_route_file_vehicle([routes], vehicle)
    assert message in str(e.value)
    assert f"--escort '{vehicle}'" in str(e.value)


def test_an_unreadable_route_file_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.rou.xml"
    broken.write_text("<routes><vehicle id='v' depart='1'")
    with pytest.raises(ScenarioError, match=r"cannot read .*broken\.rou\.xml"):
        find_route_file_vehicle([broken], "v")
