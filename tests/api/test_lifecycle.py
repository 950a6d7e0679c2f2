"""The service's life: a second instance that cannot start touches nothing; SIGINT hands every
junction back while event streams are open, sends them the cancels and hand-backs, then ends
them; at --end the escorts under way are cancelled and handed back."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import REPO, TOKEN, Server, dispatch_and_wait_for_the_end, free_port, wait_for
from tests.api.sse import EventCollector

pytestmark = pytest.mark.sumo

DISPATCH = {"route": ["left1A1", "A1B1", "B1C1", "C1right1"]}


def _serve(scenario: Path, workdir: Path, port: int, out: Path, *more: str) -> subprocess.CompletedProcess[str]:
    token = workdir / "token2"
    token.write_text(TOKEN)
    args = [sys.executable, "-m", "controller", "serve", "--scenario", str(scenario), "--port", str(port),
            "--token-file", str(token), "--out", str(out), "--speed", "10", *more]
    env = {k: v for k, v in os.environ.items() if k != "GREENWAVE_TOKEN"}
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120, env=env, check=False)


def _audit_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0])


def test_a_second_instance_on_the_same_port_or_folder_stops_before_writing(server: Server, tiny_scenario: Path,
                                                                           tmp_path: Path) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    other = tmp_path / "other-out"
    r = _serve(tiny_scenario, tmp_path, port, other)
    assert r.returncode == 2 and f"--port {port}: cannot listen on 127.0.0.1:{port}" in r.stderr, r.stderr
    assert "another greenwave serve?" in r.stderr and "Traceback" not in r.stderr
    assert not other.exists()  # nothing prepared or written

    live = server.workdir / "out"
    before = {p.name: p.stat().st_mtime_ns for p in live.iterdir()}
    rows = _audit_rows(live / "audit.sqlite") if (live / "audit.sqlite").exists() else None
    r = _serve(tiny_scenario, tmp_path, free_port(), live)
    assert r.returncode == 2 and f"--out '{live.resolve()}': another greenwave serve (process " in r.stderr, r.stderr
    after = {p.name: p.stat().st_mtime_ns for p in live.iterdir() if p.name in before}
    assert {k: v for k, v in after.items() if k not in ("tripinfo.xml", "sumo.log")} == \
        {k: v for k, v in before.items() if k not in ("tripinfo.xml", "sumo.log")}
    if rows is not None:
        assert _audit_rows(live / "audit.sqlite") == rows
    # another folder, on the first one's audit log: both handed out the same default ids
    # (in folders that do not exist yet: none is left behind, the parent included)
    rows = _audit_rows(server.audit_db)
    nested = tmp_path / "new-parent" / "other-out"
    r = _serve(tiny_scenario, tmp_path, free_port(), nested, "--audit-db", str(server.audit_db))
    assert r.returncode == 2 and f"--audit-db '{server.audit_db.resolve()}': another greenwave serve " \
        "(process " in r.stderr and "is writing into this audit log" in r.stderr, r.stderr
    assert _audit_rows(server.audit_db) == rows and not nested.parent.exists()
    with server.client() as c:  # the first one is untouched
        assert c.get("/healthz").json()["status"] == "ok"


def test_the_port_is_taken_from_the_start_not_once_the_scenario_is_ready() -> None:
    # a second instance started while the first still prepares a large scenario bound the same
    # port (SO_REUSEADDR and no listen yet) and ran a simulation nobody could reach
    from controller.api.serve import _listen
    from controller.errors import GreenwaveError

    port = free_port()
    first = _listen("127.0.0.1", port)
    try:
        with pytest.raises(GreenwaveError, match=f"--port {port}: cannot listen .*another greenwave serve"):
            _listen("127.0.0.1", port).close()
    finally:
        first.close()


def test_sigint_hands_back_while_streams_are_open_then_ends_them(tiny_scenario: Path, tmp_path: Path) -> None:
    server = Server(tiny_scenario, tmp_path, speed=5.0).start()
    assert server.proc is not None
    with server.client() as c:
        assert c.post("/v1/emergencies", json={**DISPATCH, "id": "amb-s"}).status_code == 201
        held = wait_for(lambda: c.get("/healthz").json()["preempted"], what="a preempted junction")
    with EventCollector(server.url, TOKEN) as stream:
        wait_for(lambda: stream.events, what="the stream to replay")
        server.proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        server.proc.wait(timeout=60)
        stopped_in = time.monotonic() - t0
        wait_for(lambda: stream.error is not None or not stream._thread.is_alive(), timeout_s=10,
                 what="the stream to end")
    log = server.log.read_text()
    assert server.proc.returncode == 0, log
    assert "Traceback" not in log and "CancelledError" not in log, log
    assert "greenwave: stopped at " in log and "every signal handed back" in log, log
    assert stopped_in < 10.0, (stopped_in, log)
    kinds = [(e["event"], e["data"].get("reason") or e["data"].get("tls_id")) for e in stream.events]
    assert ("cancel", "service stopped") in kinds
    handed = {e["data"]["tls_id"] for e in stream.events if e["event"] == "handback"}
    assert set(held) <= handed, (held, kinds[-20:])
    # the hand-backs' reasons say why, as the cancel does (they said "stopped")
    reasons = [e["data"]["reasons"]["amb-s"] for e in stream.events
               if e["event"] in ("exit", "handback") and "amb-s" in e["data"].get("reasons", {})]
    assert reasons and set(reasons) == {"service stopped"}, kinds[-20:]
    ids = [e["id"] for e in stream.events]
    assert ids == sorted(ids) and ids[0] > 10**12  # from the start time in ms: they go on rising across restarts


def _preempting(scenario: Path, tmp_path: Path, escort_id: str) -> Server:
    """A service (10 simulated s a second) with escort ``escort_id`` dispatched along the row and
    a junction preempted for it."""
    server = Server(scenario, tmp_path, speed=10.0).start()
    with server.client() as c:
        assert c.post("/v1/emergencies", json={**DISPATCH, "id": escort_id}).status_code == 201
        wait_for(lambda: c.get("/healthz").json()["preempted"], what="a preempted junction")
    return server


def test_sighup_stops_the_service_as_sigterm_does(tiny_scenario: Path, tmp_path: Path) -> None:
    # a terminal or an SSH session closing (SIGHUP) killed the service at once: no cancel, no
    # hand-back of the junction it held, no stop in the audit log
    server = _preempting(tiny_scenario, tmp_path, "amb-h")
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    server.proc.wait(timeout=60)
    log = server.log.read_text()
    assert server.proc.returncode == 0, log
    assert "every signal handed back" in log and "Traceback" not in log, log
    assert not (tmp_path / "out" / "INCOMPLETE.txt").exists()


@pytest.mark.parametrize("gap_s", [0.05, 0.3, 1.0])
def test_a_repeated_sigterm_still_exits_0_after_the_hand_back(tiny_scenario: Path, tmp_path: Path,
                                                              gap_s: float) -> None:
    # the second one landed after the handlers were reset and killed the process (exit 143)
    server = _preempting(tiny_scenario, tmp_path, "amb-t")
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(gap_s)
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=60)
    log = server.log.read_text()
    assert server.proc.returncode == 0, log
    assert "every signal handed back" in log and "Traceback" not in log, log


def test_at_the_end_escorts_under_way_are_cancelled_and_handed_back(tiny_scenario: Path, tmp_path: Path) -> None:
    server = Server(tiny_scenario, tmp_path, speed=10.0, extra=("--end", "45")).start()
    try:
        with server.client() as c:
            health = dispatch_and_wait_for_the_end(c, "amb-e")
            assert health["preempted"] == [] and health["t_s"] >= 45.0
            e = c.get("/v1/emergencies/amb-e").json()
            assert e["state"] == "cancelled" and e["reason"] == "simulation ended"
            assert all(not s["preempted"] for s in c.get("/v1/signals").json())
            assert c.delete("/v1/emergencies/amb-e").status_code == 409
    finally:
        assert server.stop() == 0, server.log.read_text()


def _children(pid: int) -> dict[int, str]:
    """A process's child processes (Linux): pid -> name."""
    names = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                names[int(child)] = Path(f"/proc/{child}/comm").read_text().strip()
    return names


