"""The live service's parts that need no simulation: audit log, event bus, metrics text, route
positions of external fixes, geo-reference detection."""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

import pytest

from controller.core.corridor import build_corridor
from controller.errors import GreenwaveError
from controller.runtime.audit import AuditLog
from controller.runtime.events import EventBus
from controller.runtime.metrics import Metrics
from controller.runtime.service import DEAD_RECKONING_S, _locate, dead_reckoned_m, stage_steps
from controller.runtime.setup import id_in_routes, route_file_ids
from controller.sim.geo import is_geo_referenced
from tests.unit.test_preemption_controller import MAIN, NET


def test_audit_log_survives_reopening_and_filters(tmp_path: Path) -> None:
    db = tmp_path / "a" / "audit.sqlite"
    log = AuditLog(db)
    first = log.record("dispatch", t_s=5.0, escort_id="e1", route=["a", "b"])
    log.record("decision", t_s=6.0, escort_id="e1", tls_id="T1", stage="entry")
    log.close()
    log = AuditLog(db)  # a restart
    third = log.record("handback", t_s=9.0, tls_id="T1")
    rows = log.since(0)
    assert [r.kind for r in rows] == ["dispatch", "decision", "handback"] and rows[0].id == first
    assert rows[0].detail == {"route": ["a", "b"]} and rows[1].tls_id == "T1" and rows[1].t_s == 6.0
    assert [r.id for r in log.since(first)] == [first + 1, third]
    assert [r.kind for r in log.since(0, kind="decision")] == ["decision"]
    assert len(log.since(0, limit=2)) == 2
    assert rows[0].at.endswith("+00:00")
    with pytest.raises(ValueError, match="unknown audit kind"):
        log.record("gossip")
    log.close()
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT COUNT(*) FROM audit").fetchone() == (3,)


