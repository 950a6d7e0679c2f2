"""``POST /v1/emergencies/{id}/route``: an escort under way given another way on (a new route
from the edge it is on, or a destination): the signals it no longer needs are handed back at
once, the new ones planned; the same for an escort the simulation drives and one tracked by
external fixes (whose fixes off the old route were refused, 422, with no way to say it turned)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.errors import CorridorError, RequestError, ScenarioError
from controller.runtime.service_model import Cancel, Dispatch, Place, Reroute
from controller.scenario import load_scenario
from controller.sim.adapter import SumoAdapter
from tests.api.conftest import TOKEN, Server, all_handed_back, in_process_service, wait_for
from tests.api.sse import EventCollector
from tests.helpers import no_left_at_b1, write_scenario

pytestmark = pytest.mark.sumo

ROW = ["left1A1", "A1B1", "B1C1", "C1right1"]  # east along the middle row: A1, B1, C1
NORTH_AT_B1 = ["left1A1", "A1B1", "B1B2", "B2top1"]  # left at B1, then straight through B2


def _let_go(c: httpx.Client, escort: str, tls: str) -> bool:
    """``tls`` was let go for ``escort`` with the reason ``re-routed`` (armed only: back to idle,
    which had no reasons; switched: exiting or handed back)."""
    rows = [a["detail"] for a in c.get("/v1/audit").json()
            if a["kind"] in ("decision", "handback") and a["tls_id"] == tls and escort in a["detail"]["escorts"]]
    return any((d.get("reasons") or {}).get(escort) == "re-routed" for d in rows)


def _held_for(c: httpx.Client, escort: str) -> set[str]:
    return {s["tls_id"] for s in c.get("/v1/signals").json() if escort in s["escorts"]}


def test_an_escort_driven_by_the_simulation_turns_off_its_route(server: Server) -> None:
    with server.client() as c, EventCollector(server.url, TOKEN) as sse:
        assert c.post("/v1/emergencies", json={"id": "amb-r", "route": ROW}).status_code == 201
        wait_for(lambda: "C1" in _held_for(c, "amb-r"), what="C1 armed for the escort")
        r = c.post("/v1/emergencies/amb-r/route", json={"route": NORTH_AT_B1})
        assert r.status_code == 200, r.text
        escort = r.json()
        assert escort["route"] == NORTH_AT_B1 and escort["state"] == "en_route"
        assert [j["tls_id"] for j in escort["junctions"]] == ["A1", "B1", "B2"]
        # C1, on the old way only, let go at once (the next tick); B2 planned
        wait_for(lambda: _let_go(c, "amb-r", "C1"), timeout_s=10, what="C1 let go as re-routed")
        assert "C1" not in _held_for(c, "amb-r")
        done = wait_for(lambda: (e := c.get("/v1/emergencies/amb-r").json())["state"] == "arrived" and e,
                        timeout_s=60, what="the arrival at the end of the new way")
        assert done["junctions"][-1]["tls_id"] == "B2" and done["junctions"][-1]["crossed_s"] is not None
        wait_for(lambda: all_handed_back(c), timeout_s=30, what="every signal handed back")
        health = c.get("/healthz").json()
        assert not any(health["safety"].values()), health["safety"]
        # the event and the audit row say it was asked for (SUMO's own re-routes say not)
        wait_for(lambda: sse.of("reroute"), what="the reroute event")
        event = sse.of("reroute")[0]["data"]
        assert event["route"] == NORTH_AT_B1 and event["requested"] is True and event["tls"] == ["A1", "B1", "B2"]
        rows = c.get("/v1/audit", params={"kind": "reroute"}).json()
        assert [(a["escort_id"], a["detail"]["route"], a["detail"]["requested"]) for a in rows] == [
            ("amb-r", NORTH_AT_B1, True)]


def test_an_externally_tracked_escort_is_re_routed_to_a_destination(server: Server) -> None:
    with server.client() as c:
        r = c.post("/v1/emergencies", json={"id": "gps-r", "tracking": "external", "route": ROW})
        assert r.status_code == 201, r.text
        now = c.get("/healthz").json()["t_s"]
        assert c.post("/v1/emergencies/gps-r/positions", json={"edge": "A1B1", "offset_m": 60.0, "speed_mps": 10.0,
                                                               "timestamp": now}).status_code == 200
        # off the route the fix is refused: the integrator says where the vehicle goes instead
        off = c.post("/v1/emergencies/gps-r/positions", json={"edge": "B1B2", "offset_m": 30.0, "speed_mps": 10.0})
        assert off.status_code == 422, off.text
        wait_for(lambda: c.get("/v1/emergencies/gps-r").json()["state"] == "en_route", what="the first fix taken")
        r = c.post("/v1/emergencies/gps-r/route", json={"destination": {"edge": "B2top1"}})
        assert r.status_code == 200, r.text
        escort = r.json()
        assert escort["route"] == NORTH_AT_B1, escort["route"]
        assert [j["tls_id"] for j in escort["junctions"]] == ["A1", "B1", "B2"]
        # (A1, behind its first fix, stays behind it: no ETA; no crossing time either, none was seen)
        assert escort["junctions"][0]["eta_s"] is None and escort["junctions"][0]["crossed_s"] is None
        assert escort["position"]["edge"] == "A1B1"
        wait_for(lambda: _let_go(c, "gps-r", "C1"), timeout_s=10, what="C1 let go as re-routed")
        # its fixes on the new way are taken; at the end of it the escort has arrived
        wait_for(lambda: c.get("/healthz").json()["t_s"] >= now + 10, what="10 s more")  # (a plausible speed)
        r = c.post("/v1/emergencies/gps-r/positions", json={"edge": "B1B2", "offset_m": 30.0, "speed_mps": 10.0})
        assert r.status_code == 200, r.text
        t = c.get("/healthz").json()["t_s"]
        wait_for(lambda: c.get("/healthz").json()["t_s"] >= t + 10, what="10 s more")  # (a plausible speed)
        r = c.post("/v1/emergencies/gps-r/positions", json={"edge": "B2top1", "offset_m": 90.0, "speed_mps": 10.0})
        assert r.status_code == 200, r.text
        wait_for(lambda: c.get("/v1/emergencies/gps-r").json()["state"] == "arrived", timeout_s=10,
                 what="the arrival at the new destination")
        wait_for(lambda: all_handed_back(c), timeout_s=30, what="every signal handed back")


def test_a_route_that_cannot_be_taken_is_refused_and_changes_nothing(server: Server) -> None:
    with server.client() as c:
        assert c.post("/v1/emergencies", json={"id": "amb-x", "tracking": "external", "route": ROW}).status_code == 201

        def refused(body: dict[str, Any], status: int = 422) -> str:
            r = c.post("/v1/emergencies/amb-x/route", json=body)
            assert r.status_code == status, r.text
            return str(r.json()["detail"])

        assert "is on edge 'left1A1' now, which the route does not hold" in refused({"route": ["A1B1", "B1B2"]})
        assert "B1B2" in refused({"route": ["left1A1", "A1B1", "B1B2", "C1right1"]})  # (not connected)
        assert "give exactly one of: route, destination" in refused({"route": ROW, "destination": {"edge": "x"}})
        assert "give exactly one of: route, destination" in refused({})
        assert "destination: unknown edge 'nowhere'" in refused({"destination": {"edge": "nowhere"}})
        assert "unknown escort 'ghost'" in c.post("/v1/emergencies/ghost/route", json={"route": ROW}).json()["detail"]
        escort = c.get("/v1/emergencies/amb-x").json()
        assert escort["route"] == ROW and c.get("/v1/audit", params={"kind": "reroute"}).json() == []
        # the way it goes already: nothing to do, no re-route recorded
        assert c.post("/v1/emergencies/amb-x/route", json={"route": ROW}).status_code == 200
        assert c.get("/v1/audit", params={"kind": "reroute"}).json() == []
        assert c.delete("/v1/emergencies/amb-x").status_code == 200
        assert "is cancelled already" in refused({"route": NORTH_AT_B1}, 409)
    with httpx.Client(base_url=server.url) as anonymous:  # a write: the token is needed
        assert anonymous.post("/v1/emergencies/amb-x/route", json={"route": ROW}).status_code == 401


def _ticks(service: Any, n: int) -> None:
    """Wait until the in-process service has simulated ``n`` more seconds."""
    t = service.state.t_s
    wait_for(lambda: service.state.t_s >= t + n or service.state.failed, timeout_s=30, what=f"{n} s more")


def test_a_way_greenwave_cannot_serve_is_refused_and_the_service_goes_on(tiny_net: Path, tmp_path: Path) -> None:
    # B1's left turn (A1B1 -> B1B2) red in every phase: SUMO was given the route before the
    # corridor was built, kept it, and the next tick failed the whole service (every escort
    # cancelled, every signal restored at once)
    net = no_left_at_b1(tiny_net, tmp_path / "no-left-at-b1.net.xml")
    service = in_process_service(write_scenario(tmp_path / "s.toml", net, end_s=3600), tmp_path, speed=20.0)
    service.start()
    try:
        service.submit(Dispatch(escort_id="amb", route=tuple(ROW))).result(timeout=30)
        _ticks(service, 3)
        with pytest.raises(CorridorError, match="no phase of program '0' gives green to every link from edge "
                                                "'A1B1' to 'B1B2'"):
            service.submit(Reroute("amb", route=tuple(NORTH_AT_B1))).result(timeout=30)
        _ticks(service, 3)
        assert service.state.failed is None and service.state.running
        assert service.state.escorts["amb"].state == "en_route" and service.state.escorts["amb"].route == tuple(ROW)
        # to a destination: the fastest way greenwave can serve, round B1's left turn (it was refused too)
        service.submit(Reroute("amb", destination=Place(edge="B2top1"))).result(timeout=30)
        route = service.state.escorts["amb"].route
        assert route[0] == "left1A1" and route[-1] == "B2top1" and "B1B2" not in route, route
        _ticks(service, 3)
        assert service.state.failed is None and service.state.escorts["amb"].state == "en_route"
    finally:
        service.stop()


def test_serve_starts_on_a_scenario_whose_ev_it_would_not_escort(tiny_net: Path, tmp_path: Path) -> None:
    # the scenario's [[ev]] (a route through B1's left turn, red in every phase) is never
    # dispatched by a service: `greenwave serve` refused to start, naming it
    net = no_left_at_b1(tiny_net, tmp_path / "no-left-at-b1.net.xml")
    scenario = write_scenario(tmp_path / "s.toml", net, end_s=3600, ev=f"route = {json.dumps(NORTH_AT_B1)}")
    server = Server(scenario, tmp_path).start()
    try:
        with server.client() as client:
            r = client.post("/v1/emergencies", json={"id": "amb", "origin": {"edge": "left1A1"},
                                                     "destination": {"edge": "B2top1"}})
            assert r.status_code == 201, r.text
            assert r.json()["route"][-1] == "B2top1" and "B1B2" not in r.json()["route"]  # routed round it
    finally:
        assert server.stop() == 0


def test_a_cancelled_escort_whose_vehicle_is_not_on_the_road_yet_takes_it_out(tiny_net: Path,
                                                                                 tmp_path: Path) -> None:
    # left1A1 blocked at its start (a car stopped there): the ambulance greenwave adds cannot be
    # inserted. Cancelled (as the 409 for re-routing it says to), it stayed in SUMO's insertion
    # queue, departed once there was room and ran its whole route unescorted, a vehicle the API
    # no longer showed. Now it is taken out; one already on the road drives on.
    (tmp_path / "block.rou.xml").write_text(
        '<routes><route id="rb" edges="left1A1 A1B1"/><vehicle id="blk" route="rb" depart="0" departPos="2">'
        '<stop lane="left1A1_0" endPos="8" duration="30"/></vehicle></routes>')
    demand = f'[demand]\nlevel = "light"\nroutes = ["{tmp_path / "block.rou.xml"}"]\n'
    service = in_process_service(write_scenario(tmp_path / "s.toml", tiny_net, end_s=3600, demand=demand), tmp_path,
                                 speed=20.0)
    service.start()
    try:
        _ticks(service, 3)
        service.submit(Dispatch(escort_id="held", route=tuple(ROW))).result(timeout=30)
        service.submit(Dispatch(escort_id="other", route=("bottom1B0", "B0B1", "B1B2", "B2top1"))).result(timeout=30)
        _ticks(service, 3)
        assert service.state.escorts["held"].state == "dispatched"  # not on the road: no room
        assert service.state.escorts["other"].state == "en_route"
        service.submit(Cancel("held")).result(timeout=30)
        service.submit(Cancel("other")).result(timeout=30)
        _ticks(service, 200)  # (the stop ended at 30 s: room again; time to drive the route)
        cancels = {e.escort_id: e.detail for e in service.audit.since(0, kind="cancel")}
        assert cancels["held"].get("vehicle_removed") is True and "vehicle_removed" not in cancels["other"], cancels
        assert {e.data["escort"]: e.data.get("vehicle_removed") for e in service.events.since(0)
                if e.type == "cancel"} == {"held": True, "other": None}
    finally:
        service.stop()
    trips = (tmp_path / "out" / "tripinfo.xml").read_text()
    assert 'id="held"' not in trips and 'id="other"' in trips  # the one on the road drove on to its end


def test_a_dispatch_names_the_signals_it_leaves_to_their_programs(tiny_net: Path, tmp_path: Path) -> None:
    # B1's program switches its first link between 'O' (off) and signalled: a run notes that it is
    # left to its program; a service's dispatch said nothing of it
    add = tmp_path / "mix.add.xml"
    add.write_text('<additional><tlLogic id="B1" type="static" programID="mix" offset="0">'
                   '<phase duration="40" state="GGgrrrGGgrrr"/><phase duration="3" state="yyyrrryyyrrr"/>'
                   '<phase duration="2" state="rrrrrrrrrrrr"/><phase duration="40" state="OrrGGgrrrGGg"/>'
                   '<phase duration="3" state="Orryyyrrryyy"/><phase duration="2" state="rrrrrrrrrrrr"/>'
                   '</tlLogic></additional>')
    scenario = write_scenario(tmp_path / "s.toml", tiny_net, end_s=3600, additional=f'["{add}"]')
    service = in_process_service(scenario, tmp_path, speed=20.0)
    service.start()
    try:
        service.submit(Dispatch(escort_id="amb", route=tuple(ROW))).result(timeout=30)
        [row] = [r for r in service.audit.since(0, kind="dispatch") if r.escort_id == "amb"]
        [note] = row.detail["left_to_program"]
        assert "'B1' is left to its program" in note and "link 0 is 'O' (off)" in note, note
        [event] = [e for e in service.events.since(0) if e.type == "dispatch"]
        assert event.data["left_to_program"] == [note]
    finally:
        service.stop()


def test_serve_starts_on_a_scenario_without_any_ev(tiny_net: Path, tmp_path: Path) -> None:
    # a service dispatches nothing of the file's own (its escorts come through the API): a scenario
    # written for it, with no [[ev]], was refused ("give at least one [[ev]]"); `run` still needs one
    scenario = tmp_path / "s.toml"
    scenario.write_text(f'name = "svc"\n[network]\nnet = "{tiny_net}"\n[simulation]\nbegin_s = 0\nend_s = 600\n')
    with pytest.raises(ScenarioError, match="give at least one"):
        load_scenario(scenario)
    service = in_process_service(scenario, tmp_path, speed=50.0)
    service.start()
    try:
        service.submit(Dispatch(escort_id="amb", route=tuple(ROW))).result(timeout=30)
        _ticks(service, 3)
        assert service.state.failed is None and service.state.escorts["amb"].state == "en_route"
    finally:
        service.stop()


def test_a_service_notes_the_configurations_options_it_does_not_use(tiny_net: Path, tmp_path: Path) -> None:
    # greenwave run says so (and keeps it in summary.json); the service said nothing
    from controller.runtime.setup import OPTIONS_NOT_USED

    cfg = tmp_path / "user.sumocfg"
    cfg.write_text(f'<configuration><input><net-file value="{tiny_net}"/></input>'
                   '<output><tripinfo-output value="mine.xml"/></output></configuration>')
    scenario = tmp_path / "s.toml"
    scenario.write_text(f'name = "cfg"\n[network]\nsumocfg = "{cfg}"\n[simulation]\nbegin_s = 0\nend_s = 100\n'
                        '[[ev]]\nid = "amb"\nfrom = "left1A1"\nto = "C1right1"\ndepart_s = 10\n')
    service = in_process_service(scenario, tmp_path, speed=50.0)
    service.start()
    service.stop()
    said = f"{OPTIONS_NOT_USED} (greenwave writes its own outputs into --out and runs SUMO itself): tripinfo-output"
    assert service.notes == [said]
    started = next(e for e in service.audit.since(0, kind="service") if e.detail.get("event") == "started")
    assert started.detail["notes"] == [said]


def test_a_cancel_right_after_a_re_route_hands_back_the_old_ways_signals_too(tiny_scenario: Path,
                                                                             tmp_path: Path) -> None:
    # handled in the same tick, the cancel's handing_back listed the new way's signals only: not
    # C1, switched or armed for the escort on the way it had just left
    service = in_process_service(tiny_scenario, tmp_path, speed=10.0)
    service.start()
    try:
        service.submit(Dispatch(escort_id="amb", route=tuple(ROW))).result(timeout=30)
        wait_for(lambda: any(s.tls_id == "C1" and "amb" in s.escorts for s in service.state.signals.values()),
                 timeout_s=30, what="C1 held for the escort")
        rerouted = service.submit(Reroute("amb", route=tuple(NORTH_AT_B1)))
        cancelled = service.submit(Cancel("amb"))
        rerouted.result(timeout=30)
        cancelled.result(timeout=30)
    finally:
        service.stop()
    cancel = next(e.data for e in service.events.since(0) if e.type == "cancel")
    assert "C1" in cancel["handing_back"], cancel


def test_inside_a_junction_the_route_may_start_with_the_edge_it_is_entering(
        tiny_scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SUMO counts a vehicle inside a junction on the edge before it: a route from the edge it is
    # entering was refused ("is on edge 'A1B1' now, which the route does not hold")
    roads: list[str] = []
    read = SumoAdapter.vehicle_road

    def vehicle_road(self: SumoAdapter, vehicle_id: str) -> str:
        roads.append(read(self, vehicle_id))
        return roads[-1]

    monkeypatch.setattr(SumoAdapter, "vehicle_road", vehicle_road)
    service = in_process_service(tiny_scenario, tmp_path, speed=4.0)  # (a step every 0.25 s: seen between ticks)
    service.start()
    try:
        service.submit(Dispatch(escort_id="amb", route=tuple(NORTH_AT_B1))).result(timeout=30)

        def inside_b1() -> bool:
            position = service.state.escorts["amb"].position
            assert position is None or position.edge != "B1B2", "the escort was never seen inside B1"
            return position is not None and position.edge.startswith(":B1")

        wait_for(inside_b1, timeout_s=60, every_s=0.005, what="the escort inside B1")
        service.submit(Reroute("amb", route=("B1B2", "B2C2", "C2right2"))).result(timeout=30)
        assert roads and roads[0].startswith(":B1"), roads  # (taken inside the junction, not after it)
        escort = service.state.escorts["amb"]
        assert escort.route == ("left1A1", "A1B1", "B1B2", "B2C2", "C2right2"), escort.route
        assert [j.tls_id for j in escort.junctions] == ["A1", "B1", "B2", "C2"]
        # a route from elsewhere is still refused, naming the edge SUMO counts it on
        wait_for(lambda: (p := service.state.escorts["amb"].position) is not None and p.edge == "B1B2",
                 what="the escort on B1B2")
        with pytest.raises(RequestError, match="is on edge 'B1B2' now, which the route does not hold"):
            service.submit(Reroute("amb", route=("B2C2", "C2right2"))).result(timeout=30)
    finally:
        service.stop()


def test_inside_a_junction_a_destination_is_routed_from_the_edge_it_is_entering(
        tiny_scenario: Path, tmp_path: Path) -> None:
    # routed from the edge before (where SUMO counts it) a way turning otherwise than the EV is:
    # SUMO refused it (409, "ask again once it has left"); and a route refused there named that
    # edge before the junction
    service = in_process_service(tiny_scenario, tmp_path, speed=4.0)  # (a step every 0.25 s: seen between ticks)
    service.start()
    try:
        service.submit(Dispatch(escort_id="amb", route=tuple(NORTH_AT_B1))).result(timeout=30)
        wait_for(lambda: (p := service.state.escorts["amb"].position) is not None and p.edge.startswith(":B1"),
                 timeout_s=60, every_s=0.005, what="the escort inside B1")
        # (all handled in the same tick, while it is still inside): a route that does not hold the
        # edge it is entering is refused naming both edges, also where it holds the one before
        # (SUMO refused it then: a 409, "ask again once it has left", which could only be a 422);
        # one holding it further on is taken from there (it was refused as not holding it)
        refused = [service.submit(Reroute("amb", route=route))
                   for route in (("B2C2", "C2right2"), ("A1B1", "B1C1", "C1right1"))]
        same = service.submit(Reroute("amb", route=("C1B1", "B1B2", "B2top1")))
        rerouted = service.submit(Reroute("amb", destination=Place(edge="C2right2")))
        for future in refused:
            with pytest.raises(RequestError, match="is inside the junction from edge 'A1B1' onto 'B1B2' now, which "
                                                   "the route does not hold: give the way on from 'B1B2'") as e:
                future.result(timeout=30)
            assert e.value.status == 422
        same.result(timeout=30)  # (the way it goes already)
        rerouted.result(timeout=30)
        escort = service.state.escorts["amb"]
        assert escort.route == ("left1A1", "A1B1", "B1B2", "B2C2", "C2right2"), escort.route
        assert [j.tls_id for j in escort.junctions] == ["A1", "B1", "B2", "C2"]
        wait_for(lambda: service.state.escorts["amb"].state == "arrived", timeout_s=60, what="the escort's arrival")
    finally:
        service.stop()


def test_an_escort_sumo_re_routes_through_a_movement_no_phase_serves_goes_on(tiny_net: Path, tmp_path: Path) -> None:
    # SUMO's rerouter sends the escort, routed round B1's red left turn, back through it: the
    # service cancelled that escort (greenwave run left the signal to its program and went on);
    # now both do the latter, the reroute event saying why. Past B1, a second SUMO re-route and
    # one asked through the API concern the way ahead only (B1 was named again, and every
    # re-route through the API was refused naming it)
    net = no_left_at_b1(tiny_net, tmp_path / "no-left-at-b1.net.xml")
    rerouter = tmp_path / "rerouter.add.xml"
    rerouter.write_text(f'<additional><route id="viaLeft" edges="{" ".join(NORTH_AT_B1)}"/>'
                        '<rerouter id="rr" edges="left1A1" probability="1"><interval begin="0" end="10000">'
                        '<routeProbReroute id="viaLeft" probability="1"/></interval></rerouter>'
                        '<rerouter id="rr2" edges="B1B2" probability="1"><interval begin="0" end="10000">'
                        '<destProbReroute id="C2right2" probability="1"/></interval></rerouter></additional>')
    scenario = write_scenario(tmp_path / "s.toml", net, end_s=3600, additional=f'["{rerouter}"]')
    service = in_process_service(scenario, tmp_path, speed=20.0)
    service.start()
    try:
        service.submit(Dispatch(escort_id="amb", origin=Place(edge="left1A1"),
                                destination=Place(edge="B2top1"))).result(timeout=30)
        wait_for(lambda: (p := service.state.escorts["amb"].position) is not None and p.edge == "B1B2",
                 timeout_s=60, every_s=0.01, what="the escort past B1")
        service.submit(Reroute("amb", destination=Place(edge="B2top1"))).result(timeout=30)
        assert service.state.escorts["amb"].route[-2:] == ("B1B2", "B2top1")
        wait_for(lambda: service.state.escorts["amb"].state in ("arrived", "cancelled"), timeout_s=60,
                 what="the escort's end")
        assert service.state.escorts["amb"].state == "arrived"
        wait_for(lambda: not service.state.preempted, timeout_s=30, what="every signal handed back")
        state = service.state
        assert state.failed is None and not any(state.safety.get(rule) for rule in ("S1", "S2", "S3", "S4", "S5"))
    finally:
        service.stop()
    first, second, asked = [e.data for e in service.events.since(0) if e.type == "reroute"]
    assert first["route"] == NORTH_AT_B1 and first["requested"] is False and "B1" not in first["tls"]
    (why,) = first["left_to_program"]
    assert why.startswith("traffic light 'B1'") and "from edge 'A1B1' to 'B1B2'" in why, why
    assert second["route"] == [*NORTH_AT_B1[:3], "B2C2", "C2right2"] and second["requested"] is False
    assert "left_to_program" not in second and asked["requested"] is True and "left_to_program" not in asked


def test_a_re_route_asked_while_crossing_a_movement_no_phase_serves_names_no_signal_left(
        tiny_net: Path, tmp_path: Path) -> None:
    # crossing B1's left turn (a stop sign: SUMO's rerouter chose it), the escort is re-routed through the
    # API: B1 is being crossed, not ahead (the request was taken as such), yet its reroute event
    # named B1 as left to its program (SUMO counts the vehicle on the edge before the junction)
    net = no_left_at_b1(tiny_net, tmp_path / "stop-left-at-b1.net.xml", shown="s")
    rerouter = tmp_path / "rerouter.add.xml"
    rerouter.write_text(f'<additional><route id="viaLeft" edges="{" ".join(NORTH_AT_B1)}"/>'
                        '<rerouter id="rr" edges="left1A1" probability="1"><interval begin="0" end="10000">'
                        '<routeProbReroute id="viaLeft" probability="1"/></interval></rerouter></additional>')
    scenario = write_scenario(tmp_path / "s.toml", net, end_s=3600, additional=f'["{rerouter}"]')
    service = in_process_service(scenario, tmp_path, speed=4.0)  # (a step every 0.25 s: seen between ticks)
    service.start()
    try:
        service.submit(Dispatch(escort_id="amb", origin=Place(edge="left1A1"),
                                destination=Place(edge="B2top1"))).result(timeout=30)
        wait_for(lambda: (p := service.state.escorts["amb"].position) is not None and p.edge.startswith(":B1"),
                 timeout_s=60, every_s=0.005, what="the escort inside B1")
        service.submit(Reroute("amb", destination=Place(edge="C2right2"))).result(timeout=30)
    finally:
        service.stop()
    first, asked = [e.data for e in service.events.since(0) if e.type == "reroute"]
    assert "left_to_program" in first and asked["requested"] is True and asked["route"][-1] == "C2right2"
    assert "left_to_program" not in asked, asked