def test_serve_over_traci_escorts_and_hands_back(tiny_scenario: Path, tmp_path: Path) -> None:
    # serve had no --backend: the service could run only libsumo (and no sumo-gui)
    server = Server(tiny_scenario, tmp_path, speed=10.0, extra=("--backend", "traci", "--end", "45")).start()
    try:
        assert server.proc is not None and "sumo" in _children(server.proc.pid).values()  # SUMO over a socket
        with server.client() as c:
            health = dispatch_and_wait_for_the_end(c, "amb-t")
            assert health["preempted"] == [] and not any(health["safety"].values())
    finally:
        assert server.stop() == 0, server.log.read_text()


def test_sumo_killed_under_a_traci_service_is_not_said_handed_back(tiny_scenario: Path, tmp_path: Path) -> None:
    # it said "every signal was handed back", SUMO having gone with every signal
    server = Server(tiny_scenario, tmp_path, speed=10.0, extra=("--backend", "traci")).start()
    assert server.proc is not None
    with server.client() as c:  # (an escort with a signal switched for it: its hand-back is reported)
        assert c.post("/v1/emergencies", json={"id": "k", "route": ["left1A1", "A1B1", "B1C1", "C1right1"]}
                      ).status_code == 201
        wait_for(lambda: c.get("/healthz").json()["preempted"], timeout_s=30, what="a signal preempted")
    sumo = next(pid for pid, name in _children(server.proc.pid).items() if name == "sumo")
    os.kill(sumo, signal.SIGKILL)
    assert server.proc.wait(timeout=60) == 1
    log = " ".join(server.log.read_text().split())
    assert "the simulation failed: SUMO stopped" in log and "SUMO ended, its signals with it" in log, log
    assert "every signal was handed back" not in log and "Traceback" not in log
    # SUMO's outputs, cut off, are not left under their names as if complete
    out = tmp_path / "out"
    assert not (out / "tripinfo.xml").exists() and (out / "tripinfo.partial.xml").is_file()
    assert "This service did not complete" in (out / "INCOMPLETE.txt").read_text()
    # the audit's forced hand-back does not claim the signals were set back: SUMO went with them
    rows = [json.loads(d) for (d,) in sqlite3.connect(server.audit_db).execute(
        "SELECT detail FROM audit WHERE kind = 'handback'")]
    assert rows and rows[-1]["forced"] is True and rows[-1]["restored"] is False, rows