def test_audit_log_highest_default_id_number(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.sqlite")
    assert log.highest_number("escort-") == 0
    for escort_id in ("escort-3", "escort-12", "escort-x", "escort-40b", "escort-²", "amb-99"):
        log.record("dispatch", t_s=1.0, escort_id=escort_id)
    log.record("decision", t_s=2.0, escort_id="escort-40", stage="entry")  # not a dispatch
    log.record("rejected", t_s=2.0, escort_id="escort-50")
    assert log.highest_number("escort-") == 12
    log.close()
    log = AuditLog(tmp_path / "audit.sqlite")
    assert log.highest_number("escort-") == 12  # after a restart
    # a long one of a client's is counted on from as long as the next id fits in 64 characters:
    # 19 digits were skipped, and the default id after it was given again after a restart
    log.record("dispatch", t_s=3.0, escort_id="escort-1" + "0" * 18)
    assert log.highest_number("escort-") == 10**18
    log.record("dispatch", t_s=3.0, escort_id="escort-" + "9" * 57)  # 64 characters; 10**57 would be 65
    log.record("dispatch", t_s=3.0, escort_id="escort-" + "8" * 57)
    assert log.highest_number("escort-") == int("8" * 57)


def test_audit_log_on_an_unwritable_path_is_a_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(GreenwaveError, match="audit database"):
        AuditLog(blocker / "audit.sqlite")


def test_event_bus_ids_and_replay() -> None:
    bus = EventBus(keep=3)
    assert bus.last_id == 0 and bus.since(0) == []
    for i in range(5):
        bus.publish("eta", n=i)
    assert bus.last_id == 5
    assert [e.id for e in bus.since(0)] == [3, 4, 5]  # only the last 3 are kept
    assert [e.data["n"] for e in bus.since(4)] == [4] and bus.since(5) == []
    # what a client that far behind lost (the stream says so with a 'gap' event)
    assert bus.since_counting_lost(0) == (2, bus.since(0)) and bus.since_counting_lost(1)[0] == 1
    assert bus.since_counting_lost(2) == (0, bus.since(2)) and bus.since_counting_lost(5) == (0, [])
    # ids start from the service's start time: a client of an earlier run lost nothing of this one's
    later = EventBus(keep=3, first_id=100)
    later.publish("eta", n=0)
    assert later.since_counting_lost(42)[0] == 0
    for i in range(4):
        later.publish("eta", n=i + 1)
    assert later.since_counting_lost(42)[0] == 2


def test_metrics_text_format() -> None:
    m = Metrics()
    for ms in (0.3, 4.0, 120.0):
        m.tick(ms, budget_ms=100.0)
    m.request("POST", "/v1/emergencies", 201)
    m.request("POST", "/v1/emergencies", 201)
    m.request("GET", "/v1/emergencies", 201)
    m.request("BREW", '/odd"path', 404)  # (a method of the client's own making: one label value for all)
    text = m.render({"greenwave_escorts_active": ("Escorts.", 2.0)})
    lines = text.splitlines()
    assert "greenwave_ticks_total 3" in lines and "greenwave_ticks_over_budget_total 1" in lines
    assert 'greenwave_tick_latency_ms_bucket{le="0.5"} 1' in lines
    assert 'greenwave_tick_latency_ms_bucket{le="5"} 2' in lines
    assert 'greenwave_tick_latency_ms_bucket{le="+Inf"} 3' in lines and "greenwave_tick_latency_ms_count 3" in lines
    assert 'greenwave_http_requests_total{route="/v1/emergencies",method="POST",status="201"} 2' in lines
    assert 'greenwave_http_requests_total{route="/v1/emergencies",method="GET",status="201"} 1' in lines
    assert 'greenwave_http_requests_total{route="/odd\\"path",method="other",status="404"} 1' in lines
    assert "# TYPE greenwave_escorts_active gauge" in lines and "greenwave_escorts_active 2" in lines
    assert text.endswith("\n")


def test_stage_steps_report_every_stage_a_tick_passed() -> None:
    # an already-green approach: armed, entry and dwell in one tick; the entry is reported too
    assert stage_steps("armed", "dwell") == [("armed", "entry"), ("entry", "dwell")]
    assert stage_steps("idle", "entry") == [("idle", "armed"), ("armed", "entry")]
    assert stage_steps("armed", "entry") == [("armed", "entry")]
    # an exit taken back where the target still shows: the entry is reported too
    assert stage_steps("exit", "dwell") == [("exit", "entry"), ("entry", "dwell")]
    assert stage_steps("exit", "entry") == [("exit", "entry")]
    # backward or sideways changes are reported as they are
    assert stage_steps("dwell", "entry") == [("dwell", "entry")]
    assert stage_steps("dwell", "exit") == [("dwell", "exit")]
    assert stage_steps("exit", "idle") == [("exit", "idle")]
    assert stage_steps("armed", "idle") == [("armed", "idle")]


def test_locate_a_route_position() -> None:
    c = build_corridor(NET, MAIN)  # e0 500 m, e1 200 m, e2 100 m, crossings of zero length
    assert _locate(c, 0.0) == (0, 0.0)
    assert _locate(c, 499.0) == (0, 499.0)
    assert _locate(c, 650.0) == (1, 150.0)
    assert _locate(c, 800.0) == (2, 100.0)
    assert _locate(c, 900.0) == (2, 100.0)  # past the end: the end


def test_a_fix_is_carried_forward_but_never_past_a_stop_line_or_to_the_end() -> None:
    c = build_corridor(NET, MAIN)  # e0 500 m, e1 200 m, e2 100 m: stop lines at 500 and 700 m of 800
    assert [j.distance_m for j in c.junctions] == [500.0, 700.0] and c.length_m == 800.0
    assert dead_reckoned_m(c, 100.0, 12.0, 10.0) == 220.0  # at its speed
    assert dead_reckoned_m(c, 100.0, 12.0, 3 * DEAD_RECKONING_S) == 100.0 + 12.0 * DEAD_RECKONING_S
    # 129 m before the stop line, 18 s at 12 m/s: it would be past it; it waits short of it
    # until a fix shows it crossed (a guess must not release the signal)
    assert dead_reckoned_m(c, 371.0, 12.0, 18.0) == 499.5
    assert dead_reckoned_m(c, 510.0, 12.0, 18.0) == 699.5  # from past one, up to the next
    assert dead_reckoned_m(c, 710.0, 30.0, 30.0) == 794.5  # never within 5 m of the end (arrived)
    # standing still, or a fix already past where the guess would stop: where the fix is
    assert dead_reckoned_m(c, 300.0, 0.0, 20.0) == 300.0
    assert dead_reckoned_m(c, 799.0, 10.0, 5.0) == 799.0
    # a fix 5 m past the stop line at 500 m is within a fix's error of it (the farthest fix, 505 m,
    # less 50 m): held short of it until a fix shows it 50 m past (a fix 45 m back, which the
    # plausibility check accepts, had put the vehicle before a signal already handed back)
    assert dead_reckoned_m(c, 505.0, 12.0, 3.0, confirmed_m=455.0) == 499.5
    assert dead_reckoned_m(c, 460.0, 12.0, 3.0, confirmed_m=455.0) == 496.0  # the fix 45 m back, carried on
    assert dead_reckoned_m(c, 551.0, 12.0, 10.0, confirmed_m=501.0) == 671.0  # 51 m past: crossed, on to 700


def test_geo_reference_is_read_from_the_network(tmp_path: Path) -> None:
    plain = tmp_path / "plain.net.xml"
    plain.write_text('<net>\n    <location netOffset="0.00,0.00" projParameter="!"/>\n</net>\n')
    geo = tmp_path / "geo.net.xml"
    geo.write_text('<net>\n    <location netOffset="1,2" projParameter="+proj=utm +zone=32"/>\n</net>\n')
    assert not is_geo_referenced(plain) and is_geo_referenced(geo)
    packed = tmp_path / "geo.net.xml.gz"  # as the bundled NDS city network
    packed.write_bytes(gzip.compress(geo.read_bytes()))
    assert is_geo_referenced(packed)
    assert not is_geo_referenced(Path(__file__).resolve().parents[2] / "networks" / "grid5" / "grid5.net.xml")


def test_ids_in_route_files_vehicles_trips_and_flows(tmp_path: Path) -> None:
    routes = tmp_path / "r.rou.xml"
    routes.write_text('<routes>\n  <vehicle id="car1" depart="0"/>\n  <trip id="t.7" depart="5" from="a" to="b"/>\n'
                      '  <flow id="buses" begin="0" end="100" number="3"/>\n</routes>\n')
    packed = tmp_path / "p.rou.xml.gz"
    packed.write_bytes(gzip.compress(b'<routes><trip id="late" depart="900"/></routes>'))
    ids = route_file_ids([routes, packed, tmp_path / "missing.rou.xml"])
    assert id_in_routes(ids, "car1") == (routes, "a vehicle 'car1'")
    assert id_in_routes(ids, "t.7") == (routes, "a trip 't.7'")
    assert id_in_routes(ids, "late") == (packed, "a trip 'late'")
    assert id_in_routes(ids, "buses.2") == (routes, "flow 'buses' (its vehicle 'buses.2')")  # <flow id>.<n>
    assert id_in_routes(ids, "t.8") is None and id_in_routes(ids, "buses.x") is None
    assert id_in_routes(ids, "escort-1") is None


def test_audit_rows_holding_a_lone_surrogate_read_back_encodable(tmp_path: Path) -> None:
    # a client's text with a lone surrogate (kept escaped in the row's JSON) made every read of
    # the log's page holding it fail to serialize, after restarts too
    log = AuditLog(tmp_path / "a.sqlite")
    log.record("rejected", t_s=1.0, path="/v1/emergencies", detail="edge '\ud800' is not in network",
               body={"route": ["left0A0", "\udfff"]})
    log.close()
    [entry] = AuditLog(tmp_path / "a.sqlite").since(0)
    assert entry.detail == {"path": "/v1/emergencies", "detail": "edge '\\ud800' is not in network",
                            "body": {"route": ["left0A0", "\\udfff"]}}
    json.dumps(entry.detail, ensure_ascii=False).encode("utf-8")  # encodable


def test_an_event_is_encoded_once_for_every_client() -> None:
    bus = EventBus(first_id=7)
    e = bus.publish("eta", escort="x", junctions=[{"tls_id": "T1", "eta_s": 12.5}])
    assert e.frame == 'id: 7\nevent: eta\ndata: {"escort": "x", "junctions": [{"tls_id": "T1", "eta_s": 12.5}]}\n\n'
    assert bus.since(6)[0].frame is e.frame  # the same text, not encoded again


def test_ids_in_route_files_are_read_as_xml(tmp_path: Path) -> None:
    # a line-by-line search took a commented-out vehicle for one and missed a tag split over lines
    routes = tmp_path / "r.rou.xml"
    routes.write_text('<routes>\n<!-- <vehicle id="amb" depart="0"/> -->\n<vehicle\n    id="split" depart="5">'
                      '<route edges="a b"/></vehicle>\n</routes>\n', encoding="utf-8")
    broken = tmp_path / "b.rou.xml"
    broken.write_text('<routes><trip id="ok" depart="0" from="a" to="b"/><vehicle id=', encoding="utf-8")
    ids = route_file_ids([routes, broken])
    assert ids == {"split": ("vehicle", routes), "ok": ("trip", broken)}


class _Planner:
    """A planner's view of one signal as the service reads it: stage, holders, served."""

    def __init__(self) -> None:
        self.junctions = {"B1": None}
        self.now: tuple[str, tuple[str, ...], tuple[str, ...]] = ("idle", (), ())
        self.reasons = {"f": "crossed", "v": "max presence"}
        self.last_release_reasons: dict[str, str] = {}  # (no escort re-routed or cancelled here)

    def stage(self, tls: str) -> str:
        return self.now[0]

    def holders(self, tls: str) -> tuple[str, ...]:
        return self.now[1]

    def served(self, tls: str) -> tuple[str, ...]:
        return self.now[2]

    def exit_reasons(self, tls: str) -> dict[str, str]:
        return self.reasons

    def released_reasons(self, tls: str, ev_ids: list[str]) -> dict[str, str]:
        return {k: self.last_release_reasons[k] for k in ev_ids if k in self.last_release_reasons}


def test_a_hand_back_names_an_escort_cancelled_during_its_exit(tmp_path: Path) -> None:
    # cancelled while the signal was in its exit: no longer a holder there, and the hand-back
    # named no escort at all
    from types import SimpleNamespace

    from controller.runtime.service import SimService

    planner = _Planner()
    planner.reasons = {"x": "cancelled by request"}
    service = SimService.__new__(SimService)
    service._controller = SimpleNamespace(planner=planner)  # type: ignore[assignment]
    service._stages, service._by_key = {}, {"x": "amb-x"}
    service.events, service.audit = EventBus(), AuditLog(tmp_path / "audit.sqlite")
    for t, now in enumerate([("dwell", ("x",), ("x",)), ("exit", (), ()), ("idle", (), ())]):
        planner.now = now
        service._track_stages(float(t))
    handback = [e.data for e in service.events.since(0) if e.type == "handback"]
    assert handback == [{"tls_id": "B1", "t_s": 2.0, "stage": "idle", "previous": "exit", "escorts": ["amb-x"],
                         "reasons": {"amb-x": "cancelled by request"}}]
    assert [r.escort_id for r in service.audit.since(0, kind="handback")] == ["amb-x"]


def test_stage_events_name_the_escorts_served_and_tell_a_waiting_one_it_is_armed(tmp_path: Path) -> None:
    # the service's events for a sequence of (stage, holders, served) of one signal, no SUMO
    from types import SimpleNamespace

    from controller.runtime.service import SimService

    planner = _Planner()
    service = SimService.__new__(SimService)
    service._controller = SimpleNamespace(planner=planner)  # type: ignore[assignment]
    service._stages, service._by_key = {}, {}
    service.events, service.audit = EventBus(), AuditLog(tmp_path / "audit.sqlite")
    ticks = [("armed", ("f",), ("f",)),  # f asks
             ("entry", ("f",), ("f",)),
             ("entry", ("f", "t"), ("t",)),  # t (a higher class) comes: served first, f waits
             ("dwell", ("f", "t"), ("t",)),
             ("dwell", ("f", "t", "u"), ("t", "u")),  # u joins, its movement green too
             ("dwell", ("f", "t", "u", "v"), ("t", "u")),  # v joins and waits
             ("entry", ("f", "v"), ("f", "v")),  # t and u crossed: the signal switches for f and v
             ("dwell", ("f", "v"), ("f", "v")),
             ("exit", ("f", "v"), ("f", "v")),
             ("idle", (), ()),
             ("armed", ("a",), ("a",)),
             ("armed", ("a", "b"), ("a", "b")),  # b joins an armed signal: one armed event
             ("dwell", ("a", "b"), ("a",)),  # switched for a (armed -> entry -> dwell in one tick)
             ("dwell", ("a", "b"), ("a", "b")),  # b served by the same state from now
             ("dwell", ("a", "b", "c"), ("a", "b")),  # c waits
             ("idle", (), ())]  # handed back with no exit: every escort it was held for named
    seen = []
    for t, now in enumerate(ticks):
        planner.now = now
        before = service.events.last_id
        service._track_stages(float(t))
        seen.append([(e.type, e.data["escorts"], e.data.get("previous"), e.data.get("joined"), e.data.get("held_for"))
                     for e in service.events.since(before)])
    assert seen == [
        [("armed", ["f"], "idle", None, None)],
        [("entry", ["f"], "armed", None, None)],
        [("armed", ["f"], "entry", False, ["t"]), ("entry", ["t"], "idle", True, None)],
        [("dwell", ["t"], "entry", None, None)],
        [("dwell", ["u"], "idle", True, None)],
        [("armed", ["v"], "idle", True, ["t", "u"])],
        [("released", ["t", "u"], None, None, ["f", "v"]), ("entry", ["f", "v"], "dwell", None, None)],
        [("dwell", ["f", "v"], "entry", None, None)],
        [("exit", ["f", "v"], "dwell", None, None)],
        [("handback", ["f", "v"], "exit", None, None)],
        [("armed", ["a"], "idle", None, None)],
        [("armed", ["b"], "idle", True, None)],
        [("entry", ["a"], "armed", None, None), ("dwell", ["a"], "entry", None, None)],
        [("dwell", ["b"], "armed", False, None)],
        [("armed", ["c"], "idle", True, ["a", "b"])],
        [("handback", ["a", "b", "c"], "dwell", None, None)],
    ]
    # an exit and a hand-back say why the signal left each escort's service (the planner's reasons),
    # for the escorts they name (the fake planner's are f's and v's: none for a, b and c)
    reasons = [e.data.get("reasons") for e in service.events.since(0) if e.type in ("exit", "handback")]
    assert reasons == [{"f": "crossed", "v": "max presence"}] * 2 + [{}]
    # a decision row for each of an escort's own stages (the released row names those released)
    rows = [(r.escort_id, r.detail.get("stage")) for r in service.audit.since(0, kind="decision")]
    assert ("f", "armed") in rows[2:4] and rows.count(("v", "armed")) == 1


def test_refusals_for_the_token_are_written_once_a_minute_with_how_many_more(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import controller.api.app as app_module

    rows: list[dict[str, object]] = []
    service = SimpleNamespace(state=SimpleNamespace(t_s=5.0),
                              audit=SimpleNamespace(record=lambda kind, **kw: rows.append({"kind": kind, **kw})))
    clock = [1000.0]
    monkeypatch.setattr("controller.api.app.time.monotonic", lambda: clock[0])
    rejections = app_module.Rejections(service)  # type: ignore[arg-type]
    for _ in range(3):
        rejections.record("GET", "/v1/emergencies", 401, "missing bearer token")
    rejections.record("POST", "/v1/emergencies/x", 409, "conflict")  # (others: every one)
    rejections.record("GET", "/healthz", 401, "not /v1")  # (not an API request: none)
    clock[0] += 61.0
    rejections.record("GET", "/v1/audit", 403, "wrong bearer token")
    assert [(r["status"], r["detail"]) for r in rows] == [
        (401, "missing bearer token"), (409, "conflict"),
        (403, "wrong bearer token (2 more requests refused for their token since the last such row)")]
    assert rows[1]["escort_id"] == "x"
    # those after the last row are written at the stop (they reached only /metrics), once
    rows.clear()
    rejections.flush()
    assert rows == []
    for path in ("/v1/a", "/v1/b", "/v1/c"):
        rejections.record("GET", path, 401, "missing bearer token")
    rejections.flush()
    rejections.flush()
    assert [(r["path"], r["detail"]) for r in rows] == [
        ("/v1/c", "missing bearer token (2 more requests refused for their token since the last such row)")]


def test_a_token_is_read_as_fastapis_bearer_scheme_reads_it() -> None:
    from controller.api.app import token_refusal

    assert token_refusal(b"Bearer s3cret", b"s3cret") is None
    assert token_refusal(b"bearer s3cret", b"s3cret") is None
    assert token_refusal(None, b"s3cret") == (401, "missing bearer token (Authorization: Bearer <token>)")
    assert token_refusal(b"Basic s3cret", b"s3cret") == (401, "missing bearer token (Authorization: Bearer <token>)")
    assert token_refusal(b"Bearer", b"s3cret") == (401, "missing bearer token (Authorization: Bearer <token>)")
    assert token_refusal(b"Bearer s3cre", b"s3cret") == (403, "wrong bearer token")
    assert token_refusal(b"Bearer s3cret ", b"s3cret") == (403, "wrong bearer token")
