"""External position fixes (a GPS-tracked escort) on a geo-referenced network: longitude and
latitude are map-matched onto the route and drive the ETA; points off the route are refused;
origin and destination may be given as longitude/latitude too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import DEMAND, Server, all_handed_back, wait_for
from tests.helpers import write_scenario

pytestmark = pytest.mark.sumo

UTM32 = "+proj=utm +zone=32 +ellps=WGS84 +datum=WGS84 +units=m +no_defs"


def dispatch_external(c: httpx.Client, escort_id: str, route: list[str]) -> httpx.Response:
    """Dispatch an externally tracked escort on ``route``: its answer (201 asserted)."""
    r = c.post("/v1/emergencies", json={"id": escort_id, "tracking": "external", "route": route})
    assert r.status_code == 201, r.text
    return r


@pytest.fixture(scope="module")
def geo_net(tiny_net: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny grid placed in UTM zone 32 (near Ingolstadt)."""
    text = tiny_net.read_text()
    start = text.index("<location ")
    end = text.index("/>", start) + 2
    location = (f'<location netOffset="-676000.00,-5400000.00" convBoundary="0.00,0.00,600.00,600.00" '
                f'origBoundary="11.3,48.7,11.4,48.8" projParameter="{UTM32}"/>')
    path = tmp_path_factory.mktemp("geo") / "tiny-geo.net.xml"
    path.write_text(text[:start] + location + text[end:])
    return path