def test_sumo_killed_after_the_end_of_a_traci_service_leaves_no_output_looking_complete(
        tiny_scenario: Path, tmp_path: Path) -> None:
    # past --end the service no longer steps: SUMO killed then went unnoticed, its tripinfo.xml cut
    # off under its name, and the stop said all was well (exit 0)
    server = Server(tiny_scenario, tmp_path, speed=20.0, extra=("--backend", "traci", "--end", "20")).start()
    try:
        assert server.proc is not None
        with server.client() as c:
            wait_for(lambda: c.get("/healthz").json()["status"] == "ended", timeout_s=30, what="the service's end")
        sumo = next(pid for pid, name in _children(server.proc.pid).items() if name == "sumo")
        os.kill(sumo, signal.SIGKILL)
    finally:
        assert server.stop() == 1
    log = " ".join(server.log.read_text().split())
    assert "SUMO was gone before the service stopped (its exit code -9)" in log, log
    assert "every signal had been handed back at --end" in log and "Traceback" not in log
    out = tmp_path / "out"
    assert not (out / "tripinfo.xml").exists() and (out / "tripinfo.partial.xml").is_file()


def test_default_escort_ids_go_on_across_restarts_sharing_the_audit_log(tiny_scenario: Path, tmp_path: Path) -> None:
    # every start began at escort-1 again: the audit log, kept across restarts, held several escort-1s
    route = {"route": ["left2A2", "A2B2"]}
    first = Server(tiny_scenario, tmp_path, speed=20.0).start()
    try:
        with first.client() as c:
            ids = [c.post("/v1/emergencies", json=route).json()["id"] for _ in range(2)]
            r = c.post("/v1/emergencies", json={**route, "id": "escort-7"})  # a client's id of the default form
            assert r.status_code == 201, r.text
    finally:
        assert first.stop() == 0
    assert ids == ["escort-1", "escort-2"]
    again = Server(tiny_scenario, tmp_path, speed=20.0, audit_db=first.audit_db).start()
    try:
        with again.client() as c:
            r = c.post("/v1/emergencies", json=route)
            assert r.status_code == 201 and r.json()["id"] == "escort-8", r.text
            # an id the client gives is taken as it is (a new simulation: unknown to it)
            r = c.post("/v1/emergencies", json={**route, "id": "escort-1"})
            assert r.status_code == 201 and r.json()["id"] == "escort-1", r.text
            dispatched = [a["escort_id"] for a in c.get("/v1/audit", params={"kind": "dispatch"}).json()]
    finally:
        assert again.stop() == 0
    assert dispatched == ["escort-1", "escort-2", "escort-7", "escort-8", "escort-1"]


