"""An escort over HTTP on a live SUMO simulation: dispatch, ETAs that fall, entry/dwell/exit on
the event stream, arrival, every junction handed back; a cancel in mid-route hands back at once;
the audit log holds it all after a restart."""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from tests.api.conftest import ROW, TOKEN, Server, all_handed_back, wait_for
from tests.api.sse import EventCollector

pytestmark = pytest.mark.sumo

DISPATCH = {"origin": {"edge": "left1A1"}, "destination": {"edge": "C1right1"}}


def _stage_order(events: list[dict[str, Any]], tls: str) -> list[str]:
    return [e["event"] for e in events if e["data"].get("tls_id") == tls]


def test_dispatch_follow_arrive_hand_back_and_audit_survives_restart(tiny_scenario: Path, tmp_path: Path) -> None:
    server = Server(tiny_scenario, tmp_path, speed=8.0).start()
    try:
        with server.client() as c, EventCollector(server.url, TOKEN) as sse:
            r = c.post("/v1/emergencies", json={**DISPATCH, "id": "amb-1", "vehicle_type": "ambulance"})
            assert r.status_code == 201, r.text
            body = r.json()
            assert r.headers["location"] == "/v1/emergencies/amb-1"
            assert body["id"] == "amb-1" and body["route"] == ["left1A1", "A1B1", "B1C1", "C1right1"]
            assert [j["tls_id"] for j in body["junctions"]] == list(ROW)
            assert all(j["eta_s"] is not None and j["eta_low_s"] <= j["eta_s"] <= j["eta_high_s"]
                       for j in body["junctions"])
            assert body["state"] in ("dispatched", "en_route") and body["priority"] == 1

            # successive reads: the ETA at the last signal falls as the ambulance approaches it
            reads: list[tuple[float, float]] = []

            def read_eta() -> bool:
                escort = c.get("/v1/emergencies/amb-1").json()
                last = escort["junctions"][-1]
                if last["eta_in_s"] is None:
                    return True
                t = last["eta_s"] - last["eta_in_s"]
                if not reads or t > reads[-1][0]:
                    reads.append((t, last["eta_in_s"]))
                return False

            wait_for(read_eta, every_s=0.25, what="the last junction to be crossed")
            assert len(reads) >= 4, reads
            # (it may rise for a moment: the first signal is 93 m from the start, too close to be
            # green in time, and the ambulance waits for its clearance there)
            falling = sum(1 for a, b in itertools.pairwise(reads) if b[1] < a[1])
            assert falling >= 0.7 * (len(reads) - 1), reads
            assert reads[0][1] - reads[-1][1] > 20.0, reads

            escort = wait_for(lambda: (e := c.get("/v1/emergencies/amb-1").json())["state"] == "arrived" and e,
                              what="arrival")
            assert escort["arrived_s"] > escort["departed_s"] >= escort["dispatched_s"]
            assert all(j["granted"] and j["crossed_s"] is not None for j in escort["junctions"])
            wait_for(lambda: all_handed_back(c), what="every signal handed back")
            wait_for(lambda: sse.of("arrival") and len(sse.of("handback")) >= len(ROW), what="events")
            events = sse.snapshot()
            assert sse.status == 200 and sse.content_type.startswith("text/event-stream")
            assert [e["id"] for e in events] == sorted(e["id"] for e in events)
            assert events[0]["event"] == "dispatch" and events[0]["data"]["escort"] == "amb-1"
            full = 0
            for tls in ROW:
                order = [s for s in _stage_order(events, tls) if s in ("entry", "dwell", "exit", "handback")]
                # (a signal whose program shows the approach green anyway may see the ambulance pass
                # while it is still moving to the exclusive approach state: entry, exit, no dwell;
                # and one serving the approach with the opposing through first switches to the
                # approach alone once the queue ahead of the ambulance must discharge: dwell, entry,
                # dwell; where, depends on the traffic at dispatch, which depends on the wall clock)
                switching = order[:-2]
                assert order[-2:] == ["exit", "handback"] and switching[:1] == ["entry"], (tls, order)
                assert all(a != b for a, b in itertools.pairwise(switching)), (tls, order)
                assert set(switching) <= {"entry", "dwell"}, (tls, _stage_order(events, tls))
                full += "dwell" in switching
                # why it left the ambulance's service: it crossed
                last_two = [e["data"] for e in events if e["data"].get("tls_id") == tls
                            and e["event"] in ("exit", "handback")][-2:]
                assert [d["reasons"] for d in last_two] == [{"amb-1": "crossed"}] * 2, (tls, last_two)
            assert full >= 1, events
            etas = [e for e in sse.of("eta") if e["data"]["escort"] == "amb-1"]
            assert len(etas) >= 2
            assert sse.of("arrival")[0]["data"]["escort"] == "amb-1"
            # the signals still held for it when it arrived (the last one, 100 m before the end of
            # its route, may still be in its exit): each handed back then or after
            arrival = sse.of("arrival")[0]["data"]
            assert set(arrival["handing_back"]) <= set(ROW), arrival
            for tls in arrival["handing_back"]:
                assert any(e["data"]["tls_id"] == tls and e["data"]["t_s"] >= arrival["t_s"]
                           for e in sse.of("handback")), (tls, events)
            signal = c.get("/v1/signals/B1").json()
            assert signal["stage"] == "idle" and signal["escorts"] == [] and signal["program"] != "online"
            health = c.get("/healthz").json()
            assert health["safety"] == {"S1": 0, "S2": 0, "S3": 0, "S4": 0, "S5": 0}
            assert health["escorts_active"] == 0
    finally:
        assert server.stop() == 0, server.log.read_text()

    again = Server(tiny_scenario, tmp_path, speed=8.0, audit_db=server.audit_db).start()
    try:
        with again.client() as c:
            audit = c.get("/v1/audit", params={"since": 0}).json()
            middle = audit[len(audit) // 2]["id"]
            later = c.get("/v1/audit", params={"since": middle}).json()
            assert c.get("/v1/emergencies").json() == []  # a new simulation: no escorts
    finally:
        again.stop()
    kinds = [(a["kind"], a["escort_id"], a["tls_id"], a["detail"].get("stage")) for a in audit]
    assert ("dispatch", "amb-1", None, None) in kinds
    for tls in ROW:
        for stage in ("entry", "exit"):
            assert ("decision", "amb-1", tls, stage) in kinds, (tls, stage)
        assert ("handback", "amb-1", tls, None) in kinds
    assert any(("decision", "amb-1", tls, "dwell") in kinds for tls in ROW)
    assert ("arrival", "amb-1", None, None) in kinds
    assert next(a for a in audit if a["kind"] == "arrival")["detail"] == {"handing_back": arrival["handing_back"]}
    ids = [a["id"] for a in audit]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [a["detail"].get("event") for a in audit if a["kind"] == "service"][:3] == ["started", "stopped", "started"]
    assert later and [a["id"] for a in later] == [a["id"] for a in audit if a["id"] > middle]


def test_cancel_mid_route_hands_back_at_once(server: Server) -> None:
    with server.client() as c, EventCollector(server.url, TOKEN) as sse:
        r = c.post("/v1/emergencies", json={**DISPATCH, "id": "fire-1", "vehicle_type": "fire"})
        assert r.status_code == 201, r.text

        def switched() -> bool:
            escort = c.get("/v1/emergencies/fire-1").json()
            return escort["state"] == "en_route" and any(
                j["stage"] in ("entry", "dwell") for j in escort["junctions"] if j["crossed_s"] is None)

        wait_for(switched, what="a signal ahead switched for the escort")
        held = [s["tls_id"] for s in c.get("/v1/signals").json()
                if "fire-1" in s["escorts"] and s["stage"] in ("entry", "dwell")]
        assert held
        t_cancel = c.get("/healthz").json()["t_s"]
        r = c.delete("/v1/emergencies/fire-1")
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "cancelled" and r.json()["cancelled_s"] is not None
        # the next tick already leaves dwell/entry: every held signal is exiting or back
        assert all(j["stage"] in ("idle", "exit") for j in r.json()["junctions"]), r.json()["junctions"]
        wait_for(lambda: all_handed_back(c), timeout_s=30, what="hand-back after cancel")
        t_back = c.get("/healthz").json()["t_s"]
        # the hand-back runs through yellow and red clearance, then the program: seconds, not minutes
        assert t_back - t_cancel < 40, (t_cancel, t_back)
        assert c.get("/v1/emergencies/fire-1").json()["state"] == "cancelled"
        assert c.delete("/v1/emergencies/fire-1").status_code == 409
        wait_for(lambda: sse.of("cancel") and len(sse.of("handback")) >= len(held), what="cancel events")
        assert sse.of("cancel")[0]["data"]["escort"] == "fire-1"
        assert set(sse.of("cancel")[0]["data"]["handing_back"]) >= set(held)
        audit = c.get("/v1/audit", params={"kind": "cancel"}).json()
        assert [(a["escort_id"], a["kind"]) for a in audit] == [("fire-1", "cancel")]
        assert audit[0]["detail"]["reason"] == sse.of("cancel")[0]["data"]["reason"] == "cancelled by request"
        handbacks = {a["tls_id"]: a for a in c.get("/v1/audit", params={"kind": "handback"}).json()}
        assert set(held) <= set(handbacks)
        # why each left the escort's service: the cancel (crossed where it had crossed already)
        assert all(handbacks[tls]["detail"]["reasons"] == {"fire-1": "cancelled by request"} for tls in held), handbacks


def test_cancel_hands_back_only_the_signals_held_for_that_escort_alone(server: Server) -> None:
    # two escorts on the same route, one just behind the other: a signal switched for both stays
    # held for the second when the first is cancelled (not in the cancel's handing_back), and the
    # cancelled escort no longer counts among its holders
    with server.client() as c, EventCollector(server.url, TOKEN) as sse:
        for escort_id in ("amb-1", "amb-2"):
            r = c.post("/v1/emergencies", json={**DISPATCH, "id": escort_id})
            assert r.status_code == 201, r.text

        def shared() -> str | None:
            pending = {e: {j["tls_id"] for j in c.get(f"/v1/emergencies/{e}").json()["junctions"]
                           if j["crossed_s"] is None} for e in ("amb-1", "amb-2")}
            for sig in c.get("/v1/signals").json():
                if ({"amb-1", "amb-2"} <= set(sig["escorts"]) and sig["stage"] in ("entry", "dwell")
                        and sig["tls_id"] in pending["amb-1"] & pending["amb-2"]):
                    return str(sig["tls_id"])
            return None

        tls = wait_for(shared, what="a signal switched for both escorts")
        r = c.delete("/v1/emergencies/amb-1")
        assert r.status_code == 200, r.text
        wait_for(lambda: sse.of("cancel"), what="the cancel event")
        assert tls not in sse.of("cancel")[0]["data"]["handing_back"]

        def signal() -> dict[str, Any]:
            return next(s for s in c.get("/v1/signals").json() if s["tls_id"] == tls)

        wait_for(lambda: "amb-1" not in signal()["escorts"], timeout_s=10, what="amb-1 gone from the holders")
        assert c.get("/v1/emergencies/amb-2").json()["state"] == "en_route"
        wait_for(lambda: c.get("/v1/emergencies/amb-2").json()["state"] == "arrived", what="amb-2 arrives")
        wait_for(lambda: all_handed_back(c), timeout_s=30, what="hand-back after amb-2 arrived")
        # the cancelled escort's view keeps what it had when cancelled: its vehicle drove on and
        # arrived (just ahead of amb-2), but no crossing or arrival after the cancel is reported
        amb1 = c.get("/v1/emergencies/amb-1").json()
        assert amb1["state"] == "cancelled" and amb1["arrived_s"] is None
        assert any(j["crossed_s"] is None for j in amb1["junctions"])
        assert all(j["crossed_s"] is None or j["crossed_s"] <= amb1["cancelled_s"] for j in amb1["junctions"])


def test_an_escort_joining_a_signal_held_for_another_gets_that_stages_event(server: Server) -> None:
    # two GPS-tracked escorts standing before B1, one behind the other: B1 switches for the first,
    # the second joins it as it is (no stage change), and no event said B1 was held for the second
    route = ["left1A1", "A1B1", "B1C1", "C1right1"]
    with server.client() as c, EventCollector(server.url, TOKEN) as sse:
        def dispatch_at(escort_id: str, offset_m: float) -> None:
            r = c.post("/v1/emergencies", json={"route": route, "id": escort_id, "tracking": "external"})
            assert r.status_code == 201, r.text
            r = c.post(f"/v1/emergencies/{escort_id}/positions", json={"edge": "A1B1", "offset_m": offset_m})
            assert r.status_code == 200, r.text

        def b1() -> dict[str, Any]:
            return dict(c.get("/v1/signals/B1").json())

        dispatch_at("lead", 170.0)
        wait_for(lambda: (s := b1())["stage"] == "dwell" and s["escorts"] == ["lead"], what="B1 held for 'lead'")
        dispatch_at("follow", 140.0)
        wait_for(lambda: (s := b1())["escorts"] == ["follow", "lead"] and s["stage"] == "dwell",
                 what="'follow' among B1's holders")
        # its own view says so too (it said armed: the planner counted it served only once its target changed)
        view = c.get("/v1/emergencies/follow").json()
        assert [(j["stage"], j["granted"]) for j in view["junctions"] if j["tls_id"] == "B1"] == [("dwell", True)]
        # (its cancel's event comes after every event of the ticks before: the stream has them all then)
        assert c.delete("/v1/emergencies/follow").status_code == 200
        cancel = wait_for(lambda: [e for e in sse.of("cancel") if e["data"]["escort"] == "follow"], what="the cancel")
        before = [e for e in sse.snapshot() if e["id"] < cancel[0]["id"] and e["data"].get("tls_id") == "B1"]
        joined = [e for e in before if "follow" in e["data"]["escorts"]]
        assert [e["event"] for e in joined] == ["dwell"], before
        assert joined[0]["data"]["escorts"] == ["follow"] and joined[0]["data"]["joined"] is True
        # the escort that held it first gets nothing new: its own stages, none of them twice running
        lead = [e for e in before if "lead" in e["data"]["escorts"]]
        assert [e["event"] for e in lead][:2] == ["armed", "entry"] and lead[-1]["event"] == "dwell", lead
        assert not any(e["data"].get("joined") for e in lead)
        assert all(a["event"] != b["event"] for a, b in itertools.pairwise(lead)), lead
        rows = [a for a in c.get("/v1/audit", params={"kind": "decision"}).json()
                if a["tls_id"] == "B1" and a["detail"].get("joined")]
        assert [(a["escort_id"], a["detail"]["stage"], a["detail"]["escorts"]) for a in rows] == [
            ("follow", "dwell", ["follow"])]
        # and its leaving it, held for 'lead' still: its stream ended at 'dwell' before
        released = wait_for(lambda: [e for e in sse.of("released") if e["data"]["tls_id"] == "B1"],
                            what="B1 released for 'follow'")
        assert [(e["data"]["escorts"], e["data"]["held_for"], e["data"]["stage"]) for e in released] == [
            (["follow"], ["lead"], "dwell")]
        assert released[0]["id"] > cancel[0]["id"]
        rows = [a for a in c.get("/v1/audit", params={"kind": "decision"}).json()
                if a["tls_id"] == "B1" and a["detail"].get("released")]
        assert [(a["escort_id"], a["detail"]["held_for"]) for a in rows] == [("follow", ["lead"])]
        assert c.delete("/v1/emergencies/lead").status_code == 200
        wait_for(lambda: all_handed_back(c), timeout_s=30, what="hand-back after the cancels")
        # the hand-back names 'lead', the escort it was held for then, and gives the reasons of
        # those it names ('follow''s was in its 'released'; it was given here too, unnamed)
        [handback] = wait_for(lambda: [e for e in sse.of("handback") if e["data"]["tls_id"] == "B1"],
                              what="B1's handback event")
        assert handback["data"]["escorts"] == ["lead"], handback
        assert handback["data"]["reasons"] == {"lead": "cancelled by request"}, handback


def test_a_signal_switched_for_one_escort_does_not_name_another_waiting_for_it(server: Server) -> None:
    # F1 (eastbound, priority 3) stands before B1 and B1 switches for it; then T1 (northbound,
    # priority 1) comes: B1 switches for T1 while F1 waits. B1's events named both, so a client
    # following F1 believed it still had green; now F1 gets 'armed' (held for T1), B1's events
    # name T1 alone, and F1 is named again once B1 serves it (after T1's cancel)
    with server.client() as c, EventCollector(server.url, TOKEN) as sse:
        def dispatch(escort_id: str, route: list[str], priority: int) -> None:
            r = c.post("/v1/emergencies", json={"route": route, "id": escort_id, "tracking": "external",
                                                "vehicle_type": "fire", "priority": priority})
            assert r.status_code == 201, r.text
            r = c.post(f"/v1/emergencies/{escort_id}/positions", json={"edge": route[0], "offset_m": 170.0})
            assert r.status_code == 200, r.text

        def b1() -> dict[str, Any]:
            return dict(c.get("/v1/signals/B1").json())

        def own(escort_id: str) -> tuple[str, bool]:
            j = c.get(f"/v1/emergencies/{escort_id}").json()["junctions"][0]
            return j["stage"], j["granted"]

        dispatch("F1", ["A1B1", "B1C1"], 3)
        wait_for(lambda: b1()["escorts"] == ["F1"] and b1()["stage"] in ("entry", "dwell"), what="B1 for F1")
        dispatch("T1", ["B0B1", "B1B2"], 1)
        wait_for(lambda: b1()["escorts"] == ["F1", "T1"] and own("T1")[0] in ("entry", "dwell"), what="B1 for T1")
        assert own("F1") == ("armed", True)
        armed = wait_for(lambda: [e for e in sse.of("armed") if e["data"]["escorts"] == ["F1"]
                                  and e["data"].get("held_for") == ["T1"]], what="F1's armed")
        assert armed[0]["data"]["previous"] in ("entry", "dwell") and armed[0]["data"]["joined"] is False
        assert c.delete("/v1/emergencies/T1").status_code == 200
        cancel = wait_for(lambda: sse.of("cancel"), what="T1's cancel")[0]
        b1_events = [e for e in sse.snapshot() if e["id"] < cancel["id"] and e["data"].get("tls_id") == "B1"]
        after = [e for e in b1_events if e["id"] > armed[0]["id"] and e["event"] in ("entry", "dwell")]
        assert after and all(e["data"]["escorts"] == ["T1"] for e in after), b1_events
        # once T1 is gone, B1 switches back for F1: its own entry and dwell
        wait_for(lambda: any(e["data"]["escorts"] == ["F1"] for e in sse.of("dwell") if e["id"] > cancel["id"]),
                 what="B1 dwelling for F1")
        assert own("F1") == ("dwell", True)
        assert c.delete("/v1/emergencies/F1").status_code == 200
        wait_for(lambda: all_handed_back(c), timeout_s=30, what="hand-back after the cancels")


def test_sigterm_mid_route_hands_every_junction_back(tiny_scenario: Path, tmp_path: Path) -> None:
    server = Server(tiny_scenario, tmp_path, speed=5.0).start()
    try:
        with server.client() as c:
            assert c.post("/v1/emergencies", json={**DISPATCH, "id": "amb-9"}).status_code == 201
            held = wait_for(lambda: c.get("/healthz").json()["preempted"], what="a preempted junction")
    finally:
        assert server.stop() == 0, server.log.read_text()
    with sqlite3.connect(server.audit_db) as db:
        rows = db.execute("SELECT kind, tls_id, detail FROM audit ORDER BY id").fetchall()
    switched = {tls for kind, tls, detail in rows if kind == "decision" and json.loads(detail)["stage"] == "entry"}
    assert set(held) <= switched
    last_entry = {tls: i for i, (kind, tls, detail) in enumerate(rows)
                  if kind == "decision" and json.loads(detail)["stage"] == "entry"}
    for tls, i in last_entry.items():  # every entry is followed by its hand-back
        assert any(kind == "handback" and (t == tls or tls in json.loads(d).get("tls", []))
                   for kind, t, d in rows[i + 1:]), (tls, rows)
    assert ("cancel", None) in {(k, t) for k, t, _ in rows}  # the escort was cancelled by the shutdown
    # its cancel lists the signals still switched for it then (it did not): each entry not handed back
    cancel = next(i for i, (kind, _, _) in enumerate(rows) if kind == "cancel")
    detail = json.loads(rows[cancel][2])
    assert detail["reason"] == "service stopped", detail
    still = {tls for tls, i in last_entry.items()
             if i < cancel and not any(kind == "handback" and t == tls for kind, t, _ in rows[i + 1:cancel])}
    assert still <= set(detail["handing_back"]) <= set(ROW), (still, detail)
    assert json.loads(rows[-1][2]) == {"event": "stopped", "failed": None}


def test_escort_a_vehicle_already_running(server: Server) -> None:
    trips = list(ElementTree.parse(server.workdir / "out" / "inputs" / "background.rou.xml").getroot().iter("trip"))
    with server.client() as c, EventCollector(server.url, TOKEN) as sse:

        def dispatched() -> tuple[ElementTree.Element, dict[str, Any]] | None:
            # a trip that departed a few seconds ago and is still running (one gone already: 409)
            now = c.get("/healthz").json()["t_s"]
            for trip in [t for t in trips if now - 20 <= float(t.get("depart", "0")) <= now - 2][:5]:
                r = c.post("/v1/emergencies", json={"vehicle_id": trip.get("id"), "id": "escort-bg",
                                                    "vehicle_type": "transit"})
                if r.status_code == 409:
                    assert "is not running: it has run already" in r.json()["detail"], r.text
                    continue
                assert r.status_code == 201, r.text
                return trip, r.json()
            return None

        trip, escort = wait_for(dispatched, timeout_s=60, every_s=0.5, what="a running vehicle")
        vid = trip.get("id")
        assert escort["vehicle_id"] == vid and escort["route"][0] == trip.get("from")
        assert escort["route"][-1] == trip.get("to") and escort["junctions"]
        r = c.post("/v1/emergencies", json={"vehicle_id": vid})
        assert r.status_code == 409 and "escorted already (escort 'escort-bg')" in r.json()["detail"]
        done = wait_for(lambda: (x := c.get("/v1/emergencies/escort-bg").json())["state"] == "arrived" and x,
                        what="arrival of the escorted vehicle")
        assert all(j["crossed_s"] is not None for j in done["junctions"])
        r = c.post("/v1/emergencies", json={"vehicle_id": vid})
        assert r.status_code == 409 and r.json()["detail"] == (
            f"vehicle_id: vehicle '{vid}' was escorted already (escort 'escort-bg', arrived): a vehicle is escorted "
            "at most once a run")
        # it departed before it was escorted: its own departure, not the dispatch's next step
        assert float(trip.get("depart", "0")) <= done["departed_s"] <= done["dispatched_s"]
        wait_for(lambda: all_handed_back(c), timeout_s=30, what="every signal handed back")
        # its 'departed' event says so, and comes, as every event, in time order (its t_s was that
        # departure, earlier than the 'dispatch' event before it)
        wait_for(lambda: any(e["data"].get("escort") == "escort-bg" for e in sse.of("arrival")),
                 what="the arrival event")
        ours = [e for e in sse.snapshot() if e["data"].get("escort") == "escort-bg"]
        assert [e["event"] for e in ours][:2] == ["dispatch", "departed"], ours[:3]
        assert ours[1]["data"]["departed_s"] == done["departed_s"]
        assert ours[1]["data"]["t_s"] >= ours[0]["data"]["t_s"] == done["dispatched_s"]
        times = [e["data"]["t_s"] for e in sse.snapshot() if "t_s" in e["data"]]
        assert times == sorted(times)


def test_escort_a_vehicle_of_the_route_files_before_it_departs(server: Server) -> None:
    # dispatched by its vehicle_id ahead of its departure, it is escorted from it (a vehicle of the
    # route files was refused until it ran)
    trips = list(ElementTree.parse(server.workdir / "out" / "inputs" / "background.rou.xml").getroot().iter("trip"))
    with server.client() as c:
        now = c.get("/healthz").json()["t_s"]
        trip = next(t for t in trips if float(t.get("depart", "0")) > now + 20)
        vid, depart = trip.get("id"), float(trip.get("depart", "0"))
        r = c.post("/v1/emergencies", json={"vehicle_id": vid, "id": "early"})
        assert r.status_code == 201, r.text
        escort = r.json()
        assert escort["state"] == "dispatched" and escort["departed_s"] is None
        # no ETA before it departs (predicted as if it set off now, they slid a second a tick)
        assert escort["junctions"] and all(j["eta_s"] is None for j in escort["junctions"])
        r = c.post("/v1/emergencies/early/route", json={"destination": {"edge": "C1right1"}})
        assert r.status_code == 409 and "re-route it once it runs" in r.json()["detail"], r.text
        assert escort["route"][0] == trip.get("from") and escort["route"][-1] == trip.get("to")
        done = wait_for(lambda: (x := c.get("/v1/emergencies/early").json())["state"] == "arrived" and x,
                        timeout_s=90, what="arrival of the escorted vehicle")
        assert done["departed_s"] >= depart  # its own departure, after the dispatch
        # (every trip of the tiny grid crosses a signal: a fringe edge leads to one)
        assert done["junctions"] and all(j["crossed_s"] is not None and j["crossed_s"] > depart
                                         for j in done["junctions"])
        row = next(a for a in c.get("/v1/audit", params={"kind": "dispatch"}).json() if a["escort_id"] == "early")
        assert row["detail"]["departs_s"] == depart
        # one that has run already is refused, saying so
        gone = trips[0]  # (the first: arrived once the simulation is 250 s past its departure)
        wait_for(lambda: c.get("/healthz").json()["t_s"] > float(gone.get("depart", "0")) + 250, timeout_s=60,
                 what="the first trip to have run")
        r = c.post("/v1/emergencies", json={"vehicle_id": gone.get("id")})
        assert r.status_code == 409 and "is not running: it has run already" in r.json()["detail"], r.text
        wait_for(lambda: all_handed_back(c), timeout_s=30, what="every signal handed back")


def test_a_running_vehicles_junctions_behind_it_have_no_crossing_time(server: Server) -> None:
    # they were stamped with the first tick after the dispatch; and its 'departed' event carried
    # the dispatch's time, not the vehicle's departure
    trips = list(ElementTree.parse(server.workdir / "out" / "inputs" / "background.rou.xml").getroot().iter("trip"))
    with server.client() as c:
        for n in range(40):
            now = c.get("/healthz").json()["t_s"]
            running = [t for t in trips if now - 40 <= float(t.get("depart", "0")) <= now - 8]
            tried: list[int] = []
            for trip in running[:8]:
                r = c.post("/v1/emergencies", json={"vehicle_id": trip.get("id"), "id": f"mid-{n}-{len(tried)}"})
                tried.append(r.status_code)
                if r.status_code != 201:
                    continue
                escort_id = r.json()["id"]

                def placed(e: str = escort_id) -> dict[str, Any] | None:
                    x: dict[str, Any] = c.get(f"/v1/emergencies/{e}").json()
                    return x if x["position"] else None

                esc = wait_for(placed, timeout_s=10, what="a position")
                behind = [j for j in esc["junctions"] if j["distance_m"] < esc["position"]["route_distance_m"] - 5]
                c.delete(f"/v1/emergencies/{esc['id']}")
                if behind:
                    assert all(j["crossed_s"] is None for j in behind), behind
                    return
            time.sleep(0.5)
    pytest.fail("no running vehicle with a signal behind it was found to escort")


def test_end_stops_stepping_and_keeps_serving(tiny_scenario: Path, tmp_path: Path) -> None:
    server = Server(tiny_scenario, tmp_path, speed=20.0, extra=("--end", "40")).start()
    try:
        with server.client() as c:
            health = wait_for(lambda: (h := c.get("/healthz").json())["status"] == "ended" and h, timeout_s=30,
                              what="the end")
            assert health["t_s"] == 40.0
            r = c.post("/v1/emergencies", json=DISPATCH)
            assert r.status_code == 409 and r.json()["detail"] == "the simulation ended at 40 s: no new escorts"
            assert c.get("/v1/emergencies").json() == [] and c.get("/healthz").json()["t_s"] == 40.0
    finally:
        assert server.stop() == 0