def _lonlat(net: Path, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Longitude/latitude of network points, by SUMO itself."""
    import libsumo

    from controller.sim.sumo_paths import binary

    libsumo.start([str(binary("sumo")), "-n", str(net), "--no-step-log", "--no-warnings"])
    try:
        return [tuple(libsumo.simulation.convertGeo(x, y)) for x, y in points]
    finally:
        libsumo.close()


@pytest.fixture(scope="module")
def geo_server(geo_net: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("geo-serve")
    scenario = write_scenario(d / "geo.toml", geo_net, end_s=3600, demand=DEMAND)
    s = Server(scenario, d, speed=10.0).start()
    try:
        yield s
    finally:
        s.stop()


def test_gps_escort_is_map_matched_and_drives_the_eta(geo_net: Path, geo_server: Server) -> None:
    # the middle row runs along y = 300 (eastbound lane at about y = 298.4) from x = 0 to 600,
    # with A1 at x = 100, B1 at 300, C1 at 500
    (o_lon, o_lat), (d_lon, d_lat), (m_lon, m_lat), (far_lon, far_lat), (n_lon, n_lat) = _lonlat(
        geo_net, [(50.0, 297.0), (550.0, 297.0), (200.0, 299.0), (200.0, 430.0), (400.0, 296.0)])
    with geo_server.client() as c:
        r = c.post("/v1/emergencies", json={"id": "gps-1", "tracking": "external", "vehicle_type": "police",
                                            "origin": {"lon": o_lon, "lat": o_lat},
                                            "destination": {"lon": d_lon, "lat": d_lat}})
        assert r.status_code == 201, r.text
        escort = r.json()
        assert escort["route"] == ["left1A1", "A1B1", "B1C1", "C1right1"] and escort["priority"] == 2
        assert escort["state"] == "dispatched" and escort["tracking"] == "external"

        now = c.get("/healthz").json()["t_s"]
        r = c.post("/v1/emergencies/gps-1/positions",
                   json={"lon": m_lon, "lat": m_lat, "speed_mps": 0.0, "timestamp": now})
        assert r.status_code == 200, r.text
        fix = r.json()
        assert fix["edge"] == "A1B1" and fix["offset_m"] == pytest.approx(93.0, abs=10.0)
        assert fix["distance_from_route_m"] < 3.0
        assert fix["route_distance_m"] == pytest.approx(escort["route_length_m"] / 2 - 100.0, abs=15.0)

        e = wait_for(lambda: (x := c.get("/v1/emergencies/gps-1").json())["state"] == "en_route" and x,
                     timeout_s=10, what="the first fix to be taken")
        assert e["position"]["source"] == "external" and e["position"]["edge"] == "A1B1"
        # (A1, behind the first fix, is behind it: no ETA, and no crossing time, none having been seen)
        assert e["junctions"][0]["eta_s"] is None and e["junctions"][0]["crossed_s"] is None
        assert e["junctions"][1]["crossed_s"] is None

        # standing still (speed 0): the ETA at B1 moves later as time passes, whatever the
        # simulation does; the fix, not a SUMO vehicle, drives it
        def eta_b1() -> float | None:
            b1 = c.get("/v1/emergencies/gps-1").json()["junctions"][1]
            return float(b1["eta_s"]) if b1["eta_s"] is not None else None

        first = wait_for(eta_b1, what="an ETA at B1")
        wait_for(lambda: (x := eta_b1()) is not None and x > first + 3.0, timeout_s=20,
                 what="the ETA at B1 to move later while the escort stands")

        r = c.post("/v1/emergencies/gps-1/positions", json={"lon": far_lon, "lat": far_lat})
        assert r.status_code == 422
        assert "m from the route of escort 'gps-1' (at most 50 m)" in r.json()["detail"]
        r = c.post("/v1/emergencies/gps-1/positions", json={"edge": "A1B1", "offset_m": 5.0, "timestamp": 0.0})
        assert r.status_code == 422 and "older than the last position" in r.json()["detail"]

        # moving on at 13 m/s from the middle of B1C1: the ETA at C1 is about 100 m / 13 m/s away
        # 300 m on in no time, or 190 m back: not plausible, refused (the escort stays where it was)
        r = c.post("/v1/emergencies/gps-1/positions", json={"edge": "C1right1", "offset_m": 10.0,
                                                            "timestamp": fix["t_s"]})
        assert r.status_code == 422 and "m along the route of escort 'gps-1' in 0 s" in r.json()["detail"], r.text
        r = c.post("/v1/emergencies/gps-1/positions", json={"edge": "left1A1", "offset_m": 10.0})
        assert r.status_code == 422 and "m back along the route of escort 'gps-1'" in r.json()["detail"], r.text
        assert c.get("/v1/emergencies/gps-1").json()["junctions"][1]["crossed_s"] is None

        # moving on at 13 m/s from the middle of B1C1 (200 m on, some simulated seconds later)
        wait_for(lambda: c.get("/healthz").json()["t_s"] >= fix["t_s"] + 10.0, what="10 simulated s to pass")
        r = c.post("/v1/emergencies/gps-1/positions", json={"lon": n_lon, "lat": n_lat, "speed_mps": 13.0})
        assert r.status_code == 200 and r.json()["edge"] == "B1C1", r.text
        moving = r.json()
        def eta_c1() -> float | None:
            c1 = c.get("/v1/emergencies/gps-1").json()["junctions"][2]
            return float(c1["eta_in_s"]) if c1["eta_in_s"] is not None and c1["eta_in_s"] < 15.0 else None

        assert wait_for(eta_c1, timeout_s=5, every_s=0.05, what="an ETA at C1 from the moving fix") > 2.0
        wait_for(lambda: c.get("/healthz").json()["t_s"] >= moving["t_s"] + 10.0, what="10 simulated s to pass")
        r = c.post("/v1/emergencies/gps-1/positions", json={"edge": "C1right1", "offset_m": 90.0})
        assert r.status_code == 200, r.text
        done = wait_for(lambda: (x := c.get("/v1/emergencies/gps-1").json())["state"] == "arrived" and x,
                        timeout_s=20, what="arrival")
        assert [j["crossed_s"] is not None for j in done["junctions"]] == [False, True, True]  # (A1: before the fixes)
        wait_for(lambda: all_handed_back(c), timeout_s=30, what="every signal handed back")
        assert c.post("/v1/emergencies/gps-1/positions", json={"edge": "C1right1", "offset_m": 5}).status_code == 409


def test_a_chain_of_fixes_each_near_the_last_cannot_carry_an_escort_past_its_signals(geo_server: Server) -> None:
    # Each fix was checked against the last one alone, with 50 m for the two fixes' errors: nine
    # fixes of one timestamp, 45 m apart, moved the escort 380 m in no time and released A1
    # ahead of it. Each is now checked against every earlier one.
    with geo_server.client() as c:
        wait_for(lambda: c.get("/healthz").json()["t_s"] >= 20.0, what="20 simulated s to pass")
        r = dispatch_external(c, "chain", ["left1A1", "A1B1", "B1C1", "C1right1"])
        dispatched = r.json()["dispatched_s"]
        # no ETA before its first fix: where it is is not known (it said about 20 s to A1, sliding
        # with the clock, until the fix or the 120 s without one)
        assert [j["eta_s"] for j in r.json()["junctions"]] == [None] * 3
        assert [j["eta_s"] for j in c.get("/v1/emergencies/chain").json()["junctions"]] == [None] * 3
        # dated before the dispatch (the client's fix as it dispatched): counts from the
        # dispatch, and a later fix still dated before it is not "older" than that one
        first = c.post("/v1/emergencies/chain/positions", json={"edge": "left1A1", "offset_m": 20.0,
                                                                "timestamp": dispatched - 6.0})
        assert first.status_code == 200 and first.json()["t_s"] == dispatched, first.text
        r = c.post("/v1/emergencies/chain/positions", json={"edge": "left1A1", "offset_m": 30.0,
                                                            "timestamp": dispatched - 2.0})
        assert r.status_code == 200, r.text
        t = dispatched - 2.0
        r = c.post("/v1/emergencies/chain/positions", json={"edge": "left1A1", "offset_m": 75.0, "timestamp": t})
        assert r.status_code == 200, r.text  # 45 m in 0 s: within the two fixes' errors
        # 42 m on from the last (within its error), but 87 m on from the one before, at 30 m, in
        # no time: refused (that one allows 80 m, 5 m beyond the last)
        r = c.post("/v1/emergencies/chain/positions", json={"edge": "A1B1", "offset_m": 10.0, "timestamp": t})
        assert r.status_code == 422, r.text
        assert "42 m along the route" in r.json()["detail"] and "allows 5 m" in r.json()["detail"], r.text
        # nor back by more than 50 m from the farthest one
        r = c.post("/v1/emergencies/chain/positions", json={"edge": "left1A1", "offset_m": 20.0})
        assert r.status_code == 422 and "55 m back along the route" in r.json()["detail"], r.text
        e = c.get("/v1/emergencies/chain").json()
        assert all(j["crossed_s"] is None for j in e["junctions"])
        assert wait_for(lambda: c.get("/v1/emergencies/chain").json()["junctions"][0]["eta_s"],
                        what="an ETA from the fixes") > dispatched
        assert c.delete("/v1/emergencies/chain").status_code in (200, 202, 204)
        wait_for(lambda: all_handed_back(c), timeout_s=30, what="every signal handed back")


def test_a_fix_just_past_a_stop_line_does_not_hand_its_signal_back(geo_server: Server) -> None:
    # A fix 5 m past A1's stop line marked A1 crossed and handed it back; the next fix, 45 m
    # back (GPS noise the plausibility check accepts), put the escort before A1, red and
    # requested by no one. A stop line counts as crossed once the fixes show the vehicle past
    # it by more than a fix's error (50 m), or it arrives.
    with geo_server.client() as c:
        r = dispatch_external(c, "noisy", ["left1A1", "A1B1", "B1C1", "C1right1"])
        line = r.json()["junctions"][0]["distance_m"]
        assert c.post("/v1/emergencies/noisy/positions",
                      json={"edge": "left1A1", "offset_m": line - 40.0, "speed_mps": 8.0}).status_code == 200
        wait_for(lambda: c.get("/v1/signals/A1").json()["stage"] in ("entry", "dwell"), what="A1 switched")
        r = c.post("/v1/emergencies/noisy/positions", json={"edge": "A1B1", "offset_m": 5.0, "speed_mps": 8.0})
        assert r.status_code == 200, r.text
        past = r.json()["route_distance_m"]  # 5 m into A1B1: past A1's line and its crossing
        assert past > line
        now = c.get("/healthz").json()["t_s"]
        wait_for(lambda: c.get("/healthz").json()["t_s"] >= now + 3.0, what="3 simulated s")
        view = c.get("/v1/emergencies/noisy").json()
        assert view["junctions"][0]["crossed_s"] is None, view["junctions"][0]
        assert c.get("/v1/signals/A1").json()["stage"] in ("entry", "dwell")
        # (left1A1 is the route's first edge: its offsets are route distances)
        r = c.post("/v1/emergencies/noisy/positions", json={"edge": "left1A1", "offset_m": past - 45.0})
        assert r.status_code == 200, r.text  # 45 m back, before A1's line: noise, accepted; A1 still held
        assert past - 45.0 < line
        assert c.get("/v1/signals/A1").json()["stage"] in ("entry", "dwell")
        now = c.get("/healthz").json()["t_s"]
        wait_for(lambda: c.get("/healthz").json()["t_s"] >= now + 3.0, what="3 simulated s")
        r = c.post("/v1/emergencies/noisy/positions", json={"edge": "A1B1", "offset_m": 80.0, "speed_mps": 8.0})
        assert r.status_code == 200, r.text
        crossed = wait_for(lambda: c.get("/v1/emergencies/noisy").json()["junctions"][0]["crossed_s"],
                           what="A1 crossed once a fix is well past it")
        assert crossed is not None
        assert c.delete("/v1/emergencies/noisy").status_code == 200
        wait_for(lambda: all_handed_back(c), timeout_s=30, what="every signal handed back")


def test_a_first_fix_beyond_signals_gives_them_no_crossing_time(geo_server: Server) -> None:
    # dispatched as it drives (a first fix 100 m into B1C1): A1 and B1 behind it were given the
    # fix's time as their crossing, a time no one saw it cross (null, as for a running vehicle
    # escorted by vehicle_id)
    with geo_server.client() as c:
        dispatch_external(c, "late", ["left1A1", "A1B1", "B1C1", "C1right1"])
        r = c.post("/v1/emergencies/late/positions", json={"edge": "B1C1", "offset_m": 100.0, "speed_mps": 10.0})
        assert r.status_code == 200, r.text
        now = c.get("/healthz").json()["t_s"]
        wait_for(lambda: c.get("/healthz").json()["t_s"] >= now + 2.0, what="2 simulated s")
        view = c.get("/v1/emergencies/late").json()
        assert [j["crossed_s"] for j in view["junctions"]] == [None, None, None], view["junctions"]
        assert [j["eta_s"] is None for j in view["junctions"]] == [True, True, False], view["junctions"]
        assert c.delete("/v1/emergencies/late").status_code == 200
        wait_for(lambda: all_handed_back(c), timeout_s=30, what="every signal handed back")


def test_an_escort_carried_to_a_stop_line_and_held_there_stands(geo_server: Server) -> None:
    # one fix at 12 m/s, then none: carried to just short of A2's stop line it stayed "moving"
    # at 12 m/s, so the stall release never let the signals further on go: A2 and B2 stayed
    # held until the escort was cancelled for want of a fix, 120 s later
    with geo_server.client() as c:
        dispatch_external(c, "frozen", ["left2A2", "A2B2", "B2C2", "C2right2"])
        assert c.post("/v1/emergencies/frozen/positions",
                      json={"edge": "left2A2", "offset_m": 50.0, "speed_mps": 12.0}).status_code == 200
        view = wait_for(lambda: (v := c.get("/v1/emergencies/frozen").json())["speed_mps"] == 0.0 and v,
                        timeout_s=20, what="the escort held short of A2, standing")
        assert view["junctions"][0]["crossed_s"] is None
        # standing 30 s: the signals further on let go; A2, green with nothing queued, handed back
        # too ("EV stalled"): all before the 120 s without a fix
        def rows(tls: str) -> list[dict[str, Any]]:
            # (a hand-back straight from dwell, with no exit, is a "handback" row: B2 takes that
            # way where the program shows the EV's green at its entry, as after another escort)
            return [a["detail"] for a in c.get("/v1/audit").json()
                    if a["kind"] in ("decision", "handback") and a["tls_id"] == tls and a["escort_id"] == "frozen"]

        def let_go(tls: str) -> bool:  # only armed for it: back to idle; switched: handed back, "EV stalled"
            return any((d.get("previous") == "armed" and d.get("stage") == "idle")
                       or (d.get("reasons") or {}).get("frozen") == "EV stalled" for d in rows(tls))

        wait_for(lambda: let_go("B2"), timeout_s=30, what="B2 let go for the standing escort")
        wait_for(lambda: any((d.get("reasons") or {}).get("frozen") == "EV stalled" for d in rows("A2")),
                 timeout_s=30, what="A2 handed back for the standing escort")
        assert c.get("/v1/emergencies/frozen").json()["state"] == "en_route"  # not cancelled: 120 s not over
        assert c.delete("/v1/emergencies/frozen").status_code == 200
        wait_for(lambda: all_handed_back(c), timeout_s=30, what="every signal handed back")


def test_lonlat_far_from_any_road_is_refused(geo_net: Path, geo_server: Server) -> None:
    (lon, lat), = _lonlat(geo_net, [(300.0, 2000.0)])
    with geo_server.client() as c:
        r = c.post("/v1/emergencies", json={"origin": {"lon": lon, "lat": lat}, "destination": {"edge": "C1right1"}})
        assert r.status_code == 422
        assert r.json()["detail"].startswith("origin: (") and "from the nearest road" in r.json()["detail"]


def test_a_lon_lat_origin_on_the_carriageway_that_leads_nowhere_takes_the_other(geo_net: Path,
                                                                               geo_server: Server) -> None:
    # (50, 302.5) is nearest the westbound A1left1, an exit off the network: the dispatch was a 422
    # "no route from edge 'A1left1'"; the eastbound left1A1, 4 m farther, has the route
    (o_lon, o_lat), (d_lon, d_lat), (x_lon, x_lat) = _lonlat(geo_net, [(50.0, 302.5), (550.0, 297.0), (50.0, 360.0)])
    with geo_server.client() as c:
        r = c.post("/v1/emergencies", json={"id": "gps-other-side", "tracking": "external",
                                            "origin": {"lon": o_lon, "lat": o_lat},
                                            "destination": {"lon": d_lon, "lat": d_lat}})
        assert r.status_code == 201, r.text
        assert r.json()["route"] == ["left1A1", "A1B1", "B1C1", "C1right1"]
        assert c.delete("/v1/emergencies/gps-other-side").status_code == 200
        # the same at the other end: (550, 297) is nearest the eastbound exit C1right1
        r = c.post("/v1/emergencies", json={"id": "gps-back", "tracking": "external",
                                            "origin": {"lon": d_lon, "lat": d_lat},
                                            "destination": {"lon": x_lon, "lat": x_lat}})
        assert r.status_code == 201 and r.json()["route"][0] == "right1C1", r.text
        assert c.delete("/v1/emergencies/gps-back").status_code == 200


def test_a_lon_lat_at_a_signalized_junction_takes_a_road_into_or_out_of_it(geo_net: Path, geo_server: Server) -> None:
    # SUMO's nearest edge to a point inside a junction is one of its internal edges: the dispatch
    # was a 422 "from edge ':B1_..' is an internal edge" for a point at (or up to ~30 m from) the
    # centre of most signalized junctions; now the nearest road into or out of it
    (b_lon, b_lat), (c_lon, c_lat) = _lonlat(geo_net, [(300.0, 300.0), (500.0, 300.0)])
    with geo_server.client() as c:
        r = c.post("/v1/emergencies", json={"id": "gps-at-b1", "tracking": "external",
                                            "origin": {"lon": b_lon, "lat": b_lat},
                                            "destination": {"lon": c_lon, "lat": c_lat}})
        assert r.status_code == 201, r.text
        route = r.json()["route"]
        assert not any(e.startswith(":") for e in route), route
        net_edges = {"A1B1", "B1A1", "B0B1", "B1B0", "B2B1", "B1B2", "B1C1", "C1B1"}
        assert route[0] in net_edges and route[-1] in {"B1C1", "C1B1", "C0C1", "C1C0", "C2C1", "C1C2",
                                                       "C1right1", "right1C1"}, route
        assert c.delete("/v1/emergencies/gps-at-b1").status_code == 200
