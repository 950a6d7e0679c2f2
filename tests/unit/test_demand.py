"""controller.sim.demand: reproducible random trips (reads networks with sumolib; runs no SUMO)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from controller.errors import NetworkError, ScenarioError
from controller.sim.demand import write_random_trips

ROOT = Path(__file__).resolve().parents[2]
GRID = ROOT / "networks" / "grid5" / "grid5.net.xml"
ARTERIAL = ROOT / "networks" / "arterial" / "arterial.net.xml"


def _trips(path: Path) -> list[dict[str, str]]:
    root = ET.parse(path).getroot()
    return [dict(t.attrib) for t in root.findall("trip")]


def _write(tmp_path: Path, name: str = "t.xml", **kw: Any) -> tuple[int, Path]:
    args: dict[str, Any] = {"seed": 1, "begin_s": 0.0, "end_s": 600.0, "vehicles_per_hour": 1200.0}
    args.update(kw)
    out = tmp_path / name
    return write_random_trips(GRID, out, **args), out


def test_same_seed_gives_identical_file(tmp_path: Path) -> None:
    n1, a = _write(tmp_path, "a.xml")
    n2, b = _write(tmp_path, "b.xml")
    assert n1 == n2 == 200
    assert a.read_bytes() == b.read_bytes()
    _, c = _write(tmp_path, "c.xml", seed=2)
    assert a.read_bytes() != c.read_bytes()


def test_trips_are_sorted_boundary_trips(tmp_path: Path) -> None:
    n, out = _write(tmp_path, begin_s=100.0, end_s=1000.0)
    trips = _trips(out)
    assert len(trips) == n == 300
    departs = [float(t["depart"]) for t in trips]
    assert departs == sorted(departs)
    assert departs[0] >= 100.0 and departs[-1] < 1000.0
    assert all(t["id"].startswith("bg") for t in trips)
    assert all(t["departLane"] == "best" and t["departSpeed"] == "max" for t in trips)
    # grid5 boundary edges run between the fringe nodes (left/right/top/bottom) and the grid
    fringe = ("left", "right", "top", "bottom")
    assert all(t["from"].startswith(fringe) for t in trips)
    assert all(any(f in t["to"] for f in fringe) and not t["to"].startswith(fringe) for t in trips)
    assert ET.parse(out).getroot().find("vType") is not None


def test_through_share_one_goes_straight(tmp_path: Path) -> None:
    _, out = _write(tmp_path, through_share=1.0)
    opposite = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
    for t in _trips(out):
        # e.g. left2A2 -> E2right2, top1B4 -> B0bottom1: opposite side, same line
        start = re.match(r"(left|right|top|bottom)(\d)", t["from"])
        end = re.search(r"(left|right|top|bottom)(\d)$", t["to"])
        assert start and end, t
        assert end.group(1) == opposite[start.group(1)] and end.group(2) == start.group(2), t


def test_main_edges_share(tmp_path: Path) -> None:
    out = tmp_path / "a.xml"
    n = write_random_trips(
        ARTERIAL,
        out,
        seed=3,
        begin_s=0,
        end_s=3600,
        vehicles_per_hour=1000,
        main_edges=["W_J0", "E_J9"],
        main_share=0.5,
    )
    main = sum(t["from"] in {"W_J0", "E_J9"} for t in _trips(out))
    assert 0.4 * n < main < 0.6 * n


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"bogus": 1}, "bogus"),
        ({"through_share": 1.5}, "through_share"),
        ({"vehicles_per_hour": 0}, "vehicles_per_hour"),
        ({"vehicles_per_hour": float("nan")}, "vehicles_per_hour"),
        ({"vehicles_per_hour": 1e9}, "vehicles_per_hour' 1e.09 over .* at most 2,000,000"),
        ({"end_s": 0.0}, "end_s"),
        ({"seed": -1}, "seed"),
        ({"fringe_only": "yes"}, "fringe_only"),
        ({"main_share": 0.5}, "main_share"),
        ({"main_edges": ["nope"], "main_share": 0.5}, "main_edges"),
        ({"main_edges": "left0A0"}, "main_edges"),
        # (a user's value that leaves no pair: their field, with what would work, not "the
        # network has no boundary edges")
        ({"min_trip_m": 99999}, r"'min_trip_m' 99999 m leaves no trip: .* are 1803 m apart"),
        ({"min_trip_m": -1}, "min_trip_m"),
    ],
)
def test_invalid_params_name_the_parameter(tmp_path: Path, kw: dict[str, Any], name: str) -> None:
    with pytest.raises(ScenarioError, match=name):
        _write(tmp_path, **kw)


def test_missing_network(tmp_path: Path) -> None:
    with pytest.raises(NetworkError):
        write_random_trips(
            tmp_path / "none.net.xml", tmp_path / "t.xml", seed=1, begin_s=0, end_s=60, vehicles_per_hour=60
        )
