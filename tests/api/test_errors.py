"""Auth and bad requests against the real server: 401, 403, 404, 409, 413, 422, each answered
as JSON that names the field or id at fault, never a traceback; rejected requests are audited."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import TOKEN, Server, wait_for

pytestmark = pytest.mark.sumo


@pytest.fixture(scope="module")
def srv(tiny_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tiny_scenario, tmp_path_factory.mktemp("errors"), speed=20.0).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def c(srv: Server) -> Iterator[httpx.Client]:
    with srv.client() as client:
        yield client


def _err(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert set(body) >= {"error", "detail"} and "Traceback" not in r.text
    return body


def test_401_without_a_token_on_every_v1_route(srv: Server) -> None:
    with srv.client(token=None) as anon:
        for method, path in (("GET", "/v1/emergencies"), ("POST", "/v1/emergencies"), ("GET", "/v1/signals/A1"),
                             ("DELETE", "/v1/emergencies/x"), ("GET", "/v1/audit"), ("GET", "/v1/events")):
            r = anon.request(method, path)
            body = _err(r, 401)
            assert "bearer token" in body["detail"] and r.headers["www-authenticate"] == "Bearer"
        r = anon.get("/v1/emergencies", headers={"Authorization": f"Basic {TOKEN}"})
        _err(r, 401)
        assert anon.get("/healthz").status_code == 200 and anon.get("/metrics").status_code == 200


def test_403_with_a_wrong_token(srv: Server) -> None:
    for wrong in ("nope", TOKEN + "x", TOKEN[:-1]):
        with srv.client(token=wrong) as bad:
            body = _err(bad.post("/v1/emergencies", json={"route": ["A1B1"]}), 403)
            assert body["detail"] == "wrong bearer token"
    with srv.client() as c:  # nothing was dispatched by them
        assert c.get("/v1/emergencies").json() == []


def test_the_token_is_checked_before_the_body_and_refusals_for_it_do_not_grow_the_audit(srv: Server) -> None:
    # without a token, a body of the wrong type got 415 and a large one 413 (telling an
    # unauthenticated client about the API), and every refused request wrote an audit row: 1,000
    # requests, 1,000 rows, from anyone who could reach the port
    with srv.client() as c:
        before = len(c.get("/v1/audit", params={"kind": "rejected", "limit": 10000}).json())
    with srv.client(token=None) as anon:
        r = anon.post("/v1/emergencies", content=b"a=1", headers={"content-type": "application/x-www-form-urlencoded"})
        assert "bearer token" in _err(r, 401)["detail"]
        assert "bearer token" in _err(anon.post("/v1/emergencies", content=b"x" * 70_000), 401)["detail"]
        for _ in range(50):
            assert anon.get("/v1/emergencies").status_code == 401
        assert anon.put("/v1/emergencies", json={}).status_code == 401
    with srv.client(token="nope") as bad:
        assert _err(bad.post("/v1/emergencies", content=b"x" * 70_000), 403)["detail"] == "wrong bearer token"
    with srv.client() as c:
        rows = c.get("/v1/audit", params={"kind": "rejected", "limit": 10000}).json()[before:]
        # (at most one a minute: none where an earlier test's refusal was written within it)
        assert len(rows) <= 1 and all(r["detail"]["status"] in (401, 403) for r in rows), rows
        metrics = c.get("/metrics").text
        # (a method the route does not take is counted under the route, not as unmatched)
        assert 'greenwave_http_requests_total{route="/v1/emergencies",method="PUT",status="401"}' in metrics
        assert re.search(r'greenwave_http_requests_total\{route="/v1/emergencies",method="GET",status="401"\} '
                         r"([5-9]\d|\d{3,})", metrics), metrics


def test_404_names_the_unknown_id(c: httpx.Client) -> None:
    assert "unknown escort 'ghost-7'" in _err(c.get("/v1/emergencies/ghost-7"), 404)["detail"]
    assert "unknown escort 'ghost-8'" in _err(c.delete("/v1/emergencies/ghost-8"), 404)["detail"]
    r = c.post("/v1/emergencies/ghost-9/positions", json={"edge": "A1B1", "offset_m": 3})
    assert "unknown escort 'ghost-9'" in _err(r, 404)["detail"]
    assert "unknown signal 'Z9'" in _err(c.get("/v1/signals/Z9"), 404)["detail"]
    assert "/v1/nothing" in _err(c.get("/v1/nothing"), 404)["detail"]
    unwatched = c.get("/v1/signals/C0").json()  # a signal of the network not on any route
    assert unwatched["watched"] is False and unwatched["stage"] == "idle"


def test_413_for_a_large_body(c: httpx.Client) -> None:
    big = {"route": ["A1B1"] * 12000}  # about 84 KB
    body = _err(c.post("/v1/emergencies", json=big), 413)
    assert "65536 bytes" in body["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it arrives
        yield b'{"route": ['
        for _ in range(12000):
            yield b'"A1B1",'
        yield b'"A1B1"]}'

    _err(c.post("/v1/emergencies", content=chunks(), headers={"content-type": "application/json"}), 413)
    rejected = c.get("/v1/audit", params={"kind": "rejected"}).json()
    assert any(a["detail"]["status"] == 413 and a["detail"]["path"] == "/v1/emergencies" for a in rejected)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"origin": {"edge": "nowhere"}, "destination": {"edge": "C1right1"}}, "origin: unknown edge 'nowhere'"),
        ({"origin": {"edge": "left1A1"}, "destination": {"edge": "void9"}}, "destination: unknown edge 'void9'"),
        ({"origin": {"edge": "C1right1"}, "destination": {"edge": "left1A1"}},
         "no route from edge 'C1right1' to edge 'left1A1'"),
        ({"route": ["left1A1", "B1C1"]}, "'left1A1'"),
        ({"route": ["left1A1", "bogus"]}, "'bogus'"),
        ({"origin": {"edge": "left1A1"}}, "'destination' is missing"),
        ({"origin": {"lon": 11.4, "lat": 48.7}, "destination": {"edge": "C1right1"}}, "no geo-reference"),
        # (the path as the client wrote it: pydantic's tag of the kind of place is left out)
        ({"origin": {"lon": 200, "lat": 48.7}, "destination": {"edge": "C1right1"}}, "origin.lon: Input should be"),
        ({"origin": {"edge": 5}, "destination": {"edge": "C1right1"}}, "origin.edge: Input should be a valid string"),
        ({"origin": "A1B1", "destination": {"edge": "C1right1"}}, "origin: Input should be"),  # (was origin.geo)
        ({"route": ["A1B1"], "priority": 0}, "priority"),
        ({"route": ["A1B1"], "priority": "1"}, "priority: Input should be a valid integer"),  # (was taken as 1)
        ({"route": ["A1B1"], "priority": True}, "priority: Input should be a valid integer"),
        ({"route": ["A1B1"], "vehicle_type": "tank"}, "vehicle_type"),
        ({"route": ["A1B1"], "id": "bad id!"}, "id"),
        ({"route": ["A1B1"], "id": ".."}, "id: String should match pattern"),  # (a client resolves it away in a URL)
        ({"route": ["A1B1"], "id": "."}, "id: String should match pattern"),
        ({"route": ["A1B1"], "colour": "red"}, "colour"),
        ({"route": ["A1B1"], "vehicle_id": "v1"}, "give exactly one of"),
        ({"vehicle_id": "not-running"}, "vehicle_id: no vehicle 'not-running'"),
        ({}, "give exactly one of"),
        # round and round a block, 2,000 signal crossings: every tick took 160 ms (a 200 cap)
        ({"route": ["left1A1", *["A1B1", "B1B0", "B0A0", "A0A1"] * 60]}, "route: crosses signals 240 times"),
    ],
)
def test_422_names_the_field_or_id(c: httpx.Client, body: dict[str, Any], expected: str) -> None:
    err = _err(c.post("/v1/emergencies", json=body), 422)
    assert expected in err["detail"], err


def test_422_for_malformed_json_and_positions_off_the_route(c: httpx.Client) -> None:
    err = _err(c.post("/v1/emergencies", content=b"{not json", headers={"content-type": "application/json"}), 422)
    assert err["detail"].startswith("body: not valid JSON at character 2"), err
    assert err["errors"] == [{"field": "body", "message": err["detail"][len("body: "):]}]
    # (dispatched more than 10 s into the run: a fix dated 0 is then too early, below)
    wait_for(lambda: c.get("/healthz").json()["t_s"] >= 15.0, what="15 simulated s")
    r = c.post("/v1/emergencies", json={"route": ["left1A1", "A1B1", "B1C1"], "id": "ext-1", "tracking": "external"})
    assert r.status_code == 201, r.text
    assert "edge: 'C1right1' is not on the route of escort 'ext-1'" in _err(
        c.post("/v1/emergencies/ext-1/positions", json={"edge": "C1right1", "offset_m": 1}), 422)["detail"]
    assert "offset_m: 900 m is beyond the end of edge 'A1B1'" in _err(
        c.post("/v1/emergencies/ext-1/positions", json={"edge": "A1B1", "offset_m": 900}), 422)["detail"]
    assert "no geo-reference" in _err(
        c.post("/v1/emergencies/ext-1/positions", json={"lon": 11.0, "lat": 48.0}), 422)["detail"]
    assert "timestamp" in _err(
        c.post("/v1/emergencies/ext-1/positions", json={"edge": "A1B1", "offset_m": 1, "timestamp": 1e8}),
        422)["detail"]
    # a first fix dated before the dispatch (it cancelled the escort on the next tick, or let the
    # next fix jump kilometres)
    assert "s before escort 'ext-1' was dispatched" in _err(
        c.post("/v1/emergencies/ext-1/positions", json={"edge": "left1A1", "offset_m": 1, "timestamp": 0.0}),
        422)["detail"]
    assert "'offset_m' is missing" in _err(  # (it was taken as 0: every fix at an edge's start)
        c.post("/v1/emergencies/ext-1/positions", json={"edge": "A1B1"}), 422)["detail"]
    assert "'lat' is missing" in _err(
        c.post("/v1/emergencies/ext-1/positions", json={"lon": 11.0}), 422)["detail"]
    assert "speed_mps" in _err(
        c.post("/v1/emergencies/ext-1/positions", json={"edge": "A1B1", "offset_m": 1, "speed_mps": -3}), 422)["detail"]
    assert _err(c.post("/v1/emergencies", json={"route": ["A1B1"], "id": "ext-1"}), 409)["detail"] == (
        "id: escort 'ext-1' exists already")
    assert c.delete("/v1/emergencies/ext-1").status_code == 200
    rejected = c.get("/v1/audit", params={"kind": "rejected"}).json()
    assert any(a["detail"]["status"] == 422 and "not on the route" in a["detail"]["detail"] for a in rejected)
    # the escort its path names is the row's (filtering the audit by escort missed them)
    assert all(a["escort_id"] == "ext-1" for a in rejected if a["detail"]["path"].startswith("/v1/emergencies/ext-1"))
    assert any(a["escort_id"] == "ext-1" and a["detail"]["status"] == 422 for a in rejected)


def test_a_trailing_slash_is_a_404_naming_the_path_not_a_redirect(srv: Server, c: httpx.Client) -> None:
    # (a 307 to an http:// URL built from the Host header, before the token was checked: wrong
    # behind a TLS proxy)
    r = c.post("/v1/emergencies/", json={"route": ["A1B1"]})
    assert r.status_code == 404 and "location" not in r.headers, r.headers
    assert r.json()["detail"] == "no such path '/v1/emergencies/'"
    r = httpx.post(srv.url + "/v1/emergencies/", json={"route": ["A1B1"]}, timeout=20.0)  # (no token: 401 first)
    assert r.status_code == 401 and "location" not in r.headers, r.headers


def test_a_route_with_a_lone_surrogate_is_a_422_and_the_audit_stays_readable(c: httpx.Client) -> None:
    # was a 500 (the error naming the edge could not be encoded), and its audit row made every
    # later read of the log a 500
    body = b'{"route": ["left0A0", "\\ud800"], "id": "sur-1"}'
    err = _err(c.post("/v1/emergencies", content=body, headers={"content-type": "application/json"}), 422)
    assert "route[1]: an edge id holds no control characters" in err["detail"], err
    r = c.get("/v1/audit", params={"since": 0, "limit": 10000})
    assert r.status_code == 200, r.text


def _first_event_id(c: httpx.Client, headers: dict[str, str]) -> int:
    with c.stream("GET", "/v1/events", params={"since": 0}, headers=headers, timeout=30.0) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("id: "):
                return int(line[4:])
    raise AssertionError("the stream ended without an event")


def test_last_event_id_wins_over_the_urls_since(c: httpx.Client) -> None:
    # an EventSource reconnects to the URL it opened (?since=0) with Last-Event-ID: every
    # reconnect replayed the whole history again
    r = c.post("/v1/emergencies", json={"route": ["left1A1", "A1B1"], "id": "sse-1"})
    assert r.status_code == 201, r.text
    first = _first_event_id(c, {})
    assert first < _first_event_id(c, {"Last-Event-ID": str(first)})
    assert c.delete("/v1/emergencies/sse-1").status_code in (200, 409)  # (409: it arrived already)


def test_an_external_escort_preempts_nothing_before_its_first_fix(c: httpx.Client) -> None:
    # planned from its route's start at rest, its ETAs slid a second a tick and every signal of
    # its route was held for it until the 120 s without a position cancelled it
    r = c.post("/v1/emergencies", json={"route": ["left1A1", "A1B1", "B1C1", "C1right1"], "id": "ext-nofix",
                                        "tracking": "external"})
    assert r.status_code == 201, r.text
    t0 = r.json()["dispatched_s"]
    wait_for(lambda: c.get("/healthz").json()["t_s"] >= t0 + 40.0, what="40 simulated s")
    junctions = c.get("/v1/emergencies/ext-nofix").json()["junctions"]
    assert [j["stage"] for j in junctions] == ["idle"] * len(junctions)
    assert not any(j["granted"] for j in junctions)
    # its first fix, at the route's start: now it is planned for
    assert c.post("/v1/emergencies/ext-nofix/positions", json={"edge": "left1A1", "offset_m": 1.0,
                                                               "speed_mps": 13.0}).status_code == 200
    wait_for(lambda: any(j["stage"] != "idle" for j in c.get("/v1/emergencies/ext-nofix").json()["junctions"]),
             timeout_s=30, what="a signal armed for the escort once it has reported")
    assert c.delete("/v1/emergencies/ext-nofix").status_code == 200


def test_a_last_event_id_ahead_of_every_event_streams_the_next_ones(c: httpx.Client) -> None:
    # the stream stayed silent for good: the next events' ids were lower than the one given
    with c.stream("GET", "/v1/events", headers={"Last-Event-ID": "9" * 30}, timeout=30.0) as r:
        assert r.status_code == 200
        assert c.post("/v1/emergencies", json={"route": ["left1A1", "A1B1"], "id": "sse-2"}).status_code == 201
        deadline, seen = time.monotonic() + 20.0, ""
        for line in r.iter_lines():  # (the server sends a comment every 15 s: the deadline is checked)
            if line.startswith("data: ") and '"sse-2"' in line:
                seen = line
            if seen or time.monotonic() > deadline:
                break
    assert '"escort": "sse-2"' in seen
    assert c.delete("/v1/emergencies/sse-2").status_code in (200, 409)


def test_a_last_event_id_of_non_ascii_digits_is_ignored(c: httpx.Client) -> None:
    # '²' is a digit to str.isdigit, not to int(): it was a 500
    with c.stream("GET", "/v1/events", headers={b"Last-Event-ID": b"\xb2"}, timeout=30.0) as r:
        assert r.status_code == 200


def test_a_body_that_is_not_utf8_and_a_method_not_allowed_are_json_errors(c: httpx.Client) -> None:
    # FastAPI's own 400 'There was an error parsing the body', and a bare 'Method Not Allowed'
    err = _err(c.post("/v1/emergencies", content=b'{"route": ["left0A0\xe9"]}',
                      headers={"content-type": "application/json"}), 422)
    assert err["detail"] == "body: not valid JSON (not UTF-8 text, or nested too deep)"
    assert _err(c.put("/v1/emergencies", json={}), 405)["detail"] == "PUT is not allowed on '/v1/emergencies'"


def test_health_and_prometheus_metrics(c: httpx.Client) -> None:
    assert c.get("/v1/emergencies/nobody").status_code == 404
    # refused before routing (415), still counted under its route
    assert c.post("/v1/emergencies", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    # (an escort of another test on this server may still be handing back)
    health = wait_for(lambda: (h := c.get("/healthz").json())["preempted"] == [] and h, timeout_s=30,
                      what="no signal preempted")
    assert health["status"] == "ok" and health["ticks"] > 0
    assert health["ticks_recent"]["budget_ms"] == 50.0  # one second of simulation at --speed 20
    assert health["ticks_recent"]["n"] > 0 and health["ticks_recent"]["tick_ms_p50"] is not None
    r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    metrics = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
               for line in r.text.splitlines() if line and not line.startswith("#")}
    assert metrics["greenwave_ticks_total"] >= health["ticks"]
    assert metrics['greenwave_tick_latency_ms_bucket{le="+Inf"}'] == metrics["greenwave_tick_latency_ms_count"]
    assert metrics['greenwave_http_requests_total{route="/v1/emergencies/{escort_id}",method="GET",status="404"}'] >= 1
    assert metrics['greenwave_http_requests_total{route="/v1/emergencies",method="POST",status="415"}'] >= 1
    assert metrics["greenwave_escorts_active"] >= 0 and metrics["greenwave_junctions_preempted"] == 0
    assert metrics["greenwave_up"] == 1
    assert "# TYPE greenwave_tick_latency_ms histogram" in r.text
    # a load balancer's HEAD probe: the status, no body (it was a 405)
    head = c.head("/healthz")
    assert head.status_code == 200 and head.content == b"", head


def test_a_rejected_requests_long_path_is_clipped_in_the_audit_log(c: httpx.Client) -> None:
    # its row held the path twice: 300 requests of 8,000 characters grew the log by 8.8 MB (an
    # unknown /v1 path was a 404 before the token was checked; now a 401 first, see above)
    path = "/v1/" + "a" * 8000
    assert c.get(path).status_code == 404
    row = next(r for r in reversed(c.get("/v1/audit", params={"kind": "rejected", "limit": 10000}).json())
               if r["detail"]["path"].startswith("/v1/aaa"))
    assert len(row["detail"]["path"]) < 400 and row["detail"]["path"].endswith("(8004 characters)"), row
    assert len(json.dumps(row)) < 1200, row


def _requests_counted(c: httpx.Client) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in c.get("/metrics").text.splitlines()
            if line.startswith("greenwave_http_requests_total{")}


def test_metrics_count_requests_of_each_method_apart(c: httpx.Client) -> None:
    # a GET and a DELETE of the same route were one series: reads and cancels could not be told apart
    route = 'route="/v1/emergencies/{escort_id}"'
    before = _requests_counted(c)
    assert c.get("/v1/emergencies/ghost-m").status_code == 404
    for _ in range(2):
        assert c.delete("/v1/emergencies/ghost-m").status_code == 404
    after = _requests_counted(c)
    for method, n in (("GET", 1), ("DELETE", 2)):
        key = f'greenwave_http_requests_total{{{route},method="{method}",status="404"}}'
        assert after.get(key, 0) - before.get(key, 0) >= n, (key, after)
    assert not any(route in k and "method=" not in k for k in after), after


def test_the_docs_pages_load_everything_from_the_server_itself(srv: Server) -> None:
    # no CDN: a control centre's network often reaches none, and the pages were blank
    for page, assets in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")), ("/redoc", ("redoc.standalone.js",))):
        r = httpx.get(srv.url + page, timeout=10)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), page
        urls = re.findall(r'(?:src|href)=["\']?([^"\' >]+)', r.text) + re.findall(r"url: '([^']+)'", r.text)
        assert urls and all(u.startswith("/") for u in urls), (page, urls)  # nothing from another host
        for asset in assets:
            assert f"/docs-static/{asset}" in r.text
            served = httpx.get(f"{srv.url}/docs-static/{asset}", timeout=10)
            assert served.status_code == 200 and len(served.content) > 100_000, asset
    assert httpx.get(srv.url + "/openapi.json", timeout=10).json()["info"]["title"] == "greenwave city-brain API"
    # counted as the docs' route, not "unmatched" (which reads as requests for no route)
    with srv.client() as c:
        counted = _requests_counted(c)
    assert counted.get('greenwave_http_requests_total{route="/docs-static",method="GET",status="200"}', 0) >= 3
    assert not any('route="unmatched"' in k and 'status="200"' in k for k in counted), counted


def test_openapi_declares_the_location_header_of_a_dispatch(c: httpx.Client) -> None:
    # the 201 of a dispatch carries Location; the schema did not say so (generated clients dropped it)
    spec = c.get("/openapi.json").json()
    # every operation id once (GET and HEAD /healthz shared one: FastAPI warned, generators refuse)
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values() if "operationId" in op]
    assert len(ids) == len(set(ids)) and {"healthz", "healthz_head"} <= set(ids), ids
    created = spec["paths"]["/v1/emergencies"]["post"]["responses"]["201"]
    location = created["headers"]["Location"]
    assert location["schema"] == {"type": "string"} and location["required"] is True
    assert created["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/EscortOut"}
    r = c.post("/v1/emergencies", json={"route": ["left2A2", "A2B2"], "id": "loc-1"})
    assert r.status_code == 201 and r.headers["location"] == "/v1/emergencies/loc-1", r.text
    assert c.delete("/v1/emergencies/loc-1").status_code in (200, 409)  # (409: it arrived already)
    # an id with a # (SUMO's ids have them): written %23, or a client following it asked for 'loc'
    r = c.post("/v1/emergencies", json={"route": ["left2A2", "A2B2"], "id": "loc#2.a:b"})
    assert r.status_code == 201 and r.headers["location"] == "/v1/emergencies/loc%232.a:b", r.text
    assert c.get(r.headers["location"]).json()["id"] == "loc#2.a:b"
    assert c.delete(r.headers["location"]).status_code in (200, 409)


def test_a_refused_dispatch_takes_no_default_id(c: httpx.Client) -> None:
    route = ["left0A0", "A0B0", "B0C0", "C0right0"]
    first = c.post("/v1/emergencies", json={"route": route, "vehicle_type": "police"})
    assert first.status_code == 201, first.text
    n = int(first.json()["id"].removeprefix("escort-"))
    _err(c.post("/v1/emergencies", json={"route": ["left0A0", "NoSuchEdge"]}), 422)
    second = c.post("/v1/emergencies", json={"route": route, "vehicle_type": "police"})
    assert second.status_code == 201 and second.json()["id"] == f"escort-{n + 1}", second.text  # (was n + 2)
    for r in (first, second):
        assert c.delete(f"/v1/emergencies/{r.json()['id']}").status_code == 200


def test_positions_for_an_escort_the_simulation_tracks_are_refused(c: httpx.Client) -> None:
    # its SUMO vehicle drives it: a fix far ahead must not mark the junctions crossed and release them
    r = c.post("/v1/emergencies", json={"route": ["left2A2", "A2B2", "B2C2", "C2right2"], "id": "sim-9"})
    assert r.status_code == 201, r.text
    r = c.post("/v1/emergencies/sim-9/positions", json={"edge": "C2right2", "offset_m": 10.0, "speed_mps": 12.0})
    assert r.status_code == 409 and "tracked by the simulation" in r.json()["detail"], r.text
    e = c.get("/v1/emergencies/sim-9").json()
    assert e["tracking"] == "simulation" and all(j["crossed_s"] is None for j in e["junctions"])
    assert c.delete("/v1/emergencies/sim-9").status_code == 200


def test_an_external_escort_that_stops_reporting_is_cancelled(c: httpx.Client) -> None:
    r = c.post("/v1/emergencies", json={"route": ["left1A1", "A1B1", "B1C1", "C1right1"], "id": "quiet",
                                        "tracking": "external"})
    assert r.status_code == 201, r.text
    # (carried forward to A1's stop line, it stands there: 30 s on, the stall release lets its
    # signals go, so that the cancel may have none left to hand back)
    r = c.post("/v1/emergencies/quiet/positions", json={"edge": "left1A1", "offset_m": 10.0, "speed_mps": 5.0})
    assert r.status_code == 200, r.text
    fix_t = r.json()["t_s"]
    # 120 simulated seconds without a fix (6 s at --speed 20): cancelled, its signals handed back
    e = wait_for(lambda: (x := c.get("/v1/emergencies/quiet").json())["state"] == "cancelled" and x, timeout_s=30,
                 what="the escort to be cancelled")
    assert e["reason"] == "no position for 120 s" and 120.0 < e["cancelled_s"] - fix_t <= 122.0
    wait_for(lambda: not any("quiet" in s["escorts"] or s["preempted"] for s in c.get("/v1/signals").json()),
             timeout_s=30, what="its signals handed back")
    rows = [a for a in c.get("/v1/audit", params={"kind": "cancel"}).json() if a["escort_id"] == "quiet"]
    assert [a["detail"]["reason"] for a in rows] == ["no position for 120 s"]
    # the signals still held for it are listed as for a cancel by request, each then handed back
    # or disarmed; every signal switched for it was handed back (at the cancel, or on the stall)
    handing_back = rows[0]["detail"]["handing_back"]
    assert set(handing_back) <= {"A1", "B1", "C1"}, rows
    after = c.get("/v1/audit", params={"since": rows[0]["id"], "limit": 10000}).json()
    for tls in handing_back:
        assert any(a["tls_id"] == tls and (a["kind"] == "handback" or a["detail"].get("stage") == "idle")
                   for a in after), (tls, after)
    mine = [a for a in c.get("/v1/audit", params={"limit": 10000}).json() if a["escort_id"] == "quiet"]
    switched = {a["tls_id"] for a in mine if a["kind"] == "decision" and a["detail"].get("stage") == "entry"}
    assert switched and all(any(a["tls_id"] == tls and a["kind"] == "handback" for a in mine) for tls in switched)


def test_an_external_escort_that_never_reports_is_cancelled(c: httpx.Client) -> None:
    # no fix at all: the 120 s count from the dispatch (it used to hold its signals for good)
    r = c.post("/v1/emergencies", json={"route": ["left0A0", "A0B0", "B0C0", "C0right0"], "id": "mute",
                                        "tracking": "external"})
    assert r.status_code == 201, r.text
    dispatched = c.get("/v1/emergencies/mute").json()["dispatched_s"]
    e = wait_for(lambda: (x := c.get("/v1/emergencies/mute").json())["state"] == "cancelled" and x, timeout_s=30,
                 what="the escort to be cancelled")
    assert e["reason"] == "no position for 120 s" and 120.0 < e["cancelled_s"] - dispatched <= 122.0
    wait_for(lambda: not any("mute" in s["escorts"] for s in c.get("/v1/signals").json()),
             timeout_s=30, what="its signals let go")


def test_ids_of_vehicles_the_scenario_has_yet_to_load_are_refused(srv: Server, c: httpx.Client) -> None:
    # SUMO loads route files in chunks: a dispatch under the id of a trip departing later used
    # to be accepted, and the whole simulation failed when SUMO reached that trip
    trips = re.findall(r'<trip id="([^"]+)"[^>]*depart="([0-9.]+)"',
                       (srv.workdir / "out" / "inputs" / "background.rou.xml").read_text())
    last, depart = max(trips, key=lambda x: float(x[1]))
    assert c.get("/healthz").json()["t_s"] < float(depart)
    r = c.post("/v1/emergencies", json={"route": ["left2A2", "A2B2"], "id": last})
    assert "a vehicle id is used once a run" in _err(r, 409)["detail"]
    # an external escort's id too: it stands for its vehicle (that trip could not be escorted by
    # its vehicle_id later on: "escorted already")
    r = c.post("/v1/emergencies", json={"route": ["left2A2", "A2B2"], "id": last, "tracking": "external"})
    assert "a vehicle id is used once a run" in _err(r, 409)["detail"]
    # a generated id skips the ids taken by the user's escorts
    first = c.post("/v1/emergencies", json={"route": ["left2A2", "A2B2"]}).json()["id"]
    n = int(first.rpartition("-")[2])
    assert c.post("/v1/emergencies", json={"route": ["left2A2", "A2B2"], "id": f"escort-{n + 1}"}).status_code == 201
    r = c.post("/v1/emergencies", json={"route": ["left2A2", "A2B2"]})
    assert r.status_code == 201 and r.json()["id"] == f"escort-{n + 2}", r.text
    for escort in (first, f"escort-{n + 1}", f"escort-{n + 2}"):
        assert c.delete(f"/v1/emergencies/{escort}").status_code == 200
    assert c.get("/healthz").json()["status"] == "ok"


def test_an_empty_audit_kind_means_every_kind(c: httpx.Client) -> None:
    # README's template is /v1/audit?since=ID&kind=&limit=: an empty kind was a 422
    every = c.get("/v1/audit", params={"since": 0, "limit": 50}).json()
    assert c.get("/v1/audit", params={"since": 0, "kind": "", "limit": 50}).json() == every
    assert {row["kind"] for row in c.get("/v1/audit", params={"kind": "service"}).json()} == {"service"}
    assert _err(c.get("/v1/audit", params={"kind": "nope"}), 422)