def test_a_body_that_is_not_json_is_refused_with_415(server: Server) -> None:
    with server.client() as c:
        r = c.post("/v1/emergencies", content=b'{"route": ["left1A1", "A1B1"]}',
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 415 and r.json()["error"] == "unsupported media type"
        assert "content-type: 'application/x-www-form-urlencoded' is not application/json" in r.json()["detail"]
        r = c.post("/v1/emergencies", content=b'{"route": ["left1A1", "A1B1"]}')  # no content-type at all
        assert r.status_code == 415 and "no content-type header" in r.json()["detail"]
        r = c.post("/v1/emergencies", content=b'{"route": ["left1A1", "A1B1", "B1C1", "C1right1"]}',
                   headers={"Content-Type": "application/json; charset=utf-8"})
        assert r.status_code == 201, r.text
        rejected = c.get("/v1/audit", params={"kind": "rejected"}).json()
        assert any(a["detail"]["status"] == 415 for a in rejected)
    with httpx.Client(base_url=server.url) as anonymous:  # the auth check still comes first for /v1
        assert anonymous.get("/v1/signals").status_code == 401


def test_serving_into_a_run_folder_leaves_nothing_of_that_run(tiny_scenario: Path, tmp_path: Path) -> None:
    # `serve --out` into an earlier run's folder: SUMO's outputs were replaced, but that run's
    # summary.json and trace.json stayed, looking like the serve's
    from tests.helpers import run_ok

    run_ok(["run", str(tiny_scenario), "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "summary.json").is_file() and (tmp_path / "out" / "trace.json").is_file()
    server = Server(tiny_scenario, tmp_path, speed=10.0).start()
    assert server.stop() == 0, server.log.read_text()
    left = {p.name for p in (tmp_path / "out").iterdir()}
    assert not left & {"summary.json", "trace.json", "report.html"}, left
    assert "tripinfo.xml" in left


def test_an_end_before_the_begin_is_refused_before_anything_is_written(tiny_scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    r = _serve(tiny_scenario, tmp_path, free_port(), out, "--end", "0")
    assert r.returncode == 2 and "--end 0 s is not after the scenario's begin (0 s)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "new").exists()


def test_port_0_says_the_port_the_system_gave(tiny_scenario: Path, tmp_path: Path) -> None:
    # it said "on http://127.0.0.1:0": the server could not be reached
    import re

    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", "serve", "--scenario", str(tiny_scenario), "--port", "0",
         "--token-file", str(token), "--out", str(tmp_path / "out"), "--audit-db", str(tmp_path / "a.sqlite")],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "GREENWAVE_TOKEN"},
    )
    try:
        assert proc.stderr is not None
        url = None
        deadline = time.monotonic() + 90
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line, "serve ended before saying where it serves"
            if (m := re.search(r"serving \S+ on (http://127\.0\.0\.1:(\d+))", line)) is not None:
                url = m.group(1)
                assert int(m.group(2)) > 0
        assert url is not None
        assert wait_for(lambda: httpx.get(url + "/healthz", timeout=2.0).status_code == 200, timeout_s=30,
                        what="the server answering on the port it named")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        if proc.stderr is not None:
            proc.stderr.close()


def test_a_killed_service_leaves_its_folder_marked_and_the_next_one_says_so(tiny_scenario: Path,
                                                                              tmp_path: Path) -> None:
    # SIGKILL left SUMO's outputs cut off under their names with nothing saying so, and the next
    # session's audit rows followed the killed one's as if it had stopped
    server = Server(tiny_scenario, tmp_path, speed=10.0).start()
    assert server.proc is not None
    out = tmp_path / "out"
    assert "This service is running" in (out / "INCOMPLETE.txt").read_text()
    with server.client() as c:
        assert c.post("/v1/emergencies", json={"id": "gone", "route": ["left1A1", "A1B1", "B1C1"]}).status_code == 201
    server.proc.kill()
    server.proc.wait(timeout=30)
    assert "if it is here and that process is gone, the service was killed" in (out / "INCOMPLETE.txt").read_text()
    again = Server(tiny_scenario, tmp_path, speed=10.0).start()
    try:
        with again.client() as c:
            rows = c.get("/v1/audit", params={"kind": "service"}).json()
            assert [r["detail"]["event"] for r in rows] == ["started", "unfinished", "started"], rows
            assert rows[1]["detail"]["session_started_at"] == rows[0]["at"]
        assert "This service is running" in (out / "INCOMPLETE.txt").read_text()
    finally:
        assert again.stop() == 0
    assert not (out / "INCOMPLETE.txt").exists()  # (stopped cleanly: its outputs are complete)
    assert "the audit log's previous session (started " in " ".join(again.log.read_text().split())
